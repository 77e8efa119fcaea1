"""The ScriptRunner actor: uploads, a queue, one execution at a time per bench.

Scripts run inside the daemon so an experiment outlives its client. The runner keeps the
uploaded scripts and the last executions (state, output log, times, progress, the worker's
memory and CPU time). One helper task takes executions from the queue in order and evaluates
each in a worker process of its own, taken from a small pool of pre-started ones
(``pool.py``, ``session.py``): Starlark's GIL and its memory stay there, under the caps of the
``[scripting]`` table, and the actor's mailbox and the event loop stay free, so status, stop
and e-stop are answered at once. The script's builtins come back as messages and run here
(``builtins.py``).

Stopping: ``StopExecution(force=False)`` ends the script at its next step (~1000 instructions)
or builtin boundary, letting a move in flight finish (state ``stopped``); ``force=True`` also
cuts the builtin in flight and sends ``Abort`` to the device it drives (state ``aborted``). An
emergency stop aborts the running execution and every queued one. Whichever it is, the worker
process is gone within ``session.STOP_BOUND`` (a stop frame, then SIGTERM, then SIGKILL) and
the execution says how it ended (``worker_end``). ``PauseExecution`` makes a scan wait before
its next point (any other script: before its next builtin call); stop, abort and e-stop still
end a paused execution at once; ``ResumeExecution`` carries on. However a script ends — also
by the memory or CPU cap, or its worker dying — the runner then closes the shutter if the
script opened it and stops the run it started, with the reason in the run's end record.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from runtime import (
    Actor,
    ActorError,
    BenchError,
    EmergencyStopLatched,
    InsufficientResources,
    Message,
    NotFoundError,
    Observable,
    Request,
    SetParameter,
    Source,
    Subscription,
    ValidationError,
    WrongState,
)
from runtime.config import ScriptingConfig

from ..pipeline.recorder import RECORDER_NAME, GetRunStatus, StopRun
from ..pipeline.run_status import RunOutcome
from .builtins import Builtins, ExecutionContext, abort_devices, inventory
from .engine import ScriptProblem, check_deep
from .execution_ids import ExecutionIds
from .pool import PoolStatistics, WorkerPool, WorkerStartError
from .session import Ending, Limits, Outcome, Usage, WorkerSession

logger = logging.getLogger(__name__)

RUNNER_NAME = "scripts"
MAX_SCRIPT_BYTES = 256 * 1024
MAX_PARAMETER_BYTES = 256 * 1024  # the job (source + parameters) must fit one frame
HISTORY = 200  # finished executions kept
#: Uploaded scripts kept (each up to MAX_SCRIPT_BYTES): replacing one is always allowed.
MAX_SCRIPTS = 256
#: Executions waiting to run (each holds its source): a client cannot queue without bound.
MAX_PENDING = 64
MAX_LINE_CHARS = 1000  # one output line; longer ones are cut and say how long they were


class ExecutionState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"  # waiting at a scan's next point or the script's next builtin call
    COMPLETED = "completed"
    ERROR = "error"
    STOPPED = "stopped"
    ABORTED = "aborted"

    @property
    def finished(self) -> bool:
        return self not in (ExecutionState.PENDING, ExecutionState.RUNNING, ExecutionState.PAUSED)


@dataclass(frozen=True, slots=True)
class ExecutionStatus:
    id: str
    script: str
    state: ExecutionState
    submitted: float
    started: float = 0.0
    ended: float = 0.0
    progress: float = 0.0  # 0..1, from scans or the script's progress(); 0 if unknown
    line: int = 0  # the line of the error, 0 if none
    column: int = 0
    error: str = ""
    output_lines: int = 0
    steps: int = 0  # budget steps used (~1000 bytecode instructions each)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    pause_requested: bool = False  # paused, or will pause at the next point / builtin call
    # The scan in progress (or the last one of this execution): points, where the axes are.
    points_done: int = 0
    points_total: int = 0
    positions: Mapping[str, float] = field(default_factory=dict)  # the current point's axes
    run_path: str = ""  # the scan's run file
    # The worker process: its resources (sampled every 50 ms, published every 0.5 s and at
    # the end) next to its caps, and how it ended.
    worker_pid: int = 0
    memory_rss_bytes: int = 0  # resident memory at the last sample
    memory_peak_bytes: int = 0  # the highest resident memory sampled
    memory_limit_bytes: int = 0  # the address-space cap (RLIMIT_AS)
    cpu_time_s: float = 0.0
    cpu_time_limit_s: float = 0.0
    worker_end: str = ""  # "exited", "killed 61 ms after the stop", "died: signal 9 (SIGKILL)"
    worker_stop_ms: float = 0.0  # from the stop / abort / e-stop to the worker gone; 0: none


@dataclass(frozen=True, slots=True)
class ScriptInfo:
    name: str
    size: int
    uploaded: float
    problems: tuple[ScriptProblem, ...]  # lint warnings (an upload with errors is refused)


@dataclass(frozen=True, slots=True)
class CheckScript(Request[tuple[ScriptProblem, ...]]):
    """Parse and lint; reply: the problems (empty: fine)."""

    source: str


@dataclass(frozen=True, slots=True)
class UploadScript(Request[ScriptInfo]):
    """Store a script under ``name`` (replacing one of that name); refused if it does not
    parse."""

    name: str
    source: str


@dataclass(frozen=True, slots=True)
class ListScripts(Request[tuple[ScriptInfo, ...]]):
    pass


@dataclass(frozen=True, slots=True)
class StartScript(Request[ExecutionStatus]):
    """Queue an execution of an uploaded script (``name``) or of ``source`` directly;
    ``parameters`` become the script's ``params`` dict."""

    name: str = ""
    source: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StopExecution(Request[ExecutionStatus]):
    id: str
    force: bool = False
    reason: str = "stopped by user"


