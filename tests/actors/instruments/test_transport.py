"""The shared serial transport against a pty peer: framing, timeouts, stray bytes, hang-ups."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest
import serial
import trio

from actors.instruments.transport import (
    ConnectionLost,
    DeviceRefused,
    PortUnavailable,
    ProtocolError,
    ReplyForm,
    ReplyPolicy,
    ReplyTimeout,
    SerialSettings,
    SerialTransport,
    is_echo,
    open_failure,
)
from simulators._pty import PtySimulator


class Echo(PtySimulator):
    """Answers ``PING`` with ``PONG``, ``ECHO x`` with ``x``; silent otherwise."""

    name = "echo"
    command_terminator = b"\r"
    reply_terminator = b"\r\n"

    async def respond(self, command: bytes) -> bytes | None:
        await trio.lowlevel.checkpoint()
        if command == b"PING":
            return b"PONG"
        if command.startswith(b"ECHO "):
            return command[5:]
        return None


def settings(path: str, **kw: object) -> SerialSettings:
    options: dict[str, object] = {
        "baudrate": 19200,
        "rtscts": True,
        "write_terminator": b"\r",
        "read_terminator": b"\r\n",
        "reply_timeout": 0.5,
    }
    options.update(kw)
    return SerialSettings(path, **options)  # type: ignore[arg-type]


async def test_query_frames_by_terminator_even_when_split(io_clock, link):
    echo = Echo(link=link)
    async with trio.open_nursery() as nursery:
        path = await nursery.start(echo.run)
        async with await SerialTransport.open("echo", settings(path)) as port:
            assert await port.query(b"PING") == b"PONG"
            echo.faults.split_replies = 1
            echo.faults.split_gap = 0.2
            assert await port.query(b"ECHO 12.345") == b"12.345"
            assert list(echo.commands) == [b"PING", b"ECHO 12.345"]
        nursery.cancel_scope.cancel()


async def test_silence_times_out_naming_device_command_and_bytes(io_clock, link):
    echo = Echo(link=link)
    async with trio.open_nursery() as nursery:
        path = await nursery.start(echo.run)
        async with await SerialTransport.open("esp300", settings(path)) as port:
            start = trio.current_time()
            with pytest.raises(ReplyTimeout) as caught:
                await port.query(b"1TP?")
            assert trio.current_time() - start == pytest.approx(0.5, abs=0.05)
            assert str(caught.value) == (
                "esp300: no complete reply within 0.5 s (waiting for b'\\r\\n') to b'1TP?';"
                " received nothing"
            )
            # A reply cut short is named with what did arrive.
            echo.faults.split_replies = 1
            echo.faults.split_gap = 5.0
            with pytest.raises(ReplyTimeout, match=r"to b'ECHO 123456'; received b'1234'"):
                await port.query(b"ECHO 123456")
        nursery.cancel_scope.cancel()


async def test_stray_bytes_are_drained_before_the_next_command(io_clock, link):
    echo = Echo(link=link)
    async with trio.open_nursery() as nursery:
        path = await nursery.start(echo.run)
        async with await SerialTransport.open("echo", settings(path)) as port:
            await echo.send_unsolicited(b"late reply\r\n")
            await trio.sleep(0.05)
            assert await port.query(b"PING") == b"PONG"
            assert port.bytes_read >= len(b"late reply\r\nPONG\r\n")
        nursery.cancel_scope.cancel()


async def test_fixed_length_packets(io_clock, link):
    echo = Echo(link=link)
    async with trio.open_nursery() as nursery:
        path = await nursery.start(echo.run)
        async with await SerialTransport.open("echo", settings(path)) as port:
            await port.write(b"ECHO 0123456789")
            assert await port.read_exactly(4) == b"0123"
            assert await port.read_exactly(8) == b"456789\r\n"
        nursery.cancel_scope.cancel()


async def test_pulled_cable_is_connection_lost_and_the_link_comes_back(io_clock, link):
    echo = Echo(link=link)
    async with trio.open_nursery() as nursery:
        await nursery.start(echo.run)
        port = await SerialTransport.open("echo", settings(str(link)))
        echo.disconnect()
        await trio.sleep(0.1)
        with pytest.raises(ConnectionLost, match="echo: "):
            await port.query(b"PING")
        await port.aclose()
        with pytest.raises(ConnectionLost, match="cannot open"):
            await SerialTransport.open("echo", settings(str(link)))
        echo.reconnect()
        await trio.sleep(0.1)
        async with await SerialTransport.open("echo", settings(str(link))) as again:
            assert await again.query(b"PING") == b"PONG"
        nursery.cancel_scope.cancel()


async def test_opening_a_missing_port_names_it(tmp_path: Path):
    missing = tmp_path / "ttyUSB9"
    with pytest.raises(ConnectionLost, match=f"echo: cannot open serial port {missing}"):
        await SerialTransport.open("echo", settings(str(missing)))


async def test_a_port_that_cannot_be_opened_fails_at_once_saying_why(tmp_path: Path):
    """The OS's reason (errno text and name) and what to check, for each way a port is wrong."""
    not_a_tty = tmp_path / "port.txt"
    not_a_tty.write_text("not a serial port")
    cases = {
        tmp_path / "ttyUSB9": "No such file or directory (ENOENT); no such device: is the adapter"
        " plugged in",
        not_a_tty: "Inappropriate ioctl for device (ENOTTY); it is not a serial port",
        tmp_path: "Is a directory (EISDIR)",
    }
    for port, reason in cases.items():
        started = trio.current_time()
        with pytest.raises(PortUnavailable) as caught:
            await SerialTransport.open("esp300", settings(str(port)))
        assert trio.current_time() - started < 2.0
        text = str(caught.value)
        assert text.startswith(f"esp300: cannot open serial port {port}: {reason}")
        assert "received" not in text  # nothing was exchanged: no "received nothing"
    assert "serial ports present:" in str(
        (await _failure(tmp_path / "ttyUSB9")).value
    )  # a missing port lists the ones that exist


