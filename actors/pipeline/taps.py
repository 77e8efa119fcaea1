"""Taps: how one producer (a camera, a fast sensor) fans its items out without ever waiting.

The producer owns a :class:`TapRegistry` and calls :meth:`TapRegistry.publish` for every item;
publish is synchronous and O(number of taps), so no consumer can slow acquisition. What a
consumer gets depends on the tap's policy:

- ``LOSSLESS`` (file writers): a bounded FIFO. A consumer that keeps up loses nothing; if it
  ever falls ``capacity`` items behind, the newest item is *not* queued, and that loss is
  counted, logged and reported to the producer's ``on_loss`` callback — never silent. (EPICS
  areaDetector's silent queue drops are the failure this exists to avoid.)
- ``LATEST`` (GUIs, preview streams): a one-item slot. A slow reader sees the newest item and
  skips the rest; skipped items are counted but are not a loss, nobody asked to keep them.
- ``EVERY_NTH`` (analysis): like ``LATEST``, but only every ``every``-th item is offered.

Taps can be added and removed while the producer runs. A reader that goes away (closes its
tap, or its task dies) is removed at the next publish.

Error handling: :meth:`TapReader.receive` raises :class:`TapClosed` once the tap was removed or
its producer stopped and every queued item has been taken; items already queued are delivered
first, so a writer drains what it was promised.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

from runtime import NotFoundError, Request, ValidationError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class TapPolicy(enum.StrEnum):
    LOSSLESS = "lossless"
    LATEST = "latest"
    EVERY_NTH = "every_nth"


class TapClosed(Exception):
    """The tap was removed or its producer stopped; nothing more will arrive."""


@dataclass(frozen=True, slots=True)
class TapStatistics:
    """One tap's accounting. ``offered = delivered + pending + dropped + skipped`` (every item
    published while the tap existed, except those an every-Nth filter passed over)."""

    name: str
    policy: TapPolicy
    capacity: int
    offered: int
    delivered: int
    pending: int
    dropped: int  # lossless taps only: items lost because the consumer fell behind
    skipped: int  # latest / every-Nth taps: items replaced before the reader took them


class TapReader(Generic[T]):
    """The consumer's end of one tap; an async iterator of items.

    Only one task should read a tap (like a trio receive channel).
    """

    def __init__(self, name: str, policy: TapPolicy, capacity: int, every: int) -> None:
        self.name = name
        self.policy = policy
        self.capacity = capacity
        self.every = every
        self._items: deque[T] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self._offered = 0
        self._delivered = 0
        self._dropped = 0
        self._skipped = 0

    # -- the producer's side (called by TapRegistry only) ---------------------------------

    def _offer(self, item: T) -> bool:
        """Queue ``item`` if the policy allows; False if a lossless tap had to drop it."""
        self._offered += 1
        if self.policy is TapPolicy.EVERY_NTH and (self._offered - 1) % self.every:
            return True
        if self.policy is TapPolicy.LOSSLESS:
            if len(self._items) >= self.capacity:
                self._dropped += 1
                return False
        elif self._items:
            self._items.clear()
            self._skipped += 1
        self._items.append(item)
        self._lot.unpark_all()
        return True

    def _close(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    # -- the consumer's side ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def receive(self) -> T:
        """The next item; waits for one. Raises TapClosed when the tap is finished."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items:
            if self._closed:
                raise TapClosed(f"tap {self.name!r} is closed")
            await self._lot.park()
        self._delivered += 1
        return self._items.popleft()

    def receive_nowait(self) -> T:
        """The next item if one is queued; raises trio.WouldBlock (or TapClosed) otherwise."""
        if not self._items:
            if self._closed:
                raise TapClosed(f"tap {self.name!r} is closed")
            raise trio.WouldBlock
        self._delivered += 1
        return self._items.popleft()

    def receive_batch(self, limit: int) -> list[T]:
        """Up to ``limit`` queued items at once (possibly none): lets a writer batch its I/O."""
        count = min(limit, len(self._items))
        batch = [self._items.popleft() for _ in range(count)]
        self._delivered += count
        return batch

    def detach(self) -> None:
        """Take nothing new, keep what is queued: the producer forgets this tap at its next
        publish, and the consumer drains the queue (a writer finishing a run)."""
        self._close()

    def close(self) -> None:
        """The consumer is done: the producer forgets this tap at its next publish."""
        self._close()
        self._items.clear()

    def __aiter__(self) -> TapReader[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except TapClosed:
            raise StopAsyncIteration from None

    def statistics(self) -> TapStatistics:
        return TapStatistics(
            name=self.name,
            policy=self.policy,
            capacity=self.capacity,
            offered=self._offered,
            delivered=self._delivered,
            pending=len(self._items),
            dropped=self._dropped,
            skipped=self._skipped,
        )


LossCallback = Callable[[str, int], None]


class TapRegistry(Generic[T]):
    """A producer's taps. Owned by one actor, which alone calls :meth:`publish`.

    ``on_loss(tap_name, total_dropped)`` runs (synchronously, in the producer) each time a
    lossless tap drops an item, so the producer can count it against the acquisition and say so.
    """

    def __init__(self, stream: str, *, on_loss: LossCallback | None = None) -> None:
        self.stream = stream
        self._taps: dict[str, TapReader[T]] = {}
        self._on_loss = on_loss
        self._published = 0
        self._lost = 0
        self._removed: list[TapStatistics] = []

    @property
    def published(self) -> int:
        return self._published

    @property
    def lost(self) -> int:
        """Items lost by lossless taps since the registry was made (removed taps included)."""
        return self._lost

    def add(
        self,
        name: str,
        policy: TapPolicy,
        *,
        capacity: int = 64,
        every: int = 1,
    ) -> TapReader[T]:
        if name in self._taps and not self._taps[name].closed:
            raise ValidationError(
                f"{self.stream}: a tap named {name!r} exists already; remove it or pick another"
                f" name (taps: {', '.join(self._taps)})"
            )
        if not 1 <= capacity <= 1_000_000:
            raise ValidationError(f"tap capacity must be 1..1000000 items, got {capacity}")
        if not 1 <= every <= 1_000_000:
            raise ValidationError(f"every-Nth tap needs every = 1..1000000, got {every}")
        reader: TapReader[T] = TapReader(
            name, policy, capacity if policy is TapPolicy.LOSSLESS else 1, every
        )
        self._taps[name] = reader
        return reader

    def remove(self, name: str) -> TapStatistics:
        reader = self._taps.pop(name, None)
        if reader is None:
            raise NotFoundError(
                f"{self.stream}: no tap {name!r}; taps: {', '.join(self._taps) or 'none'}"
            )
        reader._close()
        return reader.statistics()

    def publish(self, item: T) -> None:
        """Offer ``item`` to every tap. Never waits, never raises for a slow consumer."""
        self._published += 1
        gone: list[str] = []
        for name, reader in self._taps.items():
            if reader.closed:
                gone.append(name)
            elif not reader._offer(item):
                self._lost += 1
                dropped = reader.statistics().dropped
                if _worth_logging(dropped):
                    logger.error(
                        "%s: lossless tap %r is %d items behind; %d items lost so far",
                        self.stream,
                        name,
                        reader.capacity,
                        dropped,
                    )
                if self._on_loss is not None:
                    self._on_loss(name, dropped)
        for name in gone:
            self._removed.append(self._taps.pop(name).statistics())

    def statistics(self) -> tuple[TapStatistics, ...]:
        return tuple(reader.statistics() for reader in self._taps.values())

    def close(self) -> None:
        """The producer is going away: every reader drains what it has, then ends."""
        for reader in self._taps.values():
            reader._close()
        self._taps.clear()


def _worth_logging(count: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... loss: loud at once, without flooding the log."""
    return count > 0 and math.log2(count).is_integer()


# -- the messages any tap owner answers --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddTap(Request[TapReader[Any]]):
    """Reply: the reader of a new tap on the producer's ``stream`` ("frames", "readings")."""

    stream: str
    name: str
    policy: TapPolicy
    capacity: int = 64
    every: int = 1


@dataclass(frozen=True, slots=True)
class RemoveTap(Request[TapStatistics]):
    """Reply: the tap's final accounting."""

    stream: str
    name: str


@dataclass(frozen=True, slots=True)
class GetTapStatistics(Request[tuple[TapStatistics, ...]]):
    stream: str
