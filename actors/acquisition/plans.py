"""Plans: where to go and what to measure, as pure immutable data.

A :class:`Plan` is a *path* (count, line, list, grid, adaptive, tune) plus what to measure at
each point (readables, frames), timing (settle, dwell) and the run's name and metadata. It does
no I/O and knows no actor, so the same object comes from a script, the Scan service, the CLI or
a test, goes into the run's manifest (:meth:`Plan.describe`) and is checked by one validator.

Points are generated lazily: a path answers ``point(i)`` by arithmetic (a 10⁶-point grid is
never materialised) or, for the paths that depend on what was measured (adaptive), through a
:class:`Cursor` the executor feeds with each point's readings.

Positions are in the axis's own units. A *relative* path is offset by the axes' positions when
the plan starts (its ``origin``) and the executor moves the axes back there at the end, like
Bluesky's ``rel_scan``.

Error handling: nothing here raises for a bad value; :meth:`Plan.problems` lists what is wrong
with the plan's own numbers (counts, finite values, distinct axes), and the validator adds what
is wrong against the bench (devices, limits, disk).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from .problems import MAX_JSON_DEPTH, Problem, finite, json_depth, quote, whole
from .suspenders import Suspender

MAX_POINTS = 1_000_000  # in one plan (a grid: all axes multiplied)
MAX_AXES = 8
MAX_READ = 64
MAX_SETTINGS = 64
MAX_SUSPENDERS = 16
MAX_FRAMES = 100_000_000  # per point (one camera sequence: a recording's frames are one point)
MAX_SECONDS = 7 * 86400.0  # settle, dwell, interval
MAX_DURATION = 30 * 86400.0  # a count's duration (a recording may run for weeks)
MAX_METADATA = 1024 * 1024  # bytes of metadata JSON (a script's run carries its text)
MAX_NAME = 256  # characters of a device or parameter name

Targets = tuple[float, ...]
Readings = Mapping[str, float]


class Cursor(Protocol):
    """The points of a path, one at a time; ``readings`` are the last point's (None first)."""

    def next(self, readings: Readings | None) -> Targets | None: ...


class _Indexed:
    """A cursor over a path that computes ``point(i)`` by arithmetic."""

    def __init__(self, path: Any, origin: Targets, total: int) -> None:
        self._path = path
        self._origin = origin
        self._total = total
        self._index = 0

    def next(self, readings: Readings | None) -> Targets | None:
        if self._index >= self._total:
            return None
        point: Targets = self._path.point(self._index, self._origin)
        self._index += 1
        return point


def _span(start: float, stop: float, points: int, index: int) -> float:
    if points == 1:
        return start
    return start + (stop - start) * index / (points - 1)


def _number(
    value: object,
    where: str,
    problems: list[Problem],
    low: float = -math.inf,
    high: float = math.inf,
) -> None:
    if not finite(value) or not low <= value <= high:  # type: ignore[operator]
        allowed = "a finite number" if math.isinf(low) else f"a number {low:g} … {high:g}"
        problems.append(Problem(where, f"{quote(value)} is not allowed; expected {allowed}"))


def _count(value: object, where: str, problems: list[Problem], low: int, high: int) -> None:
    if not whole(value, low, high):
        problems.append(Problem(where, f"{quote(value)} is not allowed; expected {low} … {high}"))


def _axis_name(value: object, where: str, problems: list[Problem]) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        problems.append(Problem(where, f"{quote(value)} is not a device name"))


def _distinct(axes: Sequence[str], where: str, problems: list[Problem]) -> None:
    seen = set()
    for axis in axes:
        if axis in seen:
            problems.append(Problem(where, f"{axis} appears twice; each axis once", axis))
        seen.add(axis)


