"""Spectra-Physics Mai Tai: wavelength, shutter and emission as Parameters, power as a Readable.

Protocol: ../shared/reference/maitai.md. The laser never answers a set command, so every write
is verified: errors through ``SYST:ERR?``, the shutter by polling ``SHUT?`` through its ~1 s
lag (a shutter that does not follow — LOCAL mode, keyswitch — is a ReadbackMismatch, never a
silent success), the wavelength by ``WAV?``.

Replies are believed only by form (:data:`POLICY`; see ``Link.exchange``): a status byte is an
integer, ``820nm`` a wavelength, the error queue a code and a text. Real units leave echoes and
``OK`` lines behind set commands; the error query that follows every set reads past them (the
drain after every set), and a line of another known form is stale and discarded. A line with
``Error`` in it is the laser refusing, with its text. A query that times out (replies take ~2 s
at times, and once in a while longer than any time-out) fails that one request; the next
exchange first resyncs on ``*IDN?``, so the late reply is read and discarded, never taken as the
answer to a later question. Two time-outs in a row mean the link is gone: the actor restarts.

Safety (a Class 4 laser):
* emission is refused unless the shutter is *confirmed* closed by ``SHUT?`` — read only after
  the lag of the last shutter command has passed, and anything but ``0`` counts as open;
* emission waits for warm-up: ``READ:PCTW?`` is polled until 100 % (``warmup`` and ``status``
  say so meanwhile, and the log), at most ``warmup_timeout`` seconds;
* opening the shutter and switching emission on are hazardous (refused while the e-stop is
  latched); closing and switching off never are;
* neither is ever restored automatically after a restart;
* the emergency stop sends ``SHUT 0`` at once (and ``OFF`` if configured) and returns: the stop
  is acknowledged when its bytes are on the wire. The confirmation follows: the shutter's lag
  is waited out off the mailbox (other requests go on), then ``SHUT?`` is read from the
  priority lane, within ``estop_confirm_window`` (default 5 s: the shutter's ~1 s lag plus a
  ~2 s reply, with room): ``safe_state`` says "confirmed" once ``SHUT?`` reads 0 (a reset
  before that ends the read-back, and says so); a shutter still open at
  the end of the window fails loudly — the actor crashes with ShutterNotClosed (health shows it
  degraded, with that message), and on restart while latched it sends ``SHUT 0`` again.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass

import trio

from runtime import BenchError, Message, Parameter, PriorityMessage, Request, RequestError

from ..capabilities import Capability, Read, Reading
from .serial_device import DeviceRefused, SerialDevice
from .transport import ReplyForm, ReplyPolicy, ReplyTimeout, SerialSettings

logger = logging.getLogger(__name__)

# -- what each reply looks like ---------------------------------------------------------------
_DECIMAL = rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:E[-+]?\d+)?"
WAVELENGTH = ReplyForm.of("a wavelength such as 820nm", rb"(" + _DECIMAL + rb")\s*NM")
POWER = ReplyForm.of("a power such as 3.000W", rb"(" + _DECIMAL + rb")\s*W")
PERCENT = ReplyForm.of("a percentage such as 100.00%", rb"(" + _DECIMAL + rb")\s*%")
SHUTTER = ReplyForm.of("0 or 1", rb"([01])")
STATUS_BYTE = ReplyForm.of("a status byte (an integer 0-255)", rb"(\d{1,3})")
#: ``SYST:ERR?`` (its format is unconfirmed): a code, then ``:``, ``,`` or spaces, then the text
#: (``0: NO ERROR``, ``0,"No error"``, ``0 NO ERROR``). A bare number is not accepted: it
#: could be a late status byte.
ERROR_QUEUE = ReplyForm.of(
    "an error code and text such as '0: NO ERROR'",
    rb"([-+]?\d+)(?:\s*[:,]\s*|\s+(?=[\"'A-Z]{2})(?!NM\s*$))(.*)",
)
#: ``*IDN?``: the vendor (spelt several ways), the model (``MaiTai``, ``Mai Tai``, ``MaiTai HP``
#: ...), then serial and firmware.
IDENTITY = ReplyForm.of("the identity (…,MaiTai,…)", rb"([^,]*),\s*(MAI\s*TAI[^,]*?)\s*,(.*)")
#: A line saying Error that is not the error queue's "code: text" answer: the laser refusing.
ERROR_LINE = ReplyForm.of("an error message", rb"(?![-+]?\d+(?:\s*[:,]|\s)).*ERROR.*")
#: Output power above this means the laser emits, whatever ``*STB?`` says (the lab's laser
#: answered 8, bit 0 clear, while emitting 3 W); ``0.00000W`` when off.
EMITTING_W = 0.01
NUMBER = ReplyForm.of("a number", rb"(" + _DECIMAL + rb")")

POLICY = ReplyPolicy(
    known=(WAVELENGTH, POWER, PERCENT, STATUS_BYTE, ERROR_QUEUE, IDENTITY, NUMBER),
    error=ERROR_LINE,
    resync=(b"*IDN?", IDENTITY),
)
#: The form of each query's reply.
FORMS = {
    b"WAV?": WAVELENGTH,
    b"WAV:MIN?": WAVELENGTH,
    b"WAV:MAX?": WAVELENGTH,
    b"READ:WAV?": WAVELENGTH,
    b"READ:POW?": POWER,
    b"READ:PCTW?": PERCENT,
    b"SHUT?": SHUTTER,
    b"*STB?": STATUS_BYTE,
    b"SYST:ERR?": ERROR_QUEUE,
    b"*IDN?": IDENTITY,
}


class SafetyInterlock(RequestError):
    """A command refused by the driver's safety rules (not by the laser)."""


