"""Typed client errors: one exception class per gRPC status, carrying the daemon's message.

The daemon's messages say what was wrong and what is allowed (``wavelength: 5000.0 nm is outside
the allowed range 690 to 1040 nm``), so every exception keeps the message verbatim as ``str()``
and in ``.message``; ``.status`` is the gRPC status (``None`` for :class:`ConnectionLost`, which
no server sent). ``exit_code`` is what ``benchctl`` exits with (docs/client.md lists them).

Error handling: :func:`from_grpc` maps any ``GRPCError``; a status this module does not know
becomes a plain :class:`BenchError` with that status.
"""

from __future__ import annotations

from grpclib.const import Status
from grpclib.exceptions import GRPCError


class BenchError(Exception):
    """Base of every error the client raises: ``except BenchError`` catches them all."""

    status: Status | None = None
    exit_code = 1

    def __init__(self, message: str, *, status: Status | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidArgument(BenchError):
    """A value outside its limits or of the wrong type, a malformed request (INVALID_ARGUMENT)."""

    status = Status.INVALID_ARGUMENT
    exit_code = 3


class NotFound(BenchError):
    """An unknown device, parameter or preset (NOT_FOUND)."""

    status = Status.NOT_FOUND
    exit_code = 4


class FailedPrecondition(BenchError):
    """The bench is not in a state that allows the request (FAILED_PRECONDITION)."""

    status = Status.FAILED_PRECONDITION
    exit_code = 5


class EmergencyStopLatched(FailedPrecondition):
    """Motion or emission refused while the emergency stop is latched: reset it first."""


class AlreadyExists(BenchError):
    """Saving over an existing preset without ``overwrite`` (ALREADY_EXISTS)."""

    status = Status.ALREADY_EXISTS
    exit_code = 6


class Unauthenticated(BenchError):
    """No token, or one the daemon does not know (UNAUTHENTICATED)."""

    status = Status.UNAUTHENTICATED
    exit_code = 7


class PermissionDenied(BenchError):
    """The token's role is too low, e.g. an observer moving a stage (PERMISSION_DENIED)."""

    status = Status.PERMISSION_DENIED
    exit_code = 7


class Unavailable(BenchError):
    """The device is degraded or down (restarting, reconnecting), or the edge is stopping."""

    status = Status.UNAVAILABLE
    exit_code = 8


class ConnectionLost(Unavailable):
    """The daemon could not be reached, or the connection dropped, for longer than the retry
    budget (no server status: ``status`` is UNAVAILABLE as grpc clients report it)."""


class DeadlineExceeded(BenchError):
    """A wait ran out (a move that did not settle in time; the move may go on)."""

    status = Status.DEADLINE_EXCEEDED
    exit_code = 9


class Aborted(BenchError):
    """An emergency stop or abort cut the request short, or a read-back did not match."""

    status = Status.ABORTED
    exit_code = 10


class Unimplemented(BenchError):
    """The device cannot do that (not Movable, not Readable), or the daemon lacks the RPC."""

    status = Status.UNIMPLEMENTED
    exit_code = 11


class InternalError(BenchError):
    """The daemon failed unexpectedly answering (INTERNAL; it logged the traceback)."""

    status = Status.INTERNAL
    exit_code = 12


class ResourceExhausted(BenchError):
    """Not enough disk space to start or go on with a run (RESOURCE_EXHAUSTED)."""

    status = Status.RESOURCE_EXHAUSTED
    exit_code = 13


_BY_STATUS: dict[Status, type[BenchError]] = {
    Status.INVALID_ARGUMENT: InvalidArgument,
    Status.NOT_FOUND: NotFound,
    Status.FAILED_PRECONDITION: FailedPrecondition,
    Status.ALREADY_EXISTS: AlreadyExists,
    Status.UNAUTHENTICATED: Unauthenticated,
    Status.PERMISSION_DENIED: PermissionDenied,
    Status.UNAVAILABLE: Unavailable,
    Status.DEADLINE_EXCEEDED: DeadlineExceeded,
    Status.ABORTED: Aborted,
    Status.UNIMPLEMENTED: Unimplemented,
    Status.INTERNAL: InternalError,
    Status.RESOURCE_EXHAUSTED: ResourceExhausted,
}


def from_grpc(error: GRPCError) -> BenchError:
    """The typed exception for a status the daemon answered with."""
    message = error.message or f"{error.status.name} (the daemon gave no message)"
    kind = _BY_STATUS.get(error.status, BenchError)
    if kind is FailedPrecondition and "emergency stop" in message:
        kind = EmergencyStopLatched
    return kind(message, status=error.status)
