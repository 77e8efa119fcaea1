"""One connection to the daemon shared by every device of one ``connect``: the asyncio client
on the RunEngine's loop, and a watch on the daemon's emergency stop.

Why a watch: a RunEngine only learns about trouble when a device raises. The daemon's e-stop
stops the hardware but leaves readings flowing (a power meter keeps measuring during an
incident), so without the watch a plan reading the power meter would go on as if nothing had
happened. Every device operation runs through :meth:`Session.guard`, which fails it with
:class:`EmergencyStopped` (the daemon's reason in the message) when the daemon latches while
it runs, or latched since the device was staged for the plan.

Error handling: the watch re-subscribes after a dropped connection (the client's stream
retries); if it ends for good, the session keeps working and ``watching`` turns False (moves
are still refused by the daemon itself while it is latched).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable
from typing import TypeVar

from .._async import AsyncBench
from .._errors import Aborted, BenchError, EmergencyStopLatched

T = TypeVar("T")

#: Beyond the client's own bounds, how long ophyd-async lets a signal's read or put take.
SIGNAL_MARGIN_S = 5.0

logger = logging.getLogger(__name__)


class EmergencyStopped(EmergencyStopLatched):
    """The daemon's emergency stop ended the operation (and so the plan).

    A :class:`~client.EmergencyStopLatched` (so ``except BenchError`` catches it too); the
    message carries the daemon's reason. A RunEngine reports it as raised, or — for a move or
    a trigger the plan waited on — as the ``__cause__`` of bluesky's ``FailedStatus``.
    """

    def __init__(self, reason: str, what: str = "") -> None:
        self.reason = reason
        doing = f" during {what}" if what else ""
        super().__init__(
            f"the bench's emergency stop was triggered{doing}: {reason or 'no reason given'};"
            " the hardware is stopped and motion is refused until it is reset"
            " (bench.reset_emergency_stop())"
        )


class Session:
    """The client and the e-stop watch; build it with :meth:`open` on the RunEngine's loop."""

    def __init__(self, bench: AsyncBench) -> None:
        self.bench = bench
        self.latched = False
        self.reason = ""
        self.stops = 0  # e-stops seen since the session opened (an epoch for staged devices)
        self._latch = asyncio.Event()
        self._first = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, bench: AsyncBench) -> Session:
        session = cls(bench)
        session._watch = asyncio.get_running_loop().create_task(session._watch_estop())
        # the stream's first message is the state now: a plan started while latched knows it
        waiting = asyncio.ensure_future(session._first.wait())
        await asyncio.wait([waiting, session._watch], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if session._watch.done() and not session._first.is_set():
            session._watch.result()  # the stream failed before its first message: say why
        return session

    @property
    def signal_timeout(self) -> float:
        """ophyd-async's timeout of every signal of these devices (its default is 10 s): longer
        than the client's own bounds (a call's deadline, then its reconnect budget), so a
        daemon that went away or stopped answering fails a read or a put with the client's
        error naming the daemon and the call (ConnectionLost, DeadlineExceeded), not
        ophyd-async's bare ``TimeoutError(<source>)`` raised while the client still retries."""
        return self.bench.timeout + self.bench.retry.budget + SIGNAL_MARGIN_S

    @property
    def watching(self) -> bool:
        return self._watch is not None and not self._watch.done()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, BenchError):
                await self._watch
        await self.bench.close()

    async def _watch_estop(self) -> None:
        async for event in self.bench.stream_emergency_stop_events():
            if event.latched and (event.kind == "stopped" or not self.latched):
                self.stops += 1  # a new stop (or one that happened while reconnecting)
                self.reason = event.reason
                self.latched = True
                self._latch.set()
            elif not event.latched:
                self.latched = False
                self._latch = asyncio.Event()
            self._first.set()

    def check(self, since: int | None = None, what: str = "") -> None:
        """Raise :class:`EmergencyStopped` if an e-stop happened after epoch ``since`` (the
        ``stops`` count when the device was staged) and is still latched."""
        if self.latched and since is not None and self.stops > since:
            raise EmergencyStopped(self.reason, what)

    async def guard(self, work: Awaitable[T], *, what: str, since: int | None = None) -> T:
        """Run ``work``; an e-stop latching meanwhile cancels it and raises EmergencyStopped.

        A refusal because of the latch (``EmergencyStopLatched``) or a request the e-stop cut
        short (``Aborted`` while latched) becomes EmergencyStopped too, with the reason."""
        try:
            self.check(since, what)
        except EmergencyStopped:
            if inspect.iscoroutine(work):
                work.close()  # never started: no "never awaited" warning
            raise
        task = asyncio.ensure_future(work)
        latch = self._latch
        waiting = asyncio.ensure_future(latch.wait())
        try:
            await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                if latch.is_set():
                    raise EmergencyStopped(self.reason, what) from None
        try:
            return task.result()
        except EmergencyStopped:
            raise
        except EmergencyStopLatched as error:
            raise EmergencyStopped(await self._reason(), what) from error
        except Aborted as error:
            if "EmergencyStop" in error.message or await self._latched_now():
                raise EmergencyStopped(await self._reason(), what) from error
            raise

    async def _latched_now(self) -> bool:
        if self.latched:
            return True
        try:
            return (await self.bench.emergency_stop_state()).latched
        except BenchError:
            return False

    async def _reason(self) -> str:
        """The latch's reason, asked of the daemon: the refusal can beat the watch's events,
        and a watch behind by a reset and a new stop still holds the old stop's reason. The
        watch's reason only if the daemon cannot be asked."""
        try:
            state = await self.bench.emergency_stop_state()
        except BenchError:
            return self.reason
        return state.reason or self.reason
