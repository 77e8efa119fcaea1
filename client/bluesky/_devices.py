"""The ophyd-async devices: axes (movable), readables, parameter-only devices.

Each device carries every daemon Parameter of its daemon device as a signal attribute named
after it (``maitai.wavelength`` is ``devices["maitai"].wavelength``): a SignalRW for a writable
parameter, a SignalR for a read-only one. A name that is a Python keyword, not an identifier,
or a word the device already uses (bluesky's verbs: ``trigger``, ``read``, ``set``...) gets a
trailing underscore, as ophyd-async asks; ``device.parameter("name")`` finds any of them by
the daemon's name. Writable parameters are the device's configuration (``read_configuration``,
recorded once per descriptor), so a RunEngine run says what the velocity or the wavelength was.
"""

from __future__ import annotations

import asyncio
import contextlib
import keyword
import math
import re
from collections.abc import Sequence
from functools import cached_property
from typing import Any, TypeVar

from ophyd_async.core import (
    AsyncStatus,
    Device,
    MovableLogic,
    SignalR,
    SignalRW,
    StandardMovable,
    StandardReadable,
    StandardReadableFormat,
    TimeoutCalculator,
)

from .._async import DEFAULT_MOVE_TIMEOUT
from .._errors import Aborted, DeadlineExceeded, InvalidArgument
from .._types import DeviceInfo, ParameterInfo
from ._session import Session
from ._signals import (
    AxisInfo,
    ParameterBackend,
    PositionBackend,
    ReadingBackend,
    SetpointBackend,
    StreamingBackend,
)

B = TypeVar("B", bound=StreamingBackend[Any])

#: How long a move waits for its progress subscription to be in place (then moves anyway).
PROGRESS_WAIT_S = 5.0

#: Words a bluesky device may not use for a child (ophyd-async refuses them).
PROTOCOL_WORDS = frozenset(
    {
        "name", "collect_asset_docs", "get_index", "read_configuration", "describe_configuration",
        "trigger", "prepare", "read", "describe", "describe_collect", "collect", "collect_pages",
        "set", "locate", "kickoff", "complete", "stage", "unstage", "pause", "resume", "stop",
        "subscribe", "clear_sub", "check_value", "hints", "parent", "parameter", "parameters",
        "limits", "units", "bench_name",
    }
)  # fmt: skip


def attribute_name(parameter: str, device: object) -> str:
    """A free Python attribute name for a daemon parameter name."""
    name = re.sub(r"\W", "_", parameter) or "parameter"
    if name[0].isdigit():
        name = f"_{name}"
    while (
        keyword.iskeyword(name)
        or name in PROTOCOL_WORDS
        or hasattr(type(device), name)
        or name in vars(device)
    ):
        name += "_"
    return name


class BenchDevice(Device):
    """What every benchd device has: its daemon name, and its parameters by daemon name."""

    bench_name: str
    _parameters: dict[str, SignalR[Any]]
    _backends: list[StreamingBackend[Any]]

    def _init_bench(self, info: DeviceInfo) -> None:
        self.bench_name = info.name
        self._parameters = {}
        self._backends = []

    def _track(self, backend: B) -> B:
        self._backends.append(backend)
        return backend

    async def close_monitors(self) -> None:
        """Cancel this device's stream subscriptions (``BenchDevices.close`` calls it)."""
        for backend in self._backends:
            await backend.close()

    def parameter(self, name: str) -> SignalR[Any]:
        """The signal of the daemon parameter ``name`` (e.g. ``"velocity"``)."""
        try:
            return self._parameters[name]
        except KeyError:
            known = ", ".join(self._parameters) or "none"
            raise KeyError(
                f"{self.bench_name} has no parameter {name!r}; it has: {known}"
            ) from None

    @property
    def parameters(self) -> dict[str, SignalR[Any]]:
        return dict(self._parameters)

    def _add_parameters(
        self, session: Session, infos: Sequence[ParameterInfo], address: str, skip: tuple[str, ...]
    ) -> list[SignalR[Any]]:
        """Make the parameter signals; returns the writable ones (the configuration)."""
        writable: list[SignalR[Any]] = []
        for info in infos:
            if info.name in skip:
                continue
            backend = self._track(ParameterBackend(session, info, address))
            timeout = session.signal_timeout
            signal: SignalR[Any] = (
                SignalR(backend, timeout=timeout)
                if info.read_only
                else SignalRW(backend, timeout=timeout)
            )
            setattr(self, attribute_name(info.name, self), signal)
            self._parameters[info.name] = signal
            if not info.read_only:
                writable.append(signal)
        return writable


