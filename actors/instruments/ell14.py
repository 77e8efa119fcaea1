"""Thorlabs ELL14 rotation mounts: one bus actor owns the shared port, one actor per mount.

Protocol: ../shared/reference/ell14.md. The bus actor writes packets and runs a reader that
checks every line by form and sorts each valid frame by its address into that mount's channel,
so three mounts can move at once (a move's ``PO`` only comes when the motion ends) while the
port has a single owner. Unsolicited ``BS``/``BO`` lines (front-panel buttons) update the
mount's status and position.

A frame is ``<address><CODE><data>``: one hex digit, a reply code this driver knows, and
exactly the number of hex digits that code carries (``PO`` 8 — a signed 32-bit position,
``GS`` 2, ``IN`` 30...). Real buses are noisy (bytes before a frame after power-up, a frame cut
short and run into another unit's reply, a reply from an address nobody asked): the reader
takes the valid frame at the end of a line (resync) and reports anything else as a protocol
error naming the raw bytes — never a mis-decode (``2POF`` is not 0.0377°), never a crash loop
(``3PO`` is just a bad frame), never a reply credited to the wrong unit (a frame goes only to
the mount of its own address). A garbled frame that claims a mount's address is handed to that
mount so it can fail its request at once instead of waiting out a time-out; a query is then
asked again (resync on the next valid frame), a move re-reads status and position.

A move that ends with a status other than 0 (``GS02`` mechanical time-out, ``GS09`` busy...)
has failed: the error names the status from the protocol table and the position re-read from
the module. A bench can accept listed codes explicitly (``tolerate_status = [2]``).

Each mount calibrates from its own ``in`` reply (pulses per travel), never from a constant: the
lab's units report 143 360 pulses/turn where the manual says 262 144. With ``discover = true``
the bus asks ``in`` at every address 0-F at start-up and reports the units it finds (model,
serial) next to the addresses configured.

Emergency stop: the bus sends ``<addr>st`` to every attached module from its priority lane; a
mount e-stopped on its own asks the bus (priority lane too) for its own ``st``. Whether ``st``
interrupts an ordinary ``ma``/``mr`` is unconfirmed for the real modules.

Position during a move: ``GetPosition`` is a query (answered while a move is in flight), but a
moving module answers no query (``GS09`` busy, or silence: reference, unconfirmed), so during a
move the mount answers the position *estimated* from the move's start, target and speed
(``velocity`` % of ``max_speed``, 430 deg/s by the spec, unconfirmed), clamped between start and
target; the position read from the module replaces it when the move ends. Idle, it reads ``gp``.
The mount's own exchanges are serialised by a lock, because a query runs beside the handler in
flight and both read the same channel of replies; a query never waits for the lock (it answers
the last position read while another exchange holds it).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
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
    MoveAbsolute,
    MoveRelative,
    Operation,
    StopMotion,
    WaitSettled,
)
from .serial_device import DeviceRefused, SerialDevice
from .transport import ReplyTimeout, SerialSettings, excerpt

logger = logging.getLogger(__name__)

STATUS = {
    0: "ok", 1: "communication time-out", 2: "mechanical time-out", 3: "command error",
    4: "value out of range", 5: "module isolated", 6: "module out of isolation",
    7: "initializing error", 8: "thermal error", 9: "busy", 10: "sensor error",
    11: "motor error", 12: "out of range", 13: "over-current",
}  # fmt: skip
MECHANICAL_TIMEOUT = 2
#: Reply codes and the exact number of hex digits each carries.
REPLY_LENGTHS = {
    b"IN": 30, b"PO": 8, b"HO": 8, b"GJ": 8, b"BO": 8,
    b"GS": 2, b"GV": 2, b"BS": 2, b"I1": 22, b"I2": 22,
}  # fmt: skip
FRAME = re.compile(rb"([0-9A-F])(" + b"|".join(REPLY_LENGTHS) + rb")([0-9A-Fa-f]*)")
#: Garbled frames that claim a mount's address are handed to it for this long while it waits
#: for a valid reply (the real one may still come) before it resyncs.
GRACE = 0.25
#: Discovery: how long to wait at each address for an ``in`` reply (36 ms on the wire).
DISCOVERY_WINDOW = 0.25
#: Rotation speed at 100 % velocity, deg/s (Thorlabs spec via rust-daq; unconfirmed): only used
#: to estimate the position while a module moves (it answers no query then).
MAX_SPEED = 430.0
MODELS = {6: "ELL6", 7: "ELL7", 8: "ELL8", 9: "ELL9", 10: "ELL10", 14: "ELL14", 15: "ELL15",
          16: "ELL16", 17: "ELL17", 18: "ELL18", 20: "ELL20"}  # fmt: skip


def serial_settings(port: str, **overrides: object) -> SerialSettings:
    """9600 8N1, no handshake; packets have no terminator, replies end with CR LF (a bare CR
    or LF is accepted too: noise eats bytes)."""
    options: dict[str, object] = {
        "baudrate": 9600,
        "write_terminator": b"",
        "read_terminator": b"\r\n",
        "reply_timeout": 2.0,
        "any_line_end": True,
    }
    options.update(overrides)
    return SerialSettings(port, **options)  # type: ignore[arg-type]


def to_hex32(value: int) -> bytes:
    return b"%08X" % (value & 0xFFFFFFFF)


def from_hex32(text: bytes) -> int:
    if len(text) != 8:
        raise ValueError(f"a position is 8 hex digits, not {text!r}")
    value = int(text, 16)
    return value - (1 << 32) if value & 0x80000000 else value


# -- frames ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One valid reply frame: address, two-letter code, data of exactly the code's length."""

    address: str
    code: bytes
    data: bytes

    @property
    def raw(self) -> bytes:
        return self.address.encode() + self.code + self.data


