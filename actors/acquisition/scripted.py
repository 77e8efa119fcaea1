"""Plans for scripts: builders that return plan descriptions (dicts, as Starlark holds them),
and :func:`run_plan`, which hands a plan to the executor and follows it for a script.

A script builds plans (``p = grid([...], [...], read=["power_meter"])``) and runs them
(``run_plan(p)``); it never drives the points itself. The builders check their arguments at
once (a typo fails at the builder's line), through :func:`~.described.plan_from_description`,
the same path ``run_plan`` takes. :func:`run_plan` relays the script's pause, resume and stop
to the plan, reports the plan's progress to the execution, and aborts the plan if the script is
aborted while it waits.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from runtime import ActorError, ActorSystem, BenchError

from .described import plan_from_description
from .executor import (
    EXECUTOR_NAME,
    AbortPlan,
    CreatePlan,
    PausePlan,
    PlanState,
    PlanStatus,
    ResumePlan,
    StopPlan,
    WatchPlan,
)
from .plans import Plan

OPTIONS = (
    "read",
    "frames",
    "camera",
    "settle",
    "dwell",
    "name",
    "metadata",
    "parameters",
    "suspenders",
    "bench_suspenders",
    "monitor",
    "live",
    "compression",
)


ABORT_WAIT = 30.0  # s an aborted script waits for its plan's run to be closed


class ScriptPlanError(Exception):
    """A builder's arguments or a plan description are wrong (the message says which)."""


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ScriptPlanError(f"unknown option {unknown[0]!r}; options: {', '.join(OPTIONS)}")
    found = dict(options)
    if isinstance(found.get("read"), str):
        found["read"] = [found["read"]]
    return found


def _checked(description: dict[str, Any]) -> dict[str, Any]:
    try:
        plan_from_description(description)
    except BenchError as error:  # PlanRejected: every problem, as the validator says them
        raise ScriptPlanError(str(error)) from None
    return description


def count(
    num: int = 1, *, interval: float = 0.0, duration: float = 0.0, **options: Any
) -> dict[str, Any]:
    return _checked(
        {
            "kind": "count",
            "num": num,
            "interval": interval,
            "duration": duration,
            **_options(options),
        }
    )


def line(
    axis: str | Sequence[Sequence[Any]],
    start: float | None = None,
    stop: float | None = None,
    points: int = 0,
    *,
    relative: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """``line(axis, start, stop, points)`` or ``line([[a, start, stop], [b, …]], points=n)``."""
    if isinstance(axis, str):
        spans = [{"axis": axis, "start": start, "stop": stop}]
    else:
        spans = [_span(item) for item in axis]
    return _checked(
        {"kind": "line", "axes": spans, "points": points, "relative": relative, **_options(options)}
    )


def _span(item: Any) -> dict[str, Any]:
    if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 3:
        raise ScriptPlanError(f"a line's axis is [axis, start, stop], got {item!r:.60}")
    return {"axis": item[0], "start": item[1], "stop": item[2]}


def list_scan(
    positions: Mapping[str, Sequence[float]], *, relative: bool = False, **options: Any
) -> dict[str, Any]:
    if not isinstance(positions, Mapping):
        raise ScriptPlanError("list_scan takes {axis: [positions], …}")
    axes = [{"axis": a, "positions": list(p)} for a, p in positions.items()]
    return _checked({"kind": "list", "axes": axes, "relative": relative, **_options(options)})


def grid(*axes: Sequence[Any], relative: bool = False, **options: Any) -> dict[str, Any]:
    """``grid([axis, start, stop, points], [axis, start, stop, points, snake], …)``, the first
    axis slowest."""
    dims = []
    for item in axes:
        if not isinstance(item, Sequence) or isinstance(item, str) or len(item) not in (4, 5):
            raise ScriptPlanError(
                f"a grid axis is [axis, start, stop, points] or [..., snake], got {item!r:.60}"
            )
        dims.append(
            {
                "axis": item[0],
                "start": item[1],
                "stop": item[2],
                "points": item[3],
                "snake": bool(item[4]) if len(item) == 5 else False,
            }
        )
    return _checked({"kind": "grid", "axes": dims, "relative": relative, **_options(options)})


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
) -> dict[str, Any]:
    return _checked(
        {
            "kind": "adaptive",
            "axis": axis,
            "start": start,
            "stop": stop,
            "detector": detector,
            "target_delta": target_delta,
            "min_step": min_step,
            "max_step": max_step,
            "max_points": max_points,
            "relative": relative,
            **_options(options),
        }
    )


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
) -> dict[str, Any]:
    return _checked(
        {
            "kind": "tune",
            "axis": axis,
            "start": start,
            "stop": stop,
            "points": points,
            "detector": detector,
            "method": method,
            "relative": relative,
            "move": move,
            **_options(options),
        }
    )


