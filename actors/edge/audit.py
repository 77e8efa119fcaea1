"""The audit trail: who moved, set, ran or stopped what, when, and how it ended.

Every request that changes the bench (the methods ``auth.py`` reserves for operators, and the
stops open to everyone) leaves exactly one record, made in one place — the request guard, around
the servicer — so no servicer can forget it and none writes its own. A record says who (the
token's client and role), from where (the peer), what (method, target, arguments: bounded, a
client's long text quoted short), the result ("ok", or the status code and a short message) and
how long it took. Reads are not audited: an observer watching a run leaves no trace.

Each record is one line on the ``benchd.audit`` logger, with the record as structured data
(``extra={"audit": ...}``: a JSON log carries it as an object, see ``runtime/logs.py``), and is
handed to the trail's sinks: :meth:`AuditTrail.add_sink` is the hook through which the run being
recorded gets the entries made while it runs (docs/edge.md, "Audit trail").

Error handling: a sink that raises is logged once per failure and never fails the request.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message as ProtoMessage

from runtime import ActorSystem, NotFoundError

from ..pipeline.audit_trail import AuditEntry as RunAuditEntry
from ..pipeline.audit_trail import RecordAudit
from ..pipeline.recorder import RECORDER_NAME
from .auth import OPERATOR_METHODS, STOP_METHODS

logger = logging.getLogger("benchd.audit")
_failures = logging.getLogger("actors.edge")

#: Methods that change the bench: each call leaves one audit record.
AUDITED = OPERATOR_METHODS | STOP_METHODS
#: The most request fields an entry lists, and characters per value (a value is cut, with its
#: length, past that: a script's source, a run's metadata).
MAX_FIELDS = 12
VALUE_CHARS = 80
#: The most items of a repeated field shown (a list scan's 100 000 positions: 4 and a count).
MAX_ITEMS = 4
RESULT_CHARS = 200
#: Fields that name what a request acts on, in the order they are looked for.
TARGET_FIELDS = ("device", "camera", "name", "id")

Sink = Callable[["AuditEntry"], None]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One mutating request, as the trail keeps it."""

    when: float  # Unix time the request arrived
    who: str  # the client's name from its token ("local" without tokens); "" if unknown
    role: str  # operator, observer; "" if the request was not authenticated
    peer: str  # "10.0.0.7:51234"
    method: str  # "Hardware/MoveAbsolute"
    target: str  # the device, run, preset, script or scan it acts on ("" if none)
    arguments: Mapping[str, str] = field(default_factory=dict)  # bounded, quoted short
    result: str = "ok"  # "ok", or "FAILED_PRECONDITION: e-stop latched since ..."
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "when": self.when,
            "who": self.who,
            "role": self.role,
            "peer": self.peer,
            "method": self.method,
            "target": self.target,
            "arguments": dict(self.arguments),
            "result": self.result,
            "duration_ms": round(self.duration_ms, 3),
        }

    def what(self) -> str:
        """What was asked, without who or the result: ``Hardware/SetParameter esp300.axis1
        name='velocity' value={number=2.5}``."""
        words = [self.method, *([self.target] if self.target else [])]
        words.extend(f"{k}={v}" for k, v in self.arguments.items())
        return " ".join(words)

    def line(self) -> str:
        """The entry as one line of text for people (the JSON log carries it as data)."""
        who = f"{self.who or 'unknown'} ({self.role})" if self.role else self.who or "unknown"
        words = [f"{who} from {self.peer or 'unknown'}: {self.method}"]
        if self.target:
            words.append(self.target)
        words.extend(f"{k}={v}" for k, v in self.arguments.items())
        return f"{' '.join(words)} -> {self.result} ({self.duration_ms:.0f} ms)"


class AuditTrail:
    """Records entries: one log line each, and every sink gets the entry."""

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self.recorded = 0

    def add_sink(self, sink: Sink) -> Callable[[], None]:
        """Hand every later entry to ``sink`` too (called on the edge's loop: it must not block;
        pass the entry on, e.g. with an actor's ``try_tell``). Returns the function removing it."""
        self._sinks.append(sink)

        def remove() -> None:
            if sink in self._sinks:
                self._sinks.remove(sink)

        return remove

    def record(self, entry: AuditEntry) -> None:
        self.recorded += 1
        logger.info("%s", entry.line(), extra={"audit": entry.as_dict()})
        for sink in list(self._sinks):
            try:
                sink(entry)
            except Exception:
                _failures.exception("an audit sink failed on %s", entry.method)


