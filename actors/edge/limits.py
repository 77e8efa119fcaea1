"""What a client may send: the size of a request message, and each field's length or count.

Every bound is checked before any work — the request-size cap on the message's 5-byte length
prefix, before its body is read; the field limits right after decoding, before a servicer sees
the request — so no request makes the daemon hold, parse, log or quote more than these allow.
One walk over the fields a message actually carries (protobuf's ``ListFields``), by field
*name*, covers every service, nested messages (``ScanDefinition.axes[i].device``), maps and
fields a future .proto adds (they get the default limits), with no per-servicer copy.

| Field (any message) | Limit |
|---|---|
| names (*): a map's keys | 128 characters |
| ``reason``, ``description`` | 1000 characters |
| ``text`` (a parameter's string value) | 256 characters |
| ``metadata_json``, ``parameters_json`` | 65 536 characters |
| ``source`` (a script) | ``[edge] max_script_bytes`` bytes of UTF-8 |
| any other string or bytes field, a map's values | 4096 |
| any repeated field or map | 256 entries (a list scan's ``positions``: 100 000) |

(*) ``device``, ``devices[]``, ``name``, ``names[]``, ``id``, ``camera``, ``stream``, ``read[]``,
``compression``, ``service``, ``host``, and a plan's ``axis``, ``detector``, ``signal``,
``parameter``.

The request cap is ``[edge] max_request_bytes`` (default 4 MiB) for every method but the three
that carry a script (``CheckScript``, ``UploadScript``, ``StartScript``), whose cap is
``max_script_bytes`` (default 256 KiB) plus room for its name and parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpclib.const import Status

from runtime.config import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_SCRIPT_BYTES, EdgeConfig

from .errors import RequestRefused, quote, refused

NAME_CHARS = 128
REASON_CHARS = 1000
TEXT_CHARS = 256
JSON_CHARS = 64 * 1024
DEFAULT_CHARS = 4096
ITEMS = 256

#: Field name -> the most characters it may hold (``source`` is checked in bytes).
FIELD_CHARS: Mapping[str, int] = {
    **dict.fromkeys(
        (
            "device",
            "devices",
            "name",
            "names",
            "id",
            "camera",
            "stream",
            "read",
            "compression",
            "service",
            "host",
            "axis",
            "detector",
            "signal",
            "parameter",
        ),
        NAME_CHARS,
    ),
    "reason": REASON_CHARS,
    "description": REASON_CHARS,
    "text": TEXT_CHARS,
    "metadata_json": JSON_CHARS,
    "parameters_json": JSON_CHARS,
}

#: Repeated fields that may hold more than ``ITEMS`` entries: a list scan's positions (numbers
#: only; the request cap bounds them too, and the validator's work is linear in them).
FIELD_ITEMS: Mapping[str, int] = {"positions": 100_000}


def items_limit(name: str) -> int:
    """The most entries the repeated field ``name`` may hold."""
    return FIELD_ITEMS.get(name, ITEMS)


#: Methods whose request carries a script: their cap is ``max_script_bytes`` plus this much
#: for the rest of the message (a name, 64 KiB of parameters).
SCRIPT_METHODS = frozenset(
    {
        "/benchd.v1.Control/CheckScript",
        "/benchd.v1.Control/UploadScript",
        "/benchd.v1.Control/StartScript",
    }
)
SCRIPT_OVERHEAD = JSON_CHARS + 4096

_STRING = FieldDescriptor.TYPE_STRING
_BYTES = FieldDescriptor.TYPE_BYTES
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_script_bytes: int = DEFAULT_MAX_SCRIPT_BYTES

    @classmethod
    def from_config(cls, config: EdgeConfig) -> RequestLimits:
        return cls(config.max_request_bytes, config.max_script_bytes)

    def message_bytes(self, method: str) -> int:
        """The largest request message ``method`` accepts."""
        if method in SCRIPT_METHODS:
            return self.max_script_bytes + SCRIPT_OVERHEAD
        return self.max_request_bytes

    def key(self, method: str) -> str:
        """The config key behind :meth:`message_bytes`, for error messages."""
        return "max_script_bytes" if method in SCRIPT_METHODS else "max_request_bytes"

    def check(self, message: Message) -> None:
        """RequestRefused (INVALID_ARGUMENT) naming the first field over its limit."""
        problem = self._problem(message, "")
        if problem is not None:
            raise refused(Status.INVALID_ARGUMENT, problem)

    def _problem(self, message: Message, prefix: str) -> str | None:
        for field, value in message.ListFields():
            path = prefix + field.name
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                problem = self._map(field, value, path)
            elif field.is_repeated:
                problem = self._repeated(field, value, path)
            else:
                problem = self._single(field, value, path)
            if problem is not None:
                return problem
        return None

    def _single(self, field: FieldDescriptor, value: Any, path: str) -> str | None:
        if field.type == _MESSAGE:
            return self._problem(value, path + ".")
        if field.type in (_STRING, _BYTES):
            return self._text(field.name, value, path)
        return None

    def _repeated(self, field: FieldDescriptor, values: Any, path: str) -> str | None:
        most = items_limit(field.name)
        if len(values) > most:
            return f"{path}: at most {most} entries, got {len(values)}"
        for index, value in enumerate(values):
            problem = self._single(field, value, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None

    def _map(self, field: FieldDescriptor, values: Any, path: str) -> str | None:
        if len(values) > ITEMS:
            return f"{path}: at most {ITEMS} entries, got {len(values)}"
        assert field.message_type is not None  # a map field's entry type
        value_field = field.message_type.fields_by_name["value"]
        for key, value in values.items():
            if isinstance(key, str) and len(key) > NAME_CHARS:
                return f"{path}: keys have at most {NAME_CHARS} characters, got {quote(key)}"
            where = f"{path}[{quote(key, 40)}]"
            problem = self._single(value_field, value, where)
            if problem is not None:
                return problem
        return None

    def _text(self, name: str, value: str | bytes, path: str) -> str | None:
        if name == "source" and isinstance(value, str):
            limit = self.max_script_bytes
            # Characters never outnumber UTF-8 bytes: encode only when it could matter.
            if len(value) > limit or (len(value) > limit // 4 and len(value.encode()) > limit):
                return (
                    f"{path}: a script may have at most {limit} bytes ([edge] max_script_bytes),"
                    f" got {len(value.encode())}"
                )
            return None
        limit = FIELD_CHARS.get(name, DEFAULT_CHARS)
        if len(value) > limit:
            unit = "characters" if isinstance(value, str) else "bytes"
            return f"{path}: at most {limit} {unit}, got {quote(value)}"
        return None


def too_large(method: str, size: int, limits: RequestLimits) -> RequestRefused:
    """RESOURCE_EXHAUSTED for a request message whose length prefix is over the cap."""
    cap = limits.message_bytes(method)
    return refused(
        Status.RESOURCE_EXHAUSTED,
        f"the request message is {size} bytes; {method.rsplit('/', 1)[-1]} accepts at most"
        f" {cap} bytes ([edge] {limits.key(method)})",
    )
