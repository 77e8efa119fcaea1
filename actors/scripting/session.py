"""The runner's side of one script in one worker process: limits, builtin calls, stop, death.

``WorkerSession.run`` caps the worker (``prlimit``: RLIMIT_AS for memory, RLIMIT_CPU counted
from now, no core files), sends the job, then serves the worker's ``call`` frames one at a
time with the runner's builtin dispatcher, until the worker reports ``finished`` / ``failed``
or dies. Meanwhile it samples the worker's memory and CPU time (psutil, every 50 ms) for the
execution's status and for the diagnosis of a death.

Stop, abort and e-stop (:meth:`WorkerSession.stop`) end the worker within
:data:`STOP_BOUND`: a ``stop`` frame first (the worker ends at its next step or at once if it
waits for a builtin, so the error keeps its line), ``SIGTERM`` after :data:`STOP_GRACE` if it
has not exited, ``SIGKILL`` after as long again. A builtin in flight is the runner's business:
on a graceful stop it finishes (a move completes), on an abort the runner cancels it.

A worker that dies on its own ends the execution with a clear reason: "memory limit" (an
allocation failure on stderr, a Rust "out of memory" panic, or a crash signal after the
worker's address space had reached half its cap), "CPU time limit" (SIGXCPU), else "worker
died: signal N (NAME)". A builtin in flight when that happens is interrupted, since no
script is left to use its result.

Nothing here waits on the worker outside trio: pipes and the exit (pidfd) are awaited.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import os
import resource
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psutil
import trio

from .builtins import BuiltinError, BuiltinInterrupted
from .engine import PARSE_STACK, ScriptProblem
from .pool import Worker
from .protocol import EXIT_MEMORY, ProtocolError, encode

logger = logging.getLogger(__name__)

STOP_GRACE = 0.02  # s a worker has to end itself after a stop frame (then SIGTERM, then SIGKILL)
STOP_BOUND = 0.1  # s from a stop to the worker gone: SIGKILL at 2 x STOP_GRACE, then the reaping
EXIT_GRACE = 2.0  # s a worker has to exit after its last report, then SIGKILL
SAMPLE_INTERVAL = 0.05  # s between memory / CPU samples
REPORT_INTERVAL = 0.5  # s between usage updates of the execution's status
WORKER_NICE = 10  # a script computes at a lower CPU priority than the daemon
MEMORY_CRASH_FRACTION = 0.5  # a crash with the address space above this share of the cap
_MEMORY_WORDS = ("memory allocation of", "out of memory", "MemoryError", "Cannot allocate memory")


class Ending(enum.StrEnum):
    """How a script's evaluation ended, as far as the worker is concerned."""

    FINISHED = "finished"
    ERROR = "error"  # the script failed (syntax, runtime, a refused builtin)
    BUDGET = "budget"
    INTERRUPTED = "interrupted"  # a stop, abort or e-stop ended it
    MEMORY = "memory"
    CPU = "cpu"
    DIED = "died"
    PROTOCOL = "protocol"  # the worker sent something it must not: it was killed


_ENDINGS = {ending.value: ending for ending in Ending}


@dataclass(frozen=True, slots=True)
class Limits:
    memory_bytes: int = 1 << 30
    cpu_seconds: int = 600


@dataclass(frozen=True, slots=True)
class Usage:
    """The worker's resources at the last sample (``peak``: the highest RSS sampled)."""

    rss: int = 0
    peak: int = 0
    address_space: int = 0
    cpu_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    ending: Ending
    steps: int
    problem: ScriptProblem | None  # what went wrong, where (None: finished)
    worker_end: str  # "exited", "terminated 40 ms after the stop", "died: signal 9 (SIGKILL)"…
    stop_ms: float | None  # from stop() to the worker gone, if stop() was called


