"""A run's file writer: frames and rows into the NeXus file and the Arrow stream, through one
worker thread, each write preceded by a free-space check.

Why a piece of its own: the recorder and the acquisition executor both write runs, and what a
write may end with — the disk below its margin, the file refusing a write — must be decided in
one place. Every method does its work in one ``trio.to_thread.run_sync`` call (h5py never runs
on the event loop, and neither does the ``statvfs`` before each write); the caller awaits each
call, so the file is never used by two threads at once.

Error handling: :class:`DiskFull` (free space below ``min_free_mb``: nothing was written, the
file is intact and can take the end record); :class:`WriteFailed` (the file or the system
refused a write: ENOSPC, EFBIG, EIO... with the errno's name; :attr:`RunWriter.broken` is set
and frames are no longer written — or the next write would have taken the file past the
largest file allowed, EFBIG, and was not made: the file is intact); :class:`FrameShapeChanged`
(the camera's geometry changed: the frames before it were written, the rest are counted as
discarded).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from ..capabilities import Frame, Reading
from .arrow_readings import ArrowReadingsWriter, Row
from .audit_trail import AuditEntry
from .disk_space import DiskFull, DiskGuard, FileTooLarge
from .nexus_file import (
    ChannelSpec,
    FrameLayout,
    FrameRecord,
    NexusRunFile,
    ScanPlot,
    error_name,
    file_error,
)
from .run_feed import RunFeed

#: A parameter change or a scan-table cell: (channel, Unix time, value).
ChannelRow = tuple[ChannelSpec, float, Any]

FRAME_OVERHEAD = 4096  # bytes of HDF5 metadata a frame may add (chunk index, per-frame series)
ARROW_ROW_BYTES = 64  # bytes a row may take in the Arrow stream


class WriteFailed(Exception):
    """The file refused a write; ``error`` names the errno (ENOSPC, EFBIG, EIO, ...)."""

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


class FrameShapeChanged(Exception):
    """A frame does not fit the run's frame layout (the camera's ROI or binning changed)."""


class RunWriter:
    def __init__(self, file: NexusRunFile, arrow: ArrowReadingsWriter, guard: DiskGuard) -> None:
        self.file = file
        self.arrow = arrow
        self.guard = guard
        self.frames_discarded = 0  # reached the writer, not written (refused, or wrong shape)
        self.readings_written = 0
        self.readings_discarded = 0
        self.changes_discarded = 0  # parameter changes and scan rows not written
        self.audit_discarded = 0  # audit entries the file refused
        self.broken = False  # a write failed: the file takes no more data
        #: told what is written and when it is durable (the run's live documents); None: no one
        self.feed: RunFeed | None = None

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def layout(self) -> FrameLayout | None:
        return self.file.layout

    @property
    def frames_written(self) -> int:
        return self.file.frames_written

    @property
    def frames_committed(self) -> int:
        return self.file.frames_committed

    @property
    def audit_written(self) -> int:
        return self.file.audit_written

    # -- writing ---------------------------------------------------------------------------

    async def write_frames(self, frames: Sequence[Frame]) -> None:
        """Append frames; shielded, so frames in hand are written even when the run stops."""
        if self.broken:
            self.frames_discarded += len(frames)
            return
        shape = self.layout.shape if self.layout else None
        records: list[FrameRecord] = []
        rest: Sequence[Frame] = ()  # from the first frame of the wrong shape on
        for index, frame in enumerate(frames):
            if frame.pixels.shape != shape:
                rest = frames[index:]
                break
            records.append(
                FrameRecord(frame.frame_number, frame.timestamp, frame.exposure_ms, frame.pixels)
            )
        needed = sum(r.pixels.nbytes + FRAME_OVERHEAD for r in records)

        def write() -> None:
            self.guard.check(needed, self.file.size())
            self.file.append_frames(records)

        try:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(write)
        except DiskFull:
            self.frames_discarded += len(frames)
            raise
        except FileTooLarge as error:
            self.frames_discarded += len(frames)
            raise WriteFailed(f"writing {self.path.name} stopped: {error}", "EFBIG") from error
        except OSError as error:
            self.frames_discarded += len(frames)  # the file rolled the batch back
            raise self._failed(error) from error
        if self.feed is not None:
            self.feed.frames_written(records)
        if rest:
            self.frames_discarded += len(rest)
            raise FrameShapeChanged(
                f"frame {rest[0].frame_number} is {rest[0].pixels.shape}, the run records"
                f" {shape}: the camera's geometry changed during the run"
            )

    async def write_rows(
        self,
        readings: Mapping[str, Sequence[Reading]],
        rows: Sequence[ChannelRow],
        *,
        audit: Sequence[AuditEntry] = (),
        check_space: bool = True,
    ) -> None:
        """Append readings, parameter changes and scan rows to both files, and audit entries
        to the NeXus file. ``check_space`` False: the last rows of a run that ended on a full
        disk (the file size limit is still checked: a file past it cannot be closed)."""
        count = sum(len(items) for items in readings.values())
        if not count and not rows and not audit:
            return
        if self.broken:
            self._discard_rows(count, len(rows), len(audit))
            return
        per_channel: dict[str, int] = {f"{d}/reading": len(i) for d, i in readings.items() if i}
        for spec, _when, _value in rows:
            per_channel[spec.key] = per_channel.get(spec.key, 0) + 1

        def write() -> None:
            needed = sum(self.file.bytes_for_rows(k, n) for k, n in per_channel.items())
            needed += (count + len(rows)) * ARROW_ROW_BYTES
            needed += self.file.bytes_for_audit(len(audit))
            self.guard.check(needed, self.file.size(), space=check_space)
            self._write_rows(readings, rows)
            self.file.append_audit(audit)

        try:
            await trio.to_thread.run_sync(write)
        except DiskFull:
            self._discard_rows(count, len(rows), len(audit))
            raise
        except FileTooLarge as error:
            self._discard_rows(count, len(rows), len(audit))
            raise WriteFailed(f"writing {self.path.name} stopped: {error}", "EFBIG") from error
        except OSError as error:
            self._discard_rows(count, len(rows), len(audit))
            raise self._failed(error) from error
        self.readings_written += count
        if self.feed is not None:
            self.feed.rows_written(readings, rows)

    def _discard_rows(self, readings: int, rows: int, audit: int) -> None:
        self.readings_discarded += readings
        self.changes_discarded += rows
        self.audit_discarded += audit

    def _write_rows(
        self, readings: Mapping[str, Sequence[Reading]], rows: Sequence[ChannelRow]
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
        for spec, when, value in rows:
            by_channel.setdefault(spec.key, []).append((when, value))
            number = value if isinstance(value, int | float) else math.nan
            text = "" if isinstance(value, int | float) else str(getattr(value, "value", value))
            arrow_rows.append(Row(spec.device, spec.name, when, float(number), text))
        for key, pairs in by_channel.items():
            self.file.append_channel(key, [p[0] for p in pairs], [p[1] for p in pairs])
        self.arrow.append(arrow_rows)
        self.arrow.flush()

    async def flush(self) -> int:
        """Make everything written so far durable and visible to SWMR readers; the frames
        committed."""
        if self.broken:
            return self.frames_committed

        def flush() -> int:
            self.guard.check()  # HDF5 writes metadata at a flush: a write like any other
            return self.file.flush()

        try:
            committed = await trio.to_thread.run_sync(flush)
        except OSError as error:
            raise self._failed(error) from error
        if self.feed is not None:
            self.feed.committed()
        return committed

    def _failed(self, error: OSError) -> WriteFailed:
        self.broken = True
        cause = file_error(error)
        return WriteFailed(
            f"writing {self.path.name} failed: {cause.strerror or cause}", error_name(cause)
        )

    # -- the end ---------------------------------------------------------------------------

    async def finish(self, record: Mapping[str, Any], end_time: float) -> dict[str, Any]:
        """Write the end record and close both files; the end record as written (see
        NexusRunFile.finish: a file HDF5 cannot close is sealed, trusting only what the last
        flush made durable). Raises OSError if the end record could not be written at all."""

        def close() -> dict[str, Any]:
            try:
                return self.file.finish(record, end_time)
            finally:
                # the stream keeps every complete batch; the repair can rewrite it
                with contextlib.suppress(OSError):
                    self.arrow.close()

        try:
            written: dict[str, Any] = await trio.to_thread.run_sync(close)
        except OSError:
            if self.feed is not None:
                self.feed.discard()
                self.feed.closed({**record, "end_record_written": False})
            raise
        if self.feed is not None:
            if "sealed" in written:  # only what the last flush made durable is in the file
                self.feed.discard()
            self.feed.committed()
            self.feed.closed(written)
        return written


def create_run_writer(
    path: Path,
    *,
    guard: DiskGuard,
    title: str,
    start_time: float,
    manifest: Mapping[str, Any],
    metadata: Mapping[str, Any],
    devices: Mapping[str, Mapping[str, Any]],
    layout: FrameLayout | None,
    channels: Sequence[ChannelSpec],
    plot: ScanPlot | None = None,
) -> RunWriter:
    """Create the run's files (synchronous: call it from a worker thread). Refuses to
    overwrite; on failure nothing is left behind.

    Error handling: FileExistsError, DiskFull, or the OSError that stopped the creation.
    """
    guard.check()
    file = NexusRunFile.create(
        path,
        title=title,
        start_time=start_time,
        manifest=manifest,
        metadata=metadata,
        devices=devices,
        frames=layout,
        channels=channels,
        plot=plot,
    )
    try:
        arrow = ArrowReadingsWriter(path.with_suffix(".readings.arrows"))
    except OSError as error:
        file.finish({"status": "failed", "reason": f"no readings file: {error}"}, start_time)
        raise
    return RunWriter(file, arrow, guard)
