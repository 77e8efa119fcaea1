"""Run a simulator and an actor tree against it, for the driver tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
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
