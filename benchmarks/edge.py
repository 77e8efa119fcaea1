"""The gRPC edge: unary throughput against plain asyncio grpclib, and the e-stop over gRPC.

    python benchmarks/edge.py [--quick] [--json]

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
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
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
from estop import BENCH, Arrivals, move_in_flight, serve_simulators

from actors.capabilities import (
    AcquisitionStatus,
    Capability,
    DeviceActor,
    Frame,
    GetAcquisitionStatus,
    Roi,
)
from actors.edge import EDGE_NAME, Edge, EdgeAddress
from runtime import Message
from runtime.config import EdgeConfig, parse_config
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
    quick: bool, directory: str, read_fd: int, baseline: str, loop_baseline: str
) -> dict[str, object]:
    rounds, seconds, samples = (2, 0.5, 6) if quick else (5, 3.0, 50)
    arrivals = Arrivals(read_fd)
    edge_rates, plain_rates, loop_rates, rpc, direct = [], [], [], [], []
    edge_frames: list[float] = []
    plain_frames: list[float] = []
    try:
        assert await arrivals.line() == "ready"
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
    finally:
        await arrivals.aclose()
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


def run(quick: bool) -> dict[str, object]:
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
        return trio.run(measure, quick, directory, read_fd, plain, loop)
    finally:
        for server in servers:
            server.kill()
            server.wait()
        simulators.kill()
        simulators.join()


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run)
