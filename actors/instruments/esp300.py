"""Newport ESP300: one controller actor owning the port, one Movable actor per axis (mm).

Protocol: ../shared/reference/esp300.md. The controller is silent for set and motion commands
and queues errors in a FIFO, so every command an axis sends is followed by ``TB?`` and a
non-zero code becomes a DeviceRefused naming the code and the controller's own text. The FIFO
is shared by the axes and a motion fault is queued while the axis moves on its own, so the FIFO
is drained after each command and only the general errors and the command's own axis's refuse
it; another axis's error is kept for that axis (its ``fault``). Motion
is never waited for inside the controller (no ``WS``): an axis polls ``MD?`` through the
controller's mailbox, so an emergency stop is never stuck behind a wait in the controller's
command queue.

Replies may end in CR LF, CR or LF (all accepted) and are matched by form: a position is a
number, ``MD?``/``MO?`` answer 0 or 1, ``TB?`` a code, a timestamp and a text. A query that
times out fails that request only; the next exchange resyncs on ``VE?`` first.

Travel limits: each axis reads its software limits (``SL?``/``SR?``) at start-up, after a home
search and after ``motor_on`` (so a limit changed meanwhile is seen), and exposes
them as its ``position`` parameter's limits (what clients see as the device's position limits
and what a scan's validator checks); every move checks them before anything is sent, naming the
axis, the value and the allowed range.

Motor power: a motor fault (amplifier fault, following error) or a power-up leaves an axis's
motor off. The axis reads ``MO?`` at start-up, before every move or home search and after every
motion; a motor found off is reported (``motor`` false, ``fault`` with the controller's error
text) and the motion refused (MotorOff) until ``MotorOn`` (the ``motor_on`` operation) — which
is hazardous, so refused while the e-stop is latched. Re-home after a fault: the position may
be lost.

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

from runtime import (
    ActorRef,
    Message,
    Parameter,
    PriorityMessage,
    Request,
    RequestError,
    ValidationError,
)

from ..capabilities import (
    Capability,
    DeviceActor,
    GetPosition,
    Home,
    MotorOn,
    MoveAbsolute,
    MoveRelative,
    NotSettled,
    Operation,
    StopMotion,
    WaitSettled,
)
from .serial_device import DeviceRefused, LinkSettings, SerialDevice
from .transport import ReplyForm, ReplyPolicy, SerialSettings

# -- what each reply looks like ---------------------------------------------------------------
NUMBER = ReplyForm.of("a number", rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d+)?")
FLAG = ReplyForm.of("0 or 1", rb"[01]")
ERROR_ENTRY = ReplyForm.of("'code, timestamp, message'", rb"([+-]?\d+)\s*,\s*([+-]?\d+)\s*,\s*(.*)")
VERSION = ReplyForm.of("the version (ESP300 Version ...)", rb".*ESP\s*300.*")
ANY = ReplyForm.of("a reply", rb".+")
POLICY = ReplyPolicy(known=(NUMBER, ERROR_ENTRY, VERSION), resync=(b"VE?", VERSION))


def form_of(query: str) -> ReplyForm:
    """The form of a query's reply, from its mnemonic (``1MD?`` -> 0 or 1)."""
    mnemonic = query.rstrip("?").lstrip("0123456789").upper()
    if mnemonic in ("MD", "MO", "MV"):
        return FLAG
    if mnemonic == "VE":
        return VERSION
    if mnemonic == "TB":
        return ERROR_ENTRY
    return NUMBER if mnemonic in NUMERIC_QUERIES else ANY


NUMERIC_QUERIES = {"TP", "DP", "VA", "AC", "AG", "SL", "SR", "SN", "TE"}

logger = logging.getLogger(__name__)


