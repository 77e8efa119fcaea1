"""Message base classes and the messages every actor understands.

Messages are immutable values: declare them as ``@dataclass(frozen=True, slots=True)``
subclasses of :class:`Message` (a fire-and-forget notice) or of ``Request[R]`` (expects a reply
of type ``R``). The reply type is read once from the class declaration and checked when the
handler returns, so a handler that answers ``GetPosition`` with a string fails loudly in the
actor instead of confusing the asker three layers up.

Which lane a message travels is a property of its type, not of the call site:
:class:`PriorityMessage` subclasses (EmergencyStop, Abort) always take the priority lane, so no
caller can accidentally queue an emergency stop behind a backlog. :class:`Query` requests
(read-only: a position, a parameter) travel a lane of their own that the actor serves while a
normal handler is in flight, so a position read answers during a move (docs/kernel.md, "Queries").
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every message. Subclasses are frozen slotted dataclasses."""


class Request(Message, Generic[R]):
    """A message that expects a reply of type ``R`` (``class Get(Request[float])``).

    ``reply_type`` holds the runtime-checkable form of ``R``: a class or tuple of classes, or
    ``None`` when ``R`` cannot be checked (``Any``, a type variable).
    """

    __slots__ = ()
    reply_type: ClassVar[type | tuple[type, ...] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Request:
                (argument,) = typing.get_args(base)
                cls.reply_type = _checkable(argument)
        if issubclass(cls, Query) and issubclass(cls, (Hazardous, PriorityMessage)):
            raise TypeError(
                f"{cls.__name__}: a Query only reads; it cannot be Hazardous or a PriorityMessage"
            )


class PriorityMessage(Message):
    """Travels the priority lane: handled before queued messages, preempts the one in flight.

    A priority message can never be Hazardous: nothing that moves or emits may overtake an
    emergency stop (or slip past its latch).
    """

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if issubclass(cls, Hazardous):
            raise TypeError(f"{cls.__name__}: a PriorityMessage cannot be Hazardous")


class KernelRequest:
    """Mixin for requests the kernel answers for every actor (Ping, parameters, e-stop reset).

    One ``isinstance`` against it keeps the common path (a user message) cheap.
    """

    __slots__ = ()


class Hazardous:
    """Mixin for commands that move or emit; refused while the emergency stop is latched."""

    __slots__ = ()


class Query:
    """Mixin for read-only requests (``class GetPosition(Request[float], Query)``).

    A query travels the actor's query lane, served by a task of its own *while a normal handler
    is in flight*: a position read answers during a move instead of waiting behind it. The
    price is the rule its handler must keep — it runs concurrently with the normal handler, so
    it must not change state that handler relies on, nor use what that handler may be using (the
    actor's own link: answer from state, or ask another actor). Publishing an observation (a
    read-only parameter's ``report``) is allowed. Queries are answered one at a time, in the
    order sent, never before the actor is ready; they do not wait for normal messages queued
    or in flight (await a command's reply before querying its effect). See docs/kernel.md.
    """

    __slots__ = ()


def _checkable(annotation: object) -> type | tuple[type, ...] | None:
    """Turn a reply annotation into something ``isinstance`` accepts, or ``None`` to skip."""
    if annotation is None or annotation is type(None):
        return type(None)
    if annotation is float:
        return (float, int)  # PEP 484 numeric tower: an int is an acceptable float
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        parts = [_checkable(a) for a in typing.get_args(annotation)]
        if any(p is None for p in parts):
            return None
        flat: list[type] = []
        for part in parts:
            flat.extend(part if isinstance(part, tuple) else (part,))  # type: ignore[arg-type]
        return tuple(flat)
    if origin is not None:
        return origin if isinstance(origin, type) else None  # list[int] -> list
    return annotation if isinstance(annotation, type) else None


def reply_conforms(request: Request[Any], reply: object) -> bool:
    expected = type(request).reply_type
    if expected is None:
        return True
    if isinstance(reply, bool) and expected in ((float, int), int):
        return False  # True is an int to Python, never a position or a count to us
    return isinstance(reply, expected)


# -- messages the kernel handles for every actor ---------------------------------------------


@dataclass(frozen=True, slots=True)
class EmergencyStop(Request[None], PriorityMessage):
    """Put the hardware in its safe state now and latch until ResetEmergencyStop."""

    reason: str
    by: str = ""  # who asked (a client's name, "script", "daemon"): shown with every refusal


@dataclass(frozen=True, slots=True)
class Abort(Request[None], PriorityMessage):
    """Cancel the work in flight (a move, an exposure) without latching."""

    reason: str


@dataclass(frozen=True, slots=True)
class ResetEmergencyStop(Request[None], KernelRequest):
    """Clear the latch. Travels the normal lane: everything queued before it is refused.

    ``epoch`` is the latch epoch the sender saw; if another emergency stop arrived after the
    reset was sent, the reset is refused instead of clearing a latch nobody has looked at.
    None clears whatever is latched.
    """

    reason: str = ""
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class Ping(Request[str], KernelRequest):
    """Liveness probe: the reply proves the actor's loop is turning."""