# -- paths ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Count:
    """A time series at fixed positions: ``num`` points (0: no limit, then ``duration`` ends
    it), point ``i`` starting ``i * interval`` s after the first (0: back to back). The
    duration is wall time from the first point: when it has passed the count ends, cutting
    the point in progress (its frames are stopped where they are).

    A *recording* is a count with monitors whose points take nothing (no read, no frames):
    its one point lasts the duration (0: until stopped) while the run records the bench's
    streams — ``record`` is that, or one point of ``frames`` frames."""

    num: int = 1
    interval: float = 0.0
    duration: float = 0.0  # > 0: end after this long (with num, whichever comes first)
    kind: ClassVar[str] = "count"
    relative: ClassVar[bool] = False

    @property
    def axes(self) -> tuple[str, ...]:
        return ()

    @property
    def detector(self) -> str:
        return ""

    def total(self) -> int | None:
        """Points the plan takes, None if only the duration bounds it."""
        return self.num if self.num else None

    def extents(self, origin: Targets) -> dict[str, tuple[float, float]]:
        return {}

    def cursor(self, origin: Targets) -> Cursor:
        return _Indexed(self, origin, self.num if self.num else 2**62)

    def point(self, index: int, origin: Targets) -> Targets:
        return ()

    def problems(self, where: str) -> list[Problem]:
        found: list[Problem] = []
        _count(self.num, f"{where}.num", found, 0, MAX_POINTS)
        _number(self.interval, f"{where}.interval", found, 0.0, MAX_SECONDS)
        _number(self.duration, f"{where}.duration", found, 0.0, MAX_DURATION)
        if self.num == 0 and not (finite(self.duration) and self.duration > 0):
            found.append(Problem(f"{where}.num", "0 (no limit) needs a duration > 0 s"))
        return found

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "num": self.num,
            "interval": self.interval,
            "duration": self.duration,
        }


@dataclass(frozen=True, slots=True)
class Span:
    """One axis of a line: from ``start`` to ``stop`` (offsets when the line is relative)."""

    axis: str
    start: float
    stop: float


@dataclass(frozen=True, slots=True)
class Line:
    """``points`` evenly spaced positions from start to stop, every axis in step (Bluesky's
    ``scan``; ``relative``: ``rel_scan``, returning to the start afterwards)."""

    spans: tuple[Span, ...]
    points: int
    relative: bool = False
    kind: ClassVar[str] = "line"

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(s.axis for s in self.spans)

    @property
    def detector(self) -> str:
        return ""

    def total(self) -> int:
        return self.points

    def point(self, index: int, origin: Targets) -> Targets:
        if len(self.spans) == 1:  # the common case, on every point's path: no generator
            span = self.spans[0]
            return (origin[0] + _span(span.start, span.stop, self.points, index),)
        return tuple(
            o + _span(s.start, s.stop, self.points, index)
            for s, o in zip(self.spans, origin, strict=True)
        )

    def extents(self, origin: Targets) -> dict[str, tuple[float, float]]:
        return {
            s.axis: (o + min(s.start, s.stop), o + max(s.start, s.stop))
            for s, o in zip(self.spans, origin, strict=True)
        }

    def cursor(self, origin: Targets) -> Cursor:
        return _Indexed(self, origin, self.points)

    def problems(self, where: str) -> list[Problem]:
        found: list[Problem] = []
        if not 1 <= len(self.spans) <= MAX_AXES:
            found.append(Problem(f"{where}.axes", f"1 … {MAX_AXES} axes, got {len(self.spans)}"))
        for i, span in enumerate(self.spans[:MAX_AXES]):
            _axis_name(span.axis, f"{where}.axes[{i}].axis", found)
            _number(span.start, f"{where}.axes[{i}].start", found)
            _number(span.stop, f"{where}.axes[{i}].stop", found)
        _distinct(self.axes, f"{where}.axes", found)
        _count(self.points, f"{where}.points", found, 1, MAX_POINTS)
        return found

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "axes": [{"axis": s.axis, "start": s.start, "stop": s.stop} for s in self.spans],
            "points": self.points,
            "relative": self.relative,
        }


