"""Supervisor: a nursery that restarts its children by policy (Erlang/OTP is the model).

One task per supervisor runs a sequential loop over child-exit events, which keeps the
restart logic easy to reason about: children start in order (each reported ready before the
next starts), stop in reverse, and a restart is stop-the-affected-siblings, back off, start
them again in order. Restarts within ``period`` are counted; one more than ``max_restarts``
and the supervisor stops everything and escalates by raising SupervisorGaveUp to its parent.

Error handling: a child that fails to start counts as a crash (same policy, same backoff), so
an instrument that is unplugged at boot is retried instead of taking the daemon down. Under
``rest_for_one`` / ``one_for_all`` the children after it are not started then (they depend on
it: an axis on its controller), so a failed start costs no time-outs; they are marked restarting,
with the failure they wait on, and start with it after the backoff. A child with a
``start_timeout`` holds the next ones at most that long (an instrument hanging in its start-up
never holds the rest of the bench); it goes on starting and shows as starting meanwhile. Stops
are graceful first (actor finishes its handler, runs on_stop), then forced after the child's
``shutdown_timeout`` (cancel; on_stop still runs, shielded and bounded by the actor).
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
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


class _Ready:
    """``task_status`` for a child started without waiting on it (a ``start_timeout``): the
    supervisor waits on ``event`` for at most that long."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def started(self, value: None = None) -> None:
        self.event.set()


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
        self.exit_error: BaseException | None = None  # how its last generation ended
        self.repeats = 0  # crashes in a row with the same failure (a port that stays missing)

    def note_failure(self, record: FailureRecord) -> bool:
        """Record a crash; whether it is worth a log line at its level. A failure that repeats
        (a device retried every 10 s while its port is missing) is logged the 1st, 10th,
        100th... time, so a day of retries is a handful of lines, not thousands."""
        previous = self.last_failure
        same = previous is not None and (previous.type, previous.message) == (
            record.type,
            record.message,
        )
        self.repeats = self.repeats + 1 if same else 1
        self.last_failure = record
        return math.log10(self.repeats).is_integer()

    def recovered(self) -> int:
        """It is running after failing: how many restarts the episode took (0: none)."""
        repeats, self.repeats = self.repeats, 0
        return repeats

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def request_stop(self, *, for_restart: bool) -> None:
        self.stopping_generation = self.generation
        if self.cell is not None:
            self.cell.request_stop()
        elif self.instance is not None:
            self.instance.request_stop(for_restart=for_restart)

    def hold(self, note: FailureRecord) -> None:
        """Not started because a sibling it depends on failed: restarting, and why."""
        if self.cell is not None:
            self.cell.state = ActorState.RESTARTING
            self.cell.last_failure = note
        elif self.instance is not None:  # a subtree that ran before: its actors wait too
            for child in self.instance.children:
                child.hold(note)

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
        loud = True
        if error is not None:
            loud = child.note_failure(FailureRecord.from_exception(error))
            if loud:
                again = f" (the same failure {child.repeats} times in a row)"
                again = again if child.repeats > 1 else ""
                logger.error("%s/%s crashed%s: %s", self.spec.name, name, again, child.last_failure)
            else:
                logger.debug("%s/%s crashed again: %s", self.spec.name, name, child.last_failure)
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
        logger.log(
            logging.WARNING if loud else logging.DEBUG,
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
            for index, child in enumerate(children):
                await self._start(child)
                if not child.done.is_set():
                    if child.last_failure is not None and child.recovered():
                        logger.info(
                            "%s/%s is running again (after: %s)",
                            self.spec.name,
                            child.spec.name,
                            child.last_failure,
                        )
                elif self.spec.strategy is not Strategy.ONE_FOR_ONE:
                    self._hold(children[index + 1 :], child)
                    return

    def _hold(self, rest: list[_Child], failed: _Child) -> None:
        """``failed`` died starting: the siblings after it depend on it (rest_for_one,
        one_for_all) and are not started now — starting them would only make each wait out a
        time-out on it. Its exit, already queued, restarts them after the backoff."""
        if not rest:
            return
        error = failed.exit_error
        what = str(FailureRecord.from_exception(error)) if error is not None else "it exited"
        waiting = f"waiting for {failed.spec.name}, which failed to start: {what}"
        note = FailureRecord("NotStarted", waiting, time.time())
        for child in rest:
            child.hold(note)
        logger.info(
            "%s: %s not started: %s failed to start",
            self.spec.name,
            ", ".join(c.spec.name for c in rest),
            failed.spec.name,
        )

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
        child.exit_error = None
        timeout = child.spec.start_timeout
        if math.isinf(timeout):
            await self._nursery.start(self._child_task, child, child.generation)
            return
        ready = _Ready()
        self._nursery.start_soon(
            functools.partial(self._child_task, child, child.generation, task_status=ready)
        )
        with trio.move_on_after(timeout):
            await ready.event.wait()
        if not ready.event.is_set():
            logger.warning(
                "%s/%s is not ready after %g s; it goes on starting (degraded meanwhile) and the"
                " next children start now",
                self.spec.name,
                child.spec.name,
                timeout,
            )

    async def _child_task(
        self, child: _Child, generation: int, *, task_status: trio.TaskStatus[None]
    ) -> None:
        ready = _ReadyOnce(task_status)
        error: BaseException | None = None
        try:
            with trio.CancelScope() as scope:
                child.scope = scope
                if child.stopping_generation == generation:
                    pass  # stopped before this task ran (started without waiting): nothing to do
                elif child.cell is not None:
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
            child.exit_error = error
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
