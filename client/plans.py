"""Plans for the Scan service, built in Python: ``plans.line("esp300.axis1", 0, 5, 51,
read=["power_meter"])`` gives the ``benchd.v1.Plan`` message the daemon checks and runs.

The names follow Bluesky's plan library (count, scan → line, rel_scan → ``relative=True``,
list_scan, grid_scan → grid, adaptive_scan → adaptive, tune). Every function takes the same
keyword options for what happens at each point:

``read`` (Readable devices read at each point), ``frames`` (camera frames per point),
``camera`` ("": the bench's first), ``settle`` and ``dwell`` (seconds), ``name`` (the run's
name), ``metadata`` (a dict for the run's manifest), ``parameters`` (``{"maitai.wavelength":
800}``: set before the first point), ``suspenders`` (:func:`suspender` values), and
``bench_suspenders=False`` to run without the bench file's default suspenders.

Nothing is checked here: the daemon's validator reports every problem at once
(``bench.validate_plan(plan)``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from benchd.v1 import plan_pb2

from ._types import to_value

Axis = tuple[str, float, float, int] | tuple[str, float, float, int, bool]

METHODS = {
    "centroid": plan_pb2.TUNE_METHOD_CENTROID,
    "gaussian": plan_pb2.TUNE_METHOD_GAUSSIAN,
    "fit": plan_pb2.TUNE_METHOD_GAUSSIAN,
    "maximum": plan_pb2.TUNE_METHOD_MAXIMUM,
}


def suspender(
    signal: str,
    *,
    below: float | None = None,
    above: float | None = None,
    equals: bool | int | float | str | None = None,
    not_equals: bool | int | float | str | None = None,
    degraded: bool = False,
    resume: float | None = None,
    settle: float = 0.0,
    poll: float = 0.5,
) -> plan_pb2.Suspender:
    """Hold the plan while ``signal`` (a Readable, or ``device.parameter``) is below / above a
    threshold, equals / does not equal a value, or its device is degraded; it goes on ``settle``
    seconds after recovery (``resume``: the level it must get back to)."""
    given = [
        (plan_pb2.SUSPENDER_CONDITION_BELOW, below),
        (plan_pb2.SUSPENDER_CONDITION_ABOVE, above),
        (plan_pb2.SUSPENDER_CONDITION_EQUALS, equals),
        (plan_pb2.SUSPENDER_CONDITION_NOT_EQUALS, not_equals),
    ]
    chosen: list[tuple[int, bool | int | float | str | None]] = [
        (c, v) for c, v in given if v is not None
    ]
    if degraded:
        chosen.append((plan_pb2.SUSPENDER_CONDITION_DEGRADED, None))
    if len(chosen) != 1:
        raise ValueError(
            "a suspender takes exactly one of below, above, equals, not_equals, degraded"
        )
    condition, threshold = chosen[0]
    message = plan_pb2.Suspender(
        signal=signal,
        condition=condition,  # type: ignore[arg-type]
        settle=settle,
        poll=poll,
    )
    if threshold is not None:
        message.threshold.CopyFrom(to_value(threshold))
    if resume is not None:
        message.resume = resume
    return message


def _plan(
    *,
    read: Iterable[str] = (),
    frames: int = 0,
    camera: str = "",
    settle: float = 0.0,
    dwell: float = 0.0,
    name: str = "",
    metadata: Mapping[str, Any] | None = None,
    parameters: Mapping[str, bool | int | float | str] | None = None,
    suspenders: Iterable[plan_pb2.Suspender] = (),
    bench_suspenders: bool = True,
) -> plan_pb2.Plan:
    message = plan_pb2.Plan(
        read=list([read] if isinstance(read, str) else read),
        frames=frames,
        camera=camera,
        settle=settle,
        dwell=dwell,
        name=name,
        metadata_json=json.dumps(dict(metadata or {})),
        suspenders=list(suspenders),
        no_bench_suspenders=not bench_suspenders,
    )
    for key, value in (parameters or {}).items():
        message.parameters.append(plan_pb2.ParameterSetting(parameter=key, value=to_value(value)))
    return message


def count(
    num: int = 1, *, interval: float = 0.0, duration: float = 0.0, **options: Any
) -> plan_pb2.Plan:
    """``num`` points where everything is (0 with ``duration``: until it has passed), point i
    ``i * interval`` s after the first. With ``frames``, this is a recording of frames."""
    message = _plan(**options)
    message.count.CopyFrom(plan_pb2.CountPath(num=num, interval=interval, duration=duration))
    return message


def line(
    axis: str | Sequence[tuple[str, float, float]],
    start: float | None = None,
    stop: float | None = None,
    points: int = 0,
    *,
    relative: bool = False,
    **options: Any,
) -> plan_pb2.Plan:
    """``line("esp300.axis1", 0, 5, 51)``, or several axes in step:
    ``line([("esp300.axis1", 0, 5), ("esp300.axis2", 1, 2)], points=51)``."""
    if isinstance(axis, str):
        if start is None or stop is None:
            raise ValueError("line(axis, start, stop, points)")
        spans = [(axis, start, stop)]
    else:
        spans = list(axis)
    message = _plan(**options)
    message.line.CopyFrom(
        plan_pb2.LinePath(
            axes=[plan_pb2.Span(axis=a, start=b, stop=c) for a, b, c in spans],
            points=points,
            relative=relative,
        )
    )
    return message


def list_scan(
    positions: Mapping[str, Sequence[float]], *, relative: bool = False, **options: Any
) -> plan_pb2.Plan:
    """Explicit positions per axis (all of one length), the axes in step."""
    message = _plan(**options)
    message.list.CopyFrom(
        plan_pb2.ListPath(
            axes=[plan_pb2.AxisPositions(axis=a, positions=list(p)) for a, p in positions.items()],
            relative=relative,
        )
    )
    return message


def grid(*axes: Axis, relative: bool = False, **options: Any) -> plan_pb2.Plan:
    """``grid(("z", 0, 1, 3), ("y", 0, 2, 5, True), ("x", 0, 4, 9, True))``: the first axis
    slowest; a fifth item True makes that axis snake (never the first)."""
    message = _plan(**options)
    dims = []
    for item in axes:
        name, start, stop, points, *rest = item
        dims.append(
            plan_pb2.GridAxis(
                axis=name, start=start, stop=stop, points=points, snake=bool(rest and rest[0])
            )
        )
    message.grid.CopyFrom(plan_pb2.GridPath(axes=dims, relative=relative))
    return message


def adaptive(
    axis: str,
    start: float,
    stop: float,
    *,
    detector: str,
    target_delta: float,
    min_step: float,
    max_step: float,
    max_points: int = 0,
    relative: bool = False,
    **options: Any,
) -> plan_pb2.Plan:
    """Steps shrink where ``detector`` changes by more than ``target_delta`` between points
    and grow where it is flat, within ``min_step`` … ``max_step``."""
    message = _plan(**options)
    message.adaptive.CopyFrom(
        plan_pb2.AdaptivePath(
            axis=axis,
            start=start,
            stop=stop,
            detector=detector,
            target_delta=target_delta,
            min_step=min_step,
            max_step=max_step,
            max_points=max_points,
            relative=relative,
        )
    )
    return message


def tune(
    axis: str,
    start: float,
    stop: float,
    points: int,
    *,
    detector: str,
    method: str = "centroid",
    relative: bool = False,
    move: bool = True,
    **options: Any,
) -> plan_pb2.Plan:
    """A line reading ``detector``, then the peak by ``method`` (centroid, gaussian or
    maximum); with ``move`` the axis goes there. The scan's ``result`` has the peak."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: one of {', '.join(METHODS)}")
    message = _plan(**options)
    message.tune.CopyFrom(
        plan_pb2.TunePath(
            axis=axis,
            start=start,
            stop=stop,
            points=points,
            detector=detector,
            method=METHODS[method],
            relative=relative,
            stay=not move,
        )
    )
    return message


__all__ = ["adaptive", "count", "grid", "line", "list_scan", "suspender", "tune"]
