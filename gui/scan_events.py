"""A running scan as the daemon records it: its event stream, point by point.

The Scan service's ``StreamScanEvents`` (client: ``scan_events``) sends every event of a plan —
``started`` (columns, units, the plan), one ``point`` per point with the positions where the
axes arrived and the readings taken there, ``suspended`` / ``resumed``, ``paused``, ``ended``
(state, reason, a tune's peak) — and skips nothing for a slow client: it reads behind. So the
live plot shows exactly what the run file holds, not an impression of it.

:class:`ScanFollower` opens that stream and the scan's status (latest-only, for the progress
bar) on the connection's worker; events reach the Qt thread in batches (one hop per batch, not
per point: a fast scan makes thousands a second). :class:`ScanData` is what the plot draws from:
plain columns, built from the events with no Qt in it (tested on its own). Columns are
``array('d')``: 8 bytes a value, and numpy copies one with a memcpy for each redraw (a list of
10⁶ Python floats takes ~30 ms to convert; the array ~1 ms).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from client import AsyncBench, ScanEvent, ScanStatus

from .connection import Connection, Watch

#: Columns of the table that are neither axes nor readings.
BOOKKEEPING = {"point", "time", "attempts", "suspended_s", "frames", "frame_index"}


@dataclass(frozen=True, slots=True)
class Mark:
    """Something that happened between points: drawn on the plot where it happened."""

    kind: str  # "suspended", "resumed", "paused", "unpaused", "gap"
    after: int  # points recorded before it
    text: str


@dataclass
class ScanData:
    """The points of one scan so far, as columns."""

    scan_id: str
    kind: str = ""
    plan: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    points_total: int = 0
    run_path: str = ""
    axes: list[str] = field(default_factory=list)
    detectors: list[str] = field(default_factory=list)
    index: array[int] = field(default_factory=lambda: array("q"))
    times: array[float] = field(default_factory=lambda: array("d"))
    attempts: array[int] = field(default_factory=lambda: array("l"))
    positions: dict[str, array[float]] = field(default_factory=dict)
    readings: dict[str, array[float]] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)
    ended: ScanEvent | None = None
    last_seq: int = -1

    # -- the plan's shape ------------------------------------------------------------------

    @property
    def grid_dims(self) -> list[dict[str, Any]]:
        """A grid's axes (slowest first), from the plan the ``started`` event carries."""
        if self.kind != "grid":
            return []
        return [a for a in self.plan.get("axes", []) if isinstance(a, dict)]

    @property
    def is_image(self) -> bool:
        """A grid of two axes or more is drawn as an image of its two fastest axes."""
        return len(self.grid_dims) >= 2

    def grid_cell(self, index: int) -> tuple[int, ...]:
        """Point ``index``'s digit on each grid axis: the executor's order (``Grid.point``):
        axis k has made ``index // span_k`` passes; a snaking axis runs backwards on odd ones."""
        dims = self.grid_dims
        shape = [max(1, int(a.get("points", 1))) for a in dims]
        span = math.prod(shape)
        digits = []
        for axis, points in zip(dims, shape, strict=True):
            passes = index // span
            span //= points
            digit = (index // span) % points
            if axis.get("snake") and passes % 2:
                digit = points - 1 - digit
            digits.append(digit)
        return tuple(digits)

    @property
    def x_axis(self) -> str:
        """What a 1-D plot puts on x: the (first) axis, or time for a count."""
        return self.axes[0] if self.axes else "time"

    def x(self) -> array[float]:
        if self.axes and self.axes[0] in self.positions:
            return self.positions[self.axes[0]]
        if not self.times:
            return array("d")
        first = self.times[0]
        return array("d", (t - first for t in self.times))

    @property
    def detector(self) -> str:
        """The path's own detector (adaptive, tune), else the first reading."""
        named = self.plan.get("detector")
        if isinstance(named, str) and named:
            return named
        return self.detectors[0] if self.detectors else ""

    # -- events ----------------------------------------------------------------------------

    def add(self, events: Iterable[ScanEvent]) -> None:
        for event in events:
            if event.seq <= self.last_seq and event.kind != "gap":
                continue  # a stream reopened from an earlier point: seen already
            self.last_seq = max(self.last_seq, event.seq)
            match event.kind:
                case "started":
                    self._started(event)
                case "point":
                    self._point(event)
                case "suspended":
                    self.marks.append(
                        Mark(
                            "suspended",
                            len(self.index),
                            f"held: {event.suspender} ({event.value}); point {event.index}"
                            " will be taken again",
                        )
                    )
                case "resumed":
                    self.marks.append(
                        Mark(
                            "resumed",
                            len(self.index),
                            f"resumed after {event.seconds:.1f} s ({event.suspender})",
                        )
                    )
                case "paused":
                    kind = "paused" if event.paused else "unpaused"
                    self.marks.append(Mark(kind, len(self.index), kind.replace("un", "re")))
                case "ended":
                    self.ended = event
                case "gap":
                    self.marks.append(
                        Mark(
                            "gap",
                            len(self.index),
                            f"{event.missed} events no longer kept by the daemon (the table"
                            " has their points)",
                        )
                    )

    def _started(self, event: ScanEvent) -> None:
        self.plan = dict(event.plan)
        self.kind = str(self.plan.get("kind", self.kind))
        self.units = dict(event.units)
        self.points_total = event.points_total
        self.run_path = event.run_path
        axes = self.plan.get("axes")
        if isinstance(axes, list):
            self.axes = [str(a.get("axis", "")) for a in axes if isinstance(a, dict)]
        elif isinstance(self.plan.get("axis"), str):
            self.axes = [self.plan["axis"]]
        read = [str(r) for r in self.plan.get("read", []) if isinstance(r, str)]
        detector = self.plan.get("detector")
        if isinstance(detector, str) and detector and detector not in read:
            read.insert(0, detector)
        columns = [c for c in event.columns if c not in BOOKKEEPING and c not in self.axes]
        self.detectors = read + [c for c in columns if c not in read]

    def _point(self, event: ScanEvent) -> None:
        n = len(self.index)
        self.index.append(event.index)
        self.times.append(event.time)
        self.attempts.append(event.attempts)
        for axis, value in event.positions.items():
            if axis not in self.positions:
                self.positions[axis] = array("d", [math.nan]) * n
                if axis not in self.axes:
                    self.axes.append(axis)
            self.positions[axis].append(value)
        for name, value in event.readings.items():
            if name not in self.readings:
                self.readings[name] = array("d", [math.nan]) * n
                if name not in self.detectors:
                    self.detectors.append(name)
            self.readings[name].append(value)
        for column in (*self.positions.values(), *self.readings.values()):
            if len(column) < n + 1:  # this point had no value for it
                column.append(math.nan)


class ScanFollower:
    """Follows one scan: ``on_events(list[ScanEvent])`` with every event from the first,
    ``on_status(ScanStatus)`` with its status (latest-only); both on the Qt thread."""

    def __init__(self) -> None:
        self._watches: list[Watch] = []
        self.scan_id = ""

    def start(
        self,
        connection: Connection,
        scan_id: str,
        on_events: Callable[[list[ScanEvent]], None],
        on_status: Callable[[ScanStatus], None],
        *,
        failed: Callable[[BaseException], None] | None = None,
        status: bool = True,
    ) -> None:
        self.stop()
        self.scan_id = scan_id

        def events(bench: AsyncBench) -> Any:
            return bench.scan_events(scan_id)

        self._watches.append(
            connection.watch_batches(events, on_events, failed=failed, reopen=False)
        )
        if status:
            self._watches.append(
                connection.watch(
                    lambda b: b.stream_scan(scan_id),
                    on_status,
                    latest=True,
                    reopen=False,
                    failed=failed,
                )
            )

    def stop(self) -> None:
        for watch in self._watches:
            watch.cancel()
        self._watches.clear()
