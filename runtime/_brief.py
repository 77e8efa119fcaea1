"""A bounded description of a message, built without ever building its whole ``repr``.

Why: an error names the request it refuses, and a request can hold what a client sent — a
400 000-character name, a list scan of a million positions. ``repr`` of those costs the event
loop time and memory in proportion (a 4 MB plan: ~0.2 s, a 20 MB string) and then quotes it
whole into a log line or a status. This shows the type and each field cut short instead.
"""

from __future__ import annotations

import dataclasses
import enum

FIELD_CHARS = 60
TOTAL_CHARS = 300


def brief(value: object, limit: int = TOTAL_CHARS) -> str:
    """``SetParameter(name='directory', value='/aaaa…' (100001 characters))``, at most
    ``limit`` characters."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ", ".join(
            f"{f.name}={_field(getattr(value, f.name, None))}" for f in dataclasses.fields(value)
        )
        text = f"{type(value).__name__}({fields})"
    else:
        text = _field(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _field(value: object) -> str:
    if isinstance(value, str):
        if len(value) <= FIELD_CHARS:
            return repr(value)
        return f"{value[:FIELD_CHARS]!r}… ({len(value)} characters)"
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if -(10**18) < value < 10**18 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (tuple, list, set, frozenset, dict)):
        if not value:
            return repr(value)
        return f"<{type(value).__name__} of {len(value)}>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"{type(value).__name__}(…)"
    return f"<{type(value).__name__}>"


__all__ = ["brief"]
