"""Follow a producer's stream across its restarts.

A tap belongs to one producer *instance*: when the camera crashes and its supervisor starts a
fresh one, the old tap closes. Consumers that should outlive that (the ring buffer, a preview
stream) call :func:`follow_stream`, which asks for a new tap each time, with a short backoff
while the producer is down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from runtime import ActorError, ActorRef, BenchError

from .taps import AddTap, RemoveTap, TapPolicy, TapReader

logger = logging.getLogger(__name__)

RETRY_SECONDS = 0.5


async def add_tap(
    producer: ActorRef,
    stream: str,
    name: str,
    policy: TapPolicy,
    *,
    capacity: int = 64,
    every: int = 1,
) -> TapReader[Any]:
    reader: TapReader[Any] = await producer.ask(
        AddTap(stream, name, policy, capacity=capacity, every=every)
    )
    return reader


async def remove_tap(producer: ActorRef, stream: str, name: str) -> None:
    """Remove a tap if its producer still has it (a restarted producer has forgotten it)."""
    try:
        await producer.ask(RemoveTap(stream, name), timeout=2.0)
    except (BenchError, ActorError):
        logger.debug("%s: tap %s/%s was already gone", producer.name, stream, name)


async def follow_stream(
    producer: ActorRef,
    stream: str,
    name: str,
    policy: TapPolicy,
    consume: Callable[[Any], Awaitable[None]],
    *,
    capacity: int = 64,
    every: int = 1,
) -> None:
    """Hand every item of the producer's stream to ``consume``, for ever, re-tapping after
    each producer restart. (A callback rather than an async generator: trio cannot
    finalise a generator abandoned mid-iteration safely.)"""
    while True:
        try:
            reader = await add_tap(producer, stream, name, policy, capacity=capacity, every=every)
        except (BenchError, ActorError) as error:
            logger.debug("%s: cannot tap %s yet: %s", producer.name, stream, error)
            await trio.sleep(RETRY_SECONDS)
            continue
        try:
            async for item in reader:
                await consume(item)
        finally:
            reader.close()
        await trio.sleep(RETRY_SECONDS)
