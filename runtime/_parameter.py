"""Parameter: one hardware setting, validated before it touches the hardware.

The order of a write is the point of this class (the Rust original wrote first and validated
after): coerce and validate -> record the desired value -> hardware write -> read-back ->
compare within tolerance -> publish what the hardware *actually* holds. A refused value never
reaches the write callback; a read-back mismatch is an error, and the actual value is still
published so nobody keeps believing the requested one.

Parameters belong to one actor and are only written from its handlers, so writes never race.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._errors import ReadbackMismatch, ReadOnlyError, ValidationError
from ._observable import Observable, Sample, Source, Subscription

T = TypeVar("T")

Writer = Callable[[T], Awaitable[None]]
Reader = Callable[[], Awaitable[T]]

_DTYPE_NAMES = {float: "float", int: "int", bool: "bool", str: "str"}


@dataclass(frozen=True, slots=True)
class ParameterInfo:
    """The static description of a parameter, as plain data for clients and manifests."""

    name: str
    dtype: str
    units: str
    limits: tuple[float, float] | None
    choices: tuple[Any, ...] | None
    read_only: bool
    hazardous: bool
    description: str


@dataclass(frozen=True, slots=True)
class ParameterSnapshot:
    """The state of a parameter at one instant, as plain data."""

    name: str
    value: Any
    desired: Any
    units: str
    timestamp: float
    version: int
    source: Source


class Parameter(Generic[T]):
    """A typed, limited, observable hardware setting.

    ``dtype`` is ``float``, ``int``, ``bool``, ``str`` or an ``enum.Enum`` subclass. ``limits``
    (inclusive) apply to numbers, ``choices`` to anything. ``write`` sends a value to the
    hardware; ``read`` fetches the actual value (if omitted, a successful write is trusted).
    ``tolerance`` is the absolute difference accepted between a number written and read back.
    ``hazardous`` parameters (emission, motion) are refused while the e-stop is latched; pass a
    predicate instead of True when only some values are hazardous (opening a shutter is,
    closing it never is: an operator must always be able to make things safer).
    ``allow_nan`` lets a measured value say "no valid reading" (limits do not apply to NaN).
    ``check`` is for rules limits and choices cannot say (a camera ROI that must fit the sensor,
    a setting refused while an acquisition runs): it gets the coerced value and raises
    ValidationError, so the refusal happens before the desired value is recorded or written.
    """

    def __init__(
        self,
        name: str,
        dtype: type[T],
        initial: T,
        *,
        units: str = "",
        limits: tuple[float, float] | None = None,
        choices: Sequence[T] | None = None,
        read_only: bool = False,
        hazardous: bool | Callable[[T], bool] = False,
        tolerance: float = 0.0,
        allow_nan: bool = False,
        description: str = "",
        check: Callable[[T], None] | None = None,
        write: Writer[T] | None = None,
        read: Reader[T] | None = None,
    ) -> None:
        if limits is not None and not limits[0] <= limits[1]:
            raise ValueError(f"{name}: limits {limits} are not (low, high)")
        if limits is not None and dtype not in (int, float):
            raise ValueError(f"{name}: limits apply to int or float parameters, not {dtype}")
        if choices is None and isinstance(dtype, type) and issubclass(dtype, enum.Enum):
            choices = tuple(dtype)
        self.name = name
        self.dtype = dtype
        self.units = units
        self.limits = limits
        self.choices: tuple[T, ...] | None = tuple(choices) if choices is not None else None
        self.read_only = read_only
        self._hazardous = hazardous
        self.tolerance = tolerance
        self.allow_nan = allow_nan
        self.description = description
        self._check = check
        self._write = write
        self._read = read
        checked = self.validate(initial, _initial=True)
        self._desired: T = checked
        self._desired_source = Source.DEFAULT
        self._observable: Observable[T] = Observable(checked)

    # -- reading -----------------------------------------------------------------------------

    @property
    def value(self) -> T:
        """The actual value (last read back from, or confirmed by, the hardware)."""
        return self._observable.value

    @property
    def desired(self) -> T:
        """The last value a user or script asked for; re-applied after a restart."""
        return self._desired

    @property
    def desired_source(self) -> Source:
        return self._desired_source

    def sample(self) -> Sample[T]:
        return self._observable.sample()

    def subscribe(self, *, include_current: bool = True) -> Subscription[T]:
        return self._observable.subscribe(include_current=include_current)

    @property
    def observable(self) -> Observable[T]:
        return self._observable

    def info(self) -> ParameterInfo:
        return ParameterInfo(
            name=self.name,
            dtype=self._dtype_name(),
            units=self.units,
            limits=self.limits,
            choices=tuple(_plain(c) for c in self.choices) if self.choices else None,
            read_only=self.read_only,
            hazardous=bool(self._hazardous),
            description=self.description,
        )

    def snapshot(self) -> ParameterSnapshot:
        sample = self._observable.sample()
        return ParameterSnapshot(
            name=self.name,
            value=_plain(sample.value),
            desired=_plain(self._desired),
            units=self.units,
            timestamp=sample.timestamp,
            version=sample.version,
            source=sample.source,
        )

    @property
    def hazardous(self) -> bool:
        """Whether any value of this parameter can be hazardous."""
        return bool(self._hazardous)

    def makes_safe(self, value: T) -> bool:
        """Whether writing this (validated) value is a step toward the safe state — closing a
        shutter, switching emission off: the only writes allowed while the e-stop is latched.
        Only a parameter with a hazard predicate has such values."""
        return callable(self._hazardous) and not self._hazardous(value)

    def is_hazardous(self, value: T) -> bool:
        """Whether writing this (validated) value is hazardous."""
        if callable(self._hazardous):
            return bool(self._hazardous(value))
        return self._hazardous

    # -- validation ----------------------------------------------------------------------------

    def validate(self, value: object, *, _initial: bool = False) -> T:
        """The value coerced to ``dtype`` if it is allowed; ValidationError saying why not."""
        if self.read_only and not _initial:
            raise ReadOnlyError(f"{self.name} is read-only")
        checked = self._coerce(value)
        if self.limits is not None and not (self.allow_nan and math.isnan(checked)):  # type: ignore[arg-type]
            low, high = self.limits
            if not low <= checked <= high:  # type: ignore[operator]
                raise ValidationError(
                    f"{self.name}: {value!r}{self._units()} is outside the allowed range"
                    f" {low:g} to {high:g}{self._units()}"
                )
        if self.choices is not None and checked not in self.choices:
            allowed = ", ".join(repr(_plain(c)) for c in self.choices)
            raise ValidationError(f"{self.name}: {value!r} is not one of {allowed}")
        if self._check is not None and not _initial:
            self._check(checked)
        return checked

    def _coerce(self, value: object) -> T:
        dtype: Any = self.dtype
        if isinstance(dtype, type) and issubclass(dtype, enum.Enum):
            if isinstance(value, dtype):
                return value  # type: ignore[return-value]
            for member in dtype:
                if value in (member.value, member.name):
                    return member  # type: ignore[return-value]
            allowed = ", ".join(repr(m.value) for m in dtype)
            raise ValidationError(f"{self.name}: {value!r} is not one of {allowed}")
        if dtype is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                number = float(value)
                if math.isnan(number) and self.allow_nan:
                    return number  # type: ignore[return-value]
                if not math.isfinite(number):
                    raise ValidationError(f"{self.name}: {value!r} is not a finite number")
                return number  # type: ignore[return-value]
        elif dtype is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value  # type: ignore[return-value]
            if isinstance(value, float) and value.is_integer():
                return int(value)  # type: ignore[return-value]
        elif isinstance(value, dtype):
            return value  # type: ignore[no-any-return]
        raise ValidationError(
            f"{self.name}: expected {self._dtype_name()}, got {type(value).__name__} {value!r}"
        )

    # -- writing -------------------------------------------------------------------------------

    async def set(self, value: object, *, source: Source = Source.USER) -> ParameterSnapshot:
        """Validate, write to the hardware, read back, publish; the snapshot of the result.

        Error handling: ValidationError (nothing written) if the value is not allowed;
        ReadbackMismatch (actual value published) if the hardware holds something else;
        whatever the write or read callbacks raise (a transport error) propagates unchanged.
        """
        checked = self.validate(value)
        self._desired, self._desired_source = checked, source
        if self._write is not None:
            await self._write(checked)
        actual = await self._read() if self._read is not None else checked
        if self._read is not None and not self._matches(checked, actual):
            self._publish(actual, Source.HARDWARE)
            raise ReadbackMismatch(self.name, _plain(checked), _plain(actual), self.tolerance)
        self._publish(actual, source)
        return self.snapshot()

    async def refresh(self) -> Sample[T]:
        """Read the actual value from the hardware and publish it."""
        if self._read is None:
            return self._observable.sample()
        return self._publish(await self._read(), Source.HARDWARE)

    def report(self, value: T) -> Sample[T]:
        """Publish a value the hardware reported on its own (a poll, an unsolicited message)."""
        return self._publish(value, Source.HARDWARE)

    async def reapply(self) -> ParameterSnapshot:
        """Write the desired value again (after a reconnect or restart) and verify it."""
        return await self.set(self._desired, source=self._desired_source)

    def close(self) -> None:
        self._observable.close()

    def _publish(self, value: T, source: Source) -> Sample[T]:
        return self._observable.set(value, source)

    def _matches(self, requested: T, actual: T) -> bool:
        if isinstance(requested, (int, float)) and isinstance(actual, (int, float)):
            return abs(float(requested) - float(actual)) <= self.tolerance
        return requested == actual

    def _units(self) -> str:
        return f" {self.units}" if self.units else ""

    def _dtype_name(self) -> str:
        return _DTYPE_NAMES.get(self.dtype, getattr(self.dtype, "__name__", repr(self.dtype)))

    def __repr__(self) -> str:
        return f"<Parameter {self.name}={self.value!r}{self._units()}>"


def _plain(value: object) -> object:
    """Enums become their values so snapshots are plain data (JSON, HDF5 attributes)."""
    return value.value if isinstance(value, enum.Enum) else value
