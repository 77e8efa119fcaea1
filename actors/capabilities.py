"""What a device can do, as message protocols every client can rely on.

In the Rust original these were traits (Movable, Readable, Triggerable, ExposureControl,
FrameProducer, Parameterized). Here a capability is a set of messages an actor promises to
handle, so the gRPC edge, scripts and scans drive any stage with ``MoveAbsolute`` and read any
sensor with ``Read`` without knowing the driver. A device actor lists its capabilities in
``DeviceActor.capabilities`` and answers ``Describe`` with them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import trio

from runtime import Actor, ActorError, Hazardous, Message, Request, UnhandledMessage


class Capability(enum.StrEnum):
    MOVABLE = "Movable"
    READABLE = "Readable"
    TRIGGERABLE = "Triggerable"
    EXPOSURE_CONTROL = "ExposureControl"
    FRAME_PRODUCER = "FrameProducer"
    PARAMETERIZED = "Parameterized"  # every actor: ListParameters / Get / Set / Watch


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    name: str
    driver: str
    capabilities: tuple[Capability, ...]
    identity: str  # what the instrument says it is (firmware string), "" if it cannot say
    units: str  # of the position (Movable) or the reading (Readable)


@dataclass(frozen=True, slots=True)
class Describe(Request[DeviceInfo]):
    """Reply: what the device is and what it can do."""


# -- Movable -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoveAbsolute(Request[float], Hazardous):
    """Move to ``position`` (device units); with ``wait`` reply once settled, with the position
    reached, else reply as soon as the move has started (with the position at that time)."""

    position: float
    wait: bool = True


@dataclass(frozen=True, slots=True)
class MoveRelative(Request[float], Hazardous):
    distance: float
    wait: bool = True


@dataclass(frozen=True, slots=True)
class Home(Request[float], Hazardous):
    """Run the home search; reply with the position once homed."""


@dataclass(frozen=True, slots=True)
class GetPosition(Request[float]):
    """Reply: the position now, read from the instrument."""


@dataclass(frozen=True, slots=True)
class WaitSettled(Request[float]):
    """Reply with the position once motion has stopped (or fail after ``timeout`` seconds)."""

    timeout: float = math.inf


@dataclass(frozen=True, slots=True)
class StopMotion(Request[float]):
    """Decelerate and stop (not an emergency stop: no latch; never refused while latched).
    Reply: the position where the axis came to rest."""


# -- Readable ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One scalar reading. Flags say why a value may not be trustworthy; never hide them."""

    value: float
    units: str
    timestamp: float  # Unix time
    flags: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.flags and math.isfinite(self.value)


@dataclass(frozen=True, slots=True)
class Read(Request[Reading]):
    """Reply: one fresh reading, with its flags."""


@dataclass(frozen=True, slots=True)
class CheckLink(Request[None]):
    """Touch the hardware to prove the link is alive (sent by the keepalive helper)."""


class DeviceActor(Actor):
    """An actor for one instrument (or one axis/module of one): answers ``Describe``, and can
    check its link periodically so a pulled cable is noticed while the device is idle (and the
    device shows as restarting, i.e. degraded) rather than at the next user request."""

    driver: ClassVar[str] = "device"
    capabilities: ClassVar[tuple[Capability, ...]] = (Capability.PARAMETERIZED,)
    units: ClassVar[str] = ""
    identity: str = ""

    async def handle(self, message: Message) -> object:
        if isinstance(message, Describe):
            return DeviceInfo(
                name=self.name,
                driver=self.driver,
                capabilities=self.capabilities,
                identity=self.identity,
                units=self.units,
            )
        if isinstance(message, CheckLink):
            await self.check_link()
            return None
        return await super().handle(message)

    async def check_link(self) -> None:
        """Override: the cheapest query the instrument answers; raise if it does not."""
        raise UnhandledMessage(f"{type(self).__name__} has no link check")

    def start_keepalive(self, interval: Callable[[], float]) -> None:
        """Run :meth:`check_link` through the mailbox every ``interval()`` s (0: paused)."""
        self.nursery.start_soon(self._keepalive, interval)

    async def _keepalive(self, interval: Callable[[], float]) -> None:
        while True:
            seconds = interval()
            await trio.sleep(seconds if seconds > 0 else 1.0)
            if seconds <= 0:
                continue
            try:
                await self.ref.ask(CheckLink(), timeout=max(10.0, seconds))
            except ActorError:
                return  # the check failed: this instance is crashing; its successor starts anew
