"""A plan's run is the bench's run: the recorder lends its one run slot, the executor composes
the run from its pieces. GetRunStatus, ListRuns, StopRun and the end record agree about plan
runs; one run at a time; a run that ends by itself ends its plan; the ``degraded`` suspender
holds a plan through a device's crash and repeats the point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import pytest
import trio

from actors.acquisition import (
    EXECUTOR_NAME,
    AbortPlan,
    Count,
    CreatePlan,
    Line,
    Paused,
    PausePlan,
    Plan,
    PlanState,
    PlanStatus,
    PlanTable,
    Point,
    Resumed,
    ResumePlan,
    Span,
    Suspended,
    Suspender,
)
from actors.acquisition.suspenders import Condition
from actors.capabilities import Read
from actors.documents import exit_status
from actors.instruments.synthetic import SyntheticReadable
from actors.pipeline.nexus_file import read_end_record, read_manifest
from actors.pipeline.recorder import (
    RECORDER_NAME,
    GetRunStatus,
    ListRuns,
    StartRun,
    StopRun,
    wait_run,
)
from actors.pipeline.run_status import RunOutcome, RunState, RunStatus
from runtime import ActorError, ActorRef, Message, SetParameter, WrongState
from supervisors.bench import Bench

from .conftest import finish, run_plan, wait_event


def executor(bench: Bench) -> ActorRef:
    return bench.system.ref(EXECUTOR_NAME)


def recorder(bench: Bench) -> ActorRef:
    return bench.system.ref(RECORDER_NAME)


async def agreed(bench: Bench, final: PlanStatus) -> dict[str, Any]:
    """The recorder's status, ListRuns and the file's end record say the same about the
    plan's run (one truth); the end record."""
    status: RunStatus = await recorder(bench).ask(GetRunStatus())
    record = read_end_record(Path(final.run_path))
    (listed,) = [r for r in await recorder(bench).ask(ListRuns()) if r.path == final.run_path]
    assert status.path == final.run_path and not status.active
    assert status.outcome == record["status"] == listed.status
    assert status == RunStatus.from_end_record(status.name, status.path, record)
    assert status.scan_points == record["scan_points"] == final.points_done
    return record


def slow_line(points: int = 40) -> Plan:
    return Plan(Line((Span("x", 0, 4),), points), read=("sine",), settle=0.01, name="slow")


async def test_a_plan_run_is_the_bench_run_and_the_only_one(bench: Bench) -> None:
    created = await executor(bench).ask(CreatePlan(slow_line(), "test", start=True))
    await wait_event(bench, created.id, lambda e: isinstance(e.body, Point) and e.body.index == 2)
    await executor(bench).ask(PausePlan(created.id))
    await wait_event(bench, created.id, lambda e: isinstance(e.body, Paused))
    status: RunStatus = await recorder(bench).ask(GetRunStatus())
    assert status.state is RunState.RECORDING and status.name == "slow"
    # one run at a time: the recorder's own StartRun and a recording are refused
    with pytest.raises(ActorError) as caught:
        await recorder(bench).ask(StartRun("other", record_frames=False))
    assert isinstance(caught.value.root_cause, WrongState)
    assert f"run 'slow' is recording (plan {created.id}); stop it" in str(caught.value.root_cause)
    with pytest.raises(ActorError) as caught:
        await executor(bench).ask(StartRun("other", record_frames=False))
    assert "is paused; stop it" in str(caught.value.root_cause)
    await executor(bench).ask(ResumePlan(created.id))
    final = await finish(bench, created.id)
    assert final.state is PlanState.COMPLETED and final.run_path == status.path
    record = await agreed(bench, final)
    assert (record["status"], record["reason"]) == ("completed", "scan completed")
    manifest = read_manifest(Path(final.run_path))
    assert manifest["run"]["recorded_by"]["plan_id"] == created.id
    assert manifest["run"]["recorded_by"]["plan"]["kind"] == "line"
    assert manifest["metadata"]["scan"]["kind"] == "line"  # as before, for scans
    assert len(list(bench.config.storage.directory.glob("*.nxs"))) == 1