def suspender(
    signal: str,
    *,
    below: float | None = None,
    above: float | None = None,
    equals: Any = None,
    not_equals: Any = None,
    degraded: bool = False,
    resume: float | None = None,
    settle: float = 0.0,
    poll: float = 0.5,
) -> dict[str, Any]:
    given = [
        (c, v)
        for c, v in (
            ("below", below),
            ("above", above),
            ("equals", equals),
            ("not_equals", not_equals),
        )
        if v is not None
    ]
    if degraded:
        given.append(("degraded", 0.0))
    if len(given) != 1:
        raise ScriptPlanError("a suspender takes one of below, above, equals, not_equals, degraded")
    condition, threshold = given[0]
    return {
        "signal": signal,
        "condition": condition,
        "threshold": threshold,
        "resume": resume,
        "settle": settle,
        "poll": poll,
    }


BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "count": count,
    "line": line,
    "list_scan": list_scan,
    "grid": grid,
    "adaptive": adaptive,
    "tune": tune,
    "suspender": suspender,
}


# -- running a plan for a script ------------------------------------------------------------


@dataclass
class Control:
    """What the script's execution says about the plan it waits for."""

    paused: Callable[[], bool]  # the execution is paused
    stop_reason: Callable[[], str | None]  # a graceful stop was asked for
    changed: Callable[[], Awaitable[None]]  # returns at the next pause / resume / stop
    report: Callable[[PlanStatus], None]  # the plan's status, on each change


def plan_of(description: Mapping[str, Any]) -> Plan:
    try:
        return plan_from_description(description)
    except BenchError as error:
        raise ScriptPlanError(str(error)) from None


async def run_plan(system: ActorSystem, plan: Plan, *, origin: str, control: Control) -> PlanStatus:
    """Create and start ``plan`` and wait until it ends, relaying the script's pause, resume
    and stop; if the wait is cancelled (the script aborted), the plan is aborted too.

    Error handling: PlanRejected (every problem) before anything moves; the executor's other
    refusals (latched e-stop) as they come.
    """
    executor = system.ref(EXECUTOR_NAME)
    status: PlanStatus = await executor.ask(CreatePlan(plan, origin, start=True), timeout=60.0)
    plan_id = status.id
    control.report(status)
    finished = False
    try:
        subscription = await executor.ask(WatchPlan(plan_id))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_relay, system, plan_id, control)
            async for sample in subscription:
                status = sample.value
                control.report(status)
                if status.state.finished:
                    finished = True
                    nursery.cancel_scope.cancel()
                    break
        if not finished:
            raise BenchError("the plan executor restarted while the plan ran")
        return status
    finally:
        if not finished:  # aborted while waiting: abort the plan, and let it close its run
            with trio.CancelScope(shield=True), contextlib.suppress(BenchError, ActorError):
                reason = control.stop_reason() or "the script was interrupted"
                await executor.ask(AbortPlan(plan_id, reason), timeout=5.0)
                with trio.move_on_after(ABORT_WAIT):
                    watch = await executor.ask(WatchPlan(plan_id))
                    async for sample in watch:
                        if sample.value.state.finished:
                            break


async def _relay(system: ActorSystem, plan_id: str, control: Control) -> None:
    executor = system.ref(EXECUTOR_NAME)
    paused = False
    stopped = False
    while True:
        with contextlib.suppress(BenchError, ActorError):  # the plan may just have ended
            reason = control.stop_reason()
            if reason is not None and not stopped:
                stopped = True
                await executor.ask(StopPlan(plan_id, reason))
            wanted = control.paused()
            if wanted != paused:
                paused = wanted
                await executor.ask(PausePlan(plan_id) if wanted else ResumePlan(plan_id))
        await control.changed()


def summary(status: PlanStatus) -> dict[str, Any]:
    """What ``run_plan`` returns to a script: plain values only."""
    result = {
        k: v for k, v in status.result.items() if not (isinstance(v, float) and math.isnan(v))
    }
    return {
        "id": status.id,
        "state": status.state.value,
        "points": status.points_done,
        "path": status.run_path,
        "error": status.error,
        "result": result,
        "suspensions": len(status.suspensions),
    }


FAILED = (PlanState.ERROR, PlanState.ABORTED)
