"""Plans on the simulated bench (the real drivers against their wire-protocol simulators): a
power meter reading that drops below a threshold mid-scan suspends the scan, which resumes and
completes when the reading recovers; frames per point are linked to the detector's data."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import h5py
import pytest
import trio

from actors.acquisition import (
    EXECUTOR_NAME,
    CreatePlan,
    Line,
    ListPlans,
    Plan,
    PlanState,
    PlanTable,
    Point,
    Resumed,
    Span,
    Suspended,
    Suspender,
)
from actors.acquisition.suspenders import Condition
from actors.pipeline.nexus_file import read_end_record
from actors.pipeline.recorder import RECORDER_NAME, GetRunStatus, StartRun, wait_run
from actors.pipeline.run_status import RunState
from runtime import SetParameter
from runtime.config import StorageConfig
from simulators.newport1830c import Newport1830CSimulator
from supervisors.bench import Bench, open_bench, simulated_bench_config

from .conftest import finish, wait_event


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    storage = StorageConfig(directory=tmp_path, ring_directory=tmp_path, min_free_mb=0)
    config = dataclasses.replace(simulated_bench_config(), storage=storage)
    async with open_bench(config) as running:
        yield running


async def test_a_power_drop_suspends_the_scan_which_resumes_and_completes(bench: Bench) -> None:
    meter = bench.simulators["power_meter"]
    assert isinstance(meter, Newport1830CSimulator)
    meter.power_w = 1.0e-6
    low = Suspender("power_meter", Condition.BELOW, 5e-7, resume=8e-7, settle=0.1, poll=0.05)
    plan = Plan(
        Line((Span("esp300.axis1", 0.0, 0.007),), 8),
        read=("power_meter",),
        suspenders=(low,),
        name="power-hold",
    )
    executor = bench.system.ref(EXECUTOR_NAME)
    created = await executor.ask(CreatePlan(plan, "test", start=True))
    with trio.fail_after(60):
        await wait_event(
            bench, created.id, lambda e: isinstance(e.body, Point) and e.body.index == 2
        )
        meter.power_w = 1.0e-8  # the laser fades mid-scan
        held = await wait_event(bench, created.id, lambda e: isinstance(e.body, Suspended))
        assert held.body.suspender == "power_meter below 5e-07 (resumes at 8e-07)"
        meter.power_w = 6.0e-7  # above the threshold, below the resume level: still held
        await trio.sleep(0.3)
        status = await executor.ask(PlanTable(created.id))
        done = status.rows
        meter.power_w = 1.0e-6  # recovered
        await wait_event(bench, created.id, lambda e: isinstance(e.body, Resumed))
        final = await finish(bench, created.id)
    assert final.state is PlanState.COMPLETED, final.error
    assert final.points_done == 8 and done < 8
    table = await executor.ask(PlanTable(created.id))
    assert table.column("point") == list(range(8))
    assert min(table.column("power_meter")) > 5e-7  # no point kept from the fade
    assert len(final.suspensions) == 1 and final.suspensions[0].seconds >= 0.3
    record = read_end_record(Path(final.run_path))
    assert record["scan_points"] == 8
    assert "suspended 1 time" in record["reason"]
    with h5py.File(final.run_path, "r") as f:
        assert sum(f["entry/scan/suspended_s/value"]) >= 0.3


async def test_frames_per_point_are_linked_to_the_detector_data(bench: Bench) -> None:
    camera = bench.system.ref("camera")
    await camera.ask(SetParameter("roi", "0,0,64,32"))
    plan = Plan(Line((Span("esp300.axis2", 0.0, 0.002),), 3), read=("power_meter",), frames=2)
    executor = bench.system.ref(EXECUTOR_NAME)
    created = await executor.ask(CreatePlan(plan, "test", start=True))
    with trio.fail_after(60):
        final = await finish(bench, created.id)
    assert final.state is PlanState.COMPLETED, final.error
    table = await executor.ask(PlanTable(created.id))
    assert table.column("frame_index") == [0, 2, 4] and table.column("frames") == [2, 2, 2]
    with h5py.File(final.run_path, "r") as f:
        assert f["entry/instrument/camera/data"].shape == (6, 32, 64)
        assert list(f["entry/scan/frame_index/value"]) == [0, 2, 4]


SCRIPT = """
set("esp300.axis1.velocity", 25)
set("esp300.axis1.acceleration", 200)
g = grid(["esp300.axis1", 0, 0.002, 2], ["esp300.axis2", 0, 0.002, 2, True],
         ["esp300.axis3", 0, 0.002, 3, True], read=["power_meter"], name="script-grid")
done = run_plan(g)
log("grid", done["state"], done["points"], done["path"])
t = run_plan(tune("esp300.axis1", -0.1, 0.7, 9, detector="peak", method="gaussian"))
log("tune centre", t["result"]["centre"])
a = run_plan(adaptive("esp300.axis1", 0, 0.6, detector="peak", target_delta=0.3,
                      min_step=0.05, max_step=0.3))
