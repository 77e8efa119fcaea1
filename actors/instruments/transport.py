"""The serial transport every driver shares: open, frame, time out, explain.

pyserial opens and configures the port (baud, parity, flow control — termios is its job, and it
does it on every platform); the I/O itself goes through a duplicate of its file descriptor as a
non-blocking ``trio.lowlevel.FdStream``, so a read waiting for a slow instrument costs no thread
and is cancelled like any other trio operation (an e-stop interrupts it at once).

Framing is either a reply terminator (``read_until``) or a fixed length (``read_exactly``);
every read has a deadline. Errors name the device, the command sent and the bytes received,
because "timeout" alone is useless at 3 a.m.: ``esp300: no complete reply to b'1TP?' within
0.5 s; received b'12.3' (waiting for b'\\r\\n')``.

Replies are matched by form (:meth:`Link.exchange`): a query says what its answer looks like
(:class:`ReplyForm`: an integer, ``820nm``, ``code, text``) and the link reads lines until one
has that form. On the way it skips echoes of the commands it sent (whole, or cut short), discards
stale lines the instrument is known to leave behind (an ``OK`` after a set, a reply that came
after its query had timed out), turns a line the instrument marks as an error into
:class:`DeviceRefused` with its text, and calls anything else a protocol error naming the raw
bytes. A query that times out leaves a reply *owed*; before the next exchange the link resyncs
(a sentinel query whose answer cannot be mistaken, everything before it discarded), so a late
reply never becomes the answer to a later question. Instruments answer in order, which is what
makes the sentinel sound.

Error handling: TransportError subclasses are *not* RequestErrors on purpose. A timeout or a
garbled reply means the link is in an unknown state; the driver's actor crashes, its supervisor
reopens the port and the actor re-applies its settings.
"""

from __future__ import annotations

import abc
import errno
import logging
import math
import os
import re
import termios
import threading
from dataclasses import dataclass
from typing import Any, Literal, Self

import serial
import trio
from serial.tools import list_ports

from runtime import BenchError, RequestError

logger = logging.getLogger(__name__)


#: Raw bytes quoted in an error are cut to this many (a noisy line can be kilobytes long).
EXCERPT_BYTES = 64


def excerpt(data: bytes, limit: int = EXCERPT_BYTES) -> str:
    """``repr`` of raw bytes for a message, cut to ``limit`` bytes (saying how many there were)."""
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit]!r}... ({len(data)} bytes)"


class DeviceRefused(RequestError):
    """The instrument flagged a command as bad (status byte, error queue, an ``Error`` reply):
    it did not apply. A refusal of one request, not a broken link."""


class NoReply(RequestError):
    """One query went unanswered in time. The request fails; the link resyncs before the next
    exchange (a second time-out in a row is a dead link: the driver lets the actor restart)."""


class TransportError(BenchError):
    """The link to an instrument failed; the message says what was sent and what came back."""

    def __init__(self, device: str, message: str, *, command: bytes = b"", received: bytes = b""):
        sent = f" to {command!r}" if command else ""
        got = f"; received {excerpt(received)}" if received else "; received nothing"
        super().__init__(f"{device}: {message}{sent}{got}")
        self.device = device
        self.command = command
        self.received = received


class ReplyTimeout(TransportError):
    """No complete reply before the deadline (silence, or a reply cut short)."""


class ProtocolError(TransportError):
    """A reply arrived but is not what the protocol allows (garbage, wrong echo, bad number)."""


class ConnectionLost(TransportError):
    """The port went away (cable pulled, adapter re-enumerated, simulator disconnected)."""


