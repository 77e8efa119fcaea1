"""Plans are pure data: points by arithmetic (lazily), every problem of a plan at once."""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time

import pytest

from actors.acquisition import (
    Adaptive,
    Count,
    Grid,
    GridAxis,
    Line,
    ListScan,
    Plan,
    Span,
    Suspender,
    Tune,
    points,
)
from actors.acquisition.suspenders import Condition
from actors.instruments.synthetic import PeakShape, peak_value


def test_a_line_moves_its_axes_in_step_and_a_relative_one_is_offset() -> None:
    plan = Plan(Line((Span("x", 0, 1), Span("y", 10, 8)), 3))
    assert list(points(plan)) == [(0.0, 10.0), (0.5, 9.0), (1.0, 8.0)]
    relative = Plan(Line((Span("x", -1, 1),), 3, relative=True))
    assert list(points(relative, (5.0,))) == [(4.0,), (5.0,), (6.0,)]
    assert relative.path.extents((5.0,)) == {"x": (4.0, 6.0)}
    assert list(points(Plan(Line((Span("x", 2, 3),), 1)))) == [(2.0,)]


def test_a_3d_grid_snakes_on_any_faster_axis() -> None:
    grid = Grid(
        (
            GridAxis("a", 0, 1, 2),
            GridAxis("b", 0, 1, 2, snake=True),
            GridAxis("c", 0, 2, 3, snake=True),
        )
    )
    got = list(points(Plan(grid)))
    assert len(got) == grid.total() == 12
    # c snakes on every pass of (a, b); b snakes on every pass of a
    assert got == [
        (0, 0, 0), (0, 0, 1), (0, 0, 2),
        (0, 1, 2), (0, 1, 1), (0, 1, 0),
        (1, 1, 0), (1, 1, 1), (1, 1, 2),
        (1, 0, 2), (1, 0, 1), (1, 0, 0),
    ]  # fmt: skip
    for before, after in itertools.pairwise(got):  # a snake never flies back: one axis steps
        assert sum(1 for u, v in zip(before, after, strict=True) if u != v) == 1
    raster = list(points(Plan(Grid((GridAxis("a", 0, 1, 2), GridAxis("b", 0, 1, 2))))))
    assert raster == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_a_million_point_grid_is_never_materialised() -> None:
    grid = Grid((GridAxis("x", 0, 999, 1000), GridAxis("y", 0, 999, 1000, snake=True)))
    plan = Plan(grid)
    began = time.perf_counter()
    assert plan.total() == 1_000_000
    assert grid.point(999_999, (0.0, 0.0)) == (999.0, 0.0)  # the last row runs backwards
    assert grid.point(1000, (0.0, 0.0)) == (1.0, 999.0)
    first = list(itertools.islice(points(plan), 3))
    assert first == [(0.0, 0.0), (0.0, 1.0), (0.0, 2.0)]
    assert plan.problems() == []
    assert time.perf_counter() - began < 0.5  # arithmetic, not a list of 10^6 tuples


def test_a_list_scan_and_a_count() -> None:
    plan = Plan(ListScan(("x", "y"), ((1.0, 3.0, 2.0), (0.0, 0.5, 1.0))))
    assert list(points(plan)) == [(1.0, 0.0), (3.0, 0.5), (2.0, 1.0)]
    assert plan.path.extents((0.0, 0.0)) == {"x": (1.0, 3.0), "y": (0.0, 1.0)}
    count = Plan(Count(4, interval=0.5))
    assert list(points(count)) == [()] * 4
    assert Plan(Count(0, duration=2.0)).total() is None


def test_adaptive_steps_shrink_on_the_peak_and_grow_where_flat() -> None:
    path = Adaptive("x", -10, 10, "d", target_delta=2.0, min_step=0.02, max_step=2.0)
    cursor = path.cursor((0.0,))
    xs: list[float] = []
    readings = None
    while (target := cursor.next(readings)) is not None:
        (x,) = target
        xs.append(x)
        value = peak_value(PeakShape.GAUSSIAN, x, centre=3, width=1, amplitude=50, background=0)
        readings = {"d": value}
    steps = [b - a for a, b in itertools.pairwise(xs)]
    assert xs[0] == -10 and xs[-1] == 10
    assert all(0.02 - 1e-12 <= s <= 2.0 + 1e-12 for s in steps)
    on_peak = [s for a, s in zip(xs, steps, strict=False) if 2 <= a <= 4]
    flat = [s for a, s in zip(xs, steps, strict=False) if a <= -4]
    assert max(flat) == pytest.approx(2.0)  # grew to max_step where flat
    assert statistics.median(on_peak) < 0.1  # dense on the flanks
    assert len(xs) < path.total()
    bounded = Adaptive("x", 0, 1, "d", 1.0, 0.001, 0.01, max_points=7)
    assert len(list(points(Plan(bounded)))) == 7