@dataclass(frozen=True, slots=True)
class PauseExecution(Request[ExecutionStatus]):
    """Pause at the next point of a scan (the point in progress finishes) or at the script's
    next builtin call; state ``paused`` once it waits. Stop, abort and e-stop still act at
    once. Pausing a pending execution makes it wait at its first builtin call."""

    id: str


@dataclass(frozen=True, slots=True)
class ResumeExecution(Request[ExecutionStatus]):
    id: str


@dataclass(frozen=True, slots=True)
class GetExecution(Request[ExecutionStatus]):
    id: str


@dataclass(frozen=True, slots=True)
class ListExecutions(Request[tuple[ExecutionStatus, ...]]):
    pass


@dataclass(frozen=True, slots=True)
class WatchExecution(Request[Subscription]):  # type: ignore[type-arg]
    """Reply: a latest-value subscription to the execution's status."""

    id: str


@dataclass(frozen=True, slots=True)
class GetOutput(Request[tuple]):  # type: ignore[type-arg]
    """Reply: tuple[str, ...], the execution's output log lines from ``start`` on."""

    id: str
    start: int = 0


@dataclass(frozen=True, slots=True)
class GetPoolStatistics(Request[PoolStatistics]):
    """The worker pool: workers ready, started, failed to start, died idle."""