#: Runs one builtin for the worker: its value, or BuiltinError / BuiltinInterrupted, whose
#: message goes back to the script.
Dispatch = Callable[[str, tuple[Any, ...], dict[str, Any]], Awaitable[Any]]


class WorkerSession:
    """One execution in one worker (see the module docstring)."""

    def __init__(
        self,
        worker: Worker,
        limits: Limits,
        dispatch: Dispatch,
        *,
        on_usage: Callable[[Usage], None] = lambda _: None,
        on_lost: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.worker = worker
        self.limits = limits
        self._dispatch = dispatch
        self._on_usage = on_usage
        self._on_lost = on_lost  # a builtin is in flight and the worker died: stop what it drives
        self._usage = Usage()
        self._steps = 0
        self._stop_reason: str | None = None
        self._stop_requested = trio.Event()
        self._stopped_at: float | None = None
        self._stop_ms: float | None = None
        self._signalled = ""  # "terminated" / "killed" by us
        self._violation = ""
        self._call_scope: trio.CancelScope | None = None
        self._call_done = trio.Event()
        self._call_done.set()

    @property
    def usage(self) -> Usage:
        return self._usage

    def stop(self, reason: str) -> None:
        """End the worker: now, without waiting (the escalation runs in :meth:`run`)."""
        if self._stop_reason is None:
            self._stop_reason = reason
            self._stopped_at = trio.current_time()
            self._stop_requested.set()

    async def run(self, job: dict[str, Any]) -> Outcome:
        """Evaluate ``job`` (the ``run`` frame) in the worker; the worker is gone on return
        (also when cancelled: it is killed and reaped, shielded)."""
        worker = self.worker
        try:
            frame = encode(job)
            _apply_limits(worker.pid, self.limits)
        except (OSError, psutil.Error, ProtocolError, TypeError, ValueError) as error:
            capping = isinstance(error, OSError | psutil.Error)
            what = "could not cap its worker" if capping else "its job cannot be sent"
            logger.error("script worker %d: %s: %s", worker.pid, what, error)
            await worker.close()
            problem = ScriptProblem(0, 0, f"the script could not start: {what} ({error})")
            return Outcome(Ending.ERROR, 0, problem, "killed", None)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.watch)
                nursery.start_soon(worker.drain_stderr)
                nursery.start_soon(self._sample)
                nursery.start_soon(self._enforce_stop)
                report = await self._serve(frame, nursery)
                await self._reap(report is not None)
                lost = report is None or report.get("kind") == Ending.PROTOCOL.value
                if lost and self._stop_reason is None and self._call_scope is not None:
                    await self._lose_call(self._violation or self._death())
                await self._call_done.wait()  # a graceful stop lets the builtin finish
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await worker.close()  # at once if it has exited; killed if cancelled
        self._on_usage(self._usage)
        return self._outcome(report)

    # -- serving the worker ----------------------------------------------------------------------

    async def _serve(self, job: bytes, nursery: trio.Nursery) -> dict[str, Any] | None:
        """Frames until ``finished`` / ``failed`` (returned) or the end of the worker (None)."""
        worker = self.worker
        try:
            await worker.send_frame(job)
            while True:
                message = await worker.receive()
                if message is None:
                    return None
                kind = message["type"]
                if kind in ("finished", "failed"):
                    return message
                if kind != "call":
                    raise ProtocolError(f"an unexpected {_short(kind)!s} message")
                if not self._call_done.is_set():
                    raise ProtocolError("a builtin call while one is in flight")
                name, args, kwargs = _call(message)
                self._steps = _count(message.get("steps"), self._steps)
                self._call_done = trio.Event()
                nursery.start_soon(self._serve_call, name, args, kwargs)
        except ProtocolError as error:
            self._violation = f"the script's worker broke the protocol: {error}"
            logger.warning("script worker %d: %s", worker.pid, self._violation)
            worker.signal(signal.SIGKILL)
            self._signalled = "killed"
            return {"type": "failed", "kind": Ending.PROTOCOL.value, "message": self._violation}

    async def _serve_call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        reply: dict[str, Any]
        try:
            with trio.CancelScope() as scope:
                self._call_scope = scope
                try:
                    value = await self._dispatch(name, args, kwargs)
                    reply = {"type": "result", "value": value}
                except BuiltinError as error:
                    reply = {"type": "error", "kind": "builtin", "message": str(error)}
                except BuiltinInterrupted as error:
                    reply = {"type": "error", "kind": "interrupted", "message": str(error)}
            if scope.cancelled_caught:
                reply = {"type": "error", "kind": "interrupted", "message": "interrupted"}
            try:
                frame = encode(reply, default=_jsonable)
            except (ProtocolError, TypeError, ValueError) as error:
                message = f"{name}: its result cannot be handed to the script ({error})"
                frame = encode({"type": "error", "kind": "builtin", "message": message})
            if self.worker.returncode is None:
                await self.worker.send_frame(frame)
        finally:
            self._call_scope = None
            self._call_done.set()

    async def _lose_call(self, reason: str) -> None:
        if self._on_lost is not None:
            await self._on_lost(reason)
        if self._call_scope is not None:
            self._call_scope.cancel()

    # -- stop, exit, death -----------------------------------------------------------------------

    async def _enforce_stop(self) -> None:
        await self._stop_requested.wait()
        worker = self.worker
        with trio.move_on_after(STOP_GRACE):
            await worker.send({"type": "stop", "reason": self._stop_reason})
            await worker.exited.wait()
        if not worker.exited.is_set():
            worker.signal(signal.SIGTERM)
            self._signalled = "terminated"
            with trio.move_on_after(STOP_GRACE):
                await worker.exited.wait()
        if not worker.exited.is_set():
            worker.signal(signal.SIGKILL)
            self._signalled = "killed"
            await worker.exited.wait()
        assert self._stopped_at is not None
        self._stop_ms = (trio.current_time() - self._stopped_at) * 1000

    async def _reap(self, reported: bool) -> None:
        """Wait for the worker's exit after its report or its stdout's end; kill it if it
        lingers (it has nothing left to do)."""
        worker = self.worker
        with trio.move_on_after(EXIT_GRACE if reported else STOP_BOUND):
            await worker.exited.wait()
        if not worker.exited.is_set():
            worker.signal(signal.SIGKILL)
            self._signalled = self._signalled or "killed"
            await worker.exited.wait()

    async def _sample(self) -> None:
        try:
            process = psutil.Process(self.worker.pid)
        except psutil.Error:
            return
        last_report = -math.inf
        while not self.worker.exited.is_set():
            with contextlib.suppress(psutil.Error):
                memory = process.memory_info()
                times = process.cpu_times()
                if memory.vms:  # a zombie reads as 0: keep the last real sample
                    self._usage = Usage(
                        memory.rss,
                        max(self._usage.peak, memory.rss),
                        memory.vms,
                        times.user + times.system,
                    )
            now = trio.current_time()
            if now - last_report >= REPORT_INTERVAL:
                self._on_usage(self._usage)
                last_report = now
            await trio.sleep(SAMPLE_INTERVAL)

    def _memory_limit(self) -> str:
        return (
            f"memory limit: the script needed more than its {self.limits.memory_bytes >> 20} MiB"
            " ([scripting] memory_limit_mb)"
        )

    def _death(self) -> str:
        """Why the worker ended without a report (its exit status, stderr and last sample)."""
        code = self.worker.returncode
        tail = self.worker.stderr_tail
        usage = self._usage
        memory = self._memory_limit()
        if code == EXIT_MEMORY or any(word in tail for word in _MEMORY_WORDS):
            return memory
        if code is not None and code < 0:
            number = -code
            if number == signal.SIGXCPU or (
                number == signal.SIGKILL and usage.cpu_seconds >= self.limits.cpu_seconds
            ):
                return (
                    f"CPU time limit: the script computed for more than"
                    f" {self.limits.cpu_seconds} s ([scripting] cpu_time_limit_s)"
                )
            crash = number in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS)
            near_cap = usage.address_space >= self.limits.memory_bytes * MEMORY_CRASH_FRACTION
            if crash and near_cap:
                return f"{memory}; the worker crashed with {_signal_name(number)}"
            return f"worker died: signal {number} ({_signal_name(number)})"
        last = tail.strip().splitlines()[-1:] if tail else []
        return f"worker exited with status {code}" + (f": {last[0][:200]}" if last else "")

    def _outcome(self, report: dict[str, Any] | None) -> Outcome:
        code = self.worker.returncode
        ours = {-signal.SIGTERM: "terminated", -signal.SIGKILL: "killed"}
        if self._signalled and code in ours:  # what ended it, not only what we sent
            end = ours[code]
        elif code is not None and code < 0:
            end = f"died: signal {-code} ({_signal_name(-code)})"
        else:
            end = "exited" if code == 0 else f"exited with status {code}"
        if self._stop_ms is not None:
            end = f"{end} {self._stop_ms:.0f} ms after the stop"
        steps = self._steps
        if report is not None:
            steps = _count(report.get("steps"), steps)
            if report["type"] == "finished":
                return Outcome(Ending.FINISHED, steps, None, end, self._stop_ms)
            ending = _ENDINGS.get(str(report.get("kind")), Ending.ERROR)
            message = str(report.get("message", ""))[:4000]
            if ending is Ending.MEMORY:
                message = f"{self._memory_limit()} ({message})" if message else self._memory_limit()
            problem = ScriptProblem(
                _count(report.get("line"), 0), _count(report.get("column"), 0), message
            )
            return Outcome(ending, steps, problem, end, self._stop_ms)
        if self._stop_reason is not None:
            problem = ScriptProblem(0, 0, self._stop_reason)
            return Outcome(Ending.INTERRUPTED, steps, problem, end, self._stop_ms)
        message = self._death()
        if message.startswith("memory limit"):
            ending = Ending.MEMORY
        elif message.startswith("CPU time limit"):
            ending = Ending.CPU
        else:
            ending = Ending.DIED
        return Outcome(ending, steps, ScriptProblem(0, 0, message), end, self._stop_ms)