@dataclass(frozen=True, slots=True)
class Garbled:
    """Bytes that are not a frame, which claim to come from a mount's address."""

    raw: bytes
    reason: str


def parse_frame(line: bytes) -> Frame | None:
    """The frame ``line`` is, exactly, or None."""
    match = FRAME.fullmatch(line)
    if match is None or len(match.group(3)) != REPLY_LENGTHS[match.group(2)]:
        return None
    return Frame(match.group(1).decode(), match.group(2), match.group(3).upper())


def split_line(line: bytes) -> tuple[bytes, Frame | None]:
    """(noise, frame): the valid frame that ends ``line`` and whatever came before it (after
    power-up noise, or a frame cut short and run into the next). No valid frame: (line, None).
    A frame's data is hex only and every code has a non-hex letter, so a frame never starts
    inside another frame's data."""
    for start in range(len(line)):
        frame = parse_frame(line[start:])
        if frame is not None:
            return line[:start], frame
    return line, None


def explain(noise: bytes) -> tuple[str | None, str]:
    """(the address a bad frame claims, why it is not a frame)."""
    match = re.match(rb"([0-9A-F])(" + b"|".join(REPLY_LENGTHS) + rb")(.*)", noise, re.DOTALL)
    if match is None:
        return None, "line noise"
    code, data = match.group(2), match.group(3)
    expected = REPLY_LENGTHS[code]
    if re.fullmatch(rb"[0-9A-Fa-f]*", data) is None:
        return match.group(1).decode(), f"{code.decode()} data is not hex"
    return (
        match.group(1).decode(),
        f"{code.decode()} carries {expected} hex digits, got {len(data)}",
    )


# -- messages between the mounts and the bus ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attach(Request[object]):
    """Reply: a trio receive channel of every frame (and garbled frame) of module ``address``."""

    address: str


@dataclass(frozen=True, slots=True)
class Send(Request[None]):
    packet: bytes


@dataclass(frozen=True, slots=True)
class StopModules(Request[None], PriorityMessage):
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """A unit found by discovery."""

    address: str
    model: str
    serial: str

    def __str__(self) -> str:
        return f"{self.address}: {self.model} serial {self.serial}"