class _Execution:
    def __init__(self, status: ExecutionStatus, source: str, config: ScriptingConfig) -> None:
        self.source = source
        self.output: list[str] = []
        self.observable: Observable[ExecutionStatus] = Observable(status)
        self.context = ExecutionContext(status.id, source, self.log, self.set_progress)
        self.context.report = self.report
        self.force = False
        self.done = trio.Event()
        self.session: WorkerSession | None = None
        self._max_lines = config.output_lines
        self._max_kib = config.output_kib
        self._bytes_left = config.output_kib * 1024
        self._truncated = False

    @property
    def status(self) -> ExecutionStatus:
        return self.observable.value

    def update(self, **changes: Any) -> None:
        self.observable.set(replace(self.status, **changes), Source.HARDWARE)

    def log(self, line: str) -> None:
        """One line of the output log, within its caps (lines, bytes, characters a line)."""
        if self._truncated:
            return
        if len(line) > MAX_LINE_CHARS:
            line = f"{line[:MAX_LINE_CHARS]}… ({len(line)} characters)"
        entry = f"{time.strftime('%H:%M:%S')} {line}"
        size = len(entry.encode(errors="replace"))
        if len(self.output) >= self._max_lines or size > self._bytes_left:
            self._truncated = True
            self.output.append(
                f"(output truncated: at most {self._max_lines} lines and {self._max_kib} KiB;"
                " [scripting] output_lines, output_kib)"
            )
        else:
            self._bytes_left -= size
            self.output.append(entry)
        self.update(output_lines=len(self.output))

    def set_progress(self, fraction: float) -> None:
        self.update(progress=fraction)

    def report(self, *, paused: bool | None = None, **changes: Any) -> None:
        """From the builtins: a scan's points and positions; ``paused`` when the execution
        starts or stops waiting."""
        state = self.status.state
        if paused is True and state is ExecutionState.RUNNING:
            changes["state"] = ExecutionState.PAUSED
        elif paused is False and state is ExecutionState.PAUSED:
            changes["state"] = ExecutionState.RUNNING
        self.update(**changes)


