"""The acquisition layer's figures against baselines measured in the same run.

    python benchmarks/plans.py [--quick] [--json]

A synthetic bench (``synthetic_motor`` with no velocity or settle, ``synthetic_peak`` over it)
in a temporary directory, so the figures measure the layer and not a serial line.

* plan_ratio: points per second of a 1-D line plan run by the executor (validated, recorded as
  a run: the row to the recorder, the table, one event per point, the status) over a bare trio
  loop asking the same actors the same things for the same file (``MoveAbsolute``, ``Read``,
  ``RecordScanPoint`` inside a run with the same scan columns) (goal >= 0.8).
  ``plan_vs_unrecorded_ratio`` is against the loop without a run (moves and reads only): what
  recording costs on top. Rates are over the points (first to last), interleaved rounds,
  median of the per-round ratios; ``plan_start_stop_ms`` is what a plan adds around its
  points (validation, the run's file opened and closed).
* bluesky_speedup: the same points through Bluesky's RunEngine ``scan`` over ophyd-async soft
  devices (an instant ``SimMotor`` and a soft-signal detector; no subscribers), points per
  second from its event documents, against the plan's (goal >= 10).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import machine, run_benchmark
from bluesky import RunEngine
from bluesky.plans import scan
from ophyd_async.core import (
    StandardReadable,
    StandardReadableFormat,
    init_devices,
    soft_signal_r_and_setter,
)
from ophyd_async.sim import SimMotor

from actors.acquisition import (
    EXECUTOR_NAME,
    CreatePlan,
    Line,
    Plan,
    PlanEvents,
    PlanState,
    Point,
    Span,
    WatchPlan,
)
from actors.capabilities import MoveAbsolute, Read
from actors.pipeline.recorder import RECORDER_NAME, RecordScanPoint, StartRun, StopRun
from runtime.config import parse_config
from supervisors.bench import Bench, open_bench

BENCH = """
[bench]
name = "plans-benchmark"

[storage]
directory = "{directory}"
min_free_mb = 1
ring_slots = 0

[[device]]
id = "motor"
driver = "synthetic_motor"
port = "sim"
options = {{ limits = [-1000.0, 1000.0] }}

[[device]]
id = "detector"
driver = "synthetic_peak"
port = "sim"
options = {{ motor = "motor", centre = 10.0, width = 5.0, amplitude = 100.0, noise = 0.1 }}
"""


RUNS = itertools.count()
COLUMNS = ("point", "motor", "detector", "attempts", "suspended_s")  # the plan's scan columns


def positions(points: int) -> list[float]:
    return [-50.0 + 100.0 * i / (points - 1) for i in range(points)]


async def bare_loop(bench: Bench, points: int, *, recorded: bool = True) -> float:
    """Points per second of the loop a user would write against the same actors: with
    ``recorded``, inside a run with the plan's scan columns, each row sent to the recorder
    (the same file a plan makes); without, moves and reads only."""
    motor, detector = bench.system.ref("motor"), bench.system.ref("detector")
    recorder = bench.system.ref(RECORDER_NAME)
    if recorded:
        name = f"bare-loop-{next(RUNS)}"  # run files are named by the second: never collide
        await recorder.ask(StartRun(name, scan_columns=COLUMNS, record_frames=False))
    began = time.perf_counter()
    try:
        for index, x in enumerate(positions(points)):
            reached = await motor.ask(MoveAbsolute(x))
            reading = await detector.ask(Read())
            if recorded:
                row = {"point": float(index), "motor": reached, "detector": reading.value,
                       "attempts": 1.0, "suspended_s": 0.0}  # fmt: skip
                await recorder.ask(RecordScanPoint(row, reading.timestamp))
        return (points - 1) / (time.perf_counter() - began)
    finally:
        if recorded:
            await recorder.ask(StopRun("benchmark"), timeout=60)


async def plan_rate(bench: Bench, points: int) -> tuple[float, float]:
    """(points per second over the points, ms the plan spent around them)."""
    executor = bench.system.ref(EXECUTOR_NAME)
    plan = Plan(Line((Span("motor", -50.0, 50.0),), points), read=("detector",), name="bench")
    began = time.time()
    created = await executor.ask(CreatePlan(plan, "benchmark", start=True))
    subscription = await executor.ask(WatchPlan(created.id))
    async for sample in subscription:
        if sample.value.state.finished:
            status = sample.value
            break
    ended = time.time()
    if status.state is not PlanState.COMPLETED:
        raise RuntimeError(f"the benchmark plan failed: {status.error}")
    log = await executor.ask(PlanEvents(created.id))
    times = []
    async for event in log.follow(0):
        if isinstance(event.body, Point):
            times.append(event.body.time)
    rate = (len(times) - 1) / (times[-1] - times[0])
    around = (ended - began) - (times[-1] - times[0])
    return rate, around * 1e3


class SoftDetector(StandardReadable):
    """An ophyd-async detector with one soft signal: the cheapest readable Bluesky has."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.value, self._set_value = soft_signal_r_and_setter(float, 0.0)
        super().__init__(name=name)


def bluesky_rate(points: int) -> float:
    """Points per second of Bluesky's RunEngine ``scan`` over ophyd-async soft devices."""
    engine = RunEngine(call_returns_result=True)
    with init_devices():
        motor = SimMotor(instant=True)
        detector = SoftDetector()
    times: list[float] = []

    def collect(name: str, document: dict[str, Any]) -> None:
        if name == "event":
            times.append(document["time"])

    engine(scan([detector], motor, -50.0, 50.0, points), collect)
    engine.loop.call_soon_threadsafe(engine.loop.stop)
    return (len(times) - 1) / (times[-1] - times[0])


def measure(quick: bool) -> dict[str, object]:
    points = 500 if quick else 5000
    rounds = 2 if quick else 5

    async def main() -> dict[str, object]:
        with tempfile.TemporaryDirectory(prefix="benchd-plans-") as directory:
            config = parse_config(BENCH.format(directory=directory), "plans-benchmark.toml")
            async with open_bench(config) as bench:
                await bare_loop(bench, 200)  # warm up both paths
                await plan_rate(bench, 200)
                ratios, unrecorded, plans, bares, around = [], [], [], [], []
                for _ in range(rounds):
                    bare = await bare_loop(bench, points)
                    rate, extra = await plan_rate(bench, points)
                    plain = await bare_loop(bench, points, recorded=False)
                    ratios.append(rate / bare)
                    unrecorded.append(rate / plain)
                    plans.append(rate)
                    bares.append(bare)
                    around.append(extra)
                return {
                    "plan_ratio": round(statistics.median(ratios), 3),
                    "plan_vs_unrecorded_ratio": round(statistics.median(unrecorded), 3),
                    "plan_points_per_s": round(statistics.median(plans)),
                    "bare_points_per_s": round(statistics.median(bares)),
                    "plan_start_stop_ms": round(statistics.median(around), 1),
                }

    result = trio.run(main)
    blue = statistics.median(bluesky_rate(points) for _ in range(max(1, rounds // 2)))
    result["bluesky_points_per_s"] = round(blue)
    plan_points = float(result["plan_points_per_s"])  # type: ignore[arg-type]
    result["bluesky_speedup"] = round(plan_points / blue, 1)
    result["points"] = points
    result["goals_met"] = (
        float(result["plan_ratio"]) >= 0.8 and float(result["bluesky_speedup"]) >= 10  # type: ignore[arg-type]
    )
    result["machine"] = machine()
    return result


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)  # bluesky brings its own loop; trio runs the rest
    run_benchmark(__doc__ or "", measure)
