"""One run's NeXus/HDF5 file, written with h5py in SWMR mode. Synchronous: call it from a
worker thread (the recorder uses ``trio.to_thread``), never from the event loop.

Why SWMR: the file is readable (``h5py.File(path, "r", swmr=True)``) while the run goes on, and
a daemon killed mid-run leaves a valid file holding every frame flushed so far. SWMR allows no
new objects once it is on, so everything — every dataset of every channel, the audit trail, the
default plot and the end record — is created up front; the end record is a fixed-size dataset
written in place at the end, so finishing a run needs no new space even on a full disk.

Layout (NeXus base classes only; group and field names follow :mod:`.nexus_names`: a device
``esp300.axis1`` is the group ``esp300_axis1`` with ``@device="esp300.axis1"``)::

    /                            NXroot: @default="entry", @file_name, @file_time, @creator
    /entry                       NXentry: title, start_time, end_time, program_name,
                                 end_record (JSON); @default="data" when /entry/data exists
    /entry/manifest              NXcollection: json (everything at run start), metadata_json,
                                 layout_json (every bench name -> its path in this file)
    /entry/instrument            NXinstrument
    /entry/instrument/<camera>   NXdetector: data[n, y, x] uint16 (one chunk per frame,
                                 bitshuffle-LZ4 by default), frame_number[n], timestamp[n],
                                 exposure_time[n], settings/ (NXcollection)
    /entry/instrument/<device>   NXcollection: each parameter's value at run start (with units)
    /entry/readings/<device>/reading            NXlog: time, value, flags (every reading)
    /entry/readings/<device>/parameters/<name>  NXlog: time, value (every parameter change)
    /entry/scan/<column>         NXlog: time, value (a scan's table, one row a point)
    /entry/audit                 NXcollection: time, who, role, what, result (mutating requests)
    /entry/data                  NXdata, the default plot: a scan's detector against its axis,
                                 else the frames, else the first reading against time
    /entry/frames                NXdata of the frames when /entry/data plots a scan

Every NXlog's ``time`` is Unix seconds (``@units="s"``, ``@start="1970-01-01T00:00:00+00:00"``:
offsets from the epoch, as NeXus's NXlog allows), every ``value`` has ``@units`` (the device's;
``"1"`` for a number the device gives no unit, ``""`` for text and booleans) and a
``@long_name`` (``"esp300.axis1 (mm)"``) that plotting programs use as the axis label.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import functools
import importlib.metadata
import json
import math
import os
import re
import struct
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import h5py
import numpy as np
import numpy.typing as npt

from .audit_trail import LIMITS as AUDIT_LIMITS
from .audit_trail import AuditEntry
from .hdf5_superblock import clear_status_flags, read_superblock
from .nexus_names import NameAllocator, nexus_name
from .nexus_read import (
    AUDIT_COLUMNS,
    END_RECORD,
    LAYOUT,
    Column,
    file_layout,
    frames_path,
    read_audit,
    read_channel,
    read_end_record,
    read_layout,
    read_manifest,
    read_metadata,
    read_scan_table,
)

END_RECORD_BYTES = 16384
RESERVE_BYTES = 1024 * 1024  # ballast freed on a full disk, so the end record can be written
STRING_BYTES = 64  # fixed-length text values (enum names, short strings) in channel datasets
CHANNEL_CHUNK = 4096  # rows per chunk of a reading channel (thousands a second)
CHANGE_CHUNK = 256  # rows per chunk of a parameter or scan channel (a few a run, mostly)
AUDIT_CHUNK = 64  # rows per chunk of the audit trail (a few requests a run, mostly)
EPOCH = "1970-01-01T00:00:00+00:00"  # NXlog @start: its times are Unix seconds
DIMENSIONLESS = "1"  # the unit of a number the device gives none (a count, an index, a ratio)
BITSHUFFLE_BLOCK = 4096  # elements per bitshuffle block: the filter's own default for uint16


class RunFileError(OSError):
    """HDF5 could not write (h5py reports a full disk from a flush as RuntimeError). Carries
    the system's errno where HDF5's message names one."""


def file_error(error: BaseException) -> RunFileError:
    """An OSError for what HDF5 (or the system) reported, with its errno (None if HDF5 named
    none) and a one-line message: HDF5's messages run to several lines of C-level detail."""
    text = re.sub(r"^\[Errno \d+\] ", "", str(error))
    found = re.search(r"errno = (\d+)", text)
    if found is None and isinstance(error, OSError) and error.errno:
        where = f" ({error.filename})" if error.filename else ""
        return RunFileError(error.errno, f"{error.strerror or text}{where}")
    what = re.split(r" \((?:file write failed|unable to extend)", text.split("\n")[0])[0]
    what = what.strip() or type(error).__name__
    if found is None:
        return RunFileError(what)
    number = int(found.group(1))
    return RunFileError(number, f"{what}: {os.strerror(number)}")


def error_name(error: BaseException) -> str:
    """ENOSPC, EFBIG, EIO...: the errno's name, for the end record."""
    number = getattr(error, "errno", None)
    return errno.errorcode.get(number, f"errno {number}") if number else "HDF5 error"


