"""Run a simulator and an actor tree against it, for the driver tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import trio

from simulators._pty import PtySimulator
from supervisors import ActorSpec, SupervisedSystem, SupervisorSpec, open_actor_system


@asynccontextmanager
async def running(
    simulator: PtySimulator, specs: Sequence[ActorSpec | SupervisorSpec], **system_options: object
) -> AsyncIterator[SupervisedSystem]:
    """The simulator serving on its pty, the actors started against it; both stopped after."""
    async with trio.open_nursery() as nursery:
        await nursery.start(simulator.run)
        async with open_actor_system(specs, **system_options) as system:  # type: ignore[arg-type]
            yield system
        nursery.cancel_scope.cancel()


async def until(predicate: Callable[[], bool], *, step: float = 0.001) -> None:
    """Wait until ``predicate()`` holds, e.g. until the simulator has *processed* bytes a
    driver wrote (they cross the kernel's pty buffers, which takes real time under load).

    Polls in 1 ms virtual steps and sets no deadline: a deadline would be a place for the
    MockClock to jump to while the bytes are still in flight (and a simulated motion would
    run on meanwhile). The test's own pytest timeout still bounds a predicate that never holds.
    """
    while not predicate():
        await trio.sleep(step)
