"""The error vocabulary of the kernel.

Two families, because a daemon that runs hardware must tell "this request was wrong" from
"this actor is broken":

* :class:`RequestError` and its subclasses are *expected*, request-scoped failures (a value
  outside its limits, a command refused while the emergency stop is latched). The handler
  raises one, the asker receives it, and the actor keeps running with its state intact.
* Any other exception raised by a handler is a bug or a broken transport. The asker still
  receives it, and then the actor *crashes* so its supervisor can restart it from a clean
  state ("let it crash", as in Erlang/OTP).

Whatever the family, the asker never sees a bare exception from another actor: it gets an
:class:`ActorError` naming the actor, the request and the original type and message, with the
original exception as ``cause`` (and ``__cause__``) for code that maps errors to statuses.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._brief import brief


class BenchError(Exception):
    """Base class of every error the daemon raises on purpose."""


class RequestError(BenchError):
    """A request-scoped failure: the request is refused, the actor carries on."""


class ValidationError(RequestError, ValueError):
    """A value was refused before anything was written to the hardware."""


class ReadOnlyError(ValidationError):
    """A write was attempted on a read-only parameter."""


class NotFoundError(RequestError, LookupError):
    """A named thing (parameter, actor, child) does not exist; the message lists what does."""

    def __str__(self) -> str:  # LookupError's KeyError-style quoting is not wanted here
        return str(self.args[0]) if self.args else ""


class WrongState(RequestError):
    """The request is valid but does not fit now (a run is already recording, no run is)."""


class InsufficientResources(RequestError):
    """Refused for want of a resource (disk space below the configured minimum)."""


class ReadbackMismatch(RequestError):
    """The hardware accepted a write but reads back a different value."""

    def __init__(self, name: str, requested: object, actual: object, tolerance: float) -> None:
        super().__init__(
            f"{name}: wrote {requested!r} but the hardware reads back {actual!r}"
            f" (tolerance {tolerance!r})"
        )
        self.name = name
        self.requested = requested
        self.actual = actual
        self.tolerance = tolerance


class EmergencyStopLatched(RequestError):
    """A hazardous command (motion, emission) was refused because the e-stop is latched."""


class Interrupted(RequestError):
    """The handler in flight was cancelled by a priority message (EmergencyStop, Abort)."""


class UnhandledMessage(RequestError, TypeError):
    """The actor has no handler for this message type."""


class ActorError(BenchError):
    """What an asker receives when the actor it asked failed to produce a reply.

    ``cause`` is the exception raised inside the actor; ``crashed`` says whether the actor
    crashed because of it (and is being handled by its supervisor) or refused the request and
    carried on.
    """

    def __init__(self, actor: str, request: object, cause: BaseException, *, crashed: bool) -> None:
        self.actor = actor
        self.request = request
        self.cause = cause
        self.crashed = crashed
        self.error_type = qualified_name(type(cause))
        self.error_message = str(cause)
        outcome = "crashed handling" if crashed else "refused"
        super().__init__(
            f"actor {actor!r} {outcome} {brief(request)}: {self.error_type}: {self.error_message}"
        )

    @property
    def root_cause(self) -> BaseException:
        """The original error when actors asked actors (axis -> controller -> transport)."""
        cause: BaseException = self.cause
        while isinstance(cause, ActorError):
            cause = cause.cause
        return cause


class AskTimeout(BenchError, TimeoutError):
    """No reply arrived in time. A request still queued when this happens is never executed."""

    def __init__(self, actor: str, request: object, timeout: float) -> None:
        super().__init__(f"actor {actor!r} did not reply to {brief(request)} within {timeout:g} s")
        self.actor = actor
        self.request = request
        self.timeout = timeout


class ActorUnavailable(BenchError):
    """The actor is down (stopped, or its supervisor gave up) and accepts no messages."""


class ReplyTypeError(BenchError, TypeError):
    """A handler returned a value that does not match the reply type its request declares."""


class SupervisorGaveUp(BenchError):
    """Restart intensity was exceeded: the supervisor stopped its children and escalates."""

    def __init__(self, supervisor: str, restarts: int, period: float, last: str) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up after {restarts} restarts within {period:g} s;"
            f" last failure: {last}"
        )
        self.supervisor = supervisor
        self.restarts = restarts
        self.period = period
        self.last = last


def qualified_name(cls: type) -> str:
    """``module.Class`` for library errors, the bare name for builtins."""
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def leaf_exceptions(exc: BaseException) -> Iterator[BaseException]:
    """Every non-group exception inside ``exc`` (trio nurseries wrap failures in groups)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaf_exceptions(inner)
    else:
        yield exc


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(type, message) of a failure for humans and health reports, looking through groups.

    A group with one leaf is reported as that leaf; a group with several is reported by its
    leaves joined, so no failure is hidden behind "ExceptionGroup: 2 sub-exceptions".
    """
    leaves = list(leaf_exceptions(exc))
    if len(leaves) == 1:
        return qualified_name(type(leaves[0])), str(leaves[0])
    return (
        qualified_name(type(exc)),
        "; ".join(f"{qualified_name(type(e))}: {e}" for e in leaves),
    )