def serial_settings(port: str, **overrides: object) -> SerialSettings:
    """The lab's settings: 19200 8N1 with RTS/CTS (the controller is mute without it)."""
    options: dict[str, object] = {
        "baudrate": 19200,
        "rtscts": True,
        "write_terminator": b"\r",
        "read_terminator": b"\r\n",
        "reply_timeout": 1.0,
        "any_line_end": True,
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


@dataclass(frozen=True, slots=True)
class AxisFaults(Request[tuple]):  # type: ignore[type-arg]
    """The errors the controller reported for one axis (from its FIFO) since last asked:
    tuple[ControllerError, ...], oldest first. Other axes' errors are kept for them."""

    axis: int


class MotorOff(RequestError):
    """The axis's motor is off (after a fault or a power-up): motion is refused until
    ``MotorOn``."""


class Esp300(SerialDevice):
    """The controller: owns the serial port; axes talk to it with Command / Query."""

    driver = "newport_esp300"

    def __init__(self, settings: LinkSettings, *, motor_off_on_estop: bool = False) -> None:
        self.settings = settings
        self.motor_off_on_estop = motor_off_on_estop
        self.axes = (1, 2, 3)
        self._faults: dict[int, list[ControllerError]] = {}

    async def on_start(self) -> None:
        await self.open_port(POLICY)
        try:
            version = (await self.ask_line(b"VE?", VERSION)).group(0)
        except Exception as exc:
            received = getattr(exc, "received", b"")
            raise self._port.protocol_error(
                "does not identify as an ESP300", command=b"VE?", received=received
            ) from exc
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
        await self.check_line(b"TB?", ERROR_ENTRY)

    async def handle(self, message: Message) -> object:
        match message:
            case Command(text=text):
                await self._port.send(text.encode("ascii"))
                mine = await self._errors_of(text)
                if mine:
                    said = "; ".join(f"error {e.code} {e.message}" for e in mine)
                    raise DeviceRefused(f"{self.name} refused {text}: {said}")
                return None
            case Query(text=text):
                command = text.encode("ascii")
                match = await self.ask_line(command, form_of(text))
                return match.group(0).decode("ascii", "replace").strip()
            case QueryNumber(text=text):
                return float((await self.ask_line(text.encode("ascii"), NUMBER)).group(0))
            case StopAxis(axis=axis):
                await self._port.send(b"%dST" % axis)
                return None
            case ReadErrors():
                return tuple(await self._drain_errors())
            case AxisFaults(axis=axis):
                await self._drain_errors()
                return tuple(self._faults.pop(axis, ()))
        return await super().handle(message)

    async def _error(self) -> ControllerError:
        match = await self.ask_line(b"TB?", ERROR_ENTRY)
        return ControllerError(
            int(match.group(1)), match.group(3).decode("ascii", "replace").strip()
        )

    async def _errors_of(self, text: str) -> list[ControllerError]:
        """After a command: drain the FIFO and keep the errors that are this command's — the
        general ones (1-99) and its own axis's. Another axis's errors (a fault queued while it
        moved on its own) are not this command's doing: they are kept for that axis."""
        digits = text[: len(text) - len(text.lstrip("0123456789"))]
        axis = int(digits) if digits else None
        mine = []
        for _ in range(10):
            error = await self._error()
            if error.code == 0:
                break
            owner = error.code // 100
            if owner == 0 or axis is None or owner == axis:
                mine.append(error)
            else:
                self._faults.setdefault(owner, []).append(error)
                del self._faults[owner][:-10]
        return mine

    async def _drain_errors(self) -> list[ControllerError]:
        """Pop the FIFO (10 deep); axis errors (axis * 100 + code) are also kept per axis,
        for the axis to report as its fault."""
        errors = []
        for _ in range(10):
            error = await self._error()
            if error.code == 0:
                break
            errors.append(error)
            if error.code >= 100:
                self._faults.setdefault(error.code // 100, []).append(error)
                del self._faults[error.code // 100][:-10]
        return errors


class Esp300Axis(DeviceActor):
    """One axis as a Movable in mm; its limits are the controller's software limits."""

    driver = "newport_esp300_axis"
    capabilities = (Capability.MOVABLE, Capability.PARAMETERIZED)
    operations = (Operation.HOME, Operation.STOP, Operation.MOTOR_ON)
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
                description="last position read; limits: the controller's software travel"
                " limits (SL/SR)",
            )
        )
        self.motor = add(
            Parameter(
                "motor",
                bool,
                True,
                read_only=True,
                description="motor power (MO?); off after a fault or power-up: motor_on",
            )
        )
        self.fault = add(
            Parameter(
                "fault",
                str,
                "",
                read_only=True,
                description="why the motor is off, as the controller said ('' if it is on)",
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
        await self._read_limits()
        for parameter in (self.velocity, self.acceleration, self.deceleration):
            await parameter.refresh()
        self.position.report(await self._query_float("TP?"))
        if not await self._motor_is_on():
            logger.warning(
                "%s: the motor is off (%s); motor_on switches it on",
                self.name,
                self.fault.value,
            )

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
                start = await self._read_position()
                self._check_travel(start + distance, (distance, start))
                return await self._move(start + distance, wait)
            case GetPosition():
                return await self._read_position()
            case Home():
                await self._require_motor("home")
                await self._command(f"OR{self.home_mode}")
                position = await self._wait_settled()
                await self._read_limits()
                return position
            case MotorOn():
                return await self._motor_on()
            case WaitSettled(timeout=timeout):
                with trio.move_on_after(timeout):
                    return await self._wait_settled()
                raise NotSettled(  # a refusal, not a crash: the axis is fine, just still moving
                    f"{self.name} is still moving after {timeout:g} s; the motion goes on"
                    " (StopMotion stops it)"
                )
            case StopMotion():  # never refused: a motor already off is stopped too
                try:
                    await self._command("ST")
                except DeviceRefused as refused:  # e.g. x13 motor not enabled: nothing moves
                    logger.info("%s: %s (stopping anyway)", self.name, refused)
                return await self._wait_settled(check_motor=False)
        return await super().handle(message)

    async def _read_limits(self) -> None:
        """``SL?``/``SR?``: at start, after a home search and after ``motor_on`` (a power
        cycle, another program or the front panel may have changed them meanwhile)."""
        low, high = await self._query_float("SL?"), await self._query_float("SR?")
        if not low <= high:
            raise DeviceRefused(f"{self.name}: software limits SL {low:g} > SR {high:g}")
        if self.limits not in ((low, high), (-math.inf, math.inf)):
            logger.warning(
                "%s: software limits changed from %g..%g to %g..%g mm", self.name, *self.limits,
                low, high,
            )  # fmt: skip
        self.limits = (low, high)
        self.position.limits = (low, high)  # what clients and scans see as the travel

    def _check_travel(self, target: float, relative: tuple[float, float] | None = None) -> None:
        """Refuse a target outside the software limits before anything is sent."""
        low, high = self.limits
        if low <= target <= high:
            return
        how = f"{target:g} mm"
        if relative is not None:
            distance, start = relative
            how = f"a move by {distance:g} mm from {start:g} mm would end at {target:g} mm, which"
        raise ValidationError(
            f"{self.name}: {how} is outside the travel {low:g} to {high:g} mm"
            " (the controller's software limits SL/SR)"
        )

    async def _move(self, target: float, wait: bool) -> float:
        self._check_travel(target)
        await self._require_motor("move")
        await self._command(f"PA{target:.6f}")
        if not wait:
            return await self._read_position()
        return await self._wait_settled()

    async def _wait_settled(self, *, check_motor: bool = True) -> float:
        while await self._controller.ask(Query(f"{self.axis}MD?")) != "1":
            await self._read_position()
            await trio.sleep(self.poll_interval)
        position = await self._read_position()
        if (
            check_motor and not await self._motor_is_on()
        ):  # a fault stopped the motion and cut the motor
            raise MotorOff(
                f"{self.name}: motion stopped at {position:g} mm: the motor went off"
                f" ({self.fault.value}); switch it on with motor_on, then home"
            )
        return position

    # -- motor power -----------------------------------------------------------------------------

    async def _motor_is_on(self) -> bool:
        """``MO?``; when off, the axis's errors from the controller become ``fault``."""
        on = await self._controller.ask(Query(f"{self.axis}MO?")) == "1"
        if not on:
            faults = await self._controller.ask(AxisFaults(self.axis))
            said = "; ".join(f"{f.code} {f.message}" for f in faults)
            if said or not self.fault.value:
                self.fault.report(said or "no fault recorded: power-up, or switched off")
        else:
            self.fault.report("")
        self.motor.report(on)
        return on

    async def _require_motor(self, what: str) -> None:
        if not await self._motor_is_on():
            raise MotorOff(
                f"{self.name}: cannot {what}: the motor is off ({self.fault.value});"
                " switch it on with motor_on (then home: the position may be lost)"
            )

    async def _motor_on(self) -> bool:
        await self._command("MO")
        on = await self._motor_is_on()
        if not on:
            raise DeviceRefused(f"{self.name}: MO sent but MO? still reads 0 ({self.fault.value})")
        await self._read_limits()
        logger.info("%s: motor on", self.name)
        return on

    async def _read_position(self) -> float:
        value = await self._query_float("TP?")
        self.position.report(value)
        return value

    async def _command(self, text: str) -> None:
        await self._controller.ask(Command(f"{self.axis}{text}"))

    async def _query_float(self, text: str) -> float:
        return await self._controller.ask(QueryNumber(f"{self.axis}{text}"))
