"""What a run has made durable, told as it happens: the live source of its documents.

Why here, in the writer's path: a run's Bluesky documents (actors/documents) must describe
exactly what its file holds — a row a reader can open, a frame row that is really there. The
writer is the one place that knows what was written; a flush is the moment it becomes durable
(and readable by SWMR readers in other processes). So the :class:`RunWriter` hands a
:class:`RunFeed` what it wrote, and at each flush the feed tells the documents actor (by name,
``documents``) one :class:`RunCommitted` with everything that flush made durable. Reading the
file back in this process instead would race the writer (HDF5 shows this process its unflushed
writes, and a dataset resized but not yet filled).

Never slows acquisition: messages go with ``try_tell`` (no wait); a refusal (the documents
actor far behind, or down) is counted and carried in the next message (``lost``), so the live
document stream of that run says it is incomplete and the file stays the record — documents
rebuilt from it are always whole. A bench without a documents actor gets no feed at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime import ActorSystem, BenchError, Message, NotFoundError

from ..capabilities import Reading
from .nexus_file import ChannelSpec, FrameLayout, FrameRecord, stored_values

logger = logging.getLogger(__name__)

DOCUMENTS_NAME = "documents"  # the actor that turns runs into Bluesky documents


@dataclass(frozen=True, slots=True)
class FrameRows:
    """Frames made durable: rows ``first`` .. ``first + len(numbers)`` of the detector's data."""

    first: int
    numbers: tuple[int, ...]
    timestamps: tuple[float, ...]
    exposures: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ChannelRows:
    """Rows of one channel made durable, from row ``first`` on; values as the file holds them."""

    spec: ChannelSpec
    first: int
    times: tuple[float, ...]
    values: tuple[Any, ...]
    flags: tuple[str, ...] | None = None  # reading channels only


@dataclass(frozen=True, slots=True)
class RunOpened(Message):
    """A run's file was created: what its documents' start and descriptors are made of."""

    uid: str
    path: str
    name: str
    start_time: float
    manifest: Mapping[str, Any]
    channels: tuple[ChannelSpec, ...]
    layout: FrameLayout | None
    frames_dataset: str = ""  # the detector's data in the file ("" without frames)


@dataclass(frozen=True, slots=True)
class RunCommitted(Message):
    """What one flush made durable. ``lost``: messages of this run refused before this one."""

    uid: str
    frames: FrameRows | None
    channels: tuple[ChannelRows, ...]
    lost: int = 0


@dataclass(frozen=True, slots=True)
class RunClosed(Message):
    """The run ended: its end record as written (the file is closed)."""

    uid: str
    path: str
    end_record: Mapping[str, Any]
    lost: int = 0


@dataclass
class _Pending:
    frames_first: int = 0
    numbers: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    exposures: list[float] = field(default_factory=list)
    channels: dict[str, tuple[int, list[float], list[Any], list[str] | None]] = field(
        default_factory=dict
    )


class RunFeed:
    """The writer's side: collects what was written, tells it at each commit."""

    def __init__(self, system: ActorSystem, opened: RunOpened) -> None:
        self.system = system
        self.uid = opened.uid
        self.path = opened.path
        self.lost = 0
        self._specs = {spec.key: spec for spec in opened.channels}
        self._rows: dict[str, int] = {}
        self._frames = 0
        self._pending = _Pending()
        self._send(opened)

    @classmethod
    def open(cls, system: ActorSystem, opened: RunOpened) -> RunFeed | None:
        """A feed for the run, or None if the bench has no documents actor."""
        if DOCUMENTS_NAME not in system.names():
            return None
        return cls(system, opened)

    # -- what the writer wrote ----------------------------------------------------------------

    def frames_written(self, records: Sequence[FrameRecord]) -> None:
        pending = self._pending
        if not pending.numbers:
            pending.frames_first = self._frames
        for record in records:
            pending.numbers.append(int(record.frame_number))
            pending.timestamps.append(float(record.timestamp))
            pending.exposures.append(float(record.exposure_ms))
        self._frames += len(records)

    def rows_written(
        self,
        readings: Mapping[str, Sequence[Reading]],
        rows: Sequence[tuple[ChannelSpec, float, Any]],
    ) -> None:
        for device, items in readings.items():
            spec = self._specs.get(f"{device}/reading")
            if spec is None or not items:
                continue
            self._add(
                spec,
                [r.timestamp for r in items],
                [r.value for r in items],
                [",".join(r.flags) for r in items],
            )
        by_key: dict[str, tuple[ChannelSpec, list[float], list[Any]]] = {}
        for spec, when, value in rows:
            entry = by_key.setdefault(spec.key, (spec, [], []))
            entry[1].append(when)
            entry[2].append(value)
        for spec, times, values in by_key.values():
            self._add(spec, times, values, None)

    def _add(
        self, spec: ChannelSpec, times: list[float], values: list[Any], flags: list[str] | None
    ) -> None:
        first, old_times, old_values, old_flags = self._pending.channels.get(
            spec.key, (self._rows.get(spec.key, 0), [], [], [] if flags is not None else None)
        )
        old_times.extend(times)
        old_values.extend(stored_values(spec.dtype, values))
        if old_flags is not None and flags is not None:
            old_flags.extend(stored_values("str", flags))
        self._pending.channels[spec.key] = (first, old_times, old_values, old_flags)
        self._rows[spec.key] = self._rows.get(spec.key, 0) + len(times)

    # -- what became durable ------------------------------------------------------------------

    def committed(self) -> None:
        """Everything written so far is durable: tell it."""
        pending, self._pending = self._pending, _Pending()
        if not pending.numbers and not pending.channels:
            return
        frames = None
        if pending.numbers:
            frames = FrameRows(
                pending.frames_first,
                tuple(pending.numbers),
                tuple(pending.timestamps),
                tuple(pending.exposures),
            )
        channels = tuple(
            ChannelRows(
                self._specs[key],
                first,
                tuple(times),
                tuple(values),
                tuple(flags) if flags is not None else None,
            )
            for key, (first, times, values, flags) in pending.channels.items()
        )
        self._send(RunCommitted(self.uid, frames, channels, self.lost))

    def discard(self) -> None:
        """What was written since the last commit is not durable after all (the file was
        sealed in place): it is not told."""
        self._pending = _Pending()

    def closed(self, end_record: Mapping[str, Any]) -> None:
        self._send(RunClosed(self.uid, self.path, dict(end_record), self.lost))

    def _send(self, message: Message) -> None:
        try:
            sent = self.system.ref(DOCUMENTS_NAME).try_tell(message)
        except (BenchError, NotFoundError):
            sent = False
        if not sent:
            self.lost += 1
            if self.lost == 1 or (self.lost & (self.lost - 1)) == 0:
                logger.warning(
                    "run %s: the documents actor refused %d message(s); its live documents"
                    " are incomplete (the file is whole: GetRunDocuments rebuilds them)",
                    self.path,
                    self.lost,
                )
