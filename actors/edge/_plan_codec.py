"""Plans and their statuses and events <-> protobuf (plan.proto, scan.proto).

Translation only: every rule about what a plan may be lives in ``actors.acquisition`` (the plan's
own checks and the validator), so a plan from gRPC is judged exactly like one from a script.
Sizes a client controls are bounded here before any work grows with them; a message that has no
path is INVALID_ARGUMENT naming the allowed kinds.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from actors.acquisition import (
    Adaptive,
    Count,
    Ended,
    Gap,
    Grid,
    GridAxis,
    Line,
    ListScan,
    Paused,
    Plan,
    PlanCheck,
    PlanEvent,
    PlanState,
    PlanStatus,
    Point,
    Resumed,
    Setting,
    Span,
    Started,
    Suspended,
    Suspender,
    Tune,
    TuneMethod,
)
from actors.acquisition.history import described_size
from actors.acquisition.suspenders import Condition
from actors.acquisition.validator import Estimate
from benchd.v1 import common_pb2, plan_pb2, scan_pb2

from ._convert import from_value, to_value
from .errors import invalid

MAX_REPEATED = 1024  # axes, read, suspenders, parameters (the plan's own limits are lower)
MAX_POSITIONS = 1_000_000  # list positions over all axes
LISTED_PLAN_BYTES = 16 * 1024  # ListScans elides a plan larger than this (GetScan has it)

STATES = {
    PlanState.CREATED: scan_pb2.SCAN_STATE_CREATED,
    PlanState.PENDING: scan_pb2.SCAN_STATE_PENDING,
    PlanState.RUNNING: scan_pb2.SCAN_STATE_RUNNING,
    PlanState.PAUSED: scan_pb2.SCAN_STATE_PAUSED,
    PlanState.SUSPENDED: scan_pb2.SCAN_STATE_SUSPENDED,
    PlanState.COMPLETED: scan_pb2.SCAN_STATE_COMPLETED,
    PlanState.STOPPED: scan_pb2.SCAN_STATE_STOPPED,
    PlanState.ABORTED: scan_pb2.SCAN_STATE_ABORTED,
    PlanState.ERROR: scan_pb2.SCAN_STATE_ERROR,
}
METHODS = {
    plan_pb2.TUNE_METHOD_UNSPECIFIED: TuneMethod.CENTROID,
    plan_pb2.TUNE_METHOD_CENTROID: TuneMethod.CENTROID,
    plan_pb2.TUNE_METHOD_GAUSSIAN: TuneMethod.GAUSSIAN,
    plan_pb2.TUNE_METHOD_MAXIMUM: TuneMethod.MAXIMUM,
}
CONDITIONS = {
    plan_pb2.SUSPENDER_CONDITION_BELOW: Condition.BELOW,
    plan_pb2.SUSPENDER_CONDITION_ABOVE: Condition.ABOVE,
    plan_pb2.SUSPENDER_CONDITION_EQUALS: Condition.EQUALS,
    plan_pb2.SUSPENDER_CONDITION_NOT_EQUALS: Condition.NOT_EQUALS,
    plan_pb2.SUSPENDER_CONDITION_DEGRADED: Condition.DEGRADED,
}
KINDS = "count, line, list, grid, adaptive, tune"


def _bounded(items: Any, field: str, limit: int = MAX_REPEATED) -> Any:
    if len(items) > limit:
        raise invalid(f"{field}: at most {limit} entries, got {len(items)}")
    return items


def plan_from_pb(message: plan_pb2.Plan) -> Plan:
    """The plan a message describes; INVALID_ARGUMENT only for what cannot be a plan at all
    (no path, oversized repeated fields) — the rest is the validator's to report."""
    kind = message.WhichOneof("path")
    if kind is None:
        raise invalid(f"plan: no path; set one of {KINDS}")
    path: Any
    match kind:
        case "count":
            c = message.count
            path = Count(c.num, c.interval, c.duration)
        case "line":
            spans = _bounded(message.line.axes, "line.axes")
            path = Line(
                tuple(Span(s.axis, s.start, s.stop) for s in spans),
                message.line.points,
                message.line.relative,
            )
        case "list":
            axes = _bounded(message.list.axes, "list.axes")
            if sum(len(a.positions) for a in axes) > MAX_POSITIONS:
                raise invalid(f"list.axes: at most {MAX_POSITIONS} positions in all")
            path = ListScan(
                tuple(a.axis for a in axes),
                tuple(tuple(a.positions) for a in axes),
                message.list.relative,
            )
        case "grid":
            dims = _bounded(message.grid.axes, "grid.axes")
            path = Grid(
                tuple(GridAxis(a.axis, a.start, a.stop, a.points, a.snake) for a in dims),
                message.grid.relative,
            )
        case "adaptive":
            a = message.adaptive
            path = Adaptive(
                a.axis,
                a.start,
                a.stop,
                a.detector,
                a.target_delta,
                a.min_step,
                a.max_step,
                a.max_points,
                a.relative,
            )
        case _:
            t = message.tune
            method = METHODS.get(t.method)
            if method is None:
                raise invalid(f"tune.method: {t.method} is not a TuneMethod")
            path = Tune(
                t.axis, t.start, t.stop, t.points, t.detector, method, t.relative, not t.stay
            )
    settings = tuple(
        Setting(s.parameter, from_value(s.value, f"parameters[{i}].value"))  # type: ignore[arg-type]
        for i, s in enumerate(_bounded(message.parameters, "parameters"))
    )
    suspenders = tuple(
        _suspender(s, i) for i, s in enumerate(_bounded(message.suspenders, "suspenders"))
    )
    return Plan(
        path,
        read=tuple(_bounded(message.read, "read")),
        frames=message.frames,
        camera=message.camera,
        settle=message.settle,
        dwell=message.dwell,
        name=message.name,
        metadata_json=message.metadata_json or "{}",
        parameters=settings,
        suspenders=suspenders,
        bench_suspenders=not message.no_bench_suspenders,
        monitor=message.monitor,
        live=message.live,
        compression=message.compression,
    )


