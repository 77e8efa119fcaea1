"""Signal backends over the client: parameters, an axis's position and setpoint, a reading.

ophyd-async asks a backend for a value, a reading (value, timestamp, alarm), a DataKey (dtype,
shape, units, limits, source) and for a callback on every change. Values and timestamps are the
daemon's own (a reading's timestamp is when the daemon took it), so what a RunEngine records
matches what the daemon's run file holds. Subscriptions ride the daemon's streams
(``StreamParameters``, ``StreamValues``): the current value first, then every change; they are
latest-value streams, so a slow callback skips values, never the hardware.

Error handling: a put the daemon refuses raises the client's typed error with the daemon's
message (``InvalidArgument: wavelength: 5000.0 nm is outside the allowed range 690 to 1040
nm``); a subscription whose stream ends logs why and stops calling back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from bluesky.protocols import Reading
from event_model import DataKey, Limits, LimitsRange
from ophyd_async.core import Callback, SignalBackend, SignalMetadata, make_datakey

from .._errors import BenchError
from .._types import ParameterInfo, PlainValue
from ._session import Session

logger = logging.getLogger(__name__)

V = TypeVar("V", bool, int, float, str)

#: The daemon's dtype names as Python types; anything else (an enum's name) travels as text.
DATATYPES: dict[str, type[bool | int | float | str]] = {
    "float": float,
    "int": int,
    "bool": bool,
    "str": str,
}


def datatype_of(info: ParameterInfo) -> type[bool | int | float | str]:
    return DATATYPES.get(info.dtype, str)


def coerce(datatype: type[Any], value: object) -> Any:
    """A daemon value as the signal's datatype (an int for a float parameter, an enum's name)."""
    if value is None:
        return datatype()
    if isinstance(value, datatype) and not (datatype is int and isinstance(value, bool)):
        return value
    if datatype is str:
        return str(value)
    return datatype(value)


def plain(value: Any) -> bool | int | float | str:
    """What the client sends: numpy scalars and enums become plain Python values."""
    if isinstance(value, bool | int | float | str):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        result = item()
        if isinstance(result, bool | int | float | str):
            return result
    return str(getattr(value, "value", value))


def limits_of(pair: tuple[float, float] | None) -> Limits | None:
    if pair is None:
        return None
    low, high = pair
    span = LimitsRange(
        low=None if math.isinf(low) else low, high=None if math.isinf(high) else high
    )
    return Limits(control=span, display=span)


def metadata_of(
    units: str, limits: tuple[float, float] | None, choices: tuple[PlainValue, ...] = ()
) -> SignalMetadata:
    metadata = SignalMetadata()
    if units:
        metadata["units"] = units
    bounds = limits_of(limits)
    if bounds is not None:
        metadata["limits"] = bounds
    if choices:
        metadata["choices"] = [str(c) for c in choices]
    return metadata


def reading(value: V, timestamp: float, severity: int = 0, message: str = "") -> Reading[V]:
    result = Reading(value=value, timestamp=timestamp or time.time(), alarm_severity=severity)
    if message:
        result["message"] = message
    return result


class StreamingBackend(SignalBackend[V], Generic[V]):
    """A backend whose monitor is a task reading one of the daemon's streams."""

    def __init__(self, datatype: Any, session: Session) -> None:
        super().__init__(datatype)
        self.session = session
        self._monitor: asyncio.Task[None] | None = None
        self.flowing = asyncio.Event()  # the monitor's stream has delivered its first value

    def changes(self) -> AsyncIterator[Reading[V]]:
        raise NotImplementedError

    async def connect(self, timeout: float) -> None:
        """Nothing to open: the session's connection is shared, and ``connect`` has listed
        the device already."""

    @property
    def monitored(self) -> bool:
        return self._monitor is not None and not self._monitor.done()

    def set_callback(self, callback: Callback[Reading[V]] | None) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
        self.flowing = asyncio.Event()
        if callback is not None:
            self._monitor = asyncio.get_running_loop().create_task(self._follow(callback))

    async def _follow(self, callback: Callback[Reading[V]]) -> None:
        try:
            async for item in self.changes():
                callback(item)
                self.flowing.set()
        except BenchError as error:
            logger.warning("%s: no more updates: %s", self.source("", True), error)

    async def get_value(self) -> V:
        return (await self.get_reading())["value"]

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor


class ParameterBackend(StreamingBackend[Any]):
    """One daemon Parameter: get/set over GetParameter/SetParameter, monitored through
    StreamParameters; units, limits and choices from ListParameters."""

    def __init__(self, session: Session, info: ParameterInfo, address: str) -> None:
        super().__init__(datatype_of(info), session)
        self.info = info
        self._source = f"benchd://{address}/{info.device}/{info.name}"

    def source(self, name: str, read: bool) -> str:
        return self._source

    def _reading(self, value: PlainValue, timestamp: float) -> Reading[Any]:
        assert self.datatype is not None
        return reading(coerce(self.datatype, value), timestamp)

    async def get_reading(self) -> Reading[Any]:
        value = await self.session.bench.get(self.info.device, self.info.name)
        return self._reading(value.value, value.timestamp)

    async def get_setpoint(self) -> Any:
        value = await self.session.bench.get(self.info.device, self.info.name)
        assert self.datatype is not None
        return coerce(self.datatype, value.value if value.desired is None else value.desired)

    async def put(self, value: Any) -> None:
        if value is None:
            raise ValueError(f"{self.info.device}.{self.info.name}: no value to set")
        await self.session.bench.set(self.info.device, self.info.name, plain(value))

    async def get_datakey(self, source: str) -> DataKey:
        assert self.datatype is not None
        value = (await self.get_reading())["value"]
        choices = self.info.choices if self.datatype is str else ()
        metadata = metadata_of(self.info.units, self.info.limits, choices)
        return make_datakey(self.datatype, value, source, metadata)

    async def changes(self) -> AsyncIterator[Reading[Any]]:
        stream = self.session.bench.stream_parameters(self.info.device, [self.info.name])
        async for value in stream:
            yield self._reading(value.value, value.timestamp)


