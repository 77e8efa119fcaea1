"""Newport ESP300: one controller actor owning the port, one Movable actor per axis (mm).

Protocol: ../shared/reference/esp300.md. The controller is silent for set and motion commands
and queues errors in a FIFO, so every command an axis sends is followed by ``TB?`` and a
non-zero code becomes a DeviceRefused naming the code and the controller's own text. Motion
is never waited for inside the controller (no ``WS``): an axis polls ``MD?`` through the
controller's mailbox, so an emergency stop is never stuck behind a wait in the controller's
command queue.

Emergency stop: the controller sends ``AB`` (all axes, no prefix) from its priority lane —
cancelling whatever poll was in flight — and optionally ``xxMF``. Each axis, on its own
e-stop, cancels its wait and asks the controller (priority lane too) for ``xxST``, which also
covers an e-stop aimed at a single axis.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import trio

from runtime import ActorRef, Message, Parameter, PriorityMessage, Request, ValidationError

from ..capabilities import (
    Capability,
    DeviceActor,
    GetPosition,
    Home,
    MoveAbsolute,
    MoveRelative,
    NotSettled,
    StopMotion,
    WaitSettled,
)
from .serial_device import DeviceRefused, LinkSettings, SerialDevice
from .transport import SerialSettings

logger = logging.getLogger(__name__)


def serial_settings(port: str, **overrides: object) -> SerialSettings:
    """The lab's settings: 19200 8N1 with RTS/CTS (the controller is mute without it)."""
    options: dict[str, object] = {
        "baudrate": 19200,
        "rtscts": True,
        "write_terminator": b"\r",
        "read_terminator": b"\r\n",
        "reply_timeout": 1.0,
    }
    options.update(overrides)
    return SerialSettings(port, **options)  # type: ignore[arg-type]


# -- messages between the axes and the controller ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Command(Request[None]):
    """Send a silent command, then read the error FIFO; refused if the controller objects."""

    text: str


@dataclass(frozen=True, slots=True)
class Query(Request[str]):
    text: str


@dataclass(frozen=True, slots=True)
class QueryNumber(Request[float]):
    """A query whose reply must be a number; anything else is a protocol error (reconnect)."""

    text: str


@dataclass(frozen=True, slots=True)
class StopAxis(Request[None], PriorityMessage):
    """``xxST`` now, ahead of anything queued (sent by an axis's e-stop)."""

    axis: int


@dataclass(frozen=True, slots=True)
class ControllerError:
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class ReadErrors(Request[tuple]):  # type: ignore[type-arg]
    """Drain the controller's error FIFO: tuple[ControllerError, ...], oldest first."""


class Esp300(SerialDevice):
    """The controller: owns the serial port; axes talk to it with Command / Query."""

    driver = "newport_esp300"

    def __init__(self, settings: LinkSettings, *, motor_off_on_estop: bool = False) -> None:
        self.settings = settings
        self.motor_off_on_estop = motor_off_on_estop
        self.axes = (1, 2, 3)

    async def on_start(self) -> None:
        await self.open_port()
        version = await self._port.query(b"VE?")
        if b"ESP300" not in version:
            raise self._port.protocol_error(
                "does not identify as an ESP300", command=b"VE?", received=version
            )
        self.identity = version.decode("ascii", "replace").strip()
        stale = await self._drain_errors()
        if stale:
            logger.warning("%s: errors left from before: %s", self.name, stale)
        logger.info("%s: %s on %s", self.name, self.identity, self.settings.address)

    async def on_emergency_stop(self, reason: str) -> None:
        await self._port.write(b"AB")
        if self.motor_off_on_estop:
            await self._port.write(b";".join(b"%dMF" % axis for axis in self.axes))
        logger.warning("%s: AB sent (%s)", self.name, reason)

    async def on_abort(self, reason: str) -> None:
        await self._port.write(b"AB")  # abort all motion, without the e-stop latch
        logger.warning("%s: AB sent (abort: %s)", self.name, reason)

    async def check_link(self) -> None:
        await self._error()

    async def handle(self, message: Message) -> object:
        match message:
            case Command(text=text):
                await self._port.write(text.encode("ascii"))
                error = await self._error()
                if error.code:
                    raise DeviceRefused(
                        f"{self.name} refused {text}: error {error.code} {error.message}"
                    )
                return None
            case Query(text=text):
                return (await self._port.query(text.encode("ascii"))).decode("ascii").strip()
            case QueryNumber(text=text):
                command = text.encode("ascii")
                reply = await self._port.query(command)
                try:
                    return float(reply)
                except ValueError:
                    raise self._port.protocol_error(
                        "expected a number", command=command, received=reply
                    ) from None
            case StopAxis(axis=axis):
                await self._port.write(b"%dST" % axis)
                return None
            case ReadErrors():
                return tuple(await self._drain_errors())
        return await super().handle(message)

    async def _error(self) -> ControllerError:
        reply = await self._port.query(b"TB?")
        code, _, rest = reply.partition(b",")
        _, _, text = rest.partition(b",")
        try:
            return ControllerError(int(code), text.decode("ascii", "replace").strip())
        except ValueError:
            raise self._port.protocol_error(
                "TB? reply is not 'code, timestamp, message'", command=b"TB?", received=reply
            ) from None

    async def _drain_errors(self) -> list[ControllerError]:
        errors = []
        for _ in range(10):  # the FIFO is 10 deep
            error = await self._error()
            if error.code == 0:
                break
            errors.append(error)
        return errors


