"""Observable: a value with a timestamp, a version and latest-value subscriptions.

Why latest-value rather than a queue per subscriber: a GUI that repaints at 30 Hz must never
slow an owner that publishes at 10 kHz, and it has no use for stale intermediate values. Each
subscriber remembers the last version it saw and, when it asks again, gets whatever is current
now; the owner's ``set`` is synchronous and O(1) whatever the number or speed of subscribers.
(trio-util's AsyncValue does something similar; this one also carries the version, timestamp
and source every reading needs, and closes cleanly when its owner goes away.)
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Source(enum.StrEnum):
    """Who caused a value to change; recorded with every change, shown to every client."""

    DEFAULT = "default"  # the value a parameter starts with
    USER = "user"  # a client or the operator
    SCRIPT = "script"  # a script or scan running in the daemon
    HARDWARE = "hardware"  # read from the instrument (read-back, poll, unsolicited report)


@dataclass(frozen=True, slots=True)
class Sample(Generic[T]):
    """One published value: what, when (Unix time), which version, caused by whom."""

    value: T
    timestamp: float
    version: int
    source: Source


class ObservableClosed(Exception):
    """The observable's owner is gone; a subscriber must look the value up again."""


class Observable(Generic[T]):
    """A published value. The owner calls :meth:`set`; anyone may read or subscribe."""

    __slots__ = ("_closed", "_lot", "_sample")

    def __init__(self, value: T, *, source: Source = Source.DEFAULT) -> None:
        self._sample = Sample(value, time.time(), 0, source)
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False

    @property
    def value(self) -> T:
        return self._sample.value

    @property
    def version(self) -> int:
        return self._sample.version

    @property
    def closed(self) -> bool:
        return self._closed

    def sample(self) -> Sample[T]:
        return self._sample

    def set(self, value: T, source: Source) -> Sample[T]:
        """Publish a new value. Never blocks; wakes subscribers waiting for a change."""
        if self._closed:
            raise ObservableClosed("cannot publish to a closed observable")
        self._sample = Sample(value, time.time(), self._sample.version + 1, source)
        self._lot.unpark_all()
        return self._sample

    def close(self) -> None:
        """End every subscription (after it has seen the last value)."""
        self._closed = True
        self._lot.unpark_all()

    def subscribe(self, *, include_current: bool = True) -> Subscription[T]:
        """An async iterator of samples; a slow reader skips to the newest one."""
        seen = -1 if include_current else self._sample.version
        return Subscription(self, seen)

    async def wait_for(self, predicate: Callable[[T], bool]) -> Sample[T]:
        """Wait until the value satisfies ``predicate`` (checked now and on every change)."""
        async for sample in self.subscribe():
            if predicate(sample.value):
                return sample
        raise ObservableClosed("observable closed before the condition was met")

    async def _next_after(self, version: int) -> Sample[T]:
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while self._sample.version <= version:
            if self._closed:
                raise StopAsyncIteration
            await self._lot.park()
            parked = True
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return self._sample


class Subscription(Generic[T]):
    """Latest-value iterator over an Observable. Holds no resources: dropping it is enough."""

    __slots__ = ("_observable", "_seen")

    def __init__(self, observable: Observable[T], seen: int) -> None:
        self._observable = observable
        self._seen = seen

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> Sample[T]:
        sample = await self._observable._next_after(self._seen)
        self._seen = sample.version
        return sample
