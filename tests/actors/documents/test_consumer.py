"""Every run kind's documents, live and rebuilt, as a third-party Bluesky consumer takes them
(tests/actors/documents/consumer.py): count, line, grid, list, adaptive, tune, a recording with
frames, readings only, and runs that ended by e-stop, abort and disk full."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from actors.acquisition import (
    Adaptive,
    Count,
    Grid,
    GridAxis,
    Line,
    ListScan,
    Plan,
    Span,
    Tune,
)
from actors.pipeline.recorder import RECORDER_NAME, StartRun, StopRun, wait_run
from runtime import SetParameter, Source

from .conftest import Collector, bench_config, of, one_run, rebuilt, run_plan, small_bench
from .consumer import audit

SECOND_AXIS = '\n[[device]]\nid = "y"\ndriver = "synthetic_motor"\nport = "sim"\n'


async def test_every_plan_kind_as_a_consumer_takes_it(tmp_path: Path) -> None:
    metadata = json.dumps({"sample": "quartz"})
    plans = [
        Plan(Count(num=3), read=("peak",), frames=1, metadata_json=metadata),
        Plan(Line((Span("x", 0.0, 2.0),), 4), read=("peak",), frames=2),
        Plan(
            Grid((GridAxis("x", 0.0, 1.0, 2), GridAxis("y", 0.0, 1.0, 2, snake=True))),
            read=("peak",),
        ),
        Plan(ListScan(("x",), ((0.0, 1.5, 0.5),)), read=("peak",)),
        Plan(Adaptive("x", 0.0, 2.0, "peak", 1.0, 0.2, 1.0), read=("peak",)),
        Plan(Tune("x", 0.0, 2.0, 5, "peak")),
    ]
    collector = Collector()
    async with small_bench(bench_config(tmp_path / "runs", extra=SECOND_AXIS)) as bench:
        async with trio.open_nursery() as nursery:
            await nursery.start(collector.run, bench)
            paths = [await run_plan(bench, plan) for plan in plans]
            live = await collector.wait_stops(len(plans))
            nursery.cancel_scope.cancel()
        audited = 0
        for path, start in zip(paths, of(live, "start"), strict=True):
            audit(one_run(live, start["uid"]))
            audit(await rebuilt(bench, path))
            audited += 1
    assert audited == len(plans)


async def test_recordings_and_runs_that_failed_as_a_consumer_takes_them(tmp_path: Path) -> None:
    """Frames alone, readings alone (a fast signal: event pages), a plan aborted, a run
    e-stopped and one ended by a full disk: live and rebuilt."""
    collector = Collector()
    async with small_bench(bench_config(tmp_path / "runs", rate=200.0)) as bench:
        recorder = bench.system.ref(RECORDER_NAME)
        async with trio.open_nursery() as nursery:
            await nursery.start(collector.run, bench)
            paths = [(await recorder.ask(StartRun("frames", frames=6))).path]
            await wait_run(recorder)
            quiet = StartRun("quiet", duration=0.3, record_frames=False)
            paths.append((await recorder.ask(quiet)).path)
            await wait_run(recorder)
            counting = Plan(Count(num=50, interval=0.05), read=("peak",), frames=1)
            paths.append(await run_plan(bench, counting, abort_after=3))
            paths.append((await recorder.ask(StartRun("incident", duration=60.0))).path)
            await bench.system.emergency_stop("test incident", by="tests")
            await recorder.ask(StopRun("after the incident"))
            await bench.system.reset_emergency_stop("test")
            paths.append((await recorder.ask(StartRun("filling", duration=60.0))).path)
            await recorder.ask(SetParameter("min_free_mb", 1e9, Source.USER))  # the disk "fills"
            await wait_run(recorder)
            live = await collector.wait_stops(5)
            nursery.cancel_scope.cancel()
        stops = []
        for path, start in zip(paths, of(live, "start"), strict=True):
            mine = one_run(live, start["uid"])
            audit(mine)
            audit(await rebuilt(bench, path))
            (stop,) = of(mine, "stop")
            stops.append((stop["exit_status"], stop["benchd"]["outcome"]))
    assert stops == [
        ("success", "completed"),
        ("success", "completed"),
        ("abort", "aborted"),  # an aborted plan aborts its run, as RE.abort() does
        ("fail", "e-stopped"),
        ("fail", "disk full"),
    ]