class Esp300Axis(DeviceActor):
    """One axis as a Movable in mm; its limits are the controller's software limits."""

    driver = "newport_esp300_axis"
    capabilities = (Capability.MOVABLE, Capability.PARAMETERIZED)
    units = "mm"

    def __init__(
        self, controller: str, axis: int, *, poll_interval: float = 0.05, home_mode: int = 0
    ) -> None:
        if axis not in (1, 2, 3):
            raise ValueError(f"ESP300 axes are 1, 2 or 3, not {axis}")
        if home_mode not in range(7):
            raise ValueError(f"ESP300 home search modes are 0 to 6, not {home_mode}")
        self.home_mode = home_mode
        self.controller_name = controller
        self.axis = axis
        self.poll_interval = poll_interval
        add = self.parameters.add
        self.velocity = add(self._setting("velocity", "VA", 5.0, "mm/s", 1e3))
        self.acceleration = add(self._setting("acceleration", "AC", 20.0, "mm/s²", 1e4))
        self.deceleration = add(self._setting("deceleration", "AG", 20.0, "mm/s²", 1e4))
        self.position = add(
            Parameter(
                "position",
                float,
                0.0,
                units="mm",
                read_only=True,
                description="last position read",
            )
        )
        self.limits = (-math.inf, math.inf)

    def _setting(
        self, name: str, mnemonic: str, default: float, units: str, maximum: float
    ) -> Parameter[float]:
        """A motion setting written with ``xxMMn`` and read back with ``xxMM?``."""
        return Parameter(
            name,
            float,
            default,
            units=units,
            limits=(1e-6, maximum),
            tolerance=1e-4,
            write=lambda value: self._command(f"{mnemonic}{value:.6g}"),
            read=lambda: self._query_float(f"{mnemonic}?"),
        )

    @property
    def _controller(self) -> ActorRef:
        return self.system.ref(self.controller_name)

    async def on_start(self) -> None:
        identity = await self._controller.ask(Query("VE?"))  # also: is the controller up?
        self.identity = f"{identity} axis {self.axis}"
        self.limits = (await self._query_float("SL?"), await self._query_float("SR?"))
        for parameter in (self.velocity, self.acceleration, self.deceleration):
            await parameter.refresh()
        self.position.report(await self._query_float("TP?"))

    async def on_emergency_stop(self, reason: str) -> None:
        await self._controller.ask(StopAxis(self.axis), timeout=1.0)

    async def on_abort(self, reason: str) -> None:
        await self._controller.ask(StopAxis(self.axis), timeout=1.0)

    async def check_link(self) -> None:
        await self._query_float("TP?")

    async def handle(self, message: Message) -> object:
        match message:
            case MoveAbsolute(position=target, wait=wait):
                return await self._move(target, wait)
            case MoveRelative(distance=distance, wait=wait):
                return await self._move(await self._read_position() + distance, wait)
            case GetPosition():
                return await self._read_position()
            case Home():
                await self._command(f"OR{self.home_mode}")
                return await self._wait_settled()
            case WaitSettled(timeout=timeout):
                with trio.move_on_after(timeout):
                    return await self._wait_settled()
                raise NotSettled(  # a refusal, not a crash: the axis is fine, just still moving
                    f"{self.name} is still moving after {timeout:g} s; the motion goes on"
                    " (StopMotion stops it)"
                )
            case StopMotion():
                await self._command("ST")
                return await self._wait_settled()
        return await super().handle(message)

    async def _move(self, target: float, wait: bool) -> float:
        low, high = self.limits
        if not low <= target <= high:
            raise ValidationError(
                f"{self.name}: {target:g} mm is outside the travel {low:g} to {high:g} mm"
            )
        await self._command(f"PA{target:.6f}")
        if not wait:
            return await self._read_position()
        return await self._wait_settled()

    async def _wait_settled(self) -> float:
        while await self._controller.ask(Query(f"{self.axis}MD?")) != "1":
            await self._read_position()
            await trio.sleep(self.poll_interval)
        return await self._read_position()

    async def _read_position(self) -> float:
        value = await self._query_float("TP?")
        self.position.report(value)
        return value

    async def _command(self, text: str) -> None:
        await self._controller.ask(Command(f"{self.axis}{text}"))

    async def _query_float(self, text: str) -> float:
        return await self._controller.ask(QueryNumber(f"{self.axis}{text}"))