def _suspender(message: plan_pb2.Suspender, index: int) -> Suspender:
    where = f"suspenders[{index}]"
    condition = CONDITIONS.get(message.condition)
    if condition is None:
        allowed = ", ".join(plan_pb2.SuspenderCondition.Name(c) for c in CONDITIONS)
        raise invalid(f"{where}.condition: one of {allowed}")
    threshold: Any = 0.0
    if message.threshold.WhichOneof("kind") is not None:
        threshold = from_value(message.threshold, f"{where}.threshold")
    resume = message.resume if message.HasField("resume") else None
    return Suspender(
        message.signal, condition, threshold, resume, message.settle, message.poll or 0.5
    )


def plan_to_pb(plan: Plan) -> plan_pb2.Plan:
    message = plan_pb2.Plan(
        read=list(plan.read),
        frames=plan.frames,
        camera=plan.camera,
        settle=plan.settle,
        dwell=plan.dwell,
        name=plan.name,
        metadata_json=plan.metadata_json,
        no_bench_suspenders=not plan.bench_suspenders,
        monitor=plan.monitor,
        live=plan.live,
        compression=plan.compression,
    )
    path = plan.path
    match path:
        case Count():
            message.count.CopyFrom(
                plan_pb2.CountPath(num=path.num, interval=path.interval, duration=path.duration)
            )
        case Line():
            message.line.CopyFrom(
                plan_pb2.LinePath(
                    axes=[
                        plan_pb2.Span(axis=s.axis, start=s.start, stop=s.stop) for s in path.spans
                    ],
                    points=path.points,
                    relative=path.relative,
                )
            )
        case ListScan():
            message.list.CopyFrom(
                plan_pb2.ListPath(
                    axes=[
                        plan_pb2.AxisPositions(axis=a, positions=list(p))
                        for a, p in zip(path.axes, path.positions, strict=True)
                    ],
                    relative=path.relative,
                )
            )
        case Grid():
            message.grid.CopyFrom(
                plan_pb2.GridPath(
                    axes=[
                        plan_pb2.GridAxis(
                            axis=a.axis, start=a.start, stop=a.stop, points=a.points, snake=a.snake
                        )
                        for a in path.dims
                    ],
                    relative=path.relative,
                )
            )
        case Adaptive():
            message.adaptive.CopyFrom(
                plan_pb2.AdaptivePath(
                    axis=path.axis,
                    start=path.start,
                    stop=path.stop,
                    detector=path.detector,
                    target_delta=path.target_delta,
                    min_step=path.min_step,
                    max_step=path.max_step,
                    max_points=path.max_points,
                    relative=path.relative,
                )
            )
        case Tune():
            method = next(k for k, v in METHODS.items() if v is path.method and k)
            message.tune.CopyFrom(
                plan_pb2.TunePath(
                    axis=path.axis,
                    start=path.start,
                    stop=path.stop,
                    points=path.points,
                    detector=path.detector,
                    method=method,
                    relative=path.relative,
                    stay=not path.move,
                )
            )
    for setting in plan.parameters:
        message.parameters.append(
            plan_pb2.ParameterSetting(parameter=setting.parameter, value=to_value(setting.value))
        )
    for suspender in plan.suspenders:
        condition = next(k for k, v in CONDITIONS.items() if v is suspender.condition)
        item = plan_pb2.Suspender(
            signal=suspender.signal,
            condition=condition,
            threshold=to_value(suspender.threshold),
            settle=suspender.settle,
            poll=suspender.poll,
        )
        if suspender.resume is not None:
            item.resume = suspender.resume
        message.suspenders.append(item)
    return message


