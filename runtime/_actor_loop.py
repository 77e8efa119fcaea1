"""The loop that drives one actor instance against its cell.

Per message: priority lane first; a normal handler runs inside its own cancel scope so a
priority message can cancel it at once (the asker gets ``Interrupted``); priority handlers run
shielded and bounded. Kernel messages (Ping, ResetEmergencyStop, parameter requests) are
answered here so every actor speaks them.

Error handling: a RequestError goes back to the asker (or is logged for a tell) and the loop
continues; any other exception goes back to the asker and then ends the loop as a crash, which
``run_actor`` re-raises for the supervisor. ``on_stop`` runs whatever the exit path.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ._actor import Actor
from ._cell import ActorCell, ActorState, FailureRecord
from ._errors import (
    ActorError,
    ActorUnavailable,
    EmergencyStopLatched,
    Interrupted,
    ReplyTypeError,
    RequestError,
    leaf_exceptions,
)
from ._mailbox import Envelope
from ._messages import (
    Abort,
    EmergencyStop,
    Hazardous,
    Message,
    Ping,
    ResetEmergencyStop,
    reply_conforms,
)
from ._parameter_tree import PARAMETER_REQUESTS
from ._ref import ActorRef
from ._system import ActorSystem

logger = logging.getLogger("runtime.actor")


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
        cell.in_flight = cell.waiting = None
        cell.state = ActorState.STOPPING
        cell.desired.update(actor.parameters.desired_values())
        await _run_bounded(cell, actor.on_stop(), "on_stop", actor.stop_timeout)
        actor.parameters.close()
        actor._nursery = None
    if crash is not None:
        cell.last_failure = FailureRecord.from_exception(crash)
        raise crash


async def _message_loop(cell: ActorCell, actor: Actor) -> None:
    mailbox = cell.mailbox
    while not cell.stop_requested:
        with trio.CancelScope() as waiting:
            cell.waiting = waiting
            envelope, priority = await mailbox.receive()
        cell.waiting = None
        if waiting.cancelled_caught:
            continue  # a graceful stop was requested while idle
        if priority:
            await _handle_priority(cell, actor, envelope)
            continue
        # A priority message may have arrived while receive() yielded: it goes first.
        while (urgent := mailbox.priority_nowait()) is not None:
            await _handle_priority(cell, actor, urgent)
        await _handle_normal(cell, actor, envelope)


async def _handle_normal(cell: ActorCell, actor: Actor, envelope: Envelope) -> None:
    message, reply = envelope
    if reply is not None and reply.abandoned:
        cell.expired += 1  # the asker gave up before we got here: never run it late
        return
    if cell.latched is not None and isinstance(message, Hazardous):
        refusal = EmergencyStopLatched(
            f"{type(message).__name__} is refused while the emergency stop is latched"
            f" ({cell.latched}); reset the emergency stop first"
        )
        _fail(cell, envelope, refusal, crashed=False)
        return
    started = trio.current_time()
    result: Any = None
    error: BaseException | None = None
    completed = False
    with trio.CancelScope() as in_flight:
        cell.in_flight = in_flight
        try:
            result = await _dispatch(cell, actor, message)
            completed = True
        except Exception as exc:
            error = exc
        finally:
            forced = not completed and error is None and not in_flight.cancel_called
            if forced and reply is not None:
                # Cancelled from outside (a forced stop): tell the asker now, not at its timeout.
                reply.set_error(
                    ActorUnavailable(f"actor {cell.name!r} was stopped while handling {message!r}")
                )
    cell.in_flight = None
    finished = trio.current_time()
    duration = finished - started
    cell.last_handler_seconds = duration
    cell.max_handler_seconds = max(cell.max_handler_seconds, duration)
    cell.last_activity = finished
    cell.handled += 1
    if in_flight.cancelled_caught:
        cell.preempted += 1
        by = cell.mailbox.peek_priority()
        cause = type(by).__name__ if by is not None else "a priority message"
        _fail(cell, envelope, Interrupted(f"{message!r} was interrupted by {cause}"), crashed=False)
        return
    if error is not None:
        crashed = not isinstance(error, RequestError)
        _fail(cell, envelope, error, crashed=crashed)
        if crashed:
            raise _Crash(error)
        return
    if reply is not None:
        if not reply_conforms(message, result):  # type: ignore[arg-type]
            bug = ReplyTypeError(
                f"{type(actor).__name__} answered {type(message).__name__} with"
                f" {type(result).__name__} {result!r}; the request declares"
                f" {type(message).reply_type}"  # type: ignore[attr-defined]
            )
            _fail(cell, envelope, bug, crashed=True)
            raise _Crash(bug)
        reply.set_value(result)


async def _dispatch(cell: ActorCell, actor: Actor, message: Message) -> Any:
    if isinstance(message, PARAMETER_REQUESTS):
        return await actor.parameters.answer(message, latched=cell.latched)
    if isinstance(message, Ping):
        return "pong"
    if isinstance(message, ResetEmergencyStop):
        if cell.latched is not None:
            logger.warning(
                "%s: emergency stop reset (%s)", cell.name, message.reason or "no reason"
            )
        cell.latched = None
        await actor.on_reset()
        return None
    return await actor.handle(message)


async def _handle_priority(cell: ActorCell, actor: Actor, envelope: Envelope) -> None:
    message, reply = envelope
    started = trio.current_time()
    match message:
        case EmergencyStop(reason=reason):
            work = actor.on_emergency_stop(reason)
        case Abort(reason=reason):
            work = actor.on_abort(reason)
        case _:
            work = actor.handle(message)
    error = await _run_bounded(cell, work, type(message).__name__, actor.stop_timeout)
    finished = trio.current_time()
    cell.handled += 1
    cell.last_handler_seconds = finished - started
    cell.last_activity = finished
    if isinstance(message, EmergencyStop):
        logger.warning(
            "%s: emergency stop handled in %.3f ms (%s)",
            cell.name,
            (finished - started) * 1e3,
            message.reason,
        )
    if error is not None:
        # A safe-state action that failed or hung means the hardware may not be safe:
        # crash so the supervisor reconnects (the latch survives the restart).
        _fail(cell, envelope, error, crashed=True)
        raise _Crash(error)
    if reply is not None:
        reply.set_value(None)


async def _run_bounded(
    cell: ActorCell, work: Any, what: str, timeout: float
) -> BaseException | None:
    """Await ``work`` shielded from cancellation but within ``timeout``; return its failure."""
    with trio.move_on_after(timeout, shield=True) as scope:
        try:
            await work
        except Exception as exc:
            logger.error("%s: %s failed", cell.name, what, exc_info=exc)
            return exc
    if scope.cancelled_caught:
        error = TimeoutError(f"{what} did not finish within {timeout:g} s")
        logger.error("%s: %s", cell.name, error)
        return error
    return None


def _fail(cell: ActorCell, envelope: Envelope, error: BaseException, *, crashed: bool) -> None:
    message, reply = envelope
    cell.failed += 1
    if reply is not None:
        failure = ActorError(cell.name, message, error, crashed=crashed)
        failure.__cause__ = error
        reply.set_error(failure)
    elif not crashed:
        logger.warning("%s: %r refused: %s", cell.name, message, error)
    if crashed:
        logger.error("%s crashed handling %r", cell.name, message, exc_info=error)