class ScriptRunner(Actor):
    """Runs Starlark scripts against the bench, one at a time, in submission order, each in
    a worker process of its own."""

    stop_timeout = 30.0

    def __init__(
        self,
        config: ScriptingConfig | None = None,
        *,
        budget: int | None = None,
        ids_path: Path | None = None,
    ) -> None:
        config = config or ScriptingConfig()
        if budget is not None:
            config = replace(config, budget=budget)
        if config.budget < 1:
            raise ValueError("budget must be >= 1 step")
        self.config = config
        self.budget = config.budget
        self.limits = Limits(config.memory_limit_mb << 20, config.cpu_time_limit_s)
        self._pool = WorkerPool(config.pool_size)
        self._scripts: dict[str, tuple[str, ScriptInfo]] = {}
        self._executions: dict[str, _Execution] = {}
        self._queue: deque[_Execution] = deque()
        self._queued = trio.Event()
        self._ids = ExecutionIds(ids_path)  # None: ids in memory only (a test harness)
        self._current: _Execution | None = None

    async def on_start(self) -> None:
        await self._ids.start()
        await self.nursery.start(self._pool.run)
        self.nursery.start_soon(self._work)

    async def handle(self, message: Message) -> object:
        match message:
            case CheckScript(source=source):
                return await _check(_source(source))
            case UploadScript(name=name, source=source):
                return await self._upload(name, _source(source))
            case ListScripts():
                return tuple(info for _, info in self._scripts.values())
            case StartScript():
                return await self._submit(message)
            case StopExecution(id=execution_id, force=force, reason=reason):
                return await self._stop(self._find(execution_id), reason, force=force)
            case PauseExecution(id=execution_id):
                return self._pause(self._find(execution_id), paused=True)
            case ResumeExecution(id=execution_id):
                return self._pause(self._find(execution_id), paused=False)
            case GetExecution(id=execution_id):
                return self._find(execution_id).status
            case ListExecutions():
                return tuple(e.status for e in self._executions.values())
            case WatchExecution(id=execution_id):
                return self._find(execution_id).observable.subscribe()
            case GetOutput(id=execution_id, start=start):
                return tuple(self._find(execution_id).output[max(0, start) :])
            case GetPoolStatistics():
                return self._pool.statistics()
        return await super().handle(message)

    # -- requests ------------------------------------------------------------------------------

    async def _upload(self, name: str, source: str) -> ScriptInfo:
        if not name or len(name) > 128 or not name.isprintable():
            raise ValidationError(f"script name {name!r}: 1 to 128 printable characters")
        problems = await _check(source)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise ValidationError(f"{name}: {errors[0]}")
        if name not in self._scripts and len(self._scripts) >= MAX_SCRIPTS:
            raise InsufficientResources(
                f"{len(self._scripts)} scripts are uploaded (at most {MAX_SCRIPTS}); upload"
                " under an existing name to replace it"
            )
        info = ScriptInfo(name, len(source.encode()), time.time(), problems)
        self._scripts[name] = (source, info)
        return info

    def _refuse_to_submit(self) -> None:
        latched = self.ref.statistics().latched
        if latched is not None:
            raise EmergencyStopLatched(
                f"the emergency stop is latched ({latched}); reset it before starting a script"
            )
        pending = sum(1 for e in self._queue if not e.status.state.finished)
        if pending >= MAX_PENDING:
            raise InsufficientResources(
                f"{pending} executions are waiting to run (at most {MAX_PENDING}); wait for"
                " them or stop some (StopExecution) before starting another"
            )

    async def _submit(self, request: StartScript) -> ExecutionStatus:
        self._refuse_to_submit()
        if request.name and request.source:
            raise ValidationError("give a script name or its source, not both")
        if request.name:
            if request.name not in self._scripts:
                known = ", ".join(self._scripts) or "none"
                raise NotFoundError(f"no script named {request.name!r}; scripts: {known}")
            source, name = self._scripts[request.name][0], request.name
        else:
            source, name = _source(request.source), "(inline)"
        errors = [p for p in await _check(source) if p.severity == "error"]
        if errors:
            raise ValidationError(f"{name}: {errors[0]}")
        _check_parameters(request.parameters)
        self._refuse_to_submit()  # again: the latch may have been set while it was checked
        execution_id = self._ids.allocate()
        if self._ids.needs_reserve:
            self.nursery.start_soon(self._ids.reserve)
        status = ExecutionStatus(
            execution_id,
            name,
            ExecutionState.PENDING,
            time.time(),
            parameters=dict(request.parameters),
        )
        execution = _Execution(status, source, self.config)
        self._executions[execution_id] = execution
        self._forget_old()
        self._queue.append(execution)
        self._queued.set()
        return status

    def _find(self, execution_id: str) -> _Execution:
        try:
            return self._executions[execution_id]
        except KeyError:
            raise NotFoundError(f"no execution {execution_id!r}") from None

    def _forget_old(self) -> None:
        finished = [k for k, e in self._executions.items() if e.status.state.finished]
        for key in finished[: max(0, len(finished) - HISTORY)]:
            self._executions.pop(key).observable.close()

    def _pause(self, execution: _Execution, *, paused: bool) -> ExecutionStatus:
        state = execution.status.state
        if state.finished:
            raise WrongState(f"execution {execution.status.id} has ended ({state.value})")
        execution.context.paused = paused
        execution.update(pause_requested=paused)
        execution.context.poke()
        if paused:
            execution.log("pause requested: pausing at the next point or builtin call")
        elif state is ExecutionState.PAUSED:
            execution.log("resumed")
        return execution.status

    async def _stop(self, execution: _Execution, reason: str, *, force: bool) -> ExecutionStatus:
        state = execution.status.state
        if state.finished:
            raise WrongState(f"execution {execution.status.id} has ended ({state.value})")
        if state is ExecutionState.PENDING:
            self._queue.remove(execution)
            final = ExecutionState.ABORTED if force else ExecutionState.STOPPED
            execution.update(state=final, ended=time.time(), error=reason)
            execution.done.set()
            return execution.status
        await self._interrupt(execution, reason, force=force)
        return execution.status

    async def _interrupt(self, execution: _Execution, reason: str, *, force: bool) -> None:
        context = execution.context
        if force:
            execution.force = True
            context.interrupt = reason
        else:
            context.stop = reason
        if execution.session is not None:
            execution.session.stop(reason)  # the worker ends within session.STOP_BOUND
        if force:
            if context.scope is not None:
                context.scope.cancel()
            await abort_devices(self.system, set(context.busy), reason)
        context.poke()  # a paused execution wakes to see the stop

    # -- executing -----------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._queued = trio.Event()
                await self._queued.wait()
            execution = self._queue.popleft()
            self._current = execution
            try:
                await self._execute(execution)
            finally:
                self._current = None
                execution.done.set()

    async def _execute(self, execution: _Execution) -> None:
        context = execution.context
        context.latched = lambda: self.ref.statistics().latched
        execution.update(
            state=ExecutionState.RUNNING,
            started=time.time(),
            memory_limit_bytes=self.limits.memory_bytes,
            cpu_time_limit_s=float(self.limits.cpu_seconds),
        )
        outcome: Outcome | None = None
        problem: ScriptProblem | None = None
        try:
            devices = await inventory(self.system)
            builtins = Builtins(self.system, devices, context)
            if context.reason() is None:  # not stopped while the devices answered
                outcome = await self._evaluate(execution, builtins)
                problem = outcome.problem
        except WorkerStartError as failure:
            problem = ScriptProblem(0, 0, str(failure))
        except trio.Cancelled:  # the runner is stopping (the daemon, or a restart)
            execution.force = True
            context.interrupt = context.interrupt or "the script runner is stopping"
            raise
        finally:
            execution.session = None
            with trio.CancelScope(shield=True):
                await self._clean_up(execution, problem)
                self._finish(execution, problem, outcome)

    async def _evaluate(self, execution: _Execution, builtins: Builtins) -> Outcome:
        worker = await self._pool.acquire()
        session = WorkerSession(
            worker,
            self.limits,
            builtins.call,
            on_usage=lambda usage: _show_usage(execution, usage),
            on_lost=lambda reason: self._lose_call(execution, reason),
        )
        execution.session = session
        execution.update(worker_pid=worker.pid)
        reason = execution.context.reason()
        if reason is not None:  # stopped while the worker was handed over
            session.stop(reason)
        job = {
            "type": "run",
            "source": execution.source,
            "variables": {"params": dict(execution.status.parameters)},
            "budget": self.budget,
            "builtins": list(builtins.functions()),
        }
        return await session.run(job)

    async def _lose_call(self, execution: _Execution, reason: str) -> None:
        """The worker died with a builtin in flight: nothing waits for it, so stop it and
        whatever it drives (as an abort would)."""
        context = execution.context
        busy = set(context.busy)
        if context.scope is not None:
            context.scope.cancel()
        await abort_devices(self.system, busy, reason)

    def _finish(
        self, execution: _Execution, problem: ScriptProblem | None, outcome: Outcome | None
    ) -> None:
        context = execution.context
        reason = context.reason()
        if reason is not None:
            aborted = execution.force or context.latched() is not None
            state = ExecutionState.ABORTED if aborted else ExecutionState.STOPPED
            message = reason
        elif problem is not None:
            state = ExecutionState.ERROR
            message = problem.message
        else:
            state, message = ExecutionState.COMPLETED, ""
        if outcome is not None and (
            outcome.stop_ms is not None or outcome.ending in _WORKER_FAILURES
        ):
            execution.log(f"worker {execution.status.worker_pid} {outcome.worker_end}")
        if message:
            execution.log(
                f"{state.value}: {problem or message}"
                if state is ExecutionState.ERROR
                else f"{state.value}: {message}"
            )
        located = problem
        execution.update(
            state=state,
            ended=time.time(),
            error=message,
            line=located.line if located else 0,
            column=located.column if located else 0,
            steps=outcome.steps if outcome else execution.status.steps,
            pause_requested=False,
            progress=1.0 if state is ExecutionState.COMPLETED else execution.status.progress,
            worker_end=outcome.worker_end if outcome else "",
            worker_stop_ms=(outcome.stop_ms or 0.0) if outcome else 0.0,
        )
        logger.info("script execution %s: %s %s", execution.status.id, state.value, message)

    async def _clean_up(self, execution: _Execution, problem: ScriptProblem | None) -> None:
        """Whatever happened: the shutter the script opened is closed, its run is stopped."""
        context = execution.context
        reason = context.reason() or (f"script error: {problem}" if problem else "")
        if context.shutter_opened is not None:
            device = context.shutter_opened
            try:
                await self.system.ref(device).ask(
                    SetParameter("shutter", False, Source.SCRIPT), timeout=10.0
                )
                context.shutter_opened = None
                execution.log(f"{device}: shutter closed")
            except (BenchError, ActorError) as failure:
                execution.log(f"{device}: COULD NOT CLOSE THE SHUTTER: {failure}")
                logger.error("%s: could not close the shutter: %s", device, failure)
        if context.run_started:
            recorder = self.system.ref(RECORDER_NAME)
            try:
                status = await recorder.ask(GetRunStatus(), timeout=5.0)
                if status.active:
                    why = reason or "script completed"
                    # A script that ended well ends its run as the data say; a stopped or
                    # aborted one stops it; one that failed fails it (one truth: the end
                    # record, RunStatus and ListRuns say the same).
                    outcome = (
                        RunOutcome.FAILED if problem else RunOutcome.STOPPED if reason else None
                    )
                    await recorder.ask(StopRun(why, outcome), timeout=60.0)
            except (BenchError, ActorError) as failure:
                execution.log(f"could not stop the run: {failure}")
            context.run_started = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_emergency_stop(self, reason: str) -> None:
        why = f"emergency stop: {reason}"
        for execution in list(self._queue):
            await self._stop(execution, why, force=True)
        if self._current is not None:
            await self._interrupt(self._current, why, force=True)

    async def on_stop(self) -> None:
        if self._current is not None:
            await self._interrupt(self._current, "the daemon is stopping", force=True)
            with trio.move_on_after(self.stop_timeout - 5.0):
                await self._current.done.wait()

    def release(self) -> None:
        super().release()
        for execution in self._executions.values():
            execution.observable.close()


