"""The one validator: a plan against the bench as it is, every problem at once, nothing moved.

Two halves. :func:`survey` asks the bench what the plan touches (what each device is and can
do, its parameters — a Movable's travel is its ``position`` parameter's limits, as the drivers
expose what they read from the controller —, the axes' positions for a relative plan, the
camera's frame size and exposure, free disk space) and returns a :class:`BenchView`, plain data.
:func:`check` is pure: plan + view -> :class:`Checked` (the plan with its signals and axes
resolved, and estimates) or :class:`PlanRejected` listing every problem, each naming the device,
the value and what is allowed. Scripts, the Scan service and ``benchctl`` all reach it through
the executor, which checks again right before it moves anything (the bench may have changed
since a scan was created).
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from runtime import (
    ActorError,
    ActorState,
    ActorSystem,
    BenchError,
    GetParameter,
    ListParameters,
    ParameterInfo,
    ParameterSnapshot,
)

from ..capabilities import (
    AcquisitionStatus,
    Capability,
    Describe,
    DeviceInfo,
    FrameGeometry,
    GetAcquisitionStatus,
    GetFrameGeometry,
    GetPosition,
)
from ..pipeline.nexus_file import Compression
from ..pipeline.recorder import RECORDER_NAME, RUN_NAME, RUN_NAME_RULE
from .plans import Count, Plan, Setting
from .problems import PlanRejected, Problem, quote
from .suspenders import Resolved, Suspender, resolve_signal

MB = 1024 * 1024
ROW_BYTES = 16  # a scan-table cell in the file: time + value
POINT_OVERHEAD_S = 0.001  # a guess at the actor round trips of one point, for the estimate
SURVEY_TIMEOUT = 2.0
DISK = "disk"  # the field of the problem "not enough free disk for the run"


class AxisKind(enum.StrEnum):
    MOVABLE = "movable"  # MoveAbsolute / GetPosition
    PARAMETER = "parameter"  # a writable numeric parameter ("maitai.wavelength")


@dataclass(frozen=True, slots=True)
class Axis:
    name: str  # as the plan names it
    kind: AxisKind
    device: str
    parameter: str = ""  # for a parameter axis
    units: str = ""
    limits: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class DeviceView:
    name: str
    info: DeviceInfo | None  # None: an actor that is not a device (recorder, edge)
    state: ActorState
    parameters: tuple[ParameterInfo, ...] = ()
    position: float | None = None  # where a relative plan's axis is now
    values: Mapping[str, Any] = field(default_factory=dict)  # parameter values read
    acquiring: bool = False  # a camera whose acquisition runs (live view, another sequence)

    def can(self, capability: Capability) -> bool:
        return self.info is not None and capability in self.info.capabilities

    def parameter(self, name: str) -> ParameterInfo | None:
        return next((p for p in self.parameters if p.name == name), None)


@dataclass(frozen=True, slots=True)
class BenchView:
    """What the validator needs to know about the bench, as data."""

    devices: Mapping[str, DeviceView]
    frame_bytes: Mapping[str, int] = field(default_factory=dict)  # camera -> bytes a frame
    exposure_s: Mapping[str, float] = field(default_factory=dict)  # camera -> s a frame
    directory: str = ""
    free_bytes: int | None = None
    min_free_bytes: int = 0

    def capable(self, capability: Capability) -> list[str]:
        return [n for n, d in self.devices.items() if d.can(capability)]


@dataclass(frozen=True, slots=True)
class Estimate:
    points: int | None  # None: bounded by a duration only
    seconds: float
    frames: int
    bytes: int

    def describe(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "seconds": self.seconds,
            "frames": self.frames,
            "bytes": self.bytes,
        }


@dataclass(frozen=True, slots=True)
class Checked:
    """A plan the bench can run, with what the executor needs resolved."""

    plan: Plan
    axes: tuple[Axis, ...]
    detectors: tuple[str, ...]
    camera: str | None
    suspenders: tuple[Resolved, ...]
    settings: tuple[tuple[str, str, Any], ...]  # (device, parameter, value)
    estimate: Estimate
    units: Mapping[str, str]  # column -> units
    #: A monitoring plan's Readables that stream only on request (a ``streaming`` switch):
    #: switched on for the plan, back off after.
    streams: tuple[str, ...] = ()


# -- the survey (async) ------------------------------------------------------------------------


def mentioned(plan: Plan, defaults: Sequence[Suspender] = ()) -> set[str]:
    """Every name the plan refers to (devices, or ``device.parameter`` forms)."""
    names = {*plan.axes, *plan.detectors, *(s.parameter for s in plan.parameters)}
    suspenders = [*plan.suspenders, *(defaults if plan.bench_suspenders else ())]
    names.update(s.signal for s in suspenders)
    if plan.camera:
        names.add(plan.camera)
    return {n for n in names if isinstance(n, str)}


def _device_of(name: str, devices: Sequence[str]) -> str | None:
    if name in devices:
        return name
    for device in sorted(devices, key=len, reverse=True):
        if name.startswith(f"{device}."):
            return device
    return None


#: What Describe said, per actor and instance (its restart count): devices do not change
#: what they are while they run, and asking every actor for every plan costs round trips.
DescribeCache = dict[str, tuple[int, DeviceInfo | None]]


async def survey(
    system: ActorSystem,
    plan: Plan,
    defaults: Sequence[Suspender] = (),
    *,
    exclude: Sequence[str] = (),
    cache: DescribeCache | None = None,
) -> BenchView:
    """Ask the bench what :func:`check` needs (concurrently, each ask bounded). ``exclude``:
    actors not to ask (the caller itself: it could not answer while it waits)."""
    return await _Survey(system, plan, cache if cache is not None else {}).run(defaults, exclude)


async def cameras(
    system: ActorSystem, *, exclude: Sequence[str] = (), cache: DescribeCache | None = None
) -> tuple[str, ...]:
    """The bench's cameras (FrameProducers) in the bench's order; one that is restarting is
    named as long as it was seen before (the validator then says it is not ready)."""
    known = cache if cache is not None else {}
    bench = _Survey(system, Plan(Count()), known)
    names = [n for n in system.names() if n not in exclude]
    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(bench._describe, name)
    found = []
    for name in names:
        info = bench.infos.get(name) or (known[name][1] if name in known else None)
        if info is not None and Capability.FRAME_PRODUCER in info.capabilities:
            found.append(name)
    return tuple(found)


class _Survey:
    def __init__(self, system: ActorSystem, plan: Plan, cache: DescribeCache) -> None:
        self.system = system
        self.plan = plan
        self.cache = cache
        self.infos: dict[str, DeviceInfo | None] = {}
        self.views: dict[str, DeviceView] = {}
        self.frame_bytes: dict[str, int] = {}
        self.exposure: dict[str, float] = {}
        self.camera = ""

    async def run(self, defaults: Sequence[Suspender], exclude: Sequence[str]) -> BenchView:
        names = [n for n in self.system.names() if n not in exclude]
        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(self._describe, name)
        plan = self.plan
        wanted = {d for n in mentioned(plan, defaults) if (d := _device_of(n, names)) is not None}
        infos = self.infos
        cameras = [n for n, i in infos.items() if i and Capability.FRAME_PRODUCER in i.capabilities]
        self.camera = plan.camera or (cameras[0] if cameras else "")
        if plan.takes_frames and self.camera:
            wanted.add(self.camera)
        if plan.monitor:  # which Readables need switching on to stream
            readable = Capability.READABLE
            wanted.update(n for n, i in infos.items() if i and readable in i.capabilities)
        async with trio.open_nursery() as nursery:
            for name in names:
                if name in wanted:
                    nursery.start_soon(self._detail, name)
                else:
                    self.views[name] = DeviceView(
                        name, infos.get(name), self.system.ref(name).state
                    )
        directory, free, minimum = await _disk(self.system)
        return BenchView(
            dict(sorted(self.views.items())),
            self.frame_bytes,
            self.exposure,
            directory,
            free,
            minimum,
        )

    async def _describe(self, name: str) -> None:
        self.infos[name] = None
        ref = self.system.ref(name)
        if ref.state is not ActorState.RUNNING:
            return
        restarts = ref.statistics().restarts
        known = self.cache.get(name)
        if known is not None and known[0] == restarts:
            self.infos[name] = known[1]
            return
        with contextlib.suppress(BenchError, ActorError):
            described: DeviceInfo = await ref.ask(Describe(), timeout=SURVEY_TIMEOUT)
            self.infos[name] = described
        self.cache[name] = (restarts, self.infos[name])

    async def _detail(self, name: str) -> None:
        ref = self.system.ref(name)
        state = ref.state
        parameters: tuple[ParameterInfo, ...] = ()
        position = None
        values: dict[str, Any] = {}
        acquiring = False
        plan = self.plan
        with contextlib.suppress(BenchError, ActorError):
            if state is ActorState.RUNNING:
                listed: tuple[ParameterInfo, ...] = await ref.ask(
                    ListParameters(), timeout=SURVEY_TIMEOUT
                )
                parameters = tuple(listed)
                info = self.infos.get(name)
                movable = info is not None and Capability.MOVABLE in info.capabilities
                if plan.path.relative and name in plan.axes and movable:
                    where: float = await ref.ask(GetPosition(), timeout=SURVEY_TIMEOUT)
                    position = float(where)
                if name in plan.axes and any(p.name == "velocity" for p in parameters):
                    values["velocity"] = await _value(ref, "velocity")
                for axis in plan.axes:
                    if plan.path.relative and axis.startswith(f"{name}."):
                        parameter = axis[len(name) + 1 :]
                        values[parameter] = await _value(ref, parameter)
                if name == self.camera and plan.takes_frames:
                    acquisition: AcquisitionStatus = await ref.ask(
                        GetAcquisitionStatus(), timeout=SURVEY_TIMEOUT
                    )
                    acquiring = acquisition.running
                    geometry: FrameGeometry = await ref.ask(GetFrameGeometry(), timeout=2.0)
                    rows, columns = geometry.roi.shape
                    self.frame_bytes[name] = rows * columns * 2
                    if any(p.name == "exposure_ms" for p in parameters):
                        self.exposure[name] = float(await _value(ref, "exposure_ms")) / 1e3
        self.views[name] = DeviceView(
            name, self.infos.get(name), state, parameters, position, values, acquiring
        )


async def _value(ref: Any, name: str) -> Any:
    snapshot: ParameterSnapshot = await ref.ask(GetParameter(name), timeout=SURVEY_TIMEOUT)
    return snapshot.value


async def _disk(system: ActorSystem) -> tuple[str, int | None, int]:
    """The recorder's directory, its free bytes and the free space the recorder keeps."""
    try:
        recorder = system.ref(RECORDER_NAME)
        directory = str((await recorder.ask(GetParameter("directory"), timeout=2.0)).value)
        minimum = float((await recorder.ask(GetParameter("min_free_mb"), timeout=2.0)).value)
    except (BenchError, ActorError):
        return "", None, 0

    def free() -> int | None:
        path = directory
        for _ in range(64):  # the directory may not exist yet: its nearest existing parent
            try:
                return shutil.disk_usage(path).free
            except OSError:
                parent = path.rsplit("/", 1)[0] or "/"
                if parent == path:
                    return None
                path = parent
        return None

    # one statvfs: as cheap as the recorder's own check, no thread needed
    return directory, free(), int(minimum * MB)