@dataclass(frozen=True, slots=True)
class ListScan:
    """Explicit positions: ``positions[k]`` are axis ``axes[k]``'s, all of one length, the
    axes in step (Bluesky's ``list_scan``)."""

    axes: tuple[str, ...]
    positions: tuple[tuple[float, ...], ...]
    relative: bool = False
    kind: ClassVar[str] = "list"

    @property
    def detector(self) -> str:
        return ""

    def total(self) -> int:
        return len(self.positions[0]) if self.positions else 0

    def point(self, index: int, origin: Targets) -> Targets:
        return tuple(o + p[index] for p, o in zip(self.positions, origin, strict=True))

    def extents(self, origin: Targets) -> dict[str, tuple[float, float]]:
        return {
            axis: (o + min(p), o + max(p))
            for axis, p, o in zip(self.axes, self.positions, origin, strict=True)
            if p
        }

    def cursor(self, origin: Targets) -> Cursor:
        return _Indexed(self, origin, self.total())

    def problems(self, where: str) -> list[Problem]:
        found: list[Problem] = []
        if not 1 <= len(self.axes) <= MAX_AXES:
            found.append(Problem(f"{where}.axes", f"1 … {MAX_AXES} axes, got {len(self.axes)}"))
        if len(self.positions) != len(self.axes):
            found.append(
                Problem(
                    f"{where}.axes",
                    "each axis needs its list of positions"
                    f" ({len(self.axes)} axes, {len(self.positions)} lists)",
                )
            )
            return found
        for i, axis in enumerate(self.axes[:MAX_AXES]):
            _axis_name(axis, f"{where}.axes[{i}].axis", found)
        _distinct(self.axes, f"{where}.axes", found)
        lengths = {len(p) for p in self.positions}
        if len(lengths) > 1:
            found.append(Problem(f"{where}.axes", f"the lists differ in length: {sorted(lengths)}"))
        total = self.total()
        if not 1 <= total <= MAX_POINTS:
            found.append(Problem(f"{where}.positions", f"1 … {MAX_POINTS} points, got {total}"))
        for i, positions in enumerate(self.positions[:MAX_AXES]):
            bad = next((v for v in positions if not finite(v)), None)
            if bad is not None:
                found.append(
                    Problem(f"{where}.axes[{i}].positions", f"{quote(bad)} is not a finite number")
                )
        return found

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "axes": [
                {"axis": a, "positions": list(p)}
                for a, p in zip(self.axes, self.positions, strict=True)
            ],
            "relative": self.relative,
        }


@dataclass(frozen=True, slots=True)
class GridAxis:
    """One dimension of a grid; ``snake``: this axis runs backwards on every other pass of
    the axes slower than it, so it never flies back (not on the slowest axis: one pass)."""

    axis: str
    start: float
    stop: float
    points: int
    snake: bool = False


@dataclass(frozen=True, slots=True)
class Grid:
    """Every combination of the axes' positions, ``axes[0]`` slowest, the last fastest
    (Bluesky's ``grid_scan``, snake per axis)."""

    dims: tuple[GridAxis, ...]
    relative: bool = False
    kind: ClassVar[str] = "grid"

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(a.axis for a in self.dims)

    @property
    def detector(self) -> str:
        return ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.points for a in self.dims)

    def total(self) -> int:
        return math.prod(self.shape)

    def point(self, index: int, origin: Targets) -> Targets:
        """The ``index``-th point in time order. Axis k has completed ``index // span_k``
        passes (span_k: points of axis k and the faster ones); a snaking axis runs backwards
        on odd passes."""
        targets = []
        span = self.total()
        for grid_axis, o in zip(self.dims, origin, strict=True):
            passes = index // span
            span //= grid_axis.points
            digit = (index // span) % grid_axis.points
            if grid_axis.snake and passes % 2:
                digit = grid_axis.points - 1 - digit
            targets.append(o + _span(grid_axis.start, grid_axis.stop, grid_axis.points, digit))
        return tuple(targets)

    def extents(self, origin: Targets) -> dict[str, tuple[float, float]]:
        return {
            a.axis: (o + min(a.start, a.stop), o + max(a.start, a.stop))
            for a, o in zip(self.dims, origin, strict=True)
        }

    def cursor(self, origin: Targets) -> Cursor:
        return _Indexed(self, origin, self.total())

    def problems(self, where: str) -> list[Problem]:
        found: list[Problem] = []
        if not 1 <= len(self.dims) <= MAX_AXES:
            found.append(Problem(f"{where}.axes", f"1 … {MAX_AXES} axes, got {len(self.dims)}"))
        for i, a in enumerate(self.dims[:MAX_AXES]):
            _axis_name(a.axis, f"{where}.axes[{i}].axis", found)
            _number(a.start, f"{where}.axes[{i}].start", found)
            _number(a.stop, f"{where}.axes[{i}].stop", found)
            _count(a.points, f"{where}.axes[{i}].points", found, 1, MAX_POINTS)
        if self.dims and self.dims[0].snake:
            found.append(
                Problem(
                    f"{where}.axes[0].snake",
                    "the slowest axis makes one pass; snake applies to the faster axes",
                )
            )
        _distinct(self.axes, f"{where}.axes", found)
        if not found and self.total() > MAX_POINTS:
            found.append(
                Problem(
                    f"{where}.axes",
                    f"at most {MAX_POINTS} points in all, got"
                    f" {' x '.join(map(str, self.shape))} = {self.total()}",
                )
            )
        return found

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "axes": [
                {
                    "axis": a.axis,
                    "start": a.start,
                    "stop": a.stop,
                    "points": a.points,
                    "snake": a.snake,
                }
                for a in self.dims
            ],
            "relative": self.relative,
        }


