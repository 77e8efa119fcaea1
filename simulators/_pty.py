"""A pseudo-terminal that speaks an instrument's wire protocol.

The driver opens the pty's slave side exactly as it would open ``/dev/ttyUSB0``, so the real
driver code — pyserial, the transport, the parsing — runs in tests and on the simulated bench.
A subclass says what a command does (``respond``); this base does the framing, the timing and
the faults a real serial link produces.

The simulator is addressed through a stable symlink (``link``) rather than the ``/dev/pts/N``
name, because that name changes when the "cable" is pulled and plugged back in; a driver
configured with the link finds the instrument again after :meth:`reconnect`, like a udev name.

Quirk modes (:attr:`PtySimulator.QUIRKS`) reproduce what real units of a model were recorded
doing — echoes, stale ``OK`` lines, slow or late replies, other line ends, noise on a shared bus.
They are off by default (the simulated bench is clean); a test, a bench file (device option
``quirks`` on a ``sim`` port) or ``python -m simulators.<instrument> --quirk NAME`` switches them
on. Unlike :class:`Faults` (one-off link failures a test injects), a quirk is a standing
behaviour of the instrument.

Time comes from ``trio.current_time()``, so motion and lags follow trio's MockClock in tests.
(Use a MockClock with a small ``autojump_threshold``, e.g. 0.01 s: a pty delivers bytes through
the kernel, and a clock that jumps at once could fire a reply timeout before they arrive.)
"""

from __future__ import annotations

import abc
import argparse
import logging
import os
import signal
import sys
import tempfile
import time
import tty
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import trio

logger = logging.getLogger(__name__)


@dataclass
class Faults:
    """Switches a test flips to make the link misbehave. Counts are decremented per reply."""

    silent: bool = False  # answer nothing at all (instrument off, wrong baud rate)
    drop_replies: int = 0  # swallow the next N replies
    garbage_replies: int = 0  # replace the next N replies with line noise
    split_replies: int = 0  # send the next N replies in two chunks, ``split_gap`` apart
    split_gap: float = 0.05
    reply_delay: float = 0.0  # added before every reply


