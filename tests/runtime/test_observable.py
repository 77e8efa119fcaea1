"""Observable: latest-value subscriptions that never slow the owner."""

from __future__ import annotations

import pytest
import trio

from runtime import Observable, Source


async def test_subscriber_sees_the_current_value_then_changes(autojump_clock):
    obs = Observable(1.0)
    seen: list[float] = []
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            async for sample in obs.subscribe():
                seen.append(sample.value)
                if sample.value == 3.0:
                    return

        nursery.start_soon(watch)
        await trio.testing.wait_all_tasks_blocked()
        obs.set(2.0, Source.USER)
        await trio.testing.wait_all_tasks_blocked()
        obs.set(3.0, Source.HARDWARE)
    assert seen == [1.0, 2.0, 3.0]


async def test_slow_subscriber_skips_to_the_latest_and_never_blocks_the_owner(autojump_clock):
    obs = Observable(0)
    fast: list[int] = []
    slow: list[int] = []

    async def reader(out: list[int], delay: float) -> None:
        async for sample in obs.subscribe():
            out.append(sample.value)
            if sample.value == 1000:
                return
            await trio.sleep(delay)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, fast, 0.0)
        nursery.start_soon(reader, slow, 0.05)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        for value in range(1, 1001):
            obs.set(value, Source.HARDWARE)  # synchronous: cannot wait for any reader
            await trio.sleep(0.001)
        assert trio.current_time() - start == pytest.approx(1.0, abs=0.01)
    assert fast == list(range(1001))  # a reader that keeps up sees everything
    assert slow[0] == 0 and slow[-1] == 1000
    assert len(slow) < 30  # ~1 s / 50 ms: it skipped the intermediate values
    assert slow == sorted(slow)


async def test_sample_carries_version_timestamp_and_source():
    obs = Observable("closed")
    first = obs.sample()
    assert (first.version, first.source) == (0, Source.DEFAULT)
    second = obs.set("open", Source.SCRIPT)
    assert (second.value, second.version, second.source) == ("open", 1, Source.SCRIPT)
    assert second.timestamp >= first.timestamp


async def test_close_ends_subscriptions_after_the_last_value(autojump_clock):
    obs = Observable(0)
    seen: list[int] = []

    async def watch() -> None:
        async for sample in obs.subscribe():
            seen.append(sample.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await trio.testing.wait_all_tasks_blocked()
        obs.set(5, Source.HARDWARE)
        obs.close()
    assert seen == [0, 5]


async def test_wait_for_a_condition(autojump_clock):
    obs = Observable(0.0)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def settle() -> None:
            for position in (1.0, 5.0, 9.99, 10.0):
                await trio.sleep(1.0)
                obs.set(position, Source.HARDWARE)

        nursery.start_soon(settle)
        sample = await obs.wait_for(lambda p: abs(p - 10.0) < 0.05)
        assert sample.value == 9.99
        assert trio.current_time() - start == pytest.approx(3.0)
