"""Thorlabs ELL14 rotation mounts: one bus actor owns the shared port, one actor per mount.

Protocol: ../shared/reference/ell14.md. The bus actor writes packets and runs a reader that
sorts every reply line by its address into that mount's channel, so three mounts can move at
once (a move's ``PO`` only comes when the motion ends) while the port has a single owner.
Unsolicited ``BS``/``BO`` lines (front-panel buttons) update the mount's status and position.

Each mount calibrates from its own ``in`` reply (pulses per travel), never from a constant: the
lab's units report 143 360 pulses/turn where the manual says 262 144.

Emergency stop: the bus sends ``<addr>st`` to every attached module from its priority lane; a
mount e-stopped on its own asks the bus (priority lane too) for its own ``st``. Whether ``st``
interrupts an ordinary ``ma``/``mr`` is unconfirmed for the real modules.
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
    StopMotion,
    WaitSettled,
)
from .serial_device import DeviceRefused, SerialDevice
from .transport import SerialSettings

logger = logging.getLogger(__name__)

STATUS = {
    0: "ok", 1: "communication time-out", 2: "mechanical time-out", 3: "command error",
    4: "value out of range", 5: "module isolated", 6: "module out of isolation",
    7: "initializing error", 8: "thermal error", 9: "busy", 10: "sensor error",
    11: "motor error", 12: "out of range", 13: "over-current",
}  # fmt: skip
MECHANICAL_TIMEOUT = 2


def serial_settings(port: str, **overrides: object) -> SerialSettings:
    """9600 8N1, no handshake; packets have no terminator, replies end with CR LF."""
    options: dict[str, object] = {
        "baudrate": 9600,
        "write_terminator": b"",
        "read_terminator": b"\r\n",
        "reply_timeout": 2.0,
    }
    options.update(overrides)
    return SerialSettings(port, **options)  # type: ignore[arg-type]


def to_hex32(value: int) -> bytes:
    return b"%08X" % (value & 0xFFFFFFFF)


def from_hex32(text: bytes) -> int:
    value = int(text, 16)
    return value - (1 << 32) if value & 0x80000000 else value


@dataclass(frozen=True, slots=True)
class Attach(Request[object]):
    """Reply: a trio receive channel of every line module ``address`` sends (for the mount)."""

    address: str


@dataclass(frozen=True, slots=True)
class Send(Request[None]):
    packet: bytes


@dataclass(frozen=True, slots=True)
class StopModules(Request[None], PriorityMessage):
    addresses: tuple[str, ...]


class Ell14Bus(SerialDevice):
    """Owns the multidrop port: serialises writes, sorts replies by address."""

    driver = "thorlabs_ell14_bus"

    def __init__(self, settings: SerialSettings) -> None:
        self.settings = settings
        self._mounts: dict[str, trio.MemorySendChannel[bytes]] = {}

    async def on_start(self) -> None:
        await self.open_port()
        self.identity = f"ELLx bus on {self.settings.address}"
        self.nursery.start_soon(self._read_lines)

    async def on_emergency_stop(self, reason: str) -> None:
        for address in self._mounts:
            await self._port.write(address.encode() + b"st")
        logger.warning("%s: st sent to modules %s (%s)", self.name, ", ".join(self._mounts), reason)

    async def handle(self, message: Message) -> object:
        match message:
            case Attach(address=address):
                send, receive = trio.open_memory_channel[bytes](64)
                old = self._mounts.pop(address, None)
                if old is not None:
                    await old.aclose()
                self._mounts[address] = send
                return receive
            case Send(packet=packet):
                await self._port.write(packet)
                return None
            case StopModules(addresses=addresses):
                for address in addresses:
                    await self._port.write(address.encode() + b"st")
                return None
        return await super().handle(message)

    async def _read_lines(self) -> None:
        while True:
            line = await self._port.read_until(timeout=math.inf)
            address = line[:1].decode("ascii", "replace")
            channel = self._mounts.get(address)
            if channel is None:
                logger.warning("%s: line from unattached address %r: %r", self.name, address, line)
                continue
            try:
                channel.send_nowait(line[1:])
            except (trio.WouldBlock, trio.BrokenResourceError):
                logger.warning("%s: module %s is not reading; dropped %r", self.name, address, line)


class Ell14Mount(DeviceActor):
    """One rotation mount on the bus, a Movable in degrees."""

    driver = "thorlabs_ell14"
    capabilities = (Capability.MOVABLE, Capability.PARAMETERIZED)
    units = "deg"

    def __init__(
        self,
        bus: str,
        address: str,
        *,
        move_timeout: float = 30.0,
        accept_mechanical_timeout: bool = True,
    ) -> None:
        if len(address) != 1 or address not in "0123456789ABCDEF":
            raise ValueError(f"an ELL14 address is one hex digit 0-F, not {address!r}")
        self.bus_name = bus
        self.address = address
        self.move_timeout = move_timeout
        self.accept_mechanical_timeout = accept_mechanical_timeout
        self.pulses_per_degree = math.nan
        self._lines: trio.MemoryReceiveChannel[bytes] | None = None
        add = self.parameters.add
        self.velocity = add(
            Parameter(
                "velocity",
                int,
                100,
                units="%",
                limits=(25, 100),
                description="percent of the maximum speed (below ~25 % the motor may stall)",
                write=self._write_velocity,
                read=self._read_velocity,
            )
        )
        self.jog_step = add(
            Parameter(
                "jog_step",
                float,
                1.0,
                units="deg",
                limits=(0.0, 360.0),
                tolerance=0.01,
                write=self._write_jog_step,
                read=self._read_jog_step,
            )
        )
        self.position = add(Parameter("position", float, 0.0, units="deg", read_only=True))
        self.status = add(
            Parameter(
                "status", str, "ok", read_only=True, description="last status the module reported"
            )
        )

    @property
    def _bus(self) -> ActorRef:
        return self.system.ref(self.bus_name)

    async def on_start(self) -> None:
        lines = await self._bus.ask(Attach(self.address))
        assert isinstance(lines, trio.MemoryReceiveChannel)
        self._lines = lines
        reply = await self._transaction(b"in", {b"IN"})
        data = reply[2:]  # type, serial, year, firmware, hardware, travel, pulses per travel
        if len(data) != 30 or data[:2] != b"0E":
            raise DeviceRefused(f"{self.name}: 'in' reply {reply!r} is not an ELL14's")
        travel, pulses = int(data[-12:-8], 16), int(data[-8:], 16)
        self.pulses_per_degree = pulses / travel
        self.identity = f"ELL14 serial {data[2:10].decode()} at address {self.address}"
        for parameter in (self.velocity, self.jog_step):
            await parameter.refresh()
        await self._read_position()
        self.start_keepalive(lambda: 10.0)

    async def on_emergency_stop(self, reason: str) -> None:
        await self._bus.ask(StopModules((self.address,)), timeout=1.0)

    async def on_abort(self, reason: str) -> None:
        await self._bus.ask(StopModules((self.address,)), timeout=1.0)

    async def check_link(self) -> None:
        await self._status()

    async def handle(self, message: Message) -> object:
        match message:
            case MoveAbsolute(position=target):
                return await self._move(b"ma", self._pulses(target, absolute=True))
            case MoveRelative(distance=distance):
                return await self._move(b"mr", self._pulses(distance, absolute=False))
            case Home():
                return await self._move(b"ho", b"0")  # direction 0 = clockwise
            case GetPosition() | WaitSettled():
                return await self._read_position()  # moves complete before they reply
            case StopMotion():
                await self._bus.ask(StopModules((self.address,)))
                await self._expect({b"GS"}, 2.0)
                return await self._read_position()
        return await super().handle(message)

    # -- the protocol ------------------------------------------------------------------------

    def _pulses(self, degrees: float, *, absolute: bool) -> int:
        if absolute and not 0.0 <= degrees <= 360.0:
            raise ValidationError(f"{self.name}: {degrees:g} deg is outside 0 to 360 deg")
        if not math.isfinite(degrees):
            raise ValidationError(f"{self.name}: {degrees!r} is not a finite angle")
        return round(degrees * self.pulses_per_degree)

    async def _move(self, command: bytes, argument: int | bytes) -> float:
        data = argument if isinstance(argument, bytes) else to_hex32(argument)
        reply = await self._transaction(command + data, {b"PO", b"GS"}, self.move_timeout)
        if reply.startswith(b"GS"):
            code = int(reply[2:4], 16)
            if not (code == MECHANICAL_TIMEOUT and self.accept_mechanical_timeout):
                self.status.report(STATUS.get(code, f"code {code}"))
                raise DeviceRefused(
                    f"{self.name}: move refused: {STATUS.get(code, 'reserved')} (GS{code:02X})"
                )
            return await self._read_position()
        return self._publish_position(reply[2:10])

    async def _read_position(self) -> float:
        reply = await self._transaction(b"gp", {b"PO"})
        return self._publish_position(reply[2:10])

    def _publish_position(self, hex_pulses: bytes) -> float:
        degrees = from_hex32(hex_pulses) / self.pulses_per_degree
        self.position.report(degrees)
        return degrees

    async def _status(self) -> int:
        reply = await self._transaction(b"gs", {b"GS"})
        code = int(reply[2:4], 16)
        self.status.report(STATUS.get(code, f"code {code}"))
        return code

    async def _set(self, command: bytes) -> None:
        reply = await self._transaction(command, {b"GS"})
        code = int(reply[2:4], 16)
        if code:
            raise DeviceRefused(f"{self.name}: {command.decode()} refused: {STATUS.get(code)}")

    async def _transaction(self, command: bytes, expect: set[bytes], timeout: float = 2.0) -> bytes:
        """Send ``<addr><command>`` and return the first reply whose mnemonic is expected."""
        self._drain()
        await self._bus.ask(Send(self.address.encode() + command))
        return await self._expect(expect, timeout, command)

    async def _expect(self, expect: set[bytes], timeout: float, command: bytes = b"") -> bytes:
        assert self._lines is not None
        with trio.move_on_after(timeout):
            while True:
                line = await self._lines.receive()
                if line[:2] in expect:
                    return line
                self._background(line)
        raise TimeoutError(
            f"{self.name}: no {'/'.join(e.decode() for e in expect)} reply to"
            f" {command.decode() or 'stop'} within {timeout:g} s"
        )

    def _drain(self) -> None:
        """Stale lines (late replies, button presses) are applied, not mistaken for replies."""
        assert self._lines is not None
        while True:
            try:
                self._background(self._lines.receive_nowait())
            except trio.WouldBlock:
                return

    def _background(self, line: bytes) -> None:
        if line.startswith(b"BO") and len(line) >= 10:
            self._publish_position(line[2:10])
        elif line.startswith(b"BS") and len(line) >= 4:
            code = int(line[2:4], 16)
            self.status.report(STATUS.get(code, f"code {code}"))
        else:
            logger.info("%s: ignored stray reply %r", self.name, line)

    # -- parameters on the wire ----------------------------------------------------------------

    async def _write_velocity(self, percent: int) -> None:
        await self._set(b"sv%02X" % percent)

    async def _read_velocity(self) -> int:
        return int((await self._transaction(b"gv", {b"GV"}))[2:4], 16)

    async def _write_jog_step(self, degrees: float) -> None:
        await self._set(b"sj" + to_hex32(round(degrees * self.pulses_per_degree)))

    async def _read_jog_step(self) -> float:
        reply = await self._transaction(b"gj", {b"GJ"})
        return from_hex32(reply[2:10]) / self.pulses_per_degree
