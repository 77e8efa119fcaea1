"""The GUI's link to the daemon: the client's asyncio API on a worker thread of its own.

Why a worker thread rather than an asyncio loop driven by Qt (qasync, QtAsyncio): the network,
protobuf decoding and the numpy work of unpacking preview frames then never run on the Qt
thread, so a slow or vanished daemon cannot freeze a repaint, and Qt's modal loops (menus,
dialogs, window resizes) cannot stall the gRPC streams either. The price is one hop per result:
each result comes back to the Qt thread as a queued signal carrying a callable (:class:`_Relay`),
and high-rate streams (frames) are coalesced so that at most one item per stream waits in Qt's
queue (``latest=True``): a busy GUI skips frames, it never builds a backlog.

Sessions: a session starts each time the daemon answers ``GetDaemonInfo`` and ends when any
call or stream of it finds the daemon gone (``ConnectionLost``: the client's own retries, with
a short budget here, have run out) or the heartbeat gets no answer. Panels open their streams
in their ``connected`` handler; every stream of a session is cancelled when it ends, and the
connection then retries with capped exponential backoff (0.25 s doubling to 5 s) until the
daemon answers again, when panels open their streams anew.

Error handling: an error a call raises (``InvalidArgument`` with the daemon's message, ...) is
handed to the call's ``failed`` callback on the Qt thread; a stream that fails with a daemon
error (a degraded device: ``Unavailable``) reports it and is opened again after
:data:`STREAM_RETRY` seconds while the session lasts. Nothing the daemon does can raise on the
Qt thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal, Slot

from client import (
    AsyncBench,
    BenchError,
    ConnectionLost,
    DaemonInfo,
    DeadlineExceeded,
    PermissionDenied,
    RetryPolicy,
    Unauthenticated,
)

logger = logging.getLogger("gui.connection")

T = TypeVar("T")

#: Calls give up on an unreachable daemon after this long (the client retries meanwhile).
CALL_RETRY = RetryPolicy(initial=0.05, maximum=0.5, multiplier=2.0, budget=1.5)
#: Reconnection attempts: first delay, cap.
RECONNECT_INITIAL, RECONNECT_MAX = 0.25, 5.0
#: A stream that failed with a daemon error (not a lost connection) is opened again after this.
STREAM_RETRY = 2.0
HEARTBEAT = 1.0
#: A daemon that answers no heartbeat for this long, this many times in a row, is taken as hung
#: (a busy daemon is slow, not gone: a run at full rate can hold its answers for seconds).
HEARTBEAT_TIMEOUT, HEARTBEAT_MISSES = 5.0, 2
#: What ends a session: the connection itself failed (the client's retries ran out). A
#: DEADLINE_EXCEEDED from a call is an answer (a move that did not settle), not a lost daemon.
LOST = (ConnectionLost, OSError)
#: How the daemon words every refusal while the e-stop is latched (runtime/_latch.py).
LATCH_MARK = "e-stop latched since "


@dataclass(frozen=True, slots=True)
class Session:
    """One stretch of being connected: what the daemon said about itself and about us."""

    number: int
    info: DaemonInfo

    @property
    def operator(self) -> bool:
        return self.info.role == "operator"


class _Relay(QObject):
    """Runs callables on the thread it lives on (the Qt thread), in order."""

    deliver = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.deliver.connect(self._run)
        self.open = True

    @Slot(object)
    def _run(self, function: Callable[[], None]) -> None:
        if not self.open:
            return
        try:
            function()
        except Exception:  # a panel's bug must not take the GUI down; it is logged
            logger.exception("a GUI callback failed")


class Watch:
    """A stream a panel follows; ``cancel()`` ends it (from the Qt thread)."""

    def __init__(self, connection: Connection, session: int) -> None:
        self._connection = connection
        self.session = session
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False
        self._lock = threading.Lock()
        self._latest: Any = _EMPTY

    def cancel(self) -> None:
        self.cancelled = True
        loop, task = self._connection.loop, self.task
        if task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    @property
    def active(self) -> bool:
        return not self.cancelled and self.session == self._connection.current_session

    def offer(self, item: Any) -> bool:
        """Keep only the newest item; True if nothing was waiting (so post a delivery)."""
        with self._lock:
            idle = self._latest is _EMPTY
            self._latest = item
        return idle

    def take(self) -> Any:
        with self._lock:
            item, self._latest = self._latest, _EMPTY
        return item

    def append(self, item: Any) -> bool:
        """Add to the batch waiting; True if none was waiting (so post a delivery)."""
        with self._lock:
            idle = self._latest is _EMPTY
            if idle:
                self._latest = [item]
            else:
                self._latest.append(item)
        return idle


_EMPTY: Any = object()


class Connection(QObject):
    """A daemon connection that outlives the daemon: ``connected`` / ``disconnected`` signals,
    calls and streams that deliver their results on the Qt thread."""

    #: A new session (:class:`Session`): open streams now.
    connected = Signal(object)
    #: The session ended; the argument says why. Its streams are gone.
    disconnected = Signal(str)
    #: (state, detail): "connecting", "connected", "disconnected", "refused".
    state_changed = Signal(str, str)
    #: A refusal that names the e-stop latch ("e-stop latched since 14:02:05 by alice (…)"):
    #: the daemon's own words for since when and by whom, whichever call met it.
    latch_refusal = Signal(str)

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls: bool | str | None = None,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        super().__init__()
        self.address = address
        self.token = token
        self.tls = tls
        self.heartbeat = heartbeat
        self.loop = asyncio.SelectorEventLoop()  # never the policy's (trio-asyncio's) loop
        self.session: Session | None = None  # as the Qt thread knows it
        self.session_number = 0  # sessions so far
        self.current_session = 0  # the worker's session now (0: none)
        self.state = "connecting"
        self._relay = _Relay()
        self._bench: AsyncBench | None = None
        self._thread = threading.Thread(target=self._main, name="benchd-gui-client", daemon=True)
        self._supervisor: asyncio.Future[None] | None = None
        self._session_end: asyncio.Future[str] | None = None
        self._watches: set[Watch] = set()
        self._reconnect_now: asyncio.Event | None = None

    # -- lifecycle (Qt thread) -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._supervisor = asyncio.run_coroutine_threadsafe(self._supervise(), self.loop)  # type: ignore[assignment]

    def close(self) -> None:
        """End every stream, close the connection and join the worker (at most ~3 s)."""
        self._relay.open = False
        if not self._thread.is_alive():
            return

        async def shut() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks(self.loop) if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._bench is not None:
                await self._bench.close()

        try:
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(timeout=2.0)
        except Exception:
            logger.warning("closing the daemon connection took too long", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            self.loop.close()

    def reconnect_now(self) -> None:
        """Skip the rest of the backoff wait."""
        event = self._reconnect_now
        if event is not None:
            self.loop.call_soon_threadsafe(event.set)

    @property
    def connected_now(self) -> bool:
        return self.session is not None

    # -- calls and streams (Qt thread) -----------------------------------------------------------

    def call(
        self,
        make: Callable[[AsyncBench], Awaitable[T]],
        done: Callable[[T], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run ``make(bench)`` on the worker; ``done(result)`` or ``failed(error)`` follow on
        the Qt thread. A call while disconnected fails with ``ConnectionLost`` at once."""

        async def run() -> None:
            bench = self._bench
            try:
                if bench is None or self.current_session == 0:
                    raise ConnectionLost(f"not connected to the daemon at {self.address}")
                result = await make(bench)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if isinstance(error, LOST):
                    self._lost(error)
                self._note_refusal(error)
                if failed is not None:
                    self._post(lambda error=error: failed(error))  # type: ignore[misc]
                else:
                    logger.warning("%s", error)
                return
            if done is not None:
                self._post(lambda: done(result))

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(run(), self.loop)

    def watch(
        self,
        make: Callable[[AsyncBench], AsyncIterator[T]],
        on_item: Callable[[T], None],
        *,
        latest: bool = False,
        failed: Callable[[BaseException], None] | None = None,
        reopen: bool = True,
    ) -> Watch:
        """Follow ``make(bench)`` for this session: ``on_item`` gets each item on the Qt thread
        (with ``latest``, only the newest one waiting). A daemon error reports to ``failed``
        and the stream is opened again after a pause; a lost connection ends the session. A
        stream the daemon ends is opened again too, unless ``reopen`` is False (a scan's
        status stream ends with the scan; an error then ends it too, reported to ``failed``)."""
        return self._watch(make, on_item, "latest" if latest else "each", failed, reopen)

    def watch_batches(
        self,
        make: Callable[[AsyncBench], AsyncIterator[T]],
        on_items: Callable[[list[T]], None],
        *,
        failed: Callable[[BaseException], None] | None = None,
        reopen: bool = True,
    ) -> Watch:
        """Like :meth:`watch`, for a stream where every item counts but one hop per item
        would not keep up (a scan's events: thousands of points a second): the items that
        arrived since the last delivery come to ``on_items`` together, in order, so the Qt
        thread redraws once per batch and nothing is skipped."""
        return self._watch(make, on_items, "batch", failed, reopen)

    def _watch(
        self,
        make: Callable[[AsyncBench], AsyncIterator[T]],
        on_item: Callable[[Any], None],
        mode: str,
        failed: Callable[[BaseException], None] | None,
        reopen: bool,
    ) -> Watch:
        session = self.session.number if self.session is not None else -1
        handle = Watch(self, session)

        def deliver_latest() -> None:
            item = handle.take()
            if item is not _EMPTY and handle.active:
                on_item(item)

        def deliver(item: T) -> None:
            if handle.active:
                on_item(item)

        async def follow() -> None:
            while True:
                assert self._bench is not None
                try:
                    async for item in make(self._bench):
                        if mode == "latest":
                            if handle.offer(item):
                                self._post(deliver_latest)
                        elif mode == "batch":
                            if handle.append(item):
                                self._post(deliver_latest)
                        else:
                            self._post(lambda item=item: deliver(item))  # type: ignore[misc]
                    if not reopen:
                        return
                except asyncio.CancelledError:
                    raise
                except LOST as error:
                    self._lost(error)
                    return
                except Exception as error:
                    self._note_refusal(error)
                    if failed is not None:
                        self._post(lambda error=error: failed(error))  # type: ignore[misc]
                    elif not isinstance(error, (Unauthenticated, PermissionDenied, BenchError)):
                        logger.exception("a stream failed")
                    else:
                        logger.warning("a stream failed: %s: %s", type(error).__name__, error)
                    if not reopen:  # a finite stream (one scan's): its error is its end
                        return
                await asyncio.sleep(STREAM_RETRY)

        def begin() -> None:
            if handle.cancelled or handle.session != self.current_session or self._bench is None:
                return
            handle.task = self.loop.create_task(follow())
            self._watches.add(handle)
            handle.task.add_done_callback(lambda _: self._watches.discard(handle))

        if self._thread.is_alive() and session > 0:
            self.loop.call_soon_threadsafe(begin)
        return handle

    def on_qt(self, callback: Callable[[T], None]) -> Callable[[T], None]:
        """A function for the worker's side (a progress callback of a client call): each
        ``item`` it is given goes to ``callback`` on the Qt thread, in order."""

        def post(item: T) -> None:
            self._post(lambda: callback(item))

        return post

    def poll(
        self,
        make: Callable[[AsyncBench], Awaitable[T]],
        on_result: Callable[[T], None],
        interval: float,
        *,
        failed: Callable[[BaseException], None] | None = None,
    ) -> Watch:
        """``make(bench)`` now and every ``interval`` seconds of this session."""

        async def every(bench: AsyncBench) -> AsyncIterator[T]:
            while True:
                yield await make(bench)
                await asyncio.sleep(interval)

        return self.watch(every, on_result, latest=True, failed=failed)

    # -- the worker ----------------------------------------------------------------------------

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _post(self, function: Callable[[], None]) -> None:
        if self._relay.open:
            self._relay.deliver.emit(function)

    def _state(self, state: str, detail: str) -> None:
        def show() -> None:
            self.state = state
            self.state_changed.emit(state, detail)

        self._post(show)

    def _note_refusal(self, error: BaseException) -> None:
        text = str(getattr(error, "message", "") or error)
        if LATCH_MARK in text:
            self._post(lambda: self.latch_refusal.emit(text))

    def _lost(self, error: BaseException) -> None:
        end = self._session_end
        if end is not None and not end.done():
            end.set_result(
                f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            )

    async def _supervise(self) -> None:
        self._bench = AsyncBench(self.address, token=self.token, tls=self.tls, retry=CALL_RETRY)
        self._reconnect_now = asyncio.Event()
        delay = RECONNECT_INITIAL
        attempts = 0
        while True:
            attempts += 1
            self._state("connecting", f"connecting to {self.address}")
            refused = False
            try:
                info = await asyncio.wait_for(self._bench.info(), HEARTBEAT_TIMEOUT + 2)
            except (Unauthenticated, PermissionDenied) as error:
                reason, refused = f"the daemon refused this GUI's token: {error}", True
            except (*LOST, TimeoutError, DeadlineExceeded) as error:
                reason = f"cannot reach the daemon at {self.address} ({type(error).__name__})"
            except BenchError as error:
                reason = f"the daemon answered with an error: {error}"
            else:
                delay, attempts = RECONNECT_INITIAL, 0
                reason = await self._run_session(info)
            wait = RECONNECT_MAX if refused else delay
            self._state(
                "refused" if refused else "disconnected",
                f"{reason}; retrying in {wait:.1f} s"
                + (f" (attempt {attempts})" if attempts else ""),
            )
            self._reconnect_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconnect_now.wait(), wait)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _run_session(self, info: DaemonInfo) -> str:
        assert self._bench is not None
        self.session_number += 1
        self.current_session = self.session_number
        session = Session(self.session_number, info)
        self._session_end = self.loop.create_future()

        def begin() -> None:
            self.session = session
            self.state = "connected"
            self.connected.emit(session)
            self.state_changed.emit("connected", f"connected to {self.address}")

        self._post(begin)
        beat = self.loop.create_task(self._heartbeat())
        try:
            reason = await self._session_end
        finally:
            beat.cancel()
            self.current_session = 0  # no new watch joins this session
            for handle in list(self._watches):
                if handle.task is not None:
                    handle.task.cancel()
            self._watches.clear()

            def end() -> None:
                self.session = None
                self.disconnected.emit(reason)

            self._post(end)
        return reason

    async def _heartbeat(self) -> None:
        assert self._bench is not None
        misses = 0
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await asyncio.wait_for(self._bench.info(), HEARTBEAT_TIMEOUT)
            except LOST as error:
                self._lost(error)
                return
            except (TimeoutError, DeadlineExceeded):
                misses += 1
                if misses >= HEARTBEAT_MISSES:
                    self._lost(
                        TimeoutError(
                            f"the daemon answered no heartbeat for {misses * HEARTBEAT_TIMEOUT:g} s"
                        )
                    )
                    return
                continue
            except BenchError:
                pass  # it answered: it is there
            misses = 0
