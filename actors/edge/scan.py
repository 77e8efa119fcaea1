"""Scan service: line, grid and snake scans from a definition, run by the script runner.

``CreateScan`` validates a definition at once (INVALID_ARGUMENT names the field and what is
allowed) and keeps it under an id. ``StartScan`` queues an execution of a small fixed Starlark
script calling ``line_scan`` / ``grid_scan`` with the definition as its ``params``: a scan from
this service takes exactly the path of a scan from a script (one run file, stop / abort / e-stop,
pause at the next point, the shutter and run clean-up). Pause, resume, stop, abort, status and
the progress stream are the execution's, seen as a scan.

State: the definitions live in this servicer (memory; a daemon restart forgets them, as it
forgets executions); everything about a started scan comes from its execution.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from benchd.v1 import scan_grpc
from benchd.v1 import scan_pb2 as pb
from runtime import Subscription

from ..capabilities import Capability
from ..pipeline.recorder import RUN_NAME, RUN_NAME_RULE
from ..scripting.runner import (
    RUNNER_NAME,
    ExecutionState,
    ExecutionStatus,
    GetExecution,
    ListExecutions,
    PauseExecution,
    ResumeExecution,
    StartScript,
    StopExecution,
    WatchExecution,
)
from ._context import EdgeContext
from ._convert import json_object
from .errors import invalid
from .hardware import receive

MAX_POINTS = 1_000_000
MAX_SECONDS = 3600.0
MAX_FRAMES = 10_000
KEPT = 500  # scan definitions kept (the oldest are forgotten first)

STATES = {
    ExecutionState.PENDING: pb.SCAN_STATE_PENDING,
    ExecutionState.RUNNING: pb.SCAN_STATE_RUNNING,
    ExecutionState.PAUSED: pb.SCAN_STATE_PAUSED,
    ExecutionState.COMPLETED: pb.SCAN_STATE_COMPLETED,
    ExecutionState.ERROR: pb.SCAN_STATE_ERROR,
    ExecutionState.STOPPED: pb.SCAN_STATE_STOPPED,
    ExecutionState.ABORTED: pb.SCAN_STATE_ABORTED,
}

_COMMON = (
    'read=s["read"], dwell=s["dwell"], settle=s["settle"], frames=s["frames"], name=s["name"],'
    ' metadata=s["metadata"])\n'
)
#: The scripts a scan runs as; the definition arrives as ``params["scan"]``.
LINE_SCRIPT = (
    '# Scan service: a line scan\ns = params["scan"]\na = s["axes"][0]\n'
    'result = line_scan(a["device"], a["start"], a["stop"], a["points"], ' + _COMMON
)
GRID_SCRIPT = (
    '# Scan service: a grid scan\ns = params["scan"]\n'
    'def axis(a):\n    return [a["device"], a["start"], a["stop"], a["points"]]\n'
    'result = grid_scan(axis(s["axes"][0]), axis(s["axes"][1]), snake=s["snake"], ' + _COMMON
)


@dataclass
class _Scan:
    id: str
    definition: pb.ScanDefinition
    parameters: dict[str, Any]  # the script's params["scan"]
    points_total: int
    created: float
    execution: str = ""


def _finite(value: float, field: str, low: float, high: float) -> float:
    if not math.isfinite(value) or not low <= value <= high:
        raise invalid(f"{field} must be a number {low:g} … {high:g}, got {value}")
    return value


def validate(
    definition: pb.ScanDefinition,
    movable: list[str],
    readable: list[str],
    cameras: list[str],
) -> tuple[dict[str, Any], int]:
    """The script's parameters and the number of points, or INVALID_ARGUMENT naming the field."""
    kinds = {pb.SCAN_KIND_LINE: 1, pb.SCAN_KIND_GRID: 2}
    if definition.kind not in kinds:
        raise invalid("kind must be SCAN_KIND_LINE (one axis) or SCAN_KIND_GRID (two axes)")
    line = definition.kind == pb.SCAN_KIND_LINE
    wanted = kinds[definition.kind]
    if len(definition.axes) != wanted:
        what = "a line scan has 1 axis" if line else "a grid scan has 2 axes: slow, then fast"
        raise invalid(f"axes: {what}, got {len(definition.axes)}")
    if line and definition.snake:
        raise invalid("snake: only for SCAN_KIND_GRID")
    axes = []
    total = 1
    for i, axis in enumerate(definition.axes):
        if axis.device not in movable:
            raise invalid(
                f"axes[{i}].device: {axis.device!r} is not a Movable device;"
                f" Movable devices: {', '.join(movable) or 'none'}"
            )
        start = _finite(axis.start, f"axes[{i}].start", -math.inf, math.inf)
        stop = _finite(axis.stop, f"axes[{i}].stop", -math.inf, math.inf)
        if not 1 <= axis.points <= MAX_POINTS:
            raise invalid(f"axes[{i}].points must be 1 … {MAX_POINTS}, got {axis.points}")
        total *= axis.points
        axes.append({"device": axis.device, "start": start, "stop": stop, "points": axis.points})
    if total > MAX_POINTS:
        raise invalid(f"axes: at most {MAX_POINTS} points in all, got {total}")
    if not line and definition.axes[0].device == definition.axes[1].device:
        raise invalid("axes: the slow and fast axes must be different devices")
    for i, device in enumerate(definition.read):
        if device not in readable:
            raise invalid(
                f"read[{i}]: {device!r} is not a Readable device;"
                f" Readable devices: {', '.join(readable) or 'none'}"
            )
    dwell = _finite(definition.dwell, "dwell", 0.0, MAX_SECONDS)
    settle = _finite(definition.settle, "settle", 0.0, MAX_SECONDS)
    if definition.frames > MAX_FRAMES:
        raise invalid(f"frames must be 0 … {MAX_FRAMES}, got {definition.frames}")
    if definition.frames and not cameras:
        raise invalid("frames: this bench has no camera; use frames = 0")
    name = definition.name or ("line_scan" if line else "grid_scan")
    if not RUN_NAME.fullmatch(name):
        raise invalid(f"name {name!r} is not allowed; use {RUN_NAME_RULE}")
    metadata = json_object(definition.metadata_json, "metadata_json", '{"sample": "A1"}')
    parameters = {
        "axes": axes,
        "snake": definition.snake,
        "read": list(definition.read),
        "dwell": dwell,
        "settle": settle,
        "frames": definition.frames,
        "name": name,
        "metadata": metadata,
    }
    return parameters, total