def run_file_sink(system: ActorSystem) -> Sink:
    """A sink that hands each entry to the recorder, for the audit trail in the file of the run
    recording now (``/entry/audit``; ignored when none records). ``try_tell``: the edge's loop
    never waits for the recorder, a full mailbox costs the entry (the run counts what it
    drops past its own queue), and a recorder that is restarting misses the entry — the log
    line has it either way."""

    def sink(entry: AuditEntry) -> None:
        try:
            recorder = system.ref(RECORDER_NAME)
        except NotFoundError:
            return  # a bench without a recorder records no runs
        recorder.try_tell(
            RecordAudit(
                RunAuditEntry(
                    time=entry.when,
                    who=entry.who or "unknown",
                    role=entry.role,
                    what=entry.what(),
                    result=entry.result,
                )
            )
        )

    return sink


def short_method(method: str) -> str:
    """``/benchd.v1.Hardware/MoveAbsolute`` -> ``Hardware/MoveAbsolute``."""
    service, _, name = method.lstrip("/").rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{name}" if service else name


def peer_text(address: Any) -> str:
    """``host:port`` of a peer (``[host]:port`` for IPv6); "" if unknown."""
    if not address:
        return ""
    host, port = address[0], address[1] if len(address) > 1 else None
    host = f"[{host}]" if ":" in str(host) else str(host)
    return f"{host}:{port}" if port is not None else host


def target_of(*messages: ProtoMessage | None) -> str:
    """What a request acts on: its device, name or id, else the reply's (a new scan's id)."""
    for message in messages:
        if message is None:
            continue
        fields = message.DESCRIPTOR.fields_by_name
        for name in TARGET_FIELDS:
            descriptor = fields.get(name)
            if descriptor is not None and descriptor.type == FieldDescriptor.TYPE_STRING:
                value = getattr(message, name)
                if isinstance(value, str) and value:
                    return _cut(value, VALUE_CHARS)
    return ""


def arguments_of(message: ProtoMessage | None, target: str = "") -> dict[str, str]:
    """The request's set fields, each as a short text (the target field is left out: the entry
    names it already). Bounded whatever the request holds: at most MAX_FIELDS fields, each
    value at most VALUE_CHARS characters, at most MAX_ITEMS items of a repeated field."""
    if message is None:
        return {}
    arguments: dict[str, str] = {}
    fields = message.ListFields()
    for descriptor, value in fields:
        named = descriptor.name in TARGET_FIELDS and isinstance(value, str)
        if named and target and _cut(value, VALUE_CHARS) == target:
            continue  # the entry names it as its target already
        if len(arguments) == MAX_FIELDS:
            arguments["…"] = f"{len(fields) - MAX_FIELDS} more fields"
            break
        arguments[descriptor.name] = _cut(_value_text(descriptor, value), VALUE_CHARS)
    return arguments


def _value_text(descriptor: FieldDescriptor, value: Any, depth: int = 0) -> str:
    if descriptor.is_repeated:
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            items = itertools.islice(value.items(), MAX_ITEMS)
            shown = [f"{_cut(str(k), 20)}: {_scalar(v)}" for k, v in items]
            more = f", … ({len(value)} entries)" if len(value) > MAX_ITEMS else ""
            return "{" + ", ".join(shown) + more + "}"
        entries = list(value[:MAX_ITEMS])
        shown = [_single(descriptor, v, depth) for v in entries]
        more = f", … ({len(value)} items)" if len(value) > MAX_ITEMS else ""
        return "[" + ", ".join(shown) + more + "]"
    return _single(descriptor, value, depth)


def _single(descriptor: FieldDescriptor, value: Any, depth: int) -> str:
    if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
        if depth >= 3:
            return "{…}"
        parts = [
            f"{inner.name}={_value_text(inner, inner_value, depth + 1)}"
            for inner, inner_value in value.ListFields()[:MAX_ITEMS]
        ]
        return _cut("{" + " ".join(parts) + "}", VALUE_CHARS)
    if descriptor.type == FieldDescriptor.TYPE_ENUM and descriptor.enum_type is not None:
        found = descriptor.enum_type.values_by_number.get(value)
        return found.name if found is not None else str(value)
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"{value[:40]!r}… ({len(value)} characters)"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def result_text(status: str, message: str) -> str:
    """``CODE: message``, the message cut to RESULT_CHARS."""
    return f"{status}: {_cut(message, RESULT_CHARS)}" if message else status
