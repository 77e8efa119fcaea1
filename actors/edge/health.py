"""Health service: the machine (psutil), every actor (heartbeat, mailbox, restarts, failures),
threshold alerts as a stream, and the standard grpc.health.v1 status.

A :class:`HealthMonitor` task in the edge actor pings every running actor each period (the
Ping travels the normal lane, so a reply proves the actor's loop is turning and its mailbox is
moving), checks device states and the free disk space, raises and clears alerts, and sets the
grpc.health.v1 overall status: SERVING while every device is ready, NOT_SERVING otherwise.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import trio
from grpclib.server import Stream

from benchd.v1 import health_grpc
from benchd.v1 import health_pb2 as pb
from runtime import ActorError, ActorState, BenchError, Ping

from ..capabilities import Capability
from ..documents import DOCUMENTS_NAME, PUBLISHER_NAME, GetDocumentsStatus
from ..documents.tiled import GetPublishStatus, PublishStatus
from ..pipeline.recorder import RECORDER_NAME, GetRunStatus
from ..pipeline.run import RunStatus
from ..pipeline.taps import GetTapStatistics, TapPolicy
from . import _convert as convert
from ._context import EdgeContext, EventLog
from ._guard import receive
from .estop import current_latch, latch_message

AlertKind = pb.Alert


@dataclass(frozen=True, slots=True)
class Heartbeat:
    responsive: bool
    round_trip: float  # seconds
    when: float


@dataclass(frozen=True, slots=True)
class AlertEvent:
    kind: int
    subject: str
    message: str
    active: bool
    timestamp: float

    def message_pb(self) -> pb.Alert:
        return pb.Alert(
            kind=self.kind,  # type: ignore[arg-type]
            subject=self.subject,
            message=self.message,
            active=self.active,
            timestamp=self.timestamp,
        )


@dataclass
class HealthState:
    """What the monitor found last, read by the servicer."""

    heartbeats: dict[str, Heartbeat] = field(default_factory=dict)
    active: dict[tuple[int, str], AlertEvent] = field(default_factory=dict)
    alerts: EventLog[AlertEvent] = field(default_factory=EventLog)
    _keys: dict[tuple[int, str], object] = field(default_factory=dict)

    def update(self, kind: int, subject: str, problem: str | None, *, key: object = None) -> None:
        """Raise the alert when ``problem`` is set, clear it when it is None (once each).

        ``key`` tells one occurrence from the next while the condition holds: an active
        alert whose key changes is raised again with the new message (a second e-stop)."""
        slot = (kind, subject)
        active = self.active.get(slot)
        if problem is not None and (active is None or self._keys.get(slot) != key):
            event = AlertEvent(kind, subject, problem, True, time.time())
            self.active[slot] = event
            self._keys[slot] = key
            self.alerts.append(event)
        elif problem is None and active is not None:
            del self.active[slot]
            self._keys.pop(slot, None)
            self.alerts.append(AlertEvent(kind, subject, "cleared", False, time.time()))


class HealthMonitor:
    def __init__(
        self,
        context: EdgeContext,
        state: HealthState,
        set_serving: Callable[[bool], None],
        *,
        period: float = 2.0,
        ping_timeout: float = 1.0,
    ) -> None:
        self.ctx = context
        self.state = state
        self.set_serving = set_serving
        self.period = period
        self.ping_timeout = ping_timeout

    async def run(self) -> None:
        psutil.cpu_percent(interval=None)  # primes the CPU figure (the first call says 0)
        while True:
            await self.check()
            await trio.sleep(self.period)

    async def check(self) -> None:
        system, state = self.ctx.system, self.state
        stats = [s for s in system.statistics() if s.name != self.ctx.edge_name]
        async with trio.open_nursery() as nursery:
            for s in stats:
                if s.state is ActorState.RUNNING:
                    nursery.start_soon(self._ping, s.name)
        for s in stats:
            degraded = s.state is not ActorState.RUNNING
            why = f"; last failure: {s.last_failure}" if s.last_failure else ""
            state.update(
                AlertKind.KIND_DEVICE_DEGRADED,
                s.name,
                f"{s.name} is {convert.state_label(s.state)} ({s.state}){why}"
                if degraded
                else None,
            )
            beat = state.heartbeats.get(s.name)
            unresponsive = not degraded and beat is not None and not beat.responsive
            state.update(
                AlertKind.KIND_ACTOR_UNRESPONSIVE,
                s.name,
                f"{s.name} did not answer a Ping within {self.ping_timeout:g} s"
                f" (mailbox {s.normal_depth}/{s.normal_capacity})"
                if unresponsive
                else None,
            )
        latch, _ = current_latch(system, self.ctx.edge_name)
        state.update(  # a new stop while latched replaces the alert: it says the newest
            AlertKind.KIND_ESTOP_LATCHED,
            "estop",
            None
            if latch is None
            else f"{latch.describe()}; moves, settings and recordings"
            " are refused until the emergency stop is reset",
            key=None if latch is None else latch.since,
        )
        disk = self.ctx.config.disk_path
        free = disk_free(disk)
        minimum = self.ctx.config.disk_free_min_gb * 1e9
        state.update(
            AlertKind.KIND_DISK_LOW,
            str(disk),
            f"{free / 1e9:.1f} GB free on {disk}, below {minimum / 1e9:g} GB"
            if free is not None and free < minimum
            else None,
        )
        await self._check_run()
        self.set_serving(all(s.state is ActorState.RUNNING for s in stats))

    async def _check_run(self) -> None:
        """Writer lag and lost frames of the run being recorded (if the bench records)."""
        run = await pipeline_figures(self.ctx)
        if run is None:
            return
        limit = self.ctx.config.writer_lag_max_frames
        self.state.update(
            AlertKind.KIND_WRITER_LAG,
            RECORDER_NAME,
            f"run {run.name!r}: the writer is {run.writer_lag} frames behind (alert above"
            f" {limit}); frames are dropped, and counted, once its queue is full"
            if run.active and run.writer_lag > limit
            else None,
        )
        lost = run.frames_dropped + run.frames_missing
        self.state.update(
            AlertKind.KIND_FRAMES_LOST,
            RECORDER_NAME,
            f"run {run.name!r} has lost {lost} frames ({run.frames_dropped} dropped by the"
            f" writer, {run.frames_missing} missing from the camera)"
            if run.active and lost
            else None,
        )

    async def _ping(self, name: str) -> None:
        started = trio.current_time()
        try:
            await self.ctx.system.ref(name).ask(Ping(), timeout=self.ping_timeout)
        except BenchError:
            ok = False
        else:
            ok = True
        self.state.heartbeats[name] = Heartbeat(ok, trio.current_time() - started, time.time())


async def pipeline_figures(ctx: EdgeContext) -> RunStatus | None:
    """The recorder's run status (trio side); None if the bench has no (ready) recorder."""
    try:
        status: RunStatus = await ctx.system.ref(RECORDER_NAME).ask(GetRunStatus(), timeout=1.0)
    except BenchError:
        return None
    return status


