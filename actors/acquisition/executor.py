"""The one executor: runs plans point by point, one at a time per bench, each as a run.

Every surface — a script's ``run_plan``, the Scan service, ``benchctl scan`` — hands it a
:class:`~.plans.Plan`; it checks the plan against the bench (:mod:`.validator`) when the plan
is created and again right before anything moves, then per point: move the axes
(concurrently; an axis whose target did not change is not commanded again), settle, read the
detectors (concurrently), take the frames, record the row, emit one event, dwell.

Control. Between points is a *checkpoint*: a pause waits there, a stop (graceful) ends the plan
there, a tripped suspender holds it there until the bench has recovered plus its settle time.
A point during which a suspender tripped is not kept: it is taken again after the suspension
(``attempts`` > 1 in its row), and every suspension is in the events, the status and the run's
end record. ``StopPlan`` and ``AbortPlan`` travel the priority lane; an abort cuts the point in
flight and sends ``Abort`` to every device still moving for the plan; an emergency stop aborts
the running plan and every queued one (the devices stop themselves).

The run: each plan records one run in the bench's one run slot, which the recorder lends it
(``ClaimRun``: the same checks and file as StartRun); the plan composes the run's pieces with
``open_run``, adds one scan row per point straight into it, and closes it with the plan's
reason whatever happens. A run that ends by itself (disk full, a write error, a user's
StopRun) ends the plan at its next checkpoint: stopped, or in error with the run's outcome.

Recording: ``StartRun`` (Storage.StartRun, ``benchctl record``) comes here too and becomes a
count plan with monitors (``recording.py``), started at once or refused as StartRun always
was; the reply is the run's status once the file exists. A recording goes on through an e-stop
(the run's outcome says "e-stopped"); every other plan is aborted by one.

History: finished plans (the last ``HISTORY``) and every id handed out are kept in
``plans.jsonl`` beside the runs (``history.py``), so ids are never reused — not after a daemon
restart, not after a restart of this actor — and yesterday's scans are still listed. A restored
plan has its status and its end event; its table is in its run file. At most ``MAX_WAITING``
plans wait (created or queued) at once: a client or script that creates plans in a loop is
refused, never lets them pile up in memory.

Error handling: a refused plan is a :class:`~.problems.PlanRejected` (every problem); a device
that fails during a point ends the plan in state ``error`` with the device's reason, the run
closed with it in its end record. Requests about unknown ids are NotFoundError; pausing,
resuming, stopping an ended plan is WrongState.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from runtime import (
    Abort,
    Actor,
    ActorError,
    BenchError,
    EmergencyStopLatched,
    InsufficientResources,
    Message,
    NotFoundError,
    PriorityMessage,
    Request,
    Subscription,
    ValidationError,
    WrongState,
    latched_refusal,
)

from ..pipeline.recorder import StartRun
from ..pipeline.run_status import RunStatus
from . import history
from .events import Ended, EventLog, Table
from .plans import Plan
from .problems import PlanRejected
from .recording import RECORD_ORIGIN, record_plan
from .running import DAEMON_STOPPING, PlanRun
from .status import PlanCheck, PlanRecord, PlanState, PlanStatus
from .suspenders import Suspender
from .validator import DISK, Checked, DescribeCache, cameras, check, survey

logger = logging.getLogger(__name__)

EXECUTOR_NAME = "plans"  # the bench's executor actor: the edge and scripts find it by name
HISTORY = 200  # finished plans kept (in memory and in plans.jsonl)
#: Plans created or queued and not yet running (each holds its plan: a list scan may carry
#: 800 000 positions): a client cannot store plans without bound.
MAX_WAITING = 100
FINISHING_WAIT = 10.0  # s a StartRun waits for a plan whose run has ended to finish
TABLE_CELLS = 16_000_000  # table cells kept in memory over all finished plans (8 bytes each)


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckPlan(Request[PlanCheck]):
    """Validate only: nothing is stored, nothing moves."""

    plan: Plan


@dataclass(frozen=True, slots=True)
class CreatePlan(Request[PlanStatus]):
    """Check and store a plan (PlanRejected lists every problem); with ``start``, queue it."""

    plan: Plan
    origin: str = ""
    start: bool = False


@dataclass(frozen=True, slots=True)
class StartPlan(Request[PlanStatus]):
    id: str


@dataclass(frozen=True, slots=True)
class PausePlan(Request[PlanStatus]):
    """Pause at the next checkpoint (the point in progress finishes)."""

    id: str


@dataclass(frozen=True, slots=True)
class ResumePlan(Request[PlanStatus]):
    id: str


@dataclass(frozen=True, slots=True)
class StopPlan(Request[PlanStatus], PriorityMessage):
    """Graceful: the point in progress finishes, then the plan ends (state ``stopped``)."""

    id: str
    reason: str = "stopped by user"


@dataclass(frozen=True, slots=True)
class AbortPlan(Request[PlanStatus], PriorityMessage):
    """Now: the point in flight is cut and its moving devices get ``Abort``."""

    id: str
    reason: str = "aborted by user"


@dataclass(frozen=True, slots=True)
class GetPlan(Request[PlanStatus]):
    id: str


@dataclass(frozen=True, slots=True)
class ListPlans(Request[tuple]):  # type: ignore[type-arg]
    """Reply: tuple[PlanStatus, ...], oldest first."""


@dataclass(frozen=True, slots=True)
class WatchPlan(Request[Subscription]):  # type: ignore[type-arg]
    """Reply: a latest-value subscription to the plan's status."""

    id: str