def estimate_to_pb(estimate: Estimate | None) -> scan_pb2.ScanEstimate | None:
    if estimate is None:
        return None
    return scan_pb2.ScanEstimate(
        points=estimate.points or 0,
        seconds=estimate.seconds,
        frames=estimate.frames,
        bytes=estimate.bytes,
        open_ended=estimate.points is None,
    )


def check_to_pb(check: PlanCheck) -> scan_pb2.PlanCheck:
    return scan_pb2.PlanCheck(
        problems=[
            scan_pb2.PlanProblem(field=p.field, message=p.message, device=p.device)
            for p in check.problems
        ],
        estimate=estimate_to_pb(check.estimate),
    )


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, default=str, allow_nan=True) if value else ""


def status_to_pb(status: PlanStatus, plan: bytes | None = None) -> scan_pb2.ScanStatus:
    """``plan``: the plan's message already encoded (``EncodedPlans``); merging those bytes
    costs ~1 ms for a 4 MB list scan where building the message again costs ~30."""
    message = scan_pb2.ScanStatus(
        id=status.id,
        state=STATES[status.state],
        origin=status.origin,
        points_done=status.points_done,
        points_total=status.points_total,
        run_path=status.run_path,
        error=status.error,
        pause_requested=status.pause_requested,
        created=status.created,
        started=status.started,
        ended=status.ended,
        suspended_by=status.suspended_by,
        suspensions=[
            scan_pb2.Suspension(
                suspender=s.suspender,
                point=s.point,
                began=s.began,
                ended=s.ended,
                seconds=s.seconds,
                value=s.value,
            )
            for s in status.suspensions
        ],
        estimate=estimate_to_pb(status.estimate),
        result_json=_json(status.result),
        events=status.events,
    )
    message.positions.update({k: v for k, v in status.positions.items() if math.isfinite(v)})
    if plan is None:
        message.plan.CopyFrom(plan_to_pb(status.plan))
    else:
        message.plan.MergeFromString(plan)
    return message