async def preview_skips(ctx: EdgeContext) -> int:
    """Frames skipped by the cameras' latest-only taps (trio side)."""
    total = 0
    for name in await ctx.capable(Capability.FRAME_PRODUCER):
        try:
            taps = await ctx.system.ref(name).ask(GetTapStatistics("frames"), timeout=1.0)
        except BenchError:
            continue
        total += sum(t.skipped for t in taps if t.policy is not TapPolicy.LOSSLESS)
    return total


async def publishing_figures(ctx: EdgeContext) -> dict[str, Any]:
    """The documents actor's lost updates and the Tiled publisher's status (trio side); only
    what the bench has."""
    figures: dict[str, Any] = {}
    names = ctx.system.names()
    if DOCUMENTS_NAME in names:
        with contextlib.suppress(BenchError, ActorError):
            status = await ctx.system.ref(DOCUMENTS_NAME).ask(GetDocumentsStatus(), timeout=1.0)
            figures["document_updates_lost"] = status.updates_lost
    if PUBLISHER_NAME in names:
        with contextlib.suppress(BenchError, ActorError):
            publish: PublishStatus = await ctx.system.ref(PUBLISHER_NAME).ask(
                GetPublishStatus(), timeout=1.0
            )
            figures["publish"] = pb.PublishHealth(
                server=publish.server,
                connected=publish.connected,
                backlog=publish.backlog,
                published=publish.published,
                failed_runs=publish.failed_runs,
                attempts_failed=publish.attempts_failed,
                last_error=publish.last_error,
                last_published=publish.last_published,
                retry_in_s=publish.retry_in,
                overflowed=publish.overflowed,
            )
    return figures