log("adaptive", a["points"])
old = line_scan("esp300.axis2", 0, 0.001, 2, read="power_meter")
log("line_scan", old["points"], old["path"])
"""


async def test_a_script_runs_a_3d_snake_grid_a_tune_and_an_adaptive_scan(bench: Bench) -> None:
    from actors.acquisition import ListPlans
    from actors.scripting.runner import (
        RUNNER_NAME,
        ExecutionState,
        GetExecution,
        GetOutput,
        StartScript,
    )

    runner = bench.system.ref(RUNNER_NAME)
    started = await runner.ask(StartScript(source=SCRIPT))
    with trio.fail_after(60):
        while not (status := await runner.ask(GetExecution(started.id))).state.finished:
            await trio.sleep(0.05)
    output = await runner.ask(GetOutput(started.id))
    assert status.state is ExecutionState.COMPLETED, (status.error, output)
    plans = await bench.system.ref(EXECUTOR_NAME).ask(ListPlans())
    assert [p.plan.kind for p in plans] == ["grid", "tune", "adaptive", "line"]
    assert all(p.origin == f"script {started.id}" for p in plans)
    assert all(p.state is PlanState.COMPLETED for p in plans)
    grid, tuned, adaptive, line = plans
    assert grid.points_done == 12 and read_end_record(Path(grid.run_path))["scan_points"] == 12
    assert tuned.result["centre"] == pytest.approx(0.3, abs=0.03)
    assert any("tune centre 0.3" in line for line in output)
    assert adaptive.points_done >= 3
    assert line.run_path.endswith("_line_scan.nxs")


async def test_a_script_plan_with_a_problem_fails_at_its_line_naming_it(bench: Bench) -> None:
    from actors.scripting.runner import RUNNER_NAME, ExecutionState, GetExecution, StartScript

    runner = bench.system.ref(RUNNER_NAME)
    source = 'x = 1\np = line("esp300.axis1", 0, 1, 3, read=["power_meter"], colour="red")\n'
    started = await runner.ask(StartScript(source=source))
    with trio.fail_after(20):
        while not (status := await runner.ask(GetExecution(started.id))).state.finished:
            await trio.sleep(0.05)
    assert status.state is ExecutionState.ERROR and status.line == 2
    assert "unknown option 'colour'" in status.error
    source = 'run_plan(line("maitai.wavelength", 700, 1500, 3))\n'
    started = await runner.ask(StartScript(source=source))
    with trio.fail_after(20):
        while not (status := await runner.ask(GetExecution(started.id))).state.finished:
            await trio.sleep(0.05)
    assert status.state is ExecutionState.ERROR and status.line == 1
    assert "1500 nm is above its travel 690 to 1040 nm" in status.error


async def test_a_recording_goes_on_through_an_e_stop_and_says_so(bench: Bench) -> None:
    """A recording (StartRun, a monitoring count) keeps recording the readings around an
    incident; its run ends at its duration, "e-stopped"; the camera was stopped by the e-stop
    and nothing it took was lost."""
    await bench.system.ref("camera").ask(SetParameter("roi", "0,0,64,32"))
    executor = bench.system.ref(EXECUTOR_NAME)
    recorder = bench.system.ref(RECORDER_NAME)
    # long enough that the readings after the stop reach the file before the duration ends on
    # a slow machine (a flush a second); the loop below waits for them, not for the clock
    started = await executor.ask(StartRun("incident", duration=4.0))
    with trio.fail_after(60):
        while (await recorder.ask(GetRunStatus())).frames_written < 5:
            await trio.sleep(0.02)
        stopped_at = time.time()
        await bench.system.emergency_stop("door opened")
        at_stop = (await recorder.ask(GetRunStatus())).readings_recorded
        while (status := await recorder.ask(GetRunStatus())).state is RunState.RECORDING:
            if status.readings_recorded > at_stop + 20:
                break
            await trio.sleep(0.02)
        final = await wait_run(recorder)
    try:
        assert final.path == started.path
        record = read_end_record(Path(final.path))
        assert record["status"] == "e-stopped"
        assert record["reason"].startswith("emergency stop: door opened")
        assert record["frames_received"] == record["frames_written"] > 0  # none lost
        with h5py.File(final.path, "r") as f:
            readings = f["entry/readings/power_meter/reading/time"][:]
        assert (readings > stopped_at + 0.1).sum() > 10  # the meter was recorded after the stop
        (plan,) = await executor.ask(ListPlans())
        with trio.fail_after(30):
            plan = await finish(bench, plan.id)  # the plan ends just after its run
        assert plan.origin == "record" and plan.state is PlanState.COMPLETED
    finally:
        await bench.system.reset_emergency_stop("test")
