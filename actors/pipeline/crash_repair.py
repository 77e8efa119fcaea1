"""Repair the runs a crash left open, when the daemon starts.

What a crash (SIGKILL, power loss, an out-of-memory kill) leaves: a run file whose end record
still says "running", whose superblock still says "open for SWMR write" (so any reader that
does not ask for SWMR, and any writer, refuses it until someone runs ``h5clear``), possibly
shorter than HDF5's stored end-of-file address (space allocated but never written), datasets
whose lengths disagree by what was written after the last flush, a ``.reserve`` ballast file
and an Arrow stream cut mid-batch. What a run flushed before the crash is all there: SWMR
writes metadata in an order that keeps the file readable at every flush.

The repair, per file (:func:`repair_run`):

1. skip it if its writer is alive (the ballast file's ``flock`` is held: another daemon, or
   this one, is writing it);
2. make the superblock consistent (:mod:`.hdf5_superblock`): the file is extended to the
   end-of-file address HDF5 stored (what a clean close does), or — if it cannot grow — that
   address is set to its real size; the "open" flags are cleared;
3. open it for writing (no SWMR) and cut every per-frame dataset to the frames whose data,
   number, timestamp and exposure are all there, and every channel to its complete rows;
4. write the end record — status "crashed", the frames and readings that are in the file —
   and the end time (the last timestamp in the file), then close it normally;
5. check that it opens without SWMR, remove the ballast, and rewrite the Arrow stream with
   its complete batches and a proper end.

Each repair is logged. Error handling: a file that cannot be repaired (not HDF5, damaged, no
end record: a crash while it was being created) is logged and left as it is; the others are
still repaired.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa

from .arrow_readings import SCHEMA, read_readings
from .frame_source import FrameCount
from .hdf5_superblock import SuperblockError, clear_status_flags, read_superblock
from .nexus_file import end_record_bytes, iso, reserve_path
from .nexus_read import AUDIT_COLUMNS
from .run_status import RunCounts, RunEnd, RunOutcome

logger = logging.getLogger(__name__)

SUFFIX = ".nxs"
PER_FRAME = ("data", "frame_number", "timestamp", "exposure_time")
REASON = (
    "the daemon stopped without closing the run (killed, crashed or lost power); the file"
    " holds what was flushed before that"
)


@dataclass(frozen=True, slots=True)
class Repair:
    """What the repair of one file did. ``end`` is the end record it wrote (None if the run
    had ended and only its leftovers were cleaned)."""

    path: Path
    end: RunEnd | None
    actions: tuple[str, ...]


def repair_directory(directory: Path) -> list[Repair]:
    """Repair every run in ``directory`` that a crash left open; what was done, oldest first.
    Synchronous (h5py, file I/O): call it from a worker thread."""
    repairs: list[Repair] = []
    try:
        paths = sorted(p for p in directory.glob(f"*{SUFFIX}") if p.is_file())
    except OSError as error:
        logger.error("cannot look for crashed runs in %s: %s", directory, error)
        return repairs
    for path in paths:
        try:
            repair = repair_run(path)
        except (OSError, SuperblockError, KeyError, ValueError) as error:
            logger.error("%s: left open by a crash and cannot be repaired: %s", path, error)
            continue
        if repair is not None:
            repairs.append(repair)
            _log(repair)
    for reserve in directory.glob(f".*{SUFFIX}.reserve"):  # ballast of a file that is gone
        run = reserve.with_name(reserve.name[1:].removesuffix(".reserve"))
        if not run.exists() and _unlocked(reserve):
            reserve.unlink(missing_ok=True)
            logger.warning("removed %s (its run file does not exist)", reserve.name)
    return repairs


def _log(repair: Repair) -> None:
    if repair.end is None:
        logger.warning("%s: cleaned up after a crash: %s", repair.path, "; ".join(repair.actions))
        return
    counts = repair.end.counts
    logger.warning(
        "%s: repaired a run left open by a crash: %d frames and %d readings in the file; %s",
        repair.path,
        counts.frames_written,
        counts.readings_recorded,
        "; ".join(repair.actions),
    )


def repair_run(path: Path) -> Repair | None:
    """Repair one run file if a crash left it open; None if it needs nothing (or its writer
    is alive)."""
    reserve = reserve_path(path)
    if reserve.exists() and not _unlocked(reserve):
        return None  # someone is writing it
    block = read_superblock(path)
    size = path.stat().st_size
    if not block.flags and size >= block.end_of_file and not reserve.exists():
        return None  # closed cleanly: a crash always leaves the flags (set at creation)
    actions: list[str] = []
    if block.flags or size < block.end_of_file:
        actions.extend(_seal_superblock(path, size, block.end_of_file))
    ended = _end_record(path)
    end: RunEnd | None = None
    if ended.get("status", RunOutcome.RUNNING.value) == RunOutcome.RUNNING.value:
        end = _close_crashed(path, actions)
        _check_opens(path)
        actions.extend(_repair_arrow(path.with_suffix(".readings.arrows")))
    if reserve.exists():
        reserve.unlink()
        actions.append(f"removed {reserve.name}")
    if not actions:
        return None
    return Repair(path, end, tuple(actions))


def _unlocked(reserve: Path) -> bool:
    """True if no process holds the ballast's lock (its writer is gone)."""
    try:
        fd = os.open(reserve, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    finally:
        os.close(fd)
    return True


def _seal_superblock(path: Path, size: int, end_of_file: int) -> list[str]:
    actions = []
    new_end: int | None = None
    if size < end_of_file:
        try:
            os.truncate(path, end_of_file)  # what HDF5's own close does: sparse, no data
            actions.append(f"extended the file to HDF5's end of file ({end_of_file} bytes)")
        except OSError as error:
            new_end = size
            actions.append(
                f"set HDF5's end of file to the file's size ({size} bytes): it could not"
                f" grow to {end_of_file} ({error.strerror})"
            )
    clear_status_flags(path, end_of_file=new_end)
    actions.append("cleared the superblock's open-for-writing flags")
    return actions


def _end_record(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as file:
        raw = bytes(file["entry/end_record"][()]).rstrip(b" ")
    record: dict[str, Any] = json.loads(raw)
    return record


def _planned_frames(run_info: dict[str, Any]) -> int | None:
    """The frames a plan that recorded the run meant to take (``run.recorded_by``: its
    estimate), when it took a fixed number per point; None for live frames or no plan."""
    recorded_by = run_info.get("recorded_by") or {}
    if not isinstance(recorded_by, dict) or not (recorded_by.get("plan") or {}).get("frames"):
        return None
    frames = (recorded_by.get("estimate") or {}).get("frames")
    return int(frames) if isinstance(frames, int | float) and frames > 0 else None


def _close_crashed(path: Path, actions: list[str]) -> RunEnd:
    size = path.stat().st_size
    with h5py.File(path, "r+") as file:
        entry = file["entry"]
        manifest = json.loads(entry["manifest/json"][()])
        run_info = manifest.get("run", {})
        start_time = float(run_info.get("start_time", 0.0))
        options = run_info.get("options", {}) or {}
        frames, numbers, last_time = _cut_frames(entry, size, actions)
        counts, channel_time = _cut_channels(entry, actions)
        audit = _cut_audit(entry, actions)
        span = FrameCount()
        for number in numbers:
            span.see(int(number))
        asked = options.get("frames") or _planned_frames(run_info)
        counts = RunCounts(
            **{
                **counts.as_dict(),
                "frames_expected": int(asked) if asked else span.total_span,
                "frames_received": frames,
                "frames_written": frames,
                "frames_missing": max(0, span.total_span - frames),
                "audit_entries": audit,
            }
        )
        end_time = max(last_time, channel_time, start_time)
        if end_time <= 0:
            end_time = path.stat().st_mtime
        end = RunEnd(
            outcome=RunOutcome.CRASHED,
            reason=REASON,
            counts=counts,
            start_time=start_time,
            end_time=end_time,
            extra={"repaired_at": time.time(), "repairs": list(actions)},
        )
        entry["end_record"][()] = end_record_bytes(end.to_record())
        entry["end_time"][()] = np.array(iso(end_time).encode().ljust(40), "S40")
    actions.append("wrote the end record")
    return end


def _detectors(entry: h5py.Group) -> Iterator[h5py.Group]:
    instrument = entry.get("instrument")
    if instrument is None:
        return
    for group in instrument.values():
        if isinstance(group, h5py.Group) and all(name in group for name in PER_FRAME):
            yield group


def _cut_frames(entry: h5py.Group, size: int, actions: list[str]) -> tuple[int, Any, float]:
    """Cut the per-frame datasets to the frames that are whole; (frames, numbers, last
    timestamp)."""
    for detector in _detectors(entry):
        datasets = [detector[name] for name in PER_FRAME]
        lengths = [d.shape[0] for d in datasets]
        frames = min(lengths)
        data = detector["data"]
        while frames and not _chunk_written(data, frames - 1, size):
            frames -= 1
        if any(length != frames for length in lengths):
            for dataset in datasets:
                dataset.resize(frames, axis=0)
            actions.append(f"cut {detector.name} to its {frames} whole frames (from {lengths})")
        numbers = detector["frame_number"][:frames]
        last = float(detector["timestamp"][frames - 1]) if frames else 0.0
        return frames, numbers, last
    return 0, [], 0.0


def _chunk_written(data: h5py.Dataset, index: int, size: int) -> bool:
    """The frame's chunk is in the chunk index and inside the file."""
    try:
        info = data.id.get_chunk_info_by_coord((index, 0, 0))
    except (RuntimeError, ValueError, OSError):
        return False
    return info.byte_offset is not None and info.byte_offset + info.size <= size


def _cut_channels(entry: h5py.Group, actions: list[str]) -> tuple[RunCounts, float]:
    """Cut every channel to its complete rows; the counts they make and the last time."""
    readings = changes = points = cut = 0
    last = 0.0
    for kind, group in _channels(entry):
        datasets = [group[name] for name in ("time", "value", "flags") if name in group]
        lengths = [d.shape[0] for d in datasets]
        rows = min(lengths)
        if any(length != rows for length in lengths):
            for dataset in datasets:
                dataset.resize(rows, axis=0)
            cut += 1
        if rows:
            last = max(last, float(group["time"][rows - 1]))
        if kind == "reading":
            readings += rows
        elif kind == "parameter":
            changes += rows
        else:
            points = max(points, rows)
    if cut:
        actions.append(f"cut {cut} readings and parameter channels to their whole rows")
    counts = RunCounts(readings_recorded=readings, parameter_changes=changes, scan_points=points)
    return counts, last


def _cut_audit(entry: h5py.Group, actions: list[str]) -> int:
    """Cut the audit trail to its whole rows; how many there are."""
    audit = entry.get("audit")
    if audit is None:
        return 0
    datasets = [audit[name] for name in AUDIT_COLUMNS if name in audit]
    if not datasets:
        return 0
    lengths = [int(d.shape[0]) for d in datasets]
    rows = min(lengths)
    if any(length != rows for length in lengths):
        for dataset in datasets:
            dataset.resize(rows, axis=0)
        actions.append(f"cut the audit trail to its {rows} whole rows")
    return rows


def _channels(entry: h5py.Group) -> Iterator[tuple[str, h5py.Group]]:
    for device in entry.get("readings", {}).values():
        if "reading" in device:
            yield "reading", device["reading"]
        for parameter in device.get("parameters", {}).values():
            yield "parameter", parameter
    for column in entry.get("scan", {}).values():
        yield "scan", column


def _check_opens(path: Path) -> None:
    """The point of it all: a reader without SWMR opens the repaired file."""
    with h5py.File(path, "r") as file:
        record = json.loads(bytes(file["entry/end_record"][()]).rstrip(b" "))
    if record.get("status") != RunOutcome.CRASHED.value:
        raise ValueError(f"{path.name}: the end record did not stick: {record.get('status')}")


def _repair_arrow(path: Path) -> list[str]:
    """Rewrite the Arrow stream with its complete batches and a proper end-of-stream."""
    if not path.exists():
        return []
    table = read_readings(path)
    temporary = path.with_name(f".{path.name}.repair")
    try:
        with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_stream(sink, SCHEMA) as writer:
            for batch in table.to_batches():
                writer.write_batch(batch)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return [f"rewrote {path.name} with its {table.num_rows} complete rows"]
