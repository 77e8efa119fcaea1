"""ActorRef: the only handle other code gets to an actor.

A ref exposes sending and read-only statistics, never the actor object, so "actors never share
mutable state" holds by construction. ``send``/``send_nowait`` naming follows trio:
``tell`` waits for room (backpressure), ``try_tell`` never waits and reports refusal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

from ._cell import ActorCell, ActorState, ActorStatistics
from ._errors import AskTimeout
from ._mailbox import Envelope
from ._messages import Message, PriorityMessage, Request
from ._reply import CallbackSlot, ReplySlot

R = TypeVar("R")

DEFAULT_ASK_TIMEOUT = 10.0


class ActorRef:
    __slots__ = ("_cell",)

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        return self._cell.name

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.name!r} {self._cell.state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self._cell)

    def statistics(self) -> ActorStatistics:
        return self._cell.statistics()

    @property
    def state(self) -> ActorState:
        """The actor's state now (cheaper than ``statistics().state`` on a hot path)."""
        return self._cell.state

    async def tell(self, message: Message) -> None:
        """Send without waiting for a reply; waits while the normal lane is full.

        Priority messages go to the priority lane and never wait.

        Error handling: raises ActorUnavailable if the actor is down. A failure while the
        actor handles the message is logged and counted by the actor, not returned here.
        """
        envelope = Envelope(message, None)
        if isinstance(message, PriorityMessage):
            self._cell.deliver_priority(envelope)  # delivered first: a cancelled caller still stops
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        await self._cell.mailbox.put(envelope)

    def try_tell(self, message: Message) -> bool:
        """Send if there is room now; False (counted in ``refused``) if the lane is full."""
        envelope = Envelope(message, None)
        if isinstance(message, PriorityMessage):
            self._cell.deliver_priority(envelope)
            return True
        return self._cell.mailbox.put_nowait(envelope)

    def try_ask(
        self, request: Request[R], on_reply: Callable[[outcome.Outcome[Any]], None]
    ) -> CallbackSlot | None:
        """Send ``request`` now, without waiting, if there is room; None if the lane is full.

        ``on_reply`` is called once, from the actor's task, with the outcome: the reply, or the
        error ``ask`` would raise (ActorError, ActorUnavailable). There is no timeout here: the
        caller keeps its own and calls ``abandon()`` on the returned slot when it gives up, so
        a request still queued is never run later (as with ``ask``). For askers outside trio
        tasks (the gRPC edge's asyncio servicers, on the same thread).

        Error handling: raises ActorUnavailable at once if the actor is down.
        """
        slot = CallbackSlot(on_reply)
        envelope = Envelope(request, slot)
        if isinstance(request, PriorityMessage):
            self._cell.deliver_priority(envelope)
            return slot
        return slot if self._cell.mailbox.put_nowait(envelope) else None

    async def ask(self, request: Request[R], *, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> R:
        """Send ``request`` and wait for its typed reply.

        ``timeout`` covers waiting for room in the mailbox and for the reply (None: no limit).

        Error handling: raises ActorError (naming the actor, the request and the original
        error, which is its ``cause``) if the handler failed; AskTimeout if no reply came in
        time — a request still queued then is dropped, never executed later; ActorUnavailable
        if the actor is down.
        """
        slot = ReplySlot()
        envelope = Envelope(request, slot)
        with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
            if isinstance(request, PriorityMessage):
                self._cell.deliver_priority(envelope)
            else:
                await self._cell.mailbox.put_unless_full(envelope)
            return await slot.wait()  # type: ignore[no-any-return]
        slot.abandoned = True
        assert scope.cancelled_caught and timeout is not None
        raise AskTimeout(self._cell.name, request, timeout)
