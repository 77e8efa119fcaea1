"""Pre-started script worker processes, and the runner's end of one worker's pipes.

A fresh interpreter that imports Starlark takes ~40 ms of CPU (more on a loaded machine), so
the pool keeps ``size`` workers started and waiting for a job; taking one starts its
replacement in the background. Workers are started as a clean interpreter
(``python -E -s -m actors.scripting.worker``, through ``trio.lowlevel.open_process``, whose
``Popen`` runs in a thread): the daemon never forks itself, so no trio state, no socket and no
lock is copied into a script's process (``close_fds`` leaves it only its three pipes), and its
environment is a minimal one (no tokens or paths of the daemon's).

Each worker is watched from the moment it starts: a task drains its stderr into a bounded
tail (the diagnosis of a crash: "memory allocation of N bytes failed"), another waits for its
exit (``Worker.exited``). A worker that dies while waiting in the pool is replaced. Nothing
here blocks the event loop: spawning runs in a thread, waiting on a worker is a pidfd.

Error handling: :class:`WorkerStartError` when workers keep failing to start (three in a row),
with the last one's reason, so an execution ends in a clear error instead of waiting for ever.
Closing the pool (cancellation) kills every worker it started, idle or busy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .protocol import (
    DECODE_IN_THREAD,
    HEADER,
    MAX_FRAME,
    ProtocolError,
    body_length,
    decode,
    encode,
)

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]  # where ``actors`` is importable from
COMMAND = (sys.executable, "-E", "-s", "-m", "actors.scripting.worker")
STDERR_TAIL = 4096  # bytes of a worker's stderr kept for diagnosis
READY_TIMEOUT = 30.0  # s for a new worker to say ready (generous: the machine may be loaded)
FAILURES_BEFORE_GIVING_UP = 3  # consecutive failed starts before acquire() raises
MAX_BACKOFF = 5.0


class WorkerStartError(Exception):
    """No worker process could be started (the reason of the last attempt)."""


class Worker:
    """One worker process: framed messages over its stdin/stdout, its stderr tail, its exit.

    Its owner runs :meth:`watch` (the exit) and :meth:`drain_stderr` while it holds it.
    """

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.pid = process.pid
        self.exited = trio.Event()
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._buffer = bytearray()
        self._send_lock = trio.Lock()
        self._tail = bytearray()
        self._draining = False

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def stderr_tail(self) -> str:
        return self._tail.decode(errors="replace")

    async def receive(self) -> dict[str, Any] | None:
        """The next message from the worker; None when its stdout ends.

        Error handling: ProtocolError for an oversized or malformed frame (the caller ends
        the worker); the length is checked before the body is read.
        """
        header = await self._read_exactly(HEADER.size)
        if header is None:
            return None
        length = body_length(header, MAX_FRAME)
        body = await self._read_exactly(length)
        if body is None:
            return None
        if length > DECODE_IN_THREAD:
            return await trio.to_thread.run_sync(decode, body)
        return decode(body)

    async def _read_exactly(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            try:
                chunk = await self._stdout.receive_some(max(size - len(self._buffer), 4096))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not chunk:
                return None
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def send(self, message: dict[str, Any]) -> bool:
        """Send one message; False if the worker's stdin is gone (it exited or is exiting)."""
        return await self.send_frame(encode(message))

    async def send_frame(self, frame: bytes) -> bool:
        async with self._send_lock:
            try:
                await self._stdin.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        return True

    def signal(self, number: int) -> None:
        """Send a signal unless the worker has already been reaped."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(number)

    async def drain_stderr(self) -> None:
        """Keep the last :data:`STDERR_TAIL` bytes of stderr until it ends."""
        stderr = self.process.stderr
        assert stderr is not None
        if self._draining:
            return
        self._draining = True
        try:
            while chunk := await stderr.receive_some(4096):
                self._tail += chunk
                del self._tail[:-STDERR_TAIL]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._draining = False

    async def watch(self) -> None:
        """Wait for the exit (a pidfd: the event loop never blocks), then set ``exited``; if
        cancelled first, kill and reap (bounded), so no worker outlives its owner.

        The pipes stay open at the exit: a worker writes its report and exits at once, and
        the report may still be in the pipe when the exit is seen — closing our end then
        lost it ("worker exited with status 0" for a script that had failed cleanly, seen
        on a loaded machine). The owner closes them (``close``) once it has read to the end."""
        try:
            await self.process.wait()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.close()
            raise
        self.exited.set()

    async def close(self) -> None:
        """Kill (if still running), reap, keep what it said on stderr, close the pipes, set
        ``exited``. Bounded: a process the kernel cannot reap within 5 s is left to it."""
        if self.process.returncode is None:
            self.signal(signal.SIGKILL)
            with trio.move_on_after(5.0):
                await self.process.wait()
        with trio.move_on_after(0.5):  # dead: its stderr ends at once (unless someone reads it)
            await self.drain_stderr()
        self.exited.set()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                await stream.aclose()
        if not self._draining and self.process.stderr is not None:
            await self.process.stderr.aclose()


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    size: int  # workers kept ready
    ready: int  # started and waiting for a job now
    started: int  # processes started since the pool opened
    failed_starts: int
    died_idle: int  # ready workers that died before a job (replaced)
    last_failure: str
    ready_pids: tuple[int, ...] = ()


class WorkerPool:
    """Keeps ``size`` workers started; :meth:`acquire` hands one out (or waits for one).

    One long-lived task per seat starts a worker, waits until it is taken (its wait is
    cancelled by :meth:`acquire`) or dies idle, and starts the next. With ``size`` 0 a worker
    is started on demand in the caller's task.
    """

    def __init__(self, size: int = 1) -> None:
        if size < 0:
            raise ValueError("pool size must be >= 0")
        self.size = size
        self._ready: deque[tuple[Worker, trio.CancelScope]] = deque()
        self._changed = trio.Event()
        self._started = 0
        self._failed = 0
        self._failed_in_a_row = 0
        self._died_idle = 0
        self._last_failure = ""

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            self.size,
            len(self._ready),
            self._started,
            self._failed,
            self._died_idle,
            self._last_failure,
            tuple(worker.pid for worker, _ in self._ready),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the seats filled until cancelled; an idle worker is killed then."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.size):
                nursery.start_soon(self._seat)
            task_status.started()

    async def acquire(self) -> Worker:
        """A started worker, now the caller's to watch and end (see ``session.py``).

        Error handling: WorkerStartError when workers keep failing to start.
        """
        if self.size == 0:
            worker = await self._start()
            if worker is None:
                raise WorkerStartError(f"could not start a script worker: {self._last_failure}")
            return worker
        while True:
            while self._ready:
                worker, waiting = self._ready.popleft()
                if worker.returncode is None:
                    waiting.cancel()  # the seat starts the next one
                    return worker
            if self._failed_in_a_row >= FAILURES_BEFORE_GIVING_UP:
                raise WorkerStartError(f"could not start a script worker: {self._last_failure}")
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _seat(self) -> None:
        while True:
            if self._failed_in_a_row:
                # Back off between failing starts (a broken install must not spin).
                await trio.sleep(min(MAX_BACKOFF, 0.1 * 2 ** (self._failed_in_a_row - 1)))
            worker = await self._start()
            if worker is None:
                self._notify()  # an acquirer may have to give up
                continue
            taken = False
            try:
                with trio.CancelScope() as waiting:
                    self._ready.append((worker, waiting))
                    self._notify()
                    await worker.process.wait()
                taken = waiting.cancelled_caught
            finally:
                if not taken:  # died idle, or the pool is closing
                    with contextlib.suppress(ValueError):
                        self._ready.remove((worker, waiting))
                    with trio.CancelScope(shield=True):
                        await worker.close()
            if not taken:
                self._died_idle += 1
                logger.warning(
                    "script worker %d died while idle (status %s); replacing it",
                    worker.pid,
                    worker.returncode,
                )

    async def _start(self) -> Worker | None:
        """A new worker that has said ready; None (and the reason recorded) if it failed."""
        worker: Worker | None = None
        try:
            process = await trio.lowlevel.open_process(
                list(COMMAND),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
                env=_environment(),
                start_new_session=True,  # a Ctrl-C at the daemon's terminal is the daemon's
            )
            self._started += 1
            worker = Worker(process)
            with trio.move_on_after(READY_TIMEOUT):
                hello = await worker.receive()
                if hello is None or hello.get("type") != "ready":
                    raise ProtocolError(f"its first message was {_short(hello)}, not 'ready'")
                self._failed_in_a_row = 0
                return worker
            raise ProtocolError(f"not ready within {READY_TIMEOUT:.0f} s")
        except (OSError, ProtocolError) as error:
            self._failed += 1
            self._failed_in_a_row += 1
            self._last_failure = str(error)
            if worker is not None:
                with trio.CancelScope(shield=True):
                    await worker.close()
                lines = worker.stderr_tail.strip().splitlines()
                if lines:
                    self._last_failure += f" (stderr: {lines[-1][:200]})"
            logger.error("a script worker failed to start: %s", self._last_failure)
            return None
        except BaseException:
            if worker is not None:
                with trio.CancelScope(shield=True):
                    await worker.close()
            raise


def _environment() -> dict[str, str]:
    """What a worker needs and nothing of the daemon's (tokens, proxies, paths)."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C.UTF-8",
        "RUST_BACKTRACE": "0",  # a Rust panic or an allocation failure: one line, not a trace
    }
    if "LD_LIBRARY_PATH" in os.environ:  # an interpreter built with a shared libpython
        environment["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return environment


def _short(message: object) -> str:
    text = repr(message)
    return text if len(text) <= 80 else f"{text[:80]}… ({len(text)} characters)"