@dataclass(frozen=True, slots=True)
class PlanEvents(Request[EventLog]):
    """Reply: the plan's event log (follow it with ``log.follow(since)``)."""

    id: str


@dataclass(frozen=True, slots=True)
class PlanTable(Request[Table]):
    """Reply: the plan's table (copy rows out with ``table.snapshot(start, stop)``)."""

    id: str


class PlanExecutor(Actor):
    """Runs plans (see the module docstring); ``defaults`` are the bench's suspenders."""

    stop_timeout = 30.0

    def __init__(
        self, *, defaults: Sequence[Suspender] = (), history_path: Path | None = None
    ) -> None:
        self.defaults = tuple(defaults)
        self.history_path = history_path  # None: ids and history live in memory only
        self._records: dict[str, PlanRecord] = {}
        self._unknown: dict[str, str] = {}  # ids the history names but cannot give back: why
        self._queue: deque[PlanRecord] = deque()
        self._queued = trio.Event()
        self._next_number = 1
        self._unwritten: list[str] = []  # history lines not yet on disk
        self._ended_lines: deque[str] = deque(maxlen=HISTORY)  # what a rewrite keeps
        self._lines_on_disk = 0
        self._history_wake = trio.Event()
        self._history_lock = trio.Lock()
        self._current: PlanRecord | None = None
        self._running: PlanRun | None = None
        self._described: DescribeCache = {}

    async def on_start(self) -> None:
        await self._restore()
        self.nursery.start_soon(self._work)
        if self.history_path is not None:
            self.nursery.start_soon(self._write_history)

    async def handle(self, message: Message) -> object:
        match message:
            case CheckPlan(plan=plan):
                return await self._check(plan)
            case CreatePlan(plan=plan, origin=origin, start=start):
                return await self._create(plan, origin, start)
            case StartPlan(id=plan_id):
                return self._start(self._find(plan_id))
            case PausePlan(id=plan_id):
                return self._pause(self._find(plan_id), paused=True)
            case ResumePlan(id=plan_id):
                return self._pause(self._find(plan_id), paused=False)
            case StopPlan(id=plan_id, reason=reason):
                return self._stop(self._find(plan_id), reason)
            case AbortPlan(id=plan_id, reason=reason):
                return await self._abort(self._find(plan_id), reason)
            case GetPlan(id=plan_id):
                return self._find(plan_id).status
            case ListPlans():
                return tuple(r.status for r in self._records.values())
            case WatchPlan(id=plan_id):
                return self._find(plan_id).observable.subscribe()
            case PlanEvents(id=plan_id):
                return self._find(plan_id).log
            case PlanTable(id=plan_id):
                return self._table(self._find(plan_id))
            case StartRun():
                return await self._record(message)
        return await super().handle(message)

    # -- requests ------------------------------------------------------------------------------

    async def _validate(self, plan: Plan) -> Checked:
        bench = await survey(
            self.system, plan, self.defaults, exclude=(self.name,), cache=self._described
        )
        return check(plan, bench, self.defaults)

    async def _check(self, plan: Plan) -> PlanCheck:
        try:
            checked = await self._validate(plan)
        except PlanRejected as rejected:
            return PlanCheck(rejected.problems, None)
        return PlanCheck((), checked.estimate)

    async def _create(self, plan: Plan, origin: str, start: bool) -> PlanStatus:
        if start:
            self._refuse_if_latched()
        self._refuse_if_too_many_waiting()
        checked = await self._validate(plan)
        self._refuse_if_too_many_waiting()  # others may have been created while it was checked
        plan_id = f"p{self._next_number}"
        self._next_number += 1
        total = plan.total()
        status = PlanStatus(
            plan_id,
            plan,
            origin,
            PlanState.CREATED,
            time.time(),
            points_total=total or 0,
            estimate=checked.estimate,
        )
        record = PlanRecord(status, checked)
        self._records[plan_id] = record
        self._note(history.created_line(plan_id, status.created, origin), ended=False)
        self._forget_old()
        return self._start(record) if start else record.status

    async def _record(self, request: StartRun) -> RunStatus:
        """StartRun as a recording (``recording.py``): started now or refused as StartRun
        always was; the reply is the run's status once its file exists."""
        self._refuse_if_latched()
        ending = self._current
        if ending is not None and ending.run is not None and ending.run.finished.is_set():
            with trio.move_on_after(FINISHING_WAIT):  # its run has ended; the plan is ending
                await ending.done.wait()
        busy = self._current or (self._queue[0] if self._queue else None)
        if busy is not None:
            status = busy.status
            what = f"plan {status.id} ({status.plan.kind}, run {status.plan.run_name!r})"
            raise WrongState(
                f"{what} is {status.state.value}; stop it (StopRun, or StopScan {status.id})"
                " before starting another"
            )
        found = await cameras(self.system, exclude=(self.name,), cache=self._described)
        plan = record_plan(request, found[0] if found else None)
        try:
            created = await self._create(plan, RECORD_ORIGIN, start=True)
        except PlanRejected as rejected:
            raise _start_run_error(rejected) from None
        record = self._records[created.id]
        await record.opened.wait()
        if record.run is not None:
            return record.run.status
        if record.failure is not None:
            raise record.failure
        raise WrongState(f"the recording ended before its run opened: {record.status.error}")

    def _refuse_if_latched(self) -> None:
        latched = self.ref.statistics().latched
        if latched is None:
            return
        latch = self.system.latch  # since when and by whom: the operator knows whom to ask
        if latch is not None:
            raise latched_refusal("starting a plan", latch)
        raise EmergencyStopLatched(
            f"the emergency stop is latched ({latched}); reset it before starting a plan"
        )

    def _refuse_if_too_many_waiting(self) -> None:
        waiting = sum(
            r.status.state in (PlanState.CREATED, PlanState.PENDING) for r in self._records.values()
        )
        if waiting >= MAX_WAITING:
            raise InsufficientResources(
                f"{waiting} plans are waiting to run (created or queued; at most {MAX_WAITING});"
                " start, stop or abort some first (ListScans lists them)"
            )

    def _find(self, plan_id: str) -> PlanRecord:
        try:
            return self._records[plan_id]
        except KeyError:
            pass
        shown = repr(plan_id[:40]) + ("…" if len(plan_id) > 40 else "")
        if plan_id in self._unknown:
            raise NotFoundError(self._unknown[plan_id])
        number = history.plan_number(plan_id)
        if 0 < number < self._next_number:
            raise NotFoundError(
                f"no plan {shown} any more: the bench keeps the last {HISTORY} finished plans"
                " (their runs stay in the runs directory: benchctl runs)"
            )
        raise NotFoundError(f"no plan {shown} (ListScans lists the plans there are)")

    def _start(self, record: PlanRecord) -> PlanStatus:
        if record.status.state is not PlanState.CREATED:
            raise WrongState(
                f"plan {record.status.id} was started already ({record.status.state.value});"
                " create another to run it again"
            )
        self._refuse_if_latched()
        record.update(state=PlanState.PENDING)
        self._queue.append(record)
        self._queued.set()
        return record.status

    def _forget_old(self) -> None:
        finished = [k for k, r in self._records.items() if r.status.state.finished]
        for key in finished[: max(0, len(finished) - HISTORY)]:
            self._records.pop(key).observable.close()
        cells = 0
        for record in reversed(list(self._records.values())):  # newest first keep their tables
            if record.table is None:
                continue
            cells += record.table.cells
            if cells > TABLE_CELLS and record.status.state.finished:
                record.table = None

    def _table(self, record: PlanRecord) -> Table:
        if record.table is None:
            state = record.status.state
            if state.finished and record.status.run_path:
                raise WrongState(
                    f"plan {record.status.id}'s table is no longer kept in memory; its run file"
                    f" {record.status.run_path} has it (/entry/scan)"
                )
            raise WrongState(f"plan {record.status.id} has no table yet ({state.value})")
        return record.table

    def _ended(self, record: PlanRecord) -> None:
        state = record.status.state
        if state.finished:
            raise WrongState(f"plan {record.status.id} has ended ({state.value})")

    def _pause(self, record: PlanRecord, *, paused: bool) -> PlanStatus:
        self._ended(record)
        record.paused = paused
        record.update(pause_requested=paused)
        record.poke()
        return record.status

    def _stop(self, record: PlanRecord, reason: str) -> PlanStatus:
        self._ended(record)
        if record.status.state in (PlanState.CREATED, PlanState.PENDING):
            self._end_unstarted(record, PlanState.STOPPED, reason)
            return record.status
        record.stop_reason = record.stop_reason or reason
        record.poke()
        return record.status

    async def _abort(self, record: PlanRecord, reason: str) -> PlanStatus:
        self._ended(record)
        if record.status.state in (PlanState.CREATED, PlanState.PENDING):
            self._end_unstarted(record, PlanState.ABORTED, reason)
            return record.status
        record.abort_reason = record.abort_reason or reason
        if record.scope is not None:
            record.scope.cancel()
        record.poke()
        for device in sorted(record.busy):
            with contextlib.suppress(
                BenchError, ActorError
            ):  # best effort: e-stop is the hard stop
                await self.system.ref(device).ask(Abort(reason), timeout=2.0)
        return record.status

    def _end_unstarted(self, record: PlanRecord, state: PlanState, reason: str) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(record)
        record.update(state=state, ended=time.time(), error=reason, pause_requested=False)
        record.emit(Ended(state.value, reason, 0, {}))
        record.log.close()
        record.done.set()
        self._remember(record)

    # -- the queue -------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._queued = trio.Event()
                await self._queued.wait()
            record = self._queue.popleft()
            self._current = record
            self._running = PlanRun(
                self.system,
                record,
                validate=self._validate,
                refuse_if_latched=self._refuse_if_latched,
                defaults=self.defaults,
                own_metadata=record.status.origin == RECORD_ORIGIN,
            )
            try:
                await self._running.execute()
            finally:
                self._current = None
                self._running = None
                record.done.set()
                self._remember(record)
                self._forget_old()

    # -- history (history.py) ------------------------------------------------------------------

    async def _restore(self) -> None:
        """The finished plans and the next id from plans.jsonl; an unreadable file is logged
        and the executor runs on (its ids then start after what it could read)."""
        path = self.history_path
        if path is None:
            return
        try:
            restored = await trio.to_thread.run_sync(history.load, path, HISTORY)
        except OSError as error:
            logger.error("plan history %s cannot be read (%s); ids start at p1", path, error)
            return
        self._next_number = max(self._next_number, restored.next_number)
        self._unknown.update(restored.unknown)
        self._ended_lines.extend(restored.ended_lines)
        self._lines_on_disk = restored.lines
        for status in restored.statuses:
            self._records[status.id] = PlanRecord.restored(status)
        if restored.statuses or restored.unknown:
            logger.info(
                "plan history: %d finished plans restored from %s, next id p%d",
                len(restored.statuses),
                path,
                self._next_number,
            )

    def _note(self, line: str, *, ended: bool) -> None:
        if self.history_path is None:
            return
        self._unwritten.append(line)
        if ended:
            self._ended_lines.append(line)
        self._history_wake.set()

    def _remember(self, record: PlanRecord) -> None:
        if record.status.state.finished and not record.remembered:
            record.remembered = True
            self._note(history.ended_line(record.status), ended=True)

    async def _write_history(self) -> None:
        while True:
            await self._history_wake.wait()
            self._history_wake = trio.Event()
            await self._flush_history()

    async def _flush_history(self) -> None:
        """Append what is unwritten (in a thread: a slow disk never holds the loop); rewrite
        the file with what it keeps once it has grown to four times that."""
        path = self.history_path
        if path is None:
            return
        # shielded: a flush the actor's stop cuts between its append and its rewrite would
        # leave the file past its bound (and the lines taken but unwritten, lost)
        with trio.CancelScope(shield=True):
            await self._write_unwritten(path)

    async def _write_unwritten(self, path: Path) -> None:
        async with self._history_lock:
            lines, self._unwritten = self._unwritten, []
            try:
                if lines:
                    await trio.to_thread.run_sync(history.append, path, lines)
                    self._lines_on_disk += len(lines)
                if self._lines_on_disk > 4 * HISTORY:
                    kept = list(self._ended_lines)
                    await trio.to_thread.run_sync(history.rewrite, path, self._next_number, kept)
                    self._lines_on_disk = 1 + len(kept)
            except OSError as error:
                logger.error(
                    "plan history %s not written (%s): %d entries lost; plan ids may be"
                    " reused after a restart",
                    path,
                    error,
                    len(lines),
                )

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_emergency_stop(self, reason: str) -> None:
        why = f"emergency stop: {reason}"
        for record in list(self._queue):
            self._end_unstarted(record, PlanState.ABORTED, why)
        running = self._running
        if running is not None:
            running.emergency_stop(reason)  # noted on its run before anything ends it
            if running.records_through_estop:
                logger.warning("plan %s records on through the e-stop", running.record.status.id)
                return
        if self._current is not None and not self._current.status.state.finished:
            current = self._current
            current.abort_reason = current.abort_reason or why
            if current.scope is not None:
                current.scope.cancel()
            current.poke()

    async def on_abort(self, reason: str) -> None:
        if self._current is not None and not self._current.status.state.finished:
            await self._abort(self._current, reason)

    async def on_stop(self) -> None:
        current = self._current
        if current is not None and not current.status.state.finished:
            current.abort_reason = current.abort_reason or DAEMON_STOPPING
            if current.scope is not None:
                current.scope.cancel()
            with trio.move_on_after(self.stop_timeout - 5.0):
                await current.done.wait()
        for record in list(self._records.values()):  # in the history as ended, not lost
            if record.status.state in (PlanState.CREATED, PlanState.PENDING):
                self._end_unstarted(record, PlanState.ABORTED, "the daemon stopped before it ran")
        await self._flush_history()

    def release(self) -> None:
        super().release()
        for record in self._records.values():
            record.observable.close()
            record.log.close()


def _start_run_error(rejected: PlanRejected) -> Exception:
    """A recording's refusal as StartRun's callers know it: a low disk is
    InsufficientResources, a busy camera WrongState, one problem its own message."""
    problems = rejected.problems
    if problems and all(p.field == DISK for p in problems):
        return InsufficientResources("; ".join(p.message for p in problems))
    if problems and all(p.field == "camera" and "acquiring" in p.message for p in problems):
        return WrongState("; ".join(p.message for p in problems))
    if len(problems) == 1:
        return ValidationError(str(problems[0]))
    return rejected


__all__ = [
    "EXECUTOR_NAME",
    "AbortPlan",
    "CheckPlan",
    "CreatePlan",
    "GetPlan",
    "ListPlans",
    "PausePlan",
    "PlanCheck",
    "PlanEvents",
    "PlanExecutor",
    "PlanState",
    "PlanStatus",
    "PlanTable",
    "ResumePlan",
    "StartPlan",
    "StopPlan",
    "WatchPlan",
]
