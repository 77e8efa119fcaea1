"""A synthetic bench (motors, a peak detector; no serial simulators) for the acquisition tests.

Real clock, as the recorder's tests: the run writer works in a thread, and a virtual clock jumps
while it does (to the next time-out), so short settles and instantaneous motors keep these fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from actors.acquisition import (
    EXECUTOR_NAME,
    CreatePlan,
    Plan,
    PlanEvent,
    PlanEvents,
    PlanStatus,
    WatchPlan,
)
from runtime.config import BenchConfig, parse_config
from supervisors.bench import Bench, open_bench

SYNTHETIC = """
[bench]
name = "synthetic"

[storage]
directory = "{directory}"
min_free_mb = 1
ring_slots = 0

[scripting]
pool_size = 0  # workers start on demand: no process outlives a test on a virtual clock

[[device]]
id = "x"
driver = "synthetic_motor"
port = "sim"
options = {{ limits = [-10.0, 10.0] }}

[[device]]
id = "y"
driver = "synthetic_motor"
port = "sim"
options = {{ limits = [-5.0, 5.0], velocity = 50.0 }}

[[device]]
id = "z"
driver = "synthetic_motor"
port = "sim"
options = {{ limits = [0.0, 2.0], velocity = 10.0, settle = 0.01, units = "deg" }}

[[device]]
id = "peak"
driver = "synthetic_peak"
port = "sim"
options = {{ motor = "x", centre = 1.25, width = 1.5, amplitude = 100.0, background = 5.0, noise = 0.5, seed = 7 }}

[[device]]
id = "sine"
driver = "synthetic_signal"
port = "sim"
{extra}
"""


def synthetic_config(directory: Path, extra: str = "") -> BenchConfig:
    return parse_config(SYNTHETIC.format(directory=directory, extra=extra), "synthetic.toml")


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async with open_bench(synthetic_config(tmp_path)) as running:
        yield running


async def finish(bench: Bench, plan_id: str) -> PlanStatus:
    """The plan's final status, once it has ended."""
    executor = bench.system.ref(EXECUTOR_NAME)
    subscription = await executor.ask(WatchPlan(plan_id))
    async for sample in subscription:
        if sample.value.state.finished:
            return sample.value  # type: ignore[no-any-return]
    raise AssertionError("the executor went away")


async def run_plan(bench: Bench, plan: Plan) -> PlanStatus:
    executor = bench.system.ref(EXECUTOR_NAME)
    started = await executor.ask(CreatePlan(plan, "test", start=True))
    return await finish(bench, started.id)


async def wait_event(
    bench: Bench, plan_id: str, predicate: Callable[[PlanEvent], bool]
) -> PlanEvent:
    """The first event of the plan that satisfies ``predicate`` (waits for it)."""
    log = await bench.system.ref(EXECUTOR_NAME).ask(PlanEvents(plan_id))
    async with contextlib.aclosing(log.follow(0)) as events:
        async for event in events:
            if predicate(event):
                return event
    raise AssertionError("the plan ended without such an event")