# -- the check (pure) ---------------------------------------------------------------------------


def check(plan: Plan, bench: BenchView, defaults: Sequence[Suspender] = ()) -> Checked:
    """The plan resolved against ``bench``, or PlanRejected with every problem."""
    problems = plan.problems()
    if not RUN_NAME.fullmatch(plan.run_name):
        problems.append(
            Problem("name", f"{quote(plan.run_name)} is not allowed; use {RUN_NAME_RULE}")
        )
    if plan.compression and plan.compression not in {c.value for c in Compression}:
        allowed = ", ".join(c.value for c in Compression)
        problems.append(
            Problem("compression", f"{quote(plan.compression)} is not known; allowed: {allowed}")
        )
    if problems:  # the plan's own numbers are wrong: the bench checks would only add noise
        raise PlanRejected(tuple(problems))
    axes = [_axis(name, i, bench, problems) for i, name in enumerate(plan.axes)]
    detectors = []
    for i, name in enumerate(plan.detectors):
        where = f"read[{i}]" if i < len(plan.read) else "path.detector"
        if _device(name, where, bench, Capability.READABLE, problems):
            detectors.append(name)
    camera = _camera(plan, bench, problems)
    settings = [_setting(s, i, bench, problems) for i, s in enumerate(plan.parameters)]
    resolved = []
    devices = {n: d for n, d in bench.devices.items() if d.info is not None}
    suspenders = [(s, f"suspenders[{i}]") for i, s in enumerate(plan.suspenders)]
    if plan.bench_suspenders:
        suspenders += [(s, f"bench suspender {s.label}") for s in defaults]
    for suspender, where in suspenders:
        found, trouble = resolve_signal(
            suspender,
            where,
            devices,
            lambda n: devices[n].can(Capability.READABLE),
            lambda n: tuple(p.name for p in devices[n].parameters) if n in devices else None,
        )
        problems.extend(trouble)
        if found is not None:
            resolved.append(found)
    ready = [a for a in axes if a is not None]
    relative = plan.path.relative
    origin: list[float | None] = [
        (_origin(a, bench) if relative else 0.0) if a is not None else None for a in axes
    ]
    for axis, at in zip(axes, origin, strict=True):
        if axis is not None and at is None:
            problems.append(
                Problem(
                    "path.relative",
                    f"{axis.name}: its position could not be read for a relative plan",
                    axis.device,
                )
            )
    _limits(plan, axes, tuple(o if o is not None else math.nan for o in origin), problems)
    estimate = _estimate(plan, ready, bench, camera)
    _disk_problem(estimate, bench, problems)
    if problems:
        raise PlanRejected(tuple(problems))
    units = {a.name: a.units for a in ready}
    for name in detectors:
        info = bench.devices[name].info
        units[name] = info.units if info else ""
    return Checked(
        plan,
        tuple(ready),
        tuple(detectors),
        camera,
        tuple(resolved),
        tuple(s for s in settings if s is not None),
        estimate,
        units,
        _streams(plan, bench),
    )