def disk_free(path: Path) -> int | None:
    try:
        return int(psutil.disk_usage(str(path)).free)
    except OSError:
        return None


class HealthServicer(health_grpc.HealthBase):
    def __init__(self, context: EdgeContext, state: HealthState) -> None:
        self.ctx = context
        self.state = state

    async def GetSystemHealth(
        self, stream: Stream[pb.SystemHealthRequest, pb.SystemHealth]
    ) -> None:
        await receive(stream)
        memory = psutil.virtual_memory()
        path = self.ctx.config.disk_path
        try:
            disk = psutil.disk_usage(str(path))
            free, total = int(disk.free), int(disk.total)
        except OSError:
            free = total = 0
        stats = [s for s in self.ctx.system.statistics() if s.name != self.ctx.edge_name]
        await stream.send_message(
            pb.SystemHealth(
                cpu_percent=psutil.cpu_percent(interval=None),
                memory_percent=memory.percent,
                memory_used_bytes=int(memory.used),
                memory_total_bytes=int(memory.total),
                disk_path=str(path),
                disk_free_bytes=free,
                disk_total_bytes=total,
                uptime_s=self.ctx.uptime(),
                actors=len(stats),
                actors_ready=sum(s.state is ActorState.RUNNING for s in stats),
                estop=latch_message(self.ctx.system, self.ctx.edge_name),
                **await self._pipeline(),
            )
        )

    async def _pipeline(self) -> dict[str, Any]:
        run = await self.ctx.bridge.call(lambda: pipeline_figures(self.ctx))
        skipped = await self.ctx.bridge.call(lambda: preview_skips(self.ctx))
        publishing = await self.ctx.bridge.call(lambda: publishing_figures(self.ctx))
        if run is None:
            return {"preview_frames_skipped": skipped, **publishing}
        return {
            "run_state": run.state.value,
            "writer_lag": run.writer_lag,
            "run_frames_dropped": run.frames_dropped,
            "run_frames_missing": run.frames_missing,
            "preview_frames_skipped": skipped,
            **publishing,
        }

    async def ListActors(self, stream: Stream[pb.ListActorsRequest, pb.ListActorsResponse]) -> None:
        await receive(stream)
        now = trio.current_time()  # the actors' clock (asyncio runs inside trio here)
        actors = []
        for s in self.ctx.system.statistics():
            beat = self.state.heartbeats.get(s.name)
            actors.append(
                pb.ActorHealth(
                    name=s.name,
                    state=convert.device_state(s.state),
                    detail=str(s.state),
                    mailbox_depth=s.normal_depth,
                    mailbox_capacity=s.normal_capacity,
                    priority_depth=s.priority_depth,
                    handled=s.handled,
                    failed=s.failed,
                    refused=s.refused,
                    restarts=s.restarts,
                    last_failure=convert.failure(s.last_failure),
                    latched=s.latched or "",
                    seconds_since_activity=max(0.0, now - s.last_activity),
                    max_handler_seconds=s.max_handler_seconds,
                    responsive=beat.responsive if beat else s.state is ActorState.RUNNING,
                    heartbeat_ms=beat.round_trip * 1e3 if beat and beat.responsive else 0.0,
                )
            )
        await stream.send_message(pb.ListActorsResponse(actors=actors))

    async def StreamAlerts(self, stream: Stream[pb.StreamAlertsRequest, pb.Alert]) -> None:
        await receive(stream)
        since = self.state.alerts.next_index  # before sending: nothing raised meanwhile is lost
        for event in list(self.state.active.values()):
            await stream.send_message(event.message_pb())

        async def produce(push: Any) -> None:
            async for event in self.state.alerts.follow(since):
                push(event.message_pb())

        async for message in self.ctx.bridge.stream(produce, capacity=1000):
            await stream.send_message(message)
