"""Running one plan: checkpoints, points, suspensions, its run, the end (the executor's
helper; see executor.py for what it promises).

The run is the plan's own: the recorder lends the bench's run slot (``ClaimRun``: the same
checks and file as StartRun, see ``actors/pipeline/run_lease.py``) and the plan composes the
pieces with ``open_run`` — every point's row goes straight into the run's scan table, a run
that ends by itself (disk full, a write error, a StopRun from a user) ends the plan at its next
checkpoint, and the plan's end closes the run with the plan's reason, in one task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import trio

from runtime import (
    ActorError,
    ActorSystem,
    BenchError,
    EmergencyStopLatched,
    GetParameter,
    Interrupted,
    SetParameter,
    Source,
    WrongState,
)

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
from ..pipeline.frame_source import SourceRefused
from ..pipeline.recorder import RECORDER_NAME, ClaimRun, RunLease, StartRun
from ..pipeline.run import Run, open_run
from ..pipeline.run_status import RunOutcome, RunState
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

ACQUISITION_POLL = 0.005  # s between looks at the camera while a point's frames come in
STATUS_PERIOD = 0.02  # s: the status (points done, positions) is published at most this often
EXECUTOR_STOPPED = "the plan executor stopped (daemon shutdown)"
DAEMON_STOPPING = "the daemon is stopping"  # the abort reason the executor gives at its stop
RESTORE_TIMEOUT = 5.0  # s for each device put back as it was (streaming off, camera stopped)


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
        own_metadata: bool = False,
    ) -> None:
        self.validate = validate
        self.refuse_if_latched = refuse_if_latched
        self.defaults = tuple(defaults)
        self.own_metadata = own_metadata  # the run's metadata is the user's alone (a record)
        self.system = system
        self.record = record
        self.plan = record.status.plan
        if record.checked is None:  # restored from the history: finished, never run here
            raise WrongState(f"plan {record.status.id} has ended; create another to run it")
        self.checked = record.checked
        self.watch: SuspenderWatch | None = None
        self.commanded: dict[str, float] = {}  # last target sent to each axis
        self.frames_taken = 0
        self.suspended_before = 0.0  # s suspended since the last recorded point
        self.origin: tuple[float, ...] = ()
        self.done = 0  # points kept, and the last one's positions (the status lags ≤ 20 ms)
        self.positions: Mapping[str, float] = {}
        self.status_at = -math.inf
        self.run: Run | None = None  # the plan's run, while it records
        self.failure: BaseException | None = None  # what ended the plan before its run opened
        self.estop: str | None = None  # an emergency stop during the plan (its reason)
        self.state = PlanState.COMPLETED
        self.reason = ""  # why it ended ("" while it runs; completed: ``completion``)
        self.completion = "scan completed"
        self.result: dict[str, Any] = {}
        self.streaming: list[str] = []  # Readables this plan switched on (monitor)
        self.camera_started = False  # the live camera this plan started

    @property
    def records_through_estop(self) -> bool:
        """A recording (a monitoring count that starts no camera sequence after its first
        point) goes on through an e-stop: the camera stopped by itself, the readings around
        the incident are recorded; the run says "e-stopped". Anything else is aborted."""
        plan = self.plan
        recording = plan.kind == "count" and plan.monitor
        return recording and (not plan.frames or plan.total() == 1) and self.run is not None

    def emergency_stop(self, reason: str) -> None:
        """Note an e-stop on the run (before the executor aborts the plan, if it does)."""
        self.estop = self.estop or reason
        if self.run is not None:
            self.run.emergency_stop(reason)

    async def execute(self) -> None:
        record = self.record
        record.update(state=PlanState.RUNNING, started=time.time())
        try:
            if await self._guarded(self._prepare):
                await self._record()
        except BaseException:
            self._cancelled()
            raise
        finally:
            record.failure = record.failure or self.failure
            record.opened.set()
            with trio.CancelScope(shield=True):
                if record.abort_reason is not None and self.state is not PlanState.ABORTED:
                    self._end(PlanState.ABORTED, record.abort_reason)
                await self._finish()

    def _cancelled(self) -> None:
        """Cancelled from outside (the executor is stopping): the plan was aborted."""
        if not self.reason:
            self._end(PlanState.ABORTED, self.record.abort_reason or EXECUTOR_STOPPED)

    def _run_outcome(self) -> RunOutcome | None:
        """The run's end as the plan's names it; a plan aborted because the daemon stops
        stops its run (a shutdown is a request to stop, as StopRun is, not an abort)."""
        if self.state is PlanState.ABORTED and self.reason in (EXECUTOR_STOPPED, DAEMON_STOPPING):
            return RunOutcome.STOPPED
        return _RUN_OUTCOMES.get(self.state)

    def _end(self, state: PlanState, reason: str, result: dict[str, Any] | None = None) -> None:
        self.state, self.reason = state, reason
        if result is not None:
            self.result = result

    async def _guarded(self, step: Callable[[], Awaitable[None]]) -> bool:
        """Run one abortable step of the plan (an abort cancels it); False if the plan ended
        in it (its state and reason are noted)."""
        record = self.record
        try:
            with trio.CancelScope() as scope:
                record.scope = scope
                if record.abort_reason is not None:
                    scope.cancel()
                await step()
        except BaseException as raised:
            error = _principal(raised)
            if error is None:
                raise  # a cancellation from outside, or the interpreter stopping
            self._failed(error)
            return False
        finally:
            record.scope = None
        if scope.cancelled_caught:
            self._end(PlanState.ABORTED, record.abort_reason or "aborted")
            return False
        return True

    def _failed(self, error: Exception) -> None:
        """How an error ends the plan."""
        if isinstance(error, _Failed):
            self._end(PlanState.ERROR, str(error), error.result)
        elif isinstance(error, _RunEnded):
            self._end(error.state, error.reason)
        elif _latched(error) and (latch := self.system.latch) is not None:
            # A device refused or was interrupted because the e-stop latched under the point:
            # the e-stop's abort (the executor's notice of it may come a moment later)
            self.emergency_stop(latch.reason)
            self._end(PlanState.ABORTED, f"emergency stop: {latch.reason}")
        elif isinstance(error, BenchError | ActorError | PlanRejected):
            if self.run is None:
                self.failure = error
            self._end(PlanState.ERROR, f"scan failed: {_describe(error)}")
        else:  # a bug ends the plan, never the executor
            logger.error("plan %s failed", self.record.status.id, exc_info=error)
            self._end(
                PlanState.ERROR, f"scan failed: internal error: {type(error).__name__}: {error}"
            )

    async def _prepare(self) -> None:
        record = self.record
        self.refuse_if_latched()
        self.checked = record.checked = await self.validate(self.plan)  # bench now
        record.update(estimate=self.checked.estimate)
        self.origin = tuple([await self._where(axis) for axis in self.checked.axes])
        for device, parameter, value in self.checked.settings:
            await self.system.ref(device).ask(
                SetParameter(parameter, value, Source.SCRIPT), timeout=None
            )

    async def _where(self, axis: Axis) -> float:
        ref = self.system.ref(axis.device)
        if axis.kind is AxisKind.MOVABLE:
            where: float = await ref.ask(GetPosition())
            return float(where)
        snapshot = await ref.ask(GetParameter(axis.parameter))
        return float(snapshot.value)

    # -- the run -------------------------------------------------------------------------------

    async def _record(self) -> None:
        """Take the bench's run slot, compose the run, measure inside it, close it with the
        plan's reason."""
        checked = self.checked
        columns = file_columns(
            [a.name for a in checked.axes], checked.detectors, self.plan.frames > 0
        )
        try:
            lease = await self._claim(columns)
        except (BenchError, ActorError) as error:
            self.failure = error
            self._end(PlanState.ERROR, f"scan failed: {_describe(error)}")
            return
        try:
            async with open_run(
                lease.pieces,
                flush_interval=lease.flush_interval,
                publish=lease.publish,
                cancel_reason=EXECUTOR_STOPPED,
            ) as run:
                lease.attach(run)
                self.run = self.record.run = run
                if self.estop is not None:
                    run.emergency_stop(self.estop)
                self.record.opened.set()
                try:
                    await self._guarded(lambda: self._measure(run, columns))
                except BaseException:
                    self._cancelled()
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        await self._restore()
                        self._flush_status()
                        run.stop(self._final_reason(), self._run_outcome())
        except SourceRefused as refusal:  # the file was closed with a "failed" end record
            self.failure = refusal
            self._end(PlanState.ERROR, f"scan failed: the run could not start: {refusal}")
        finally:
            lease.release()

    async def _claim(self, columns: tuple[str, ...]) -> RunLease:
        record = self.record
        plan = self.plan
        described = {**plan.describe(), "columns": list(columns)}
        recorded_by = {
            "plan_id": record.status.id,
            "plan_origin": record.status.origin,
            "plan": described,
            "estimate": self.checked.estimate.describe(),
            "bench_suspenders": [s.describe() for s in self.defaults]
            if plan.bench_suspenders
            else [],
        }
        metadata = dict(plan.metadata)
        if not self.own_metadata:  # a scan's run carries its plan in its metadata too
            metadata.update(
                scan=described,
                plan_id=record.status.id,
                plan_origin=record.status.origin,
                estimate=recorded_by["estimate"],
                bench_suspenders=recorded_by["bench_suspenders"],
            )
        camera = self.checked.camera
        # Run files are named by the second they start: two plans of one name within a second
        # would collide, so the second one's run carries the plan id too.
        names = [plan.run_name, f"{plan.run_name[:54]}-{record.status.id}"]
        # Shielded and without a time-out: a lease granted but never received would hold the
        # bench's run slot (the recorder's own asks are bounded).
        with trio.CancelScope(shield=True):
            for attempt, name in enumerate(names):
                request = StartRun(
                    name,
                    metadata=metadata,
                    record_frames=camera is not None,
                    camera=camera or "",
                    scan_columns=columns,
                    recorded_by=recorded_by,
                )
                if plan.compression:  # else the recorder's default
                    request = dataclasses.replace(request, compression=plan.compression)
                try:
                    lease: RunLease = await self.system.ref(RECORDER_NAME).ask(
                        ClaimRun(request, f"plan {record.status.id}"), timeout=None
                    )
                except ActorError as error:
                    if attempt or "exists already" not in str(error.root_cause):
                        raise
                    continue
                if self.own_metadata and plan.frames and lease.pieces.frames is not None:
                    # a recording of N frames: its status says N from the start
                    lease.pieces.frames.planned = plan.frames * (plan.total() or 1)
                return lease
        raise AssertionError("unreachable: the last attempt raises or returns")

    async def _measure(self, run: Run, columns: tuple[str, ...]) -> None:
        record, checked = self.record, self.checked
        table = Table(
            table_columns(columns),
            units={**checked.units, "time": "s", "suspended_s": "s"},
            metadata={"plan": record.status.id, "run_path": run.status.path},
        )
        record.table = table
        record.update(run_path=run.status.path)
        record.emit(
            Started(
                run.status.path,
                table.columns,
                dict(table.units),
                self.plan.total() or 0,
                self.plan.describe(),
                checked.estimate.describe(),
            )
        )
        await self._start_streams()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._wake_when_over, run)
                if checked.suspenders:
                    watch = SuspenderWatch(
                        self.system,
                        checked.suspenders,
                        f"plan:{record.status.id}",
                        on_change=record.poke,
                    )
                    await nursery.start(watch.run)
                    self.watch = watch
                try:
                    self.result = await self._points(table)
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the points' own error, not a group of one
            raise _only(group) from None
        if record.stop_reason is not None:
            self._end(PlanState.STOPPED, record.stop_reason)

    async def _wake_when_over(self, run: Run) -> None:
        """A run that ends by itself (a StopRun, a full disk) wakes a plan that waits (held,
        paused, suspended): it ends with its run."""
        await run.finished.wait()
        self.record.poke()

    async def _start_streams(self) -> None:
        """Monitor: every Readable that streams only on request is switched on; live: the
        camera acquires continuously (unless it does already: then its frames are recorded
        as they come, and it is left as it was)."""
        plan, checked = self.plan, self.checked
        for device in checked.streams:
            ref = self.system.ref(device)
            snapshot = await ref.ask(GetParameter("streaming"))
            if snapshot.value is False:
                self.streaming.append(device)  # before: a set that half-happened is undone
                await ref.ask(SetParameter("streaming", True, Source.SCRIPT), timeout=None)
        if plan.live and checked.camera is not None:
            camera = self.system.ref(checked.camera)
            status: AcquisitionStatus = await camera.ask(GetAcquisitionStatus())
            if not status.running:
                self.camera_started = True
                await camera.ask(StartAcquisition(None))

    async def _restore(self) -> None:
        """Put back what the plan switched on (shielded, each bounded; a failure is logged)."""
        plan_id = self.record.status.id
        if self.camera_started and self.checked.camera is not None:
            self.camera_started = False
            try:
                await self.system.ref(self.checked.camera).ask(
                    StopAcquisition(), timeout=RESTORE_TIMEOUT
                )
            except (BenchError, ActorError) as error:
                logger.error("plan %s: could not stop the live camera: %s", plan_id, error)
        for device in self.streaming:
            try:
                await self.system.ref(device).ask(
                    SetParameter("streaming", False, Source.SCRIPT), timeout=RESTORE_TIMEOUT
                )
            except (BenchError, ActorError) as error:
                logger.error("plan %s: %s streams on: %s", plan_id, device, error)
        self.streaming.clear()

    async def _run_ended(self) -> None:
        """Raise _RunEnded if the run has ended by itself (its frames or readings could not
        be written, the disk filled, a user's StopRun): the plan ends with it."""
        run = self.run
        if run is None or run.status.state is RunState.RECORDING:
            return
        await run.finished.wait()
        status = run.status
        why = str(status.end_record.get("reason", "")) or status.error or status.outcome
        match status.outcome:
            case RunOutcome.COMPLETED:
                raise _RunEnded(PlanState.COMPLETED, why)
            case RunOutcome.STOPPED | RunOutcome.ABORTED | RunOutcome.ESTOPPED:
                raise _RunEnded(PlanState.STOPPED, why)
        raise _RunEnded(PlanState.ERROR, f"scan failed: its run ended ({status.outcome}): {why}")

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
        # A count's duration is wall time: when it has passed, the point in progress is cut.
        with trio.move_on_at(began + duration if duration else math.inf) as deadline:
            try:
                while True:
                    targets = cursor.next(readings)
                    if targets is None:
                        break
                    if interval and index:
                        await trio.sleep_until(began + index * interval)
                    point = await self._take(index, targets)
                    readings = point.readings
                    if not self._keep(point, table):
                        await self._run_ended()  # the run ended under the point: raises
                    if plan.kind == "tune":
                        xs.append(point.positions[checked.axes[0].name])
                        ys.append(point.readings.get(plan.path.detector, math.nan))
                    if plan.recording:
                        await self._hold()
                    index += 1
                    if plan.dwell:
                        await trio.sleep(plan.dwell)
            except Stop:
                pass
        if deadline.cancelled_caught:
            self.completion = "duration reached"
        result: dict[str, Any] = {}
        if plan.kind == "tune" and record.stop_reason is None:
            result = await self._tune(xs, ys)
        elif relative and checked.axes:
            await self._move_all(self.origin)  # like rel_scan: back where it started
        return result

    async def _hold(self) -> None:
        """A recording's one point: the run records the bench's streams until the count's
        duration has passed (the caller's deadline cuts this), the plan is stopped, or the
        run ends (a StopRun, a full disk)."""
        record = self.record
        while record.stop_reason is None and not self._run_over():
            await record.woken()
        await self._run_ended()
        raise Stop

    def _run_over(self) -> bool:
        return self.run is not None and self.run.status.state is not RunState.RECORDING

    async def _take(self, index: int, targets: Targets) -> Point:
        """One point, repeated while a suspender trips during it — or when the point failed
        because a device a ``degraded`` suspender watches crashed under it."""
        attempts = 0
        while True:
            await self._checkpoint(index)
            trips = self.watch.count if self.watch is not None else 0
            attempts += 1
            try:
                point = await self._point(index, targets, attempts)
            except (BenchError, ActorError, BaseExceptionGroup) as error:
                if self.watch is None or not self.watch.failed(_failed_devices(error)):
                    raise
                self.commanded.clear()
                continue  # the suspension holds it at the checkpoint, then it is repeated
            if self.watch is None or (self.watch.count == trips and not self.watch.tripped()):
                return point
            self.commanded.clear()  # after a suspension every axis is commanded again

    async def _checkpoint(self, index: int) -> None:
        record = self.record
        while True:
            if record.stop_reason is not None:
                raise Stop
            await self._run_ended()
            if self.watch is not None and self.watch.tripped():
                await self._suspend(index)
                continue
            if record.paused:
                self._flush_status()
                record.update(state=PlanState.PAUSED)
                record.emit(Paused(True))
                while record.paused and record.stop_reason is None and not self._run_over():
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
        value = _show(first.value)  # what tripped it (the watch goes on updating the trip)
        self._flush_status()
        record.update(state=PlanState.SUSPENDED, suspended_by=label)
        record.emit(Suspended(label, value, index))
        settle = 0.0
        while True:
            while watch.tripped() and record.stop_reason is None and not self._run_over():
                for trip in watch.tripped():
                    settle = max(settle, trip.resolved.suspender.settle)
                await record.woken()
            if record.stop_reason is not None or self._run_over():
                break
            count = watch.count
            with trio.move_on_after(settle):
                while watch.count == count and record.stop_reason is None:
                    await record.woken()
            if watch.count == count:
                break  # settled without a new trip
        ended = time.time()
        suspension = Suspension(label, index, began, ended, value)
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
        if plan.frames and checked.camera is not None:
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
        """The point's frames: one sequence of ``frames``. The run is told how many to expect
        (all of them, or — when the sequence is cut — what was taken), so a sequence that ends
        short shows in the run as frames missing."""
        ref = self.system.ref(camera)
        recording = self.plan.kind == "count" and self.plan.monitor
        await ref.ask(StartAcquisition(frames))
        try:
            while True:
                status: AcquisitionStatus = await ref.ask(GetAcquisitionStatus())
                if not status.running:
                    if status.error and self.estop is None:
                        raise _Failed(f"scan failed: {camera}: acquisition failed: {status.error}")
                    self._expect(frames)
                    if recording:
                        everything = status.frames_acquired >= frames
                        self.completion = (
                            "all frames recorded" if everything else "the camera ended its sequence"
                        )
                    return status.frames_acquired
                if self._run_over() or (recording and self.record.stop_reason is not None):
                    return await self._cut(ref)  # nothing more can be recorded, or is wanted
                await trio.sleep(ACQUISITION_POLL)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), contextlib.suppress(BenchError, ActorError):
                await self._cut(ref)
            raise

    async def _cut(self, ref: Any) -> int:
        """Stop the point's sequence where it is; the run expects the frames it took."""
        final = await ref.ask(StopAcquisition(), timeout=RESTORE_TIMEOUT)
        taken = final.frames_acquired if isinstance(final, AcquisitionStatus) else 0
        self._expect(taken)
        return int(taken)

    def _expect(self, frames: int) -> None:
        if self.run is not None and self.run.pieces.frames is not None:
            self.run.pieces.frames.expect(frames)

    def _keep(self, point: Point, table: Table) -> bool:
        """The point's row in the run, the table, the event, the status; False if the run has
        ended under it (the point is then kept nowhere)."""
        row: dict[str, float] = {"point": float(point.index)}
        row.update(point.positions)
        row.update(point.readings)
        if point.frame_index >= 0:
            row["frames"] = float(point.frames)
            row["frame_index"] = float(point.frame_index)
        row["attempts"] = float(point.attempts)
        row["suspended_s"] = self.suspended_before
        if self.run is not None:
            try:
                self.run.add_scan_point(row, point.time)
            except WrongState:
                return False
        self.suspended_before = 0.0
        row["time"] = point.time
        table.append(row)
        self.done, self.positions = point.index + 1, point.positions
        self.record.emit(point)
        now = trio.current_time()
        if now - self.status_at >= STATUS_PERIOD:
            self._flush_status()
            self.status_at = now
        return True

    def _flush_status(self) -> None:
        """Publish the status (points done, positions, events)."""
        record = self.record
        if record.status.points_done != self.done or record.status.events != record.log.count:
            record.update(points_done=self.done, positions=self.positions, events=record.log.count)

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

    def _final_reason(self) -> str:
        """Why the plan ended, with its suspensions: the plan's end and its run's end record
        say the same."""
        reason = self.reason or self.completion
        suspensions = self.record.status.suspensions
        if suspensions:
            total = sum(s.seconds for s in suspensions)
            reason += (
                f"; suspended {len(suspensions)} time{'s' if len(suspensions) > 1 else ''}"
                f" ({total:.1f} s: {', '.join(sorted({s.suspender for s in suspensions}))})"
            )
        return reason

    async def _finish(self) -> None:
        record, state = self.record, self.state
        reason = self._final_reason()
        self._flush_status()
        done = record.status.points_done
        record.update(
            state=state,
            ended=time.time(),
            error="" if state is PlanState.COMPLETED else reason,
            pause_requested=False,
            suspended_by="",
            result=self.result,
        )
        record.emit(Ended(state.value, reason, done, self.result))
        record.update(events=record.log.count)
        record.log.close()
        logger.info("plan %s %s: %s", record.status.id, state.value, reason)