def test_every_problem_of_a_plan_is_reported_at_once() -> None:
    plan = Plan(
        Grid((GridAxis("x", 0, math.inf, 0, snake=True), GridAxis("x", 0, 1, 10))),
        read=("d", "d"),
        settle=-1,
        frames=10**9,
        metadata_json="[1]",
        suspenders=(Suspender("pm", Condition.BELOW, "low"),),
    )
    problems = [str(p) for p in plan.problems()]
    assert "path.axes[0].stop: inf is not allowed; expected a finite number" in problems
    assert "path.axes[0].points: 0 is not allowed; expected 1 … 1000000" in problems
    assert any(p.startswith("path.axes[0].snake: the slowest axis") for p in problems)
    assert "path.axes: x appears twice; each axis once" in problems
    assert "read: d appears twice; each axis once" in problems
    assert any(p.startswith("settle: -1") for p in problems)
    assert any(p.startswith("frames: 1000000000") for p in problems)
    assert "metadata: must be a JSON object" in problems
    assert any(p.startswith("suspenders[0].threshold") for p in problems)
    big = Plan(Grid((GridAxis("x", 0, 1, 2000), GridAxis("y", 0, 1, 2000))))
    assert [str(p) for p in big.problems()] == [
        "path.axes: at most 1000000 points in all, got 2000 x 2000 = 4000000"
    ]
    assert Plan(Tune("x", 0, 1, 2, "d")).problems()[0].field == "path.points"


def test_a_plan_describes_itself_as_json() -> None:
    plan = Plan(
        Tune("x", -1, 1, 11, "d"),
        read=("pm",),
        metadata_json='{"sample": "A1"}',
        suspenders=(Suspender("pm", Condition.BELOW, 1e-6, resume=2e-6, settle=1.0),),
    )
    described = json.loads(json.dumps(plan.describe()))
    assert described["kind"] == "tune" and described["method"] == "centroid"
    assert described["suspenders"][0]["resume"] == 2e-6
    assert plan.detectors == ("pm", "d") and plan.metadata == {"sample": "A1"}
    assert plan.run_name == "tune"


def test_a_recording_is_a_count_with_monitors_and_its_own_problems() -> None:
    from actors.acquisition import record_plan
    from actors.pipeline.recorder import StartRun
    from runtime import ValidationError

    timed = record_plan(StartRun("timed", duration=5.0), "camera")
    assert timed.path == Count(1, duration=5.0) and timed.monitor and timed.live
    assert (timed.frames, timed.camera, timed.bench_suspenders) == (0, "camera", False)
    assert timed.recording and timed.problems() == []
    frames = record_plan(StartRun("seq", frames=30, metadata={"sample": "A"}), "camera")
    assert (frames.frames, frames.live, frames.metadata) == (30, False, {"sample": "A"})
    open_ended = record_plan(StartRun("open"), "camera")  # frames whoever takes them
    assert (open_ended.camera, open_ended.live, open_ended.path.duration) == ("camera", False, 0)
    readings = record_plan(StartRun("meter", record_frames=False, duration=1.0), "camera")
    assert (readings.camera, readings.live) == ("", False)
    with pytest.raises(ValidationError, match="record_frames"):
        record_plan(StartRun("x", frames=3, record_frames=False), "camera")
    with pytest.raises(ValidationError, match="this bench has none"):
        record_plan(StartRun("x", frames=3), None)
    with pytest.raises(ValidationError, match="at most 30 days"):
        record_plan(StartRun("x", duration=31 * 86400.0), "camera")
    # a count of nothing: one point with monitors, refused without (it would only spin)
    spin = Plan(Count(0, duration=1.0)).problems()
    assert [p.field for p in spin] == ["path.num"] and "would only spin" in spin[0].message
    many = Plan(Count(5), monitor=True).problems()
    assert [p.field for p in many] == ["path.num"] and "use num = 1" in many[0].message
    live = Plan(Count(1), frames=2, live=True).problems()
    assert [p.field for p in live] == ["live"]
    described = Plan(Count(1, duration=2.0), name="r", monitor=True, live=True, compression="none")
    from actors.acquisition.described import plan_from_description

    assert plan_from_description(described.describe()) == described
