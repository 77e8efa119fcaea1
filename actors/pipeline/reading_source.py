"""A run's scalar readings: a lossless tap on every Readable, followed across restarts.

Why a piece of its own: the readings around a run — the power meter while frames are taken,
a synthetic signal in a scan — are recorded the same way by whoever writes the run. Readings
are taken in batches at each flush (they are small and many: tens of thousands a second), and
a Readable that restarts has its old tap's losses counted once and its new instance tapped.

Error handling: a Readable that cannot be tapped at the start is left out with a warning (the
run goes on without it, and its manifest says what the device was); one that is restarting at
a flush is tapped again at the next flush.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from runtime import ActorError, ActorSystem, BenchError

from ..capabilities import Reading
from .subscription import add_tap, remove_tap
from .taps import TapPolicy, TapReader

logger = logging.getLogger(__name__)

CAPACITY = 200_000  # readings a tap holds between two flushes (seconds at the fastest rates)


class ReadingSource:
    def __init__(self, system: ActorSystem, devices: Iterable[str], *, tap: str) -> None:
        self.system = system
        self.devices = tuple(devices)
        self.tap_name = tap
        self.recorded = 0  # taken from the taps
        self._taps: dict[str, TapReader[Reading]] = {}
        self._lost_before: dict[str, int] = {}

    async def attach(self) -> None:
        for device in self.devices:
            try:
                self._taps[device] = await self._take_tap(device)
            except (BenchError, ActorError) as error:
                logger.warning("%s: not recording %s readings: %s", self.tap_name, device, error)

    async def _take_tap(self, device: str) -> TapReader[Reading]:
        reader: TapReader[Reading] = await add_tap(
            self.system.ref(device),
            "readings",
            self.tap_name,
            TapPolicy.LOSSLESS,
            capacity=CAPACITY,
        )
        return reader

    def take(self) -> dict[str, list[Reading]]:
        """Every reading queued now, by device."""
        taken: dict[str, list[Reading]] = {}
        for device, tap in self._taps.items():
            taken[device] = tap.receive_batch(CAPACITY)
            self.recorded += len(taken[device])
        return taken

    async def follow_restarts(self) -> None:
        """A Readable that restarted closed its tap: count its losses and tap the new one."""
        for device, tap in list(self._taps.items()):
            statistics = tap.statistics()
            if not tap.closed or statistics.pending:
                continue
            try:
                reader = await self._take_tap(device)
            except (BenchError, ActorError):
                continue  # still restarting: try again at the next flush
            self._lost_before[device] = self._lost_before.get(device, 0) + statistics.dropped
            self._taps[device] = reader
            logger.info("%s: following %s's readings again", self.tap_name, device)

    @property
    def lost(self) -> int:
        now = sum(t.statistics().dropped for t in self._taps.values())
        return now + sum(self._lost_before.values())

    async def release(self) -> None:
        """Detach every tap; what is queued stays to be taken."""
        for device, tap in self._taps.items():
            tap.detach()
            await remove_tap(self.system.ref(device), "readings", self.tap_name)
