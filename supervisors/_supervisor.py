"""Supervisor: a nursery that restarts its children by policy (Erlang/OTP is the model).

One task per supervisor runs a sequential loop over child-exit events, which keeps the
restart logic easy to reason about: children start in order (each reported ready before the
next starts), stop in reverse, and a restart is stop-the-affected-siblings, back off, start
them again in order. Restarts within ``period`` are counted; one more than ``max_restarts``
and the supervisor stops everything and escalates by raising SupervisorGaveUp to its parent.

Error handling: a child that fails to start counts as a crash (same policy, same backoff), so
an instrument that is unplugged at boot is retried instead of taking the daemon down. Stops
are graceful first (actor finishes its handler, runs on_stop), then forced after the child's
``shutdown_timeout`` (cancel; on_stop still runs, shielded and bounded by the actor).
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from dataclasses import dataclass

import trio

from runtime import ActorState, ActorSystem, FailureRecord, SupervisorGaveUp, run_actor

from ._specs import ActorSpec, Restart, Strategy, SupervisorSpec

logger = logging.getLogger("supervisors")


@dataclass(frozen=True, slots=True)
class ChildStatistics:
    name: str
    kind: str  # "actor" or "supervisor"
    state: str
    restart: Restart
    restarts: int
    last_failure: FailureRecord | None
    supervisor: SupervisorStatistics | None  # the subtree, for a supervisor child


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    name: str
    strategy: Strategy
    max_restarts: int
    period: float
    recent_restarts: int  # restarts inside the current intensity period
    children: tuple[ChildStatistics, ...]


@dataclass(frozen=True, slots=True)
class _Exit:
    child: _Child
    generation: int
    error: BaseException | None


class _StopRequest:
    """Queued behind child exits so a stop is handled after the exits already reported."""


class _Child:
    """A supervisor's handle on one child spec across its restarts."""

    def __init__(self, spec: ActorSpec | SupervisorSpec, system: ActorSystem) -> None:
        self.spec = spec
        self.cell = (
            system.cell(spec.name, spec.mailbox_capacity) if isinstance(spec, ActorSpec) else None
        )
        self.instance: Supervisor | None = None
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.done.set()
        self.generation = 0
        self.stopping_generation = -1  # exits of this generation were asked for, not failures
        self.restarts = 0
        self.last_failure: FailureRecord | None = None

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def request_stop(self, *, for_restart: bool) -> None:
        self.stopping_generation = self.generation
        if self.cell is not None:
            self.cell.request_stop()
        elif self.instance is not None:
            self.instance.request_stop(for_restart=for_restart)

    def set_state(self, state: ActorState, reason: str = "") -> None:
        """Mark this child's actors (the whole subtree) restarting or down."""
        if self.cell is not None:
            self.cell.state = state
            if state is ActorState.DOWN:
                self.cell.mailbox.close(reason)
        elif self.instance is not None:
            for child in self.instance.children:
                child.set_state(state, reason)

    def statistics(self) -> ChildStatistics:
        if self.cell is not None:
            state = str(self.cell.state)
        else:
            state = "running" if self.running else "down"
        return ChildStatistics(
            name=self.spec.name,
            kind="actor" if self.cell is not None else "supervisor",
            state=state,
            restart=self.spec.restart,
            restarts=self.restarts,
            last_failure=self.last_failure,
            supervisor=self.instance.statistics() if self.instance is not None else None,
        )


class _ReadyOnce:
    """Passes ``started()`` through once, so a child that dies before it is ready can still
    release ``nursery.start`` (the supervisor then handles the death like any other)."""

    def __init__(self, task_status: trio.TaskStatus[None]) -> None:
        self._task_status = task_status
        self.done = False

    def started(self, value: None = None) -> None:
        if not self.done:
            self.done = True
            self._task_status.started()


