"""Newport 1830-C optical power meter: a Readable in watts, with its settings as Parameters.

Protocol: ../shared/reference/newport-1830c.md. The meter is silent for every set command and
reports a bad command only in its status byte, so each write here is followed by ``Q?`` and a
refusal becomes a clear error instead of a setting silently not applied. Readings carry the
status flags (saturated, over-range, busy) instead of hiding them; the units are forced to watts
(``U1``) because the meaning of ``U2``/``U3`` is disputed between sources — and kept there: a
reading without an exponent (watts always have one) makes the driver check ``U?``, and units
changed on the front panel are forced back to watts (logged) before the reading is taken again.
A word instead of a number (``SATURATED``, ``OVER``...: unconfirmed) is a flagged NaN reading.

Replies are believed only by form (:data:`POLICY`, ``Link.exchange``). Some units power up with
echo on — the command text comes back before each reply, whole or cut short — so the driver
sends ``E0`` on connect (a unit that does not know it only sets its command-error bit, which
is cleared) and every exchange skips lines repeating the command; only a numeric line is a
reading. A query that times out fails that request only; the next one resyncs on ``W?`` (its
four digits are no other reply's form), so a late reply never answers a later question.

Zero (``Zero`` message, the ``zero`` operation): ``Z1`` stores the present reading as the dark
offset and subtracts it from every reading after; ``Z0`` stops subtracting. Cover the detector
first.

Streaming: set ``streaming`` true and the actor polls ``D?`` back to back (``poll_interval``
apart) and publishes every reading to its ``power`` parameter; clients subscribe to that. Polls
go through the actor's own mailbox, so they never collide with a client's request on the port.
"""

from __future__ import annotations

import enum
import logging
import math
import re
import time

import trio

from runtime import ActorError, Interrupted, Message, Parameter

from ..capabilities import Capability, Operation, Read, Reading, Zero
from .serial_device import DeviceRefused, LinkSettings, SerialDevice
from .transport import ProtocolError, ReplyForm, ReplyPolicy, ReplyTimeout, SerialSettings

logger = logging.getLogger(__name__)

PARAMETER_ERROR, COMMAND_ERROR, SATURATED, OVER_RANGE, BUSY = 1, 2, 4, 8, 32
FLAG_NAMES = ((SATURATED, "saturated"), (OVER_RANGE, "over_range"), (BUSY, "busy"))


class Filter(enum.Enum):
    SLOW = "slow"  # 16-reading running average
    MEDIUM = "medium"  # 4 readings
    FAST = "fast"  # no averaging


FILTER_CODES = {Filter.SLOW: 1, Filter.MEDIUM: 2, Filter.FAST: 3}

# -- what each reply looks like ---------------------------------------------------------------
#: ``D?``: a number (``+.75E-9``, ``5E-9``, ``-15.24``), or a word the meter may use when it
#: cannot measure (unconfirmed: OVER, SAT, ERR, UNDER and longer words starting so, such as
#: SATURATED or OVERRANGE) — flagged, never a value.
READING = ReplyForm.of(
    "a power reading (a number)",
    rb"([+-]?(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d+)?)|((?:OVER|SAT|ERR|UNDER)[A-Z_ -]{0,12})",
)
#: The flag a word reading stands for (by its first three letters).
WORD_FLAGS = {b"OVE": "over_range", b"SAT": "saturated", b"ERR": "err", b"UND": "under"}
#: In watts the meter writes an exponent (``+.75E-9``, ``5E-9``; recorded); dB, dBm and REL
#: readings are plain decimals (``-15.24``).
EXPONENT = re.compile(rb"E[+-]?\d", re.IGNORECASE)
STATUS_BYTE = ReplyForm.of("a status byte (an integer 0-255)", rb"(\d{1,3})")
#: One-digit settings may come zero-padded (``03``), as the manual's ``Q?`` examples are.
DIGIT = ReplyForm.of("a one-digit setting", rb"0?(\d)")
ZERO_STATE = ReplyForm.of("0 or 1", rb"0?([01])")
WAVELENGTH = ReplyForm.of("a wavelength in four digits such as 0800", rb"(\d{4})")
POLICY = ReplyPolicy(known=(READING, STATUS_BYTE, WAVELENGTH), resync=(b"W?", WAVELENGTH))