def _io(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except RunFileError:
            raise
        except (RuntimeError, OSError) as error:
            raise file_error(error) from error

    return wrapper


class Compression(enum.StrEnum):
    NONE = "none"
    BITSHUFFLE_LZ4 = "bitshuffle-lz4"


#: What a run's frames get unless the bench's config (``[storage] compression``) or the run
#: says otherwise: 2-3x smaller camera frames, written faster than raw ones (see performance.md).
DEFAULT_COMPRESSION = Compression.BITSHUFFLE_LZ4


class ChannelKind(enum.StrEnum):
    READING = "reading"
    PARAMETER = "parameter"
    SCAN = "scan"  # one column of a scan's table (point, axis positions, readings per point)


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One time series of the run: a device's readings, or one parameter's changes."""

    device: str
    name: str  # "reading", or the parameter's name
    kind: ChannelKind
    dtype: str  # "float", "int", "bool", "str"
    units: str = ""

    @property
    def key(self) -> str:
        return f"{self.device}/{self.name}"

    @property
    def path(self) -> str:
        """Where the channel's NXlog is by the naming rule (:mod:`.nexus_names`); exact unless
        two bench names map to one NeXus name (then the later gets ``_2``): the file's
        ``layout_json`` (:func:`read_layout`) is always exact."""
        if self.kind is ChannelKind.READING:
            return f"/entry/readings/{nexus_name(self.device)}/reading"
        if self.kind is ChannelKind.SCAN:
            return f"/entry/scan/{nexus_name(self.name)}"
        return f"/entry/readings/{nexus_name(self.device)}/parameters/{nexus_name(self.name)}"

    @property
    def label(self) -> str:
        """What the channel is called on the bench (a plot's axis label)."""
        if self.kind is ChannelKind.PARAMETER:
            return f"{self.device}.{self.name}"
        return self.name if self.kind is ChannelKind.SCAN else self.device

    @property
    def value_units(self) -> str:
        """The value's ``@units``: the device's, else "1" for a number, "" for text/booleans."""
        if self.units:
            return self.units
        return "" if self.dtype in ("str", "bool") else DIMENSIONLESS


@dataclass(frozen=True, slots=True)
class ScanPlot:
    """A scan's default plot: the ``signal`` column against the ``axes`` columns (scan column
    names as declared). The first axis is the plot's x; the others are the same points'
    coordinates (``AXISNAME_indices`` 0), so a reader can plot a grid scan as a scatter."""

    signal: str
    axes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FrameLayout:
    detector: str  # the camera's device id: the NXdetector group's name
    shape: tuple[int, int]
    compression: Compression = DEFAULT_COMPRESSION


@dataclass(frozen=True, slots=True)
class FrameRecord:
    frame_number: int
    timestamp: float
    exposure_ms: float
    pixels: npt.NDArray[np.uint16]


def to_json(value: Any) -> str:
    """JSON that every reader accepts: enums by value, NaN/inf as null, unknowns as text."""

    def plain(item: Any) -> Any:
        if isinstance(item, enum.Enum):
            return plain(item.value)
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, Mapping):
            return {str(k): plain(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [plain(v) for v in item]
        if item is None or isinstance(item, str | int | float | bool):
            return item
        return str(item)

    return json.dumps(plain(value), allow_nan=False, sort_keys=False)


def _text(value: str, size: int) -> bytes:
    """UTF-8 of ``value`` in at most ``size`` bytes, cut on a character boundary ("...")."""
    data = value.encode()
    if len(data) <= size:
        return data
    return data[: size - 3].decode(errors="ignore").encode() + b"..."


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


P = ParamSpec("P")
R = TypeVar("R")

_TEXT = h5py.string_dtype("utf-8", STRING_BYTES)  # fixed-size text, marked as UTF-8
_CHANNEL_DTYPES = {"float": "f8", "int": "i8", "bool": "u1", "str": f"S{STRING_BYTES}"}


def _load_compressor() -> Callable[[npt.NDArray[np.uint16]], npt.NDArray[np.uint8]] | None:
    """bitshuffle's own LZ4 compressor, if installed: it releases the GIL while it works, so
    the event loop keeps running while a frame is compressed (HDF5's filter pipeline holds
    the GIL for the whole write: ~10 ms a full frame, measured)."""
    # One thread: bitshuffle parallelises with OpenMP, whose threads spin-wait for each other;
    # on a busy 2-core machine a frame then took 120-140 ms instead of 5 (measured). libgomp
    # reads OMP_NUM_THREADS once, when bitshuffle loads it; the environment is restored after.
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import bitshuffle  # noqa: PLC0415 (optional: without it HDF5's filter compresses)
    except ImportError:
        return None
    finally:
        if saved is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = saved

    def compress(pixels: npt.NDArray[np.uint16]) -> npt.NDArray[np.uint8]:
        # The chunk as the HDF5 bitshuffle filter stores it: the uncompressed size (u64, big
        # endian), the block size in bytes (u32, big endian), then the compressed blocks.
        flat = np.ascontiguousarray(pixels).reshape(-1)
        body = bitshuffle.compress_lz4(flat, BITSHUFFLE_BLOCK)
        chunk = np.empty(12 + body.size, np.uint8)
        chunk[:12] = np.frombuffer(
            struct.pack(">QI", flat.nbytes, BITSHUFFLE_BLOCK * flat.itemsize), np.uint8
        )
        chunk[12:] = body
        return chunk

    return compress


_compress_frame = _load_compressor()


class NexusRunFile:
    """A run file being written. Not thread-safe: one worker at a time (the recorder awaits
    each call)."""

    def __init__(self, file: h5py.File, layout: FrameLayout | None) -> None:
        self._file = file
        self.path = Path(file.filename)
        self.layout = layout
        self._frames: h5py.Dataset | None = None
        self._frame_numbers: h5py.Dataset | None = None
        self._timestamps: h5py.Dataset | None = None
        self._exposures: h5py.Dataset | None = None
        self._channels: dict[str, tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset | None]] = {}
        self._audit: tuple[h5py.Dataset, ...] = ()
        self._frames_written = 0
        self._frames_committed = 0
        self._rows_written: dict[str, int] = {}
        self._audit_written = 0
        self._reserve = reserve_path(self.path)
        self._reserve_fd: int | None = None
        self._end_offsets: tuple[int, int] | None = None  # end_record's, end_time's raw data
        self._layout: dict[str, Any] = {}  # what layout_json says

    # -- creation ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        title: str,
        start_time: float,
        manifest: Mapping[str, Any],
        metadata: Mapping[str, Any],
        devices: Mapping[str, Mapping[str, Any]],
        frames: FrameLayout | None,
        channels: Sequence[ChannelSpec],
        plot: ScanPlot | None = None,
    ) -> NexusRunFile:
        """Create the file (refusing to overwrite one), write the manifest, lay out every
        dataset and switch SWMR on. On any failure the partial file is removed.

        ``plot``: the scan's default plot (scan column names); without it the default plot
        is the frames, else the first reading channel against time.

        Error handling: FileExistsError; ValueError if ``plot`` names a column that is not a
        scan channel (nothing is left on disk); the OSError that stopped the creation.
        """
        columns = {c.name for c in channels if c.kind is ChannelKind.SCAN}
        if plot is not None:
            unknown = [c for c in (plot.signal, *plot.axes) if c not in columns]
            if unknown:
                raise ValueError(f"the plot names {unknown[:5]}, which are not scan columns")
            if len({plot.signal, *plot.axes}) != 1 + len(plot.axes):
                raise ValueError("a plot's signal and axes must be distinct columns")
        file = h5py.File(path, "w-", libver="latest")
        try:
            run = cls(file, frames)
            run._reserve_space()
            run._lay_out(
                title=title,
                start_time=start_time,
                manifest=manifest,
                metadata=metadata,
                devices=devices,
                channels=channels,
                plot=plot,
            )
            file.swmr_mode = True
            file.flush()
        except BaseException:
            file.close()
            path.unlink(missing_ok=True)
            run._drop_reserve()
            raise
        return run

    def _reserve_space(self) -> None:
        """The ballast, which is also the sign that a writer is alive: the writer holds an
        exclusive ``flock`` on it until the file is closed, and the kernel drops that lock
        when the process dies — so the repair at start-up knows a crashed run from one that
        another daemon is still writing."""
        fd = os.open(self._reserve, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._reserve_fd = fd
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"\0" * RESERVE_BYTES)
        os.fsync(fd)

    def _release_reserve(self) -> None:
        """Give the ballast's space back (the lock stays until the file is closed)."""
        if self._reserve_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._reserve_fd, 0)

    def _drop_reserve(self) -> None:
        self._reserve.unlink(missing_ok=True)
        if self._reserve_fd is not None:
            os.close(self._reserve_fd)  # releases the lock
            self._reserve_fd = None

    def _lay_out(
        self,
        *,
        title: str,
        start_time: float,
        manifest: Mapping[str, Any],
        metadata: Mapping[str, Any],
        devices: Mapping[str, Mapping[str, Any]],
        channels: Sequence[ChannelSpec],
        plot: ScanPlot | None,
    ) -> None:
        file = self._file
        file.attrs["NX_class"] = "NXroot"
        file.attrs["default"] = "entry"
        file.attrs["file_name"] = self.path.name
        file.attrs["file_time"] = iso(start_time)
        file.attrs["creator"] = "benchd"
        file.attrs["creator_version"] = _version("benchd")
        file.attrs["HDF5_Version"] = h5py.version.hdf5_version
        file.attrs["h5py_version"] = h5py.version.version
        entry = _group(file, "entry", "NXentry")
        entry["title"] = title
        entry["start_time"] = iso(start_time)
        entry["program_name"] = "benchd"
        entry["program_name"].attrs["version"] = _version("benchd")
        end_time = entry.create_dataset("end_time", data=np.array(b"".ljust(40), dtype="S40"))
        record = _text(to_json({"status": "running"}), END_RECORD_BYTES).ljust(END_RECORD_BYTES)
        end = entry.create_dataset("end_record", data=np.array(record, f"S{END_RECORD_BYTES}"))
        end.attrs["description"] = "JSON: how the run ended, every frame and reading accounted"
        file.flush()  # allocates both, so their raw data have addresses
        offsets = end.id.get_offset(), end_time.id.get_offset()
        if offsets[0] is not None and offsets[1] is not None:
            self._end_offsets = (offsets[0], offsets[1])

        notes = _group(entry, "manifest", "NXcollection")
        notes["json"] = to_json(manifest)
        notes["metadata_json"] = to_json(metadata)

        self._layout = {"devices": {}, "readings": {}, "parameters": {}, "scan": {}}
        self._lay_out_instrument(entry, devices)
        self._lay_out_channels(entry, channels)
        self._audit = self._lay_out_audit(entry)
        self._layout["audit"] = "/entry/audit"
        default = self._lay_out_plots(entry, channels, plot)
        if default is not None:
            entry.attrs["default"] = default
        self._layout["default_plot"] = f"/entry/{default}" if default else None
        notes["layout_json"] = to_json(self._layout)

    def _lay_out_instrument(
        self, entry: h5py.Group, devices: Mapping[str, Mapping[str, Any]]
    ) -> None:
        instrument = _group(entry, "instrument", "NXinstrument")
        name = NameAllocator()
        detector = self.layout.detector if self.layout is not None else None
        order = list(devices)
        if detector is not None and detector not in devices:
            order.insert(0, detector)
        for device in order:
            group_name = name(device)
            self._layout["devices"][device] = f"{instrument.name}/{group_name}"
            if device == detector:
                self._lay_out_detector(instrument, group_name, devices.get(device, {}))
                self._layout["detector"] = f"{instrument.name}/{group_name}"
                continue
            group = _group(instrument, group_name, "NXcollection")
            group.attrs["device"] = device
            _write_values(group, devices[device])

    def _lay_out_detector(
        self, instrument: h5py.Group, name: str, parameters: Mapping[str, Any]
    ) -> None:
        assert self.layout is not None
        layout = self.layout
        detector = _group(instrument, name, "NXdetector")
        detector["local_name"] = layout.detector  # the bench's name of the camera
        detector["description"] = f"camera {layout.detector} (benchd)"
        _write_values(_group(detector, "settings", "NXcollection"), parameters)
        rows, columns = layout.shape
        options: dict[str, Any] = {}
        if layout.compression is Compression.BITSHUFFLE_LZ4:
            import hdf5plugin  # noqa: PLC0415 (registers the filter; only needed when used)

            options.update(hdf5plugin.Bitshuffle(cname="lz4"))
        self._frames = detector.create_dataset(
            "data",
            shape=(0, rows, columns),
            maxshape=(None, rows, columns),
            dtype="u2",
            chunks=(1, rows, columns),
            **options,
        )
        self._frames.attrs["units"] = "counts"
        self._frames.attrs["long_name"] = f"{layout.detector} (counts)"
        self._frames.attrs["interpretation"] = "image"
        self._frame_numbers = _series(detector, "frame_number", "i8", 1024)
        self._frame_numbers.attrs["units"] = DIMENSIONLESS
        self._frame_numbers.attrs["long_name"] = "frame number (the camera's)"
        self._timestamps = _series(detector, "timestamp", "f8", 1024)
        self._timestamps.attrs["units"] = "s"
        self._timestamps.attrs["description"] = "Unix time at the end of readout"
        self._exposures = _series(detector, "exposure_time", "f8", 1024)
        self._exposures.attrs["units"] = "ms"

    def _lay_out_channels(self, entry: h5py.Group, channels: Sequence[ChannelSpec]) -> None:
        readings = _group(entry, "readings", "NXcollection")
        scan = _group(entry, "scan", "NXcollection") if _has_scan(channels) else None
        device_name = NameAllocator()
        column_name = NameAllocator()
        parameter_names: dict[str, NameAllocator] = {}
        for channel in channels:
            if channel.kind is ChannelKind.SCAN:
                assert scan is not None
                group = _group(scan, column_name(channel.name), "NXlog")
                self._layout["scan"][channel.name] = group.name
            else:
                device = _group(readings, device_name(channel.device), "NXcollection")
                device.attrs["device"] = channel.device
                if channel.kind is ChannelKind.READING:
                    group = _group(device, "reading", "NXlog")
                    self._layout["readings"][channel.device] = group.name
                else:
                    parameters = _group(device, "parameters", "NXcollection")
                    name = parameter_names.setdefault(channel.device, NameAllocator())
                    group = _group(parameters, name(channel.name), "NXlog")
                    self._layout["parameters"].setdefault(channel.device, {})[channel.name] = (
                        group.name
                    )
            self._lay_out_channel(group, channel)

    def _lay_out_channel(self, group: h5py.Group, channel: ChannelSpec) -> None:
        chunk = CHANNEL_CHUNK if channel.kind is ChannelKind.READING else CHANGE_CHUNK
        group["description"] = channel.label  # the bench's name of what is logged, exactly
        times = _series(group, "time", "f8", chunk)
        times.attrs["units"] = "s"
        times.attrs["start"] = EPOCH
        times.attrs["long_name"] = "time (Unix s)"
        dtype = _TEXT if channel.dtype == "str" else _CHANNEL_DTYPES[channel.dtype]
        values = _series(group, "value", dtype, chunk)
        units = channel.value_units
        values.attrs["units"] = units
        shown = units if units not in ("", DIMENSIONLESS) else ""
        values.attrs["long_name"] = f"{channel.label} ({shown})" if shown else channel.label
        flags = None
        if channel.kind is ChannelKind.READING:
            flags = _series(group, "flags", _TEXT, chunk)
            flags.attrs["description"] = "the reading's quality flags, comma-separated"
        self._channels[channel.key] = (times, values, flags)
        self._rows_written[channel.key] = 0

    def _lay_out_audit(self, entry: h5py.Group) -> tuple[h5py.Dataset, ...]:
        audit = _group(entry, "audit", "NXcollection")
        audit.attrs["description"] = (
            "every mutating request made while the run recorded: when, who, their role,"
            " what was asked and how it ended"
        )
        datasets = []
        for column in AUDIT_COLUMNS:
            if column == "time":
                dataset = _series(audit, "time", "f8", AUDIT_CHUNK)
                dataset.attrs["units"] = "s"
                dataset.attrs["start"] = EPOCH
            else:
                text = h5py.string_dtype("utf-8", AUDIT_LIMITS[column])
                dataset = _series(audit, column, text, AUDIT_CHUNK)
            datasets.append(dataset)
        return tuple(datasets)

    def _lay_out_plots(
        self, entry: h5py.Group, channels: Sequence[ChannelSpec], plot: ScanPlot | None
    ) -> str | None:
        """The NXdata groups; the name of the default one (None: nothing to plot)."""
        default = None
        if plot is not None:
            by_name = {c.name: c for c in channels if c.kind is ChannelKind.SCAN}
            self._scan_plot(_group(entry, "data", "NXdata"), plot, by_name)
            default = "data"
        if self._frames is not None:
            name = "frames" if default else "data"
            self._frames_plot(_group(entry, name, "NXdata"))
            default = default or name
        if default is None:
            reading = next((c for c in channels if c.kind is ChannelKind.READING), None)
            if reading is not None:
                self._reading_plot(_group(entry, "data", "NXdata"), reading)
                default = "data"
        return default

    def _scan_plot(
        self, data: h5py.Group, plot: ScanPlot, columns: Mapping[str, ChannelSpec]
    ) -> None:
        names = NameAllocator(("title",))
        signal = names(plot.signal)
        _link(data, signal, self._channels[columns[plot.signal].key][1])
        data.attrs["signal"] = signal
        axes = [names(axis) for axis in plot.axes]
        for axis, name in zip(plot.axes, axes, strict=True):
            _link(data, name, self._channels[columns[axis].key][1])
            data.attrs[f"{name}_indices"] = 0  # every axis gives the same points' coordinates
        data.attrs["axes"] = axes[:1] or ["."]  # one per dimension of the signal: the first
        against = f" against {plot.axes[0]}" if plot.axes else ""
        data["title"] = f"{plot.signal}{against}"

    def _frames_plot(self, data: h5py.Group) -> None:
        assert self._frames is not None and self._frame_numbers is not None
        _link(data, "data", self._frames)
        _link(data, "frame_number", self._frame_numbers)
        data.attrs["signal"] = "data"
        data.attrs["axes"] = ["frame_number", ".", "."]
        data.attrs["frame_number_indices"] = 0
        data["title"] = f"{self.layout.detector if self.layout else 'camera'} frames"

    def _reading_plot(self, data: h5py.Group, reading: ChannelSpec) -> None:
        times, values, _flags = self._channels[reading.key]
        name = NameAllocator(("time", "title"))(reading.device)
        _link(data, name, values)
        _link(data, "time", times)
        data.attrs["signal"] = name
        data.attrs["axes"] = ["time"]
        data.attrs["time_indices"] = 0
        data["title"] = f"{reading.device} against time"

    # -- appending -----------------------------------------------------------------------------

    @_io
    def append_frames(self, frames: Sequence[FrameRecord]) -> None:
        assert self._frames is not None and self.layout is not None
        assert self._frame_numbers is not None and self._timestamps is not None
        assert self._exposures is not None
        if not frames:
            return
        start = self._frames_written
        end = start + len(frames)
        series = (self._frame_numbers, self._timestamps, self._exposures)
        try:
            self._frames.resize(end, axis=0)
            compressed = self.layout.compression is Compression.BITSHUFFLE_LZ4
            for index, frame in enumerate(frames, start):
                # Direct chunk writes skip HDF5's filter pipeline: raw pixels as they are,
                # compressed ones compressed here first (with the GIL released).
                if not compressed:
                    self._frames.id.write_direct_chunk((index, 0, 0), _contiguous(frame.pixels))
                elif _compress_frame is not None:
                    self._frames.id.write_direct_chunk((index, 0, 0), _compress_frame(frame.pixels))
                else:
                    self._frames[index] = frame.pixels
            for dataset, values in zip(
                series,
                (
                    [f.frame_number for f in frames],
                    [f.timestamp for f in frames],
                    [f.exposure_ms for f in frames],
                ),
                strict=True,
            ):
                dataset.resize(end, axis=0)
                dataset[start:end] = values
        except BaseException:
            # All or nothing: the data and its per-frame datasets keep one length, so a reader
            # never sees frames without numbers (best effort: the disk may refuse this too).
            with contextlib.suppress(Exception):
                for dataset in (self._frames, *series):
                    dataset.resize(start, axis=0)
            raise
        self._frames_written = end

    @_io
    def append_channel(
        self,
        key: str,
        times: Sequence[float],
        values: Sequence[Any],
        flags: Sequence[str] | None = None,
    ) -> None:
        if not times:
            return
        time_set, value_set, flag_set = self._channels[key]
        start = self._rows_written[key]
        end = start + len(times)
        time_set.resize(end, axis=0)
        time_set[start:end] = times
        value_set.resize(end, axis=0)
        value_set[start:end] = _values(values, value_set.dtype)
        if flag_set is not None:
            flag_set.resize(end, axis=0)
            flag_set[start:end] = [_text(f, STRING_BYTES) for f in (flags or [""] * len(times))]
        self._rows_written[key] = end

    @_io
    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Rows of ``/entry/audit``, one per entry (every column the same length)."""
        if not entries:
            return
        start = self._audit_written
        end = start + len(entries)
        for dataset, column in zip(self._audit, AUDIT_COLUMNS, strict=True):
            cells = [getattr(e, column) for e in entries]
            dataset.resize(end, axis=0)
            if column == "time":
                dataset[start:end] = cells
            else:
                dataset[start:end] = [_text(c, dataset.dtype.itemsize) for c in cells]
        self._audit_written = end

    @_io
    def flush(self) -> int:
        """Make everything appended so far durable and visible to SWMR readers; returns the
        number of frames committed."""
        self._file.flush()
        self._frames_committed = self._frames_written
        return self._frames_committed

    @property
    def frames_written(self) -> int:
        return self._frames_written

    @property
    def audit_written(self) -> int:
        return self._audit_written

    def size(self) -> int:
        """The file's size as HDF5 will leave it (what it has allocated, written or not)."""
        return int(self._file.id.get_filesize())

    @property
    def frames_committed(self) -> int:
        return self._frames_committed

    def rows_written(self, key: str) -> int:
        return self._rows_written[key]

    def bytes_for_rows(self, key: str, rows: int) -> int:
        """What appending ``rows`` rows to a channel may add to the file: the new chunks its
        datasets allocate (a chunk is allocated whole, at its first row)."""
        datasets = [d for d in self._channels[key] if d is not None]
        return _new_chunk_bytes(datasets, self._rows_written[key], rows)

    def bytes_for_audit(self, rows: int) -> int:
        return _new_chunk_bytes(self._audit, self._audit_written, rows)

    def finish(self, end_record: Mapping[str, Any], end_time: float) -> dict[str, Any]:
        """Write the end record in its pre-allocated place, flush and close; the end record
        as written. The ballast file goes first, so even a full disk has room for HDF5's last
        metadata.

        If HDF5 cannot close the file (a write error it cannot get past, e.g. the file may
        not grow: EFBIG), the end record is written straight into its bytes and the
        superblock marks cleared (:meth:`seal_in_place`), so the file still opens in any
        reader. Only what the last flush made durable is then trusted: ``frames_written``
        becomes the frames committed, the rest count as discarded, ``sealed`` says why.
        Raises RunFileError only if even that failed.
        """
        self._release_reserve()
        record = dict(end_record)
        try:
            entry = self._file["entry"]
            entry["end_record"][()] = end_record_bytes(record)
            entry["end_time"][()] = np.array(iso(end_time).encode().ljust(40), "S40")
            self._file.flush()
            self._frames_committed = self._frames_written
            self._file.close()
        except (RuntimeError, OSError) as error:
            failure = file_error(error)
            lost = self._frames_written - self._frames_committed
            if "frames_written" in record:
                record["frames_written"] = self._frames_committed
                record["frames_discarded"] = int(record.get("frames_discarded", 0)) + lost
            record["sealed"] = f"HDF5 could not close the file: {failure.strerror or failure}"
            try:
                self.seal_in_place(end_record_bytes(record).tobytes(), iso(end_time).encode())
            except OSError as seal_error:
                raise failure from seal_error
        finally:
            self._drop_reserve()
        return record

    def seal_in_place(self, record: bytes, stamp: bytes) -> None:
        """Finish a file HDF5 cannot close: write the end record's and end time's bytes
        where they were allocated at creation, then clear the superblock's "open" flags and
        make its end-of-file address the file's real size (what a failed close could not
        do). The HDF5 library keeps its handle (it would not let go of it); this process
        never writes to the file again."""
        if self._end_offsets is None:
            raise RunFileError(errno.EIO, "the end record has no fixed place in the file")
        record_at, stamp_at = self._end_offsets
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.pwrite(fd, record.ljust(END_RECORD_BYTES)[:END_RECORD_BYTES], record_at)
            os.pwrite(fd, stamp.ljust(40)[:40], stamp_at)
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        block = read_superblock(self.path)
        clear_status_flags(self.path, end_of_file=size if size < block.end_of_file else None)

    def close(self) -> None:
        """Close without an end record (the status stays "running": the run did not end)."""
        try:
            if self._file.id.valid:
                self._file.close()
        except RuntimeError as error:
            raise file_error(error) from error
        finally:
            self._drop_reserve()