async def _failure(port: Path) -> pytest.ExceptionInfo[PortUnavailable]:
    with pytest.raises(PortUnavailable) as caught:
        await SerialTransport.open("esp300", settings(str(port)))
    return caught


async def test_a_busy_port_names_the_process_check(tmp_path: Path):
    echo = Echo(link=tmp_path / "ttyBUSY")
    async with trio.open_nursery() as nursery:
        await nursery.start(echo.run)
        async with await SerialTransport.open("first", settings(str(echo.path))):
            with pytest.raises(PortUnavailable) as caught:
                await SerialTransport.open("second", settings(str(echo.path)))
        nursery.cancel_scope.cancel()
    text = str(caught.value)
    assert "Resource temporarily unavailable (EAGAIN)" in text
    assert f"another process holds the port open (find it with: fuser {echo.path})" in text


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (errno.EACCES, "Permission denied (EACCES); the daemon's user may not open it"),
        (errno.EBUSY, "Device or resource busy (EBUSY); another process holds the port"),
        (errno.ENXIO, "(ENXIO); the device behind it is gone"),
    ],
)
def test_open_failures_are_explained_from_the_errno_in_the_chain(number, words):
    """pyserial keeps the errno on its exception, or only on the exception it wraps."""
    cause = OSError(number, os.strerror(number))
    wrapped = serial.SerialException(f"could not open port /dev/ttyUSB0: {cause}")
    wrapped.__context__ = cause
    for exc in (cause, wrapped):
        assert words in open_failure("/dev/ttyUSB0", exc)
    assert (
        open_failure("/dev/x", ValueError("bad baud")) == "cannot open serial port /dev/x: bad baud"
    )


async def test_an_open_that_hangs_fails_after_the_open_timeout(tmp_path: Path, monkeypatch):
    """A hung USB adapter stalls open() in the kernel: the device fails after open_timeout,
    the stuck thread is abandoned, and closes the port itself if it ever opens."""
    release = threading.Event()
    closed = threading.Event()

    class Hung:
        def __init__(self, *args: object, **kwargs: object) -> None:
            release.wait(10.0)

        def close(self) -> None:
            closed.set()

    monkeypatch.setattr(serial, "Serial", Hung)
    started = time.monotonic()
    with pytest.raises(PortUnavailable, match=r"did not open within 0\.2 s"):
        await SerialTransport.open("esp300", settings("/dev/ttyUSB0", open_timeout=0.2))
    assert time.monotonic() - started < 2.0
    release.set()
    assert await trio.to_thread.run_sync(closed.wait, 5.0)  # nothing leaks


# -- replies matched by form ---------------------------------------------------------------------


class Scripted(PtySimulator):
    """Answers each command with the next scripted lines (raw bytes, terminators included),
    after ``delays[i]`` seconds; ``SYNC?`` always answers ``SYNC OK``."""

    name = "scripted"
    command_terminator = b"\n"

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.script: list[bytes] = []
        self.delays: list[float] = []

    def reply_delay(self, command: bytes) -> float:
        return self.delays.pop(0) if self.delays and command != b"SYNC?" else 0.0

    def frame(self, reply: bytes) -> bytes:
        return reply  # scripted replies carry their own line ends

    async def respond(self, command: bytes) -> bytes | None:
        await trio.lowlevel.checkpoint()
        if command == b"SYNC?":
            return b"SYNC OK\n"
        return self.script.pop(0) if self.script else None


