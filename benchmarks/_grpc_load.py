"""Helpers for benchmarks/edge.py, run as separate processes (asyncio, no trio):

    python benchmarks/_grpc_load.py serve              # plain asyncio grpclib GetParameter echo
    python benchmarks/_grpc_load.py serve-trio-asyncio # the same echo on a trio-asyncio loop
    python benchmarks/_grpc_load.py load HOST PORT SECONDS CONCURRENCY
    python benchmarks/_grpc_load.py estop HOST PORT    # one EmergencyStop per line on stdin

``serve`` prints its port, then answers Hardware/GetParameter with a fixed ParameterValue of the
same shape the edge returns: the baseline a plain asyncio grpclib server reaches on this machine.
``serve-trio-asyncio`` is that echo inside ``trio.run`` on a trio-asyncio loop (what the edge
runs on, without actors): it separates the loop's cost from the edge's own.
``load`` keeps CONCURRENCY unary GetParameter calls in flight on one HTTP/2 connection for
SECONDS and prints one JSON object with the calls per second.
``frames HOST PORT SECONDS`` streams Hardware/StreamFrames from "camera" with a two-frame
HTTP/2 window and prints MB/s; ``serve`` answers it with 8 MiB frames as fast as they are taken.
``estop`` connects, then for each line on stdin prints ``time.perf_counter()`` (CLOCK_MONOTONIC,
shared with the simulator process) just before sending an EmergencyStop RPC, and ``done`` after
its reply.

    python benchmarks/_grpc_load.py hostile HOST PORT SECONDS CLIENTS
    python benchmarks/_grpc_load.py estop-loop HOST PORT SECONDS PERIOD

``hostile`` runs CLIENTS clients, each on its own HTTP/2 connection with one request in flight,
cycling through :data:`HOSTILE` — requests over the size cap, names of 400 000 and 3 000 000
characters, malformed bodies (compressed flag, a length prefix that lies, bytes that are no
protobuf, no message at all), too many repeated entries, JSON nested 60 000 deep, a method that
does not exist, and expensive but valid calls — written frame by frame with h2 (grpclib's client
cannot send malformed messages). It prints one JSON object: requests sent, answered with a
gRPC status (by status), and unanswered (the connection broke or no status came). It runs at
nice 10: on a real bench such clients are other machines, and on the benchmark's 2 cores the
daemon should compete with the clients' *requests*, not with their processes for the CPU.
``estop-loop`` sends an EmergencyStop every PERIOD seconds, then a ResetEmergencyStop, and
prints a JSON line per stop: ``sent`` (perf_counter before sending), ``replied``, and the
daemon's ``received_at`` (Unix time) and ``dispatch_ms``; ``"unix_minus_perf"`` first, so the
reader can put ``received_at`` on the perf_counter clock.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream

from benchd.v1 import (
    common_pb2,
    control_pb2,
    estop_grpc,
    estop_pb2,
    hardware_grpc,
    health_pb2,
    storage_pb2,
)
from benchd.v1 import hardware_pb2 as pb
from client._segment import one_segment

REQUEST = pb.ParameterRequest(device="maitai", name="wavelength")
REPLY = pb.ParameterValue(
    device="maitai",
    name="wavelength",
    value=common_pb2.Value(number=800.0),
    desired=common_pb2.Value(number=800.0),
    units="nm",
    timestamp=time.time(),
    version=1,
    source=common_pb2.SOURCE_HARDWARE,
)


FRAME_BYTES = 2048 * 2048 * 2
WINDOW = 2 * FRAME_BYTES + 65536  # the client's HTTP/2 window: about two full frames
FRAME_PIXELS = bytes(range(256)) * (FRAME_BYTES // 256)


class Echo:
    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/benchd.v1.Hardware/GetParameter": Handler(
                self.get, Cardinality.UNARY_UNARY, pb.ParameterRequest, pb.ParameterValue
            ),
            "/benchd.v1.Hardware/StreamFrames": Handler(
                self.frames, Cardinality.UNARY_STREAM, pb.StreamFramesRequest, pb.Frame
            ),
        }

    async def frames(self, stream: Stream[Any, Any]) -> None:
        """The baseline byte stream: 8 MiB frames, built and sent as fast as the client takes
        them (each message serialised anew, as the edge does)."""
        request = await stream.recv_message()
        number = 0
        while True:
            number += 1
            await stream.send_message(
                pb.Frame(
                    device=request.device,
                    frame_number=number,
                    timestamp=time.time(),
                    width=2048,
                    height=2048,
                    pixel_format="uint16le",
                    bit_depth=16,
                    data=FRAME_PIXELS,
                )
            )

    async def get(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(REPLY)


async def serve() -> None:
    server = Server([Echo()])
    await server.start("127.0.0.1", 0)
    sockets = server._server.sockets if server._server else []  # baseline only: its port
    print(sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


def serve_trio_asyncio() -> None:
    import trio  # noqa: PLC0415 (only this mode runs trio)
    import trio_asyncio  # noqa: PLC0415

    async def main() -> None:
        async with trio_asyncio.open_loop():
            await trio_asyncio.aio_as_trio(serve)()

    trio.run(main)


async def emergency_stop(channel: Channel, stub: Any) -> Any:
    """An EmergencyStop as the client library sends it: the request in one TCP segment
    (client/_segment.py)."""
    async with stub.EmergencyStop.open() as stream:
        async with one_segment(channel):
            await stream.send_message(estop_pb2.EmergencyStopRequest(reason="benchmark"), end=True)
        return await stream.recv_message()


async def estop(host: str, port: int) -> None:
    channel = Channel(host, port)
    stub = estop_grpc.EmergencyStopStub(channel)
    await stub.GetEmergencyStopState(estop_pb2.EmergencyStopStateRequest())  # connect
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        print(time.perf_counter(), flush=True)
        await emergency_stop(channel, stub)
        print("done", flush=True)
    channel.close()


async def load(host: str, port: int, seconds: float, concurrency: int) -> None:
    channel = Channel(host, port)
    stub = hardware_grpc.HardwareStub(channel)
    await stub.GetParameter(REQUEST)  # connect and warm up
    calls = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal calls
        while time.perf_counter() < deadline:
            await stub.GetParameter(REQUEST)
            calls += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    channel.close()
    print(json.dumps({"calls_per_s": calls / elapsed}), flush=True)


async def frames(host: str, port: int, seconds: float) -> None:
    """Stream frames from the camera for SECONDS; print MB/s and frames received."""
    window = Configuration(http2_connection_window_size=WINDOW, http2_stream_window_size=WINDOW)
    channel = Channel(host, port, config=window)
    stub = hardware_grpc.HardwareStub(channel)
    received = 0
    size = 0
    async with stub.StreamFrames.open() as stream:
        await stream.send_message(pb.StreamFramesRequest(device="camera"), end=True)
        await stream.recv_message()  # the first frame: connected and flowing
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            message = await stream.recv_message()
            received += 1
            size += len(message.data)
        elapsed = time.perf_counter() - started
        await stream.cancel()
    channel.close()
    print(json.dumps({"mb_per_s": size / elapsed / 1e6, "frames": received}), flush=True)


def message(body: bytes, *, compressed: bool = False, length: int | None = None) -> bytes:
    """A gRPC length-prefixed message; ``length`` overrides the declared length."""
    return struct.pack(">?I", compressed, len(body) if length is None else length) + body


def _device(name: str) -> bytes:
    return message(pb.DeviceRequest(device=name).SerializeToString())


def _pb(request: Any, **fields: Any) -> bytes:
    return message(request(**fields).SerializeToString())


HARDWARE, HEALTH = "/benchd.v1.Hardware/", "/benchd.v1.Health/"
SCRIPT = "".join(f"x{i} = {i} + 1\n" for i in range(300))
#: (kind, method, body): what the hostile clients send, in turn.
HOSTILE: list[tuple[str, str, bytes]] = [
    ("over_cap", HARDWARE + "GetDevice", message(b"\x0a" + b"x" * 2_000_000, length=64 << 20)),
    ("name_400k", HARDWARE + "GetDevice", _pb(pb.DeviceRequest, device="x" * 400_000)),
    ("name_3m", HARDWARE + "GetDevice", _pb(pb.DeviceRequest, device="x" * 3_000_000)),
    ("compressed", HARDWARE + "GetParameter", message(b"\x0a\x06maitai", compressed=True)),
    ("prefix_lies", HARDWARE + "GetParameter", message(b"\x0a\x02ab", length=1000)),
    ("not_protobuf", "/benchd.v1.EmergencyStop/GetEmergencyStopState", message(b"\xff" * 64)),
    ("no_message", HEALTH + "GetSystemHealth", b""),
    ("many_names", HARDWARE + "StreamParameters",
     _pb(pb.StreamParametersRequest, device="maitai", names=["n"] * 100_000)),
    ("deep_json", "/benchd.v1.Storage/StartRun",
     _pb(storage_pb2.StartRunRequest, name="x", metadata_json="[" * 60_000)),
    ("no_such_method", "/benchd.v1.Nothing/Nothing", message(b"")),
    ("list_devices", HARDWARE + "ListDevices", message(b"")),
    ("system_health", HEALTH + "GetSystemHealth", _pb(health_pb2.SystemHealthRequest)),
    ("list_actors", HEALTH + "ListActors", message(b"")),
    ("check_script", "/benchd.v1.Control/CheckScript",
     _pb(control_pb2.CheckScriptRequest, source=SCRIPT)),
    ("get_parameter", HARDWARE + "GetParameter", message(REQUEST.SerializeToString())),
]  # fmt: skip


class RawConnection:
    """One HTTP/2 connection speaking gRPC frame by frame (h2), one call at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(1 << 24)
        self.writer.write(self.h2.data_to_send())
        self.address = ""

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        connection = cls(*await asyncio.open_connection(host, port))
        connection.address = f"{host}:{port}"
        return connection

    async def call(self, method: str, body: bytes) -> tuple[int | None, str]:
        """(grpc-status, grpc-message); status None if the connection broke first."""
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [(":method", "POST"), (":scheme", "http"), (":path", method),
             (":authority", self.address), ("content-type", "application/grpc"),
             ("te", "trailers")],
            end_stream=not body,
        )  # fmt: skip
        sent, status, text, done = 0, None, "", False
        while not done:
            while sent < len(body):
                room = min(
                    self.h2.local_flow_control_window(stream_id),
                    self.h2.max_outbound_frame_size,
                    len(body) - sent,
                )
                if room <= 0:
                    break
                self.h2.send_data(
                    stream_id, body[sent : sent + room], end_stream=sent + room == len(body)
                )
                sent += room
            self.writer.write(self.h2.data_to_send())
            data = await self.reader.read(65536)
            if not data:
                return status, text
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                return status, text
            for event in events:
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    headers = dict(event.headers)  # type: ignore[arg-type]
                    if "grpc-status" in headers:
                        status = int(headers["grpc-status"])
                        text = unquote(headers.get("grpc-message", ""))
                elif isinstance(event, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    if event.stream_id == stream_id:  # answered: send no more of it
                        done, sent = True, len(body)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return status, text
        self.writer.write(self.h2.data_to_send())
        return status, text


CALL_TIMEOUT = 10.0  # a hostile request not answered by then counts as unanswered


HOSTILE_NICE = 10


async def hostile(host: str, port: int, seconds: float, clients: int) -> None:
    os.nice(HOSTILE_NICE)  # see the module docstring
    sent: collections.Counter[str] = collections.Counter()
    answered: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[str] = collections.Counter()
    deadline = time.perf_counter() + seconds

    async def client(index: int) -> None:
        connection = await RawConnection.open(host, port)
        turn = index
        while time.perf_counter() < deadline:
            kind, method, body = HOSTILE[turn % len(HOSTILE)]
            turn += 1
            sent[kind] += 1
            try:
                status, _ = await asyncio.wait_for(connection.call(method, body), CALL_TIMEOUT)
            except (h2.exceptions.H2Error, OSError, TimeoutError):
                status = None
            if status is None:  # the connection broke: count it, and start a new one
                connection.writer.close()
                connection = await RawConnection.open(host, port)
                continue
            answered[kind] += 1
            statuses[str(status)] += 1
        connection.writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    print(json.dumps({
        "sent": sum(sent.values()),
        "answered": sum(answered.values()),
        "unanswered": sum(sent.values()) - sum(answered.values()),
        "statuses": dict(statuses),
        "by_kind": {kind: [sent[kind], answered[kind]] for kind in sent},
    }), flush=True)  # fmt: skip


async def estop_loop(host: str, port: int, seconds: float, period: float) -> None:
    channel = Channel(host, port)
    stub = estop_grpc.EmergencyStopStub(channel)
    await stub.GetEmergencyStopState(estop_pb2.EmergencyStopStateRequest())  # connect
    print(json.dumps({"unix_minus_perf": time.time() - time.perf_counter()}), flush=True)
    deadline = time.perf_counter() + seconds
    due = time.perf_counter()
    while due < deadline:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sent = time.perf_counter()
        reply = await emergency_stop(channel, stub)
        replied = time.perf_counter()
        print(json.dumps({
            "sent": sent, "replied": replied, "received_at": reply.received_at,
            "dispatch_ms": reply.dispatch_ms, "all_stopped": reply.all_stopped,
        }), flush=True)  # fmt: skip
        await stub.ResetEmergencyStop(estop_pb2.ResetEmergencyStopRequest(reason="benchmark"))
        due = max(due + period, time.perf_counter())
    print(json.dumps({"end": True}), flush=True)
    channel.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve())
    elif sys.argv[1] == "serve-trio-asyncio":
        serve_trio_asyncio()
    elif sys.argv[1] == "frames":
        asyncio.run(frames(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    elif sys.argv[1] == "estop":
        asyncio.run(estop(sys.argv[2], int(sys.argv[3])))
    elif sys.argv[1] == "hostile":
        _, _, host, port, seconds, clients = sys.argv
        asyncio.run(hostile(host, int(port), float(seconds), int(clients)))
    elif sys.argv[1] == "estop-loop":
        _, _, host, port, seconds, period = sys.argv
        asyncio.run(estop_loop(host, int(port), float(seconds), float(period)))
    else:
        _, _, host, port, seconds, concurrency = sys.argv
        asyncio.run(load(host, int(port), float(seconds), int(concurrency)))