class PortUnavailable(ConnectionLost):
    """The port cannot be opened: missing, not a serial port, no permission, busy, or hung.
    The message names the port and the operating system's reason (its errno text), and what
    to check; nothing was sent or received, so it carries no "received" part."""

    def __init__(self, device: str, message: str) -> None:
        BenchError.__init__(self, f"{device}: {message}")
        self.device = device
        self.command = b""
        self.received = b""


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """How to open one port. Flow control is configurable because a pty has no RTS/CTS."""

    port: str
    baudrate: int = 9600
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: float = 1  # 1, 1.5 or 2
    xonxoff: bool = False
    rtscts: bool = False
    write_terminator: bytes = b"\n"
    read_terminator: bytes = b"\n"
    reply_timeout: float = 1.0
    exclusive: bool = True  # refuse a port another process already holds
    #: Opening waits at most this long (a hung USB adapter can stall ``open`` in the kernel):
    #: the device then fails and is retried, instead of holding anything else.
    open_timeout: float = 2.0
    #: Replies may end in CR LF, CR or LF (and empty lines between them mean nothing): the
    #: default terminator then means "any line end". An explicit ``read_until`` terminator
    #: (fixed framing) is unaffected.
    any_line_end: bool = False

    @property
    def address(self) -> str:
        return self.port


@dataclass(frozen=True, slots=True)
class ReplyForm:
    """What a reply must look like before it is believed: a regular expression the whole line
    (stripped of surrounding white space) must match, and words for error messages."""

    description: str
    pattern: re.Pattern[bytes]

    @classmethod
    def of(cls, description: str, regex: bytes, *, ignore_case: bool = True) -> ReplyForm:
        flags = re.IGNORECASE if ignore_case else 0
        return cls(description, re.compile(regex, flags))

    def match(self, line: bytes) -> re.Match[bytes] | None:
        return self.pattern.fullmatch(line.strip())


#: Forms most instruments use.
INTEGER = ReplyForm.of("an integer", rb"[+-]?\d+")
NUMBER = ReplyForm.of("a number", rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d+)?")
OK_LINE = ReplyForm.of("OK", rb"OK")


@dataclass(frozen=True, slots=True)
class ReplyPolicy:
    """How one instrument's line replies are told apart (see :meth:`Link.exchange`).

    ``known``: every reply form the instrument sends; a line of one of these forms that is not
    the expected one is *stale* (a late reply, an ``OK``) and is discarded. ``error``: a line of
    this form is the instrument reporting an error (DeviceRefused with its text). ``resync``: a
    query and the form of its answer, which no other reply can have; sent after a timeout, so a
    late reply is read and discarded before the next question. ``echoes``: skip lines that
    repeat a command sent (an instrument with echo on).
    """

    known: tuple[ReplyForm, ...] = ()
    error: ReplyForm | None = None
    resync: tuple[bytes, ReplyForm] | None = None
    echoes: bool = True
    resync_timeout: float | None = None  # default: twice the reply timeout


_NOT_A_NUMBER = re.compile(rb"[^0-9+\-.,\s]")


def is_echo(line: bytes, command: bytes, *, partial: bool) -> bool:
    """Whether ``line`` repeats ``command``: whole, or (``partial``) its head or its tail cut
    short. A fragment made only of digits and signs never counts: ``1`` is the head of
    ``1MD?`` but is the ESP300's answer to it; such fragments are judged by form instead."""
    text, sent = line.strip().upper(), command.strip().upper()
    if not text or not sent:
        return False
    if text == sent:
        return True
    fragment = sent.startswith(text) or sent.endswith(text)
    return partial and fragment and _NOT_A_NUMBER.search(text) is not None


def is_tail(line: bytes, command: bytes) -> bool:
    text, sent = line.strip().upper(), command.strip().upper()
    return bool(text) and sent.endswith(text)


@dataclass(frozen=True, slots=True)
class LinkStatistics:
    """What the reply matching had to put up with on one link (since it was opened)."""

    echoes_skipped: int
    stale_discarded: int
    protocol_errors: int
    timeouts: int
    resyncs: int


