"""The builtins a script calls, run by the runner on the event loop for the script's worker.

A script runs in a worker process (``worker.py``); each builtin there is a proxy that sends a
``call`` frame over the pipe and waits. The runner's session (``session.py``) hands the call to
:meth:`Builtins.call`, which runs the builtin's ``async`` function here, so the actors see
ordinary asks from a trio task. That coroutine runs inside a cancel scope the runner can
cancel: an abort or an e-stop interrupts a move, a sleep or an exposure in flight, not only at
the next Starlark step. A forced stop also sends ``Abort`` to the device being driven, since
cancelling an ask does not stop the motion it started.

Adding a builtin: one ``async`` method on :class:`Builtins` and one entry in its
:meth:`Builtins.functions` table. The worker builds its proxies from the table's names, so
nothing else changes. Arguments arrive as JSON data (numbers, strings, booleans, None, lists,
dicts; a Starlark tuple or struct arrives as a list or dict) and the result goes back the same
way (enums and numpy scalars are converted; anything else is an error for the script).

Safety: a script reaches only devices (actors that answer ``Describe``), by their bench names,
and only the capability a builtin needs; every value goes through the device's own Parameter
validation; parameter writes carry ``Source.SCRIPT``. Every argument is untrusted data from
the worker: the dispatcher checks the name and binds the arguments to the function's
signature before anything runs.

Error handling: a refused request becomes a :class:`BuiltinError` carrying the device's
reason; Starlark adds the script's line. An interruption raises :class:`BuiltinInterrupted`.
A builtin that fails in an unexpected way (a bug, an argument of a surprising shape) is logged
and reported to the script as a BuiltinError naming the builtin, never crashing the runner.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from runtime import (
    Abort,
    ActorError,
    ActorSystem,
    BenchError,
    GetParameter,
    ParameterSnapshot,
    Request,
    SetParameter,
    Source,
)

from ..acquisition import scripted
from ..acquisition.executor import PlanState, PlanStatus
from ..capabilities import (
    AcquisitionStatus,
    Capability,
    Describe,
    DeviceInfo,
    GetAcquisitionStatus,
    GetPosition,
    Home,
    MotorOn,
    MoveAbsolute,
    MoveRelative,
    Operation,
    Read,
    Reading,
    StartAcquisition,
    StopAcquisition,
    StopMotion,
    Zero,
)
from ..pipeline.recorder import RECORDER_NAME, StartRun, StopRun
from ..pipeline.run import RunStatus

logger = logging.getLogger(__name__)

SHUTTER_DRIVER = "spectra_physics_maitai"
ACQUISITION_POLL = 0.02
MAX_LOG_LINES = 10_000


class BuiltinError(Exception):
    """A builtin was refused (unknown device, wrong capability, a value out of limits)."""


class BuiltinInterrupted(Exception):
    """The builtin was cut short by a stop, an abort or an emergency stop."""


async def inventory(system: ActorSystem, timeout: float = 2.0) -> dict[str, DeviceInfo]:
    """Every actor that says it is a device (answers Describe), by name."""
    found: dict[str, DeviceInfo] = {}

    async def one(name: str) -> None:
        with contextlib.suppress(BenchError, ActorError):
            found[name] = await system.ref(name).ask(Describe(), timeout=timeout)

    async with trio.open_nursery() as nursery:
        for name in system.names():
            nursery.start_soon(one, name)
    return dict(sorted(found.items()))


@dataclass
class ExecutionContext:
    """What the builtins of one execution share with the runner (touched only on the event
    loop's thread, except the plain reads of ``interrupt`` / ``stop`` in the budget hook)."""

    execution_id: str
    source: str
    log: Callable[[str], None]
    progress: Callable[[float], None]
    stop: str | None = None  # graceful: end at the next step or builtin boundary
    interrupt: str | None = None  # forced: cut the builtin in flight
    busy: set[str] = field(default_factory=set)  # devices with a hazardous request in flight
    shutter_opened: str | None = None  # the device whose shutter the script opened
    run_started: bool = False  # a run the script (or a scan) started and has not stopped
    scope: trio.CancelScope | None = None
    #: Pause: the execution waits at its next point (scans) or builtin call until resumed;
    #: ``wake`` is set (and replaced) on resume and on every stop, so a waiting builtin
    #: re-checks at once. An abort or an e-stop cancels the wait through ``scope``.
    paused: bool = False
    wake: trio.Event = field(default_factory=trio.Event)
    #: Status changes for the runner: ``report(paused=…)``, ``report(points_done=…)`` etc.
    report: Callable[..., None] = lambda **_: None
    #: The e-stop reason while the bench is latched (the runner's own latch, set the moment
    #: the e-stop is sent, before any device's "interrupted" reply can arrive).
    latched: Callable[[], str | None] = lambda: None

    def reason(self) -> str | None:
        if self.interrupt is not None:
            return self.interrupt
        latched = self.latched()
        if latched is not None:
            return f"emergency stop: {latched}"
        return self.stop

    def poke(self) -> None:
        """Wake a builtin waiting while paused, to re-check pause and stop."""
        self.wake.set()
        self.wake = trio.Event()

    async def wait_while_paused(self) -> None:
        """Return at once unless paused; else wait until resumed or stopped (an abort or an
        e-stop cancels the wait)."""
        if not self.paused or self.reason() is not None:
            return
        self.report(paused=True)
        try:
            while self.paused and self.reason() is None:
                await self.wake.wait()
        finally:
            self.report(paused=False)


class Builtins:
    """One execution's builtins, bound to the bench's devices as they were at its start."""

    def __init__(
        self, system: ActorSystem, devices: Mapping[str, DeviceInfo], context: ExecutionContext
    ) -> None:
        self.system = system
        self.devices = devices
        self.context = context
        self._table: dict[str, Callable[..., Awaitable[Any]]] | None = None
        self._signatures: dict[str, inspect.Signature] = {}

    def functions(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        """name -> async function: the script's builtins (the worker proxies these names)."""
        return {
            "move": self.move,
            "move_rel": self.move_rel,
            "position": self.position,
            "read": self.read,
            "read_averaged": self.read_averaged,
            "set": self.set,
            "get": self.get,
            "sleep": self.sleep,
            "acquire": self.acquire,
            "log": self.log,
            "print": self.log,
            "progress": self.progress,
            "start_run": self.start_run,
            "stop_run": self.stop_run,
            "devices": self.list_devices,
            "line_scan": self.line_scan,
            "grid_scan": self.grid_scan,
            "run_plan": self.run_plan,
            "_shutter_open": self.shutter_open,
            "_shutter_close": self.shutter_close,
            "home": self.home,
            "stop": self.stop_motion,
            "motor_on": self.motor_on,
            "zero": self.zero,
            # Plan builders (line, grid, tune, …) are pure: they return a plan description
            # that run_plan takes back.
            **{name: self._builder(builder) for name, builder in scripted.BUILDERS.items()},
        }

    def _builder(self, builder: Callable[..., dict[str, Any]]) -> Callable[..., Awaitable[Any]]:
        async def build(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return self._build(builder, *args, **kwargs)

        build.__signature__ = inspect.signature(builder)  # type: ignore[attr-defined]
        build.__name__ = builder.__name__
        return build

    # -- the dispatcher ----------------------------------------------------------------------------

    async def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run builtin ``name`` for the worker; its value (as JSON-able data).

        Error handling: BuiltinError (refused, wrong arguments, or an unexpected failure, which
        is logged), BuiltinInterrupted (stop, abort, e-stop).
        """
        if self._table is None:
            self._table = self.functions()
        function = self._table.get(name)
        if function is None:
            raise BuiltinError(f"no builtin named {name[:40]!r}")
        signature = self._signatures.get(name)
        if signature is None:
            signature = self._signatures[name] = inspect.signature(function)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            raise BuiltinError(f"{name}(): {error}") from None
        try:
            return _plain(await self._guarded(function, args, kwargs))
        except (BuiltinError, BuiltinInterrupted):
            raise
        except Exception as error:  # a builtin's bug or a surprising argument: the script's error
            logger.warning("builtin %s failed unexpectedly", name, exc_info=True)
            raise BuiltinError(f"{name}: {type(error).__name__}: {error}") from None

    async def _guarded(
        self,
        function: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        context = self.context
        if context.reason() is not None:
            raise BuiltinInterrupted(context.reason())
        with trio.CancelScope() as scope:
            context.scope = scope
            try:
                await context.wait_while_paused()  # a paused script waits at its next call
                if context.reason() is not None:
                    raise BuiltinInterrupted(context.reason())
                return await function(*args, **kwargs)
            except (BenchError, ActorError) as error:
                raise BuiltinError(_describe(error)) from None
            finally:
                context.scope = None
        raise BuiltinInterrupted(context.reason() or "interrupted")

    async def _ask(self, device: str, request: Request[Any], timeout: float | None = None) -> Any:
        return await self.system.ref(device).ask(request, timeout=timeout)

    async def _hazardous(self, device: str, request: Request[Any]) -> Any:
        """A request that starts motion: on a forced stop the runner aborts ``busy`` devices."""
        self.context.busy.add(device)
        try:
            return await self._ask(device, request, timeout=None)
        finally:
            self.context.busy.discard(device)

    def _device(self, name: object, capability: Capability | None = None) -> str:
        if not isinstance(name, str) or name not in self.devices:
            known = ", ".join(self.devices) or "none"
            raise BuiltinError(f"no device named {name!r}; devices: {known}")
        if capability is not None and capability not in self.devices[name].capabilities:
            able = [n for n, d in self.devices.items() if capability in d.capabilities]
            raise BuiltinError(
                f"{name} is not {capability.value}; {capability.value} devices:"
                f" {', '.join(able) or 'none'}"
            )
        return name

    def _parameter(self, key: object) -> tuple[str, str]:
        """``"esp300.axis1.velocity"`` -> (``esp300.axis1``, ``velocity``): device names have
        dots too, so the longest device name that prefixes the key wins."""
        if isinstance(key, str):
            for device in sorted(self.devices, key=len, reverse=True):
                if key.startswith(f"{device}.") and len(key) > len(device) + 1:
                    return device, key[len(device) + 1 :]
        raise BuiltinError(
            f"{key!r} is not 'device.parameter' for a device of this bench;"
            f" devices: {', '.join(self.devices)}"
        )

    # -- motion and readings ---------------------------------------------------------------------

    async def move(self, device: str, position: float) -> float:
        """Move to ``position`` (the device's units) and wait until settled; the position."""
        name = self._device(device, Capability.MOVABLE)
        result: float = await self._hazardous(name, MoveAbsolute(_number(position, "position")))
        return result

    async def move_rel(self, device: str, distance: float) -> float:
        name = self._device(device, Capability.MOVABLE)
        result: float = await self._hazardous(name, MoveRelative(_number(distance, "distance")))
        return result

    async def position(self, device: str) -> float:
        result: float = await self._ask(self._device(device, Capability.MOVABLE), GetPosition())
        return result

    async def read(self, device: str) -> float:
        """One fresh reading (the device's units); a flagged reading is logged, not hidden."""
        name = self._device(device, Capability.READABLE)
        reading: Reading = await self._ask(name, Read())
        if reading.flags:
            self.context.log(f"{name}: reading {reading.value} flagged {','.join(reading.flags)}")
        return reading.value

    async def read_averaged(self, device: str, n: int) -> float:
        if not isinstance(n, int) or not 1 <= n <= 100_000:
            raise BuiltinError(f"read_averaged: n must be an integer 1..100000, got {n!r}")
        values = [await self.read(device) for _ in range(n)]
        return math.fsum(values) / n

    async def set(self, key: str, value: Any) -> Any:
        """Set a parameter through its validation (``Source.SCRIPT``); the value it took."""
        device, parameter = self._parameter(key)
        snapshot: ParameterSnapshot = await self._ask(
            device, SetParameter(parameter, value, Source.SCRIPT), timeout=None
        )
        return _plain(snapshot.value)

    async def get(self, key: str) -> Any:
        device, parameter = self._parameter(key)
        snapshot: ParameterSnapshot = await self._ask(device, GetParameter(parameter))
        return _plain(snapshot.value)

    async def sleep(self, seconds: float) -> None:
        seconds = _number(seconds, "seconds")
        if not 0 <= seconds <= 7 * 86400:
            raise BuiltinError(f"sleep: seconds must be 0..604800, got {seconds}")
        await trio.sleep(seconds)

    async def acquire(self, camera: str, n: int) -> int:
        """Take ``n`` frames and wait for them; the frames acquired. Recorded if a run that
        records frames is active (``start_run(..., frames=True)``)."""
        name = self._device(camera, Capability.FRAME_PRODUCER)
        if not isinstance(n, int) or not 1 <= n <= 1_000_000:
            raise BuiltinError(f"acquire: n must be an integer 1..1000000, got {n!r}")
        await self._ask(name, StartAcquisition(n))
        try:
            while True:
                status: AcquisitionStatus = await self._ask(name, GetAcquisitionStatus())
                if not status.running:
                    if status.error:
                        raise BuiltinError(f"{name}: acquisition failed: {status.error}")
                    return status.frames_acquired
                await trio.sleep(ACQUISITION_POLL)
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self._ask(name, StopAcquisition(), timeout=5.0)
            raise

    async def list_devices(self) -> dict[str, list[str]]:
        return {n: [c.value for c in d.capabilities] for n, d in self.devices.items()}

    # -- operations (home, stop, motor_on, zero) ------------------------------------------------

    def _operable(self, name: object, operation: Operation) -> str:
        device = self._device(name)
        if operation not in self.devices[device].operations:
            able = [n for n, d in self.devices.items() if operation in d.operations]
            raise BuiltinError(
                f"{device} cannot {operation.value.replace('_', ' ')}; devices that can:"
                f" {', '.join(able) or 'none'}"
            )
        return device

    async def home(self, device: str) -> float:
        """Run the device's home search and wait for it; the position homed."""
        name = self._operable(device, Operation.HOME)
        self.context.log(f"{name}: homing")
        result: float = await self._hazardous(name, Home())
        self.context.log(f"{name}: homed at {result:g}")
        return result

    async def stop_motion(self, device: str) -> float:
        """Stop the device's motion (never refused, also while the e-stop is latched); the
        position where it rests."""
        name = self._operable(device, Operation.STOP)
        result: float = await self._ask(name, StopMotion(), timeout=30.0)
        return result

    async def motor_on(self, device: str) -> bool:
        """Switch the motor on after a fault or a power-up (hazardous: refused while latched).
        Home afterwards: the position may be lost."""
        name = self._operable(device, Operation.MOTOR_ON)
        result: bool = await self._hazardous(name, MotorOn())
        return result

    async def zero(self, device: str, enable: bool = True) -> bool:
        """A power meter's zero: store the present reading as the dark offset (cover the
        detector first), or with ``enable=False`` stop subtracting it; the zero state."""
        name = self._operable(device, Operation.ZERO)
        if not isinstance(enable, bool):
            raise BuiltinError(f"zero: enable must be True or False, got {enable!r}")
        result: bool = await self._ask(name, Zero(enable))
        return result

    async def log(self, *values: Any) -> None:
        self.context.log(" ".join(str(v) for v in values))

    async def progress(self, fraction: float) -> None:
        self.context.progress(min(1.0, max(0.0, _number(fraction, "fraction"))))

    # -- runs -----------------------------------------------------------------------------------

    async def start_run(
        self, name: str, metadata: Mapping[str, Any] | None = None, frames: bool = False
    ) -> str:
        """Start recording (every reading and parameter change; camera frames if ``frames``);
        the run file's path. The runner stops it when the script ends, however it ends."""
        if metadata is not None and not isinstance(metadata, Mapping):
            raise BuiltinError(f"start_run: metadata must be a dict, got {type(metadata).__name__}")
        status = await self._start_run(str(name), dict(metadata or {}), frames, ())
        return status.path

    async def _start_run(
        self, name: str, metadata: dict[str, Any], frames: bool, columns: tuple[str, ...]
    ) -> RunStatus:
        metadata.update(
            script_execution=self.context.execution_id,
            script=self.context.source,
            script_sha256=hashlib.sha256(self.context.source.encode()).hexdigest(),
        )
        # Shielded: an abort arriving while the recorder opens the file must not leave a run
        # that nobody stops (the runner stops it once ``run_started`` is set).
        with trio.CancelScope(shield=True):
            status: RunStatus = await self._ask(
                RECORDER_NAME,
                StartRun(name, metadata=metadata, record_frames=frames, scan_columns=columns),
                timeout=30.0,
            )
            self.context.run_started = True
        self.context.log(f"run {name} recording to {status.path}")
        return status

    async def stop_run(self, reason: str = "stopped by script") -> dict[str, Any]:
        """Stop the run; its end record."""
        status: RunStatus = await self._ask(RECORDER_NAME, StopRun(str(reason)), timeout=60.0)
        self.context.run_started = False
        return dict(status.end_record)

    # -- shutter (with_shutter_open) ------------------------------------------------------------

    def _shutter_device(self) -> str:
        for name, info in self.devices.items():
            if info.driver == SHUTTER_DRIVER:
                return name
        raise BuiltinError("with_shutter_open: this bench has no laser with a shutter")

    async def shutter_open(self) -> None:
        device = self._shutter_device()
        self.context.shutter_opened = device  # before: a failed open is closed again too
        await self._ask(device, SetParameter("shutter", True, Source.SCRIPT), timeout=None)

    async def shutter_close(self) -> None:
        device = self._shutter_device()
        await self._ask(device, SetParameter("shutter", False, Source.SCRIPT), timeout=None)
        self.context.shutter_opened = None

    # -- plans ---------------------------------------------------------------------------------

    async def run_plan(self, description: Mapping[str, Any]) -> dict[str, Any]:
        """Hand a plan (from ``line``, ``grid``, ``tune`` …) to the executor and wait for it;
        a pause, resume or stop of the script reaches the plan. Returns ``{"id", "state",
        "points", "path", "error", "result", "suspensions"}``; a plan that fails or is aborted
        raises (the script ends with its reason)."""
        if not isinstance(description, Mapping):
            raise BuiltinError("run_plan takes a plan: line(...), grid(...), tune(...), …")
        try:
            plan = scripted.plan_of(description)
        except scripted.ScriptPlanError as error:
            raise BuiltinError(str(error)) from None
        if self.context.run_started:
            raise BuiltinError("a plan records its own run: stop_run() first")
        context = self.context
        metadata = {
            **plan.metadata,
            "script_execution": context.execution_id,
            "script": context.source,
            "script_sha256": hashlib.sha256(context.source.encode()).hexdigest(),
        }
        plan = dataclasses.replace(plan, metadata_json=json.dumps(metadata))

        async def changed() -> None:
            await context.wake.wait()

        def report(status: PlanStatus) -> None:
            context.report(
                points_done=status.points_done,
                points_total=status.points_total,
                positions=dict(status.positions),
                run_path=status.run_path,
                paused=status.state in (PlanState.PAUSED, PlanState.SUSPENDED) or None,
            )
            if status.points_total:
                context.progress(min(1.0, status.points_done / status.points_total))

        control = scripted.Control(lambda: context.paused, lambda: context.stop, changed, report)
        status = await scripted.run_plan(
            self.system, plan, origin=f"script {context.execution_id}", control=control
        )
        if status.state in scripted.FAILED:
            raise BuiltinError(status.error)
        self.context.log(
            f"{plan.kind} plan {status.id}: {status.points_done} points, {status.state.value}"
        )
        return scripted.summary(status)

    async def line_scan(
        self,
        axis: str,
        start: float,
        stop: float,
        points: int,
        *,
        read: Sequence[str] = (),
        dwell: float = 0.0,
        settle: float = 0.0,
        frames: int = 0,
        name: str = "line_scan",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``run_plan(line(...))``, kept for scripts written before plans: the run's path and
        the points done."""
        plan = self._build(
            scripted.line,
            axis,
            start,
            stop,
            points,
            read=read,
            dwell=dwell,
            settle=settle,
            frames=frames,
            name=name,
            metadata=dict(metadata or {}),
        )
        done = await self.run_plan(plan)
        return {"path": done["path"], "points": done["points"], "id": done["id"]}

    async def grid_scan(
        self,
        slow: Sequence[Any],
        fast: Sequence[Any],
        *,
        read: Sequence[str] = (),
        dwell: float = 0.0,
        settle: float = 0.0,
        frames: int = 0,
        snake: bool = False,
        name: str = "grid_scan",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``run_plan(grid(slow, fast + [snake]))``, kept for older scripts."""
        for spec, what in ((slow, "slow"), (fast, "fast")):
            if not isinstance(spec, list | tuple) or len(spec) != 4:
                raise BuiltinError(f"grid_scan: {what} must be [axis, start, stop, points]")
        plan = self._build(
            scripted.grid,
            list(slow),
            [*fast, bool(snake)],
            read=read,
            dwell=dwell,
            settle=settle,
            frames=frames,
            name=name,
            metadata=dict(metadata or {}),
        )
        done = await self.run_plan(plan)
        return {"path": done["path"], "points": done["points"], "id": done["id"]}

    @staticmethod
    def _build(builder: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return builder(*args, **kwargs)
        except (scripted.ScriptPlanError, TypeError) as error:
            raise BuiltinError(str(error)) from None


async def abort_devices(system: ActorSystem, devices: set[str], reason: str) -> None:
    """Send Abort (priority lane) to every device with motion in flight."""
    for device in sorted(devices):
        # Best effort: the device may be down; an e-stop is the hard stop.
        with contextlib.suppress(BenchError, ActorError):
            await system.ref(device).ask(Abort(reason), timeout=5.0)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BuiltinError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _plain(value: Any) -> Any:
    """A value Starlark can hold: enums by value, tuples as lists."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _describe(error: BaseException) -> str:
    if isinstance(error, ActorError):
        return f"{error.actor}: {error.root_cause}"
    return str(error)
