"""Newport 1830-C optical power meter on a pseudo-terminal.

Protocol facts: ../shared/reference/newport-1830c.md. LF-terminated single-letter commands,
case-insensitive; set commands and unknown commands are silent (errors show only in the ``Q?``
status byte: bit 0 parameter error, bit 1 command error); ``D?`` answers in the meter's own
``+.75E-9`` style. The simulated detector sees ``power_w`` (settable by tests) with noise that the
filter setting averages, ranges that over-range and saturate, auto-range with a busy period,
hold, zero and a reference.

Quirk modes (recorded on real units; off by default): ``echo`` (echo on at power-up: every
command line comes back before its reply; ``E0`` turns it off, ``E1`` on), ``ignores_e0`` (the
unit does not know ``E``: a command error, and the echo stays as it was), ``partial_echo``
(echoes come back cut short: ``D`` for ``D?``, ``W08`` for ``W0800``), ``slow_replies``
(queries answered after ~0.5 s, as the lab meter sometimes does), ``padded_settings`` (one-digit
settings answered zero-padded, ``03``, as the manual's ``Q?`` examples are), ``saturation_text``
(``D?`` answers ``SATURATED`` while saturated: the real text is unconfirmed). Tests change the
units as the front panel would by setting ``units``.

Run alone: ``python -m simulators.newport1830c`` prints the path to open with a terminal program.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import ClassVar

import trio

from ._pty import PtySimulator, default_link_dir, run_standalone

# Status byte bits (manual, Q? page)
PARAMETER_ERROR = 1
COMMAND_ERROR = 2
SATURATED = 4
OVER_RANGE = 8
MESSAGE_AVAILABLE = 16
BUSY = 32
NEW_READING = 128

FULL_SCALE_RANGE_1 = 2.0e-9  # W; each range is one decade less sensitive
SATURATION_W = 2.0e-2  # the bare detector; the attenuator cap raises it a thousandfold
ATTENUATION = 1.0e3
AUTO_RANGE_BUSY_S = 0.2
FILTER_SAMPLES = {1: 16, 2: 4, 3: 1}  # slow / medium / fast
#: One-digit settings: command letter -> attribute.
SETTINGS = {"U": "units", "A": "attenuator", "F": "filter", "G": "running", "Z": "zero",
            "B": "beeper", "K": "backlight", "L": "lockout"}  # fmt: skip


def format_watts(value: float) -> str:
    """The meter's style: sign, no leading zero, four digits: ``+.7500E-9``."""
    if value == 0:
        return "+.0000E+0"
    sign = "+" if value > 0 else "-"
    magnitude = abs(value)
    exponent = math.floor(math.log10(magnitude)) + 1
    mantissa = magnitude / 10**exponent
    if round(mantissa, 4) >= 1.0:  # 0.99996 rounds up to the next decade
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{sign}.{round(mantissa * 1e4):04d}E{exponent}"


