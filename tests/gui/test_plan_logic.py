"""The GUI's plan and scan logic that needs no daemon: where a problem goes, how a refusal's
latch is read, which cell of a grid a point is (against the executor's own order), the
columns built from events, the CSV."""

from __future__ import annotations

import csv
import itertools
import math
import time
from pathlib import Path

import pyarrow as pa
import pytest

from actors.acquisition.plans import Grid, GridAxis
from client import ScanEvent
from gui import latch
from gui.plan_form import match_field, parse_metadata, plain_value
from gui.scan_events import ScanData
from gui.scan_table import export_csv


def test_a_problem_goes_to_the_field_that_owns_it_at_a_boundary() -> None:
    keys = ["path.axes", "path.axes[0]", "path.axes[1]", "read", "path.points", "bench suspender"]
    assert match_field("path.axes[0]", keys) == "path.axes[0]"
    assert match_field("path.axes[1].stop", keys) == "path.axes[1]"
    assert match_field("path.axes[3]", keys) == "path.axes"  # a row the form does not have
    assert match_field("read[2]", keys) == "read"
    assert match_field("bench suspender power_meter below 5e-07.signal", keys) == "bench suspender"
    assert match_field("path.pointsy", keys) is None  # a prefix, not a field of it
    assert match_field("readings", keys) is None
    assert match_field("", keys) is None


def test_typed_values_and_metadata() -> None:
    assert [plain_value(t) for t in ("false", "On", "3", "2.5", "1e-7", "x")] == [
        False, True, 3, 2.5, 1e-7, "x",
    ]  # fmt: skip
    assert parse_metadata("a = 1\n# note\n\nb=two") == {"a": "1", "b": "two"}
    with pytest.raises(ValueError, match="line 2: expected key=value"):
        parse_metadata("a=1\nnonsense")


def test_a_refusal_says_since_when_and_by_whom() -> None:
    now = time.mktime((2026, 3, 4, 14, 5, 0, 0, 0, -1))
    text = (
        "esp300.axis1: MoveAbsolute is refused: e-stop latched since 14:02:05 by alice"
        " (operator) from 10.0.0.5 (beam dump (west) open); reset the emergency stop first"
    )
    known = latch.from_refusal(text, "beam dump (west) open", now)
    assert known is not None
    assert known.by == "alice (operator) from 10.0.0.5" and known.reason == "beam dump (west) open"
    assert known.since == now - 175
    guessed = latch.from_refusal(text.replace(" (west)", ""), now=now)
    assert guessed is not None and guessed.reason == "beam dump open"
    assert guessed.by == "alice (operator) from 10.0.0.5"
    before_midnight = latch.from_refusal(text.replace("14:02:05", "23:59:00"), now=now)
    assert before_midnight is not None and 0 < now - before_midnight.since < 86400  # yesterday
    assert latch.from_refusal("move refused: out of range", now=now) is None
    merged = latch.LatchInfo(True, "beam dump open").merged(known)
    assert merged.by.startswith("alice") and merged.since == known.since
    shown = latch.describe(merged, now)
    assert shown.startswith("since 14:02:05 (3 min ago) by alice (operator) from 10.0.0.5")
    assert latch.describe(latch.LatchInfo(True, "x"), now).startswith(
        "since before this GUI connected by whom not reported yet"
    )
    assert latch.short(merged).startswith("LATCHED · 14:02:05 · alice · beam dump")


@pytest.mark.parametrize("snakes", list(itertools.product([False, True], repeat=2)))
def test_a_grid_points_cell_follows_the_executors_order(snakes: tuple[bool, bool]) -> None:
    dims = (
        GridAxis("z", 0.0, 2.0, 3),
        GridAxis("y", 0.0, 3.0, 4, snakes[0]),
        GridAxis("x", 10.0, 14.0, 5, snakes[1]),
    )
    grid = Grid(dims)
    data = ScanData("p1", kind="grid", plan=grid.describe())
    for index in range(grid.total()):
        targets = grid.point(index, (0.0, 0.0, 0.0))
        steps = [
            (t - a.start) / ((a.stop - a.start) / (a.points - 1))
            for t, a in zip(targets, dims, strict=True)
        ]
        assert data.grid_cell(index) == tuple(round(s) for s in steps)
    assert data.is_image and ScanData("p2", kind="line").is_image is False


def test_scan_data_keeps_columns_aligned_and_marks_in_place() -> None:
    def event(seq: int, kind: str, **fields: object) -> ScanEvent:
        return ScanEvent(scan_id="p1", seq=seq, time=100.0 + seq, kind=kind, **fields)  # type: ignore[arg-type]

    data = ScanData("p1")
    plan = {"kind": "tune", "axis": "stage", "detector": "peak", "read": ["power_meter"]}
    data.add([
        event(0, "started", plan=plan, columns=["point", "time", "stage", "power_meter", "peak"],
              units={"stage": "mm"}, points_total=3),
        event(1, "point", index=0, positions={"stage": 0.0}, readings={"peak": 1.0}, attempts=1),
        event(2, "suspended", suspender="power_meter below 5e-07", value="1e-9", index=1),
        event(3, "resumed", suspender="power_meter below 5e-07", seconds=2.5),
        event(4, "point", index=1, positions={"stage": 0.5},
              readings={"peak": 3.0, "power_meter": 1e-6}, attempts=2),
        event(5, "ended", state="completed", reason="scan completed",
              result={"found": True, "centre": 0.5}),
    ])  # fmt: skip
    data.add([event(4, "point", index=1, positions={"stage": 0.5}, readings={"peak": 3.0})])
    assert data.kind == "tune" and data.axes == ["stage"] and data.detector == "peak"
    assert data.detectors == ["peak", "power_meter"]
    assert list(data.x()) == [0.0, 0.5] and list(data.readings["peak"]) == [1.0, 3.0]
    assert math.isnan(data.readings["power_meter"][0]) and data.readings["power_meter"][1] == 1e-6
    assert list(data.attempts) == [1, 2]
    assert [(m.kind, m.after) for m in data.marks] == [("suspended", 1), ("resumed", 1)]
    assert data.ended is not None and data.ended.result["centre"] == 0.5
    count = ScanData("p2")
    count.add([event(0, "started", plan={"kind": "count", "num": 2}),
               event(1, "point", index=0, readings={"peak": 1.0}),
               event(2, "point", index=1, readings={"peak": 2.0})])  # fmt: skip
    assert count.x_axis == "time" and list(count.x()) == [0.0, 1.0]


def test_export_csv_writes_units_in_the_header_and_never_half_a_file(tmp_path: Path) -> None:
    schema = pa.schema([
        pa.field("point", pa.int64()),
        pa.field("stage", pa.float64(), metadata={"units": "mm"}),
        pa.field("peak", pa.float64(), metadata={"units": "V"}),
    ])  # fmt: skip
    table = pa.table({"point": [0, 1], "stage": [0.1, 0.2], "peak": [1.5, float("nan")]},
                     schema=schema)  # fmt: skip
    target = export_csv(table, tmp_path / "scan.csv")
    with target.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["point", "stage [mm]", "peak [V]"]
    assert rows[1] == ["0", "0.1", "1.5"] and len(rows) == 3
    with pytest.raises(OSError):
        export_csv(table, tmp_path / "no-such-folder" / "scan.csv")
    assert not list((tmp_path).glob("**/*.partial"))