def _streams(plan: Plan, bench: BenchView) -> tuple[str, ...]:
    """The Readables a monitoring plan switches on: a writable ``streaming`` switch."""
    if not plan.monitor:
        return ()
    found = []
    for name, view in bench.devices.items():
        switch = view.parameter("streaming")
        if (
            view.state is ActorState.RUNNING
            and view.can(Capability.READABLE)
            and switch is not None
            and switch.dtype == "bool"
            and not switch.read_only
        ):
            found.append(name)
    return tuple(found)


def _device(
    name: str, where: str, bench: BenchView, capability: Capability, problems: list[Problem]
) -> DeviceView | None:
    view = bench.devices.get(name)
    able = ", ".join(bench.capable(capability)) or "none"
    if view is None or (view.info is None and view.state is ActorState.RUNNING):
        problems.append(
            Problem(where, f"no device named {quote(name)}; {capability.value} devices: {able}")
        )
        return None
    if view.state is not ActorState.RUNNING:
        problems.append(
            Problem(
                where,
                f"{name} is {_state(view.state)}; it takes requests again once it is ready",
                name,
            )
        )
        return None
    if not view.can(capability):
        problems.append(
            Problem(
                where, f"{name} is not {capability.value}; {capability.value} devices: {able}", name
            )
        )
        return None
    return view