def _apply_limits(pid: int, limits: Limits) -> None:
    """Cap a started worker from outside (``prlimit``), before its job: the worker's own code
    is not trusted to do it. The CPU cap counts from now (the start-up is not the script's).
    The worker also runs at a lower priority: when the cores are scarce, the daemon's event
    loop and writer win over a script's computation."""
    times = psutil.Process(pid).cpu_times()
    used = math.ceil(times.user + times.system)
    cpu = used + limits.cpu_seconds
    resource.prlimit(pid, resource.RLIMIT_CORE, (0, 0))
    # the worker runs the script on a PARSE_STACK thread: that reservation is address space the
    # script's data must not pay for (touched only as deep as the script nests)
    space = limits.memory_bytes + PARSE_STACK
    resource.prlimit(pid, resource.RLIMIT_AS, (space, space))
    resource.prlimit(pid, resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    os.setpriority(os.PRIO_PROCESS, pid, WORKER_NICE)


def _call(message: dict[str, Any]) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    name, args, kwargs = message.get("name"), message.get("args", []), message.get("kwargs", {})
    if not isinstance(name, str) or not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ProtocolError("a call that is not {name: str, args: list, kwargs: dict}")
    return name, tuple(args), kwargs


def _count(value: object, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )


def _jsonable(value: object) -> object:
    """Results of builtins that JSON does not know: numpy scalars, enums, tuples of them."""
    if isinstance(value, enum.Enum):
        return value.value
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"a {type(value).__name__}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:40]}… ({len(text)} characters)"