class BenchReadable(StandardReadable, BenchDevice):
    """A Readable daemon device (the power meter, the laser's power): ``read()`` takes a fresh
    reading, named after the device; writable parameters are its configuration."""

    def __init__(
        self,
        session: Session,
        info: DeviceInfo,
        parameters: Sequence[ParameterInfo],
        address: str,
        name: str = "",
    ) -> None:
        self._init_bench(info)
        self._session = session
        self._staged_at: int | None = None
        with self.add_children_as_readables(StandardReadableFormat.HINTED_UNCACHED_SIGNAL):
            self.value = SignalR(
                self._track(ReadingBackend(session, info.name, info.units, address, self._epoch)),
                timeout=session.signal_timeout,
            )
        config = self._add_parameters(session, parameters, address, ())
        self.add_readables(config, StandardReadableFormat.CONFIG_SIGNAL)
        super().__init__(name=name)

    def _epoch(self) -> int | None:
        return self._staged_at

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator)
        self.value.set_name(name)  # the data key is the device's name, as for a motor

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """From here on an e-stop fails every reading (until unstaged)."""
        self._staged_at = self._session.stops
        await super().stage()

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        self._staged_at = None
        await super().unstage()


class BenchParameters(StandardReadable, BenchDevice):
    """A daemon device with parameters only (a controller, a serial bus, the recorder): its
    writable parameters are its configuration; ``read()`` is empty."""

    def __init__(
        self,
        session: Session,
        info: DeviceInfo,
        parameters: Sequence[ParameterInfo],
        address: str,
        name: str = "",
    ) -> None:
        self._init_bench(info)
        config = self._add_parameters(session, parameters, address, ())
        self.add_readables(config, StandardReadableFormat.CONFIG_SIGNAL)
        super().__init__(name=name)


class BenchMoveLogic(MovableLogic[float]):
    """Moves through the daemon: one MoveAbsolute that waits until the axis settles, while
    the readback (the ``position`` parameter's stream) reports progress. Stop is StopMotion,
    which also cuts the waiting move short."""

    def __init__(
        self,
        setpoint: SignalRW[float],
        readback: SignalR[float],
        *,
        session: Session,
        axis: AxisInfo,
        setpoint_backend: SetpointBackend,
        readback_backend: PositionBackend,
        velocity: SignalR[Any] | None,
    ) -> None:
        super().__init__(setpoint=setpoint, readback=readback)
        self.session = session
        self.axis = axis
        self.setpoint_backend = setpoint_backend
        self.readback_backend = readback_backend
        self.velocity = velocity
        self.stopping = False

    async def stop(self) -> None:
        self.stopping = True  # the daemon's answer to the waiting move is then expected
        await self.session.bench.stop(self.axis.device)

    async def check_move(self, new_position: float) -> None:
        """Refuse a target outside the travel before anything moves (the daemon checks too)."""
        if not isinstance(new_position, int | float) or math.isnan(new_position):
            raise InvalidArgument(f"{self.axis.device}: {new_position!r} is not a position")
        if self.axis.limits is not None:
            low, high = self.axis.limits
            if not low <= new_position <= high:
                raise InvalidArgument(
                    f"{self.axis.device}: {new_position:g} {self.axis.units} is outside the"
                    f" travel {low:g} to {high:g} {self.axis.units}"
                )

    async def calculate_timeout(self, old_position: float, new_position: float) -> float | None:
        """Twice the travel time at the axis's velocity plus 10 s, if it has a velocity in
        units per second; else the daemon's default (60 s)."""
        if self.velocity is None:
            return None
        speed = await self.velocity.get_value()
        if not isinstance(speed, int | float) or speed <= 0:
            return None
        return 2 * abs(new_position - old_position) / speed + 10.0

    async def get_units_precision(self) -> tuple[str | None, int | None]:
        return self.axis.units or None, None

    async def _progress_flowing(self) -> None:
        """The axis answers one request at a time, so a position subscription asked for
        after the move starts would only begin when it ends: let ``set``'s progress watch
        (opened together with this move) reach the daemon first."""
        if self.readback_backend.monitored:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.readback_backend.flowing.wait(), PROGRESS_WAIT_S)

    async def move(self, new_position: float, timeout: TimeoutCalculator) -> None:
        self.stopping = False
        self.axis.moving = True
        self.setpoint_backend.note(new_position)
        seconds = timeout()
        await self._progress_flowing()
        try:
            await self.session.guard(
                self.session.bench.move_to(
                    self.axis.device,
                    new_position,
                    wait=True,
                    timeout=DEFAULT_MOVE_TIMEOUT if seconds is None else seconds,
                ),
                what=f"a move of {self.axis.device} to {new_position:g} {self.axis.units}",
            )
        except DeadlineExceeded:
            await self.stop()  # the daemon lets a move that timed out go on: not here
            raise
        except Aborted as error:
            if self.stopping:
                return  # stop() was called: StandardMovable.set reports it (or not, if success)
            raise Aborted(f"{self.axis.device}: the move was stopped ({error.message})") from error
        finally:
            self.axis.moving = False


