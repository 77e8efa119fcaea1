"""Taps: a lossless tap never loses silently, a latest tap never holds the producer back."""

from __future__ import annotations

import contextlib
import logging

import pytest
import trio

from actors.pipeline.taps import TapClosed, TapPolicy, TapRegistry
from runtime import NotFoundError, ValidationError


def test_lossless_tap_keeps_everything_it_has_room_for_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    losses: list[tuple[str, int]] = []
    registry: TapRegistry[int] = TapRegistry(
        "cam.frames", on_loss=lambda n, d: losses.append((n, d))
    )
    writer = registry.add("writer", TapPolicy.LOSSLESS, capacity=3)
    with caplog.at_level(logging.ERROR):
        for item in range(5):
            registry.publish(item)
    assert writer.receive_batch(10) == [0, 1, 2]
    stats = writer.statistics()
    assert (stats.offered, stats.delivered, stats.dropped, stats.pending) == (5, 3, 2, 0)
    assert registry.lost == 2
    assert losses == [("writer", 1), ("writer", 2)]
    assert "lossless tap 'writer'" in caplog.text  # loud, not silent


def test_latest_tap_skips_to_the_newest_item() -> None:
    registry: TapRegistry[int] = TapRegistry("cam.frames")
    preview = registry.add("preview", TapPolicy.LATEST)
    for item in range(100):
        registry.publish(item)
    assert preview.receive_nowait() == 99
    assert preview.statistics().skipped == 99
    assert registry.lost == 0  # skipping a preview frame is not a loss


def test_every_nth_tap_offers_one_item_in_n() -> None:
    registry: TapRegistry[int] = TapRegistry("cam.frames")
    analysis = registry.add("analysis", TapPolicy.EVERY_NTH, every=10)
    seen = []
    for item in range(35):
        registry.publish(item)
        with contextlib.suppress(trio.WouldBlock):
            seen.append(analysis.receive_nowait())
    assert seen == [0, 10, 20, 30]


async def test_removed_tap_delivers_what_was_queued_then_ends() -> None:
    registry: TapRegistry[int] = TapRegistry("cam.frames")
    writer = registry.add("writer", TapPolicy.LOSSLESS, capacity=10)
    registry.publish(1)
    registry.publish(2)
    final = registry.remove("writer")
    registry.publish(3)  # not offered any more
    assert final.offered == 2
    assert [item async for item in writer] == [1, 2]
    with pytest.raises(TapClosed):
        await writer.receive()


async def test_a_reader_waits_for_the_next_item() -> None:
    registry: TapRegistry[str] = TapRegistry("meter.readings")
    reader = registry.add("recorder", TapPolicy.LOSSLESS)
    got: list[str] = []

    async def consume() -> None:
        got.append(await reader.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        registry.publish("first")
    assert got == ["first"]


def test_closed_readers_are_forgotten_and_names_are_checked() -> None:
    registry: TapRegistry[int] = TapRegistry("cam.frames")
    reader = registry.add("gui", TapPolicy.LATEST)
    with pytest.raises(ValidationError, match="exists already"):
        registry.add("gui", TapPolicy.LATEST)
    reader.close()
    registry.publish(1)
    assert registry.statistics() == ()
    registry.add("gui", TapPolicy.LATEST)  # the name is free again
    with pytest.raises(NotFoundError, match="no tap 'other'"):
        registry.remove("other")
    with pytest.raises(ValidationError, match="capacity"):
        registry.add("big", TapPolicy.LOSSLESS, capacity=0)