_WORKER_FAILURES = (Ending.MEMORY, Ending.CPU, Ending.DIED, Ending.PROTOCOL)


def _show_usage(execution: _Execution, usage: Usage) -> None:
    if not execution.status.state.finished:
        execution.update(
            memory_rss_bytes=usage.rss,
            memory_peak_bytes=usage.peak,
            cpu_time_s=round(usage.cpu_seconds, 3),
        )


def _check_parameters(parameters: Mapping[str, Any]) -> None:
    """The script's ``params`` travel to its worker as JSON, next to the source."""
    try:
        size = len(json.dumps(dict(parameters), allow_nan=False).encode())
    except (TypeError, ValueError) as error:
        raise ValidationError(
            f"script parameters must be JSON data (numbers, strings, booleans, null, lists,"
            f" objects): {str(error)[:100]}"
        ) from None
    if size > MAX_PARAMETER_BYTES:
        raise ValidationError(
            f"script parameters may have at most {MAX_PARAMETER_BYTES} bytes as JSON, not {size}"
        )


async def _check(source: str) -> tuple[ScriptProblem, ...]:
    """Parse and lint off the event loop (a 256 KiB script takes ~0.2 s) on a deep stack."""
    problems: tuple[ScriptProblem, ...] = await trio.to_thread.run_sync(
        check_deep, source, abandon_on_cancel=True
    )
    return problems


def _source(source: str) -> str:
    if len(source.encode()) > MAX_SCRIPT_BYTES:
        raise ValidationError(f"a script may have at most {MAX_SCRIPT_BYTES} bytes")
    return source


__all__ = [
    "RUNNER_NAME",
    "CheckScript",
    "ExecutionState",
    "ExecutionStatus",
    "GetExecution",
    "GetOutput",
    "GetPoolStatistics",
    "ListExecutions",
    "ListScripts",
    "PauseExecution",
    "ResumeExecution",
    "ScriptInfo",
    "ScriptRunner",
    "StartScript",
    "StopExecution",
    "UploadScript",
    "WatchExecution",
]