def _state(state: ActorState) -> str:
    return "down" if state is ActorState.DOWN else f"degraded ({state.value})"


def _split(name: str, bench: BenchView) -> tuple[str, str] | None:
    device = _device_of(name, [n for n, d in bench.devices.items() if d.info is not None])
    if device is None or device == name:
        return None
    return device, name[len(device) + 1 :]


def _axis(name: str, index: int, bench: BenchView, problems: list[Problem]) -> Axis | None:
    where = f"path.axes[{index}]"
    view = bench.devices.get(name)
    split = None if view is not None and view.info is not None else _split(name, bench)
    if split is None:
        device = _device(name, where, bench, Capability.MOVABLE, problems)
        if device is None:
            return None
        position = device.parameter("position")
        units = device.info.units if device.info else ""
        return Axis(name, AxisKind.MOVABLE, name, "", units, position.limits if position else None)
    device_name, parameter = split
    device = bench.devices[device_name]
    if device.state is not ActorState.RUNNING:
        problems.append(Problem(where, f"{device_name} is {_state(device.state)}", device_name))
        return None
    info = device.parameter(parameter)
    if info is None or info.read_only or info.dtype not in ("float", "int"):
        numeric = [
            p.name for p in device.parameters if p.dtype in ("float", "int") and not p.read_only
        ]
        what = "no parameter" if info is None else "a read-only or non-numeric parameter"
        problems.append(
            Problem(
                where,
                f"{quote(parameter)} is {what} of {device_name}; an axis is a Movable"
                f" device or a writable number: {', '.join(numeric) or 'none here'}",
                device_name,
            )
        )
        return None
    return Axis(name, AxisKind.PARAMETER, device_name, parameter, info.units, info.limits)