STATUS = ReplyForm.of("a status byte", rb"(\d{1,3})")
WAVELENGTH = ReplyForm.of("a wavelength", rb"(\d+)nm")
POLICY = ReplyPolicy(
    known=(STATUS, WAVELENGTH),
    error=ReplyForm.of("an error", rb".*\bERROR\b.*"),
    resync=(b"SYNC?", ReplyForm.of("SYNC OK", rb"SYNC OK")),
)


def line_settings(path: str) -> SerialSettings:
    return SerialSettings(
        path, write_terminator=b"\n", read_terminator=b"\n", reply_timeout=1.0, any_line_end=True
    )


async def test_exchange_skips_echoes_and_stale_lines_and_accepts_any_line_end(io_clock, link):
    sim = Scripted(link=link)
    async with trio.open_nursery() as nursery:
        path = await nursery.start(sim.run)
        async with await SerialTransport.open("laser", line_settings(path)) as port:
            port.policy = POLICY
            await port.send(b"WAV 820")
            sim.script.append(b"WAV 820\r\nOK\r*STB?\n*ST\r\n\n8\r")  # echoes, OK, cut echo
            match = await port.exchange(b"*STB?", STATUS)
            assert match.group(1) == b"8"
            sim.script.append(b"12\n820nm\n")  # a late status byte before the wavelength
            assert (await port.exchange(b"WAV?", WAVELENGTH)).group(1) == b"820"
            stats = port.statistics()
            assert (stats.echoes_skipped, stats.stale_discarded) == (3, 2)
        nursery.cancel_scope.cancel()


async def test_an_error_line_refuses_and_anything_else_is_a_protocol_error(io_clock, link):
    sim = Scripted(link=link)
    async with trio.open_nursery() as nursery:
        path = await nursery.start(sim.run)
        async with await SerialTransport.open("laser", line_settings(path)) as port:
            port.policy = POLICY
            sim.script.append(b"Error: undefined header\n")
            with pytest.raises(DeviceRefused, match="laser: \\*STB\\?: Error: undefined header"):
                await port.exchange(b"*STB?", STATUS)
            sim.script.append(b"\x8f\xfe" + b"#" * 200 + b"\n")
            with pytest.raises(ProtocolError) as caught:
                await port.exchange(b"*STB?", STATUS)
            message = str(caught.value)
            assert "laser: expected a status byte to b'*STB?'; received b'\\x8f\\xfe###" in message
            assert "... (202 bytes)" in message  # the raw bytes, cut short
        nursery.cancel_scope.cancel()


async def test_a_late_reply_is_discarded_by_the_resync_before_the_next_question(io_clock, link):
    """ "1" arrives after the time-out; the next question's answer is also 0 or 1."""
    sim = Scripted(link=link)
    shutter = ReplyForm.of("0 or 1", rb"[01]")
    async with trio.open_nursery() as nursery:
        path = await nursery.start(sim.run)
        async with await SerialTransport.open("laser", line_settings(path)) as port:
            port.policy = POLICY
            sim.script.append(b"1\n")
            sim.delays.append(1.5)  # past the 1 s time-out
            with pytest.raises(ReplyTimeout, match="no complete reply of the expected form"):
                await port.exchange(b"*STB?", STATUS)
            assert port.consecutive_timeouts == 1
            sim.script.append(b"0\n")
            assert (await port.exchange(b"SHUT?", shutter)).group(0) == b"0"
            assert port.consecutive_timeouts == 0 and port.statistics().resyncs == 1
            assert list(sim.commands) == [b"*STB?", b"SYNC?", b"SHUT?"]
        nursery.cancel_scope.cancel()


async def test_a_resync_nobody_answers_is_a_dead_link(io_clock, link):
    sim = Scripted(link=link)
    async with trio.open_nursery() as nursery:
        path = await nursery.start(sim.run)
        async with await SerialTransport.open("laser", line_settings(path)) as port:
            port.policy = POLICY
            with pytest.raises(ReplyTimeout):
                await port.exchange(b"*STB?", STATUS)
            sim.faults.silent = True
            with pytest.raises(ReplyTimeout, match="no answer to the resync query within 2 s"):
                await port.exchange(b"*STB?", STATUS)
        nursery.cancel_scope.cancel()


def test_echo_rules():
    assert is_echo(b"D?", b"D?", partial=False) and is_echo(b" d? ", b"D?", partial=False)
    assert is_echo(b"?", b"D?", partial=True) and is_echo(b"W08", b"W0800", partial=True)
    assert not is_echo(b"0800", b"W0800", partial=True)  # digits only: judged by form
    assert not is_echo(b"1", b"1MD?", partial=True)  # the ESP300's answer, not an echo
    assert not is_echo(b"144", b"W1440", partial=True)  # neither its head nor its tail
    assert not is_echo(b"", b"D?", partial=True)