#: How a plan's end names its run's end: the run of a plan that completed is as its data say
#: (None); a stopped plan stops its run, an aborted one aborts it; a plan in error fails its
#: run. An e-stop is named by the recorder itself ("e-stopped").
_RUN_OUTCOMES: dict[PlanState, RunOutcome | None] = {
    PlanState.COMPLETED: None,
    PlanState.STOPPED: RunOutcome.STOPPED,
    PlanState.ABORTED: RunOutcome.ABORTED,
    PlanState.ERROR: RunOutcome.FAILED,
}


class _RunEnded(Exception):
    """The plan's run ended by itself: the plan ends with it (``state``, ``reason``)."""

    def __init__(self, state: PlanState, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


class _Failed(Exception):
    """Ends the plan in state ``error`` with this message (and a result, e.g. a tune's)."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


def _failed_devices(error: BaseException) -> list[str] | None:
    """The devices whose actors failed under a point (crashed, or down), or None if anything
    else went wrong too (then the point's failure is the plan's)."""
    devices: list[str] = []
    for leaf in _leaves(error):
        if isinstance(leaf, ActorError) and leaf.crashed:
            devices.append(leaf.actor)
        else:
            return None
    return devices


def _principal(raised: BaseException) -> Exception | None:
    """The error that ended a step: itself, or a group's first leaf that is not a
    cancellation; None if there is none (only cancellations: re-raise them)."""
    leaves = [leaf for leaf in _leaves(raised) if not isinstance(leaf, trio.Cancelled)]
    if not leaves or not all(isinstance(leaf, Exception) for leaf in leaves):
        return None
    first = leaves[0]
    assert isinstance(first, Exception)
    return first


def _latched(error: BaseException) -> bool:
    """A device refused, or was interrupted, because of an e-stop."""
    cause = error.root_cause if isinstance(error, ActorError) else error
    return isinstance(cause, EmergencyStopLatched | Interrupted)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


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