class Newport1830CSimulator(PtySimulator):
    name = "newport1830c"
    command_terminator = b"\n"
    reply_terminator = b"\n"
    QUIRKS: ClassVar[Mapping[str, str]] = {
        "echo": "echo on at power-up: each command line comes back before its reply (E0: off)",
        "ignores_e0": "E0/E1 are unknown commands (command error bit); the echo stays as it is",
        "partial_echo": "echoes come back cut short (D for D?, W08 for W0800)",
        "slow_replies": "queries are answered after ~0.5 s",
        "padded_settings": "one-digit settings (R?, F?, A?, Z?...) answer zero-padded: 03",
        "saturation_text": "D? answers SATURATED instead of a number while the detector is"
        " saturated (what a real meter says then is unconfirmed)",
    }

    def __init__(
        self, *, power_w: float = 1.0e-6, noise: float = 0.002, seed: int = 0, **kw: object
    ):
        super().__init__(**kw)  # type: ignore[arg-type]
        self.power_w = power_w
        self.noise = noise
        self.wavelength_limits = (300, 1100)
        self._rng = random.Random(seed)
        self.power_on()

    def power_on(self) -> None:
        self.wavelength = 800
        self.units = 1
        self.range = 0  # 0 = auto
        self.present_range = 4
        self.attenuator = 0
        self.filter = 3
        self.running = 1
        self.zero = 0
        self.background = 0.0
        self.reference = 1.0e-3
        self.beeper = 1
        self.backlight = 1
        self.lockout = 0
        self.status = NEW_READING
        self._busy_until = 0.0
        self._held: float | None = None
        self.echo = self.quirk("echo")

    def enable_quirk(self, name: str, on: bool = True) -> None:
        super().enable_quirk(name, on)
        if name == "echo":
            self.echo = on

    def reply_delay(self, command: bytes) -> float:
        slow = 0.5 if self.quirk("slow_replies") and command.strip().endswith(b"?") else 0.0
        return max(super().reply_delay(command), slow)

    # -- the detector --------------------------------------------------------------------------

    def _measure(self) -> float:
        samples = FILTER_SAMPLES[self.filter]
        spread = self.noise / math.sqrt(samples)
        value = self.power_w * (1.0 + self._rng.gauss(0.0, spread))
        return value - self.background if self.zero else value

    def _update_range(self, value: float) -> None:
        now = trio.current_time()
        if self.range == 0:
            wanted = 1
            while wanted < 8 and abs(value) > FULL_SCALE_RANGE_1 * 10 ** (wanted - 1):
                wanted += 1
            if wanted != self.present_range:
                self.present_range = wanted
                self._busy_until = now + AUTO_RANGE_BUSY_S
        else:
            self.present_range = self.range
        flags = self.status & ~(SATURATED | OVER_RANGE | BUSY)
        saturation = SATURATION_W * (ATTENUATION if self.attenuator else 1.0)
        if abs(self.power_w) > saturation:
            flags |= SATURATED
        if abs(value) > FULL_SCALE_RANGE_1 * 10 ** (self.present_range - 1):
            flags |= OVER_RANGE
        if now < self._busy_until:
            flags |= BUSY
        self.status = flags

    def _reading(self) -> str:
        if self.running or self._held is None:
            value = self._measure()
            self._held = value
        else:
            value = self._held
        self._update_range(value)
        self.status &= ~NEW_READING
        if self.quirk("saturation_text") and self.status & SATURATED:
            return "SATURATED"
        if self.units == 1:
            return format_watts(value)
        db = 10 * math.log10(max(abs(value), 1e-15) / self.reference)
        return f"{db + 30 if self.units == 3 else db:.2f}"

    # -- the protocol --------------------------------------------------------------------------

    async def respond(self, command: bytes) -> bytes | None:
        await trio.lowlevel.checkpoint()
        raw = command.decode("ascii", "replace").strip()
        text = raw.upper()
        if not text:
            return None
        lines: list[str] = []
        if self.echo:  # the echo of what was typed, before anything else
            lines.append(raw[: max(1, len(raw) - 2)] if self.quirk("partial_echo") else raw)
        letter, argument = text[0], text[1:]
        if argument == "?":
            reply = self._query(letter)
            if reply is None:
                self.status |= COMMAND_ERROR
            else:
                lines.append(reply)
        elif letter == "E" and not self.quirk("ignores_e0"):
            if argument in ("0", "1"):
                self.echo = argument == "1"
            else:
                self.status |= PARAMETER_ERROR
        else:
            self._set(letter, argument)
        return "\n".join(lines).encode() if lines else None

    def _query(self, letter: str) -> str | None:
        if letter == "D":
            return self._reading()
        if letter == "Q":
            self.status |= NEW_READING if self.running else 0
            return f"{self.status:03d}"
        if letter == "R":
            return self._setting(self.present_range)
        if letter == "W":
            return f"{self.wavelength:04d}"
        if letter in SETTINGS:
            return self._setting(getattr(self, SETTINGS[letter]))
        return None

    def _setting(self, value: int) -> str:
        return f"{value:02d}" if self.quirk("padded_settings") else str(value)

    def _set(self, letter: str, argument: str) -> bool:
        if letter == "C" and not argument:
            self.status &= MESSAGE_AVAILABLE
            return True
        if letter == "S" and not argument:
            self.reference = abs(self._measure()) or 1e-15
            return True
        allowed = {
            "W": range(self.wavelength_limits[0], self.wavelength_limits[1] + 1),
            "U": range(1, 5),
            "R": range(0, 9),
            "A": range(2),
            "F": range(1, 4),
            "G": range(2),
            "Z": range(2),
            "B": range(2),
            "K": range(3),
            "L": range(2),
        }
        if letter not in allowed:
            self.status |= COMMAND_ERROR
            return False
        try:
            value = int(argument)
        except ValueError:
            self.status |= PARAMETER_ERROR
            return False
        if value not in allowed[letter]:
            self.status |= PARAMETER_ERROR
            return False
        if letter == "Z" and value == 1:
            self.background = self.power_w
        attribute = {"W": "wavelength", "R": "range", **SETTINGS}[letter]
        setattr(self, attribute, value)
        return True


if __name__ == "__main__":
    run_standalone(
        Newport1830CSimulator(link=default_link_dir() / "newport1830c"),
        "Newport 1830-C simulator (9600 8N1, LF)",
    )
