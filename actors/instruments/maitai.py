"""Spectra-Physics Mai Tai: wavelength, shutter and emission as Parameters, power as a Readable.

Protocol: ../shared/reference/maitai.md. The laser never answers a set command, so every write
is verified: errors through ``SYST:ERR?``, the shutter by polling ``SHUT?`` through its ~1 s
lag (a shutter that does not follow — LOCAL mode, keyswitch — is a ReadbackMismatch, never a
silent success), the wavelength by ``WAV?``.

Safety (a Class 4 laser):
* emission is refused unless the shutter is *confirmed* closed by ``SHUT?`` — read only after
  the lag of the last shutter command has passed, and anything but ``0`` counts as open;
* opening the shutter and switching emission on are hazardous (refused while the e-stop is
  latched); closing and switching off never are;
* neither is ever restored automatically after a restart;
* the emergency stop sends ``SHUT 0`` at once (and ``OFF`` if configured), then checks that the
  shutter really closed; if it did not, the stop fails loudly.
"""

from __future__ import annotations

import logging
import re
import time

import trio

from runtime import Message, Parameter, RequestError

from ..capabilities import Capability, Read, Reading
from .serial_device import DeviceRefused, SerialDevice
from .transport import SerialSettings

logger = logging.getLogger(__name__)

NUMBER = re.compile(rb"^\s*([-+]?\d+(?:\.\d*)?)\s*(nm|W|%)?\s*$", re.IGNORECASE)


class SafetyInterlock(RequestError):
    """A command refused by the driver's safety rules (not by the laser)."""


class ShutterNotClosed(Exception):
    """The shutter did not confirm closed after an emergency stop: the beam may be on."""


def serial_settings(port: str, **overrides: object) -> SerialSettings:
    """Power-up settings: 9600 8N1 with XON/XOFF (never RTS/CTS); LF out, LF in; slow replies."""
    options: dict[str, object] = {
        "baudrate": 9600,
        "xonxoff": True,
        "rtscts": False,
        "write_terminator": b"\n",
        "read_terminator": b"\n",
        "reply_timeout": 3.0,
    }
    options.update(overrides)
    return SerialSettings(port, **options)  # type: ignore[arg-type]


