"""Where the live plot of a running scan gets its points: one interface, so the acquisition
layer's plan events can replace today's source without touching the panel.

Today (:class:`StatusPoints`): the Scan service's status stream says how many points are done
and the current point's axis positions, but not the values recorded at each point. So each
time ``points_done`` advances, the point is plotted at the status's positions with the newest
reading the GUI itself has of each read device (``StreamValues`` at 20 per second). That is a
*live impression* of the scan: the values written to the run file are the daemon's own
readings at each point, and a point the latest-only status stream skipped is not plotted.
When the acquisition layer's event stream lands (one event per point, with the values
recorded), an ``EventPoints`` source will plot exactly what is recorded, point by point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from client import AsyncBench, Reading, ScanStatus

from .connection import Connection, Watch

READ_INTERVAL = 0.05


@dataclass(frozen=True, slots=True)
class ScanPoint:
    index: int  # 1-based: the point just completed
    positions: dict[str, float]
    values: dict[str, float] = field(default_factory=dict)


class PointSource(Protocol):
    """Follows one scan and calls ``on_point`` for each completed point (Qt thread), and
    ``on_status`` with each status; ``stop()`` ends it."""

    def start(
        self,
        connection: Connection,
        scan_id: str,
        read: tuple[str, ...],
        on_point: Callable[[ScanPoint], None],
        on_status: Callable[[ScanStatus], None],
    ) -> None: ...

    def stop(self) -> None: ...


class StatusPoints:
    """Points from the Scan status stream plus the GUI's own readings (see the module doc)."""

    def __init__(self) -> None:
        self._watches: list[Watch] = []
        self._latest: dict[str, float] = {}
        self._done = 0

    def start(
        self,
        connection: Connection,
        scan_id: str,
        read: tuple[str, ...],
        on_point: Callable[[ScanPoint], None],
        on_status: Callable[[ScanStatus], None],
    ) -> None:
        self.stop()
        self._done = 0

        def reading(value: Reading) -> None:
            self._latest[value.device] = value.value

        def status(update: ScanStatus) -> None:
            if update.points_done > self._done and update.positions:
                self._done = update.points_done
                on_point(ScanPoint(update.points_done, dict(update.positions), dict(self._latest)))
            on_status(update)

        for device in read:

            def stream(bench: AsyncBench, device: str = device) -> object:
                return bench.stream_values(device, READ_INTERVAL)

            self._watches.append(connection.watch(stream, reading, latest=True))  # type: ignore[arg-type]
        self._watches.append(
            connection.watch(lambda b: b.stream_scan(scan_id), status, latest=True, reopen=False)
        )

    def stop(self) -> None:
        for watch in self._watches:
            watch.cancel()
        self._watches.clear()
        self._latest.clear()
