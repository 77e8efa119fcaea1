"""Running one plan: checkpoints, points, suspensions, the run, the end (the executor's
helper; see executor.py for what it promises)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import outcome
import trio

from runtime import ActorError, ActorSystem, BenchError, GetParameter, SetParameter, Source

from ..capabilities import (
    AcquisitionStatus,
    GetAcquisitionStatus,
    GetPosition,
    MoveAbsolute,
    Read,
    Reading,
    StartAcquisition,
    StopAcquisition,
)
from ..pipeline.recorder import RECORDER_NAME, GetRunStatus, RecordScanPoint, StartRun, StopRun
from ..pipeline.run import RunStatus
from ..pipeline.run_status import RunOutcome
from . import peaks
from .events import (
    Ended,
    Paused,
    Point,
    Resumed,
    Started,
    Suspended,
    Table,
    file_columns,
    table_columns,
)
from .plans import Plan, Readings, Targets
from .problems import PlanRejected
from .status import PlanRecord, PlanState, Stop
from .suspenders import Suspender, SuspenderWatch, Suspension
from .validator import Axis, AxisKind, Checked

logger = logging.getLogger(__name__)

ROW_BATCH = 64  # rows handed to the recorder in one burst (or every STATUS_PERIOD)
ACQUISITION_POLL = 0.005  # s between looks at the camera while a point's frames come in
STATUS_PERIOD = 0.02  # s: the status (points done, positions) is published at most this often


class PlanRun:
    """One plan from start to end; its own object so the executor's state stays small."""

    def __init__(
        self,
        system: ActorSystem,
        record: PlanRecord,
        *,
        validate: Callable[[Plan], Awaitable[Checked]],
        refuse_if_latched: Callable[[], None],
        defaults: Sequence[Suspender],
    ) -> None:
        self.validate = validate
        self.refuse_if_latched = refuse_if_latched
        self.defaults = tuple(defaults)
        self.system = system
        self.record = record
        self.plan = record.status.plan
        self.checked = record.checked
        self.watch: SuspenderWatch | None = None
        self.commanded: dict[str, float] = {}  # last target sent to each axis
        self.frames_taken = 0
        self.suspended_before = 0.0  # s suspended since the last recorded point
        self.run_started = False
        self.origin: tuple[float, ...] = ()
        self.done = 0  # points kept, and the last one's positions (the status lags ≤ 20 ms)
        self.positions: Mapping[str, float] = {}
        self.status_at = -math.inf
        self.rows: list[tuple[dict[str, float], float]] = []  # not yet handed to the recorder

    async def run(self) -> None:
        record = self.record
        record.update(state=PlanState.RUNNING, started=time.time())
        outcome_state = PlanState.COMPLETED
        reason = "scan completed"
        result: dict[str, Any] = {}
        try:
            with trio.CancelScope() as scope:
                record.scope = scope
                if record.abort_reason is not None:
                    scope.cancel()
                result = await self._run()
                if record.stop_reason is not None:
                    outcome_state, reason = PlanState.STOPPED, record.stop_reason
            if scope.cancelled_caught:
                outcome_state = PlanState.ABORTED
                reason = record.abort_reason or "aborted"
        except _Failed as failure:
            outcome_state, reason, result = PlanState.ERROR, str(failure), failure.result
        except (BenchError, ActorError, PlanRejected) as error:
            outcome_state, reason = PlanState.ERROR, f"scan failed: {_describe(error)}"
        except Exception as error:  # a bug ends the plan, never the executor
            logger.exception("plan %s failed", record.status.id)
            outcome_state = PlanState.ERROR
            reason = f"scan failed: internal error: {type(error).__name__}: {error}"
        finally:
            record.scope = None
            with trio.CancelScope(shield=True):
                if record.abort_reason is not None and outcome_state is not PlanState.ABORTED:
                    outcome_state, reason = PlanState.ABORTED, record.abort_reason
                await self._finish(outcome_state, reason, result)

    async def _run(self) -> dict[str, Any]:
        record = self.record
        self.refuse_if_latched()
        self.checked = record.checked = await self.validate(self.plan)  # bench now
        checked = self.checked
        record.update(estimate=checked.estimate)
        self.origin = tuple([await self._where(axis) for axis in checked.axes])
        for device, parameter, value in checked.settings:
            await self.system.ref(device).ask(
                SetParameter(parameter, value, Source.SCRIPT), timeout=None
            )
        columns = file_columns(
            [a.name for a in checked.axes], checked.detectors, checked.camera is not None
        )
        status = await self._start_run(columns)
        table = Table(
            table_columns(columns),
            units={**checked.units, "time": "s", "suspended_s": "s"},
            metadata={"plan": record.status.id, "run_path": status.path},
        )
        record.table = table
        record.update(run_path=status.path)
        record.emit(
            Started(
                status.path,
                table.columns,
                dict(table.units),
                self.plan.total() or 0,
                self.plan.describe(),
                checked.estimate.describe(),
            )
        )
        if not checked.suspenders:
            return await self._points(table)
        watch = SuspenderWatch(
            self.system, checked.suspenders, f"plan:{record.status.id}", on_change=record.poke
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(watch.run)
                self.watch = watch
                try:
                    return await self._points(table)
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the points' own error, not a group of one
            raise _only(group) from None

    async def _where(self, axis: Axis) -> float:
        ref = self.system.ref(axis.device)
        if axis.kind is AxisKind.MOVABLE:
            where: float = await ref.ask(GetPosition())
            return float(where)
        snapshot = await ref.ask(GetParameter(axis.parameter))
        return float(snapshot.value)

    async def _start_run(self, columns: tuple[str, ...]) -> RunStatus:
        record = self.record
        plan = self.plan
        described = {**plan.describe(), "columns": list(columns)}
        metadata = {
            **plan.metadata,
            "scan": described,
            "plan_id": record.status.id,
            "plan_origin": record.status.origin,
            "estimate": self.checked.estimate.describe(),
            "bench_suspenders": [s.describe() for s in self.defaults]
            if plan.bench_suspenders
            else [],
        }
        # Run files are named by the second they start: two plans of one name within a second
        # would collide, so the second one's run carries the plan id too.
        names = [plan.run_name, f"{plan.run_name[:54]}-{record.status.id}"]
        # Shielded: an abort while the recorder opens the file must not orphan the run.
        with trio.CancelScope(shield=True):
            for attempt, name in enumerate(names):
                request = StartRun(
                    name,
                    metadata=metadata,
                    record_frames=self.checked.camera is not None,
                    scan_columns=columns,
                )
                try:
                    status: RunStatus = await self.system.ref(RECORDER_NAME).ask(
                        request, timeout=30.0
                    )
                except ActorError as error:
                    if attempt or "exists already" not in str(error.root_cause):
                        raise
                    continue
                self.run_started = True
                return status
        raise AssertionError("unreachable: the last attempt raises or returns")

    # -- the points --------------------------------------------------------------------------

    async def _points(self, table: Table) -> dict[str, Any]:
        plan, checked, record = self.plan, self.checked, self.record
        relative = plan.path.relative
        cursor = plan.path.cursor(self.origin if relative else (0.0,) * len(checked.axes))
        interval = float(getattr(plan.path, "interval", 0.0) or 0.0)
        duration = float(getattr(plan.path, "duration", 0.0) or 0.0)
        began = trio.current_time()
        readings: Readings | None = None
        index = 0
        xs: list[float] = []
        ys: list[float] = []
        try:
            while True:
                targets = cursor.next(readings)
                if targets is None:
                    break
                if interval and index:
                    await trio.sleep_until(began + index * interval)
                if duration and trio.current_time() - began >= duration:
                    break
                point = await self._take(index, targets)
                readings = point.readings
                self._keep(point, table)
                if self.rows and len(self.rows) >= 2 * ROW_BATCH:
                    await self._send_rows()  # the recorder is behind: wait for it
                if plan.kind == "tune":
                    xs.append(point.positions[checked.axes[0].name])
                    ys.append(point.readings.get(plan.path.detector, math.nan))
                index += 1
                if plan.dwell:
                    await trio.sleep(plan.dwell)
        except Stop:
            pass
        result: dict[str, Any] = {}
        if plan.kind == "tune" and record.stop_reason is None:
            result = await self._tune(xs, ys)
        elif relative and checked.axes:
            await self._move_all(self.origin)  # like rel_scan: back where it started
        return result

    async def _take(self, index: int, targets: Targets) -> Point:
        """One point, repeated while a suspender trips during it."""
        attempts = 0
        while True:
            await self._checkpoint(index)
            trips = self.watch.count if self.watch is not None else 0
            attempts += 1
            point = await self._point(index, targets, attempts)
            if self.watch is None or (self.watch.count == trips and not self.watch.tripped()):
                return point
            self.commanded.clear()  # after a suspension every axis is commanded again

    async def _checkpoint(self, index: int) -> None:
        record = self.record
        while True:
            if record.stop_reason is not None:
                raise Stop
            if record.run_error is not None:
                raise _Failed(f"scan failed: {record.run_error}")
            if self.watch is not None and self.watch.tripped():
                await self._suspend(index)
                continue
            if record.paused:
                self._flush_status()
                record.update(state=PlanState.PAUSED)
                record.emit(Paused(True))
                while record.paused and record.stop_reason is None:
                    await record.woken()
                record.update(state=PlanState.RUNNING)
                record.emit(Paused(False))
                continue
            return

    async def _suspend(self, index: int) -> None:
        """Hold until no suspender is tripped, then their settle time without a new trip."""
        assert self.watch is not None
        record, watch = self.record, self.watch
        tripped = watch.tripped()
        first = tripped[0]
        label = first.resolved.suspender.label
        began = first.since or time.time()
        self._flush_status()
        record.update(state=PlanState.SUSPENDED, suspended_by=label)
        record.emit(Suspended(label, _show(first.value), index))
        settle = 0.0
        while True:
            while watch.tripped() and record.stop_reason is None:
                for trip in watch.tripped():
                    settle = max(settle, trip.resolved.suspender.settle)
                await record.woken()
            if record.stop_reason is not None:
                break
            count = watch.count
            with trio.move_on_after(settle):
                while watch.count == count and record.stop_reason is None:
                    await record.woken()
            if watch.count == count:
                break  # settled without a new trip
        ended = time.time()
        suspension = Suspension(label, index, began, ended, _show(first.value))
        self.suspended_before += suspension.seconds
        record.update(
            state=PlanState.RUNNING,
            suspended_by="",
            suspensions=(*record.status.suspensions, suspension),
        )
        record.emit(Resumed(label, suspension.seconds))

    async def _point(self, index: int, targets: Targets, attempts: int) -> Point:
        plan, checked = self.plan, self.checked
        started = time.time()
        positions = await self._move(targets)
        if plan.settle:
            await trio.sleep(plan.settle)
        values, flags = await self._read(checked.detectors)
        taken = time.time()
        frame_index, frames = -1, 0
        if checked.camera is not None:
            frame_index = self.frames_taken
            frames = await self._acquire(checked.camera, plan.frames)
            self.frames_taken += frames
        return Point(index, positions, values, flags, frame_index, frames, started, taken, attempts)

    async def _move(self, targets: Targets) -> dict[str, float]:
        axes = self.checked.axes
        positions: dict[str, float] = {}
        moves = [
            (axis, target)
            for axis, target in zip(axes, targets, strict=True)
            if self.commanded.get(axis.name) != target
        ]
        for axis, target in zip(axes, targets, strict=True):
            if self.commanded.get(axis.name) == target:
                positions[axis.name] = self.positions.get(axis.name, target)
        if len(moves) == 1:
            axis, target = moves[0]
            positions[axis.name] = await self._move_one(axis, target)
        elif moves:
            async with trio.open_nursery() as nursery:
                for axis, target in moves:
                    nursery.start_soon(self._move_into, axis, target, positions)
        return {axis.name: positions[axis.name] for axis in axes}

    async def _move_into(self, axis: Axis, target: float, positions: dict[str, float]) -> None:
        positions[axis.name] = await self._move_one(axis, target)

    async def _move_one(self, axis: Axis, target: float) -> float:
        ref = self.system.ref(axis.device)
        busy = self.record.busy
        busy.add(axis.device)
        self.commanded.pop(axis.name, None)  # until it has arrived, it is not where we asked
        try:
            if axis.kind is AxisKind.MOVABLE:
                arrived: float = await ref.ask(MoveAbsolute(target), timeout=None)
                reached = float(arrived)
            else:
                snapshot = await ref.ask(
                    SetParameter(axis.parameter, target, Source.SCRIPT), timeout=None
                )
                reached = float(snapshot.value)
        finally:
            busy.discard(axis.device)
        self.commanded[axis.name] = target
        return reached

    async def _move_all(self, targets: Targets) -> None:
        self.commanded.clear()
        with trio.CancelScope(shield=self.record.abort_reason is None):
            await self._move(targets)

    async def _read(
        self, detectors: Sequence[str]
    ) -> tuple[dict[str, float], dict[str, tuple[str, ...]]]:
        values: dict[str, float] = {}
        flags: dict[str, tuple[str, ...]] = {}
        if len(detectors) == 1:
            await self._read_into(detectors[0], values, flags)
        elif detectors:
            async with trio.open_nursery() as nursery:
                for device in detectors:
                    nursery.start_soon(self._read_into, device, values, flags)
        return {d: values[d] for d in detectors}, flags

    async def _read_into(
        self, device: str, values: dict[str, float], flags: dict[str, tuple[str, ...]]
    ) -> None:
        # No ask time-out: the device's own wire time-outs bound a read, and a stop, abort or
        # e-stop still ends the wait (an ask time-out is a cancel scope on every point's path).
        reading: Reading = await self.system.ref(device).ask(Read(), timeout=None)
        values[device] = reading.value
        if reading.flags:
            flags[device] = reading.flags
        if self.watch is not None:
            self.watch.observe(device, reading.value)

    async def _acquire(self, camera: str, frames: int) -> int:
        ref = self.system.ref(camera)
        await ref.ask(StartAcquisition(frames))
        try:
            while True:
                status: AcquisitionStatus = await ref.ask(GetAcquisitionStatus())
                if not status.running:
                    if status.error:
                        raise _Failed(f"scan failed: {camera}: acquisition failed: {status.error}")
                    return status.frames_acquired
                await trio.sleep(ACQUISITION_POLL)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), contextlib.suppress(BenchError, ActorError):
                await ref.ask(StopAcquisition(), timeout=5.0)
            raise

    def _keep(self, point: Point, table: Table) -> None:
        """The point's row in the run (not awaited), the table, the event, the status."""
        row: dict[str, float] = {"point": float(point.index)}
        row.update(point.positions)
        row.update(point.readings)
        if point.frame_index >= 0:
            row["frames"] = float(point.frames)
            row["frame_index"] = float(point.frame_index)
        row["attempts"] = float(point.attempts)
        row["suspended_s"] = self.suspended_before
        self.suspended_before = 0.0
        self.rows.append((row.copy(), point.time))
        row["time"] = point.time
        table.append(row)
        self.done, self.positions = point.index + 1, point.positions
        self.record.emit(point)
        now = trio.current_time()
        if now - self.status_at >= STATUS_PERIOD or len(self.rows) >= ROW_BATCH:
            self._flush_status()
            self.status_at = now

    def _flush_status(self) -> None:
        """Publish the status and hand the rows kept since the last time to the recorder (in
        a burst: the recorder handles them in one wake-up; the file flushes once a second)."""
        record = self.record
        if record.status.points_done != self.done or record.status.events != record.log.count:
            record.update(points_done=self.done, positions=self.positions, events=record.log.count)
        recorder = self.system.ref(RECORDER_NAME)
        while self.rows:
            row, when = self.rows[0]
            if recorder.try_ask(RecordScanPoint(row, when), self._answered) is None:
                return  # the recorder's mailbox is full: _send_rows waits for room
            self.rows.pop(0)

    async def _send_rows(self) -> None:
        """Rows the recorder had no room for, sent with backpressure (the plan waits)."""
        recorder = self.system.ref(RECORDER_NAME)
        while self.rows:
            row, when = self.rows.pop(0)
            try:
                await recorder.ask(RecordScanPoint(row, when), timeout=60.0)
            except (BenchError, ActorError) as error:
                self._answered(outcome.Error(error))
                return

    def _answered(self, result: outcome.Outcome[Any]) -> None:
        record = self.record
        if isinstance(result, outcome.Error) and record.run_error is None:
            record.run_error = f"the run refused a point: {_describe(result.error)}"
            record.poke()

    async def _tune(self, xs: list[float], ys: list[float]) -> dict[str, Any]:
        path = self.plan.path
        method = str(getattr(path, "method", "centroid"))
        peak = peaks.find_peak(method, xs, ys)
        result: dict[str, Any] = {"method": method, **peak.describe()}
        if not getattr(path, "move", True):
            return result
        if peak.found:
            await self._move_all((peak.centre,))
            result["moved_to"] = peak.centre
        else:
            await self._move_all(self.origin)  # no peak: back where it started
            result["moved_to"] = self.origin[0]
            raise _Failed(f"tune found no peak: {peak.reason}", result)
        return result

    # -- the end -----------------------------------------------------------------------------

    async def _finish(self, state: PlanState, reason: str, result: dict[str, Any]) -> None:
        record = self.record
        suspensions = record.status.suspensions
        if suspensions:
            total = sum(s.seconds for s in suspensions)
            reason += (
                f"; suspended {len(suspensions)} time{'s' if len(suspensions) > 1 else ''}"
                f" ({total:.1f} s: {', '.join(sorted({s.suspender for s in suspensions}))})"
            )
        self._flush_status()
        if self.run_started:
            await self._send_rows()  # every point taken is in the file, however it ended
            await self._stop_run(reason, _RUN_OUTCOMES.get(state))
        done = record.status.points_done
        record.update(
            state=state,
            ended=time.time(),
            error="" if state is PlanState.COMPLETED else reason,
            pause_requested=False,
            suspended_by="",
            result=result,
        )
        record.emit(Ended(state.value, reason, done, result))
        record.update(events=record.log.count)
        record.log.close()
        logger.info("plan %s %s: %s", record.status.id, state.value, reason)

    async def _stop_run(self, reason: str, outcome: RunOutcome | None) -> None:
        recorder = self.system.ref(RECORDER_NAME)
        try:
            status: RunStatus = await recorder.ask(GetRunStatus(), timeout=5.0)
            if status.active and status.path == self.record.status.run_path:
                await recorder.ask(StopRun(reason, outcome), timeout=60.0)
        except (BenchError, ActorError) as error:
            logger.error("plan %s: could not stop its run: %s", self.record.status.id, error)


#: How a plan's end names its run's end: the run of a plan that completed is as its data say
#: (None); stopped and aborted plans stop their runs; a plan in error fails its run. An e-stop
#: is named by the recorder itself ("e-stopped").
_RUN_OUTCOMES: dict[PlanState, RunOutcome | None] = {
    PlanState.COMPLETED: None,
    PlanState.STOPPED: RunOutcome.STOPPED,
    PlanState.ABORTED: RunOutcome.STOPPED,
    PlanState.ERROR: RunOutcome.FAILED,
}


class _Failed(Exception):
    """Ends the plan in state ``error`` with this message (and a result, e.g. a tune's)."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


def _only(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if len(leaves) == 1 else group


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(getattr(value, "value", value))


def _describe(error: BaseException) -> str:
    if isinstance(error, ActorError):
        return f"{error.actor}: {error.root_cause}"
    return str(error)
