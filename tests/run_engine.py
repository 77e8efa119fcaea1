"""A stock Bluesky RunEngine on a loop of its own, for tests that drive the bench with one.

Why its own loop: a test process that imports trio-asyncio (the client tests run the daemon
in-process) makes ``asyncio.new_event_loop`` hand out trio-asyncio's loop, which the
RunEngine's thread cannot run; a plain SelectorEventLoop is what a user's ``RunEngine()`` gets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def run_engine() -> Iterator[Any]:
    """A RunEngine whose loop is stopped and closed afterwards (within 10 s)."""
    from bluesky import RunEngine

    loop = asyncio.SelectorEventLoop()
    engine = RunEngine(loop=loop)
    try:
        yield engine
    finally:
        loop.call_soon_threadsafe(loop.stop)
        deadline = time.monotonic() + 10
        while loop.is_running() and time.monotonic() < deadline:
            time.sleep(0.01)
        loop.close()