def end_record_bytes(record: Mapping[str, Any]) -> npt.NDArray[Any]:
    """The end record as its fixed-size dataset holds it."""
    text = _text(to_json(record), END_RECORD_BYTES).ljust(END_RECORD_BYTES)
    return np.array(text, f"S{END_RECORD_BYTES}")


def reserve_path(path: Path) -> Path:
    """The ballast (and writer's lock) file beside a run file."""
    return path.with_name(f".{path.name}.reserve")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _has_scan(channels: Sequence[ChannelSpec]) -> bool:
    return any(c.kind is ChannelKind.SCAN for c in channels)


# -- reading a run back (documents, publishers) ------------------------------------------------
#
# Readers of run files (the document rebuild, the Tiled publisher) go through these helpers
# only, so the file's layout lives in this module alone.

#: The run's ``uid`` (its Bluesky start document's) is in the manifest; files made before it
#: was get a stable one derived from their name and start time.
_UID_NAMESPACE = uuid.UUID("6f1c1f9e-4a4b-4d0c-9a53-0b7d1e3f2a10")


def frames_dataset_path(detector: str) -> str:
    """Where a run file keeps a detector's frames, ``[n, rows, columns]`` one chunk a frame.
    Exact: the detector's group is named first, so no other device takes its NeXus name."""
    return f"/entry/instrument/{nexus_name(detector)}/data"