def _origin(axis: Axis, bench: BenchView) -> float | None:
    view = bench.devices[axis.device]
    if axis.kind is AxisKind.MOVABLE:
        return view.position
    value = view.values.get(axis.parameter)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _limits(
    plan: Plan, axes: Sequence[Axis | None], origin: tuple[float, ...], problems: list[Problem]
) -> None:
    """Every resolved axis's extent against its travel (an unresolved one is reported
    already; a NaN origin, an unreadable position, is too)."""
    extents = plan.path.extents(origin)
    for index, axis in enumerate(axes):
        if axis is None or axis.limits is None or axis.name not in extents:
            continue
        low, high = axis.limits
        lowest, highest = extents[axis.name]
        units = f" {axis.units}" if axis.units else ""
        for value in sorted({lowest, highest}):
            if math.isfinite(value) and not low <= value <= high:
                side = "below" if value < low else "above"
                problems.append(
                    Problem(
                        f"path.axes[{index}]",
                        f"{axis.name}: {value:g}{units} is {side} its"
                        f" travel {low:g} to {high:g}{units}",
                        axis.device,
                    )
                )


def _camera(plan: Plan, bench: BenchView, problems: list[Problem]) -> str | None:
    """The camera whose frames the run records: the points' (``frames``), the live one, or
    a monitored one (whoever takes its frames)."""
    if not plan.takes_frames:
        if plan.camera:
            problems.append(
                Problem(
                    "camera",
                    "a camera without frames: set frames > 0, live, or monitor to record it",
                )
            )
        return None
    if plan.camera:
        view = _device(plan.camera, "camera", bench, Capability.FRAME_PRODUCER, problems)
        camera = plan.camera if view is not None else None
    else:
        cameras = bench.capable(Capability.FRAME_PRODUCER)
        if not cameras:
            where, verb = ("frames", "need") if plan.frames else ("live", "needs")
            problems.append(Problem(where, f"{where} {verb} a camera, and this bench has none"))
            return None
        camera = cameras[0]
    if camera is not None and plan.frames and bench.devices[camera].acquiring:
        problems.append(
            Problem(
                "camera",
                f"{camera} is acquiring already (live view or another sequence); stop it"
                " (StopStream / StopAcquisition) for the plan to take its frames",
                camera,
            )
        )
    return camera


def _setting(
    setting: Setting, index: int, bench: BenchView, problems: list[Problem]
) -> tuple[str, str, Any] | None:
    where = f"parameters[{index}]"
    split = _split(setting.parameter, bench)
    if split is None:
        problems.append(
            Problem(
                where,
                f"{quote(setting.parameter)} is not 'device.parameter' for a device of this bench",
            )
        )
        return None
    device, name = split
    view = bench.devices[device]
    info = view.parameter(name)
    if view.state is not ActorState.RUNNING:
        problems.append(Problem(where, f"{device} is {_state(view.state)}", device))
        return None
    if info is None:
        known = ", ".join(p.name for p in view.parameters) or "none"
        problems.append(
            Problem(where, f"{device} has no parameter {quote(name)}; parameters: {known}", device)
        )
        return None
    trouble = value_problem(info, setting.value)
    if trouble:
        problems.append(Problem(where, f"{device}.{trouble}", device))
        return None
    return device, name, setting.value