def serial_settings(port: str, **overrides: object) -> SerialSettings:
    """The lab's settings: 9600 8N1, no flow control, LF both ways."""
    options: dict[str, object] = {
        "baudrate": 9600,
        "write_terminator": b"\n",
        "read_terminator": b"\n",
        "reply_timeout": 1.0,
    }
    options.update(overrides)
    return SerialSettings(port, **options)  # type: ignore[arg-type]


class Newport1830C(SerialDevice):
    driver = "newport_1830c"
    capabilities = (Capability.READABLE, Capability.PARAMETERIZED)
    operations = (Operation.ZERO,)
    units = "W"
    stream_names = ("readings",)

    def __init__(
        self, settings: LinkSettings, *, wavelength_limits: tuple[int, int] = (300, 1100)
    ) -> None:
        self.settings = settings
        add = self.parameters.add
        self.wavelength = add(
            Parameter(
                "wavelength",
                int,
                800,
                units="nm",
                limits=wavelength_limits,
                description="calibration wavelength of the detector",
                write=self._write_wavelength,
                read=self._read_wavelength,
            )
        )
        self.range = add(
            Parameter(
                "range",
                int,
                0,
                limits=(0, 8),
                description="0 = auto-range; 1 (most sensitive) to 8, one decade apart",
                write=self._write_range,
            )
        )
        self.attenuator = add(
            Parameter(
                "attenuator",
                bool,
                False,
                description="the detector's attenuator cap is fitted",
                write=self._write_attenuator,
                read=self._read_attenuator,
            )
        )
        self.filter = add(
            Parameter(
                "filter",
                Filter,
                Filter.FAST,
                description="averaging of successive readings",
                write=self._write_filter,
                read=self._read_filter,
            )
        )
        self.streaming = add(
            Parameter(
                "streaming",
                bool,
                False,
                description="poll and publish readings continuously",
            )
        )
        self.poll_interval = add(
            Parameter(
                "poll_interval",
                float,
                0.0,
                units="s",
                limits=(0.0, 3600.0),
                description="pause between streamed readings (0: as fast as the line allows)",
            )
        )
        self.keepalive = add(
            Parameter(
                "keepalive",
                float,
                5.0,
                units="s",
                limits=(0.0, 3600.0),
                description="check the link this often while idle (0: never)",
            )
        )
        self.power = add(
            Parameter(
                "power",
                float,
                math.nan,
                units="W",
                read_only=True,
                allow_nan=True,
                description="last reading (NaN until the first one)",
            )
        )
        self.present_range = add(
            Parameter(
                "present_range",
                int,
                0,
                read_only=True,
                description="range in use (1-8)",
            )
        )
        self.zero = add(
            Parameter(
                "zero",
                bool,
                False,
                read_only=True,
                description="a dark offset is subtracted (the zero operation sets it)",
            )
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_start(self) -> None:
        await self.open_port(POLICY)
        # Echo off. A unit without echo mode flags a command error (cleared below); no unit
        # acknowledges it, and one that keeps echoing is read past by every exchange.
        await self._port.send(b"E0")
        try:  # the meter has no *IDN?; Z? answering 0 or 1 is the known probe
            zero = await self._port.exchange(b"Z?", ZERO_STATE)
        except (ProtocolError, ReplyTimeout) as exc:
            raise self._port.protocol_error(
                "does not answer like a Newport 1830-C", command=b"Z?", received=exc.received
            ) from None
        self.zero.report(zero.group(1) == b"1")
        self.identity = "Newport 1830-C"
        await self._port.send(b"C")  # clear the command-error bit an unknown E0 may have set
        await self._command(b"U1")  # watts: the only units all sources agree on
        for parameter in (self.wavelength, self.attenuator, self.filter):
            await parameter.refresh()
        self.nursery.start_soon(self._stream)
        self.start_keepalive(lambda: 0.0 if self.streaming.value else self.keepalive.value)
        logger.info("%s: %s on %s", self.name, self.identity, self.settings.address)

    async def on_emergency_stop(self, reason: str) -> None:
        """A passive sensor: nothing to stop. Readings go on (useful during an incident)."""
        logger.info("%s: nothing to stop (%s)", self.name, reason)

    # -- messages --------------------------------------------------------------------------------

    async def handle(self, message: Message) -> object:
        if isinstance(message, Read):
            return await self.read()
        if isinstance(message, Zero):
            return await self.set_zero(message.enable)
        return await super().handle(message)

    async def check_link(self) -> None:
        await self.check_line(b"Q?", STATUS_BYTE)

    async def set_zero(self, enable: bool) -> bool:
        """``Z1``: the present reading becomes the dark offset, subtracted from now on; ``Z0``:
        no offset. Verified by ``Z?``; the reply is the state read back."""
        await self._command(b"Z1" if enable else b"Z0")
        on = await self._query_int(b"Z?") == 1
        self.zero.report(on)
        if on != enable:
            raise DeviceRefused(f"{self.name}: zero {'on' if enable else 'off'} did not take")
        logger.info("%s: zero %s", self.name, "on (dark offset stored)" if on else "off")
        return on

    async def read(self) -> Reading:
        match = await self.ask_line(b"D?", READING)
        if match.group(1) is not None and EXPONENT.search(match.group(1)) is None:
            match = await self._in_watts(match)
        status = await self._status()
        flags = tuple(name for bit, name in FLAG_NAMES if status & bit)
        if match.group(1) is not None:
            value = float(match.group(1))
        else:
            word = WORD_FLAGS[match.group(2)[:3].upper()]
            value, flags = math.nan, flags if word in flags else (*flags, word)
        self.power.report(value)
        reading = Reading(value, "W", time.time(), flags)
        self.stream("readings").publish(reading)
        return reading

    async def _stream(self) -> None:
        while True:
            await self.streaming.observable.wait_for(bool)
            while self.streaming.value:
                try:
                    await self.ref.ask(Read())
                except ActorError as error:
                    if not isinstance(error.root_cause, Interrupted):
                        raise
                    # an e-stop or abort cut this read short: a passive sensor streams on
                await trio.sleep(self.poll_interval.value)

    async def _in_watts(self, match: re.Match[bytes]) -> re.Match[bytes]:
        """A reading without an exponent may be dB/dBm/REL (the front panel's units button, or
        a meter that powered up so): check ``U?``; if the units are not watts, force ``U1``
        back, say so, and read again."""
        units = await self._query_int(b"U?")
        if units == 1:
            return match  # a plain decimal in watts after all
        logger.warning(
            "%s: the meter's units were %d, not watts (front panel? a power cycle?): %s"
            " discarded, U1 sent again",
            self.name,
            units,
            match.group(0).decode("ascii", "replace"),
        )
        await self._command(b"U1")
        return await self.ask_line(b"D?", READING)

    # -- the wire --------------------------------------------------------------------------------

    async def _status(self) -> int:
        status = int((await self.ask_line(b"Q?", STATUS_BYTE)).group(1))
        if self.range.value == 0 or status & (SATURATED | OVER_RANGE):
            self.present_range.report(await self._query_int(b"R?"))
        return status

    async def _command(self, command: bytes) -> None:
        """Send a set command and make the meter's silent refusal loud."""
        await self._port.send(command)
        status = await self._status()
        if status & (PARAMETER_ERROR | COMMAND_ERROR):
            await self._port.send(b"C")
            what = "parameter error" if status & PARAMETER_ERROR else "command error"
            raise DeviceRefused(f"{self.name} refused {command.decode()}: {what} (status {status})")

    async def _query_int(self, command: bytes) -> int:
        """A one-digit setting (``A?``, ``F?``, ``R?``, ``Z?``)."""
        return int((await self.ask_line(command, DIGIT)).group(1))

    async def _write_wavelength(self, nm: int) -> None:
        await self._command(b"W%04d" % nm)

    async def _read_wavelength(self) -> int:
        return int((await self.ask_line(b"W?", WAVELENGTH)).group(1))

    async def _write_range(self, value: int) -> None:
        await self._command(b"R%d" % value)

    async def _write_attenuator(self, on: bool) -> None:
        await self._command(b"A1" if on else b"A0")

    async def _read_attenuator(self) -> bool:
        return await self._query_int(b"A?") == 1

    async def _write_filter(self, value: Filter) -> None:
        await self._command(b"F%d" % FILTER_CODES[value])

    async def _read_filter(self) -> Filter:
        code = await self._query_int(b"F?")
        for member, number in FILTER_CODES.items():
            if number == code:
                return member
        raise self._port.protocol_error("unknown filter code", command=b"F?", received=b"%d" % code)