def stored_values(dtype: str, values: Iterable[Any]) -> list[Any]:
    """Values as a channel of ``dtype`` stores them, as plain Python values: text cut to the
    dataset's width, booleans as bools, anything that is not a number as NaN — so values told
    live and values read back from the file are the same."""
    kind = _CHANNEL_DTYPES[dtype][0]
    plain = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in values]
    array = _values(plain, np.dtype(_CHANNEL_DTYPES[dtype]))
    if kind == "S":
        return [bytes(v).decode(errors="replace") for v in array]
    if kind == "u":
        return [bool(v) for v in array]
    return [v.item() for v in array]


@dataclass(frozen=True, slots=True)
class RunContents:
    """What a run file holds, as far as a reader needs to replay it."""

    path: Path
    uid: str
    name: str
    start_time: float
    manifest: dict[str, Any]
    end_record: dict[str, Any]
    layout: FrameLayout | None
    frames_dataset: str  # "" without frames
    frames: int  # rows of frames (and of their numbers, timestamps, exposures)
    channels: tuple[tuple[ChannelSpec, int], ...]  # each channel in the file and its rows


def channels_from_manifest(manifest: Mapping[str, Any]) -> list[ChannelSpec]:
    """The channels a run records, from its manifest: every Readable's readings, every
    parameter's changes, a plan's scan columns (the same that run_setup declares)."""
    readings: list[ChannelSpec] = []
    parameters: list[ChannelSpec] = []
    for name, device in (manifest.get("devices") or {}).items():
        info = device.get("info") or {}
        if "Readable" in (info.get("capabilities") or ()):
            units = str(info.get("units") or "")
            readings.append(ChannelSpec(name, "reading", ChannelKind.READING, "float", units))
        for parameter in device.get("parameter_info") or ():
            dtype = str(parameter.get("dtype", "str"))
            parameters.append(
                ChannelSpec(
                    name,
                    str(parameter.get("name")),
                    ChannelKind.PARAMETER,
                    dtype if dtype in ("float", "int", "bool") else "str",
                    str(parameter.get("units") or ""),
                )
            )
    scan = (manifest.get("metadata") or {}).get("scan")
    columns = scan.get("columns") if isinstance(scan, Mapping) else None
    specs = [ChannelSpec("scan", str(c), ChannelKind.SCAN, "float") for c in columns or ()]
    return [*readings, *parameters, *specs]