class MaiTai(SerialDevice):
    driver = "spectra_physics_maitai"
    capabilities = (Capability.READABLE, Capability.PARAMETERIZED)
    units = "W"
    stream_names = ("readings",)

    def __init__(
        self, settings: SerialSettings, *, off_on_estop: bool = False, shutter_lag: float = 1.2
    ) -> None:
        self.settings = settings
        self.off_on_estop = off_on_estop
        self.shutter_lag = shutter_lag
        self._shutter_moved_at = -1e9
        add = self.parameters.add
        self.shutter = add(
            Parameter(
                "shutter",
                bool,
                False,
                hazardous=lambda open_: open_,
                description="output shutter open (verified by SHUT? after its lag)",
                write=self._write_shutter,
                read=self._read_shutter,
            )
        )
        self.emission = add(
            Parameter(
                "emission",
                bool,
                False,
                hazardous=lambda on: on,
                description="pump diodes on; refused unless the shutter is confirmed closed",
                write=self._write_emission,
                read=self._read_emission,
            )
        )
        self.power = add(
            Parameter(
                "power",
                float,
                0.0,
                units="W",
                read_only=True,
                description="output power (READ:POW?)",
            )
        )
        self.actual_wavelength = add(
            Parameter(
                "actual_wavelength",
                float,
                0.0,
                units="nm",
                read_only=True,
                description="wavelength now (lags the setpoint while tuning)",
            )
        )
        self.warmup = add(
            Parameter(
                "warmup",
                float,
                0.0,
                units="%",
                read_only=True,
                limits=(0.0, 100.0),
                description="warm-up progress",
            )
        )
        self.wavelength: Parameter[float] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_start(self) -> None:
        await self.open_port()
        identity = await self._port.query(b"*IDN?")
        if b"MAITAI" not in identity.upper().replace(b" ", b""):
            raise self._port.protocol_error(
                "does not identify as a Mai Tai", command=b"*IDN?", received=identity
            )
        self.identity = identity.decode("ascii", "replace").strip()
        low, high = await self._number(b"WAV:MIN?"), await self._number(b"WAV:MAX?")
        if "wavelength" not in self.parameters:
            self.wavelength = self.parameters.add(
                Parameter(
                    "wavelength",
                    float,
                    await self._number(b"WAV?"),
                    units="nm",
                    limits=(low, high),
                    tolerance=0.5,
                    description="setpoint; limits read from the laser",
                    write=self._write_wavelength,
                    read=lambda: self._number(b"WAV?"),
                )
            )
        for parameter in (self.shutter, self.emission, self.wavelength):
            await parameter.refresh()  # type: ignore[union-attr]
        self.warmup.report(await self._number(b"READ:PCTW?"))
        self.start_keepalive(lambda: 5.0)
        logger.info(
            "%s: %s on %s (%g-%g nm)", self.name, self.identity, self.settings.address, low, high
        )

    async def on_emergency_stop(self, reason: str) -> None:
        await self._port.write(b"SHUT 0")
        self._shutter_moved_at = trio.current_time()
        if self.off_on_estop:
            await self._port.write(b"OFF")
        logger.warning("%s: SHUT 0 sent (%s); verifying", self.name, reason)
        if await self._read_shutter():
            await self._port.write(b"SHUT 0")
            raise ShutterNotClosed(
                f"{self.name}: the shutter still reads open {self.shutter_lag:g} s after SHUT 0"
                " (front panel in LOCAL mode? keyswitch?) — treat the beam as ON"
            )
        self.shutter.report(False)

    async def check_link(self) -> None:
        self.warmup.report(await self._number(b"READ:PCTW?"))

    # -- messages --------------------------------------------------------------------------------

    async def handle(self, message: Message) -> object:
        if isinstance(message, Read):
            watts = await self._number(b"READ:POW?")
            self.power.report(watts)
            self.actual_wavelength.report(await self._number(b"READ:WAV?"))
            reading = Reading(watts, "W", time.time())
            self.stream("readings").publish(reading)
            return reading
        return await super().handle(message)

    # -- parameters on the wire --------------------------------------------------------------

    async def _write_shutter(self, open_: bool) -> None:
        await self._command(b"SHUT 1" if open_ else b"SHUT 0")
        self._shutter_moved_at = trio.current_time()

    async def _read_shutter(self) -> bool:
        """SHUT? once the lag since the last shutter command has passed."""
        await trio.sleep_until(self._shutter_moved_at + self.shutter_lag)
        reply = (await self._port.query(b"SHUT?")).strip()
        if reply not in (b"0", b"1"):
            raise self._port.protocol_error("SHUT? is not 0 or 1", command=b"SHUT?", received=reply)
        return reply == b"1"

    async def _write_emission(self, on: bool) -> None:
        if on:
            if await self._read_shutter():  # waits out the lag of our own last shutter command
                raise SafetyInterlock(
                    f"{self.name}: emission refused: the shutter is open (SHUT? = 1);"
                    " close it first"
                )
            percent = await self._number(b"READ:PCTW?")
            self.warmup.report(percent)
            if percent < 100:
                raise SafetyInterlock(f"{self.name}: emission refused: warming up ({percent:g} %)")
        await self._command(b"ON" if on else b"OFF")

    async def _read_emission(self) -> bool:
        return int(await self._number(b"*STB?")) & 1 == 1

    async def _write_wavelength(self, nm: float) -> None:
        await self._command(b"WAV %d" % round(nm))

    # -- the wire ----------------------------------------------------------------------------

    async def _command(self, command: bytes) -> None:
        """A set command, then the error queue: a silent refusal becomes DeviceRefused."""
        await self._port.write(command)
        error = (await self._port.query(b"SYST:ERR?")).strip()
        if error and not error.startswith(b"0"):
            raise DeviceRefused(f"{self.name} refused {command.decode()}: {error.decode()}")

    async def _number(self, query: bytes) -> float:
        reply = await self._port.query(query)
        match = NUMBER.match(reply)
        if match is None:
            raise self._port.protocol_error("expected a number", command=query, received=reply)
        return float(match.group(1))
