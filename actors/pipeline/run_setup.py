"""Making a run's pieces: its file (with the manifest), and the sources that feed it.

Why apart from the recording loop: deciding what a run records — which camera, which
Readables, which parameters, which scan columns — and making its file are done once, before
anything is acquired, and may refuse (the file exists, the disk is full). The recorder does it
for StartRun; the acquisition executor does it for a plan; both then hand the pieces to
:func:`actors.pipeline.run.open_run`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from runtime import ActorSystem

from .disk_space import DiskGuard, FreeSpace, free_bytes
from .frame_source import FrameSource
from .manifest import DeviceRecord, build_manifest
from .nexus_file import (
    ChannelKind,
    ChannelSpec,
    Compression,
    FrameLayout,
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
    )
    scan = ScanTable(options.scan_columns)
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
    )