@dataclass(frozen=True, slots=True)
class Motion:
    """A move in flight, as the mount knows it: from where, to where, from when, how long."""

    start: float  # deg
    target: float  # deg
    began: float  # trio time
    duration: float  # s, at the speed the module was set to

    def at(self, now: float) -> float:
        """The estimated position at trio time ``now``, between start and target."""
        if self.duration <= 0:
            return self.target
        fraction = min(1.0, max(0.0, (now - self.began) / self.duration))
        return self.start + (self.target - self.start) * fraction


class ReplyGarbled(RequestError):
    """The reply could not be trusted (a protocol error naming its bytes); the request failed
    and the mount resynchronised."""


class MoveFailed(DeviceRefused):
    """A move ended with a status other than 0 (or without a readable reply); the message
    names the status and the position re-read from the module."""


class Ell14Bus(SerialDevice):
    """Owns the multidrop port: serialises writes, checks and sorts replies by address."""

    driver = "thorlabs_ell14_bus"

    def __init__(
        self, settings: SerialSettings, *, discover: bool = False, addresses: Sequence[str] = ()
    ) -> None:
        self.settings = settings
        self.discover = discover
        self.configured = tuple(addresses)
        self.found: dict[str, ModuleInfo] = {}
        self._mounts: dict[str, trio.MemorySendChannel[Frame | Garbled]] = {}
        self.protocol_errors = self.parameters.add(
            Parameter(
                "protocol_errors",
                int,
                0,
                read_only=True,
                description="lines on the bus that were not valid frames (each logged)",
            )
        )
        self.modules = self.parameters.add(
            Parameter(
                "modules",
                str,
                "",
                read_only=True,
                description="units found by discovery (discover = true): address, model, serial",
            )
        )

    async def on_start(self) -> None:
        await self.open_port()
        self.identity = f"ELLx bus on {self.settings.address}"
        if self.discover:
            await self._discover()
        self.nursery.start_soon(self._read_lines)

    async def on_emergency_stop(self, reason: str) -> None:
        for address in self._mounts:
            await self._port.write(address.encode() + b"st")
        logger.warning("%s: st sent to modules %s (%s)", self.name, ", ".join(self._mounts), reason)

    async def handle(self, message: Message) -> object:
        match message:
            case Attach(address=address):
                send, receive = trio.open_memory_channel[Frame | Garbled](64)
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

    # -- discovery -------------------------------------------------------------------------------

    async def _probe(self, address: str) -> None:
        """``in`` at one address; what answers within the window goes into ``found``."""
        self._port.drain()
        await self._port.write(address.encode() + b"in")
        deadline = trio.current_time() + DISCOVERY_WINDOW
        while (remaining := deadline - trio.current_time()) > 0:
            try:
                line = await self._port.read_until(timeout=remaining)
            except ReplyTimeout:
                return
            noise, frame = split_line(line)
            if noise:
                self._protocol_error(noise)
            if frame is not None and frame.address == address and frame.code == b"IN":
                kind, serial = int(frame.data[:2], 16), frame.data[2:10].decode()
                self.found[address] = ModuleInfo(
                    address, MODELS.get(kind, f"ELLx type {kind}"), serial
                )
                return

    async def _discover(self) -> None:
        """``in`` at every address 0-F, one at a time (replies at once would collide on the
        bus); report what answered, and how that compares with the configured addresses. A
        configured address that did not answer is asked once more: one reply lost to noise on
        the bus (or a busy host) must not read as a module gone."""
        for address in "0123456789ABCDEF":
            await self._probe(address)
        for address in self.configured:
            if address not in self.found:
                await self._probe(address)
        self.found = dict(sorted(self.found.items(), key=lambda item: int(item[0], 16)))
        listing = "; ".join(str(m) for m in self.found.values()) or "none"
        self.modules.report(listing)
        self.identity = f"ELLx bus on {self.settings.address}: {listing}"
        logger.info("%s: discovery found %s", self.name, listing)
        missing = [a for a in self.configured if a not in self.found]
        extra = [a for a in self.found if a not in self.configured]
        if missing:
            logger.warning(
                "%s: configured address(es) %s did not answer 'in'", self.name, ", ".join(missing)
            )
        if extra:
            logger.warning(
                "%s: unit(s) at %s are not in the bench's addresses: %s",
                self.name,
                ", ".join(extra),
                "; ".join(str(self.found[a]) for a in extra),
            )

    # -- the reader ------------------------------------------------------------------------------

    async def _read_lines(self) -> None:
        while True:
            line = await self._port.read_until(timeout=math.inf)
            noise, frame = split_line(line)
            if noise:
                self._protocol_error(noise)
            if frame is not None:
                self._deliver(frame.address, frame, frame.raw)

    def _protocol_error(self, noise: bytes) -> None:
        claimed, why = explain(noise)
        self.protocol_errors.report(self.protocol_errors.value + 1)
        logger.warning(
            "%s: protocol error: %s is not a frame (%s); resynchronising on the next valid frame",
            self.name,
            excerpt(noise),
            why,
        )
        if claimed is not None:
            self._deliver(claimed, Garbled(noise, why), noise)

    def _deliver(self, address: str, item: Frame | Garbled, raw: bytes) -> None:
        channel = self._mounts.get(address)
        if channel is None:
            logger.warning(
                "%s: line from unattached address %r: %s", self.name, address, excerpt(raw)
            )
            return
        try:
            channel.send_nowait(item)
        except (trio.WouldBlock, trio.BrokenResourceError):
            logger.warning(
                "%s: module %s is not reading; dropped %s", self.name, address, excerpt(raw)
            )


