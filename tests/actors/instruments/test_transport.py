"""The shared serial transport against a pty peer: framing, timeouts, stray bytes, hang-ups."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from actors.instruments.transport import (
    ConnectionLost,
    ReplyTimeout,
    SerialSettings,
    SerialTransport,
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
    with pytest.raises(ConnectionLost, match=f"echo: cannot open {missing}"):
        await SerialTransport.open("echo", settings(str(missing)))