@dataclass(frozen=True, slots=True)
class Adaptive:
    """A 1-D scan whose step follows the signal: it shrinks where ``detector`` changes by more
    than ``target_delta`` between points and grows where it is flat, within ``min_step`` …
    ``max_step``; it ends at ``stop`` or after ``max_points`` (Bluesky's ``adaptive_scan``,
    without the back-steps that make the positions non-monotonic)."""

    axis: str
    start: float
    stop: float
    detector: str
    target_delta: float
    min_step: float
    max_step: float
    max_points: int = 0  # 0: as many as min_step allows
    relative: bool = False
    kind: ClassVar[str] = "adaptive"

    @property
    def axes(self) -> tuple[str, ...]:
        return (self.axis,)

    def total(self) -> int:
        """The most points it can take."""
        if not (finite(self.min_step) and self.min_step > 0):
            return 0
        steps = abs(self.stop - self.start) / self.min_step
        if not math.isfinite(steps):  # a span of 1e300 over a step of 1e-300
            return self.max_points or MAX_POINTS + 1
        bound = math.floor(steps) + 2
        return min(bound, self.max_points) if self.max_points else bound

    def _most_points(self) -> str:
        steps = abs(self.stop - self.start) / self.min_step
        return str(self.total()) if math.isfinite(steps) else f"more than {MAX_POINTS}"

    def extents(self, origin: Targets) -> dict[str, tuple[float, float]]:
        (o,) = origin
        return {self.axis: (o + min(self.start, self.stop), o + max(self.start, self.stop))}

    def cursor(self, origin: Targets) -> Cursor:
        return _AdaptiveCursor(self, origin[0])

    def problems(self, where: str) -> list[Problem]:
        found: list[Problem] = []
        _axis_name(self.axis, f"{where}.axis", found)
        _axis_name(self.detector, f"{where}.detector", found)
        _number(self.start, f"{where}.start", found)
        _number(self.stop, f"{where}.stop", found)
        _number(self.target_delta, f"{where}.target_delta", found, 1e-300, math.inf)
        _number(self.min_step, f"{where}.min_step", found, 1e-300, math.inf)
        _number(self.max_step, f"{where}.max_step", found, 1e-300, math.inf)
        _count(self.max_points, f"{where}.max_points", found, 0, MAX_POINTS)
        if not found and self.min_step > self.max_step:
            found.append(
                Problem(
                    f"{where}.min_step", f"{self.min_step:g} is above max_step {self.max_step:g}"
                )
            )
        if not found and self.total() > MAX_POINTS:
            found.append(
                Problem(
                    f"{where}.min_step",
                    f"{self.min_step:g} allows {self._most_points()} points;"
                    f" at most {MAX_POINTS} (raise min_step or set max_points)",
                )
            )
        return found

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "axis": self.axis,
            "start": self.start,
            "stop": self.stop,
            "detector": self.detector,
            "target_delta": self.target_delta,
            "min_step": self.min_step,
            "max_step": self.max_step,
            "max_points": self.max_points,
            "relative": self.relative,
        }


class _AdaptiveCursor:
    """Step control: after each point, the step is scaled by ``target_delta / |Δy|`` (at
    most x2, at least x1/4, so one noisy point cannot throw it), then held within the bounds."""

    def __init__(self, plan: Adaptive, origin: float) -> None:
        self._plan = plan
        self._start = origin + plan.start
        self._stop = origin + plan.stop
        self._direction = 1.0 if self._stop >= self._start else -1.0
        self._step = plan.min_step
        self._x: float | None = None
        self._last: float | None = None
        self._taken = 0

    def next(self, readings: Readings | None) -> Targets | None:
        plan = self._plan
        if plan.max_points and self._taken >= plan.max_points:
            return None
        if self._x is None:
            self._x = self._start
        else:
            value = (readings or {}).get(plan.detector, math.nan)
            if self._last is not None and math.isfinite(value) and math.isfinite(self._last):
                change = abs(value - self._last)
                factor = plan.target_delta / change if change > 0 else 2.0
                self._step *= min(2.0, max(0.25, factor))
            self._step = min(plan.max_step, max(plan.min_step, self._step))
            if math.isfinite(value):
                self._last = value
            remaining = (self._stop - self._x) * self._direction
            if remaining <= 1e-12 * max(1.0, abs(self._stop)):
                return None
            self._x = (
                self._stop if self._step >= remaining else self._x + self._direction * self._step
            )
        self._taken += 1
        return (self._x,)


