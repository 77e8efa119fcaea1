"""Plans outlive restarts: ids are never handed out twice, finished plans come back with their
status and end event, the history file stays bounded and a torn or hostile line is skipped;
and plans waiting to run are capped."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pytest

from actors.acquisition import (
    EXECUTOR_NAME,
    Count,
    CreatePlan,
    Ended,
    Gap,
    GetPlan,
    Line,
    ListPlans,
    ListScan,
    Plan,
    PlanEvents,
    PlanState,
    PlanTable,
    Span,
    StopPlan,
    history,
)
from actors.acquisition import executor as executor_module
from runtime import ActorError, InsufficientResources, NotFoundError, WrongState
from supervisors.bench import Bench, open_bench

from .conftest import finish, run_plan, synthetic_config

LINE = Plan(Line((Span("x", 0.0, 1.0),), 3), read=("peak",), name="first")


def executor(bench: Bench):  # type: ignore[no-untyped-def]
    return bench.system.ref(EXECUTOR_NAME)


async def refused(bench: Bench, message: object) -> BaseException:
    with pytest.raises(ActorError) as caught:
        await executor(bench).ask(message)
    return caught.value.root_cause


async def test_after_a_restart_ids_go_on_and_finished_plans_come_back(tmp_path: Path) -> None:
    async with open_bench(synthetic_config(tmp_path)) as bench:
        done = await run_plan(bench, LINE)
        waiting = await executor(bench).ask(CreatePlan(Plan(Count(2)), "client alice"))
        assert (done.id, waiting.id) == ("p1", "p2")
    async with open_bench(synthetic_config(tmp_path)) as bench:
        restored, _ = await executor(bench).ask(ListPlans())
        assert restored.id == "p1" and restored.state is PlanState.COMPLETED
        assert (restored.run_path, restored.points_done, restored.events) == (
            done.run_path,
            3,
            done.events,
        )
        assert restored.plan == LINE and restored.origin == "test"
        log = await executor(bench).ask(PlanEvents("p1"))
        async with contextlib.aclosing(log.follow(0)) as follow:
            events = [event.body async for event in follow]
        assert events == [Gap(done.events - 1), Ended("completed", "", 3, {})]
        table = await refused(bench, PlanTable("p1"))
        assert isinstance(table, WrongState) and done.run_path in str(table)
        waited = await executor(bench).ask(GetPlan("p2"))  # ended by the stop, not lost
        assert waited.state is PlanState.ABORTED
        assert waited.error == "the daemon stopped before it ran"
        again = await run_plan(bench, LINE)
        assert again.id == "p3" and again.run_path != done.run_path
    async with open_bench(synthetic_config(tmp_path)) as bench:
        listed = await executor(bench).ask(ListPlans())
        assert [s.id for s in listed] == ["p1", "p2", "p3"]
        created = await executor(bench).ask(CreatePlan(Plan(Count(1)), "test"))
        assert created.id == "p4"


async def test_a_plan_too_large_to_keep_is_named_with_its_run(tmp_path: Path) -> None:
    positions = tuple(float(i % 7) for i in range(5000))
    big = Plan(ListScan(("x",), (positions,)), dwell=0.0, name="big")
    assert history.described_size(big) > history.MAX_PLAN_BYTES
    async with open_bench(synthetic_config(tmp_path)) as bench:
        created = await executor(bench).ask(CreatePlan(big, "test", start=True))
        stopped = await executor(bench).ask(StopPlan(created.id))
        final = await finish(bench, stopped.id)
    line = (tmp_path / history.HISTORY_FILE).read_text().splitlines()[-1]
    assert len(line) < 8192 and json.loads(line)["plan"] is None
    async with open_bench(synthetic_config(tmp_path)) as bench:
        assert await executor(bench).ask(ListPlans()) == ()
        lost = await refused(bench, GetPlan(final.id))
        assert isinstance(lost, NotFoundError) and "too large to keep" in str(lost)
        assert (final.run_path in str(lost)) == bool(final.run_path)


async def test_plans_waiting_to_run_are_capped(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor_module, "MAX_WAITING", 3)
    ids = [(await executor(bench).ask(CreatePlan(Plan(Count(1)), "loop"))).id for _ in range(3)]
    error = await refused(bench, CreatePlan(Plan(Count(1)), "loop"))
    assert isinstance(error, InsufficientResources)
    assert "3 plans are waiting to run (created or queued; at most 3)" in str(error)
    await executor(bench).ask(StopPlan(ids[0]))
    assert (
        await executor(bench).ask(CreatePlan(Plan(Count(1)), "loop"))
    ).state is PlanState.CREATED


async def test_an_unknown_id_says_which_plans_there_are(bench: Bench) -> None:
    hostile = "p" + "9" * 100_000
    error = await refused(bench, GetPlan(hostile))
    assert isinstance(error, NotFoundError) and len(str(error)) < 200
    assert "ListScans lists the plans there are" in str(error)


def _ended(plan_id: str, **changes: object) -> str:
    entry = {
        "v": 1,
        "event": "ended",
        "id": plan_id,
        "origin": "test",
        "kind": "count",
        "run_name": "count",
        "state": "completed",
        "created": 1.0,
        "started": 2.0,
        "ended": 3.0,
        "points_done": 1,
        "points_total": 1,
        "positions": {},
        "run_path": "",
        "error": "",
        "suspensions": [],
        "events": 3,
        "plan": Plan(Count(1)).describe(),
        "metadata_json": "{}",
        "result": "{}",
        **changes,
    }
    return json.dumps(entry) + "\n"


def test_torn_hostile_and_overlong_lines_are_skipped_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / history.HISTORY_FILE
    path.write_text(
        _ended("p1")
        + "x" * (history.MAX_LINE_BYTES * 3)
        + "\n"
        + _ended("p5", state="running")
        + json.dumps({"v": 1, "event": "ended", "id": "../../etc"})
        + "\n"
        + _ended("p2", plan={"kind": "nope"})
        + "[" * 50_000
        + "\n"  # nested past the parser's stack
        + json.dumps({"v": 1, "event": "created", "id": "p4", "origin": "client bob"})
        + "\n"
        + _ended("p3")[:-20]  # torn: the daemon stopped mid-write
    )
    with caplog.at_level(logging.WARNING):
        restored = history.load(path, keep=10)
    assert [s.id for s in restored.statuses] == ["p1"]
    assert restored.next_number == 6  # p5 was handed out, whatever its line says
    assert "not of a finished plan" in restored.unknown["p5"]
    assert "cannot be read" in restored.unknown["p2"]
    assert "p4 (client bob) had not ended when the daemon stopped" in restored.unknown["p4"]
    skipped = [r.getMessage() for r in caplog.records]
    assert len(skipped) == 4 and all(len(m) < 400 for m in skipped)
    assert any("line 2 skipped" in m for m in skipped)
    assert any("line 6 skipped" in m for m in skipped)
    assert any("line 8 skipped: the line is cut off" in m for m in skipped)


def test_a_rewrite_keeps_the_newest_and_the_next_id(tmp_path: Path) -> None:
    path = tmp_path / history.HISTORY_FILE
    path.write_text("".join(_ended(f"p{n}") for n in range(1, 9)))
    restored = history.load(path, keep=3)
    assert [s.id for s in restored.statuses] == ["p6", "p7", "p8"]
    history.rewrite(path, 12, restored.ended_lines)
    again = history.load(path, keep=3)
    assert [s.id for s in again.statuses] == ["p6", "p7", "p8"] and again.next_number == 12
    assert again.lines == 4 and not list(tmp_path.glob(".*tmp"))


async def test_the_history_file_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor_module, "HISTORY", 2)
    runs = tmp_path / "not-yet"  # no run has made the directory: the history makes it
    async with open_bench(synthetic_config(runs)) as bench:
        for _ in range(6):
            created = await executor(bench).ask(CreatePlan(Plan(Count(1)), "loop"))
            await executor(bench).ask(StopPlan(created.id))  # created + ended: two lines each
    lines = (runs / history.HISTORY_FILE).read_text().splitlines()
    assert len(lines) <= 4 * 2 + 2  # rewritten once it held more than 4 x HISTORY
    restored = history.load(runs / history.HISTORY_FILE, keep=2)
    assert [s.id for s in restored.statuses] == ["p5", "p6"] and restored.next_number == 7
