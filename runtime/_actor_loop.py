"""The loop that drives one actor instance against its cell.

Per message: priority lane first; a normal handler runs inside its own cancel scope so a
priority message can cancel it at once (the asker gets ``Interrupted``); priority handlers run
shielded and bounded. Kernel messages (Ping, ResetEmergencyStop, parameter requests) are
answered here so every actor speaks them. Queries (read-only requests) are answered by a second
task of the instance, ``_serve_queries``, from the moment the actor is ready: they never wait
behind a normal handler (a position during a move), and a crash in one is the actor's crash.

Error handling: a RequestError goes back to the asker (or is logged for a tell) and the loop
continues; any other exception goes back to the asker and then ends the loop as a crash, which
``run_actor`` re-raises for the supervisor. ``on_stop`` runs whatever the exit path.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio

from ._actor import Actor
from ._brief import brief
from ._cell import ActorCell, ActorState, FailureRecord
from ._errors import (
    ActorError,
    ActorUnavailable,
    AskTimeout,
    EmergencyStopLatched,
    Interrupted,
    ReplyTypeError,
    RequestError,
    leaf_exceptions,
)
from ._latch import latched_refusal
from ._mailbox import Envelope
from ._messages import (
    Abort,
    EmergencyStop,
    Hazardous,
    KernelRequest,
    Message,
    Ping,
    ResetEmergencyStop,
    reply_conforms,
)
from ._parameter_tree import PARAMETER_REQUESTS
from ._ref import ActorRef
from ._system import ActorSystem

logger = logging.getLogger("runtime.actor")


# Failures that end one request but say nothing bad about this actor's own state: refusals,
# and anything that went wrong in *another* actor this handler asked (that actor's supervisor
# deals with it; crashing here too would only cascade restarts).
REQUEST_SCOPED = (RequestError, ActorError, AskTimeout, ActorUnavailable)


class _Crash(Exception):
    """Carries a handler's crash out of the message loop without an exception group."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def run_actor(
    cell: ActorCell,
    actor: Actor,
    system: ActorSystem,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``actor`` until its stop is requested, it crashes, or it is cancelled.

    Reports ``started`` only after ``on_start`` and the re-application of desired parameter
    values have succeeded. Raises the crash (the original exception) for the supervisor.
    """
    cell.state = ActorState.STARTING
    cell.stop_requested = False
    cell.mailbox.reopen()
    cell.mailbox.clear_wake()
    ref = ActorRef(cell)
    crash: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            actor._bind(ref, system, nursery)
            try:
                await actor.on_start()
                await actor.parameters.restore(cell.desired, owner=cell.name)
                cell.state = ActorState.RUNNING
                cell.last_activity = trio.current_time()
                nursery.start_soon(_serve_queries, cell, actor)
                task_status.started()
                await _message_loop(cell, actor)
            except _Crash as wrapper:
                crash = wrapper.error
            except Exception as exc:  # on_start / restore failed: a crash like any other
                crash = exc
            nursery.cancel_scope.cancel()  # helpers end with the instance
    except Exception as exc:  # a helper task crashed; trio hands it over in a group
        leaves = list(leaf_exceptions(exc))
        crash = leaves[0] if len(leaves) == 1 and isinstance(leaves[0], Exception) else exc
    finally:
        cell.in_flight = None
        cell.state = ActorState.STOPPING
        cell.desired.update(actor.parameters.desired_values())
        await _drain_priority(cell, actor)
        await _run_bounded(cell, actor.on_stop(), "on_stop", actor.stop_timeout)
        actor.release()
        actor._nursery = None
    if crash is not None:
        cell.last_failure = FailureRecord.from_exception(crash)
        raise crash


async def _message_loop(cell: ActorCell, actor: Actor) -> None:
    """Priority lane first; normal messages inside a cancel scope a priority message cancels.

    One scope serves many normal messages (entering a trio CancelScope costs about as much as
    a task switch, so a scope per message halved throughput); a new one is opened after each
    preemption.
    """
    mailbox = cell.mailbox
    while not cell.stop_requested:
        while (urgent := mailbox.priority_nowait()) is not None:
            await _handle_priority(cell, actor, urgent)
        current: Envelope | None = None
        started = 0.0
        try:
            with trio.CancelScope() as in_flight:
                cell.in_flight = in_flight
                while not cell.stop_requested:
                    envelope = await mailbox.receive_normal()
                    if envelope is None:
                        break  # a priority message is waiting, or a stop was requested
                    if mailbox.has_priority():  # it arrived while receive yielded: it goes first
                        mailbox.push_front(envelope)
                        break
                    current, started = envelope, trio.current_time()
                    crash = await _handle_normal(cell, actor, envelope, started)
                    current = None
                    if crash is not None:
                        raise _Crash(crash)
        finally:
            cell.in_flight = None
            if current is not None:
                _interrupted(cell, current, started, preempted=in_flight.cancelled_caught)


async def _serve_queries(cell: ActorCell, actor: Actor) -> None:
    """Answer the query lane, one query at a time, concurrently with the normal handler.

    Why a task and not the message loop: the loop is inside the normal handler for as long as
    it runs (a 30 s move), and a query is exactly what must not wait for it. One task per
    instance, not one per query: queries stay in order and their cost stays bounded.

    Error handling: a refusal goes back to its asker; anything else is a crash of the actor
    (raised here, out of the instance's nursery). A query cut short because the instance is
    stopping tells its asker so (ActorUnavailable) instead of leaving it to its timeout.
    """
    mailbox = cell.mailbox
    while True:
        envelope = await mailbox.receive_query()
        started = trio.current_time()
        answered = False
        try:
            crash = await _handle_normal(cell, actor, envelope, started)
            answered = True
        finally:
            if not answered:
                _interrupted(cell, envelope, started, preempted=False)
        cell.queries += 1
        if crash is not None:
            raise crash


def _interrupted(cell: ActorCell, envelope: Envelope, started: float, *, preempted: bool) -> None:
    """The handler in flight was cancelled: by a priority message, or by a forced stop."""
    _record(cell, started)
    message, reply = envelope
    if preempted:
        cell.preempted += 1
        cell.failed += 1
        by = cell.mailbox.peek_priority()
        cause = type(by).__name__ if by is not None else "a priority message"
        if reply is None:  # a tell: nobody to tell, and this is on the e-stop's critical path
            logger.info("%s: %s was interrupted by %s", cell.name, brief(message), cause)
        else:
            error = Interrupted(f"{brief(message)} was interrupted by {cause}")
            reply.set_error(_as_actor_error(cell, message, error, crashed=False))
    elif reply is not None:  # a forced stop: tell the asker now, not at its timeout
        reply.set_error(
            ActorUnavailable(f"actor {cell.name!r} was stopped while handling {brief(message)}")
        )


def _record(cell: ActorCell, started: float) -> None:
    finished = trio.current_time()
    duration = finished - started
    cell.last_handler_seconds = duration
    cell.max_handler_seconds = max(cell.max_handler_seconds, duration)
    cell.last_activity = finished
    cell.handled += 1


async def _handle_normal(
    cell: ActorCell, actor: Actor, envelope: Envelope, started: float
) -> BaseException | None:
    """Run one handler and answer its asker; the crash to raise, if it was one."""
    message, reply = envelope
    if reply is not None and reply.abandoned:
        cell.expired += 1  # the asker gave up before we got here: never run it late
        return None
    if cell.latch is not None and isinstance(message, Hazardous):
        refusal = latched_refusal(f"{cell.name}: {type(message).__name__}", cell.latch)
        _fail(cell, envelope, refusal, crashed=False)
        return None
    try:
        result = await _dispatch(cell, actor, message)
    except Exception as error:
        _record(cell, started)
        crashed = not isinstance(error, REQUEST_SCOPED)
        _fail(cell, envelope, error, crashed=crashed)
        return error if crashed else None
    _record(cell, started)
    if reply is None:
        return None
    if not reply_conforms(message, result):  # type: ignore[arg-type]
        bug = _reply_type_error(actor, message, result)
        _fail(cell, envelope, bug, crashed=True)
        return bug
    reply.set_value(result)
    return None


async def _dispatch(cell: ActorCell, actor: Actor, message: Message) -> Any:
    if not isinstance(message, KernelRequest):
        return await actor.handle(message)
    if isinstance(message, PARAMETER_REQUESTS):
        return await actor.parameters.answer(message, latched=cell.latch, owner=cell.name)
    if isinstance(message, Ping):
        return "pong"
    if isinstance(message, ResetEmergencyStop):
        if message.epoch is not None and message.epoch != cell.latch_epoch:
            raise EmergencyStopLatched(
                f"reset refused: another emergency stop ({cell.latched}) arrived after this"
                " reset was sent; check the bench and reset again"
            )
        if cell.latch is not None:
            reason = message.reason or "no reason given"
            logger.debug("%s: emergency stop reset (%s)", cell.name, reason)
        cell.latch = None
        await actor.on_reset()
        return None
    return await actor.handle(message)


async def _handle_priority(cell: ActorCell, actor: Actor, envelope: Envelope) -> None:
    message, reply = envelope
    started = trio.current_time()
    safe_state = isinstance(message, (EmergencyStop, Abort))
    match message:
        case EmergencyStop(reason=reason):
            work = actor.on_emergency_stop(reason)
        case Abort(reason=reason):
            work = actor.on_abort(reason)
        case _:
            work = actor.handle(message)
    result, error = await _run_bounded(cell, work, type(message).__name__, actor.stop_timeout)
    finished = trio.current_time()
    cell.handled += 1
    cell.last_handler_seconds = finished - started
    cell.last_activity = finished
    if isinstance(message, EmergencyStop):
        logger.debug(  # the system logs one line for the whole e-stop
            "%s: emergency stop handled in %.3f ms (%s)",
            cell.name,
            (finished - started) * 1e3,
            message.reason,
        )
    if error is not None:
        if not safe_state and isinstance(error, REQUEST_SCOPED):
            _fail(cell, envelope, error, crashed=False)  # a refusal, as on the normal lane
            return
        # A safe-state action that failed or hung means the hardware may not be safe:
        # crash so the supervisor reconnects (the latch survives the restart).
        _fail(cell, envelope, error, crashed=True)
        raise _Crash(error)
    if reply is None:
        return
    if not safe_state and not reply_conforms(message, result):  # type: ignore[arg-type]
        bug = _reply_type_error(actor, message, result)
        _fail(cell, envelope, bug, crashed=True)
        raise _Crash(bug)
    reply.set_value(None if safe_state else result)


async def _drain_priority(cell: ActorCell, actor: Actor) -> None:
    """Handle priority messages still queued as the instance exits: an emergency stop that
    arrives during a graceful stop (or a crash) must still reach the hardware."""
    while (urgent := cell.mailbox.priority_nowait()) is not None:
        with contextlib.suppress(_Crash):  # already reported and logged; the instance is leaving
            await _handle_priority(cell, actor, urgent)


async def _run_bounded(
    cell: ActorCell, work: Any, what: str, timeout: float
) -> tuple[Any, BaseException | None]:
    """Await ``work`` shielded from cancellation but within ``timeout``: (result, failure)."""
    with trio.move_on_after(timeout, shield=True) as scope:
        try:
            return await work, None
        except Exception as exc:
            if not isinstance(exc, REQUEST_SCOPED):
                logger.error("%s: %s failed", cell.name, what, exc_info=exc)
            return None, exc
    if scope.cancelled_caught:
        error = TimeoutError(f"{what} did not finish within {timeout:g} s")
        logger.error("%s: %s", cell.name, error)
        return None, error
    raise AssertionError("unreachable: the shielded scope ended without a result")


def _fail(cell: ActorCell, envelope: Envelope, error: BaseException, *, crashed: bool) -> None:
    message, reply = envelope
    cell.failed += 1
    if reply is not None:
        reply.set_error(_as_actor_error(cell, message, error, crashed=crashed))
    elif not crashed:
        logger.warning("%s: %s refused: %s", cell.name, brief(message), error)
    if crashed:
        logger.error("%s crashed handling %s", cell.name, brief(message), exc_info=error)


def _as_actor_error(
    cell: ActorCell, message: object, error: BaseException, *, crashed: bool
) -> ActorError:
    failure = ActorError(cell.name, message, error, crashed=crashed)
    failure.__cause__ = error
    return failure


def _reply_type_error(actor: Actor, message: Message, result: object) -> ReplyTypeError:
    return ReplyTypeError(
        f"{type(actor).__name__} answered {type(message).__name__} with"
        f" {type(result).__name__} {result!r}; the request declares"
        f" {type(message).reply_type}"  # type: ignore[attr-defined]
    )
