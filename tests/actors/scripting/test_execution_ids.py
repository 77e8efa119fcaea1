"""Execution ids are never handed out twice: not after a restart, not when the file is gone
or torn, and handing one out never waits for the disk."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from actors.scripting.execution_ids import BLOCK, IDS_FILE, ExecutionIds
from actors.scripting.runner import RUNNER_NAME, ExecutionStatus, StartScript
from supervisors.bench import open_bench

from ..acquisition.conftest import synthetic_config


async def test_ids_go_on_after_a_restart_of_the_daemon(tmp_path: Path) -> None:
    seen = []
    for _ in range(2):
        async with open_bench(synthetic_config(tmp_path)) as bench:
            runner = bench.system.ref(RUNNER_NAME)
            for _ in range(2):
                status: ExecutionStatus = await runner.ask(StartScript(source="x = 1"))
                seen.append(status.id)
    assert seen == ["x1", "x2", f"x{BLOCK + 1}", f"x{BLOCK + 2}"]
    assert (tmp_path / IDS_FILE).read_text() == f"{2 * BLOCK + 1}\n"


async def test_the_next_block_is_reserved_before_this_one_runs_out(tmp_path: Path) -> None:
    path = tmp_path / IDS_FILE
    ids = ExecutionIds(path)
    await ids.start()
    handed = []
    for _ in range(3 * BLOCK):
        handed.append(ids.allocate())
        if ids.needs_reserve:
            await ids.reserve()
    assert len(set(handed)) == 3 * BLOCK and handed[-1] == f"x{3 * BLOCK}"
    assert int(path.read_text()) > 3 * BLOCK  # a restart starts past every id handed out
    again = ExecutionIds(path)
    await again.start()
    assert int(again.allocate()[1:]) > 3 * BLOCK


async def test_a_torn_file_is_named_and_ids_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / IDS_FILE
    path.write_text("12x" * 10_000)
    ids = ExecutionIds(path)
    with caplog.at_level(logging.ERROR):
        await ids.start()
    (record,) = caplog.records
    assert str(path) in record.getMessage() and len(record.getMessage()) < 400
    assert ids.allocate() == "x1" and path.read_text() == f"{BLOCK + 1}\n"


async def test_an_unwritable_directory_is_said_once_and_ids_are_still_given(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    ids = ExecutionIds(blocker / "runs" / IDS_FILE)  # a file where a directory should be
    with caplog.at_level(logging.WARNING):
        await ids.start()
        handed = [ids.allocate() for _ in range(5)]  # synchronous: never waits for a disk
    assert handed == ["x1", "x2", "x3", "x4", "x5"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("not written" in m for m in messages)
    assert sum("may repeat after a restart" in m for m in messages) == 2  # the error, one warning
