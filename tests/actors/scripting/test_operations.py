"""The operations as script builtins: home, stop, motor_on, zero; scans checked against the
axes' travel before anything moves."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from actors.scripting.runner import (
    RUNNER_NAME,
    ExecutionState,
    ExecutionStatus,
    GetExecution,
    GetOutput,
    StartScript,
)
from runtime import ActorRef
from runtime.config import StorageConfig
from supervisors.bench import Bench, open_bench, simulated_bench_config


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    storage = StorageConfig(directory=tmp_path, ring_directory=tmp_path, min_free_mb=0)
    config = dataclasses.replace(simulated_bench_config(), storage=storage)
    async with open_bench(config) as running:
        yield running


async def run(runner: ActorRef, source: str) -> tuple[ExecutionStatus, tuple[str, ...]]:
    status: ExecutionStatus = await runner.ask(StartScript(source=source))
    with trio.fail_after(30):
        while not (status := await runner.ask(GetExecution(status.id))).state.finished:
            await trio.sleep(0.05)
    return status, await runner.ask(GetOutput(status.id))


async def test_home_stop_motor_on_and_zero(bench: Bench) -> None:
    runner = bench.system.ref(RUNNER_NAME)
    esp300 = bench.simulators["esp300"]
    esp300.axes[2].motor_on = False  # a fault, or a power-up, left it off
    status, output = await run(
        runner,
        "move('esp300.axis1', 1.0)\n"
        "log('homed', home('esp300.axis1'), home('ell14.2'))\n"
        "log('stopped', stop('esp300.axis1'))\n"
        "log('motor', motor_on('esp300.axis2'), move('esp300.axis2', 0.5))\n"
        "log('zero', zero('power_meter'), zero('power_meter', False))\n",
    )
    assert status.state is ExecutionState.COMPLETED, status
    text = "\n".join(output)  # lines carry a time stamp
    assert "homed 0.0 0.0" in text and "stopped 0.0" in text
    assert "motor True 0.5" in text and "zero True False" in text
    assert "esp300.axis1: homing" in text and "esp300.axis1: homed at 0" in text
    assert esp300.axes[2].motor_on and bench.simulators["power_meter"].zero == 0


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (
            "home('power_meter')\n",
            "power_meter cannot home; devices that can: ell14.2, ell14.3, ell14.8, esp300.axis1,",
        ),
        ("motor_on('ell14.2')\n", "ell14.2 cannot motor on; devices that can: esp300.axis1,"),
        ("zero('maitai')\n", "maitai cannot zero; devices that can: power_meter"),
        ("zero('power_meter', 1)\n", "zero: enable must be True or False, got 1"),
        ("stop('laser')\n", "no device named 'laser'"),
    ],
)
async def test_operations_a_device_lacks_are_refused(bench: Bench, source: str, error: str) -> None:
    status, _ = await run(bench.system.ref(RUNNER_NAME), source)
    assert status.state is ExecutionState.ERROR and error in status.error, status
    assert status.line == 1


async def test_a_scan_beyond_the_travel_is_refused_before_anything_moves(bench: Bench) -> None:
    esp300 = bench.simulators["esp300"]
    status, _ = await run(
        bench.system.ref(RUNNER_NAME),
        "line_scan('esp300.axis1', 40, 60, 5, read=['power_meter'])\n",
    )
    assert status.state is ExecutionState.ERROR, status
    # The plan validator names the axis, the value beyond the travel and the travel.
    assert "esp300.axis1: 60 mm is above its travel -50 to 50 mm" in status.error
    assert not any(c.startswith(b"1PA") for c in esp300.commands)
    assert not status.run_path  # no run was started either
