"""Kernel values <-> protobuf messages (no logic beyond the translation)."""

from __future__ import annotations

import json
import math
from typing import Any

from benchd.v1 import common_pb2, hardware_pb2
from runtime import ActorState, FailureRecord, ParameterInfo, ParameterSnapshot, Sample, Source

from ..acquisition.problems import MAX_JSON_DEPTH, json_depth
from .errors import invalid, quote

_INT64 = (-(2**63), 2**63 - 1)

SOURCES = {
    Source.DEFAULT: common_pb2.SOURCE_DEFAULT,
    Source.USER: common_pb2.SOURCE_USER,
    Source.SCRIPT: common_pb2.SOURCE_SCRIPT,
    Source.HARDWARE: common_pb2.SOURCE_HARDWARE,
}


def device_state(state: ActorState) -> common_pb2.DeviceState:
    if state is ActorState.RUNNING:
        return common_pb2.DEVICE_STATE_READY
    if state is ActorState.DOWN:
        return common_pb2.DEVICE_STATE_DOWN
    return common_pb2.DEVICE_STATE_DEGRADED


def state_label(state: ActorState) -> str:
    return {ActorState.RUNNING: "ready", ActorState.DOWN: "down"}.get(state, "degraded")


def to_value(value: object) -> common_pb2.Value:
    """A plain kernel value (bool, int, float, str; None: unset) as a Value."""
    if value is None:
        return common_pb2.Value()
    if isinstance(value, bool):
        return common_pb2.Value(flag=value)
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return common_pb2.Value(integer=value)
    if isinstance(value, float):
        return common_pb2.Value(number=value)
    return common_pb2.Value(text=str(value))


def from_value(value: common_pb2.Value, what: str) -> object:
    """The Python value in a Value; INVALID_ARGUMENT if it holds none."""
    kind = value.WhichOneof("kind")
    if kind is None:
        raise invalid(f"{what}: no value given; set one of number, integer, flag, text")
    result: object = getattr(value, kind)
    return result


def failure(record: FailureRecord | None) -> common_pb2.Failure | None:
    if record is None:
        return None
    return common_pb2.Failure(type=record.type, message=record.message, when=record.when)


def limits(pair: tuple[float, float] | None) -> common_pb2.Limits | None:
    if pair is None:
        return None
    return common_pb2.Limits(low=pair[0], high=pair[1])


def parameter_info(info: ParameterInfo) -> hardware_pb2.ParameterInfo:
    return hardware_pb2.ParameterInfo(
        name=info.name,
        dtype=info.dtype,
        units=info.units,
        limits=limits(info.limits),
        choices=[to_value(c) for c in info.choices or ()],
        read_only=info.read_only,
        hazardous=info.hazardous,
        description=info.description,
    )


def parameter_value(device: str, snapshot: ParameterSnapshot) -> hardware_pb2.ParameterValue:
    return hardware_pb2.ParameterValue(
        device=device,
        name=snapshot.name,
        value=to_value(snapshot.value),
        desired=to_value(snapshot.desired),
        units=snapshot.units,
        timestamp=snapshot.timestamp,
        version=snapshot.version,
        source=SOURCES.get(snapshot.source, common_pb2.SOURCE_UNSPECIFIED),
    )


def sample_value(
    device: str, name: str, units: str, sample: Sample[object]
) -> hardware_pb2.ParameterValue:
    value = sample.value
    plain = getattr(value, "value", value) if not isinstance(value, (int, float, str)) else value
    return hardware_pb2.ParameterValue(
        device=device,
        name=name,
        value=to_value(plain),
        units=units,
        timestamp=sample.timestamp,
        version=sample.version,
        source=SOURCES.get(sample.source, common_pb2.SOURCE_UNSPECIFIED),
    )


def finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise invalid(f"{what} must be a finite number, got {value}")
    return value


def check_value(info: ParameterInfo, value: object) -> str | None:
    """Why ``value`` would be refused by this parameter (None: it would be accepted).

    The same rules as ``Parameter.validate``, checked from its public description so a preset
    can be validated as a whole before anything is written.
    """
    if info.read_only:
        return f"{info.name} is read-only"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if info.dtype == "float" and not (number and math.isfinite(float(value))):  # type: ignore[arg-type]
        return f"{info.name}: expected a finite float, got {quote(value)}"
    if info.dtype == "int" and not (
        number and float(value).is_integer()  # type: ignore[arg-type]
    ):
        return f"{info.name}: expected an int, got {quote(value)}"
    if info.dtype == "bool" and not isinstance(value, bool):
        return f"{info.name}: expected a bool, got {quote(value)}"
    if info.dtype == "str" and not isinstance(value, str):
        return f"{info.name}: expected a str, got {quote(value)}"
    if info.limits is not None and number:
        low, high = info.limits
        if not low <= float(value) <= high:  # type: ignore[arg-type]
            return f"{info.name}: {quote(value)} is outside the allowed range {low:g} to {high:g}"
    if info.choices is not None and value not in info.choices:
        allowed = ", ".join(repr(c) for c in info.choices)
        return f"{info.name}: {quote(value)} is not one of {allowed}"
    return None


MAX_JSON_BYTES = 64 * 1024


def json_object(text: str, field: str, example: str) -> dict[str, Any]:
    """A request's JSON-object field (metadata, script parameters); {} when empty.

    Error handling: INVALID_ARGUMENT naming the field, for text over 64 KiB, nested deeper
    than 32 levels, text that is not JSON, or JSON that is not an object (``example`` shows one).
    """
    if not text:
        return {}
    if len(text) > MAX_JSON_BYTES:
        raise invalid(f"{field} is limited to {MAX_JSON_BYTES} characters, got {len(text)}")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise invalid(f"{field} is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(f"{field} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise invalid(f"{field} must be a JSON object, e.g. {example}")
    return value
