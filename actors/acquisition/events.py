"""What a running plan says: one event per point (and at its start, suspensions, its end), a
log any number of followers read at their own pace, and the scan's table as Arrow.

The log is a list the executor appends to (O(1), never waits) and followers index into, each
at its own position, all on the event loop's thread: a slow gRPC client or GUI falls behind in
the list, it never slows the plan and is never handed a partial view. The log keeps the last
``capacity`` events; a follower that falls further behind than that is told how many it missed
(a :class:`Gap`) and can fill them from the table.

The table keeps the points' columns as ``array('d')`` (8 bytes a value: a 10⁶-point, 8-column
scan is 64 MB, no Python float objects) and exports any row range as an Arrow IPC stream with
units in the fields' metadata.
"""

from __future__ import annotations

import io
import math
from array import array
from collections import deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import trio

EVENTS_KEPT = 100_000  # per plan


@dataclass(frozen=True, slots=True)
class Started:
    """The plan started: its run file, the table's columns and their units."""

    run_path: str
    columns: tuple[str, ...]
    units: Mapping[str, str]
    points_total: int  # 0: open-ended (a count bounded by a duration), else the most
    plan: Mapping[str, Any]  # Plan.describe()
    estimate: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Point:
    """One point: where the axes were, what the detectors read, the frames it took."""

    index: int
    positions: Mapping[str, float]
    readings: Mapping[str, float]
    flags: Mapping[str, tuple[str, ...]]  # only the readings that had flags
    frame_index: int  # where its first frame is in the run's detector data (-1: no frames)
    frames: int
    started: float  # Unix time the point began (its move)
    time: float  # Unix time its readings were taken
    attempts: int = 1  # > 1: a suspension made it repeat


@dataclass(frozen=True, slots=True)
class Suspended:
    suspender: str  # the suspender's label
    value: str
    point: int  # the point that will be repeated


@dataclass(frozen=True, slots=True)
class Resumed:
    suspender: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Paused:
    paused: bool  # False: resumed


@dataclass(frozen=True, slots=True)
class Ended:
    state: str  # completed, stopped, aborted, error
    reason: str
    points: int
    result: Mapping[str, Any]  # a tune's peak, an adaptive scan's count …


@dataclass(frozen=True, slots=True)
class Gap:
    """A follower fell further behind than the log keeps: ``missed`` events are gone from it
    (the points are still in the table)."""

    missed: int


Body = Started | Point | Suspended | Resumed | Paused | Ended | Gap


@dataclass(frozen=True, slots=True)
class PlanEvent:
    plan: str  # the plan's id
    seq: int  # 0, 1, 2, … per plan
    time: float  # Unix time
    body: Body


class EventLog:
    """A plan's events in order (the last ``capacity``), followed by any number of readers."""

    def __init__(self, plan: str, capacity: int = EVENTS_KEPT, first: int = 0) -> None:
        self.plan = plan
        self._events: deque[PlanEvent] = deque(maxlen=capacity)
        self._next = first  # > 0: the events before are gone (a plan restored from history)
        self._changed = trio.Event()
        self.closed = False

    @property
    def count(self) -> int:
        return self._next

    def append(self, body: Body, now: float) -> PlanEvent:
        event = PlanEvent(self.plan, self._next, now, body)
        self._events.append(event)
        self._next += 1
        self._wake()
        return event

    def close(self) -> None:
        """No more events (the plan ended): followers finish once they have read them all."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def follow(self, since: int = 0) -> AsyncGenerator[PlanEvent, None]:
        """Every event from ``since`` on, then new ones until the log closes. Leaving early:
        close it (``contextlib.aclosing``), as trio asks of every async generator."""
        while True:
            changed = self._changed
            first = self._events[0].seq if self._events else self._next
            if since < first:
                yield PlanEvent(self.plan, since, math.nan, Gap(first - since))
                since = first
            while since < self._next:
                event = self._events[since - self._events[0].seq]
                since += 1
                yield event
            if self.closed:
                return
            await changed.wait()


@dataclass
class Table:
    """The scan's table: one row per point, a float column per name."""

    columns: tuple[str, ...]
    units: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    _data: dict[str, array[float]] = field(default_factory=dict)
    rows: int = 0

    def __post_init__(self) -> None:
        self._data = {c: array("d") for c in self.columns}

    @property
    def cells(self) -> int:
        return self.rows * len(self.columns)

    def append(self, row: Mapping[str, float]) -> None:
        for column, values in self._data.items():
            values.append(float(row.get(column, math.nan)))
        self.rows += 1

    def column(self, name: str) -> list[float]:
        return self._data[name].tolist()

    def snapshot(self, start: int = 0, stop: int | None = None) -> TableSlice:
        """A copy of rows ``start`` … ``stop`` (on the event loop: one memcpy a column; the
        column arrays keep growing meanwhile, so nothing may hold a view of them)."""
        stop = self.rows if stop is None else max(0, min(stop, self.rows))
        start = max(0, min(start, stop))
        data = {}
        for name, values in self._data.items():
            with memoryview(values) as view:
                data[name] = np.array(view[start:stop], dtype=np.float64)
        return TableSlice(self.columns, dict(self.units), dict(self.metadata), data, start)

    def arrow(self, start: int = 0, stop: int | None = None) -> pa.Table:
        return self.snapshot(start, stop).arrow()

    def ipc(self, start: int = 0, stop: int | None = None) -> bytes:
        return self.snapshot(start, stop).ipc()


INTEGER_COLUMNS = frozenset({"point", "frames", "frame_index", "attempts"})


@dataclass(frozen=True, slots=True)
class TableSlice:
    """Rows copied out of a :class:`Table`: safe to turn into Arrow in a worker thread."""

    columns: tuple[str, ...]
    units: Mapping[str, str]
    metadata: Mapping[str, str]
    data: Mapping[str, np.ndarray[Any, Any]]
    start: int

    @property
    def rows(self) -> int:
        return len(self.data[self.columns[0]]) if self.columns else 0

    def arrow(self) -> pa.Table:
        fields = []
        arrays = []
        for name in self.columns:
            values = self.data[name]
            kind = pa.int64() if name in INTEGER_COLUMNS else None
            metadata = {"units": self.units[name]} if self.units.get(name) else None
            if kind is not None:
                column = pa.array(np.nan_to_num(values, nan=-1).astype(np.int64), type=kind)
            else:
                column = pa.array(values, type=pa.float64())
            fields.append(pa.field(name, column.type, metadata=metadata))
            arrays.append(column)
        schema = pa.schema(fields, metadata=dict(self.metadata))
        return pa.Table.from_arrays(arrays, schema=schema)

    def ipc(self) -> bytes:
        """The rows as an Arrow IPC stream (``pyarrow.ipc.open_stream``)."""
        table = self.arrow()
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue()


def file_columns(axes: Sequence[str], detectors: Sequence[str], frames: bool) -> tuple[str, ...]:
    """The run file's ``/entry/scan`` columns (each an NXlog: the row's time is its time)."""
    extra = ("frames", "frame_index") if frames else ()
    return ("point", *axes, *detectors, *extra, "attempts", "suspended_s")


def table_columns(file: Sequence[str]) -> tuple[str, ...]:
    """The Arrow table's columns: the file's, with the time of each point's readings."""
    return (file[0], "time", *file[1:])
