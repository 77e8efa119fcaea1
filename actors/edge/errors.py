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
"""

from __future__ import annotations

import logging

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
