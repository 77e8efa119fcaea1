"""Suspender conditions as data: thresholds with hysteresis, NaN, equality on enums and flags."""

from __future__ import annotations

import enum
import math

from actors.acquisition import Condition, Suspender


class Filter(enum.Enum):
    FAST = "fast"


def test_below_trips_under_the_threshold_and_recovers_at_the_resume_level() -> None:
    low = Suspender("power_meter", Condition.BELOW, 5e-7, resume=8e-7)
    assert not low.trips(1e-6, tripped=False)
    assert low.trips(1e-8, tripped=False)
    assert low.trips(6e-7, tripped=True)  # above the threshold, below the resume level: held
    assert not low.trips(6e-7, tripped=False)
    assert not low.trips(9e-7, tripped=True)
    assert low.trips(math.nan, tripped=False)  # no valid reading is no reason to go on
    assert low.label == "power_meter below 5e-07 (resumes at 8e-07)"
    high = Suspender("camera.temperature", Condition.ABOVE, -10.0, resume=-15.0)
    assert high.trips(-5.0, tripped=False) and high.trips(-12.0, tripped=True)
    assert not high.trips(-16.0, tripped=True)


def test_equals_compares_flags_and_enum_values() -> None:
    closed = Suspender("maitai.shutter", Condition.EQUALS, False)
    assert closed.trips(False, tripped=False) and not closed.trips(True, tripped=True)
    fast = Suspender("power_meter.filter", Condition.NOT_EQUALS, "fast")
    assert not fast.trips(Filter.FAST, tripped=False)
    assert fast.trips("slow", tripped=False)
    assert closed.label == "maitai.shutter equals false"


def test_problems_name_the_field() -> None:
    bad = Suspender("pm", Condition.BELOW, 1e-6, resume=1e-7, settle=-1, poll=0)
    fields = [p.field for p in bad.problems("suspenders[0]")]
    assert fields == ["suspenders[0].resume", "suspenders[0].settle", "suspenders[0].poll"]
    assert Suspender("x", Condition.DEGRADED).problems("s") == []
