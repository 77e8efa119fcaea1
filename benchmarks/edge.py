"""The gRPC edge: unary throughput against plain asyncio grpclib, and the e-stop over gRPC.

    python benchmarks/edge.py [--quick] [--json]

* unary_ratio: Hardware/GetParameter calls per second through the edge (grpclib on the
  trio-asyncio loop inside the edge actor, the request handed to the device actor and back)
  / the same RPC answered by a plain asyncio grpclib server with a fixed reply, measured in the
  same run, interleaved (goal >= 0.7). Both servers run in their own process with the simulated
  bench idle behind the edge; the load (8 calls in flight on one HTTP/2 connection) comes from a
  third process, so the client's CPU is not counted against either server.
* estop_rpc_p99_ms: from the client sending the EmergencyStop RPC to the stop bytes arriving
  at every simulator (ELL14 ``<addr>st`` x3, ESP300 ``AB``, Mai Tai ``SHUT 0``; the slowest
  device per sample), with an ESP300 move in flight; simulators run in a separate process as in
  benchmarks/estop.py. The grpclib client runs in the daemon's process (on its own asyncio
  loop), so its serialisation is counted too. estop_direct_p99_ms is ``emergency_stop()``
  called in the process, measured the same way in the same run: the difference is the gRPC path.
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
import trio_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import machine, p99, run_benchmark
from estop import BENCH, Arrivals, serve_simulators
from grpclib.client import Channel

from actors.capabilities import MoveAbsolute
from actors.edge import EDGE_NAME, Edge, EdgeAddress
from benchd.v1 import estop_grpc
from benchd.v1 import estop_pb2 as pb
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


async def estop_sample(bench: Bench, arrivals: Arrivals, channel: Channel | None) -> float:
    system = bench.system
    axis = system.ref("esp300.axis1")
    await system.reset_emergency_stop("next sample")
    target = 40.0 if (await axis.ask(MoveAbsolute(0.0, wait=False))) < 20 else 0.0
    async with trio.open_nursery() as nursery:

        async def move() -> None:
            try:
                await axis.ask(MoveAbsolute(target), timeout=None)
            except Exception:  # interrupted by the e-stop, as intended
                return

        nursery.start_soon(move)
        await trio.sleep(0.1)
        sent = time.perf_counter()
        if channel is None:
            await system.emergency_stop("benchmark")
        else:
            stub = estop_grpc.EmergencyStopStub(channel)
            request = pb.EmergencyStopRequest(reason="benchmark")
            await trio_asyncio.aio_as_trio(lambda: stub.EmergencyStop(request))()
    times = await arrivals.stop_times(sent)
    return max(times.values()) - sent


async def measure(quick: bool, directory: str, read_fd: int, baseline: str) -> dict[str, object]:
    rounds, seconds, samples = (2, 0.5, 6) if quick else (5, 3.0, 50)
    arrivals = Arrivals(read_fd)
    edge_rates, plain_rates, rpc, direct = [], [], [], []
    try:
        assert await arrivals.line() == "ready"
        config = parse_config(BENCH.format(directory=directory), "<benchmark bench>")
        spec = ActorSpec(EDGE_NAME, lambda: Edge(EdgeConfig(port=0), bench="benchmark"))
        async with open_bench(config, services=[spec]) as bench:
            address = await bench.system.ref(EDGE_NAME).ask(EdgeAddress())
            for _ in range(rounds):  # interleaved, so drift affects both alike
                plain_rates.append(await load(baseline, seconds))
                edge_rates.append(await load(address, seconds))
            host, port = address.rsplit(":", 1)
            async with trio_asyncio.open_loop():
                channel = await trio_asyncio.aio_as_trio(lambda: _channel(host, int(port)))()
                try:
                    for _ in range(samples):
                        rpc.append(await estop_sample(bench, arrivals, channel))
                        direct.append(await estop_sample(bench, arrivals, None))
                finally:
                    channel.close()
            await bench.system.reset_emergency_stop("done")
    finally:
        await arrivals.aclose()
    edge_rate, plain_rate = statistics.median(edge_rates), statistics.median(plain_rates)
    return {
        "unary_ratio": round(edge_rate / plain_rate, 3),
        "edge_calls_per_s": round(edge_rate),
        "plain_grpclib_calls_per_s": round(plain_rate),
        "estop_rpc_p99_ms": round(p99(rpc) * 1e3, 3),
        "estop_rpc_p50_ms": round(statistics.median(rpc) * 1e3, 3),
        "estop_direct_p99_ms": round(p99(direct) * 1e3, 3),
        "goals_met": {
            "unary_ratio>=0.7": edge_rate / plain_rate >= 0.7,
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


async def _channel(host: str, port: int) -> Channel:
    return Channel(host, port)


def run(quick: bool) -> dict[str, object]:
    logging.basicConfig(level=logging.ERROR)  # e-stops log warnings by design; not here
    directory = tempfile.mkdtemp(prefix="benchd-edge-")
    read_fd, write_fd = os.pipe()
    simulators = multiprocessing.get_context("fork").Process(
        target=serve_simulators, args=(directory, write_fd), daemon=True
    )
    simulators.start()
    os.close(write_fd)
    plain = subprocess.Popen(
        [sys.executable, str(HERE / "_grpc_load.py"), "serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert plain.stdout is not None
        baseline = f"127.0.0.1:{plain.stdout.readline().strip()}"
        return trio.run(measure, quick, directory, read_fd, baseline)
    finally:
        plain.kill()
        plain.wait()
        simulators.kill()
        simulators.join()


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run)
