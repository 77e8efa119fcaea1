"""A run's scan table: one row per point (``/entry/scan/<column>/{time,value}``, each column
an NXlog whose group name is the column's NeXus name: ``esp300.axis1`` -> ``esp300_axis1``).

Why declared up front: SWMR allows no new dataset once a run has started, so the columns are
fixed when the run's file is made; rows then arrive one per point and are written with the
next flush, like parameter changes.

Error handling: a row naming an undeclared column is refused with the declared ones
(ValidationError) and nothing of it is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from runtime import ValidationError

from .nexus_file import ChannelKind, ChannelSpec
from .run_writer import ChannelRow

DEVICE = "scan"  # the channels' device name: /entry/scan/<column>


class ScanTable:
    def __init__(self, columns: Iterable[str], units: Mapping[str, str] | None = None) -> None:
        """``units``: each column's unit (see :func:`.run_setup.scan_units`)."""
        self.columns = tuple(columns)
        known = units or {}
        self.specs = tuple(
            ChannelSpec(DEVICE, c, ChannelKind.SCAN, "float", known.get(c, ""))
            for c in self.columns
        )
        self.points = 0
        self._rows: list[ChannelRow] = []

    def add(self, values: Mapping[str, float], timestamp: float) -> int:
        """Queue one row (a column left out is NaN); the rows recorded so far."""
        unknown = set(values) - set(self.columns)
        if unknown:
            declared = ", ".join(self.columns) or "none"
            raise ValidationError(
                f"scan columns {sorted(unknown)[:10]} were not declared when the run started;"
                f" declared: {declared}"
            )
        for spec in self.specs:
            self._rows.append((spec, timestamp, float(values.get(spec.name, math.nan))))
        self.points += 1
        return self.points

    def take(self) -> list[ChannelRow]:
        rows, self._rows = self._rows, []
        return rows
