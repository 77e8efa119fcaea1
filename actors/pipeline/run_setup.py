"""Making a run's pieces: its file (with the manifest), and the sources that feed it.

Why apart from the recording loop: deciding what a run records — which camera, which
Readables, which parameters, which scan columns — and making its file are done once, before
anything is acquired, and may refuse (the file exists, the disk is full). The recorder does it
for StartRun; the acquisition executor does it for a plan; both then hand the pieces to
:func:`actors.pipeline.run.open_run`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from runtime import ActorSystem, ParameterInfo, ValidationError

from ..capabilities import Capability
from .audit_trail import AuditTrail
from .disk_space import DiskGuard, FreeSpace, free_bytes
from .frame_source import FrameSource
from .manifest import DeviceRecord, build_manifest
from .nexus_file import (
    ChannelKind,
    ChannelSpec,
    Compression,
    FrameLayout,
    ScanPlot,
    frames_dataset_path,
    to_json,
)
from .parameter_watch import ParameterWatch
from .reading_source import ReadingSource
from .run_feed import RunFeed, RunOpened
from .run_writer import RunWriter, create_run_writer
from .scan_table import ScanTable


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
    #: What records the run, for the manifest (``run.recorded_by``): a plan's id, origin and
    #: description; empty for a plain StartRun.
    recorded_by: Mapping[str, Any] = field(default_factory=dict)
    #: Units of scan columns the bench cannot tell (a column that names a device or a
    #: ``device.parameter`` gets that one's units; see :func:`scan_units`).
    scan_units: Mapping[str, str] = field(default_factory=dict)
    #: The scan's default plot; None: a detector column against the axis columns (see
    #: :func:`scan_plot`).
    scan_plot: ScanPlot | None = None


@dataclass(frozen=True, slots=True)
class RunPieces:
    """What :func:`~actors.pipeline.run.open_run` composes. Every source is optional; the
    writer is not."""

    name: str
    writer: RunWriter
    frames: FrameSource | None = None
    readings: ReadingSource | None = None
    parameters: ParameterWatch | None = None
    scan: ScanTable | None = None
    audit: AuditTrail | None = None


def channel_kind(dtype: str) -> str:
    return dtype if dtype in ("float", "int", "bool") else "str"


def channels_of(devices: Mapping[str, DeviceRecord]) -> tuple[list[ChannelSpec], list[ChannelSpec]]:
    """The reading channels (one per Readable) and parameter channels (one per parameter)."""
    readings = [
        ChannelSpec(name, "reading", ChannelKind.READING, "float", r.info.units if r.info else "")
        for name, r in devices.items()
        if r.readable
    ]
    parameters = [
        ChannelSpec(name, p.name, ChannelKind.PARAMETER, channel_kind(p.dtype), p.units)
        for name, r in devices.items()
        for p in r.parameters
    ]
    return readings, parameters


#: Columns the acquisition executor adds to a scan's table, with their units.
BOOKKEEPING_UNITS = {
    "point": "1",
    "frames": "1",
    "frame_index": "1",
    "attempts": "1",
    "suspended_s": "s",
    "time": "s",
}


def _column_source(
    column: str, devices: Mapping[str, DeviceRecord]
) -> tuple[DeviceRecord, ParameterInfo | None] | None:
    """The device (and parameter) a scan column names: ``esp300.axis1`` (a device) or
    ``maitai.wavelength`` (a parameter of ``maitai``)."""
    record = devices.get(column)
    if record is not None:
        return record, None
    device, _, name = column.rpartition(".")
    record = devices.get(device)
    if record is None:
        return None
    parameter = next((p for p in record.parameters if p.name == name), None)
    return (record, parameter) if parameter is not None else None


def scan_units(
    columns: Sequence[str],
    devices: Mapping[str, DeviceRecord],
    given: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Each scan column's units: as ``given``, else the bookkeeping columns' (point, attempts,
    suspended_s...), else those of the device (its position's or reading's) or parameter the
    column names; "" where nothing says (the file then writes "1")."""
    units: dict[str, str] = {}
    for column in columns:
        if given and isinstance(given.get(column), str):
            units[column] = given[column][:64]
        elif column in BOOKKEEPING_UNITS:
            units[column] = BOOKKEEPING_UNITS[column]
        else:
            source = _column_source(column, devices)
            if source is None:
                units[column] = ""
            else:
                record, parameter = source
                if parameter is not None:
                    units[column] = parameter.units
                else:
                    units[column] = record.info.units if record.info else ""
    return units


