"""Where a tune puts the axis: centroid, gaussian fit, maximum — on noisy peaks of both shapes."""

from __future__ import annotations

import random

import pytest

from actors.acquisition import peaks
from actors.instruments.synthetic import PeakShape, peak_value


def scan(shape: PeakShape, centre: float, noise: float) -> tuple[list[float], list[float]]:
    rng = random.Random(3)
    xs = [-5 + 0.2 * i for i in range(51)]
    ys = [
        peak_value(shape, x, centre=centre, width=1.2, amplitude=40, background=3)
        + rng.gauss(0, noise)
        for x in xs
    ]
    return xs, ys


@pytest.mark.parametrize("shape", list(PeakShape))
def test_centroid_and_fit_find_the_centre_through_noise(shape: PeakShape) -> None:
    xs, ys = scan(shape, 0.73, noise=0.4)
    centroid = peaks.centroid(xs, ys)
    assert centroid.found and centroid.centre == pytest.approx(0.73, abs=0.05)
    assert centroid.fwhm == pytest.approx(1.2, rel=0.15)
    fit = peaks.gaussian(xs, ys)
    assert fit.found and fit.centre == pytest.approx(0.73, abs=0.03)
    if shape is PeakShape.GAUSSIAN:
        assert fit.fwhm == pytest.approx(1.2, rel=0.05)
        assert fit.background == pytest.approx(3, abs=0.3)
    assert peaks.maximum(xs, ys).centre == pytest.approx(0.73, abs=0.2)


def test_no_peak_is_said_not_guessed() -> None:
    flat = peaks.centroid([0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0])
    assert not flat.found and "flat" in flat.reason
    few = peaks.gaussian([0, 1], [0, 1])
    assert not few.found and "at least 5" in few.reason
    xs = [float(i) for i in range(10)]
    dip = peaks.gaussian(xs, [5 - 4 * (x == 5) for x in xs])
    assert not dip.found
    edge = peaks.gaussian(xs, [float(x) for x in xs])  # a ramp: the "peak" is off the range
    assert not edge.found