class Supervisor:
    def __init__(self, spec: SupervisorSpec, system: ActorSystem, rng: random.Random) -> None:
        self.spec = spec
        self._system = system
        self._rng = rng
        self.children = [_Child(child, system) for child in spec.children]
        self._events_send, self._events = trio.open_memory_channel[_Exit | _StopRequest](math.inf)
        self._restart_times: deque[float] = deque()
        self._stopping = False
        self._final = True  # False when our parent stops us only to restart us
        self._interruptible = trio.CancelScope()  # a backoff or a (re)start a stop cuts short
        self._nursery: trio.Nursery | None = None

    # -- public ---------------------------------------------------------------------------------

    def request_stop(self, *, for_restart: bool = False) -> None:
        """Graceful stop: children stop in reverse order, then :meth:`run` returns.

        A restart waiting out its backoff, or stuck in a slow ``on_start``, is abandoned rather
        than finished first. ``for_restart``: our parent will start us again, so our actors keep
        their queued messages (they show RESTARTING, not DOWN).
        """
        self._stopping = True
        self._final = not for_restart
        self._interruptible.cancel()
        self._events_send.send_nowait(_StopRequest())

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            name=self.spec.name,
            strategy=self.spec.strategy,
            max_restarts=self.spec.max_restarts,
            period=self.spec.period,
            recent_restarts=len(self._restart_times),
            children=tuple(child.statistics() for child in self.children),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order, supervise them, stop them in reverse on the way out.

        Raises SupervisorGaveUp when restart intensity is exceeded.
        """
        gave_up: SupervisorGaveUp | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            reason = "stopped"
            try:
                await self._start_in_order(self.children)
                task_status.started()
                gave_up = await self._supervise()
                if gave_up is not None:
                    reason = str(gave_up)
            finally:
                final = self._final or gave_up is not None
                with trio.CancelScope(shield=True):
                    await self._stop_children(self.children, final_reason=reason if final else None)
        if gave_up is not None:
            raise gave_up

    # -- the loop -------------------------------------------------------------------------------

    async def _supervise(self) -> SupervisorGaveUp | None:
        async for event in self._events:
            if isinstance(event, _StopRequest):
                return None
            child = event.child
            if (
                event.generation != child.generation
                or event.generation == child.stopping_generation
            ):
                continue  # an exit we caused, or a stale one
            gave_up = await self._on_exit(child, event.error)
            if gave_up is not None:
                return gave_up
        return None

    async def _on_exit(self, child: _Child, error: BaseException | None) -> SupervisorGaveUp | None:
        name = child.spec.name
        if error is not None:
            child.last_failure = FailureRecord.from_exception(error)
            logger.error("%s/%s crashed: %s", self.spec.name, name, child.last_failure)
        if self._stopping:
            return None  # no restarts (and no give-up) while we are shutting down
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and error is None):
            how = "crashed" if error is not None else "exited"
            child.set_state(ActorState.DOWN, f"{how}; {restart} children are not restarted")
            logger.info(
                "%s/%s %s and will not be restarted (%s)", self.spec.name, name, how, restart
            )
            return None
        now = trio.current_time()
        while self._restart_times and now - self._restart_times[0] > self.spec.period:
            self._restart_times.popleft()
        if len(self._restart_times) >= self.spec.max_restarts:
            last = str(child.last_failure) if child.last_failure else f"{name} exited"
            return SupervisorGaveUp(
                self.spec.name, len(self._restart_times), self.spec.period, last
            )
        self._restart_times.append(now)

        affected = self._affected_by(child)
        await self._stop_children([c for c in affected if c is not child], final_reason=None)
        for sibling in affected:
            sibling.set_state(ActorState.RESTARTING)
        delay = self.spec.backoff.delay(len(self._restart_times), self._rng)
        logger.warning(
            "%s: restarting %s in %.3f s (restart %d of %d allowed within %g s)",
            self.spec.name,
            ", ".join(c.spec.name for c in affected),
            delay,
            len(self._restart_times),
            self.spec.max_restarts,
            self.spec.period,
        )
        restarting = []
        for sibling in affected:
            if sibling is not child and sibling.spec.restart is Restart.TEMPORARY:
                sibling.set_state(ActorState.DOWN, "stopped with a sibling; temporary")
                continue
            restarting.append(sibling)
        with self._interruptible_scope():
            await trio.sleep(delay)
            for sibling in restarting:
                sibling.restarts += 1
                if sibling.cell is not None:
                    sibling.cell.restarts += 1
            await self._start_in_order(restarting)
        return None  # if a stop cut this short, the stop request is next in the queue

    def _interruptible_scope(self) -> trio.CancelScope:
        """A scope that a stop request cancels (and that is born cancelled while stopping)."""
        self._interruptible = trio.CancelScope()
        if self._stopping:
            self._interruptible.cancel()
        return self._interruptible

    async def _start_in_order(self, children: list[_Child]) -> None:
        with self._interruptible_scope():
            for child in children:
                await self._start(child)

    def _affected_by(self, child: _Child) -> list[_Child]:
        match self.spec.strategy:
            case Strategy.ONE_FOR_ONE:
                return [child]
            case Strategy.ONE_FOR_ALL:
                return list(self.children)
            case Strategy.REST_FOR_ONE:
                return self.children[self.children.index(child) :]
        raise AssertionError(self.spec.strategy)

    # -- starting and stopping children --------------------------------------------------------

    async def _start(self, child: _Child) -> None:
        assert self._nursery is not None
        child.generation += 1
        child.done = trio.Event()
        await self._nursery.start(self._child_task, child, child.generation)

    async def _child_task(
        self, child: _Child, generation: int, *, task_status: trio.TaskStatus[None]
    ) -> None:
        ready = _ReadyOnce(task_status)
        error: BaseException | None = None
        try:
            with trio.CancelScope() as scope:
                child.scope = scope
                if child.cell is not None:
                    assert isinstance(child.spec, ActorSpec)
                    actor = child.spec.factory()
                    await run_actor(child.cell, actor, self._system, task_status=ready)
                else:
                    assert isinstance(child.spec, SupervisorSpec)
                    child.instance = Supervisor(child.spec, self._system, self._rng)
                    await child.instance.run(task_status=ready)
        except Exception as exc:  # outside the scope: a forced stop's leftovers land here too
            error = exc
        except BaseExceptionGroup as group:  # an outer cancel mixed with a real failure
            cancelled, error = group.split(trio.Cancelled)
            if cancelled is not None:
                raise cancelled from error
        finally:  # also when the whole tree is being cancelled: stops wait on ``done``
            ready.started()
            child.done.set()
            self._events_send.send_nowait(_Exit(child, generation, error))

    async def _stop_children(self, children: list[_Child], *, final_reason: str | None) -> None:
        """Stop ``children`` in reverse order, each gracefully then by force.

        With a ``final_reason`` their actors go DOWN (pending asks fail at once); without one
        they are about to be restarted and keep their queued messages.
        """
        for child in reversed(children):
            if child.running:
                child.request_stop(for_restart=final_reason is None)
                with trio.move_on_after(child.spec.shutdown_timeout):
                    await child.done.wait()
                if child.running:
                    logger.warning(
                        "%s/%s did not stop within %g s; cancelling it",
                        self.spec.name,
                        child.spec.name,
                        child.spec.shutdown_timeout,
                    )
                    assert child.scope is not None
                    child.scope.cancel()
                    await child.done.wait()
            if final_reason is not None:
                child.set_state(ActorState.DOWN, final_reason)
