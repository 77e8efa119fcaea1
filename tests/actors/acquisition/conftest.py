"""A synthetic bench (motors, a peak detector; no serial simulators) for the acquisition tests,
on trio's autojump clock: moves at finite velocity and settle times cost no real time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from runtime.config import BenchConfig, parse_config
from supervisors.bench import Bench, open_bench

SYNTHETIC = """
[bench]
name = "synthetic"

[storage]
directory = "{directory}"
min_free_mb = 1
ring_slots = 0

[[device]]
id = "x"
driver = "synthetic_motor"
port = "sim"
options = {{ limits = [-10.0, 10.0], velocity = 5.0, settle = 0.01 }}

[[device]]
id = "y"
driver = "synthetic_motor"
port = "sim"
options = {{ limits = [-5.0, 5.0], velocity = 5.0 }}

[[device]]
id = "z"
driver = "synthetic_motor"
port = "sim"
options = {{ limits = [0.0, 2.0], velocity = 1.0, units = "deg" }}

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
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
async def bench(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> AsyncIterator[Bench]:
    async with open_bench(synthetic_config(tmp_path)) as running:
        yield running