class Link(abc.ABC):
    """What every link to an instrument offers a driver, whatever carries the bytes.

    Owned by exactly one actor; not safe to share between tasks.
    """

    device: str
    settings: Any  # SerialSettings or VisaSettings: both have the terminators and reply_timeout
    policy: ReplyPolicy = ReplyPolicy()
    _sent: list[bytes]  # commands written since the last reply was matched (echo candidates)
    _owed: int = 0  # replies of timed-out queries that may still arrive
    consecutive_timeouts: int = 0

    def _init_matching(self) -> None:
        self._sent = []
        self._owed = 0
        self.consecutive_timeouts = 0
        self._counts = {"echoes": 0, "stale": 0, "protocol": 0, "timeouts": 0, "resyncs": 0}

    @property
    def reply_timeout(self) -> float:
        return float(self.settings.reply_timeout)

    def statistics(self) -> LinkStatistics:
        c = self._counts
        return LinkStatistics(c["echoes"], c["stale"], c["protocol"], c["timeouts"], c["resyncs"])

    @abc.abstractmethod
    async def write(self, command: bytes, *, terminate: bool = True) -> None:
        """Send ``command`` (plus the write terminator unless ``terminate`` is false)."""

    @abc.abstractmethod
    async def read_until(
        self, terminator: bytes | None = None, *, command: bytes = b"", timeout: float | None = None
    ) -> bytes:
        """One frame ending with ``terminator`` (default: the read terminator), without it."""

    @abc.abstractmethod
    def drain(self, command: bytes = b"") -> bytes:
        """Discard input nobody asked for (late replies, line noise); return it."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the link; never raises Cancelled halfway."""

    async def query(self, command: bytes, *, timeout: float | None = None) -> bytes:
        """Drain stray input, send ``command``, return the reply without its terminator."""
        self.drain(command)
        await self.write(command)
        return await self.read_until(command=command, timeout=timeout)

    async def send(self, command: bytes) -> None:
        """A command the instrument does not answer: written, and remembered as a possible
        echo so the next exchange skips it."""
        await self.write(command)
        self._remember(command)

    async def exchange(
        self, command: bytes, form: ReplyForm, *, timeout: float | None = None
    ) -> re.Match[bytes]:
        """Send a query and return the match of the first line of the expected ``form``.

        Before writing: stray input is drained, and if an earlier query timed out, the link
        resyncs (:meth:`resync`). Then each line read is, in order: an echo of a command sent
        since the last reply (skipped); the expected reply (returned); an error line of the
        policy (DeviceRefused with the instrument's text); a stale line of another known form
        (discarded); anything else, a ProtocolError naming its bytes. The deadline covers the
        whole exchange, not each line.

        Error handling: ReplyTimeout if no line of the expected form arrives in time (the reply
        is then owed: the next exchange resyncs first); ProtocolError for a line of no known
        form (the caller's link is in doubt: drivers let the actor restart).
        """
        if self._owed:
            await self.resync()
        self.drain(command)
        await self.write(command)
        self._remember(command)
        seconds = self.reply_timeout if timeout is None else timeout
        deadline = trio.current_time() + seconds
        discarded: list[bytes] = []
        while True:
            try:
                line = await self.read_until(
                    command=command, timeout=max(0.0, deadline - trio.current_time())
                )
            except ReplyTimeout as exc:
                self._owed += 1
                self.consecutive_timeouts += 1
                self._counts["timeouts"] += 1
                received = b" | ".join([*discarded, exc.received]) if discarded else exc.received
                raise ReplyTimeout(
                    self.device,
                    f"no complete reply of the expected form ({form.description}) within"
                    f" {seconds:g} s",
                    command=command,
                    received=received,
                ) from None
            verdict = self._classify(line, command, form)
            if verdict is None:
                continue
            if isinstance(verdict, re.Match):
                self._sent.clear()
                self.consecutive_timeouts = 0
                return verdict
            discarded.append(line)
            del discarded[:-8]  # quoted in a time-out's message: the last few are enough
            if verdict == "stale":
                continue
            if verdict == "error":
                self._sent.clear()
                self.consecutive_timeouts = 0
                text = line.decode("ascii", "replace").strip()
                raise DeviceRefused(f"{self.device}: {command.decode('ascii', 'replace')}: {text}")
            self._counts["protocol"] += 1
            self._sent.clear()
            self._owed += 1  # our real reply may still be on its way: resync before the next
            raise ProtocolError(
                self.device, f"expected {form.description}", command=command, received=line
            )

    def _classify(
        self, line: bytes, command: bytes, form: ReplyForm
    ) -> re.Match[bytes] | str | None:
        """None: skip (empty, an echo); a match: the reply; "stale", "error" or "protocol"."""
        if not line.strip():
            return None
        policy = self.policy
        if policy.echoes:
            if is_echo(line, command, partial=True):
                self._counts["echoes"] += 1
                return None
            for index, sent in enumerate(self._sent[:-1]):
                # an earlier command's echo (each echoes once): whole, cut short, or a numeric
                # tail that is not what we wait for (``820`` of ``WAV 820`` before a status
                # byte; ``0800`` of ``W0800`` when ``W?`` is asked is the answer, not an echo)
                if is_echo(line, sent, partial=True) or (
                    is_tail(line, sent) and form.match(line) is None
                ):
                    del self._sent[index]
                    self._counts["echoes"] += 1
                    return None
        match = form.match(line)
        if match is not None:
            return match
        if policy.error is not None and policy.error.match(line) is not None:
            return "error"
        if any(known.match(line) is not None for known in (*policy.known, OK_LINE)):
            self._counts["stale"] += 1
            logger.info(
                "%s: discarded a stale line %s before %r", self.device, excerpt(line), command
            )
            return "stale"
        return "protocol"

    async def resync(self) -> None:
        """After a timeout: read and discard everything up to the answer of the policy's
        sentinel query (instruments answer in order, so a late reply comes before it).

        Error handling: ReplyTimeout if the sentinel is not answered either — the link is dead.
        Without a sentinel the owed replies are left to form matching.
        """
        owed, self._owed = self._owed, 0
        if self.policy.resync is None:
            return
        query, answer = self.policy.resync
        self.drain(query)
        await self.write(query)
        self._counts["resyncs"] += 1
        seconds = self.policy.resync_timeout or 2 * self.reply_timeout
        deadline = trio.current_time() + seconds
        discarded: list[bytes] = []
        while True:
            try:
                line = await self.read_until(
                    command=query, timeout=max(0.0, deadline - trio.current_time())
                )
            except ReplyTimeout as exc:
                self._owed = owed
                self.consecutive_timeouts += 1
                self._counts["timeouts"] += 1
                raise ReplyTimeout(
                    self.device,
                    f"no answer to the resync query within {seconds:g} s after {owed} reply"
                    " timed out",
                    command=query,
                    received=b" | ".join([*discarded, exc.received]),
                ) from None
            if answer.match(line) is not None:
                break
            if line.strip() and not is_echo(line, query, partial=True):
                discarded.append(line)
                del discarded[:-8]
        self._sent.clear()
        if discarded:
            self._counts["stale"] += 1
            logger.warning(
                "%s: resynced after a timeout; discarded late replies %s",
                self.device,
                ", ".join(excerpt(d) for d in discarded),
            )

    def _remember(self, command: bytes) -> None:
        self._sent.append(command)
        del self._sent[:-8]  # echoes come back at once; a few commands are plenty

    def protocol_error(self, reason: str, *, command: bytes, received: bytes) -> ProtocolError:
        """For drivers: a reply that parses badly, with everything needed to debug it."""
        return ProtocolError(self.device, reason, command=command, received=received)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SerialTransport(Link):
    """One open serial port."""

    def __init__(self, device: str, settings: SerialSettings, port: serial.Serial) -> None:
        self.device = device
        self.settings = settings
        self._port = port
        fd = os.dup(port.fileno())
        # pyserial leaves VMIN=0 (it waits with select); a non-blocking read would then return
        # b"" when idle, which looks like end-of-file. VMIN=1 makes an idle read say EAGAIN.
        attributes = termios.tcgetattr(fd)
        attributes[6][termios.VMIN] = 1
        attributes[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attributes)
        self._stream = trio.lowlevel.FdStream(fd)
        self._buffer = bytearray()
        self.bytes_written = 0
        self.bytes_read = 0
        self._init_matching()

    @classmethod
    async def open(cls, device: str, settings: SerialSettings) -> SerialTransport:
        """Open and configure the port, in a worker thread (opening a USB adapter can stall),
        within ``settings.open_timeout`` seconds.

        Error handling: PortUnavailable naming the port, the operating system's reason and
        what to check (:func:`open_failure`); after the time-out the thread is abandoned and
        closes the port itself if it ever opens it.
        """
        gave_up = threading.Event()

        def open_port() -> serial.Serial:
            port = serial.Serial(
                settings.port,
                baudrate=settings.baudrate,
                bytesize=settings.bytesize,
                parity=settings.parity,
                stopbits=settings.stopbits,
                xonxoff=settings.xonxoff,
                rtscts=settings.rtscts,
                timeout=0,
                write_timeout=0,
                exclusive=settings.exclusive,
            )
            if gave_up.is_set():  # nobody will take it: do not leak the descriptor
                port.close()
            return port

        def failure(exc: BaseException) -> str:
            return open_failure(settings.port, exc)

        opened: serial.Serial | None = None
        with trio.move_on_after(settings.open_timeout):
            try:
                opened = await trio.to_thread.run_sync(open_port, abandon_on_cancel=True)
            except (serial.SerialException, OSError, ValueError) as exc:
                why = await trio.to_thread.run_sync(failure, exc)
                raise PortUnavailable(device, why) from exc
        if opened is None:
            gave_up.set()
            raise PortUnavailable(
                device,
                f"cannot open serial port {settings.port}: it did not open within"
                f" {settings.open_timeout:g} s (the operating system did not answer: a hung USB"
                " adapter? unplug it and plug it back in)",
            )
        logger.debug("%s: opened %s", device, settings.port)
        return cls(device, settings, opened)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._stream.aclose()
        self._port.close()

    # -- writing -------------------------------------------------------------------------------

    async def write(self, command: bytes, *, terminate: bool = True) -> None:
        data = command + self.settings.write_terminator if terminate else command
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(self.device, f"write failed ({exc})", command=command) from exc
        self.bytes_written += len(data)

    # -- reading -------------------------------------------------------------------------------

    async def read_until(
        self,
        terminator: bytes | None = None,
        *,
        command: bytes = b"",
        timeout: float | None = None,
    ) -> bytes:
        """One frame ending with ``terminator`` (default: the read terminator), without it.

        With ``any_line_end`` and no explicit terminator: a line ending in CR LF, CR or LF;
        empty lines are skipped."""
        deadline = self._deadline(timeout)
        if terminator is None and self.settings.any_line_end:
            while True:
                while (index := _line_end(self._buffer)) < 0:
                    await self._fill(deadline, command, "waiting for a line end", timeout)
                frame = bytes(self._buffer[:index])
                size = 2 if self._buffer[index : index + 2] == b"\r\n" else 1
                del self._buffer[: index + size]
                if frame:
                    return frame
        end = terminator or self.settings.read_terminator
        while (index := self._buffer.find(end)) < 0:
            await self._fill(deadline, command, f"waiting for {end!r}", timeout)
        frame = bytes(self._buffer[:index])
        del self._buffer[: index + len(end)]
        return frame

    async def read_exactly(
        self, count: int, *, command: bytes = b"", timeout: float | None = None
    ) -> bytes:
        """Exactly ``count`` bytes (fixed-length packet protocols)."""
        deadline = self._deadline(timeout)
        while len(self._buffer) < count:
            await self._fill(deadline, command, f"waiting for {count} bytes", timeout)
        frame = bytes(self._buffer[:count])
        del self._buffer[:count]
        return frame

    def drain(self, command: bytes = b"") -> bytes:
        stray = bytes(self._buffer)
        self._buffer.clear()
        while True:
            try:
                chunk = os.read(self._stream.fileno(), 4096)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise ConnectionLost(self.device, "port hung up", command=command) from exc
                raise
            if not chunk:
                break
            stray += chunk
        if stray:
            self.bytes_read += len(stray)
            logger.warning("%s: discarded stray input %r before %r", self.device, stray, command)
        return stray

    def discard_partial(self) -> bytes:
        """Drop bytes of an unfinished frame (after a framing error); return them."""
        partial = bytes(self._buffer)
        self._buffer.clear()
        return partial

    def _deadline(self, timeout: float | None) -> float:
        seconds = self.settings.reply_timeout if timeout is None else timeout
        return trio.current_time() + seconds if math.isfinite(seconds) else math.inf

    async def _fill(self, deadline: float, command: bytes, waiting: str, timeout: Any) -> None:
        with trio.move_on_at(deadline):
            try:
                chunk = await self._stream.receive_some(4096)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectionLost(
                    self.device,
                    f"read failed ({exc})",
                    command=command,
                    received=bytes(self._buffer),
                ) from exc
            if not chunk:
                raise ConnectionLost(
                    self.device, "port closed", command=command, received=bytes(self._buffer)
                )
            self.bytes_read += len(chunk)
            self._buffer += chunk
            return
        seconds = self.settings.reply_timeout if timeout is None else timeout
        received = bytes(self._buffer)
        self._buffer.clear()
        raise ReplyTimeout(
            self.device,
            f"no complete reply within {seconds:g} s ({waiting})",
            command=command,
            received=received,
        )