class TuneMethod(enum.StrEnum):
    CENTROID = "centroid"  # the signal-weighted mean position above half maximum
    GAUSSIAN = "gaussian"  # a least-squares gaussian + background fit
    MAXIMUM = "maximum"  # the position of the highest reading


@dataclass(frozen=True, slots=True)
class Tune:
    """A line over ``axis`` reading ``detector``, then the peak's centre by ``method``; with
    ``move``, the axis goes there (no peak found: it goes back to where it started)."""

    axis: str
    start: float
    stop: float
    points: int
    detector: str
    method: TuneMethod = TuneMethod.CENTROID
    relative: bool = False
    move: bool = True
    kind: ClassVar[str] = "tune"

    @property
    def axes(self) -> tuple[str, ...]:
        return (self.axis,)

    def total(self) -> int:
        return self.points

    def point(self, index: int, origin: Targets) -> Targets:
        return (origin[0] + _span(self.start, self.stop, self.points, index),)

    def extents(self, origin: Targets) -> dict[str, tuple[float, float]]:
        (o,) = origin
        return {self.axis: (o + min(self.start, self.stop), o + max(self.start, self.stop))}

    def cursor(self, origin: Targets) -> Cursor:
        return _Indexed(self, origin, self.points)

    def problems(self, where: str) -> list[Problem]:
        found: list[Problem] = []
        _axis_name(self.axis, f"{where}.axis", found)
        _axis_name(self.detector, f"{where}.detector", found)
        _number(self.start, f"{where}.start", found)
        _number(self.stop, f"{where}.stop", found)
        _count(self.points, f"{where}.points", found, 3, MAX_POINTS)
        if not isinstance(self.method, TuneMethod):
            allowed = ", ".join(m.value for m in TuneMethod)
            found.append(Problem(f"{where}.method", f"{quote(self.method)}; one of {allowed}"))
        return found

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "axis": self.axis,
            "start": self.start,
            "stop": self.stop,
            "points": self.points,
            "detector": self.detector,
            "method": str(self.method),
            "relative": self.relative,
            "move": self.move,
        }


PlanPath = Count | Line | ListScan | Grid | Adaptive | Tune


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """A parameter set before the first point (``"maitai.wavelength"``, 800)."""

    parameter: str
    value: bool | int | float | str


