"""The serial transport every driver shares: open, frame, time out, explain.

pyserial opens and configures the port (baud, parity, flow control — termios is its job, and it
does it on every platform); the I/O itself goes through a duplicate of its file descriptor as a
non-blocking ``trio.lowlevel.FdStream``, so a read waiting for a slow instrument costs no thread
and is cancelled like any other trio operation (an e-stop interrupts it at once).

Framing is either a reply terminator (``read_until``) or a fixed length (``read_exactly``);
every read has a deadline. Errors name the device, the command sent and the bytes received,
because "timeout" alone is useless at 3 a.m.: ``esp300: no complete reply to b'1TP?' within
0.5 s; received b'12.3' (waiting for b'\\r\\n')``.

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
import termios
from dataclasses import dataclass
from typing import Any, Literal, Self

import serial
import trio

from runtime import BenchError

logger = logging.getLogger(__name__)


class TransportError(BenchError):
    """The link to an instrument failed; the message says what was sent and what came back."""

    def __init__(self, device: str, message: str, *, command: bytes = b"", received: bytes = b""):
        sent = f" to {command!r}" if command else ""
        got = f"; received {received!r}" if received else "; received nothing"
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

    @property
    def address(self) -> str:
        return self.port


class Link(abc.ABC):
    """What every link to an instrument offers a driver, whatever carries the bytes.

    Owned by exactly one actor; not safe to share between tasks.
    """

    device: str

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

    @classmethod
    async def open(cls, device: str, settings: SerialSettings) -> SerialTransport:
        """Open and configure the port (in a worker thread: opening a USB adapter can stall).

        Error handling: ConnectionLost naming the port if it cannot be opened.
        """

        def open_port() -> serial.Serial:
            return serial.Serial(
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

        try:
            port = await trio.to_thread.run_sync(open_port)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ConnectionLost(device, f"cannot open {settings.port}: {exc}") from exc
        logger.debug("%s: opened %s", device, settings.port)
        return cls(device, settings, port)

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
        """One frame ending with ``terminator`` (default: the read terminator), without it."""
        end = terminator or self.settings.read_terminator
        deadline = self._deadline(timeout)
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
