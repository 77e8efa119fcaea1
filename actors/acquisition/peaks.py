"""Where a peak is, from a tune's points: centroid, a gaussian fit, or the maximum.

Pure numpy (no scipy: the daemon does not take a 40 MB dependency for a 4-parameter fit). The
fit is Levenberg-Marquardt on ``background + amplitude·exp(-4 ln2 (x-centre)²/fwhm²)`` started
from the centroid's estimates, so it converges in a few iterations on anything peak-shaped and
says so when it does not.

Error handling: nothing raises; a :class:`Peak` with ``found=False`` says why (too few points,
a flat signal, a fit that did not converge or put the centre outside the scanned range).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FOUR_LN2 = 4.0 * math.log(2.0)
Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Peak:
    found: bool
    centre: float = math.nan
    fwhm: float = math.nan
    height: float = math.nan  # above the background
    background: float = math.nan
    reason: str = ""  # why not found

    def describe(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "centre": self.centre,
            "fwhm": self.fwhm,
            "height": self.height,
            "background": self.background,
            "reason": self.reason,
        }


def _clean(x: Sequence[float], y: Sequence[float]) -> tuple[Array, Array]:
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    order = np.argsort(xs[keep], kind="stable")
    return xs[keep][order], ys[keep][order]


def _half_width(xs: Array, ys: Array, background: float, top: int) -> float:
    """FWHM from the half-maximum crossings on each side of the top (linear interpolation)."""
    half = background + (ys[top] - background) / 2.0
    left = right = math.nan
    for i in range(top, 0, -1):
        if ys[i - 1] <= half <= ys[i]:
            span = ys[i] - ys[i - 1]
            left = xs[i - 1] + (xs[i] - xs[i - 1]) * ((half - ys[i - 1]) / span if span else 0.5)
            break
    for i in range(top, len(xs) - 1):
        if ys[i + 1] <= half <= ys[i]:
            span = ys[i] - ys[i + 1]
            right = xs[i] + (xs[i + 1] - xs[i]) * ((ys[i] - half) / span if span else 0.5)
            break
    if math.isnan(left) and math.isnan(right):
        return math.nan
    if math.isnan(left):
        return float(2.0 * (right - xs[top]))
    if math.isnan(right):
        return float(2.0 * (xs[top] - left))
    return float(right - left)


def maximum(x: Sequence[float], y: Sequence[float]) -> Peak:
    xs, ys = _clean(x, y)
    if len(xs) < 1:
        return Peak(False, reason="no valid readings")
    top = int(np.argmax(ys))
    background = float(np.min(ys))
    return Peak(
        True,
        float(xs[top]),
        _half_width(xs, ys, background, top),
        float(ys[top] - background),
        background,
    )


def centroid(x: Sequence[float], y: Sequence[float]) -> Peak:
    """The signal-weighted mean position of the points above half maximum (background: the
    lowest reading): the noise floor away from the peak does not pull the centre."""
    xs, ys = _clean(x, y)
    if len(xs) < 3:
        return Peak(False, reason=f"{len(xs)} valid readings; a centroid needs at least 3")
    background = float(np.min(ys))
    top = int(np.argmax(ys))
    height = float(ys[top] - background)
    if not height > 0:
        return Peak(False, reason="the signal is flat: no peak")
    signal = ys - background
    above = signal >= height / 2.0
    weights = signal[above]
    centre = float(np.sum(xs[above] * weights) / np.sum(weights))
    return Peak(True, centre, _half_width(xs, ys, background, top), height, background)


def gaussian(x: Sequence[float], y: Sequence[float], *, iterations: int = 100) -> Peak:
    """A least-squares gaussian + constant background (Levenberg-Marquardt)."""
    xs, ys = _clean(x, y)
    if len(xs) < 5:
        return Peak(False, reason=f"{len(xs)} valid readings; a fit needs at least 5")
    start = centroid(xs.tolist(), ys.tolist())
    if not start.found:
        return start
    span = float(xs[-1] - xs[0])
    fwhm = start.fwhm if math.isfinite(start.fwhm) and start.fwhm > 0 else span / 4 or 1.0
    params = np.array([start.background, start.height, start.centre, fwhm])
    damping = 1e-3
    cost = _cost(params, xs, ys)
    converged = False
    for _ in range(iterations):
        residual, jacobian = _model(params, xs, ys)
        normal = jacobian.T @ jacobian
        gradient = jacobian.T @ residual
        try:
            step = np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-12), -gradient)
        except np.linalg.LinAlgError:
            break
        trial = params + step
        trial_cost = _cost(trial, xs, ys)
        if trial_cost < cost:
            small = np.all(np.abs(step) <= 1e-9 * (np.abs(params) + 1e-12))
            params, damping = trial, damping / 3
            if small or cost - trial_cost <= 1e-12 * cost:
                converged = True
                cost = trial_cost
                break
            cost = trial_cost
        else:
            damping *= 4
            if damping > 1e12:
                converged = True  # no step improves it: at the minimum
                break
    background, height, centre, width = (float(v) for v in params)
    width = abs(width)
    if not converged or not all(map(math.isfinite, (background, height, centre, width))):
        return Peak(False, reason="the gaussian fit did not converge")
    if height <= 0:
        return Peak(False, reason="the gaussian fit found a dip, not a peak")
    if not xs[0] <= centre <= xs[-1]:
        return Peak(
            False,
            reason=f"the fitted centre {centre:g} is outside the scanned range"
            f" {xs[0]:g} … {xs[-1]:g}",
        )
    return Peak(True, centre, width, height, background)


def _model(params: Array, xs: Array, ys: Array) -> tuple[Array, Array]:
    background, height, centre, width = params
    width = width if abs(width) > 1e-300 else 1e-300
    offset = xs - centre
    shape = np.exp(-FOUR_LN2 * offset**2 / width**2)
    residual = background + height * shape - ys
    jacobian = np.empty((len(xs), 4))
    jacobian[:, 0] = 1.0
    jacobian[:, 1] = shape
    jacobian[:, 2] = height * shape * 2 * FOUR_LN2 * offset / width**2
    jacobian[:, 3] = height * shape * 2 * FOUR_LN2 * offset**2 / width**3
    return residual, jacobian


def _cost(params: Array, xs: Array, ys: Array) -> float:
    residual, _ = _model(params, xs, ys)
    return float(residual @ residual)


METHODS = {"centroid": centroid, "gaussian": gaussian, "maximum": maximum}


def find_peak(method: str, x: Sequence[float], y: Sequence[float]) -> Peak:
    return METHODS[method](x, y)