class PtySimulator(abc.ABC):
    """Base class: frames commands by ``command_terminator``, answers with ``respond``."""

    name = "instrument"
    command_terminator = b"\n"
    reply_terminator = b"\n"
    any_line_end = False  # accept CR, LF or CR LF (and ignore the empty commands between)
    ignored_bytes = b""  # e.g. XON/XOFF, which an instrument's UART swallows
    partial_timeout = 2.0  # seconds of silence after which a partial command is discarded
    #: The quirk modes this instrument has: name -> what a real unit does in that mode.
    QUIRKS: ClassVar[Mapping[str, str]] = {}

    def __init__(self, *, link: Path | str | None = None, quirks: Iterable[str] = ()) -> None:
        self.faults = Faults()
        self.quirks: set[str] = set()
        for name in quirks:
            self.enable_quirk(name)
        # The most recent commands (bounded: a simulated bench runs for days), and when their
        # bytes arrived (perf_counter, wall time) for latency measurements.
        self.commands: deque[bytes] = deque(maxlen=10_000)
        self.arrivals: deque[tuple[float, bytes]] = deque(maxlen=10_000)
        self.on_command: Callable[[float, bytes], None] | None = None  # (arrival, command)
        self._link = Path(link) if link is not None else None
        self._master: int | None = None
        self._slave: int | None = None
        self._connected = trio.Event()
        self._disconnected: trio.Event | None = None
        self._last_byte = 0.0

    # -- quirk modes -----------------------------------------------------------------------------

    def enable_quirk(self, name: str, on: bool = True) -> None:
        """Switch a quirk mode on (or off). ValueError naming the known ones for a typo."""
        if name not in self.QUIRKS:
            known = ", ".join(sorted(self.QUIRKS)) or "none"
            raise ValueError(f"{self.name} simulator has no quirk {name!r}; quirks: {known}")
        if on:
            self.quirks.add(name)
        else:
            self.quirks.discard(name)

    def quirk(self, name: str) -> bool:
        return name in self.quirks

    def reply_delay(self, command: bytes) -> float:
        """Seconds before the reply to ``command`` goes out (the instrument answers in order:
        nothing else is processed meanwhile). Override for quirks such as slow replies."""
        return self.faults.reply_delay

    # -- the port a driver opens -----------------------------------------------------------------

    @property
    def path(self) -> str:
        """The path to give the driver (the stable link if there is one)."""
        if self._link is not None:
            return str(self._link)
        if self._slave is None:
            raise RuntimeError(f"{self.name} simulator is not running")
        return os.ttyname(self._slave)

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: bytes pass as the instrument sent them
        self._master, self._slave = master, slave
        if self._link is not None:
            temporary = self._link.with_name(f".{self._link.name}.{os.getpid()}")
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(os.ttyname(slave))
            os.replace(temporary, self._link)  # atomic: a driver never sees a missing link

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    # -- running ---------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``started`` with the path once a driver can open it."""
        try:
            while True:
                self._open_pty()
                self._disconnected = trio.Event()
                task_status.started(self.path)
                task_status = trio.TASK_STATUS_IGNORED
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._serve)
                    nursery.start_soon(self._background)
                    await self._disconnected.wait()
                    nursery.cancel_scope.cancel()
                self._close_pty()
                logger.info("%s simulator: cable pulled", self.name)
                await self._connected.wait()
                self._connected = trio.Event()
                logger.info("%s simulator: cable plugged back in", self.name)
        finally:
            self._close_pty()

    def disconnect(self) -> None:
        """Pull the cable: the pty closes, the driver's reads fail, its path stops working."""
        if self._disconnected is not None:
            self._disconnected.set()

    def reconnect(self, *, power_cycled: bool = True) -> None:
        """Plug it back in: a new pty behind the same link. A power-cycled instrument comes
        back with its factory settings (:meth:`power_on`), as a real one would."""
        if power_cycled:
            self.power_on()
        self._connected.set()

    def power_on(self) -> None:  # noqa: B027 (an optional hook; most instruments override it)
        """Override: reset the instrument's settings to their power-up values."""

    async def _background(self) -> None:  # noqa: B027 (an optional hook)
        """Override for unsolicited traffic or periodic state updates while connected."""

    async def run_tcp(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the same protocol on a loopback TCP port (``started`` with the port), as a
        LAN-GPIB gateway or a VISA ``TCPIP::host::port::SOCKET`` resource would reach it."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._background)
            task_status.started(port)
            await trio.serve_listeners(self._serve_connection, listeners)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        await self._serve_stream(stream, end_on_eof=True)

    async def _serve(self) -> None:
        assert self._master is not None
        stream = trio.lowlevel.FdStream(os.dup(self._master))
        async with stream:
            await self._serve_stream(stream, end_on_eof=False)

    async def _serve_stream(self, stream: trio.abc.Stream, *, end_on_eof: bool) -> None:
        buffer = bytearray()
        while True:
            try:
                chunk = await stream.receive_some(4096)
            except (OSError, trio.BrokenResourceError):
                chunk = b""
            if not chunk:
                if end_on_eof:
                    return  # the client hung up
                await trio.sleep(0.01)  # no driver holds the pty slave open: wait for one
                continue
            if self.ignored_bytes:
                chunk = chunk.translate(None, self.ignored_bytes)
            if self.any_line_end:
                chunk = chunk.replace(b"\r", b"\n")
            arrived = time.perf_counter()
            if arrived - self._last_byte > self.partial_timeout:
                buffer.clear()  # like a UART state machine: a stale partial packet is dropped
            self._last_byte = arrived
            buffer += chunk
            while (command := self.next_command(buffer)) is not None:
                if self.any_line_end and not command:
                    continue
                self.commands.append(command)
                self.arrivals.append((arrived, command))
                if self.on_command is not None:
                    self.on_command(arrived, command)
                reply = await self.respond(command)
                if reply is not None:
                    await self._send(stream, reply, self.reply_delay(command))

    def next_command(self, buffer: bytearray) -> bytes | None:
        """Take one complete command off the front of ``buffer`` (terminator framing by
        default; fixed-length protocols override this)."""
        index = buffer.find(self.command_terminator)
        if index < 0:
            return None
        command = bytes(buffer[:index])
        del buffer[: index + len(self.command_terminator)]
        return command

    async def send_unsolicited(self, data: bytes) -> None:
        """Write bytes the instrument sends on its own (a status report)."""
        if self._master is not None:
            os.write(self._master, data)
            await trio.lowlevel.checkpoint()

    def frame(self, reply: bytes) -> bytes:
        """The bytes on the wire for one reply (override for quirky line ends)."""
        return reply + self.reply_terminator

    async def _send(self, stream: trio.abc.Stream, reply: bytes, delay: float = 0.0) -> None:
        faults = self.faults
        data = self.frame(reply)
        if faults.silent:
            return
        if faults.drop_replies > 0:
            faults.drop_replies -= 1
            return
        if faults.garbage_replies > 0:
            faults.garbage_replies -= 1
            data = b"\x8f\xfe#@" + bytes(reversed(reply)) + self.reply_terminator
        if delay:
            await trio.sleep(delay)
        if faults.split_replies > 0 and len(data) > 1:
            faults.split_replies -= 1
            half = len(data) // 2
            await stream.send_all(data[:half])
            await trio.sleep(faults.split_gap)
            data = data[half:]
        await stream.send_all(data)

    @abc.abstractmethod
    async def respond(self, command: bytes) -> bytes | None:
        """The reply to one command (without terminator), or None for silence."""


def default_link_dir() -> Path:
    """A private directory for simulator links (``$XDG_RUNTIME_DIR`` or the temp dir)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    directory = Path(base) / f"benchd-sim-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def run_standalone(
    simulator: PtySimulator, description: str, argv: Sequence[str] | None = None
) -> None:
    """``python -m simulators.<instrument> [--quirk NAME]...``: serve on a stable link until
    Ctrl-C or SIGTERM; ``--list-quirks`` says what each quirk mode does."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quirk",
        action="append",
        default=[],
        choices=sorted(simulator.QUIRKS),
        metavar="NAME",
        help="switch a quirk mode on (repeatable); --list-quirks shows them",
    )
    parser.add_argument("--list-quirks", action="store_true", help="list the quirk modes")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.list_quirks:
        for name, what in sorted(simulator.QUIRKS.items()):
            print(f"{name}: {what}")
        return
    for name in args.quirk:
        simulator.enable_quirk(name)
    if simulator.quirks:
        description += f"; quirks: {', '.join(sorted(simulator.quirks))}"

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                path = await nursery.start(simulator.run)
                print(f"{description} on {path}; Ctrl-C to stop", flush=True)
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()

    trio.run(main)