async def test_the_recorders_own_run_keeps_a_plan_out_until_it_ends(bench: Bench) -> None:
    await recorder(bench).ask(StartRun("manual", record_frames=False))
    refused = await run_plan(bench, slow_line(3))
    assert refused.state is PlanState.ERROR and not refused.run_path
    assert "run 'manual' is recording; stop it" in refused.error
    await recorder(bench).ask(StopRun("done"))
    final = await run_plan(bench, slow_line(3))
    assert final.state is PlanState.COMPLETED, final.error
    await agreed(bench, final)
    assert len(list(bench.config.storage.directory.glob("*.nxs"))) == 2


async def test_a_users_stoprun_ends_the_plan_and_the_slot_is_free_at_once(bench: Bench) -> None:
    created = await executor(bench).ask(CreatePlan(slow_line(), "test", start=True))
    await wait_event(bench, created.id, lambda e: isinstance(e.body, Point) and e.body.index == 3)
    stopped: RunStatus = await recorder(bench).ask(StopRun("enough", RunOutcome.STOPPED))
    assert (stopped.outcome, stopped.state) == ("stopped", RunState.COMPLETED)
    # StopRun answered: the plan has let the slot go, a new run starts at once
    started = await executor(bench).ask(StartRun("next", duration=0.2, record_frames=False))
    assert started.state is RunState.RECORDING and started.path != stopped.path
    final = await finish(bench, created.id)
    assert final.state is PlanState.STOPPED and final.error == "enough"
    assert 4 <= final.points_done < 40
    after = await wait_run(recorder(bench))  # the recording ends by itself (its duration)
    assert (after.path, after.outcome) == (started.path, "completed")
    record = read_end_record(Path(final.run_path))
    assert (record["status"], record["reason"]) == ("stopped", "enough")
    assert record["scan_points"] == final.points_done  # every point kept is in the file
    with h5py.File(final.run_path, "r") as f:
        assert list(f["entry/scan/point/value"]) == list(range(final.points_done))


async def test_a_plan_whose_run_fills_the_disk_ends_in_error_with_the_runs_outcome(
    bench: Bench,
) -> None:
    created = await executor(bench).ask(CreatePlan(slow_line(200), "test", start=True))
    await wait_event(bench, created.id, lambda e: isinstance(e.body, Point) and e.body.index == 3)
    await recorder(bench).ask(SetParameter("min_free_mb", 1e8))  # the disk is "full" now
    try:
        final = await finish(bench, created.id)
        assert final.state is PlanState.ERROR
        assert final.error.startswith("scan failed: its run ended (disk full): disk full:")
        record = await agreed(bench, final)
        assert record["status"] == "disk full" and "min_free_mb" in record["reason"]
        assert final.points_done < 200
        with h5py.File(final.run_path, "r") as f:  # closed properly: any reader opens it
            written = len(f["entry/scan/point/value"])  # the rest: counted as discarded
        assert written <= record["scan_points"] and record["parameter_changes_discarded"] > 0
    finally:
        await recorder(bench).ask(SetParameter("min_free_mb", 1.0))
    assert (await run_plan(bench, slow_line(2))).state is PlanState.COMPLETED


async def test_an_aborted_or_e_stopped_plan_closes_its_run_with_the_same_story(
    bench: Bench,
) -> None:
    await bench.system.ref("x").ask(SetParameter("velocity", 1.0))
    slow = Plan(Line((Span("x", 0, 8),), 3), name="cut")
    aborted = await executor(bench).ask(CreatePlan(slow, "t", True))
    await wait_event(bench, aborted.id, lambda e: isinstance(e.body, Point))
    await executor(bench).ask(AbortPlan(aborted.id, "wrong sample"))
    final = await finish(bench, aborted.id)
    assert final.state is PlanState.ABORTED and final.error == "wrong sample"
    record = await agreed(bench, final)
    assert (record["status"], record["reason"]) == ("aborted", "wrong sample")
    assert exit_status(record) == ("abort", "wrong sample")  # Bluesky's RE.abort()
    await bench.system.ref("x").ask(SetParameter("velocity", 1.0))
    created = await executor(bench).ask(CreatePlan(Plan(Line((Span("x", 0, 8),), 3)), "t", True))
    await wait_event(bench, created.id, lambda e: isinstance(e.body, Point))
    await bench.system.emergency_stop("door opened")
    final = await finish(bench, created.id)
    assert final.state is PlanState.ABORTED and final.error == "emergency stop: door opened"
    record = await agreed(bench, final)
    assert (record["status"], record["reason"]) == ("e-stopped", "emergency stop: door opened")
    await bench.system.reset_emergency_stop("test")


