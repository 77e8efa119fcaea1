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
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import trio

from runtime import (
    Actor,
    ActorError,
    Hazardous,
    Message,
    NotFoundError,
    Request,
    RequestError,
    UnhandledMessage,
)

from .pipeline.taps import AddTap, GetTapStatistics, RemoveTap, TapRegistry


class Capability(enum.StrEnum):
    MOVABLE = "Movable"
    READABLE = "Readable"
    TRIGGERABLE = "Triggerable"
    EXPOSURE_CONTROL = "ExposureControl"
    FRAME_PRODUCER = "FrameProducer"
    PARAMETERIZED = "Parameterized"  # every actor: ListParameters / Get / Set / Watch


class Operation(enum.StrEnum):
    """Actions a device kind offers besides its capabilities' core messages; each is one
    message below, reachable from every surface (gRPC, scripts, the client, benchctl)."""

    HOME = "home"  # Home: run the home search (Hazardous)
    STOP = "stop"  # StopMotion: decelerate and stop (never refused)
    MOTOR_ON = "motor_on"  # MotorOn: power the motor after a fault or power-up (Hazardous)
    ZERO = "zero"  # Zero: store / drop a dark offset (a power meter)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    name: str
    driver: str
    capabilities: tuple[Capability, ...]
    identity: str  # what the instrument says it is (firmware string), "" if it cannot say
    units: str  # of the position (Movable) or the reading (Readable)
    operations: tuple[Operation, ...] = ()  # what else it can do (home, stop, motor_on, zero)


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


class NotSettled(RequestError):
    """WaitSettled ran out of time with the axis still moving (the motion goes on)."""


@dataclass(frozen=True, slots=True)
class StopMotion(Request[float]):
    """Decelerate and stop (not an emergency stop: no latch; never refused while latched).
    Reply: the position where the axis came to rest."""


@dataclass(frozen=True, slots=True)
class MotorOn(Request[bool], Hazardous):
    """Switch the motor on (after a fault or a power-up left it off); reply: the motor state
    read back (True). Hazardous: refused while the e-stop is latched."""


@dataclass(frozen=True, slots=True)
class Zero(Request[bool]):
    """A power meter's zero: ``enable`` stores the present reading as the dark offset and
    subtracts it from then on; False stops subtracting. Reply: the zero state read back."""

    enable: bool = True


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


# -- FrameProducer / ExposureControl / Triggerable ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Roi:
    """A region of the sensor in unbinned sensor pixels, and the binning applied to it."""

    x: int
    y: int
    width: int
    height: int
    bin_x: int = 1
    bin_y: int = 1

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the frames this ROI produces; partial bins are clipped."""
        return self.height // self.bin_y, self.width // self.bin_x


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One camera frame. ``pixels`` is a read-only uint16 array of ``roi.shape``: it travels
    between actors without copies, and nobody can change what another actor is reading.

    ``frame_number`` is the camera's own counter (1 for the first frame of an acquisition), so
    a frame lost anywhere — in the camera, the driver or a tap — shows up as a gap.
    """

    frame_number: int
    timestamp: float  # Unix time at the end of readout
    exposure_ms: float
    roi: Roi
    bit_depth: int
    pixels: npt.NDArray[np.uint16]


@dataclass(frozen=True, slots=True)
class FrameGeometry:
    """What the next frames will look like: a writer sizes its datasets from this."""

    roi: Roi
    bit_depth: int
    dtype: str = "uint16"


@dataclass(frozen=True, slots=True)
class GetFrameGeometry(Request[FrameGeometry]):
    pass


@dataclass(frozen=True, slots=True)
class AcquisitionStatus:
    """Frame accounting of the camera's current (or last) acquisition."""

    running: bool
    frames_requested: int | None  # None: live mode (until stopped)
    frames_acquired: int  # frames the camera delivered to the actor
    frames_missing: int  # gaps in the camera's frame numbers (lost before the actor saw them)
    frames_lost: int  # frames that lossless taps could not take (a writer fell behind)
    last_frame_number: int
    fps: float
    error: str  # why the acquisition ended early, "" if it did not
    frames_zero: int = 0  # all-zero frames (a driver artefact): counted, never published
    stalls: int = 0  # times no frame came within the stall bound and the camera was restarted
    warning: str = ""  # the latest trouble it ran through (a stall, a fallback); "" if none
    overwrite_fallback: bool = False  # live mode runs without circular overwrite (the camera
    # refused it at start)


