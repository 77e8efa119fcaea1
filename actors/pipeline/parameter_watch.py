"""A run's parameter changes: every change of every watched parameter, with skips counted.

Why a piece of its own: a run file must say when each setting changed (a wavelength tuned mid-
scan, an exposure changed in live view). Observables deliver the latest value to a slow
subscriber; a version number that jumps to a different value means changes came faster than
they were observed — those are counted as skipped, never hidden. A driver reports some values
at every poll whether they changed or not (the power meter's range, ~1000 times a second on
the simulated bench): a report of the value already recorded is not a change and is not written
(the run's start value is in the manifest and in the first row). A device that restarts is
watched again (its new instance numbers its versions afresh).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import trio

from runtime import (
    ActorError,
    ActorSystem,
    BenchError,
    ObservableClosed,
    Sample,
    Subscription,
    WatchParameter,
)

from .nexus_file import ChannelSpec
from .run_writer import ChannelRow

REWATCH_DELAY = 0.5
_NOTHING = object()


def _same(value: Any, last: Any) -> bool:
    """The value already recorded (NaN equal to NaN: a reading that stays NaN is no change)."""
    if last is _NOTHING or type(value) is not type(last):
        return False
    if isinstance(value, float) and math.isnan(value) and math.isnan(last):
        return True
    return bool(value == last)


class ParameterWatch:
    def __init__(self, system: ActorSystem, channels: Iterable[ChannelSpec]) -> None:
        self.system = system
        self.channels = tuple(channels)
        self.changes = 0
        self.skipped = 0
        self._rows: list[ChannelRow] = []

    async def run(self) -> None:
        """Watch every channel until cancelled."""
        async with trio.open_nursery() as nursery:
            for spec in self.channels:
                nursery.start_soon(self._watch, spec)

    def take(self) -> list[ChannelRow]:
        rows, self._rows = self._rows, []
        return rows

    async def _watch(self, spec: ChannelSpec) -> None:
        ref = self.system.ref(spec.device)
        last_version = -1
        last_value: Any = _NOTHING
        while True:
            try:
                subscription: Subscription[Any] = await ref.ask(WatchParameter(spec.name))
            except (BenchError, ActorError):
                await trio.sleep(REWATCH_DELAY)
                continue
            try:
                async for sample in subscription:
                    if _same(sample.value, last_value):
                        last_version = sample.version  # reported again, not changed
                        continue
                    self._note(spec, sample, last_version)
                    last_version, last_value = sample.version, sample.value
            except ObservableClosed:
                pass
            last_version = -1  # a new instance numbers its versions afresh
            await trio.sleep(REWATCH_DELAY)

    def _note(self, spec: ChannelSpec, sample: Sample[Any], last_version: int) -> None:
        if last_version >= 0 and sample.version > last_version + 1:
            self.skipped += sample.version - last_version - 1
        self.changes += 1
        self._rows.append((spec, sample.timestamp, sample.value))
