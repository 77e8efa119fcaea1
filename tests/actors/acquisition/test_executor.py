"""The executor on a synthetic bench: a 3-D snake grid, a tune and an adaptive scan recorded as
runs; limits refused before anything moves; pause, stop, abort, e-stop; suspenders."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import h5py
import pyarrow as pa
import pytest
import trio

from actors.acquisition import (
    EXECUTOR_NAME,
    AbortPlan,
    Adaptive,
    CheckPlan,
    Count,
    CreatePlan,
    Ended,
    Grid,
    GridAxis,
    Line,
    ListPlans,
    PausePlan,
    Plan,
    PlanEvents,
    PlanRejected,
    PlanState,
    PlanTable,
    Point,
    ResumePlan,
    Span,
    Started,
    StartPlan,
    StopPlan,
    Suspended,
    Suspender,
    Tune,
    TuneMethod,
)
from actors.acquisition.suspenders import Condition
from actors.capabilities import GetPosition
from actors.pipeline.nexus_file import read_end_record, read_manifest
from runtime import ActorError, SetParameter, WrongState
from supervisors.bench import Bench

from .conftest import finish, run_plan, wait_event


def executor(bench: Bench):  # type: ignore[no-untyped-def]
    return bench.system.ref(EXECUTOR_NAME)


async def test_a_3d_snake_grid_is_one_run_with_one_event_per_point(bench: Bench) -> None:
    grid = Grid(
        (
            GridAxis("z", 0, 1, 2),
            GridAxis("y", -1, 1, 3, snake=True),
            GridAxis("x", 0, 2, 2, snake=True),
        )
    )
    plan = Plan(
        grid, read=("peak", "sine"), settle=0.01, name="grid3d", metadata_json='{"sample": "A1"}'
    )
    status = await run_plan(bench, plan)
    assert status.state is PlanState.COMPLETED, status.error
    assert (status.points_done, status.points_total) == (12, 12)
    log = await executor(bench).ask(PlanEvents(status.id))
    events = [e async for e in log.follow(0)]
    assert [e.seq for e in events] == list(range(len(events)))
    started, *middle, ended = (e.body for e in events)
    assert isinstance(started, Started) and started.columns[:6] == (
        "point",
        "time",
        "z",
        "y",
        "x",
        "peak",
    )
    assert started.units["x"] == "mm" and started.units["z"] == "deg"
    points = [b for b in middle if isinstance(b, Point)]
    assert [p.index for p in points] == list(range(12))
    assert isinstance(ended, Ended) and ended.state == "completed" and ended.points == 12
    # the snake: y reverses each z pass, x reverses each (z, y) pass — and only one axis steps
    xs = [p.positions["x"] for p in points]
    assert xs == [0, 2, 2, 0] * 3
    ys = [p.positions["y"] for p in points]
    assert ys == [-1, -1, 0, 0, 1, 1, 1, 1, 0, 0, -1, -1]
    table = await executor(bench).ask(PlanTable(status.id))
    arrow = pa.ipc.open_stream(table.ipc()).read_all()
    assert arrow.num_rows == 12 and arrow.column("point").to_pylist() == list(range(12))
    assert arrow.schema.field("x").metadata == {b"units": b"mm"}
    assert arrow.column("peak").to_pylist() == [p.readings["peak"] for p in points]
    path = Path(status.run_path)
    assert path.name.endswith("_grid3d.nxs")
    record = read_end_record(path)
    assert (record["scan_points"], record["reason"]) == (12, "scan completed")
    assert record["status"] == "completed"
    metadata = read_manifest(path)["metadata"]
    assert metadata["sample"] == "A1" and metadata["plan_id"] == status.id
    assert metadata["scan"]["kind"] == "grid" and metadata["scan"]["axes"][2]["snake"]
    with h5py.File(path, "r") as f:
        assert list(f["entry/scan/point/value"]) == list(range(12))
        assert list(f["entry/scan/x/value"]) == xs
        assert list(f["entry/scan/attempts/value"]) == [1] * 12


async def test_tune_moves_to_the_peak_and_reports_it(bench: Bench) -> None:
    for method in TuneMethod:
        plan = Plan(Tune("x", -4, 6, 41, "peak", method))
        status = await run_plan(bench, plan)
        assert status.state is PlanState.COMPLETED, status.error
        assert status.result["found"] and status.result["centre"] == pytest.approx(1.25, abs=0.15)
        where = await bench.system.ref("x").ask(GetPosition())
        assert where == pytest.approx(status.result["centre"])
    # no peak in range: the tune says so and the axis goes back where it was
    await bench.system.ref("x").ask(SetParameter("velocity", 50.0))
    status = await run_plan(bench, Plan(Tune("x", -9, -7, 5, "peak", TuneMethod.GAUSSIAN)))
    assert status.state is PlanState.ERROR and status.error.startswith("tune found no peak")
    assert await bench.system.ref("x").ask(GetPosition()) == pytest.approx(where)


async def test_an_adaptive_scan_crowds_its_points_on_the_peak(bench: Bench) -> None:
    plan = Plan(Adaptive("x", -6, 8, "peak", target_delta=8.0, min_step=0.05, max_step=2.0))
    status = await run_plan(bench, plan)
    assert status.state is PlanState.COMPLETED, status.error
    table = await executor(bench).ask(PlanTable(status.id))
    xs = table.column("x")
    assert xs[0] == -6 and xs[-1] == 8 and xs == sorted(xs)
    steps = [(a, b - a) for a, b in itertools.pairwise(xs)]
    near = [step for x, step in steps if 0 <= x <= 2.5]
    far = [step for x, step in steps if x <= -3 or x >= 5]
    assert statistics.median(near) < 0.4  # dense on the peak
    assert max(far) > 1.5  # coarse off it
    assert status.points_done == len(xs) < status.points_total


async def test_a_plan_past_a_limit_is_refused_before_anything_moves(bench: Bench) -> None:
    before = {axis: await bench.system.ref(axis).ask(GetPosition()) for axis in ("x", "z")}
    plan = Plan(Line((Span("x", 0, 12), Span("z", -0.5, 1)), 4), read=("peak", "nope"))
    with pytest.raises(ActorError) as caught:
        await executor(bench).ask(CreatePlan(plan, "test", start=True))
    rejected = caught.value.root_cause
    assert isinstance(rejected, PlanRejected)
    messages = [str(p) for p in rejected.problems]
    assert "path.axes[0]: x: 12 mm is above its travel -10 to 10 mm" in messages
    assert "path.axes[1]: z: -0.5 deg is below its travel 0 to 2 deg" in messages
    assert any(m.startswith("read[1]: no device named 'nope'") for m in messages)
    assert {p.device for p in rejected.problems} >= {"x", "z"}
    assert await executor(bench).ask(ListPlans()) == ()
    assert {axis: await bench.system.ref(axis).ask(GetPosition()) for axis in ("x", "z")} == before
    assert not list(bench.config.storage.directory.glob("*.nxs"))  # no run was started
    check = await executor(bench).ask(CheckPlan(plan))
    assert len(check.problems) == 3 and check.estimate is None
    relative = Plan(Line((Span("x", -1, 1),), 3, relative=True))
    await bench.system.ref("x").ask(SetParameter("velocity", 100.0))
    from actors.capabilities import MoveAbsolute

    await bench.system.ref("x").ask(MoveAbsolute(9.5))
    check = await executor(bench).ask(CheckPlan(relative))
    assert [str(p) for p in check.problems] == [
        "path.axes[0]: x: 10.5 mm is above its travel -10 to 10 mm"
    ]


async def test_a_relative_line_returns_and_a_count_keeps_time(bench: Bench) -> None:
    from actors.capabilities import MoveAbsolute

    await bench.system.ref("y").ask(MoveAbsolute(2.0))
    status = await run_plan(
        bench, Plan(Line((Span("y", -1, 1),), 5, relative=True), read=("sine",))
    )
    assert status.state is PlanState.COMPLETED
    table = await executor(bench).ask(PlanTable(status.id))
    assert table.column("y") == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert await bench.system.ref("y").ask(GetPosition()) == 2.0  # back where it started
    status = await run_plan(bench, Plan(Count(5, interval=0.1), read=("sine",)))
    assert status.state is PlanState.COMPLETED and status.points_done == 5
    log = await executor(bench).ask(PlanEvents(status.id))
    starts = [e.body.started async for e in log.follow(0) if isinstance(e.body, Point)]
    assert starts[-1] - starts[0] >= 0.4 - 0.005  # point i starts i * interval after the first
    status = await run_plan(bench, Plan(Count(0, interval=0.05, duration=0.3), read=("sine",)))
    assert status.state is PlanState.COMPLETED and 1 <= status.points_done <= 7
    assert status.points_total == 0  # open-ended: the duration ends it


async def test_pause_resume_stop_and_abort_act_at_the_right_moment(bench: Bench) -> None:
    plan = Plan(Line((Span("x", 0, 5),), 11), read=("peak",), settle=0.02)
    created = await executor(bench).ask(CreatePlan(plan, "test"))
    assert created.state is PlanState.CREATED
    await executor(bench).ask(StartPlan(created.id))
    with pytest.raises(ActorError) as caught:
        await executor(bench).ask(StartPlan(created.id))
    assert isinstance(caught.value.root_cause, WrongState)
    await wait_event(bench, created.id, lambda e: isinstance(e.body, Point) and e.body.index == 2)
    await executor(bench).ask(PausePlan(created.id))
    paused = await wait_event(bench, created.id, lambda e: type(e.body).__name__ == "Paused")
    status = await executor(bench).ask(ListPlans())
    assert status[0].state is PlanState.PAUSED
    done = status[0].points_done
    await trio.sleep(0.3)
    assert (await executor(bench).ask(ListPlans()))[0].points_done == done  # it waits
    await executor(bench).ask(ResumePlan(created.id))
    await wait_event(bench, created.id, lambda e: isinstance(e.body, Point) and e.body.index == 6)
    stopped = await executor(bench).ask(StopPlan(created.id, "enough"))
    final = await finish(bench, created.id)
    assert final.state is PlanState.STOPPED and final.error == "enough"
    assert 7 <= final.points_done < 11 and paused.seq > 0 and stopped.id == created.id
    record = read_end_record(Path(final.run_path))
    assert (record["reason"], record["status"]) == ("enough", "stopped")
    # an abort cuts the move in flight and the axis stops where it is
    await bench.system.ref("x").ask(SetParameter("velocity", 1.0))
    slow = await executor(bench).ask(CreatePlan(Plan(Line((Span("x", 0, 8),), 3)), "t", start=True))
    await wait_event(bench, slow.id, lambda e: isinstance(e.body, Point))
    await trio.sleep(0.2)  # on its way to 4 mm (4 s away)
    await executor(bench).ask(AbortPlan(slow.id, "test abort"))
    final = await finish(bench, slow.id)
    assert final.state is PlanState.ABORTED and final.error == "test abort"
    where = await bench.system.ref("x").ask(GetPosition())
    await trio.sleep(0.2)
    assert await bench.system.ref("x").ask(GetPosition()) == where < 4.0


async def test_an_emergency_stop_aborts_the_plan_and_the_queue(bench: Bench) -> None:
    await bench.system.ref("x").ask(SetParameter("velocity", 1.0))
    plan = Plan(Line((Span("x", 0, 8),), 3))
    first = await executor(bench).ask(CreatePlan(plan, "t", start=True))
    second = await executor(bench).ask(CreatePlan(plan, "t", start=True))
    assert second.state is PlanState.PENDING
    await wait_event(bench, first.id, lambda e: isinstance(e.body, Point))
    await bench.system.emergency_stop("test e-stop")
    for plan_id in (first.id, second.id):
        final = await finish(bench, plan_id)
        assert final.state is PlanState.ABORTED and final.error.startswith("emergency stop")
    first_final = await finish(bench, first.id)
    record = read_end_record(Path(first_final.run_path))
    assert record["reason"].startswith("emergency stop") and record["status"] == "e-stopped"
    with pytest.raises(ActorError) as caught:
        await executor(bench).ask(CreatePlan(plan, "t", start=True))
    assert "latched" in str(caught.value.root_cause)
    await bench.system.reset_emergency_stop("test")


async def test_a_suspender_holds_the_plan_and_the_interrupted_point_is_repeated(
    bench: Bench,
) -> None:
    suspender = Suspender("sine.amplitude", Condition.BELOW, 0.5, settle=0.2)
    plan = Plan(Line((Span("y", 0, 4),), 9), read=("sine",), settle=0.02, suspenders=(suspender,))
    created = await executor(bench).ask(CreatePlan(plan, "t", start=True))
    await wait_event(bench, created.id, lambda e: isinstance(e.body, Point) and e.body.index == 2)
    await bench.system.ref("sine").ask(SetParameter("amplitude", 0.1))  # the "beam" drops
    held = await wait_event(bench, created.id, lambda e: isinstance(e.body, Suspended))
    assert held.body.suspender == "sine.amplitude below 0.5" and held.body.value == "0.1"
    status = (await executor(bench).ask(ListPlans()))[-1]
    assert status.state is PlanState.SUSPENDED and status.suspended_by == held.body.suspender
    done = status.points_done
    await trio.sleep(0.3)
    assert (await executor(bench).ask(ListPlans()))[-1].points_done == done  # held
    await bench.system.ref("sine").ask(SetParameter("amplitude", 1.0))  # back
    final = await finish(bench, created.id)
    assert final.state is PlanState.COMPLETED and final.points_done == 9
    (suspension,) = final.suspensions
    assert suspension.seconds >= 0.3 + 0.2  # held, then its settle time
    table = await executor(bench).ask(PlanTable(created.id))
    assert table.column("point") == list(range(9))  # every point once
    assert max(table.column("attempts")) <= 2
    assert sum(table.column("suspended_s")) == pytest.approx(suspension.seconds)
    record = read_end_record(Path(final.run_path))
    assert record["reason"].startswith("scan completed; suspended 1 time")
