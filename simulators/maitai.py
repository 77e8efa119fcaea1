"""Spectra-Physics Mai Tai Ti:sapphire laser on a pseudo-terminal.

Protocol facts: ../shared/reference/maitai.md. SCPI-like, any case, long or short keyword forms
(short = first four letters, three if the fourth is a vowel); a parameter follows a *space*
(``SHUT 1``; the colon form ``SHUTTER:1`` is invalid and silently ignored); commands end with CR,
LF or CR LF, replies with LF; only queries answer. Modelled: warm-up, pump diodes on/off with the
manual's rules, a shutter whose ``SHUT?`` lags the command by ~1 s, wavelength slewing between
setpoint and actual, output power that needs emission, the status byte, a watchdog that turns the
pump off when the host goes quiet, and a front-panel LOCAL mode in which setters are ignored
(the lab's "shutter accepted but did not move").

Quirk modes (recorded on real units; off by default): ``echo`` (every command line comes back
before anything else), ``ok_after_set`` (a set command leaves an ``OK`` line), ``slow_replies``
(~2 s replies while warming up and for a while after a wavelength change), ``late_replies``
(every 10th query answered only after 4 s, later than any driver time-out), ``error_replies``
(unknown queries and refused commands answer a line with ``Error`` and a text instead of
silence), ``cold_start`` (power-up starts the warm-up from 0 %), ``lab_status_byte``
(``*STB?`` answers 8 whatever the state, as the lab's laser did while emitting 3 W),
``spaced_error_queue`` (``SYST:ERR?`` answers ``0 NO ERROR``: its format is unconfirmed).
``late_next`` delays just the next N replies, for tests; ``identity`` sets the ``*IDN?`` answer.

Run alone: ``python -m simulators.maitai``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import ClassVar

import trio

from ._pty import PtySimulator, default_link_dir, run_standalone

SHUTTER_LAG_S = 1.0
SLEW_NM_PER_S = 50.0
WARMUP_S = 10.0  # the real laser takes minutes; tests need it to finish
SLOW_REPLY_S = 2.0  # recorded: replies during warm-up and after a wavelength change
SLOW_AFTER_TUNING_S = 10.0  # how long replies stay slow after a wavelength change
LATE_REPLY_S = 4.0  # later than the driver's 3 s time-out
LATE_EVERY = 10  # late_replies quirk: every 10th query
EMISSION, MODE_LOCKED = 1, 2
IDENTITY = "Spectra Physics,MaiTai,3227/51054/40856,0245-2.00.34 / CD00000019 / 214-00.004.057"
VOWELS = set("AEIOU")


def short_form(header: str) -> str:
    """``READ:PCTWARMEDUP?`` -> ``READ:PCTW?``; the rule applies to every keyword."""
    query = header.endswith("?")
    parts = []
    for keyword in header.rstrip("?").upper().split(":"):
        match = re.fullmatch(r"(\*?[A-Z]+)(\d*)", keyword)
        if match is None or keyword.startswith("*") or keyword in ("ON", "OFF"):
            parts.append(keyword)
            continue
        letters, digits = match.groups()
        short = letters[:3] if len(letters) > 3 and letters[3] in VOWELS else letters[:4]
        parts.append(short + digits)
    return ":".join(parts) + ("?" if query else "")


class MaiTaiSimulator(PtySimulator):
    name = "maitai"
    command_terminator = b"\n"
    reply_terminator = b"\n"
    any_line_end = True
    ignored_bytes = b"\x11\x13"
    QUIRKS: ClassVar[Mapping[str, str]] = {
        "echo": "every command line is echoed back before anything else",
        "ok_after_set": "a set command (ON, WAV 820, SHUT 1) leaves an OK line behind",
        "slow_replies": "replies take ~2 s while warming up and for 10 s after a wavelength change",
        "late_replies": "every 10th query is answered only after 4 s (past any time-out)",
        "error_replies": "unknown queries and refused commands answer 'Error: <text>'",
        "cold_start": "power-up starts the warm-up from 0 % (10 s here, minutes on a real one)",
        "lab_status_byte": "*STB? answers 8 whatever the state, as the lab's laser did while"
        " emitting 3 W (its firmware's bit map is unconfirmed: bit 0 is not emission there)",
        "spaced_error_queue": "SYST:ERR? answers '0 NO ERROR' (code, space, text; the"
        " format is unconfirmed)",
    }

    def __init__(
        self,
        *,
        minimum_nm: float = 690.0,
        maximum_nm: float = 1040.0,
        identity: str = IDENTITY,
        **kw: object,
    ):
        super().__init__(**kw)  # type: ignore[arg-type]
        self.identity = identity  # *IDN? (the vendor and model spelling varies by unit)
        self.minimum_nm = minimum_nm
        self.maximum_nm = maximum_nm
        self.shutter_lag_s = SHUTTER_LAG_S
        self.late_next = 0  # the next N replies come after LATE_REPLY_S
        self._queries = 0
        self.power_on()

    def power_on(self) -> None:
        self.local_mode = False  # front panel has control: setters are ignored
        self.warmup_started: float | None = None  # set by the first look after power-up
        self.warmed_up = not self.quirk("cold_start")
        self._tuned_at = -1e9
        self.emission = False
        self.shutter_open = False  # where the shutter really is
        self._shutter_reported = False  # what SHUT? says until the lag has passed
        self._shutter_changed = -1e9
        self.setpoint = 800.0
        self._from_nm, self._slew_started = 800.0, 0.0
        self.watchdog_s = 0.0
        self._last_command = 0.0
        self.errors: list[tuple[int, str]] = []
        self.output_w = 3.0

    def enable_quirk(self, name: str, on: bool = True) -> None:
        super().enable_quirk(name, on)
        if name == "cold_start" and on and hasattr(self, "warmed_up"):
            self.warmed_up, self.warmup_started = False, None

    # -- state over time ---------------------------------------------------------------------

    def actual_nm(self) -> float:
        elapsed = trio.current_time() - self._slew_started
        distance = self.setpoint - self._from_nm
        step = SLEW_NM_PER_S * elapsed
        if step >= abs(distance):
            return self.setpoint
        return self._from_nm + (step if distance > 0 else -step)

    def shutter_reported(self) -> bool:
        if trio.current_time() - self._shutter_changed >= self.shutter_lag_s:
            self._shutter_reported = self.shutter_open
        return self._shutter_reported

    def warmup_percent(self) -> float:
        if self.warmed_up:
            return 100.0
        if self.warmup_started is None:
            self.warmup_started = trio.current_time()
        done = (trio.current_time() - self.warmup_started) / WARMUP_S * 100
        if done >= 100:
            self.warmed_up = True
            return 100.0
        return done

    async def _background(self) -> None:
        while True:  # the watchdog: a quiet host turns the pump off
            await trio.sleep(0.1)
            quiet = trio.current_time() - self._last_command
            if self.watchdog_s > 0 and self.emission and quiet > self.watchdog_s:
                self.emission = False

    # -- timing quirks ---------------------------------------------------------------------------

    def reply_delay(self, command: bytes) -> float:
        delay = super().reply_delay(command)
        if self.late_next > 0:
            self.late_next -= 1
            return max(delay, LATE_REPLY_S)
        if self.quirk("late_replies") and command.strip().endswith(b"?"):
            self._queries += 1
            if self._queries % LATE_EVERY == 0:
                return max(delay, LATE_REPLY_S)
        if self.quirk("slow_replies"):
            tuning = trio.current_time() - self._tuned_at < SLOW_AFTER_TUNING_S
            if tuning or self.warmup_percent() < 100:
                return max(delay, SLOW_REPLY_S)
        return delay

    # -- the protocol --------------------------------------------------------------------------

    async def respond(self, command: bytes) -> bytes | None:
        await trio.lowlevel.checkpoint()
        self._last_command = trio.current_time()
        text = command.decode("ascii", "replace").strip()
        header, _, argument = text.partition(" ")
        header = short_form(header)
        lines: list[str] = [text] if self.quirk("echo") else []
        if header.endswith("?"):
            reply = self._query(header)
            if reply is None:
                self._error(1, f"CMD_ERR query {header} not recognised", lines)
            else:
                lines.append(reply)
        else:
            errors = len(self.errors)
            self._set(header, argument.strip())
            if len(self.errors) > errors and self.quirk("error_replies"):
                lines.append(f"Error: {self.errors[-1][1]}")
            elif self.quirk("ok_after_set"):
                lines.append("OK")
        return "\n".join(lines).encode() if lines else None

    def _error(self, code: int, text: str, lines: list[str] | None = None) -> None:
        self.errors.append((code, text))
        if lines is not None and self.quirk("error_replies"):
            lines.append(f"Error: {text}")

    def _query(self, header: str) -> str | None:
        answers: dict[str, Callable[[], str]] = {
            "*IDN?": lambda: self.identity,
            "*STB?": self._status,
            "SHUT?": lambda: "1" if self.shutter_reported() else "0",
            "WAV?": lambda: f"{self.setpoint:.0f}nm",
            "WAV:MIN?": lambda: f"{self.minimum_nm:.0f}nm",
            "WAV:MAX?": lambda: f"{self.maximum_nm:.0f}nm",
            "READ:WAV?": lambda: f"{self.actual_nm():.0f}nm",
            "READ:POW?": lambda: f"{self.output_w if self.emission else 0.0:.3f}W",
            "READ:PCTW?": lambda: f"{self.warmup_percent():06.2f}%",
            "SYST:ERR?": self._error_queue,
            "TIM:WATC?": lambda: f"{self.watchdog_s:g}",
            "MOD?": lambda: "POW",
        }
        answer = answers.get(header)
        return answer() if answer is not None else None

    def _error_queue(self) -> str:
        code, text = self.errors.pop(0) if self.errors else (0, "NO ERROR")
        return f"{code} {text}" if self.quirk("spaced_error_queue") else f"{code}: {text}"

    def _status(self) -> str:
        if self.quirk("lab_status_byte"):
            return "8"
        locked = self.emission and self.actual_nm() == self.setpoint
        return str((EMISSION if self.emission else 0) | (MODE_LOCKED if locked else 0))

    def _set(self, header: str, argument: str) -> None:
        if self.local_mode:
            return  # accepted on the wire, ignored by the laser: the driver must verify
        if header == "ON" and not argument:
            percent = self.warmup_percent()
            if percent < 100:
                self._error(2, f"EXE_ERR ON during warm-up ({percent:.0f} %)")
            else:
                self.emission = True
            return
        if header == "OFF" and not argument:
            self.emission = False
            return
        if header == "SHUT" and argument in ("0", "1"):
            self.shutter_open = argument == "1"
            self._shutter_changed = trio.current_time()
            return
        if header == "WAV":
            try:
                nm = float(argument)
            except ValueError:
                self._error(2, "EXE_ERR bad wavelength")
                return
            if not self.minimum_nm <= nm <= self.maximum_nm:
                self._error(2, "EXE_ERR wavelength out of range")
                return
            self._from_nm, self._slew_started = self.actual_nm(), trio.current_time()
            self._tuned_at = trio.current_time()
            self.setpoint = nm
            return
        if header == "TIM:WATC":
            try:
                self.watchdog_s = max(0.0, float(argument))
            except ValueError:
                self._error(2, "EXE_ERR bad watchdog")
            return
        self._error(1, f"CMD_ERR {header} {argument}".strip())


if __name__ == "__main__":
    run_standalone(
        MaiTaiSimulator(link=default_link_dir() / "maitai"),
        "Mai Tai simulator (9600 8N1, XON/XOFF; CR/LF in, LF out)",
    )
