"""open_actor_system: a running supervision tree inside any trio program or test.

No network, no global state: everything lives inside the ``async with`` block, and leaving the
block stops every actor in reverse start order (graceful, then forced).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import trio

from runtime import ActorSystem

from ._specs import ActorSpec, Backoff, Strategy, SupervisorSpec
from ._supervisor import Supervisor, SupervisorStatistics


class SupervisedSystem(ActorSystem):
    """An ActorSystem whose actors run under a supervision tree."""

    def __init__(self, root: SupervisorSpec, rng: random.Random) -> None:
        super().__init__()
        seen: dict[str, str] = {}
        for spec in root.walk():
            kind = "actor" if isinstance(spec, ActorSpec) else "supervisor"
            if spec.name in seen:
                raise ValueError(
                    f"two children are named {spec.name!r} ({seen[spec.name]} and {kind});"
                    " names must be unique in the whole tree"
                )
            seen[spec.name] = kind
            if isinstance(spec, ActorSpec):
                self.cell(spec.name, spec.mailbox_capacity)
        self.root = Supervisor(root, self, rng)

    def supervision(self) -> SupervisorStatistics:
        """The whole tree: states, restart counts, last failures."""
        return self.root.statistics()


#: How long a failed ``async with`` block waits for the graceful stop before forcing it.
SHUTDOWN_GRACE = 60.0


@asynccontextmanager
async def open_actor_system(
    children: SupervisorSpec | Iterable[ActorSpec | SupervisorSpec],
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = 3,
    period: float = 10.0,
    backoff: Backoff | None = None,
    seed: int | None = None,
) -> AsyncIterator[SupervisedSystem]:
    """Start ``children`` under a root supervisor; yield when all of them are ready.

    Pass a SupervisorSpec to control the root yourself, or a list of specs to have them put
    under a root named "root" with the given strategy and intensity. ``seed`` makes the
    restart jitter reproducible (tests).

    Error handling: if the root supervisor gives up, SupervisorGaveUp is raised out of the
    ``async with`` block. An exception in the block (or a cancellation of it) first stops the
    tree gracefully, as a normal exit does, then propagates unwrapped when it is the only
    failure.
    """
    if isinstance(children, SupervisorSpec):
        root = children
    else:
        root = SupervisorSpec(
            "root",
            tuple(children),
            strategy=strategy,
            max_restarts=max_restarts,
            period=period,
            backoff=backoff or Backoff(),
        )
    system = SupervisedSystem(root, random.Random(seed))
    stopped = trio.Event()

    async def run_root(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await system.root.run(task_status=task_status)
        finally:
            stopped.set()

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_root)
            try:
                yield system
            except BaseException:
                # The block failed (or was cancelled): stop the tree the graceful way — reverse
                # order, handlers finish, on_stop leaves the hardware safe — before the error
                # unwinds the nursery, which would cancel every actor at once.
                system.root.request_stop()
                with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_GRACE):
                    await stopped.wait()
                raise
            else:
                system.root.request_stop()
    except BaseExceptionGroup as group:
        leaves = group.exceptions
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from None
        raise