class ShutterNotClosed(Exception):
    """The shutter did not confirm closed after an emergency stop: the beam may be on."""


@dataclass(frozen=True, slots=True)
class ConfirmShutterClosed(Request[bool], PriorityMessage):
    """Second moment of an e-stop: one ``SHUT?`` read-back. True: confirmed closed; False:
    not yet (``SHUT 0`` sent again); ShutterNotClosed once the window is over. Priority lane:
    nothing queued delays it (it is not Hazardous: it only reads, and closes)."""

    reason: str
    sent_at: float  # trio time SHUT 0 was first written


def serial_settings(port: str, **overrides: object) -> SerialSettings:
    """Power-up settings: 9600 8N1 with XON/XOFF (never RTS/CTS); LF out, any line end in;
    slow replies."""
    options: dict[str, object] = {
        "baudrate": 9600,
        "xonxoff": True,
        "rtscts": False,
        "write_terminator": b"\n",
        "read_terminator": b"\n",
        "reply_timeout": 3.0,
        "any_line_end": True,
    }
    options.update(overrides)
    return SerialSettings(port, **options)  # type: ignore[arg-type]


class MaiTai(SerialDevice):
    driver = "spectra_physics_maitai"
    capabilities = (Capability.READABLE, Capability.PARAMETERIZED)
    units = "W"
    stream_names = ("readings",)

    def __init__(
        self,
        settings: SerialSettings,
        *,
        off_on_estop: bool = False,
        shutter_lag: float = 1.2,
        estop_confirm_window: float = 5.0,
        warmup_timeout: float = 300.0,
        warmup_poll: float = 1.0,
    ) -> None:
        self.settings = settings
        self.off_on_estop = off_on_estop
        self.shutter_lag = shutter_lag
        self.estop_confirm_window = estop_confirm_window
        self.warmup_timeout = warmup_timeout
        self.warmup_poll = warmup_poll
        # a read-back runs on the priority lane, bounded like the e-stop itself
        self.stop_timeout = max(type(self).stop_timeout, estop_confirm_window + 2.0)  # type: ignore[misc]
        self._shutter_moved_at = -1e9
        self._confirm_requests: trio.MemorySendChannel[tuple[str, float]] | None = None
        self._confirming: trio.CancelScope | None = None
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
                description="pump diodes on; refused unless the shutter is confirmed closed,"
                " and waits for warm-up to reach 100 %",
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
        self.status = add(
            Parameter(
                "status",
                str,
                "",
                read_only=True,
                description="what the driver is doing or waiting for (warm-up before emission)",
            )
        )
        self.safe_state = add(
            Parameter(
                "safe_state",
                str,
                "",
                read_only=True,
                description="after an emergency stop: whether SHUT? confirmed the shutter closed",
            )
        )
        self.wavelength: Parameter[float] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_start(self) -> None:
        # the e-stop's read-backs run in one long-lived task of this instance
        send, requests = trio.open_memory_channel[tuple[str, float]](1)
        self._confirm_requests = send
        self.nursery.start_soon(self._confirmer, requests)
        await self.open_port(POLICY)
        latched = self.ref.statistics().latched
        if latched is not None:  # restarted during an e-stop: close again before anything else
            await self._close_shutter_now(f"still latched: {latched}")
        identity = (await self._query(b"*IDN?")).group(0)
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
        # a check may wait behind an emission request waiting for warm-up
        self.start_keepalive(lambda: 5.0, patience=10.0 + self.warmup_timeout)
        logger.info(
            "%s: %s on %s (%g-%g nm)", self.name, self.identity, self.settings.address, low, high
        )

    async def on_emergency_stop(self, reason: str) -> None:
        """First moment: the stop bytes. The read-back follows on the priority lane."""
        await self._close_shutter_now(reason)

    async def _close_shutter_now(self, reason: str) -> None:
        await self._port.send(b"SHUT 0")
        sent = self._shutter_moved_at = trio.current_time()
        if self.off_on_estop:
            await self._port.send(b"OFF")
        self.safe_state.report(f"SHUT 0 sent ({reason}); confirming")
        logger.warning("%s: SHUT 0 sent (%s); confirming within %g s", self.name, reason,
                       self.estop_confirm_window)  # fmt: skip
        if self._confirm_requests is not None:
            with contextlib.suppress(trio.WouldBlock):  # one already waits: it covers this one
                self._confirm_requests.send_nowait((reason, sent))

    async def on_reset(self) -> None:
        """After a reset the shutter may be opened on purpose: a read-back still pending
        would call that a failed stop. It ends here, and says so."""
        if self._confirming is not None and not self._confirming.cancel_called:
            self._confirming.cancel()
            self.safe_state.report("reset before the shutter was confirmed closed")

    async def _confirmer(self, requests: trio.MemoryReceiveChannel[tuple[str, float]]) -> None:
        async for reason, sent in requests:
            with trio.CancelScope() as self._confirming:
                await self._confirm_closed(reason, sent)
            self._confirming = None

    async def _confirm_closed(self, reason: str, sent: float) -> None:
        """Wait out the shutter's lag here (the mailbox stays free meanwhile), then read it
        back through the priority lane — the port is only ever touched by a handler."""
        deadline = sent + self.estop_confirm_window
        while True:
            await trio.sleep_until(min(self._shutter_moved_at + self.shutter_lag, deadline))
            try:
                if await self.ref.ask(ConfirmShutterClosed(reason, sent), timeout=None):
                    return
            except BenchError:
                return  # not confirmed: the handler crashed the actor, loudly; or it stopped

    async def check_link(self) -> None:
        match = await self.check_line(b"READ:PCTW?", PERCENT)
        self.warmup.report(float(match.group(1)))

    # -- messages --------------------------------------------------------------------------------

    async def handle(self, message: Message) -> object:
        if isinstance(message, Read):
            watts = await self._number(b"READ:POW?")
            self.power.report(watts)
            self.actual_wavelength.report(await self._number(b"READ:WAV?"))
            reading = Reading(watts, "W", time.time())
            self.stream("readings").publish(reading)
            return reading
        if isinstance(message, ConfirmShutterClosed):
            return await self._check_closed(message.reason, message.sent_at)
        return await super().handle(message)

    async def _check_closed(self, reason: str, sent: float) -> bool:
        """One read-back of the e-stop's confirmation (see ``_confirm_closed``): True if
        closed; False if open with time left to send ``SHUT 0`` again and see it through its
        lag; ShutterNotClosed when the window is spent."""
        deadline = sent + self.estop_confirm_window
        remaining = deadline - trio.current_time()
        last = "no answer"
        if remaining > 0:
            try:
                match = await self._port.exchange(b"SHUT?", SHUTTER, timeout=remaining)
            except ReplyTimeout as exc:  # it waited out the window
                last = str(exc)
            except DeviceRefused as exc:
                last = str(exc)
                if trio.current_time() + self.shutter_lag < deadline:
                    return await self._close_again()
            else:
                if match.group(1) == b"0":
                    took = trio.current_time() - sent
                    self.shutter.report(False)
                    self.safe_state.report(
                        f"confirmed: the shutter reads closed {took:.1f} s after SHUT 0 ({reason})"
                    )
                    logger.warning("%s: shutter confirmed closed %.1f s after SHUT 0", self.name,
                                   took)  # fmt: skip
                    return True
                last = "SHUT? = 1"
                if trio.current_time() + self.shutter_lag < deadline:
                    return await self._close_again()
        self.safe_state.report(f"NOT CONFIRMED ({last}): treat the beam as ON")
        raise ShutterNotClosed(
            f"{self.name}: the shutter still reads open {self.estop_confirm_window:g} s after"
            f" SHUT 0 ({last}; front panel in LOCAL mode? keyswitch?) — treat the beam as ON"
        )

    async def _close_again(self) -> bool:
        await self._port.send(b"SHUT 0")  # once more: the lab saw shutter commands ignored
        self._shutter_moved_at = trio.current_time()
        return False

    # -- parameters on the wire --------------------------------------------------------------

    async def _write_shutter(self, open_: bool) -> None:
        await self._command(b"SHUT 1" if open_ else b"SHUT 0")
        self._shutter_moved_at = trio.current_time()

    async def _read_shutter(self) -> bool:
        """SHUT? once the lag since the last shutter command has passed."""
        await trio.sleep_until(self._shutter_moved_at + self.shutter_lag)
        return (await self._query(b"SHUT?")).group(1) == b"1"

    async def _write_emission(self, on: bool) -> None:
        if on:
            if await self._read_shutter():  # waits out the lag of our own last shutter command
                raise SafetyInterlock(
                    f"{self.name}: emission refused: the shutter is open (SHUT? = 1);"
                    " close it first"
                )
            await self._wait_warmed_up()
        await self._command(b"ON" if on else b"OFF")
        self.status.report("emission on" if on else "emission off")

    async def _wait_warmed_up(self) -> None:
        """Poll ``READ:PCTW?`` until 100 %, saying so (``status``, ``warmup``, the log)."""
        started = trio.current_time()
        told = -1e9
        while (percent := await self._number(b"READ:PCTW?")) < 100:
            self.warmup.report(percent)
            waited = trio.current_time() - started
            if waited >= self.warmup_timeout:
                self.status.report(f"emission refused: still warming up ({percent:g} %)")
                raise SafetyInterlock(
                    f"{self.name}: emission refused: warm-up at {percent:g} % after waiting"
                    f" {waited:.0f} s (warmup_timeout {self.warmup_timeout:g} s)"
                )
            self.status.report(f"waiting for warm-up: {percent:g} % (emission at 100 %)")
            if trio.current_time() - told >= 10.0:
                told = trio.current_time()
                logger.info(
                    "%s: emission waits for warm-up: %g %% after %.0f s", self.name, percent, waited
                )
            await trio.sleep(self.warmup_poll)
        self.warmup.report(percent)

    async def _read_emission(self) -> bool:
        """Bit 0 of ``*STB?`` (the manual's "emission possible"), or output power: the lab's
        laser answered ``*STB?`` = 8 while emitting 3 W, so on some firmware bit 0 is not
        emission (the bit map is unconfirmed). Never reads off while the laser reports power."""
        if int(await self._number(b"*STB?")) & 1:
            return True
        return await self._number(b"READ:POW?") > EMITTING_W

    async def _write_wavelength(self, nm: float) -> None:
        await self._command(b"WAV %d" % round(nm))

    # -- the wire ----------------------------------------------------------------------------

    async def _command(self, command: bytes) -> None:
        """A set command, then the error queue. Reading it also drains what a set leaves
        behind (an echo, ``OK``): the laser answers in order, so they come before its reply.
        A silent refusal, or an ``Error`` line, becomes DeviceRefused."""
        await self._port.send(command)
        try:
            match = await self._query(b"SYST:ERR?")
        except DeviceRefused as refused:
            raise DeviceRefused(f"{self.name} refused {command.decode()}: {refused}") from None
        code = int(match.group(1))
        text = match.group(2).decode("ascii", "replace").strip().strip("\"'")
        if code != 0:
            raise DeviceRefused(f"{self.name} refused {command.decode()}: {code}: {text}")

    async def _query(self, query: bytes) -> re.Match[bytes]:
        """One query, its reply matched by its form (``ask_line``: a first time-out refuses
        this request only, a second in a row restarts the actor)."""
        return await self.ask_line(query, FORMS[query])

    async def _number(self, query: bytes) -> float:
        return float((await self._query(query)).group(1))
