"""One recording run: taps in, NeXus file out, with every frame and reading accounted for.

The recorder actor owns at most one :class:`Run` at a time. A run takes a *lossless* tap on
the camera's frames and on every Readable's readings, watches every parameter, and writes
them through one worker thread (h5py never runs on the event loop). It flushes about once a
second — the point up to which a crash loses nothing — and checks the disk each time.

Accounting (all in the end record): ``frames_expected`` (what was asked for, or the span of
frame numbers seen in live mode), ``frames_received`` (taken from the tap), ``frames_written``
(in the file), ``frames_dropped`` (the tap overflowed: the writer fell behind) and
``frames_missing`` (never reached the tap: lost in the camera or its driver). For readings,
``readings_lost`` counts tap overflows; for parameters, ``parameter_changes_skipped`` counts
changes that came faster than they could be observed (their version numbers jumped).
"""

from __future__ import annotations

import enum
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from runtime import (
    ActorError,
    ActorSystem,
    BenchError,
    ObservableClosed,
    Sample,
    Subscription,
    WatchParameter,
)

from ..capabilities import (
    AcquisitionStatus,
    Frame,
    GetAcquisitionStatus,
    Reading,
    StartAcquisition,
    StopAcquisition,
)
from .arrow_readings import ArrowReadingsWriter, Row
from .manifest import DeviceRecord
from .nexus_file import ChannelKind, ChannelSpec, Compression, FrameRecord, NexusRunFile
from .subscription import add_tap, remove_tap
from .taps import TapClosed, TapPolicy, TapReader

logger = logging.getLogger(__name__)

FRAME_BATCH = 16
CAMERA_POLL = 0.2
READINGS_CAPACITY = 200_000
MB = 1024 * 1024


class RunState(enum.StrEnum):
    IDLE = "idle"
    RECORDING = "recording"
    FINISHING = "finishing"
    COMPLETED = "completed"  # ended as planned (frames done, duration over, stopped by a user)
    FAILED = "failed"  # ended by an error (disk low, write error); the end record says which