class RunFileReader:
    """A run file opened for reading (SWMR, so a file another process writes opens too).

    Synchronous: use it in a worker thread. Never open a run this process is writing: HDF5
    would show this process the writer's unflushed rows (the live documents come from the
    writer itself, see run_feed.py).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = h5py.File(self.path, "r", swmr=True)
        # where everything is, by the bench's names (the file's layout_json, exact even when
        # two names met one NeXus name); files older than layout_json are walked
        self._layout = file_layout(self._file)

    def __enter__(self) -> RunFileReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def contents(self) -> RunContents:
        entry = self._file["entry"]
        manifest: dict[str, Any] = json.loads(entry["manifest/json"][()])
        end_record: dict[str, Any] = json.loads(bytes(entry["end_record"][()]).rstrip(b" "))
        run = manifest.get("run") or {}
        start_time = float(run.get("start_time") or 0.0)
        name = str(run.get("name") or self.path.stem)
        uid = str(run.get("uid") or uuid.uuid5(_UID_NAMESPACE, f"{self.path.name}@{start_time}"))
        layout = None
        dataset = ""
        frames = 0
        camera = (run.get("options") or {}).get("camera")
        detector = self._layout.get("detector")
        if camera and detector and f"{detector}/data" in self._file:
            data = self._file[f"{detector}/data"]
            numbers = self._file[f"{detector}/frame_number"]
            frames = int(min(data.shape[0], numbers.len()))
            compressed = data.id.get_create_plist().get_nfilters() > 0
            compression = Compression.BITSHUFFLE_LZ4 if compressed else Compression.NONE
            layout = FrameLayout(camera, (int(data.shape[1]), int(data.shape[2])), compression)
            dataset = f"{detector}/data"
        specs = channels_from_manifest(manifest)
        if not any(spec.kind is ChannelKind.SCAN for spec in specs):
            # a recording (StartRun: a count plan) has a table but no scan in its metadata
            scan = self._layout.get("scan") or {}
            specs += [ChannelSpec("scan", str(c), ChannelKind.SCAN, "float") for c in scan]
        channels = []
        for spec in specs:
            where = self._where(spec)
            if f"{where}/time" in self._file and f"{where}/value" in self._file:
                rows = min(self._file[f"{where}/{d}"].len() for d in ("time", "value"))
                channels.append((spec, int(rows)))
        return RunContents(
            self.path, uid, name, start_time, manifest, end_record, layout, dataset, frames,
            tuple(channels),
        )  # fmt: skip

    def frames(
        self, detector: str, start: int, stop: int
    ) -> tuple[list[int], list[float], list[float]]:
        """Frame numbers, timestamps (Unix s) and exposures (ms) of rows ``start:stop``."""
        group = self._layout.get("detector") or f"/entry/instrument/{nexus_name(detector)}"
        series = [self._file[f"{group}/{n}"] for n in _FRAME_SERIES]
        numbers, stamps, exposures = (s[start:stop].tolist() for s in series)
        return numbers, stamps, exposures

    def channel(
        self, spec: ChannelSpec, start: int, stop: int
    ) -> tuple[list[float], list[Any], list[str] | None]:
        """Rows ``start:stop`` of a channel: times, values as stored_values gives them, and
        (readings) their flags."""
        group = self._file[self._where(spec)]
        times = group["time"][start:stop].tolist()
        raw = group["value"][start:stop]
        values = stored_values(spec.dtype, list(raw) if raw.dtype.kind == "S" else raw.tolist())
        flags = None
        if spec.kind is ChannelKind.READING and "flags" in group:
            flags = [bytes(f).decode(errors="replace") for f in group["flags"][start:stop]]
        return times, values, flags

    def _where(self, spec: ChannelSpec) -> str:
        """The channel's group in this file: the layout's, else the naming rule's."""
        if spec.kind is ChannelKind.READING:
            where = self._layout["readings"].get(spec.device)
        elif spec.kind is ChannelKind.SCAN:
            where = self._layout["scan"].get(spec.name)
        else:
            where = self._layout["parameters"].get(spec.device, {}).get(spec.name)
        return str(where or spec.path)


