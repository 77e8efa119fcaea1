"""The trio path: ``open_trio_bench`` (trio-asyncio) in a trio program, calls and a stream."""

from __future__ import annotations

import pytest
import trio

from client import NotFound, ParameterValue
from client.trio_bench import open_trio_bench


async def test_trio_calls_streams_errors_and_cancellation(daemon: str) -> None:
    async with open_trio_bench(daemon) as bench:
        moved = await bench.call(bench.client.move_to, "esp300.axis1", 0.75)
        assert moved.settled and moved.position == pytest.approx(0.75, abs=1e-3)
        info = await bench.call(bench.client.info)
        assert info.bench == "simulated"

        received: list[ParameterValue] = []
        stream = bench.client.stream_parameters("power_meter", ["wavelength"])
        async with bench.iterate(stream) as values:
            async for value in values:
                received.append(value)
                if len(received) == 2:
                    break
                await bench.call(bench.client.set, "power_meter", "wavelength", 700)
        assert received[1].value == 700 and received[1].source == "user"

        with pytest.raises(NotFound, match="no device named 'nope'"):
            await bench.call(bench.client.device, "nope")

        # a trio cancel scope cancels the call (the daemon stops waiting; the move itself goes
        # on until stopped), and the client goes on working
        with trio.move_on_after(0.1) as scope:
            await bench.call(bench.client.move_to, "esp300.axis2", 2.0)
        assert scope.cancelled_caught
        where = await bench.call(bench.client.wait_settled, "esp300.axis2")
        assert where.position == pytest.approx(2.0, abs=1e-3)
        await bench.call(bench.client.move_to, "esp300.axis2", 0.0)