def scan_plot(
    columns: Sequence[str],
    devices: Mapping[str, DeviceRecord],
    *,
    frames: bool,
    given: ScanPlot | None = None,
) -> ScanPlot | None:
    """A scan's default plot: ``given``, else the first column that names a Readable against
    the columns that name a Movable or a parameter (a count: against ``point``). A scan with
    no such detector plots its frames (None here) or, without frames, its first axis against
    ``point``; one with bookkeeping columns alone, a reading against time (None here).

    Error handling: ValidationError if ``given`` names a column that was not declared."""
    if not columns:
        return None
    if given is not None:
        unknown = [c for c in (given.signal, *given.axes) if c not in columns]
        if unknown or given.signal in given.axes:
            raise ValidationError(
                f"the scan plot must name distinct declared columns; {unknown[:5] or given.signal}"
                f" is not one (declared: {', '.join(columns[:20])})"
            )
        return given
    axes: list[str] = []
    detectors: list[str] = []
    for column in columns:
        source = _column_source(column, devices)
        if source is None:
            continue
        record, parameter = source
        capabilities = record.info.capabilities if record.info else ()
        if parameter is not None or Capability.MOVABLE in capabilities:
            axes.append(column)
        elif record.readable:
            detectors.append(column)
    point = ("point",) if "point" in columns else ()
    if detectors:
        return ScanPlot(detectors[0], tuple(axes) or point)
    if frames:
        return None
    if axes:
        return ScanPlot(axes[0], point)
    # the executor's bookkeeping (attempts, frame_index…) is no plot: a recording without a
    # detector or frames plots its first reading against time instead (None here)
    others = [c for c in columns if c not in BOOKKEEPING_UNITS]
    return ScanPlot(others[0], point) if others else None


async def create_run(
    system: ActorSystem,
    options: RunOptions,
    *,
    path: Path,
    start_time: float,
    devices: Mapping[str, DeviceRecord],
    layout: FrameLayout | None,
    config_text: str = "",
    config_source: str = "",
    free_space: FreeSpace = free_bytes,
) -> RunPieces:
    """Create the run's files and its sources (not yet attached: open_run does that).

    ``devices`` is :func:`~actors.pipeline.manifest.survey`'s answer: what the manifest says
    and what is recorded (every Readable's readings, every parameter's changes).

    Error handling: FileExistsError, DiskFull, or the OSError that stopped the creation; on
    any of them nothing is left on disk.
    """
    manifest = build_manifest(
        run_name=options.name,
        metadata=options.metadata,
        devices=devices,
        config_text=config_text,
        config_source=config_source,
        start_time=start_time,
        options={
            "frames": options.frames,
            "duration": options.duration,
            "compression": options.compression.value,
            "camera": options.camera,
            "frame_queue": options.frame_queue,
            "flush_interval": options.flush_interval,
        },
        recorded_by=options.recorded_by,
    )
    columns = options.scan_columns
    scan = ScanTable(columns, scan_units(columns, devices, options.scan_units))
    plot = scan_plot(columns, devices, frames=layout is not None, given=options.scan_plot)
    reading_channels, parameter_channels = channels_of(devices)
    guard = DiskGuard(options.directory, options.min_free_bytes, free_space)
    writer = await trio.to_thread.run_sync(
        lambda: create_run_writer(
            path,
            guard=guard,
            title=options.name,
            start_time=start_time,
            manifest=manifest,
            metadata=options.metadata,
            devices={n: r.snapshot for n, r in devices.items()},
            layout=layout,
            channels=[*reading_channels, *parameter_channels, *scan.specs],
            plot=plot,
        )
    )
    channels = (*reading_channels, *parameter_channels, *scan.specs)
    writer.feed = RunFeed.open(
        system,
        RunOpened(
            uid=str(manifest["run"]["uid"]),
            path=str(path),
            name=options.name,
            start_time=start_time,
            manifest=json.loads(to_json(manifest)),  # as the file has it: live = rebuilt
            channels=channels,
            layout=layout,
            frames_dataset=frames_dataset_path(layout.detector) if layout else "",
        ),
    )
    tap = f"run:{options.name}"
    frames = None
    if options.camera is not None and layout is not None:
        frames = FrameSource(
            system, options.camera, tap=tap, capacity=options.frame_queue, acquire=options.frames
        )
    return RunPieces(
        name=options.name,
        writer=writer,
        frames=frames,
        readings=ReadingSource(system, [c.device for c in reading_channels], tap=tap),
        parameters=ParameterWatch(system, parameter_channels),
        scan=scan,
        audit=AuditTrail(),
    )