#: What to check, by the errno of a failed open.
_OPEN_HINTS = {
    errno.ENOENT: "no such device: is the adapter plugged in, and is the port in the config right?",
    errno.ENOTTY: "it is not a serial port (not a terminal device); check the port in the config",
    errno.EISDIR: "it is a directory, not a serial port; check the port in the config",
    errno.EACCES: "the daemon's user may not open it (add the user to the group that owns the"
    " port, often dialout, then log in again)",
    errno.EAGAIN: "another process holds the port open (find it with: fuser PORT)",
    errno.EBUSY: "another process holds the port open (find it with: fuser PORT)",
    errno.ENXIO: "the device behind it is gone (unplugged, or the adapter re-enumerated)",
    errno.ENODEV: "the device behind it is gone (unplugged, or the adapter re-enumerated)",
    errno.EIO: "the device does not answer (a faulty adapter or cable?)",
}
_OPEN_HINTS[errno.EPERM] = _OPEN_HINTS[errno.EACCES]
#: At most this many present ports are listed when the configured one does not exist.
LISTED_PORTS = 8


def open_failure(port: str, exc: BaseException) -> str:
    """Why ``port`` could not be opened, in words: the operating system's reason (the errno's
    text and name), what to check, and for a missing port the serial ports that do exist.

    pyserial wraps the OSError (or termios.error) in a SerialException, sometimes keeping the
    errno and sometimes only in the message, so the chain is searched. Blocking (it scans the
    system's ports): call it from a worker thread.
    """
    number = _errno_of(exc)
    if number is None:
        return f"cannot open serial port {port}: {exc}"
    name = errno.errorcode.get(number, str(number))
    text = f"cannot open serial port {port}: {os.strerror(number)} ({name})"
    hint = _OPEN_HINTS.get(number)
    if hint:
        text += f"; {hint.replace('PORT', port)}"
    if number == errno.ENOENT:
        text += f"; serial ports present: {present_ports()}"
    return text


def present_ports() -> str:
    """The serial ports this machine has now (at most LISTED_PORTS), or "none"."""
    try:
        found = sorted(p.device for p in list_ports.comports())
    except OSError:
        return "unknown"
    if not found:
        return "none"
    more = f" and {len(found) - LISTED_PORTS} more" if len(found) > LISTED_PORTS else ""
    return ", ".join(found[:LISTED_PORTS]) + more


def _errno_of(exc: BaseException) -> int | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        number = getattr(current, "errno", None)
        if isinstance(number, int):
            return number
        if isinstance(current, termios.error) and current.args:
            first = current.args[0]
            if isinstance(first, int):
                return first
        current = current.__cause__ or current.__context__
    return None


def _line_end(buffer: bytearray) -> int:
    """Index of the first CR or LF in ``buffer``, -1 if none."""
    cr, lf = buffer.find(b"\r"), buffer.find(b"\n")
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)
