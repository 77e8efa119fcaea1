"""The one place kernel errors become gRPC statuses.

Every servicer raises or lets through a kernel error; :func:`grpc_error` turns it into a
``GRPCError`` whose status says what kind of problem it was and whose message (the kernel's own,
which names the device, the value and what is allowed) says what to do about it.

| Kernel error | Status |
|---|---|
| PresetExists (saving over a preset without overwrite) | ALREADY_EXISTS |
| ValidationError (incl. ReadOnlyError) | INVALID_ARGUMENT |
| NotFoundError | NOT_FOUND |
| EmergencyStopLatched | FAILED_PRECONDITION |
| Interrupted (an e-stop or abort cancelled the request) | ABORTED |
| ReadbackMismatch | ABORTED |
| UnhandledMessage (the device cannot do that) | UNIMPLEMENTED |
| other RequestError | FAILED_PRECONDITION |
| ActorUnavailable, a device that crashed handling the request | UNAVAILABLE |
| AskTimeout, NotSettled (WaitSettled ran out of time) | DEADLINE_EXCEEDED |
| anything else | INTERNAL (logged with its traceback; the daemon carries on) |

``ActorError`` is looked through to its root cause (axis -> controller -> transport).

Clients control what they send, so no message quotes a client's value whole: :func:`quote`
shows at most :data:`QUOTE_CHARS` characters of it and its length, and :func:`bounded` caps a
whole status message (its ``grpc-message`` header) at :data:`MESSAGE_BYTES` once encoded.
Why the cap matters beyond readability: the HTTP/2 header encoder (hpack's Huffman coder)
builds one integer the size of the header, bit by bit, so its cost grows with the *square* of
the header's length — a 400 000-character message cost ~17 s of event loop, 2 KiB costs ~0.1 ms.
"""

from __future__ import annotations

import logging
from urllib.parse import quote as percent_encode

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from runtime import (
    ActorError,
    ActorUnavailable,
    AskTimeout,
    EmergencyStopLatched,
    InsufficientResources,
    Interrupted,
    NotFoundError,
    ReadbackMismatch,
    RequestError,
    UnhandledMessage,
    ValidationError,
)

from ..capabilities import NotSettled
from ._preset_store import PresetExists

logger = logging.getLogger("actors.edge")

#: The most characters of a client's value an error message quotes.
QUOTE_CHARS = 100
#: The most bytes of a status message once percent-encoded for its ``grpc-message`` header.
MESSAGE_BYTES = 2048
#: Characters ``grpc-message`` sends as they are (grpclib's set: printable ASCII but ``%``).
_PLAIN = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"%"}

_REQUEST_STATUSES: tuple[tuple[type[BaseException], Status], ...] = (
    (PresetExists, Status.ALREADY_EXISTS),
    (NotSettled, Status.DEADLINE_EXCEEDED),
    (ValidationError, Status.INVALID_ARGUMENT),
    (NotFoundError, Status.NOT_FOUND),
    (EmergencyStopLatched, Status.FAILED_PRECONDITION),
    (Interrupted, Status.ABORTED),
    (ReadbackMismatch, Status.ABORTED),
    (UnhandledMessage, Status.UNIMPLEMENTED),
    (InsufficientResources, Status.RESOURCE_EXHAUSTED),
    (RequestError, Status.FAILED_PRECONDITION),
    (ActorUnavailable, Status.UNAVAILABLE),
    (AskTimeout, Status.DEADLINE_EXCEEDED),
)


def status_of(error: BaseException) -> Status:
    """The status for a kernel error (INTERNAL for anything unexpected)."""
    if isinstance(error, ActorError):
        if error.crashed:
            return Status.UNAVAILABLE  # the device failed (a transport error): it restarts
        return status_of(error.root_cause)
    for kind, status in _REQUEST_STATUSES:
        if isinstance(error, kind):
            return status
    return Status.INTERNAL


def grpc_error(error: BaseException) -> GRPCError:
    """A GRPCError with the right status and a message saying what was wrong."""
    if isinstance(error, GRPCError):
        return error
    status = status_of(error)
    if status is Status.INTERNAL:
        logger.error("internal error answering a request", exc_info=error)
        return GRPCError(status, f"internal error: {type(error).__name__}: {error}")
    if isinstance(error, ActorError):
        if error.crashed:
            message = (
                f"{error.actor} failed handling the request and is restarting"
                f" ({error.error_type}: {error.error_message}); retry when it is ready"
            )
        else:
            message = str(error.root_cause)
    else:
        message = str(error)
    return GRPCError(status, message)


def invalid(message: str) -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, message)


def quote(
    value: object, limit: int = QUOTE_CHARS, *, size: int | None = None, unit: str = ""
) -> str:
    """A client's value for an error message: ``repr`` of at most ``limit`` characters of it,
    then its length when it was cut — ``'xxxx…'… (400000 characters)``. Non-ASCII characters
    are escaped (as ``ascii()`` does), so the quote costs one header byte per character.
    ``size`` and ``unit``: the whole value's size, when ``value`` is only its start."""
    if isinstance(value, (str, bytes)):
        unit = unit or ("characters" if isinstance(value, str) else "bytes")
        size = len(value) if size is None else size
        if size > len(value) or len(value) > limit:
            return f"{value[:limit]!a}… ({size} {unit})"
        return ascii(value)
    text = str(value)
    return text if len(text) <= limit + 2 else f"{text[:limit]}… ({len(text)} characters)"


def bounded(message: str, limit: int = MESSAGE_BYTES) -> str:
    """``message`` cut so that its percent-encoded form fits in ``limit`` bytes (with a note
    of how long it was). Linear in the message's length; a message that fits is returned as is."""
    if len(message) <= limit // 9 or (len(message) <= limit and _plain(message)):
        return message  # 9: the most a character costs encoded (3 UTF-8 bytes, %XX each)
    suffix = f" … (message cut: {len(message)} characters)"
    budget = limit - _encoded_size(suffix)
    size = 0
    for index, char in enumerate(message):
        size += _encoded_size(char)
        if size > budget:
            return message[:index] + suffix
    return message


def _encoded_size(text: str) -> int:
    return sum(1 if char in _PLAIN else len(percent_encode(char, safe="")) for char in text)


def _plain(message: str) -> bool:
    return message.isascii() and "%" not in message and message.isprintable()


class RequestRefused(GRPCError):
    """A request refused before any work, for what it *is* (malformed, too large, a field over
    its limit) rather than what it asks: the edge logs one line for each (``_guard.py``)."""


def refused(status: Status, message: str) -> RequestRefused:
    return RequestRefused(status, bounded(message))