@dataclass(frozen=True, slots=True)
class RunOptions:
    name: str
    directory: Path
    metadata: Mapping[str, Any]
    camera: str | None
    frames: int | None  # acquire this many frames, then end the run
    duration: float | None  # end the run after this many seconds
    compression: Compression
    frame_queue: int  # lossless frame tap capacity (frames the writer may fall behind)
    min_free_bytes: int
    flush_interval: float
    scan_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A run's progress; published about once a second and at every state change."""

    name: str = ""
    path: str = ""
    state: RunState = RunState.IDLE
    started: float = 0.0
    ended: float = 0.0
    frames_expected: int = 0
    frames_received: int = 0
    frames_written: int = 0
    frames_committed: int = 0
    frames_dropped: int = 0
    frames_missing: int = 0
    writer_lag: int = 0  # frames waiting in the writer's tap right now
    readings_recorded: int = 0
    readings_lost: int = 0
    parameter_changes: int = 0
    parameter_changes_skipped: int = 0
    scan_points: int = 0
    error: str = ""
    end_record: Mapping[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in (RunState.RECORDING, RunState.FINISHING)


class RunFailed(Exception):
    """Ends a run with an error status (disk low, camera gone, write failure)."""


@dataclass
class _FrameCount:
    """Frame numbers seen, per segment (a camera restart starts a new count at 1)."""

    received: int = 0
    span: int = 0
    _first: int = -1
    _last: int = -1

    def see(self, number: int) -> None:
        self.received += 1
        if self._last < 0 or number <= self._last:  # first frame, or the camera restarted
            if self._last >= 0:
                self.span += self._last - self._first + 1
            self._first = number
        self._last = number

    @property
    def total_span(self) -> int:
        current = self._last - self._first + 1 if self._last >= 0 else 0
        return self.span + current


class Run:
    def __init__(
        self,
        system: ActorSystem,
        options: RunOptions,
        *,
        path: Path,
        devices: Mapping[str, DeviceRecord],
        file: NexusRunFile,
        arrow: ArrowReadingsWriter,
        publish: Callable[[RunStatus], None],
    ) -> None:
        self.system = system
        self.options = options
        self.path = path
        self.devices = devices
        self.file = file
        self.arrow = arrow
        self._publish = publish
        self.min_free_bytes = options.min_free_bytes  # the recorder updates it if it changes
        self.status = RunStatus(
            name=options.name,
            path=str(path),
            state=RunState.RECORDING,
            started=time.time(),
            frames_expected=options.frames or 0,
        )
        self._frames = _FrameCount()
        self._frame_tap: TapReader[Frame] | None = None
        self._frames_dropped_before = 0  # drops of earlier taps (camera restarts)
        self._reading_taps: dict[str, TapReader[Reading]] = {}
        self._readings_lost_before: dict[str, int] = {}
        self._parameter_rows: list[tuple[ChannelSpec, float, Any]] = []
        self._changes = 0
        self._changes_skipped = 0
        self._scan_points = 0
        self._readings = 0
        self._stop_reason: str | None = None
        self._failure: str | None = None
        self._camera_done = trio.Event()
        self._wake = trio.CancelScope()
        self.finished = trio.Event()
        self._started_camera = False
        self._old_tap: TapReader[Frame] | None = None  # closed by a camera restart
        self._hard_failure = False  # the file cannot take more: queued frames are not written
        self._frames_discarded = 0  # taken or queued but not written after a hard failure

    # -- control -----------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        self._wake.cancel()

    # -- running -----------------------------------------------------------------------------

    async def attach(self) -> None:
        """Take the taps and subscriptions before any frame is acquired."""
        for name, record in self.devices.items():
            if record.readable:
                await self._tap_readings(name)
        if self.options.camera is not None:
            self._frame_tap = await self._tap_frames()

    async def _tap_frames(self) -> TapReader[Frame]:
        assert self.options.camera is not None
        camera = self.system.ref(self.options.camera)
        reader: TapReader[Frame] = await add_tap(
            camera, "frames", self._tap_name, TapPolicy.LOSSLESS, capacity=self.options.frame_queue
        )
        return reader

    async def run(self) -> None:
        """Record until done, then finish the file. Never raises for a recording problem:
        the failure goes in the end record and the status."""
        ended = False
        try:
            async with trio.open_nursery() as nursery:
                for name, record in self.devices.items():
                    for info in record.parameters:
                        spec = ChannelSpec(
                            name, info.name, ChannelKind.PARAMETER, _kind(info.dtype), info.units
                        )
                        nursery.start_soon(self._watch_parameter, spec)
                try:
                    if self._failure is None:
                        if self.options.camera is not None and self.options.frames:
                            await self.start_camera()
                            nursery.start_soon(self._wait_camera)
                        await self._record()
                except RunFailed as failure:
                    self._failure = str(failure)
                except OSError as error:  # h5py and the disk: ENOSPC, EIO
                    self._failure = f"writing {self.path.name} failed: {_first_line(error)}"
                    self._hard_failure = True
                except Exception as error:  # a bug must end the run, never the recorder
                    logger.exception("run %s failed", self.options.name)
                    self._failure = f"internal error: {type(error).__name__}: {error}"
                    self._hard_failure = True
                nursery.cancel_scope.cancel()
            ended = True
        finally:
            if not ended:  # cancelled from outside: the recorder is stopping (or restarting)
                self._stop_reason = self._stop_reason or "the recorder stopped (daemon shutdown)"
            try:
                with trio.CancelScope(shield=True):
                    await self._finish()
            finally:
                self.finished.set()  # whatever happened, nobody waits for ever

    @property
    def _tap_name(self) -> str:
        return f"run:{self.options.name}"

    def fail(self, reason: str) -> None:
        """End the run with an error before it records (an attach or camera start failed)."""
        self._failure = self._failure or reason
        self._wake.cancel()

    async def start_camera(self) -> None:
        """Start the camera's sequence; RunFailed says why the camera refused."""
        if self._started_camera or self.options.camera is None or not self.options.frames:
            return
        camera = self.system.ref(self.options.camera)
        try:
            await camera.ask(StartAcquisition(self.options.frames))
        except (BenchError, ActorError) as error:
            cause = getattr(error, "cause", error)
            raise RunFailed(f"could not start the camera: {cause}") from error
        self._started_camera = True

    async def _wait_camera(self) -> None:
        """Notice the end of the camera's sequence (completed, stopped, failed). Polls the
        status rather than asking the camera to hold a reply, which would block its mailbox."""
        assert self.options.camera is not None
        camera = self.system.ref(self.options.camera)
        while True:
            await trio.sleep(CAMERA_POLL)
            try:
                status: AcquisitionStatus = await camera.ask(GetAcquisitionStatus())
            except (BenchError, ActorError) as error:
                logger.warning("%s: lost the camera: %s", self.options.name, error)
                break
            if not status.running:
                if status.error:
                    logger.warning(
                        "%s: the camera ended early: %s", self.options.name, status.error
                    )
                break
        self._camera_done.set()
        self._wake.cancel()

    async def _record(self) -> None:
        flush_at = trio.current_time() + self.options.flush_interval
        deadline = (
            trio.current_time() + self.options.duration if self.options.duration else math.inf
        )
        while True:
            if self._stop_reason is not None:
                return
            frames = self._take_frames()
            if frames:
                await self._write_frames(frames)
            elif self._frames_complete():
                return
            now = trio.current_time()
            if now >= deadline:
                self._stop_reason = "duration reached"
                return
            if now >= flush_at:
                await self._flush()
                flush_at = now + self.options.flush_interval
            if not frames:
                await self._wait_for_frames(min(flush_at, deadline))

    def _take_frames(self) -> list[Frame]:
        tap = self._frame_tap
        if tap is None:
            return []
        return tap.receive_batch(FRAME_BATCH)

    async def _wait_for_frames(self, until: float) -> None:
        self._wake = trio.CancelScope(deadline=until)
        if self._stop_reason is not None:
            return
        frame: Frame | None = None
        with self._wake:
            if self._frame_lost_instance():
                await self._retap_camera()
                return
            tap = self._frame_tap
            if tap is None or self._camera_done.is_set():
                await trio.sleep_forever()
                return
            try:
                frame = await tap.receive()
            except TapClosed:
                self._frames_dropped_before += tap.statistics().dropped  # counted once
                self._old_tap = tap
                return
        if frame is not None:
            await self._write_frames([frame])

    def _frame_lost_instance(self) -> bool:
        return self._old_tap is not None and self._old_tap is self._frame_tap

    async def _retap_camera(self) -> None:
        """The camera instance went away (a restart): tap the new one (its drops were
        counted when the old tap closed). Interrupted by the flush timer, it tries again."""
        while True:
            try:
                self._frame_tap = await self._tap_frames()
                self._old_tap = None
                return
            except (BenchError, ActorError):
                await trio.sleep(0.5)

    def _frames_complete(self) -> bool:
        if self.options.frames and self._frames.received + self._dropped() >= self.options.frames:
            return True
        return self._camera_done.is_set() and (
            self._frame_tap is None or not self._frame_tap.statistics().pending
        )

    async def _write_frames(self, frames: list[Frame]) -> None:
        shape = self.file.layout.shape if self.file.layout else None
        records: list[FrameRecord] = []
        rest: list[Frame] = []  # from the first frame of the wrong shape on: not written
        for index, frame in enumerate(frames):
            if frame.pixels.shape != shape:
                rest = frames[index:]
                break
            records.append(
                FrameRecord(frame.frame_number, frame.timestamp, frame.exposure_ms, frame.pixels)
            )
        for frame in frames:
            self._frames.see(frame.frame_number)
        self._frames_discarded += len(rest)
        try:
            with trio.CancelScope(shield=True):  # frames in hand are written, even when stopping
                await trio.to_thread.run_sync(self.file.append_frames, records)
        except OSError:
            self._frames_discarded += len(records)  # the file rolls the batch back
            raise
        if rest:
            raise RunFailed(
                f"frame {rest[0].frame_number} is {rest[0].pixels.shape}, the run records"
                f" {shape}: the camera's geometry changed during the run"
            )

    async def _flush(self) -> None:
        await self._retap_readings()
        rows = self._take_readings()
        parameter_rows, self._parameter_rows = self._parameter_rows, []

        def write() -> int:
            self._write_rows(rows, parameter_rows)
            return self.file.flush()

        committed = await trio.to_thread.run_sync(write)
        self._update(committed)
        free = shutil.disk_usage(self.path.parent).free
        if free < self.min_free_bytes:
            raise RunFailed(
                f"disk space low: {free // MB} MiB free in {self.path.parent}, the run needs"
                f" at least {self.min_free_bytes // MB} MiB"
            )

    def _take_readings(self) -> dict[str, list[Reading]]:
        taken: dict[str, list[Reading]] = {}
        for device, tap in self._reading_taps.items():
            taken[device] = tap.receive_batch(READINGS_CAPACITY)
            self._readings += len(taken[device])
        return taken

    async def _retap_readings(self) -> None:
        """A Readable that restarted closed its tap: count its drops and follow the new one."""
        for device, tap in list(self._reading_taps.items()):
            statistics = tap.statistics()
            if not tap.closed or statistics.pending:
                continue
            try:
                reader = await self._tap_reading_stream(device)
            except (BenchError, ActorError):
                continue  # still restarting: try again at the next flush
            self._readings_lost_before[device] = (
                self._readings_lost_before.get(device, 0) + statistics.dropped
            )
            self._reading_taps[device] = reader
            logger.info("%s: following %s's readings again", self.options.name, device)

    def _write_rows(
        self,
        readings: Mapping[str, list[Reading]],
        parameter_rows: list[tuple[ChannelSpec, float, Any]],
    ) -> None:
        arrow_rows: list[Row] = []
        for device, items in readings.items():
            if not items:
                continue
            times = [r.timestamp for r in items]
            flags = [",".join(r.flags) for r in items]
            self.file.append_channel(f"{device}/reading", times, [r.value for r in items], flags)
            arrow_rows.extend(
                Row(device, "reading", r.timestamp, r.value, "", f)
                for r, f in zip(items, flags, strict=True)
            )
        by_channel: dict[str, list[tuple[float, Any]]] = {}
        for spec, when, value in parameter_rows:
            by_channel.setdefault(spec.key, []).append((when, value))
            number = value if isinstance(value, int | float) else math.nan
            text = "" if isinstance(value, int | float) else str(getattr(value, "value", value))
            arrow_rows.append(Row(spec.device, spec.name, when, float(number), text))
        for key, pairs in by_channel.items():
            self.file.append_channel(key, [p[0] for p in pairs], [p[1] for p in pairs])
        self.arrow.append(arrow_rows)
        self.arrow.flush()

    async def _watch_parameter(self, spec: ChannelSpec) -> None:
        """Record every change of one parameter, re-watching after the device restarts."""
        ref = self.system.ref(spec.device)
        last_version = -1
        while True:
            try:
                subscription: Subscription[Any] = await ref.ask(WatchParameter(spec.name))
            except (BenchError, ActorError):
                await trio.sleep(0.5)
                continue
            try:
                async for sample in subscription:
                    self._note_change(spec, sample, last_version)
                    last_version = sample.version
            except ObservableClosed:
                pass
            last_version = -1  # a new instance numbers its versions afresh
            await trio.sleep(0.5)

    def add_scan_point(self, values: Mapping[str, float], timestamp: float) -> int:
        """Queue one scan-table row; written with the next flush like parameter changes."""
        for column in self.options.scan_columns:
            spec = ChannelSpec("scan", column, ChannelKind.SCAN, "float")
            self._parameter_rows.append((spec, timestamp, float(values.get(column, math.nan))))
        self._scan_points += 1
        return self._scan_points

    def _note_change(self, spec: ChannelSpec, sample: Sample[Any], last_version: int) -> None:
        if last_version >= 0 and sample.version > last_version + 1:
            self._changes_skipped += sample.version - last_version - 1
        self._changes += 1
        self._parameter_rows.append((spec, sample.timestamp, sample.value))

    async def _tap_reading_stream(self, device: str) -> TapReader[Reading]:
        reader: TapReader[Reading] = await add_tap(
            self.system.ref(device),
            "readings",
            self._tap_name,
            TapPolicy.LOSSLESS,
            capacity=READINGS_CAPACITY,
        )
        return reader

    async def _tap_readings(self, device: str) -> None:
        try:
            self._reading_taps[device] = await self._tap_reading_stream(device)
        except (BenchError, ActorError) as error:
            logger.warning("%s: not recording %s readings: %s", self.options.name, device, error)

    def _dropped(self) -> int:
        tap = self._frame_tap
        current = tap.statistics().dropped if tap is not None and tap is not self._old_tap else 0
        return self._frames_dropped_before + current

    def _readings_lost(self) -> int:
        now = sum(t.statistics().dropped for t in self._reading_taps.values())
        return now + sum(self._readings_lost_before.values())

    def _update(self, committed: int | None = None, **changes: Any) -> None:
        tap = self._frame_tap
        expected = self.options.frames or self._frames.total_span
        dropped = self._dropped()
        self.status = replace(
            self.status,
            frames_expected=expected,
            frames_received=self._frames.received,
            frames_written=self.file.frames_written,
            frames_committed=self.file.frames_committed if committed is None else committed,
            frames_dropped=dropped,
            frames_missing=max(0, self._frames.total_span - self._frames.received - dropped),
            writer_lag=tap.statistics().pending if tap else 0,
            readings_recorded=self._readings,
            readings_lost=self._readings_lost(),
            parameter_changes=self._changes,
            parameter_changes_skipped=self._changes_skipped,
            scan_points=self._scan_points,
            **changes,
        )
        self._publish(self.status)

    # -- the end -------------------------------------------------------------------------------

    async def _finish(self) -> None:
        self._update(state=RunState.FINISHING)
        await self._release_sources()
        end_time = time.time()
        try:
            await self._drain()
        except (OSError, RunFailed) as error:
            self._failure = self._failure or f"writing the last data failed: {_first_line(error)}"
            if self._frame_tap is not None:  # what the file could not take is still counted
                self._frames_discarded += len(self._frame_tap.receive_batch(10**9))
        failed = self._failure is not None
        self._update()
        record = self._end_record(end_time, failed)
        try:
            await trio.to_thread.run_sync(self.file.finish, record, end_time)
        except OSError as error:
            logger.error("%s: the end record could not be written: %s", self.path, error)
            record = {**record, "status": "failed", "end_record_written": False}
            self._failure = self._failure or f"the end record could not be written: {error}"
            failed = True
            try:
                await trio.to_thread.run_sync(self.file.close)
            except OSError as close_error:
                logger.error("%s: closing failed too: %s", self.path, close_error)
        try:
            await trio.to_thread.run_sync(self.arrow.close)
        except OSError as error:
            logger.error("%s: the Arrow readings file is incomplete: %s", self.path, error)
        self._update(
            state=RunState.FAILED if failed else RunState.COMPLETED,
            ended=end_time,
            error=self._failure or "",
            end_record=record,
        )
        level = logging.ERROR if failed else logging.INFO
        logger.log(level, "run %s ended: %s", self.options.name, record)
        self.finished.set()

    async def _release_sources(self) -> None:
        if self._started_camera and self.options.camera is not None:
            camera = self.system.ref(self.options.camera)
            try:
                await camera.ask(StopAcquisition(), timeout=5.0)
            except (BenchError, ActorError) as error:
                logger.warning("%s: could not stop the camera: %s", self.options.name, error)
        # Detach first (the producer forgets a detached tap at its next publish, so nothing
        # new arrives even if the RemoveTap below cannot get through); what is queued stays
        # and is drained.
        if self._frame_tap is not None:
            self._frame_tap.detach()
            if self.options.camera is not None:
                await remove_tap(self.system.ref(self.options.camera), "frames", self._tap_name)
        for device, tap in self._reading_taps.items():
            tap.detach()
            await remove_tap(self.system.ref(device), "readings", self._tap_name)

    async def _drain(self) -> None:
        """Write what the taps still hold — unless the file cannot take it (a write failed),
        in which case the frames left are counted as discarded, never just forgotten."""
        tap = self._frame_tap
        while tap is not None:
            if self._hard_failure:
                self._frames_discarded += len(tap.receive_batch(10**9))
                break
            batch = tap.receive_batch(FRAME_BATCH)
            if not batch:
                break
            try:
                await self._write_frames(batch)
            except OSError:
                self._hard_failure = True
                raise
        rows = self._take_readings()
        parameter_rows, self._parameter_rows = self._parameter_rows, []
        await trio.to_thread.run_sync(self._write_rows, rows, parameter_rows)

    def _end_record(self, end_time: float, failed: bool) -> dict[str, Any]:
        status = self.status
        if failed:
            outcome = "failed"
        elif self.options.frames and status.frames_written < self.options.frames:
            outcome = "incomplete"
        else:
            outcome = "completed"
        return {
            "status": outcome,
            "reason": self._failure or self._stop_reason or "finished",
            "start_time": status.started,
            "end_time": end_time,
            "frames_expected": status.frames_expected,
            "frames_received": status.frames_received,
            "frames_written": status.frames_written,
            "frames_dropped": status.frames_dropped,
            "frames_missing": status.frames_missing,
            "frames_discarded": self._frames_discarded,
            "readings_recorded": status.readings_recorded,
            "readings_lost": status.readings_lost,
            "parameter_changes": status.parameter_changes,
            "parameter_changes_skipped": status.parameter_changes_skipped,
            "scan_points": status.scan_points,
        }


def _first_line(error: BaseException) -> str:
    """HDF5's messages run to several lines of C-level detail: keep what failed and why."""
    text = str(error.__cause__ or error)
    what = text.split("\n", maxsplit=1)[0].split(" (file write failed", maxsplit=1)[0].strip()
    number = getattr(error, "errno", None)
    found = re.search(r"errno = (\d+)", text)
    if found:
        number = int(found.group(1))
    reason = os.strerror(number) if number else ""
    return f"{what}: {reason}" if reason and reason not in what else what


def _kind(dtype: str) -> str:
    return dtype if dtype in ("float", "int", "bool") else "str"