class Fragile(SyntheticReadable):
    """A signal whose driver crashes on the read it is told to (a device failing mid-plan)."""

    crash_on: int | None = None  # the Nth read over all instances crashes its actor
    reads = 0

    async def handle(self, message: Message) -> object:
        if isinstance(message, Read):
            Fragile.reads += 1
            if Fragile.reads == Fragile.crash_on:
                raise RuntimeError("the signal's link dropped (test)")
        return await super().handle(message)


async def test_a_device_that_crashes_mid_plan_suspends_it_and_the_point_is_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisors.bench import open_bench

    from .conftest import synthetic_config

    monkeypatch.setattr("supervisors.bench.SyntheticReadable", Fragile)
    Fragile.reads, Fragile.crash_on = 0, 4  # the 4th read: point 3's
    degraded = Suspender("sine", Condition.DEGRADED, settle=0.1)
    plan = Plan(Line((Span("y", 0, 4),), 8), read=("sine",), settle=0.01, suspenders=(degraded,))
    async with open_bench(synthetic_config(tmp_path)) as bench:
        created = await executor(bench).ask(CreatePlan(plan, "test", start=True))
        held = await wait_event(bench, created.id, lambda e: isinstance(e.body, Suspended))
        assert held.body.suspender == "sine degraded" and held.body.point == 3
        resumed = await wait_event(bench, created.id, lambda e: isinstance(e.body, Resumed))
        final = await finish(bench, created.id)
        assert bench.system.ref("sine").statistics().restarts == 1  # it did crash and restart
        table = await executor(bench).ask(PlanTable(created.id))
    assert final.state is PlanState.COMPLETED, final.error
    assert final.points_done == 8 and table.column("point") == list(range(8))  # each once
    assert table.column("attempts") == [1, 1, 1, 2, 1, 1, 1, 1]  # point 3 taken again
    assert resumed.body.seconds >= 0.1  # held until the device was back, then its settle
    (suspension,) = final.suspensions
    assert suspension.suspender == "sine degraded" and suspension.value == "crashed"
    record = read_end_record(Path(final.run_path))
    assert record["status"] == "completed" and record["scan_points"] == 8
    assert record["reason"].startswith("scan completed; suspended 1 time")
    assert "sine degraded" in record["reason"]


async def test_a_degraded_suspender_does_not_hide_a_device_it_does_not_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisors.bench import open_bench

    from .conftest import synthetic_config

    monkeypatch.setattr("supervisors.bench.SyntheticReadable", Fragile)
    Fragile.reads, Fragile.crash_on = 0, 2
    degraded = Suspender("peak", Condition.DEGRADED)  # watches another device
    plan = Plan(Line((Span("y", 0, 4),), 5), read=("sine",), suspenders=(degraded,))
    async with open_bench(synthetic_config(tmp_path)) as bench:
        final = await run_plan(bench, plan)
    assert final.state is PlanState.ERROR and "the signal's link dropped" in final.error
    assert read_end_record(Path(final.run_path))["status"] == "failed"


async def test_a_plan_waits_for_nothing_it_cannot_record(bench: Bench) -> None:
    """A count of nothing without monitors would only spin: refused, every problem named."""
    with pytest.raises(ActorError) as caught:
        await executor(bench).ask(CreatePlan(Plan(Count(0, duration=1.0)), "t", start=True))
    assert "would only spin" in str(caught.value.root_cause)
    with trio.fail_after(30):
        final = await run_plan(bench, Plan(Count(1, duration=0.3), monitor=True, name="hold"))
    assert final.state is PlanState.COMPLETED and final.points_done == 1
    record = read_end_record(Path(final.run_path))
    assert (record["status"], record["reason"]) == ("completed", "duration reached")
    assert record["end_time"] - record["start_time"] >= 0.3