@dataclass(frozen=True, slots=True)
class Plan:
    """A path and what to do at each of its points; one run.

    Per point: move every axis (concurrently) and wait until settled -> ``settle`` s -> read
    every ``read`` device (concurrently) -> take ``frames`` frames from ``camera`` (the bench's
    first camera if "") -> the event -> ``dwell`` s.
    """

    path: PlanPath
    read: tuple[str, ...] = ()
    frames: int = 0
    camera: str = ""
    settle: float = 0.0
    dwell: float = 0.0
    name: str = ""  # the run's name; "" -> the path's kind
    metadata_json: str = "{}"
    parameters: tuple[Setting, ...] = ()
    suspenders: tuple[Suspender, ...] = ()
    bench_suspenders: bool = True  # also the bench's default suspenders (config)
    #: Record the bench's streams for the plan's whole length (Bluesky's monitors): every
    #: Readable's readings (one that streams only on request, the power meter's ``streaming``,
    #: is switched on for the plan and back off after) and, if ``camera`` is named, its frames
    #: whoever takes them (a live view, a user's sequence, a Bluesky trigger).
    monitor: bool = False
    #: The camera (``camera``, or the bench's first) acquires continuously while the plan runs,
    #: every frame in the run; the points take no frames of their own (``frames`` = 0).
    live: bool = False
    compression: str = ""  # the run's frames: "none", "bitshuffle-lz4"; "": the recorder's

    @property
    def kind(self) -> str:
        return self.path.kind

    @property
    def axes(self) -> tuple[str, ...]:
        return self.path.axes

    @property
    def detectors(self) -> tuple[str, ...]:
        """What is read at each point: ``read``, plus the path's detector (adaptive, tune)."""
        detector = self.path.detector
        if detector and detector not in self.read:
            return (*self.read, detector)
        return self.read

    @property
    def run_name(self) -> str:
        return self.name or self.path.kind

    @property
    def metadata(self) -> dict[str, Any]:
        value = json.loads(self.metadata_json or "{}")
        return value if isinstance(value, dict) else {}

    def total(self) -> int | None:
        return self.path.total()

    @property
    def recording(self) -> bool:
        """A count with monitors whose points take nothing: one point that lasts the count's
        duration (0: until stopped) while the run records the bench's streams."""
        return self.monitor and self.kind == "count" and not self.detectors and not self.frames

    @property
    def takes_frames(self) -> bool:
        """Its run records a camera: frames at the points, live, or a monitored camera."""
        return bool(self.frames) or self.live or (self.monitor and bool(self.camera))

    def problems(self) -> list[Problem]:
        """What is wrong with the plan's own values (the validator adds the bench's view)."""
        found = self.path.problems("path")
        if len(self.read) > MAX_READ:
            found.append(Problem("read", f"at most {MAX_READ} devices, got {len(self.read)}"))
        for i, device in enumerate(self.read[:MAX_READ]):
            _axis_name(device, f"read[{i}]", found)
        _distinct(self.read, "read", found)
        _count(self.frames, "frames", found, 0, MAX_FRAMES)
        _number(self.settle, "settle", found, 0.0, MAX_SECONDS)
        _number(self.dwell, "dwell", found, 0.0, MAX_SECONDS)
        if len(self.metadata_json.encode()) > MAX_METADATA:
            found.append(Problem("metadata", f"at most {MAX_METADATA} bytes of JSON"))
        elif json_depth(self.metadata_json) > MAX_JSON_DEPTH:
            found.append(Problem("metadata", f"nested more than {MAX_JSON_DEPTH} levels deep"))
        else:
            try:
                if not isinstance(json.loads(self.metadata_json or "{}"), dict):
                    found.append(Problem("metadata", "must be a JSON object"))
            except ValueError as error:
                found.append(Problem("metadata", f"not valid JSON ({error})"))
        if len(self.parameters) > MAX_SETTINGS:
            found.append(Problem("parameters", f"at most {MAX_SETTINGS} settings"))
        if len(self.suspenders) > MAX_SUSPENDERS:
            found.append(Problem("suspenders", f"at most {MAX_SUSPENDERS} suspenders"))
        for i, suspender in enumerate(self.suspenders[:MAX_SUSPENDERS]):
            found.extend(suspender.problems(f"suspenders[{i}]"))
        overlap = set(self.axes) & set(self.detectors)
        for device in sorted(overlap):
            found.append(Problem("read", f"{device} is an axis of this plan, not a detector"))
        for flag in ("monitor", "live"):
            if not isinstance(getattr(self, flag), bool):
                found.append(Problem(flag, f"{quote(getattr(self, flag))}; expected true or false"))
        if self.live and self.frames:
            found.append(
                Problem(
                    "live",
                    "a live camera records every frame; the points take none of their own"
                    " (frames = 0)",
                )
            )
        if not isinstance(self.compression, str) or len(self.compression) > 32:
            found.append(Problem("compression", f"{quote(self.compression)} is not a name"))
        path = self.path
        if isinstance(path, Count) and not self.detectors and not self.frames:
            if self.monitor and path.num > 1:
                found.append(
                    Problem(
                        "path.num",
                        f"{path.num}: a recording (monitor, nothing read or taken at its"
                        " points) is one point that lasts the duration; use num = 1",
                    )
                )
            elif not self.monitor and path.num == 0 and not path.interval:
                found.append(
                    Problem(
                        "path.num",
                        "0 (until the duration) with nothing read or taken at the points and"
                        " no interval would only spin: read a device, take frames, set an"
                        " interval, or monitor the bench for the duration",
                    )
                )
        return found

    def describe(self) -> dict[str, Any]:
        """The plan as JSON-able data, for the run's manifest and for clients."""
        return {
            **self.path.describe(),
            "read": list(self.read),
            "frames": self.frames,
            "camera": self.camera,
            "settle": self.settle,
            "dwell": self.dwell,
            "name": self.run_name,
            "parameters": {s.parameter: s.value for s in self.parameters},
            "suspenders": [s.describe() for s in self.suspenders],
            "bench_suspenders": self.bench_suspenders,
            "monitor": self.monitor,
            "live": self.live,
            "compression": self.compression,
        }


def points(plan: Plan, origin: Targets | None = None) -> Iterator[Targets]:
    """The targets of a plan that needs no feedback, lazily (for tests and previews)."""
    cursor = plan.path.cursor(origin if origin is not None else (0.0,) * len(plan.axes))
    while (target := cursor.next(None)) is not None:
        yield target
