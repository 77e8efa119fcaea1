"""The hand-off between grpclib's asyncio servicers and the trio side of the edge actor.

Both run on one thread: the edge actor opens a trio-asyncio loop, so an asyncio callback and a
trio task can touch each other's objects directly. A request to one actor does not come here:
it goes straight into that actor's mailbox with ``ActorRef.try_ask`` (``EdgeContext.request``).
For trio work of its own (a preset, the e-stop, a stream) a servicer calls
:meth:`Bridge.submit`; that puts (work, asyncio Future) into the edge's trio memory channel with
``send_nowait`` — no await, no thread hop — and returns the Future. The edge's dispatcher task
starts one trio task per piece of work (so a move that waits for its settle never delays a
parameter read), which resolves the Future with the work's result or error, on the same thread.
This costs one channel hop and one task start; the generic ``trio_as_aio`` adapter, which
builds a trio task and an asyncio task per call, measured ~30 % slower on unary calls.

Cancellation goes both ways: a client that goes away (or its deadline) cancels the servicer,
which cancels the Future, whose done-callback cancels the trio work; a trio side that shuts
down fails the Future with UNAVAILABLE so no servicer waits forever.

Streams (:meth:`Bridge.stream`): the trio producer pushes items into a small buffer the servicer
drains; when the buffer is full the oldest item is dropped (``latest`` policy: a slow client
skips to new values, it never slows the device) — or, for event streams, the buffer is sized so
that nothing is dropped in practice and a drop is reported to the client instead of hidden.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError

T = TypeVar("T")

_Work = tuple[Callable[[], Awaitable[Any]], "asyncio.Future[Any]"]


def shutting_down() -> GRPCError:
    return GRPCError(Status.UNAVAILABLE, "the daemon is shutting down; retry later")


class Bridge:
    """asyncio -> trio hand-off; :meth:`run` is the trio side, started by the edge actor."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._send, self._receive = trio.open_memory_channel[_Work](capacity)
        self.capacity = capacity

    def submit(self, work: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Start ``work`` on the trio side; its result or error arrives in the Future.

        Error handling: RESOURCE_EXHAUSTED if ``capacity`` calls are already waiting to start,
        UNAVAILABLE once the edge is shutting down.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            self._send.send_nowait((work, future))
        except trio.WouldBlock:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"the daemon has {self.capacity} requests waiting to start; retry later",
            ) from None
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise shutting_down() from None
        return future

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """``await`` the trio ``work`` from asyncio (a servicer)."""
        return await self.submit(work)

    async def stream(
        self,
        produce: Callable[[Callable[[T], None]], Awaitable[None]],
        *,
        capacity: int = 16,
    ) -> AsyncIterator[T]:
        """Run ``produce(push)`` on the trio side and yield what it pushes, from asyncio.

        The stream ends when the producer returns, or raises its error. Leaving the loop early
        (the client went away) cancels the producer.
        """
        feed: _Feed[T] = _Feed(capacity)

        async def work() -> None:
            try:
                await produce(feed.push)
            finally:
                feed.close()

        future = self.submit(work)
        try:
            while True:
                item = await feed.get(future)
                if item is _END:
                    future.result()  # raises the producer's error, if it failed
                    return
                yield item
        finally:
            future.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every submitted piece of work in its own task, until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                async for work, future in self._receive:
                    if not future.done():
                        nursery.start_soon(_settle, work, future)
        finally:
            self._send.close()
            for _, future in _drain(self._receive):
                if not future.done():
                    future.set_exception(shutting_down())


def _drain(receive: trio.MemoryReceiveChannel[_Work]) -> list[_Work]:
    left = []
    while True:
        try:
            left.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return left


async def _settle(work: Callable[[], Awaitable[Any]], future: asyncio.Future[Any]) -> None:
    with trio.CancelScope() as scope:
        future.add_done_callback(lambda _: scope.cancel())  # the servicer gave up
        try:
            result = await work()
        except trio.Cancelled:
            if not future.done():
                future.set_exception(shutting_down())
            raise
        except Exception as error:
            if not future.done():
                future.set_exception(error)
        else:
            if not future.done():
                future.set_result(result)


_END: Any = object()


class _Feed(Generic[T]):
    """A bounded buffer from a trio producer to an asyncio consumer on the same thread."""

    def __init__(self, capacity: int) -> None:
        self._items: collections.deque[T] = collections.deque(maxlen=max(1, capacity))
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0

    def push(self, item: T) -> None:
        if self._closed:
            return
        if len(self._items) == self._items.maxlen:
            self.dropped += 1  # the oldest goes: a slow client skips ahead
        self._items.append(item)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self, producer: asyncio.Future[Any]) -> T:
        while not self._items:
            if self._closed or producer.done():
                return _END  # type: ignore[no-any-return]
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        return self._items.popleft()


def clamp_timeout(requested: float, deadline_remaining: float | None, default: float) -> float:
    """The timeout for an ask: the request's own (0 = ``default``), never past the deadline."""
    timeout = default if requested == 0 else requested
    if deadline_remaining is not None:
        timeout = min(timeout, max(0.0, deadline_remaining))
    return timeout if math.isfinite(timeout) else default
