"""The asyncio client directly: calls, a stream, and closing a client with a stream open."""

from __future__ import annotations

import asyncio

import pytest
import trio

from client import AsyncBench, ConnectionLost, Position


def run_asyncio(address: str) -> list[Position]:
    async def main() -> list[Position]:
        bench = await AsyncBench.connect(address)
        positions: list[Position] = []

        async def watch() -> None:
            async for where in bench.stream_position("esp300.axis1", interval=0.02):
                positions.append(where)

        watching = asyncio.ensure_future(watch())
        moved = await bench.move_to("esp300.axis1", 0.5)
        assert moved.settled and moved.units == "mm"
        while len(positions) < 3:
            await asyncio.sleep(0.02)
        await bench.close()
        with pytest.raises(ConnectionLost, match="this client is closed"):
            await asyncio.wait_for(watching, timeout=10)
        with pytest.raises(ConnectionLost, match="GetDaemonInfo: this client is closed"):
            await bench.info()
        return positions

    # a plain asyncio loop: this process also runs trio-asyncio (the daemon's edge)
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(main())


async def test_asyncio_calls_stream_and_close(daemon: str) -> None:
    positions = await trio.to_thread.run_sync(run_asyncio, daemon)
    assert all(p.device == "esp300.axis1" and p.units == "mm" for p in positions)