class BenchMotor(StandardReadable, StandardMovable[float], BenchDevice):
    """A Movable daemon device (an ESP300 axis, an ELL14 mount) as an ophyd-async movable:
    ``set`` (a WatchableAsyncStatus with progress), ``locate``, ``stop``, ``limits``,
    ``units``; ``read()`` gives the position (named after the device), writable parameters
    (velocity, acceleration...) are the configuration."""

    def __init__(
        self,
        session: Session,
        info: DeviceInfo,
        parameters: Sequence[ParameterInfo],
        address: str,
        name: str = "",
    ) -> None:
        self._init_bench(info)
        self._session = session
        by_name = {p.name: p for p in parameters}
        position = by_name.get("position")
        limits = info.position_limits or (position.limits if position is not None else None)
        self._axis = AxisInfo(info.name, info.units, limits, address)
        self._setpoint_backend = self._track(SetpointBackend(session, self._axis))
        self._readback_backend = self._track(
            PositionBackend(session, self._axis, has_parameter=position is not None)
        )
        with self.add_children_as_readables(StandardReadableFormat.HINTED_UNCACHED_SIGNAL):
            self.readback = SignalR(self._readback_backend, timeout=session.signal_timeout)
        self.setpoint = SignalRW(self._setpoint_backend, timeout=session.signal_timeout)
        config = self._add_parameters(session, parameters, address, ("position",))
        self.add_readables(config, StandardReadableFormat.CONFIG_SIGNAL)
        self._parameters["position"] = self.readback
        velocity = by_name.get("velocity")
        # a velocity in units per second times the travel gives a move's duration
        self._has_velocity = velocity is not None and velocity.units.endswith("/s")
        super().__init__(name=name)

    @cached_property
    def movable_logic(self) -> BenchMoveLogic:
        return BenchMoveLogic(
            self.setpoint,
            self.readback,
            session=self._session,
            axis=self._axis,
            setpoint_backend=self._setpoint_backend,
            readback_backend=self._readback_backend,
            velocity=self._parameters.get("velocity") if self._has_velocity else None,
        )

    @property
    def limits(self) -> tuple[float, float] | None:
        """The travel (low, high) in ``units``, as the daemon reports it; None if unknown."""
        return self._axis.limits

    @property
    def units(self) -> str:
        return self._axis.units

    async def refresh_limits(self) -> tuple[float, float] | None:
        """Ask the daemon for the travel again (it may change: a controller's soft limits)."""
        info = await self._session.bench.device(self._axis.device)
        limits = info.position_limits
        if limits is None:
            for parameter in await self._session.bench.parameters(self._axis.device):
                if parameter.name == "position":
                    limits = parameter.limits
        self._axis.limits = limits
        return limits
