"""Fixtures for driver tests: simulators on real pseudo-terminals, virtual time that waits
for the kernel to deliver pty bytes before it jumps."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing


@pytest.fixture
def io_clock() -> trio.testing.MockClock:
    """Virtual time for tests that do real pty I/O.

    autojump_threshold=0 would jump the clock the moment every task waits, even while bytes
    are in flight through the kernel's pty buffers, and fire reply timeouts that cannot happen.
    Jumping only after 10 ms of real idleness keeps time virtual and the I/O honest.
    """
    return trio.testing.MockClock(autojump_threshold=0.01)


@pytest.fixture
def link(tmp_path: Path) -> Path:
    """A stable path for a simulator's port (survives disconnect/reconnect)."""
    return tmp_path / "ttySIM0"