def brief_status_to_pb(status: PlanStatus) -> scan_pb2.ScanStatus:
    """The status as ListScans gives it: a plan larger than ``LISTED_PLAN_BYTES`` keeps its
    kind, axes and settings but not its positions or metadata (``plan_elided``), so a list of
    300 plans stays a few megabytes and is built in milliseconds."""
    plan = status.plan
    if described_size(plan) <= LISTED_PLAN_BYTES:
        return status_to_pb(status)
    path = plan.path
    if isinstance(path, ListScan):
        path = replace(path, positions=tuple(() for _ in path.axes))
    message = status_to_pb(replace(status, plan=replace(plan, path=path, metadata_json="{}")))
    message.plan_elided = True
    return message


class EncodedPlans:
    """Each plan's message, encoded once: a scan's status is sent at every point (StreamScan)
    and a list scan's plan can be megabytes, which would otherwise be built again each time on
    the event loop. Keyed by id and creation time (an id names one plan for good, but this
    outlives an executor restart in a test harness); the newest ``budget`` bytes are kept."""

    def __init__(self, budget: int = 64 * 1024 * 1024) -> None:
        self.budget = budget
        self._encoded: OrderedDict[tuple[str, float], bytes] = OrderedDict()
        self._bytes = 0

    def status(self, status: PlanStatus) -> scan_pb2.ScanStatus:
        key = (status.id, status.created)
        encoded = self._encoded.get(key)
        if encoded is None:
            encoded = plan_to_pb(status.plan).SerializeToString()
            self._encoded[key] = encoded
            self._bytes += len(encoded)
            while self._bytes > self.budget and len(self._encoded) > 1:
                self._bytes -= len(self._encoded.popitem(last=False)[1])
        else:
            self._encoded.move_to_end(key)
        return status_to_pb(status, encoded)


def event_to_pb(event: PlanEvent) -> scan_pb2.ScanEvent:
    message = scan_pb2.ScanEvent(scan_id=event.plan, seq=event.seq, time=event.time)
    body = event.body
    match body:
        case Started():
            message.started.CopyFrom(
                scan_pb2.ScanStarted(
                    run_path=body.run_path,
                    columns=list(body.columns),
                    units=dict(body.units),
                    points_total=body.points_total,
                    plan_json=_json(body.plan),
                    estimate=scan_pb2.ScanEstimate(
                        points=body.estimate.get("points") or 0,
                        seconds=body.estimate.get("seconds", 0.0),
                        frames=body.estimate.get("frames", 0),
                        bytes=body.estimate.get("bytes", 0),
                        open_ended=body.estimate.get("points") is None,
                    ),
                )
            )
        case Point():
            point = scan_pb2.ScanPoint(
                index=body.index,
                frame_index=body.frame_index,
                frames=body.frames,
                started=body.started,
                time=body.time,
                attempts=body.attempts,
            )
            point.positions.update(body.positions)
            point.readings.update(body.readings)
            point.flags.update({k: ",".join(v) for k, v in body.flags.items()})
            message.point.CopyFrom(point)
        case Suspended():
            message.suspended.CopyFrom(
                scan_pb2.ScanSuspended(suspender=body.suspender, value=body.value, point=body.point)
            )
        case Resumed():
            message.resumed.CopyFrom(
                scan_pb2.ScanResumed(suspender=body.suspender, seconds=body.seconds)
            )
        case Paused():
            message.paused.CopyFrom(scan_pb2.ScanPaused(paused=body.paused))
        case Ended():
            message.ended.CopyFrom(
                scan_pb2.ScanEnded(
                    state=STATES[PlanState(body.state)],
                    reason=body.reason,
                    points=body.points,
                    result_json=_json(body.result),
                )
            )
        case Gap():
            message.gap.CopyFrom(scan_pb2.ScanGap(missed=body.missed))
    return message


def value_of(message: common_pb2.Value) -> Any:
    return from_value(message, "value")
