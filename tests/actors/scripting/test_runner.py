"""The script runner on the simulated bench: budget, errors with lines, the sandbox, stop,
abort and e-stop, and a line scan that lands in its run file point by point.

Real clock (the simulators and the worker thread are real), short moves and scans.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import AsyncIterator
from pathlib import Path

import h5py
import pytest
import trio

from actors.capabilities import GetPosition
from actors.pipeline.nexus_file import read_end_record, read_manifest, read_scan_table
from actors.scripting.engine import check
from actors.scripting.runner import (
    RUNNER_NAME,
    ExecutionState,
    ExecutionStatus,
    GetExecution,
    GetOutput,
    PauseExecution,
    ResumeExecution,
    StartScript,
    StopExecution,
    UploadScript,
)
from runtime import ActorError, ActorRef, EmergencyStopLatched, GetParameter
from runtime.config import ScriptingConfig, StorageConfig
from supervisors.bench import Bench, open_bench, simulated_bench_config


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    storage = StorageConfig(directory=tmp_path, ring_directory=tmp_path, min_free_mb=0)
    config = dataclasses.replace(simulated_bench_config(), storage=storage)
    async with open_bench(config) as running:
        yield running


async def run(runner: ActorRef, source: str, timeout: float = 30.0) -> ExecutionStatus:
    status: ExecutionStatus = await runner.ask(StartScript(source=source))
    return await finished(runner, status.id, timeout)


async def finished(runner: ActorRef, execution: str, timeout: float = 30.0) -> ExecutionStatus:
    with trio.fail_after(timeout):
        while True:
            status: ExecutionStatus = await runner.ask(GetExecution(execution))
            if status.state.finished:
                return status
            await trio.sleep(0.05)


async def wait_state(runner: ActorRef, execution: str, predicate: object) -> None:
    with trio.fail_after(20):
        while True:
            status = await runner.ask(GetExecution(execution))
            if predicate(status):  # type: ignore[operator]
                return
            assert not status.state.finished, status
            await trio.sleep(0.02)


async def resting_position(axis: ActorRef) -> float:
    """The position once the axis has come to rest (it decelerates after an abort)."""
    with trio.fail_after(3):
        last = await axis.ask(GetPosition())
        while True:
            await trio.sleep(0.2)
            now = await axis.ask(GetPosition())
            if now == last:
                return float(now)
            last = now


def test_check_reports_syntax_errors_with_line_and_column() -> None:
    (problem,) = check("x = 1\nif x\n    y = 2\n")
    assert (problem.line, problem.column, problem.severity) == (2, 5, "error")
    assert "expected" in problem.message


async def test_builtins_drive_the_bench_and_log(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    status = await run(
        runner,
        "p = move('esp300.axis1', 1.5)\n"
        "set('maitai.wavelength', 810)\n"
        "log('at', p, 'power', read('power_meter'), get('maitai.wavelength'))\n"
        "log(read_averaged('power_meter', 3) >= 0, position('esp300.axis1'))\n",
    )
    assert status.state is ExecutionState.COMPLETED, status
    output: tuple[str, ...] = await runner.ask(GetOutput(status.id))
    assert "at 1.5 power" in output[0] and output[0].endswith(" 810.0")
    snapshot = await bench.system.ref("maitai").ask(GetParameter("wavelength"))
    assert snapshot.value == 810 and snapshot.source == "script"


async def test_runtime_errors_name_the_line(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    status = await run(runner, "x = 1\n\nset('maitai.wavelength', 5000)\n")
    assert status.state is ExecutionState.ERROR and status.line == 3, status
    assert "maitai" in status.error
    status = await run(runner, "def f():\n    return 1 // 0\nf()\n")
    assert (status.state, status.line) == (ExecutionState.ERROR, 2)
    status = await run(runner, "move('no_such_stage', 1)\n")
    assert status.state is ExecutionState.ERROR and "no device named" in status.error
    status = await run(runner, "set('recorder.directory', '/')\n")  # not a device
    assert status.state is ExecutionState.ERROR and "not 'device.parameter'" in status.error


async def test_no_file_system_and_no_imports(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    for source in ("import os\n", "load('os.star', 'path')\n", "from os import path\n"):
        with pytest.raises(ActorError, match="line 1"):  # refused at upload: not Starlark
            await runner.ask(UploadScript("bad", source))
    for source in ("open('/etc/passwd')\n", "x = __import__('os')\n", "eval('1')\n",
                   "exec('x = 1')\n", "getattr(log, '__globals__')\n", "f = file\n"):  # fmt: skip
        status = await run(runner, source)
        assert status.state is ExecutionState.ERROR and status.line == 1, (source, status)


async def test_the_budget_stops_a_runaway_loop(tmp_path: Path) -> None:
    storage = StorageConfig(directory=tmp_path, ring_directory=tmp_path, min_free_mb=0)
    config = dataclasses.replace(
        simulated_bench_config(), storage=storage, scripting=ScriptingConfig(budget=500)
    )
    async with open_bench(config) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        status = await run(runner, "x = 0\nfor i in range(100000000):\n    x += i\n")
        fine = await run(runner, "x = 0\nfor i in range(100000):\n    x += i\n")
    assert status.state is ExecutionState.ERROR and status.line == 2
    assert "operation budget exceeded: more than 500 steps" in status.error
    assert status.steps == 501
    assert fine.state is ExecutionState.COMPLETED and 0 < fine.steps < 500


async def test_a_graceful_stop_ends_at_the_next_builtin(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    started = await runner.ask(StartScript(source="for i in range(1000):\n    sleep(0.05)\n"))
    await wait_state(runner, started.id, lambda s: s.state is ExecutionState.RUNNING)
    await trio.sleep(0.2)
    await runner.ask(StopExecution(started.id, reason="enough"))
    status = await finished(runner, started.id, 5)
    assert status.state is ExecutionState.STOPPED and status.error == "enough"
    # Pure computation (no builtin to interrupt): the budget hook sees the stop within a step.
    busy = await runner.ask(StartScript(source="x = 0\nfor i in range(100000000):\n    x += i\n"))
    await wait_state(runner, busy.id, lambda s: s.state is ExecutionState.RUNNING)
    await trio.sleep(0.2)
    with trio.fail_after(1):
        await runner.ask(StopExecution(busy.id, reason="enough computing"))
        status = await finished(runner, busy.id, 1)
    assert (status.state, status.line) == (ExecutionState.STOPPED, 2)
    assert 0 < status.steps < 10_000


async def test_abort_interrupts_a_long_move(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    axis = bench.system.ref("esp300.axis1")
    started = await runner.ask(StartScript(source="move('esp300.axis1', 45)\nlog('arrived')\n"))
    await wait_state(runner, started.id, lambda s: s.state is ExecutionState.RUNNING)
    await trio.sleep(0.8)  # well into a 9 s move
    with trio.fail_after(2):  # the move in flight is cut, not waited for
        await runner.ask(StopExecution(started.id, force=True, reason="operator abort"))
        status = await finished(runner, started.id, 2)
    assert status.state is ExecutionState.ABORTED and status.error == "operator abort"
    output: tuple[str, ...] = await runner.ask(GetOutput(started.id))
    assert not any("arrived" in line for line in output)
    assert await resting_position(axis) < 10  # stopped near where the abort found it


async def test_the_shutter_closes_when_the_block_fails(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    status = await run(
        runner,
        "def block():\n    log('open:', get('maitai.shutter'))\n    return 1 // 0\n"
        "with_shutter_open(block)\n",
    )
    assert status.state is ExecutionState.ERROR and status.line == 3, status
    output: tuple[str, ...] = await runner.ask(GetOutput(status.id))
    assert any("open: True" in line for line in output)
    assert any("shutter closed" in line for line in output)
    assert (await bench.system.ref("maitai").ask(GetParameter("shutter"))).value is False


async def test_a_line_scan_lands_in_its_run_file_point_by_point(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    source = (
        "result = line_scan('esp300.axis2', 0, 2, 5, read=['power_meter'], settle=0.01,"
        " name='scan-test', metadata={'sample': 'A1'})\n"
        "log('points', result['points'])\n"
    )
    status = await run(runner, source)
    assert status.state is ExecutionState.COMPLETED and status.progress == 1.0, status
    (path,) = Path(bench.config.storage.directory).glob("*_scan-test.nxs")
    with h5py.File(path, "r") as f:
        scan = f["entry/scan"]
        assert list(scan["point/value"]) == [0, 1, 2, 3, 4]
        assert list(scan["esp300_axis2/value"]) == pytest.approx([0, 0.5, 1, 1.5, 2], abs=1e-3)
        power = list(scan["power_meter/value"])
        assert len(power) == 5 and all(math.isfinite(p) for p in power)  # no NaN: every point read
    record = read_end_record(path)
    assert record["status"] == "completed" and record["scan_points"] == 5
    assert record["reason"] == "scan completed"
    metadata = read_manifest(path)["metadata"]
    assert metadata["sample"] == "A1" and metadata["script"] == source
    assert metadata["script_sha256"] == hashlib.sha256(source.encode()).hexdigest()
    assert metadata["scan"]["kind"] == "line" and metadata["scan"]["points"] == 5


async def test_a_scan_with_frames_links_every_point_to_its_frames(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    source = (
        "set('camera.roi', '0,0,64,32')\n"
        "line_scan('esp300.axis2', 0, 1, 3, frames=2, name='frames-scan')\n"
    )
    status = await run(runner, source)
    assert status.state is ExecutionState.COMPLETED, status
    (path,) = Path(bench.config.storage.directory).glob("*_frames-scan.nxs")
    with h5py.File(path, "r") as f:
        scan = f["entry/scan"]
        assert list(scan["frames/value"]) == [2, 2, 2]
        assert list(scan["frame_index/value"]) == [0, 2, 4]  # where each point's frames start
        assert f["entry/instrument/camera/data"].shape == (6, 32, 64)
    record = read_end_record(path)
    assert (record["frames_dropped"], record["frames_missing"]) == (0, 0)


async def test_an_emergency_stop_during_a_scan(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    source = (
        "def scan():\n"
        "    return line_scan('esp300.axis1', 0, 40, 5, read=['power_meter'], name='estop')\n"
        "with_shutter_open(scan)\n"
    )
    started = await runner.ask(StartScript(source=source))
    await wait_state(runner, started.id, lambda s: s.progress > 0)  # a point is recorded
    await bench.system.emergency_stop("test e-stop")
    status = await finished(runner, started.id, 5)
    assert status.state is ExecutionState.ABORTED
    assert status.error == "emergency stop: test e-stop"
    assert await resting_position(bench.system.ref("esp300.axis1")) < 40  # motion stopped
    assert (await bench.system.ref("maitai").ask(GetParameter("shutter"))).value is False
    (path,) = Path(bench.config.storage.directory).glob("*_estop.nxs")
    record = read_end_record(path)
    assert record["reason"] == "emergency stop: test e-stop" and record["scan_points"] >= 1
    with h5py.File(path, "r") as f:
        assert len(f["entry/scan/point/value"]) == record["scan_points"]
    with pytest.raises(ActorError) as refused:  # no new script while latched
        await runner.ask(StartScript(source="log('hi')\n"))
    assert isinstance(refused.value.cause, EmergencyStopLatched)
    assert not await bench.system.reset_emergency_stop("test over")
    assert (await run(runner, "log(position('esp300.axis1'))\n")).state is ExecutionState.COMPLETED


async def test_a_snake_scan_runs_every_other_line_backwards(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    status = await run(
        runner,
        "grid_scan(['esp300.axis2', 0, 0.002, 2], ['esp300.axis3', 0, 0.004, 3],"
        " read='power_meter', snake=True, name='snake')\n",
    )
    assert status.state is ExecutionState.COMPLETED, status
    (path,) = Path(bench.config.storage.directory).glob("*_snake.nxs")
    table = read_scan_table(path)  # by the bench's names (stored as esp300_axis2, ...)
    slow = table["esp300.axis2"].values.tolist()
    fast = table["esp300.axis3"].values.tolist()
    with h5py.File(path, "r") as f:
        assert f["entry/scan/esp300_axis2"].attrs["NX_class"] == "NXlog"
    assert slow == pytest.approx([0, 0, 0, 0.002, 0.002, 0.002], abs=1e-4)
    assert fast == pytest.approx([0, 0.002, 0.004, 0.004, 0.002, 0], abs=1e-4)
    scan = read_manifest(path)["metadata"]["scan"]
    assert scan["kind"] == "grid" and scan["axes"][1]["snake"]  # a plan since issue 14


async def test_one_execution_at_a_time_the_rest_wait_in_order(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    first = await runner.ask(StartScript(source="sleep(0.3)\nlog('first')\n"))
    second = await runner.ask(StartScript(source="log('second')\n"))
    third = await runner.ask(StartScript(source="log('third')\n"))
    await wait_state(runner, first.id, lambda s: s.state is ExecutionState.RUNNING)
    assert (await runner.ask(GetExecution(second.id))).state is ExecutionState.PENDING
    stopped = await runner.ask(StopExecution(third.id, reason="not needed"))
    assert stopped.state is ExecutionState.STOPPED
    done = [await finished(runner, e.id) for e in (first, second)]
    assert [d.state for d in done] == [ExecutionState.COMPLETED] * 2
    assert done[0].ended <= done[1].started
    with pytest.raises(ActorError, match="has ended"):
        await runner.ask(StopExecution(first.id))


PAUSE_SCAN = (
    "line_scan('esp300.axis2', 0, 1.4, 8, read=['power_meter'], dwell=0.05, name=params['n'])\n"
)


async def pause_after(runner: ActorRef, execution: str, points: int) -> ExecutionStatus:
    """Pause once ``points`` are done; the status once the scan waits."""
    await wait_state(runner, execution, lambda s: s.points_done >= points)
    await runner.ask(PauseExecution(execution))
    await wait_state(runner, execution, lambda s: s.state is ExecutionState.PAUSED)
    status: ExecutionStatus = await runner.ask(GetExecution(execution))
    assert status.pause_requested and status.points_total == 8, status
    return status


async def test_a_paused_scan_waits_between_points_and_resumes(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    started = await runner.ask(StartScript(source=PAUSE_SCAN, parameters={"n": "paused"}))
    paused = await pause_after(runner, started.id, 2)
    assert set(paused.positions) == {"esp300.axis2"} and paused.run_path.endswith("_paused.nxs")
    await trio.sleep(0.6)  # a point takes ~0.1 s: several would have run
    still = await runner.ask(GetExecution(started.id))
    assert (still.state, still.points_done) == (ExecutionState.PAUSED, paused.points_done)
    resumed = await runner.ask(ResumeExecution(started.id))
    assert not resumed.pause_requested
    status = await finished(runner, started.id, 20)
    assert (status.state, status.points_done) == (ExecutionState.COMPLETED, 8), status
    record = read_end_record(Path(status.run_path))
    assert (record["scan_points"], record["reason"]) == (8, "scan completed")
    with h5py.File(status.run_path, "r") as f:
        assert list(f["entry/scan/point/value"]) == list(range(8))  # every point, once
    output: tuple[str, ...] = await runner.ask(GetOutput(started.id))
    assert any("resumed" in line for line in output)


async def test_stop_and_emergency_stop_act_at_once_while_paused(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    started = await runner.ask(StartScript(source=PAUSE_SCAN, parameters={"n": "stopped"}))
    paused = await pause_after(runner, started.id, 1)
    with trio.fail_after(1):
        await runner.ask(StopExecution(started.id, reason="enough paused"))
        status = await finished(runner, started.id, 1)
    assert status.state is ExecutionState.STOPPED and status.error == "enough paused"
    record = read_end_record(Path(status.run_path))
    assert (record["reason"], record["scan_points"]) == ("enough paused", paused.points_done)
    # The e-stop ends a paused scan at once, its reason in the run's end record.
    started = await runner.ask(StartScript(source=PAUSE_SCAN, parameters={"n": "estopped"}))
    await pause_after(runner, started.id, 1)
    with trio.fail_after(3):  # the Mai Tai takes ~1.2 s to confirm its shutter closed
        await bench.system.emergency_stop("paused e-stop")
        status = await finished(runner, started.id, 1)
    assert (status.state, status.error) == (ExecutionState.ABORTED, "emergency stop: paused e-stop")
    assert read_end_record(Path(status.run_path))["reason"] == "emergency stop: paused e-stop"
    assert not await bench.system.reset_emergency_stop("test over")
    with pytest.raises(ActorError, match="has ended"):
        await runner.ask(PauseExecution(started.id))


async def test_a_paused_script_waits_at_its_next_builtin(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    started = await runner.ask(
        StartScript(source="for i in range(1000):\n    log(i)\n    sleep(0.02)\n")
    )
    await wait_state(runner, started.id, lambda s: s.output_lines >= 2)
    await runner.ask(PauseExecution(started.id))
    await wait_state(runner, started.id, lambda s: s.state is ExecutionState.PAUSED)
    lines = (await runner.ask(GetExecution(started.id))).output_lines
    await trio.sleep(0.3)
    assert (await runner.ask(GetExecution(started.id))).output_lines == lines
    await runner.ask(ResumeExecution(started.id))
    await wait_state(runner, started.id, lambda s: s.output_lines > lines + 3)
    with trio.fail_after(1):
        await runner.ask(StopExecution(started.id, force=True, reason="done"))
        status = await finished(runner, started.id, 1)
    assert status.state is ExecutionState.ABORTED


async def test_a_scripts_run_ends_as_the_script_did(bench: Bench, tmp_path: Path) -> None:
    """One truth: the end record of a run a script started says how the script ended."""
    runner = bench.system.ref(RUNNER_NAME)
    good = await run(runner, 'start_run("fine")\nsleep(0.1)\n')
    failed = await run(runner, 'start_run("broken")\nsleep(0.1)\nfail("boom")\n')
    assert good.state.value == "completed" and failed.state.value == "error"
    (fine,) = tmp_path.glob("*_fine.nxs")
    (broken,) = tmp_path.glob("*_broken.nxs")
    assert read_end_record(fine)["status"] == "completed"
    record = read_end_record(broken)
    assert record["status"] == "failed" and "boom" in record["reason"]
