"""Every test is checked for tasks and threads it leaves behind."""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

PROJECT_PACKAGES = tuple(
    str(Path(__file__).resolve().parent.parent / name)
    for name in ("runtime", "supervisors", "actors")
)


def _all_tasks() -> list[trio.lowlevel.Task]:
    found: list[trio.lowlevel.Task] = []
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is None:
            continue
        found.append(task)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return found


def _project_frames(task: trio.lowlevel.Task) -> list[str]:
    return [
        f"{frame.f_code.co_filename}:{lineno} {frame.f_code.co_name}"
        for frame, lineno in task.iter_await_frames()
        if frame.f_code.co_filename.startswith(PROJECT_PACKAGES)
    ]


LEAK_GRACE = 3.0  # s a task the body left may take to end by itself before it is a leak


def _fail_on_leaked_tasks(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Wrap an async test: project tasks it started must be gone when its body returns.

    Tasks that fixtures started before the body (a running actor system) are allowed; a task
    the body started and left running (an actor never stopped, a forgotten helper) is a leak,
    even though pytest-trio would cancel it quietly afterwards.
    """

    @functools.wraps(test)
    async def checked(**kwargs: object) -> None:
        before = set(_all_tasks())
        await test(**kwargs)
        await trio.testing.wait_all_tasks_blocked()

        def leaked() -> dict[str, list[str]]:
            return {
                task.name: frames
                for task in _all_tasks()
                if task not in before and (frames := _project_frames(task))
            }

        # A task a fixture's service started during the body (a health ping waiting for its
        # reply on a busy machine) ends by itself within its own timeout; a leak does not.
        with trio.move_on_after(LEAK_GRACE):
            while leaked():
                await trio.sleep(0.05)
        assert not (found := leaked()), f"the test left tasks running project code: {found}"

    return checked


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _fail_on_leaked_tasks(item.obj)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves non-daemon threads alive (worker threads of a closed actor)."""
    threads_before = set(threading.enumerate())
    yield
    threads = [
        t
        for t in threading.enumerate()
        if t not in threads_before and not t.daemon and t.is_alive()
    ]
    assert not threads, f"threads left behind: {threads}"


class PatientJumps:
    """Autojumps that grow while nothing happens, for a MockClock (trio's MockClock is final,
    so this replaces its ``_autojump`` hook on the instance).

    trio's MockClock jumps straight to the next deadline after ``autojump_threshold`` of real
    idleness. With real pty I/O that fires reply timeouts that cannot happen: bytes written to
    a pty cross a kernel worker before the other side can read them, and on a busy 2-core
    machine that worker can wait longer than any threshold short enough to keep tests fast
    (an ESP300 poll "timed out" in CI so). Here the first jump of an idle spell is
    ``first_step``, each next one twice the last, up to the deadline; a jump that reaches its
    deadline (a task wakes) or a spell broken by activity starts again small. A 1 s reply
    timeout then needs ~5 idle periods (~0.25 s real) to fire, a 60 s sleep ~11.
    """

    def __init__(self, clock: trio.testing.MockClock, first_step: float) -> None:
        self.clock = clock
        self.first_step = first_step
        self._step = first_step
        self._last_jump_at = -math.inf  # time.perf_counter() of the last autojump

    def __call__(self) -> None:
        now = time.perf_counter()
        if now - self._last_jump_at > 1.2 * self.clock.autojump_threshold + 0.005:
            self._step = self.first_step  # something ran in between: a new idle spell
        self._last_jump_at = now
        deadline = trio.lowlevel.current_statistics().seconds_to_next_deadline
        if 0 < deadline < math.inf:
            if deadline <= self._step:
                self.clock.jump(deadline)
                self._step = self.first_step  # a task wakes: the spell is over
            else:
                self.clock.jump(self._step)
                self._step *= 2


@pytest.fixture
def io_clock() -> trio.testing.MockClock:
    """Virtual time for tests that do real pty I/O (see :class:`PatientJumps`).

    autojump_threshold=0 would jump the clock the moment every task waits, even while bytes
    are in flight through the kernel's pty buffers, and fire reply timeouts that cannot happen.
    50 ms of real idleness before each jump, and jumps that grow from 50 ms, keep time virtual
    and the I/O honest; a plain MockClock at 20 ms (and at 50 ms, in CI beside other work) fired
    timeouts while a stop or a reply was still crossing the pty.
    """
    clock = trio.testing.MockClock(autojump_threshold=0.05)
    clock._autojump = PatientJumps(clock, first_step=0.05)  # type: ignore[method-assign]
    return clock