def scan_message(scan: _Scan, status: ExecutionStatus | None) -> pb.ScanStatus:
    message = pb.ScanStatus(
        id=scan.id,
        definition=scan.definition,
        state=pb.SCAN_STATE_CREATED,
        points_total=scan.points_total,
        created=scan.created,
        execution_id=scan.execution,
    )
    if status is not None:
        message.state = STATES[status.state]
        message.points_done = status.points_done
        message.positions.update(status.positions)
        message.run_path = status.run_path
        message.error = status.error
        message.pause_requested = status.pause_requested
        message.started = status.started
        message.ended = status.ended
    return message


class ScanServicer(scan_grpc.ScanBase):
    def __init__(self, context: EdgeContext) -> None:
        self.ctx = context
        self._scans: dict[str, _Scan] = {}
        self._counter = itertools.count(1)

    def _runner(self) -> Any:
        return self.ctx.ref(RUNNER_NAME)

    def _find(self, scan_id: str) -> _Scan:
        try:
            return self._scans[scan_id]
        except KeyError:
            raise GRPCError(Status.NOT_FOUND, f"no scan {scan_id!r}") from None

    def _started(self, scan_id: str) -> _Scan:
        scan = self._find(scan_id)
        if not scan.execution:
            raise GRPCError(
                Status.FAILED_PRECONDITION, f"scan {scan_id} has not started; StartScan first"
            )
        return scan

    async def _status(self, stream: Stream[Any, Any], scan: _Scan) -> pb.ScanStatus:
        if not scan.execution:
            return scan_message(scan, None)
        status = await self.ctx.request(stream, self._runner(), GetExecution(scan.execution))
        return scan_message(scan, status)

    async def CreateScan(self, stream: Stream[pb.ScanDefinition, pb.ScanStatus]) -> None:
        definition = await receive(stream)

        async def devices() -> tuple[list[str], list[str], list[str]]:
            return (
                await self.ctx.capable(Capability.MOVABLE),
                await self.ctx.capable(Capability.READABLE),
                await self.ctx.capable(Capability.FRAME_PRODUCER),
            )

        movable, readable, cameras = await self.ctx.bridge.call(devices)
        parameters, total = validate(definition, movable, readable, cameras)
        scan_id = f"s{next(self._counter)}"
        parameters["id"] = scan_id
        parameters["metadata"] = {**parameters["metadata"], "scan_id": scan_id}
        scan = _Scan(scan_id, definition, parameters, total, time.time())
        self._scans[scan_id] = scan
        for old in list(self._scans)[: max(0, len(self._scans) - KEPT)]:
            del self._scans[old]
        await stream.send_message(scan_message(scan, None))

    async def StartScan(self, stream: Stream[pb.ScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        scan = self._find(request.id)
        if scan.execution:
            raise GRPCError(
                Status.FAILED_PRECONDITION,
                f"scan {scan.id} was started already (execution {scan.execution});"
                " create another to run it again",
            )
        line = scan.definition.kind == pb.SCAN_KIND_LINE
        message = StartScript(
            source=LINE_SCRIPT if line else GRID_SCRIPT, parameters={"scan": scan.parameters}
        )
        status = await self.ctx.request(stream, self._runner(), message)
        scan.execution = status.id
        await stream.send_message(scan_message(scan, status))

    async def PauseScan(self, stream: Stream[pb.ScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        scan = self._started(request.id)
        await self._reply(stream, scan, PauseExecution(scan.execution))

    async def ResumeScan(self, stream: Stream[pb.ScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        scan = self._started(request.id)
        await self._reply(stream, scan, ResumeExecution(scan.execution))

    async def StopScan(self, stream: Stream[pb.StopScanRequest, pb.ScanStatus]) -> None:
        await self._stop(stream, force=False)

    async def AbortScan(self, stream: Stream[pb.StopScanRequest, pb.ScanStatus]) -> None:
        await self._stop(stream, force=True)

    async def _stop(
        self, stream: Stream[pb.StopScanRequest, pb.ScanStatus], *, force: bool
    ) -> None:
        request = await receive(stream)
        scan = self._started(request.id)
        verb = "aborted" if force else "stopped"
        reason = request.reason or f"{verb} by {self.ctx.client(stream).name}"
        await self._reply(stream, scan, StopExecution(scan.execution, force=force, reason=reason))

    async def _reply(self, stream: Stream[Any, pb.ScanStatus], scan: _Scan, message: Any) -> None:
        status = await self.ctx.request(stream, self._runner(), message, default=30.0)
        await stream.send_message(scan_message(scan, status))

    async def GetScan(self, stream: Stream[pb.ScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        await stream.send_message(await self._status(stream, self._find(request.id)))

    async def ListScans(self, stream: Stream[pb.ListScansRequest, pb.ListScansResponse]) -> None:
        await receive(stream)
        executions: Mapping[str, ExecutionStatus] = {}
        if any(scan.execution for scan in self._scans.values()):
            listed = await self.ctx.request(stream, self._runner(), ListExecutions())
            executions = {status.id: status for status in listed}
        scans = [scan_message(s, executions.get(s.execution)) for s in self._scans.values()]
        await stream.send_message(pb.ListScansResponse(scans=scans))

    async def StreamScan(self, stream: Stream[pb.ScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        scan = self._started(request.id)
        runner = self._runner()
        await self.ctx.request(stream, runner, GetExecution(scan.execution))  # NOT_FOUND here

        async def produce(push: Any) -> None:
            subscription: Subscription[ExecutionStatus] = await runner.ask(
                WatchExecution(scan.execution)
            )
            async for sample in subscription:
                push(scan_message(scan, sample.value))
                if sample.value.state.finished:
                    return
            raise GRPCError(Status.UNAVAILABLE, "the script runner restarted; stream again")

        # capacity 1: latest-only, a slow client skips intermediate updates, never the last.
        async for item in self.ctx.bridge.stream(produce, capacity=1):
            await stream.send_message(item)
