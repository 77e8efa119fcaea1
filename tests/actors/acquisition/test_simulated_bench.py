"""Plans on the simulated bench (the real drivers against their wire-protocol simulators): a
power meter reading that drops below a threshold mid-scan suspends the scan, which resumes and
completes when the reading recovers; frames per point are linked to the detector's data."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import h5py
import pytest
import trio

from actors.acquisition import (
    EXECUTOR_NAME,
    CreatePlan,
    Line,
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