class Ell14Mount(DeviceActor):
    """One rotation mount on the bus, a Movable in degrees."""

    driver = "thorlabs_ell14"
    capabilities = (Capability.MOVABLE, Capability.PARAMETERIZED)
    operations = (Operation.HOME, Operation.STOP)
    units = "deg"

    def __init__(
        self,
        bus: str,
        address: str,
        *,
        move_timeout: float = 30.0,
        tolerate_status: Collection[int] = (),
        query_retries: int = 2,
        max_speed: float = MAX_SPEED,
    ) -> None:
        if len(address) != 1 or address not in "0123456789ABCDEF":
            raise ValueError(f"an ELL14 address is one hex digit 0-F, not {address!r}")
        unknown = [code for code in tolerate_status if code not in STATUS or code == 0]
        if unknown:
            raise ValueError(f"tolerate_status: {unknown} are not status codes 1-13")
        self.bus_name = bus
        self.address = address
        self.move_timeout = move_timeout
        self.tolerate_status = frozenset(tolerate_status)
        self.query_retries = query_retries
        self.max_speed = max_speed
        self.pulses_per_degree = math.nan
        self._lines: trio.MemoryReceiveChannel[Frame | Garbled] | None = None
        self._wire = trio.Lock()  # one exchange at a time on this mount's replies
        self._motion: Motion | None = None  # the move in flight, for GetPosition meanwhile
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
        self.position = add(
            Parameter(
                "position",
                float,
                0.0,
                units="deg",
                limits=(0.0, 360.0),
                read_only=True,
                description="last position read; absolute moves accept 0 to 360 deg",
            )
        )
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
        frame = await self._query(b"in", b"IN")
        data = frame.data  # type, serial, year, firmware, hardware, travel, pulses per travel
        if data[:2] != b"0E":
            kind = int(data[:2], 16)
            raise DeviceRefused(
                f"{self.name}: the unit at address {self.address} is a"
                f" {MODELS.get(kind, f'type {kind}')}, not an ELL14 ('in' reply {frame.raw!r})"
            )
        travel, pulses = int(data[-12:-8], 16), int(data[-8:], 16)
        if travel <= 0 or pulses <= 0:
            raise DeviceRefused(f"{self.name}: 'in' reply {frame.raw!r} has no calibration")
        self.pulses_per_degree = pulses / travel
        self.identity = f"ELL14 serial {data[2:10].decode()} at address {self.address}"
        for parameter in (self.velocity, self.jog_step):
            await parameter.refresh()
        await self._read_position()
        # a check may wait behind a move (up to move_timeout, then a resync)
        self.start_keepalive(lambda: 10.0, patience=self.move_timeout + 20.0)

    async def on_emergency_stop(self, reason: str) -> None:
        await self._bus.ask(StopModules((self.address,)), timeout=1.0)

    async def on_abort(self, reason: str) -> None:
        await self._bus.ask(StopModules((self.address,)), timeout=1.0)

    async def check_link(self) -> None:
        await self._status()

    async def handle(self, message: Message) -> object:
        match message:
            case MoveAbsolute(position=target):
                pulses = self._pulses(target, absolute=True)
                return await self._move(b"ma", pulses, target)
            case MoveRelative(distance=distance):
                pulses = self._pulses(distance, absolute=False)
                return await self._move(b"mr", pulses, self.position.value + distance)
            case Home():
                return await self._move(b"ho", b"0", 0.0)  # direction 0 = clockwise
            case GetPosition():  # a query: runs beside a move in flight
                return await self._live_position()
            case WaitSettled():
                return await self._read_position()  # moves complete before they reply
            case StopMotion():
                async with self._exclusive():
                    await self._bus.ask(StopModules((self.address,)))
                    try:
                        await self._expect({b"GS"}, 2.0, b"st")
                    except (TimeoutError, _GarbledReply) as problem:
                        logger.warning(
                            "%s: st: %s (reading the position anyway)", self.name, problem
                        )
                    return await self._read_position()
        return await super().handle(message)

    async def _live_position(self) -> float:
        """GetPosition: estimated during a move (the module answers no query while it moves),
        the last position read while another exchange holds the link, else read (``gp``)."""
        motion = self._motion
        if motion is not None:
            return motion.at(trio.current_time())
        if self._wire.locked():
            return float(self.position.value)
        return await self._read_position()

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Hold this mount's replies for one exchange (re-entrant within one task): a query
        and the handler in flight never read each other's replies."""
        if self._wire.statistics().owner is trio.lowlevel.current_task():
            yield
            return
        async with self._wire:
            yield

    # -- the protocol ------------------------------------------------------------------------

    def _pulses(self, degrees: float, *, absolute: bool) -> int:
        if not math.isfinite(degrees):
            raise ValidationError(f"{self.name}: {degrees!r} is not a finite angle")
        if absolute and not 0.0 <= degrees <= 360.0:
            raise ValidationError(
                f"{self.name}: {degrees:g} deg is outside the allowed range 0 to 360 deg"
            )
        # the command carries 32 signed bits of pulses: a larger relative move would wrap
        # into another one (to_hex32 masks), or overflow converting (1e308 deg)
        most = (2**31 - 1) / self.pulses_per_degree
        if abs(degrees) > most:
            raise ValidationError(
                f"{self.name}: a relative move of {degrees:g} deg is too large; at most"
                f" ±{math.floor(most)} deg at once"
            )
        return round(degrees * self.pulses_per_degree)

    async def _move(self, command: bytes, argument: int | bytes, target: float) -> float:
        """A move (or home) to about ``target`` degrees; while it runs, GetPosition answers
        from its estimate (:class:`Motion`), set before the link is taken so that no query
        ever waits for the move."""
        start = float(self.position.value)
        speed = self.max_speed * self.velocity.value / 100.0
        duration = abs(target - start) / speed if speed > 0 else 0.0
        self._motion = Motion(start, target, trio.current_time(), duration)
        try:
            async with self._exclusive():
                self._motion = Motion(start, target, trio.current_time(), duration)
                return await self._move_exchange(command, argument)
        finally:
            self._motion = None

    async def _move_exchange(self, command: bytes, argument: int | bytes) -> float:
        """The move's one reply, when the motion ends: ``PO`` is success, a
        ``GS`` status a failure unless tolerated; the position is then read again.

        A garbled reply, or none in time, is resolved by asking the module (``gs``): busy (or
        no answer, as a moving module may give) means the motion goes on and the bytes were
        noise, so the wait continues; otherwise the move failed, and says why and where the
        mount is now."""
        data = argument if isinstance(argument, bytes) else to_hex32(argument)
        packet = command + data
        self._drain()
        await self._bus.ask(Send(self.address.encode() + packet))
        deadline = trio.current_time() + self.move_timeout
        while True:
            try:
                remaining = max(0.0, deadline - trio.current_time())
                frame = await self._expect({b"PO", b"GS"}, remaining, packet)
                break
            except (_GarbledReply, TimeoutError) as problem:
                answer = await self._probe()
                if isinstance(answer, Frame):
                    frame = answer  # the move's own reply came after all
                    break
                if answer in (9, None) and trio.current_time() < deadline:
                    continue  # still moving: what arrived was not its reply
                what = (
                    f"the reply was garbled: {excerpt(problem.raw)} ({problem.reason})"
                    if isinstance(problem, _GarbledReply)
                    else f"no reply within {self.move_timeout:g} s"
                )
                status = "no answer" if answer is None else STATUS.get(answer, str(answer))
                raise MoveFailed(
                    f"{self.name}: {packet.decode()}: {what}; resynchronised: status {status},"
                    f" position {await self._position_text()}"
                ) from None
        if frame.code == b"GS":
            code = int(frame.data, 16)
            text = STATUS.get(code, "reserved")
            self.status.report(text)
            if code in self.tolerate_status:
                position = await self._read_position()
                logger.warning(
                    "%s: %s ended with status %d (%s), tolerated by the bench; at %.4g deg",
                    self.name, packet.decode(), code, text, position,
                )  # fmt: skip
                return position
            hint = "" if code == 9 else f" (tolerate_status = [{code}] would accept it)"
            raise MoveFailed(
                f"{self.name}: {packet.decode()} failed: {text} (GS{code:02X});"
                f" position re-read: {await self._position_text()}{hint}"
            )
        self.status.report("ok")
        return self._publish_position(frame.data)

    async def _probe(self) -> Frame | int | None:
        """After a doubtful move reply: ``gs``. The move's own ``PO`` if it turns up now, else
        the status code, or None if the module does not answer (a moving one may not)."""
        await self._bus.ask(Send(self.address.encode() + b"gs"))
        try:
            frame = await self._expect({b"PO", b"GS"}, 1.0, b"gs")
        except (_GarbledReply, TimeoutError):
            return None
        if frame.code == b"PO":
            return frame
        return int(frame.data, 16)

    async def _position_text(self) -> str:
        try:
            return f"{await self._read_position():.4g} deg"
        except (TimeoutError, ReplyGarbled, DeviceRefused) as problem:
            return f"unknown ({problem})"

    async def _read_position(self) -> float:
        return self._publish_position((await self._query(b"gp", b"PO")).data)

    def _publish_position(self, hex_pulses: bytes) -> float:
        degrees = from_hex32(hex_pulses) / self.pulses_per_degree
        self.position.report(degrees)
        return degrees

    async def _status(self) -> int:
        code = int((await self._query(b"gs", b"GS")).data, 16)
        self.status.report(STATUS.get(code, f"code {code}"))
        return code

    async def _set(self, command: bytes) -> None:
        frame = await self._query(command, b"GS")
        code = int(frame.data, 16)
        if code:
            raise DeviceRefused(
                f"{self.name}: {command.decode()} refused: {STATUS.get(code, 'reserved')}"
                f" (GS{code:02X})"
            )

    async def _query(self, command: bytes, code: bytes) -> Frame:
        """Send a command that answers at once and return its frame of ``code``. A garbled or
        missing reply is asked again (up to ``query_retries`` times): the resync is the next
        valid frame. Then a garbled reply fails the request (ReplyGarbled); silence raises
        TimeoutError, which restarts the mount (the link is in doubt)."""
        for attempt in range(self.query_retries + 1):
            try:
                async with self._exclusive():
                    return await self._query_once(command, code)
            except _GarbledReply as garbled:
                if attempt == self.query_retries:
                    raise ReplyGarbled(
                        f"{self.name}: the reply to {command.decode()} was garbled"
                        f" {self.query_retries + 1} times; last: {excerpt(garbled.raw)}"
                        f" ({garbled.reason})"
                    ) from None
            except TimeoutError:
                if attempt == self.query_retries:
                    raise
            logger.info(
                "%s: asking %s again (attempt %d)", self.name, command.decode(), attempt + 2
            )
        raise AssertionError("unreachable")

    async def _query_once(self, command: bytes, code: bytes) -> Frame:
        self._drain()
        await self._bus.ask(Send(self.address.encode() + command))
        frame = await self._expect({code, b"GS"}, 2.0, command)
        while frame.code != code:  # a GS where something else was asked: a refusal
            status = int(frame.data, 16)
            if status:
                self.status.report(STATUS.get(status, f"code {status}"))
                raise DeviceRefused(
                    f"{self.name}: {command.decode()} answered"
                    f" {STATUS.get(status, 'reserved')} (GS{status:02X})"
                )
            frame = await self._expect({code}, 2.0, command)  # GS00: stale
        return frame

    async def _expect(self, expect: set[bytes], timeout: float, command: bytes) -> Frame:
        """The first frame with a code in ``expect``. Other frames are background (buttons) or
        stale; a garbled frame claiming this address is raised (as ``Garbled``) unless a valid
        reply follows within ``GRACE`` seconds."""
        assert self._lines is not None
        garbled: Garbled | None = None
        deadline = trio.current_time() + timeout
        while True:
            with trio.move_on_at(deadline) as scope:
                item = await self._lines.receive()
            if scope.cancelled_caught:
                if garbled is not None:
                    raise _GarbledReply(garbled)
                raise TimeoutError(
                    f"{self.name}: no {'/'.join(e.decode() for e in expect)} reply to"
                    f" {command.decode()} within {timeout:g} s"
                )
            if isinstance(item, Garbled):
                garbled = item
                deadline = min(deadline, trio.current_time() + GRACE)
            elif item.code in expect:
                return item
            else:
                self._background(item)

    def _drain(self) -> None:
        """Stale lines (late replies, button presses) are applied, not mistaken for replies."""
        assert self._lines is not None
        while True:
            try:
                item = self._lines.receive_nowait()
            except trio.WouldBlock:
                return
            if isinstance(item, Frame):
                self._background(item)

    def _background(self, frame: Frame) -> None:
        if frame.code == b"BO":
            self._publish_position(frame.data)
        elif frame.code == b"BS":
            code = int(frame.data, 16)
            self.status.report(STATUS.get(code, f"code {code}"))
        else:
            logger.info("%s: ignored a stale reply %r", self.name, frame.raw)

    # -- parameters on the wire ----------------------------------------------------------------

    async def _write_velocity(self, percent: int) -> None:
        await self._set(b"sv%02X" % percent)

    async def _read_velocity(self) -> int:
        return int((await self._query(b"gv", b"GV")).data, 16)

    async def _write_jog_step(self, degrees: float) -> None:
        await self._set(b"sj" + to_hex32(round(degrees * self.pulses_per_degree)))

    async def _read_jog_step(self) -> float:
        return from_hex32((await self._query(b"gj", b"GJ")).data) / self.pulses_per_degree


class _GarbledReply(Exception):
    """Inside a mount: the reply it waited for arrived garbled (and nothing valid followed)."""

    def __init__(self, garbled: Garbled) -> None:
        super().__init__(garbled.reason)
        self.raw = garbled.raw
        self.reason = garbled.reason