class AxisInfo:
    """What a Movable device said about itself (units, travel), shared by its signals; the
    travel is refreshed before each move so limits changed on the daemon are seen."""

    def __init__(
        self, device: str, units: str, limits: tuple[float, float] | None, address: str
    ) -> None:
        self.device = device
        self.units = units
        self.limits = limits
        self.source = f"benchd://{address}/{device}"
        self.target: float | None = None  # the last position this client asked for
        self.moving = False  # a move by this client is in flight

    def metadata(self) -> SignalMetadata:
        return metadata_of(self.units, self.limits)


class PositionBackend(StreamingBackend[float]):
    """An axis's readback: GetPosition (read from the hardware) and, while monitored, its
    ``position`` parameter, which the driver reports while the axis moves (GetPosition waits
    for the move to end: the axis handles one request at a time)."""

    def __init__(self, session: Session, axis: AxisInfo, *, has_parameter: bool) -> None:
        super().__init__(float, session)
        self.axis = axis
        self.has_parameter = has_parameter

    def source(self, name: str, read: bool) -> str:
        return self.axis.source

    async def get_reading(self) -> Reading[float]:
        where = await self.session.bench.position(self.axis.device)
        return reading(where.position, where.timestamp)

    async def get_setpoint(self) -> float:
        return self.axis.target if self.axis.target is not None else await self.get_value()

    async def put(self, value: float | None) -> None:
        raise TypeError(f"{self.axis.device}'s readback is read-only; set the device instead")

    async def get_datakey(self, source: str) -> DataKey:
        return make_datakey(float, await self.get_value(), source, self.axis.metadata())

    async def changes(self) -> AsyncIterator[Reading[float]]:
        if self.has_parameter:
            stream = self.session.bench.stream_parameters(self.axis.device, ["position"])
            async for value in stream:
                yield reading(coerce(float, value.value), value.timestamp)
        else:
            async for where in self.session.bench.stream_position(self.axis.device, 0.05):
                yield reading(where.position, where.timestamp)


class SetpointBackend(StreamingBackend[float]):
    """Where the axis is going: the target while this client's move is in flight, else where
    it rests (other clients move the axis too, and the daemon keeps no setpoint, so a stale
    target would send ``rel_scan`` from the wrong place). Putting a value starts a move and
    returns at once, like an EPICS motor's setpoint; the device's ``set`` waits for it."""

    def __init__(self, session: Session, axis: AxisInfo) -> None:
        super().__init__(float, session)
        self.axis = axis
        self._callback: Callback[Reading[float]] | None = None

    def source(self, name: str, read: bool) -> str:
        return self.axis.source

    async def get_reading(self) -> Reading[float]:
        if self.axis.moving and self.axis.target is not None:
            return reading(self.axis.target, time.time())
        where = await self.session.bench.position(self.axis.device)
        return reading(where.position, where.timestamp)

    async def get_setpoint(self) -> float:
        return await self.get_value()

    async def put(self, value: float | None) -> None:
        if value is None:
            raise ValueError(f"{self.axis.device}: no position to move to")
        target = float(value)
        await self.session.guard(
            self.session.bench.move_to(self.axis.device, target, wait=False),
            what=f"a move of {self.axis.device}",
        )
        self.note(target)

    def note(self, target: float) -> None:
        self.axis.target = target
        if self._callback is not None:
            self._callback(reading(target, time.time()))

    async def get_datakey(self, source: str) -> DataKey:
        return make_datakey(float, await self.get_value(), source, self.axis.metadata())

    def set_callback(self, callback: Callback[Reading[float]] | None) -> None:
        self._callback = callback
        if callback is not None:
            super().set_callback(callback)  # one task: the current value, then our puts

    async def changes(self) -> AsyncIterator[Reading[float]]:
        yield await self.get_reading()


class ReadingBackend(StreamingBackend[float]):
    """A Readable's value: ReadValue takes a fresh reading on every read (and the daemon
    records it in a run, if one records), so a RunEngine event holds exactly what the file
    holds. Flags (saturated, over-range, busy) raise the alarm severity and are the message."""

    def __init__(
        self,
        session: Session,
        device: str,
        units: str,
        address: str,
        epoch: Callable[[], int | None],
    ) -> None:
        super().__init__(float, session)
        self.device = device
        self.units = units
        self.epoch = epoch
        self._source = f"benchd://{address}/{device}"

    def source(self, name: str, read: bool) -> str:
        return self._source

    async def get_reading(self) -> Reading[float]:
        value = await self.session.guard(
            self.session.bench.read(self.device),
            what=f"a reading of {self.device}",
            since=self.epoch(),
        )
        severity = 2 if value.flags else 0
        return reading(value.value, value.timestamp, severity, ",".join(value.flags))

    async def get_setpoint(self) -> float:
        raise TypeError(f"{self.device} is read-only")

    async def put(self, value: float | None) -> None:
        raise TypeError(f"{self.device} is read-only")

    async def get_datakey(self, source: str) -> DataKey:
        metadata = metadata_of(self.units, None)
        return make_datakey(float, 0.0, source, metadata)

    async def changes(self) -> AsyncIterator[Reading[float]]:
        async for value in self.session.bench.stream_values(self.device, 0.1):
            severity = 2 if value.flags else 0
            yield reading(value.value, value.timestamp, severity, ",".join(value.flags))