def value_problem(info: ParameterInfo, value: object) -> str:
    """Why ``value`` cannot be written to the parameter ``info`` describes ("" if it can);
    the same rules as Parameter.validate, from the parameter's description."""
    units = f" {info.units}" if info.units else ""
    if info.read_only:
        return f"{info.name} is read-only"
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if info.dtype == "float" and not (numeric and math.isfinite(value)):  # type: ignore[arg-type]
        return f"{info.name}: expected a finite number, got {quote(value)}"
    if info.dtype == "int" and not (
        numeric and float(value).is_integer()  # type: ignore[arg-type]
    ):
        return f"{info.name}: expected an integer, got {quote(value)}"
    if info.dtype == "bool" and not isinstance(value, bool):
        return f"{info.name}: expected true or false, got {quote(value)}"
    if info.dtype == "str" and not isinstance(value, str):
        return f"{info.name}: expected text, got {quote(value)}"
    if info.limits is not None and numeric:
        low, high = info.limits
        if not low <= value <= high:  # type: ignore[operator]
            return (
                f"{info.name}: {value:g}{units} is outside the allowed range"
                f" {low:g} to {high:g}{units}"
            )
    if info.choices is not None and value not in info.choices:
        allowed = ", ".join(repr(c) for c in info.choices)
        return f"{info.name}: {quote(value)} is not one of {allowed}"
    return ""


def _estimate(plan: Plan, axes: Sequence[Axis], bench: BenchView, camera: str | None) -> Estimate:
    points = plan.total()
    path = plan.path
    duration = float(getattr(path, "duration", 0.0) or 0.0)
    interval = float(getattr(path, "interval", 0.0) or 0.0)
    if points is None:  # a count bounded by its duration
        per_point = max(interval, POINT_OVERHEAD_S + plan.settle + plan.dwell)
        points = int(duration / per_point) + 1
        counted: int | None = None
    else:
        counted = points
    exposure = bench.exposure_s.get(camera, 0.0) if camera else 0.0
    per_point = POINT_OVERHEAD_S + plan.settle + plan.dwell + plan.frames * exposure
    seconds = points * max(per_point, interval) + _travel_seconds(plan, axes, bench)
    if duration:
        seconds = min(seconds, duration)
    frames = plan.frames * points
    frame_bytes = bench.frame_bytes.get(camera, 0) if camera else 0
    columns = 3 + len(plan.axes) + len(plan.detectors) + (2 if camera else 0)
    size = frames * frame_bytes + points * columns * ROW_BYTES
    return Estimate(counted, seconds, frames, size)


def _travel_seconds(plan: Plan, axes: Sequence[Axis], bench: BenchView) -> float:
    """Travel at each axis's ``velocity`` (where it has one), added over the axes: an upper
    bound for concurrent moves, computed from the path's shape (never point by point)."""
    total = 0.0
    path = plan.path
    for index, axis in enumerate(axes):
        velocity = _velocity(bench.devices[axis.device])
        if velocity is None:
            continue
        extents = path.extents((0.0,) * len(axes)).get(axis.name)
        if extents is None:
            continue
        length = extents[1] - extents[0]
        if path.kind == "grid":
            dims = path.dims  # type: ignore[union-attr]
            passes = math.prod(d.points for d in dims[:index])
            back = 0 if dims[index].snake else passes - 1
            distance = length * (passes + back)
        elif path.kind == "list":
            values = path.positions[index]  # type: ignore[union-attr]
            distance = sum(abs(b - a) for a, b in itertools.pairwise(values))
        else:
            distance = length
        total += distance / velocity
    return total


def _velocity(view: DeviceView) -> float | None:
    info = view.parameter("velocity")
    if info is None or not info.limits:
        return None
    value = view.values.get("velocity")
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _disk_problem(estimate: Estimate, bench: BenchView, problems: list[Problem]) -> None:
    if bench.free_bytes is None:
        return
    room = bench.free_bytes - bench.min_free_bytes
    if estimate.bytes > room:
        problems.append(
            Problem(
                DISK,
                f"the run needs about"
                f" {estimate.bytes / MB:,.0f} MiB ({estimate.frames} frames); {bench.directory}"
                f" has {bench.free_bytes / MB:,.0f} MiB free and the recorder keeps"
                f" {bench.min_free_bytes / MB:,.0f} MiB free (min_free_mb)",
            )
        )
