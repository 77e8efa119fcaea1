"""Small actors that the kernel and supervisor tests drive.

They behave like a slow motion stage: a move awaits a settle time, stop is recorded, and
every lifecycle hook leaves a trace in a journal the test can read after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from runtime import Actor, Hazardous, Message, Parameter, Request, RequestError, ValidationError


@dataclass(frozen=True, slots=True)
class Move(Request[float], Hazardous):
    target: float
    settle: float = 10.0


@dataclass(frozen=True, slots=True)
class Echo(Request[str]):
    text: str


@dataclass(frozen=True, slots=True)
class Note(Message):
    text: str


@dataclass(frozen=True, slots=True)
class Fail(Request[None]):
    """Raise ``error`` in the handler."""

    error: Exception


@dataclass(frozen=True, slots=True)
class WrongReply(Request[int]):
    pass


@dataclass
class Journal:
    """What happened, in order; shared by every instance a factory builds."""

    events: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, event: str) -> int:
        return self.events.count(event)


class Stage(Actor):
    """A rotation stage that takes ``settle`` seconds to arrive."""

    def __init__(self, journal: Journal, *, fail_start: int = 0, start_delay: float = 0.0) -> None:
        self.journal = journal
        self.fail_start = fail_start
        self.start_delay = start_delay
        self.position = 0.0
        self.velocity = self.parameters.add(
            Parameter("velocity", float, 10.0, units="deg/s", limits=(0.1, 100.0))
        )

    async def on_start(self) -> None:
        self.journal.events.append(f"start {self.name}")
        await trio.sleep(self.start_delay)
        if self.journal.count(f"start {self.name}") <= self.fail_start:
            raise OSError(f"{self.name}: serial port vanished")

    async def on_stop(self) -> None:
        self.journal.events.append(f"stop {self.name}")

    async def on_emergency_stop(self, reason: str) -> None:
        self.journal.events.append(f"estop {self.name} {reason}")

    async def on_abort(self, reason: str) -> None:
        self.journal.events.append(f"abort {self.name} {reason}")

    async def handle(self, message: Message) -> object:
        match message:
            case Move(target=target, settle=settle):
                if not -360.0 <= target <= 360.0:
                    raise ValidationError(f"target {target} deg outside -360 to 360 deg")
                self.journal.events.append(f"move {self.name} {target:g}")
                await trio.sleep(settle)
                self.position = target
                self.journal.events.append(f"arrived {self.name} {target:g}")
                return self.position
            case Echo(text=text):
                return f"{self.name}: {text}"
            case Note(text=text):
                self.journal.notes.append(text)
                self.journal.events.append(f"note {text}")
                await trio.lowlevel.checkpoint()
                return None
            case Fail(error=error):
                raise error
            case WrongReply():
                return "not an int"
        return await super().handle(message)


class Refusing(RequestError):
    """A request-scoped refusal used by the tests."""