_FRAME_SERIES = ("frame_number", "timestamp", "exposure_time")


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.require_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _series(group: h5py.Group, name: str, dtype: Any, chunk: int) -> h5py.Dataset:
    return group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(chunk,))


def _link(group: h5py.Group, name: str, dataset: h5py.Dataset) -> None:
    """A hard link to ``dataset`` in ``group``, with NeXus's ``@target`` (the original's path)
    so readers know the two are one field."""
    dataset.attrs["target"] = dataset.name
    group[name] = dataset


def _new_chunk_bytes(datasets: Sequence[h5py.Dataset], written: int, rows: int) -> int:
    chunk = int(datasets[0].chunks[0])
    new_chunks = -(-(written + rows) // chunk) - -(-written // chunk)
    return int(new_chunks * chunk * sum(d.dtype.itemsize for d in datasets))


def _write_values(group: h5py.Group, parameters: Mapping[str, Any]) -> None:
    """Each parameter's value at run start as a scalar dataset with its units."""
    name = NameAllocator()
    for parameter, snapshot in parameters.items():
        value = snapshot.get("value") if isinstance(snapshot, Mapping) else snapshot
        plain = json.loads(to_json(value))
        if plain is None:
            plain = math.nan
        elif isinstance(plain, list | dict):
            plain = to_json(plain)
        dataset = group.create_dataset(name(parameter), data=plain)
        if dataset.name.rsplit("/", 1)[-1] != parameter:
            dataset.attrs["long_name"] = parameter
        units = snapshot.get("units") if isinstance(snapshot, Mapping) else None
        if units:
            dataset.attrs["units"] = units


def _values(values: Iterable[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    if dtype.kind == "S":
        return np.array([_text(_as_text(v), dtype.itemsize) for v in values], dtype=dtype)
    if dtype.kind == "u":
        return np.array([bool(v) for v in values], dtype=dtype)
    return np.array([_as_number(v) for v in values], dtype=dtype)


def _as_text(value: Any) -> str:
    return str(value.value if isinstance(value, enum.Enum) else value)


def _as_number(value: Any) -> float | int:
    if isinstance(value, enum.Enum):
        value = value.value
    return value if isinstance(value, int | float) else math.nan


def _contiguous(pixels: npt.NDArray[np.uint16]) -> npt.NDArray[np.uint16]:
    return pixels if pixels.flags.c_contiguous else np.ascontiguousarray(pixels)


__all__ = [
    "DEFAULT_COMPRESSION",
    "END_RECORD",
    "LAYOUT",
    "ChannelKind",
    "ChannelSpec",
    "Column",
    "Compression",
    "FrameLayout",
    "FrameRecord",
    "NexusRunFile",
    "RunFileError",
    "ScanPlot",
    "end_record_bytes",
    "error_name",
    "file_error",
    "frames_path",
    "iso",
    "read_audit",
    "read_channel",
    "read_end_record",
    "read_layout",
    "read_manifest",
    "read_metadata",
    "read_scan_table",
    "reserve_path",
    "to_json",
]
