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
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream

from benchd.v1 import common_pb2, estop_grpc, estop_pb2, hardware_grpc
from benchd.v1 import hardware_pb2 as pb

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


async def estop(host: str, port: int) -> None:
    channel = Channel(host, port)
    stub = estop_grpc.EmergencyStopStub(channel)
    await stub.GetEmergencyStopState(estop_pb2.EmergencyStopStateRequest())  # connect
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        print(time.perf_counter(), flush=True)
        await stub.EmergencyStop(estop_pb2.EmergencyStopRequest(reason="benchmark"))
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


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve())
    elif sys.argv[1] == "serve-trio-asyncio":
        serve_trio_asyncio()
    elif sys.argv[1] == "frames":
        asyncio.run(frames(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    elif sys.argv[1] == "estop":
        asyncio.run(estop(sys.argv[2], int(sys.argv[3])))
    else:
        _, _, host, port, seconds, concurrency = sys.argv
        asyncio.run(load(host, int(port), float(seconds), int(concurrency)))