@dataclass(frozen=True, slots=True)
class StartAcquisition(Request[AcquisitionStatus]):
    """Start a sequence of ``frames`` frames, or live mode (``frames=None``) until stopped."""

    frames: int | None = None


@dataclass(frozen=True, slots=True)
class StopAcquisition(Request[AcquisitionStatus]):
    """Stop the acquisition (a no-op if none runs); reply with its final accounting."""


@dataclass(frozen=True, slots=True)
class GetAcquisitionStatus(Request[AcquisitionStatus]):
    pass


@dataclass(frozen=True, slots=True)
class WaitAcquisition(Request[AcquisitionStatus]):
    """Reply once the acquisition has ended (a sequence completed, or it was stopped)."""

    timeout: float = math.inf


@dataclass(frozen=True, slots=True)
class SoftwareTrigger(Request[None]):
    """Triggerable: start one exposure now (in a software trigger mode)."""


@dataclass(frozen=True, slots=True)
class CheckLink(Request[None]):
    """Touch the hardware to prove the link is alive (sent by the keepalive helper)."""


class DeviceActor(Actor):
    """An actor for one instrument (or one axis/module of one): answers ``Describe``, and can
    check its link periodically so a pulled cable is noticed while the device is idle (and the
    device shows as restarting, i.e. degraded) rather than at the next user request."""

    driver: ClassVar[str] = "device"
    capabilities: ClassVar[tuple[Capability, ...]] = (Capability.PARAMETERIZED,)
    #: The operations (messages besides the capabilities') this device kind handles.
    operations: ClassVar[tuple[Operation, ...]] = ()
    units: ClassVar[str] = ""
    #: What this device publishes to taps: "readings" for a Readable, "frames" for a camera.
    stream_names: ClassVar[tuple[str, ...]] = ()
    identity: str = ""
    _streams: dict[str, TapRegistry[Any]] | None = None

    def stream(self, name: str) -> TapRegistry[Any]:
        """The tap registry of one of this device's streams ("frames", "readings"), made on
        first use; clients reach it with AddTap / RemoveTap / GetTapStatistics."""
        if self._streams is None:
            self._streams = {}
        if name not in self._streams:
            self._streams[name] = TapRegistry(f"{self.name}.{name}")
        return self._streams[name]

    def _existing_stream(self, name: str) -> TapRegistry[Any]:
        if name not in self.stream_names:
            known = ", ".join(self.stream_names) or "none"
            raise NotFoundError(f"{self.name} has no stream {name!r}; streams: {known}")
        return self.stream(name)

    def release(self) -> None:
        super().release()
        for registry in (self._streams or {}).values():
            registry.close()

    async def handle(self, message: Message) -> object:
        match message:
            case AddTap(stream=stream, name=name, policy=policy, capacity=capacity, every=every):
                return self._existing_stream(stream).add(
                    name, policy, capacity=capacity, every=every
                )
            case RemoveTap(stream=stream, name=name):
                return self._existing_stream(stream).remove(name)
            case GetTapStatistics(stream=stream):
                return self._existing_stream(stream).statistics()
        if isinstance(message, Describe):
            return DeviceInfo(
                name=self.name,
                driver=self.driver,
                capabilities=self.capabilities,
                identity=self.identity,
                units=self.units,
                operations=self.operations,
            )
        if isinstance(message, CheckLink):
            await self.check_link()
            return None
        return await super().handle(message)

    async def check_link(self) -> None:
        """Override: the cheapest query the instrument answers; raise if it does not."""
        raise UnhandledMessage(f"{type(self).__name__} has no link check")

    def start_keepalive(self, interval: Callable[[], float], *, patience: float = 10.0) -> None:
        """Run :meth:`check_link` through the mailbox every ``interval()`` s (0: paused).
        ``patience``: how long a check may wait behind the longest request this device
        legitimately handles (a move, a warm-up) before the actor counts as hung."""
        self.nursery.start_soon(self._keepalive, interval, patience)

    async def _keepalive(self, interval: Callable[[], float], patience: float = 10.0) -> None:
        while True:
            seconds = interval()
            await trio.sleep(seconds if seconds > 0 else 1.0)
            if seconds <= 0:
                continue
            try:
                await self.ref.ask(CheckLink(), timeout=max(patience, seconds))
            except ActorError:
                return  # the check failed: this instance is crashing; its successor starts anew
