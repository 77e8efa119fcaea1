"""The gRPC edge: unary throughput against plain asyncio grpclib, and the e-stop over gRPC.

    python benchmarks/edge.py [--quick] [--json] [--hostile]

Without ``--hostile`` it measures everything below; with it, only the hostile mode.

* unary_ratio: Hardware/GetParameter calls per second through the edge (grpclib on the
  trio-asyncio loop inside the edge actor, the request handed to the device actor and back)
  / the same RPC answered by a plain asyncio grpclib server with a fixed reply, measured in the
  same run, interleaved (goal >= 0.7). Each server runs in its own process, with the simulated
  bench idle behind the edge; the load (8 calls in flight on one HTTP/2 connection) comes from
  another process, so the client's CPU is not counted against either server.
* loop_ratio: the same fixed-reply echo served from a trio-asyncio loop / plain asyncio: the
  share of the gap that is the loop itself; edge_vs_loop_ratio: the edge / that echo, the share
  that is the edge's own work (validation, the actor round trip, conversion).
* frames_ratio: MB/s of 8 MiB frames through Hardware/StreamFrames (a frame source that is
  never the bottleneck -> latest-only tap -> the edge -> a client process with a two-frame
  HTTP/2 window) / the same messages streamed by the plain asyncio grpclib server, interleaved
  (goal >= 0.8).
* estop_rpc_p99_ms: from a client process sending the EmergencyStop RPC to the stop bytes
  arriving at every simulator (ELL14 ``<addr>st`` x3, ESP300 ``AB``, Mai Tai ``SHUT 0``; the
  slowest device per sample), with an ESP300 move in flight; simulators run in a separate
  process as in benchmarks/estop.py, all timestamps are CLOCK_MONOTONIC. estop_direct_p99_ms is
  ``emergency_stop()`` called in the daemon, measured the same way in the same run: the
  difference is the gRPC path.

Hostile mode (the same simulators, a fresh bench with a recorder): HOSTILE_CLIENTS clients in two
processes (``_grpc_load.py hostile``) send requests over the size cap, names of 400 000 and 3
million characters, malformed bodies, too many repeated entries, JSON nested 60 000 deep and
expensive valid calls, one in flight each, as fast as they are answered; meanwhile another
process e-stops every 100 ms (then resets), and the recorder records a camera stand-in that
makes a 512 x 512 frame every 10 ms on its own clock and keeps only the last 16 uncollected
(like a camera's on-board buffer: a daemon too slow to collect them loses frames, counted as
missing). It ignores the e-stop — the real camera stops at one, by design — so one run spans
the whole period.

* hostile_estop_p99_ms: from the e-stop request's arrival at the daemon (its HTTP/2 headers
  read off the socket: ``received_at`` in the reply) to its stop bytes at every simulator
  (goal <= 10 ms); hostile_estop_client_p99_ms: from the client's send (goal <= 10 ms).
* hostile_frames_lost: frames the run lost (dropped by its writer + missing from the camera's
  numbering), goal 0; hostile_unanswered: hostile requests that got no gRPC status (goal 0);
  hostile_requests_per_s: hostile requests answered per second.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from _report import machine, p99, run_benchmark
from estop import BENCH, STOP_BYTES, Arrivals, move_in_flight, serve_simulators

from actors.capabilities import (
    AcquisitionStatus,
    Capability,
    DeviceActor,
    Frame,
    FrameGeometry,
    GetAcquisitionStatus,
    GetFrameGeometry,
    Roi,
)
from actors.edge import EDGE_NAME, Edge, EdgeAddress
from actors.instruments.transport import SerialTransport
from actors.pipeline.recorder import RecorderActor, StartRun, StopRun
from runtime import Message
from runtime.config import EdgeConfig, parse_config
from runtime.gc_policy import freeze_startup_heap
from supervisors import ActorSpec
from supervisors.bench import Bench, open_bench

HERE = Path(__file__).resolve().parent
CONCURRENCY = 8


async def load(address: str, seconds: float) -> float:
    host, port = address.rsplit(":", 1)
    done = await trio.run_process(
        [sys.executable, str(HERE / "_grpc_load.py"), "load", host, port, str(seconds),
         str(CONCURRENCY)],
        capture_stdout=True,
    )  # fmt: skip
    return float(json.loads(done.stdout)["calls_per_s"])


class Lines:
    """Lines from a trio receive stream (the e-stop client's stdout)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def line(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(4096)
            if not chunk:
                raise RuntimeError("the e-stop client died; see its traceback above")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


class EstopClient:
    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self.lines = Lines(process.stdout)

    async def send(self) -> float:
        await self._stdin.send_all(b"go\n")
        return float(await self.lines.line())

    async def wait_reply(self) -> None:
        assert await self.lines.line() == "done"


async def frames_mb_per_s(address: str, seconds: float) -> float:
    host, port = address.rsplit(":", 1)
    done = await trio.run_process(
        [sys.executable, str(HERE / "_grpc_load.py"), "frames", host, port, str(seconds)],
        capture_stdout=True,
    )
    return float(json.loads(done.stdout)["mb_per_s"])


class FrameSource(DeviceActor):
    """A camera that is never the bottleneck: a full frame every 2 ms (the same array each
    time, read-only), so the figure is the edge's ceiling for 8 MiB frames."""

    driver = "benchmark_frames"
    capabilities = (Capability.FRAME_PRODUCER,)
    stream_names = ("frames",)

    async def on_start(self) -> None:
        pixels = (np.arange(2048 * 2048, dtype=np.uint16) % 4096).reshape(2048, 2048)
        pixels.flags.writeable = False
        self.nursery.start_soon(self._produce, pixels)

    async def handle(self, message: Message) -> object:
        if isinstance(message, GetAcquisitionStatus):  # FrameProducers answer it
            return AcquisitionStatus(True, None, 0, 0, 0, 0, 500.0, "")
        return await super().handle(message)

    async def _produce(self, pixels: np.ndarray) -> None:
        roi, number = Roi(0, 0, 2048, 2048), 0
        while True:
            await trio.sleep(0.002)
            number += 1
            self.stream("frames").publish(Frame(number, time.time(), 1.0, roi, 16, pixels))


class TimedCamera(DeviceActor):
    """A camera stand-in with its own frame clock and a small on-board buffer: frame ``n`` is
    made at ``n * period``; frames the daemon has not collected ``buffer`` periods later are
    lost (a gap in the numbers, which a run counts as missing). It ignores the e-stop."""

    driver = "benchmark_timed_camera"
    capabilities = (Capability.FRAME_PRODUCER,)
    stream_names = ("frames",)
    period = 0.01
    buffer = 16

    def __init__(self) -> None:
        self.lost = 0

    async def on_start(self) -> None:
        pixels = (np.arange(512 * 512, dtype=np.uint16) % 4096).reshape(512, 512)
        pixels.flags.writeable = False
        self.nursery.start_soon(self._produce, pixels)

    async def handle(self, message: Message) -> object:
        if isinstance(message, GetAcquisitionStatus):
            return AcquisitionStatus(True, None, 0, 0, 0, 0, 1 / self.period, "")
        if isinstance(message, GetFrameGeometry):
            return FrameGeometry(Roi(0, 0, 512, 512), 16)
        return await super().handle(message)

    async def _produce(self, pixels: np.ndarray) -> None:
        roi, start, last = Roi(0, 0, 512, 512), trio.current_time(), 0
        while True:
            await trio.sleep_until(start + (last + 1) * self.period)
            now = int((trio.current_time() - start) / self.period)
            first = max(last + 1, now - self.buffer + 1)
            self.lost += first - last - 1
            for number in range(first, now + 1):
                self.stream("frames").publish(Frame(number, time.time(), 1.0, roi, 16, pixels))
            last = now


async def estop_sample(bench: Bench, arrivals: Arrivals, client: EstopClient | None) -> float:
    async with move_in_flight(bench):
        if client is None:
            sent = time.perf_counter()
            await bench.system.emergency_stop("benchmark")
        else:
            sent = await client.send()
            await client.wait_reply()
    times = await arrivals.stop_times(sent)
    return max(times.values()) - sent


async def measure(
    quick: bool, directory: str, arrivals: Arrivals, baseline: str, loop_baseline: str
) -> dict[str, object]:
    rounds, seconds, samples = (2, 0.5, 6) if quick else (5, 3.0, 50)
    edge_rates, plain_rates, loop_rates, rpc, direct = [], [], [], [], []
    edge_frames: list[float] = []
    plain_frames: list[float] = []
    config = parse_config(BENCH.format(directory=directory), "<benchmark bench>")
    spec = ActorSpec(EDGE_NAME, lambda: Edge(EdgeConfig(port=0), bench="benchmark"))
    camera = ActorSpec("camera", FrameSource)
    async with open_bench(config, services=[camera, spec]) as bench:
        address = await bench.system.ref(EDGE_NAME).ask(EdgeAddress())
        for _ in range(rounds):  # interleaved, so drift affects all alike
            plain_rates.append(await load(baseline, seconds))
            loop_rates.append(await load(loop_baseline, seconds))
            edge_rates.append(await load(address, seconds))
            plain_frames.append(await frames_mb_per_s(baseline, seconds))
            edge_frames.append(await frames_mb_per_s(address, seconds))
        host, port = address.rsplit(":", 1)
        command = [sys.executable, str(HERE / "_grpc_load.py"), "estop", host, port]
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            client = EstopClient(process)
            assert await client.lines.line() == "ready"
            for _ in range(samples):  # interleaved
                rpc.append(await estop_sample(bench, arrivals, client))
                direct.append(await estop_sample(bench, arrivals, None))
        finally:
            process.kill()
            await process.wait()
        await bench.system.reset_emergency_stop("done")
    edge_rate, plain_rate = statistics.median(edge_rates), statistics.median(plain_rates)
    loop_rate = statistics.median(loop_rates)
    return {
        "unary_ratio": round(edge_rate / plain_rate, 3),
        "edge_calls_per_s": round(edge_rate),
        "plain_grpclib_calls_per_s": round(plain_rate),
        "loop_ratio": round(loop_rate / plain_rate, 3),
        "trio_asyncio_echo_calls_per_s": round(loop_rate),
        "edge_vs_loop_ratio": round(edge_rate / loop_rate, 3),
        "frames_ratio": round(statistics.median(edge_frames) / statistics.median(plain_frames), 3),
        "edge_frames_mb_per_s": round(statistics.median(edge_frames)),
        "plain_frames_mb_per_s": round(statistics.median(plain_frames)),
        "estop_rpc_p99_ms": round(p99(rpc) * 1e3, 3),
        "estop_rpc_p50_ms": round(statistics.median(rpc) * 1e3, 3),
        "estop_direct_p99_ms": round(p99(direct) * 1e3, 3),
        "goals_met": {
            "unary_ratio>=0.7": edge_rate / plain_rate >= 0.7,
            "frames_ratio>=0.8": statistics.median(edge_frames) / statistics.median(plain_frames)
            >= 0.8,
            "estop_rpc_p99_ms<=2": p99(rpc) * 1e3 <= 2.0,
        },
        "settings": {
            "rounds": rounds,
            "seconds_per_round": seconds,
            "calls_in_flight": CONCURRENCY,
            "estop_samples": samples,
        },
        "machine": machine(),
    }


HOSTILE_CLIENTS = 50
RECORDER = "camera.recorder"
ESTOP_PERIOD = 0.1


async def lines_of(process: trio.Process, into: list[dict[str, object]]) -> None:
    assert process.stdout is not None
    lines = Lines(process.stdout)
    while True:
        try:
            into.append(json.loads(await lines.line()))
        except RuntimeError:
            return  # the process ended


def record_writes(into: list[tuple[str, float]]) -> None:
    """Instrument the transport (benchmark only): when each stop command's write returned."""
    write = SerialTransport.write
    stops = {c for commands in STOP_BYTES.values() for c in commands}

    async def timed(self: SerialTransport, command: bytes, *, terminate: bool = True) -> None:
        await write(self, command, terminate=terminate)
        if command in stops:
            into.append((command.decode(), time.perf_counter()))

    SerialTransport.write = timed  # type: ignore[method-assign]


async def collect_arrivals(arrivals: Arrivals, into: list[tuple[str, float]]) -> None:
    while True:
        name, _, arrived = (await arrivals.line()).partition("|")
        into.append((name, float(arrived)))


def estop_latencies(
    stops: list[dict[str, object]], arrived: list[tuple[str, float]]
) -> tuple[list[float], list[float], int]:
    """Per e-stop: (daemon arrival -> last stop bytes, client send -> last stop bytes), and
    how many e-stops did not reach every device; ``arrived``: (command, when) — written by the
    driver, or seen by a simulator."""
    offset = float(stops[0]["unix_minus_perf"])  # type: ignore[arg-type]
    samples = [s for s in stops if "sent" in s]
    expected = {c.decode() for commands in STOP_BYTES.values() for c in commands}
    from_daemon, from_client, incomplete = [], [], 0
    for index, sample in enumerate(samples):
        sent = float(sample["sent"])  # type: ignore[arg-type]
        until = float(samples[index + 1]["sent"]) if index + 1 < len(samples) else math.inf  # type: ignore[arg-type]
        first: dict[str, float] = {}
        for name, when in arrived:
            if sent <= when < until:
                first.setdefault(name, when)
        if set(first) != expected:
            incomplete += 1
            continue
        last = max(first.values())
        received = float(sample["received_at"]) - offset  # type: ignore[arg-type]
        from_daemon.append(last - received)
        from_client.append(last - sent)
    return from_daemon, from_client, incomplete


async def estop_phase(address: str, seconds: float) -> list[dict[str, object]]:
    """Run the e-stop client (an e-stop every ESTOP_PERIOD, then a reset) for ``seconds``."""
    host, port = address.rsplit(":", 1)
    command = [sys.executable, str(HERE / "_grpc_load.py"), "estop-loop", host, port]
    process = await trio.lowlevel.open_process(
        [*command, str(seconds), str(ESTOP_PERIOD)], stdout=subprocess.PIPE
    )
    stops: list[dict[str, object]] = []
    await lines_of(process, stops)
    await process.wait()
    return stops


def ms(values: list[float], scale: float = 1e3) -> float:
    return round(p99(values) * scale, 3) if values else math.nan


async def hostile_mode(quick: bool, directory: str, arrivals: Arrivals) -> dict[str, object]:
    quiet_seconds, seconds = (2.0, 6.0) if quick else (10.0, 30.0)
    config = parse_config(BENCH.format(directory=directory), "<benchmark bench>")
    runs = Path(directory) / "runs"
    services = [
        ActorSpec("camera", TimedCamera),
        # The bench's own recorder has no camera (BENCH has none): this one records ours.
        ActorSpec(RECORDER, lambda: RecorderActor(runs, camera="camera", min_free_mb=0)),
        ActorSpec(EDGE_NAME, lambda: Edge(EdgeConfig(port=0), bench="benchmark")),
    ]
    arrived: list[tuple[str, float]] = []
    written: list[tuple[str, float]] = []
    record_writes(written)
    hostile: list[dict[str, object]] = []
    async with open_bench(config, services=services) as bench, trio.open_nursery() as nursery:
        nursery.start_soon(collect_arrivals, arrivals, arrived)
        address = await bench.system.ref(EDGE_NAME).ask(EdgeAddress())
        freeze_startup_heap()  # as the daemon does once its bench is up (runtime/gc_policy.py)
        host, port = address.rsplit(":", 1)
        recorder = bench.system.ref(RECORDER)
        await recorder.ask(StartRun("hostile", metadata={"benchmark": "edge --hostile"}))
        quiet = await estop_phase(address, quiet_seconds)  # the baseline: no hostile client
        load = [sys.executable, str(HERE / "_grpc_load.py"), "hostile", host, port]
        processes = [
            await trio.lowlevel.open_process(
                [*load, str(seconds + 1.0), str(HOSTILE_CLIENTS // 2)], stdout=subprocess.PIPE
            )
            for _ in range(2)
        ]
        async with trio.open_nursery() as readers:
            for process in processes:
                readers.start_soon(lines_of, process, hostile)
            await trio.sleep(0.5)  # the hostile clients are connected and busy
            stops = await estop_phase(address, seconds - 0.5)
        for process in processes:
            await process.wait()
        status = await recorder.ask(StopRun("benchmark done"), timeout=60)
        await bench.system.reset_emergency_stop("done")
        nursery.cancel_scope.cancel()
    from_daemon, from_client, incomplete = estop_latencies(stops, written)
    wire_daemon, wire_client, _ = estop_latencies(stops, arrived)
    quiet_daemon, quiet_client, _ = estop_latencies(quiet, written)
    dispatch = [float(s["dispatch_ms"]) for s in stops if "dispatch_ms" in s]  # type: ignore[arg-type]
    reply = [float(s["replied"]) - float(s["sent"]) for s in stops if "sent" in s]  # type: ignore[arg-type]
    sent = sum(int(h["sent"]) for h in hostile)  # type: ignore[call-overload]
    unanswered = sum(int(h["unanswered"]) for h in hostile)  # type: ignore[call-overload]
    statuses: dict[str, int] = {}
    for h in hostile:
        for code, count in h["statuses"].items():  # type: ignore[attr-defined]
            statuses[code] = statuses.get(code, 0) + count
    lost = status.frames_dropped + status.frames_missing
    return {
        "hostile_estop_p99_ms": ms(from_daemon),
        "hostile_estop_p50_ms": round(statistics.median(from_daemon) * 1e3, 3),
        "hostile_estop_client_p99_ms": ms(from_client),
        "hostile_estop_client_p50_ms": round(statistics.median(from_client) * 1e3, 3),
        "hostile_estop_quiet_p99_ms": ms(quiet_daemon),
        "hostile_estop_quiet_client_p99_ms": ms(quiet_client),
        "hostile_estop_dispatch_p99_ms": ms(dispatch, 1.0),
        "hostile_estop_simulator_p99_ms": ms(wire_daemon),
        "hostile_estop_simulator_client_p99_ms": ms(wire_client),
        "hostile_estop_reply_p99_ms": ms(reply),
        "hostile_estop_samples": len(from_daemon),
        "hostile_estop_incomplete": incomplete,
        "hostile_frames_lost": lost,
        "hostile_frames_written": status.frames_written,
        "hostile_unanswered": unanswered,
        "hostile_requests": sent,
        "hostile_requests_per_s": round((sent - unanswered) / seconds),
        "hostile_statuses": statuses,
        "hostile_goals_met": {
            "hostile_estop_p99_ms<=10": ms(from_daemon) <= 10.0,
            "hostile_estop_client_p99_ms<=10": ms(from_client) <= 10.0,
            "hostile_frames_lost==0": lost == 0,
            "hostile_unanswered==0": unanswered == 0,
        },
        "hostile_settings": {
            "clients": HOSTILE_CLIENTS,
            "seconds": seconds,
            "quiet_seconds": quiet_seconds,
            "hostile_nice": 10,
            "estop_period_s": ESTOP_PERIOD,
            "frame": "512x512 uint16 every 10 ms, 16-frame buffer",
        },
    }


async def measure_all(
    quick: bool, hostile_only: bool, directory: str, read_fd: int, servers: tuple[str, str]
) -> dict[str, object]:
    plain, loop = servers
    arrivals = Arrivals(read_fd)
    try:
        assert await arrivals.line() == "ready"
        result = (
            {"machine": machine()}
            if hostile_only
            else await measure(quick, directory, arrivals, plain, loop)
        )
        hostile = await hostile_mode(quick, directory, arrivals)
    finally:
        await arrivals.aclose()
    goals: dict[str, object] = dict(result.get("goals_met", {}))  # type: ignore[call-overload]
    goals.update(hostile.pop("hostile_goals_met"))  # type: ignore[call-overload]
    return {**result, **hostile, "goals_met": goals}


def run(quick: bool, hostile_only: bool = False) -> dict[str, object]:
    logging.basicConfig(level=logging.ERROR)  # e-stops log warnings by design; not here
    directory = tempfile.mkdtemp(prefix="benchd-edge-")
    read_fd, write_fd = os.pipe()
    simulators = multiprocessing.get_context("fork").Process(
        target=serve_simulators, args=(directory, write_fd), daemon=True
    )
    simulators.start()
    os.close(write_fd)
    servers = [
        subprocess.Popen(
            [sys.executable, str(HERE / "_grpc_load.py"), mode], stdout=subprocess.PIPE, text=True
        )
        for mode in ("serve", "serve-trio-asyncio")
    ]
    try:
        plain, loop = (f"127.0.0.1:{s.stdout.readline().strip()}" for s in servers if s.stdout)
        return trio.run(measure_all, quick, hostile_only, directory, read_fd, (plain, loop))
    finally:
        for server in servers:
            server.kill()
            server.wait()
        simulators.kill()
        simulators.join()
        shutil.rmtree(directory, ignore_errors=True)  # hostile runs write gigabytes


if __name__ == "__main__":
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--hostile", action="store_true")
    known, sys.argv[1:] = options.parse_known_args()
    run_benchmark(__doc__.splitlines()[0], functools.partial(run, hostile_only=known.hostile))
