"""The two-lane mailbox of an actor.

Why not two trio memory channels: an actor must wait on *either* lane and always take the
priority lane first, and trio has no select. Two deques and two parking lots give exactly that
with the same checkpoint discipline as ``trio.MemoryReceiveChannel`` (every operation is a
checkpoint; a cancelled receive never loses a message).

* Normal lane: bounded. ``put`` waits while it is full (backpressure), ``put_nowait`` refuses
  and counts.
* Priority lane: unbounded and never waits, so an emergency stop cannot be refused or delayed
  by a backlog. Only :class:`~runtime.PriorityMessage` types go there, and those are rare.
* Query lane: bounded like the normal lane, for :class:`~runtime.Query` requests (read-only);
  the actor serves it from a task of its own, so a query never waits behind a normal handler
  (docs/kernel.md, "Queries"). ``put``/``put_nowait`` route by the message's type.

The mailbox outlives the actor instance that drains it: a restarted actor picks up where the
crashed one left off, and refs held elsewhere stay valid. When an actor goes down for good the
mailbox is closed: pending asks fail with :class:`~runtime.ActorUnavailable` at once instead of
waiting for their timeouts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import trio

from ._errors import ActorUnavailable
from ._messages import Message, Query
from ._reply import ReplySlot


class Envelope(NamedTuple):
    message: Message
    reply: ReplySlot | None


class Mailbox:
    __slots__ = (
        "_closed_reason",
        "_normal",
        "_priority",
        "_query",
        "_query_receiver_lot",
        "_query_sender_lot",
        "_receiver_lot",
        "_sender_lot",
        "_wake",
        "capacity",
        "dropped_on_close",
        "name",
        "on_priority",
        "refused",
    )

    def __init__(self, name: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be >= 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._normal: deque[Envelope] = deque()
        self._priority: deque[Envelope] = deque()
        self._query: deque[Envelope] = deque()
        self._receiver_lot = trio.lowlevel.ParkingLot()
        self._sender_lot = trio.lowlevel.ParkingLot()
        # The query lane has its own lots: one lot for two lanes could wake a sender whose
        # lane is still full while the one that has room stays parked.
        self._query_receiver_lot = trio.lowlevel.ParkingLot()
        self._query_sender_lot = trio.lowlevel.ParkingLot()
        self._closed_reason: str | None = None
        self._wake = False
        self.refused = 0
        self.dropped_on_close = 0
        # Set by the running actor: called when a priority message arrives so the normal
        # handler in flight can be cancelled at once.
        self.on_priority: Callable[[], None] | None = None

    # -- state -----------------------------------------------------------------------------

    @property
    def normal_depth(self) -> int:
        return len(self._normal)

    @property
    def priority_depth(self) -> int:
        return len(self._priority)

    @property
    def query_depth(self) -> int:
        return len(self._query)

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    def _unavailable(self) -> ActorUnavailable:
        return ActorUnavailable(f"actor {self.name!r} is down: {self._closed_reason}")

    # -- sending ---------------------------------------------------------------------------

    def _append(self, envelope: Envelope) -> bool:
        if self._closed_reason is not None:
            raise self._unavailable()
        if isinstance(envelope.message, Query):
            if len(self._query) >= self.capacity:
                return False
            self._query.append(envelope)
            self._query_receiver_lot.unpark()
            return True
        if len(self._normal) >= self.capacity:
            return False
        self._normal.append(envelope)
        self._receiver_lot.unpark()
        return True

    def _senders(self, envelope: Envelope) -> trio.lowlevel.ParkingLot:
        """Where a sender waits for room in the lane of ``envelope``."""
        return self._query_sender_lot if isinstance(envelope.message, Query) else self._sender_lot

    def put_nowait(self, envelope: Envelope) -> bool:
        """Enqueue on the normal (or query) lane; False (and counted) when the lane is full."""
        if self._append(envelope):
            return True
        self.refused += 1
        return False

    async def put(self, envelope: Envelope) -> None:
        """Enqueue on the normal (or query) lane, waiting while it is full."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._append(envelope):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        while not self._append(envelope):
            await self._senders(envelope).park()

    async def put_unless_full(self, envelope: Envelope) -> None:
        """Like :meth:`put` but without the trailing checkpoint when there is room.

        For ``ask``, which parks on its reply right after and so yields anyway.
        """
        while not self._append(envelope):
            await self._senders(envelope).park()

    def put_priority(self, envelope: Envelope) -> None:
        """Enqueue on the priority lane. Never waits, never raises.

        On a closed mailbox the reply (if any) fails with ActorUnavailable immediately.
        """
        if self._closed_reason is not None:
            if envelope.reply is not None:
                envelope.reply.set_error(self._unavailable())
            return
        self._priority.append(envelope)
        self._receiver_lot.unpark()
        if self.on_priority is not None:
            self.on_priority()

    # -- receiving -------------------------------------------------------------------------

    async def receive_normal(self) -> Envelope | None:
        """The next normal envelope; None at once if a priority message is waiting or
        :meth:`wake` was called (the caller handles the priority lane or its stop request)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while True:
            if self._priority or self._wake:
                self._wake = False
                return None
            if self._normal:
                envelope = self._normal.popleft()
                self._sender_lot.unpark()
                break
            await self._receiver_lot.park()
            parked = True
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return envelope

    async def receive_query(self) -> Envelope:
        """The next query envelope, waiting for one (the actor's query task)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while not self._query:
            await self._query_receiver_lot.park()
            parked = True
        envelope = self._query.popleft()
        self._query_sender_lot.unpark()
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return envelope

    def wake(self) -> None:
        """Make a waiting (or the next) :meth:`receive_normal` return None."""
        self._wake = True
        self._receiver_lot.unpark()

    def clear_wake(self) -> None:
        self._wake = False

    def push_front(self, envelope: Envelope) -> None:
        """Put back an envelope just received, to be handled after the priority lane."""
        self._normal.appendleft(envelope)

    def has_priority(self) -> bool:
        return bool(self._priority)

    def priority_nowait(self) -> Envelope | None:
        """Pop the next priority envelope without waiting, or None."""
        return self._priority.popleft() if self._priority else None

    def peek_priority(self) -> Message | None:
        return self._priority[0].message if self._priority else None

    # -- lifecycle -------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """Refuse new messages and fail every queued ask. Idempotent."""
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        for lane in (self._priority, self._normal, self._query):
            while lane:
                envelope = lane.popleft()
                if envelope.reply is not None:
                    envelope.reply.set_error(self._unavailable())
                else:
                    self.dropped_on_close += 1
        self._sender_lot.unpark_all()
        self._query_sender_lot.unpark_all()

    def reopen(self) -> None:
        self._closed_reason = None
