"""EmergencyStop service: stop everything now, reset, and watch it happen.

EmergencyStop is open to every authenticated client (observers too): stopping only makes the
bench safer. It goes straight to ``ActorSystem.emergency_stop``, which puts the stop on every
device's priority lane in one synchronous pass; the reply comes once every device acknowledged
(or after 2 s, saying which did not). Reset needs the operator role.

Latency is measured from the request's *arrival*: the moment its HTTP/2 headers were read off
the connection (``BoundedStream.arrived``), before any task existed for it — not from the
broadcast, which would hide the time a busy daemon took to get to it. The reply carries that
arrival (``received_at``), the wait until the broadcast (``dispatch_ms``) and each device's
acknowledgement counted from the arrival; the edge logs the same in one line.

The event stream reports every stop and reset: those made over gRPC with who asked, and —
through :meth:`EmergencyStopServicer.watch`, which looks at the latches every 50 ms — those made
any other way (a script, the bench API), with an empty ``client``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import trio
from grpclib.server import Stream

from benchd.v1 import common_pb2, estop_grpc
from benchd.v1 import estop_pb2 as pb
from runtime import ActorSystem, EmergencyStopReport, Latch

from ._context import EdgeContext, EventLog
from ._guard import BoundedStream, receive
from ._priority import PriorityStops

logger = logging.getLogger("actors.edge")
Kind = pb.EmergencyStopEvent


@dataclass(frozen=True, slots=True)
class StopEvent:
    kind: int
    reason: str
    timestamp: float
    latched: bool
    all_stopped: bool = False
    client: str = ""

    def message(self) -> pb.EmergencyStopEvent:
        return pb.EmergencyStopEvent(
            kind=self.kind,  # type: ignore[arg-type]
            reason=self.reason,
            timestamp=self.timestamp,
            latched=self.latched,
            all_stopped=self.all_stopped,
            client=self.client,
        )


def current_latch(system: ActorSystem, edge: str) -> tuple[Latch | None, list[str]]:
    """The newest latch any device holds (why, by whom, since when) and who is latched."""
    latched = [s for s in system.statistics() if s.latch is not None and s.name != edge]
    newest = max((s.latch for s in latched if s.latch), key=lambda x: x.since, default=None)
    return newest, [s.name for s in latched]


def latch_message(system: ActorSystem, edge: str) -> common_pb2.EmergencyStopLatch:
    """The latch as health, daemon info and the e-stop state show it."""
    latch, actors = current_latch(system, edge)
    if latch is None:
        return common_pb2.EmergencyStopLatch(latched=False)
    return common_pb2.EmergencyStopLatch(
        latched=True,
        reason=latch.reason,
        by=latch.by,
        since=latch.since,
        actors=actors,
        summary=latch.describe(),
    )


def latch_state(system: ActorSystem, edge: str) -> pb.EmergencyStopState:
    latched = [s for s in system.statistics() if s.latched is not None and s.name != edge]
    reasons = sorted({s.latched or "" for s in latched})
    latch, _ = current_latch(system, edge)
    return pb.EmergencyStopState(
        latched=bool(latched),
        latched_actors=[s.name for s in latched],
        reason="; ".join(reasons),
        by=latch.by if latch else "",
        since=latch.since if latch else 0.0,
        summary=latch.describe() if latch else "",
    )


class EmergencyStopServicer(estop_grpc.EmergencyStopBase):
    def __init__(self, context: EdgeContext, events: EventLog[StopEvent]) -> None:
        self.ctx = context
        self.events = events
        self.priority: PriorityStops | None = None  # set by the edge once its server exists
        self._reported = False  # the latch state the event log last reported
        self._in_flight = 0  # stops and resets made over gRPC that are still running

    async def watch(self, period: float = 0.05) -> None:
        """Report stops and resets that did not come through this service (trio side)."""
        while True:
            await trio.sleep(period)
            if self._in_flight:
                continue  # the RPC reports its own
            state = latch_state(self.ctx.system, self.ctx.edge_name)
            if state.latched != self._reported:
                self._reported = state.latched
                kind = Kind.KIND_STOPPED if state.latched else Kind.KIND_RESET
                self.events.append(StopEvent(kind, state.reason, time.time(), state.latched))

    async def broadcast(self, reason: str, who: str) -> tuple[EmergencyStopReport, float]:
        """Stop everything now (trio side); the report and ``time.monotonic()`` of the
        broadcast. Both paths come here: the priority path and the servicer's own."""
        reason = reason.strip() or "gRPC EmergencyStop"
        self._in_flight += 1
        try:
            broadcast = time.monotonic()
            report = await self.ctx.system.emergency_stop(reason, by=who)
        finally:
            self._in_flight -= 1
        self._reported = True
        self.events.append(
            StopEvent(Kind.KIND_STOPPED, reason, time.time(), True, report.all_stopped, who)
        )
        return report, broadcast

    async def EmergencyStop(
        self, stream: Stream[pb.EmergencyStopRequest, pb.EmergencyStopResponse]
    ) -> None:
        arrived = stream.arrived if isinstance(stream, BoundedStream) else time.monotonic()
        received_at = time.time() - (time.monotonic() - arrived)
        request = await receive(stream)
        early = None
        if self.priority is not None and isinstance(stream, BoundedStream):
            early = self.priority.take(stream.h2_stream)
        if early is not None:  # broadcast already, from the request's bytes (_priority.py)
            who = early.who
            report, broadcast = await early.report
        else:
            client = self.ctx.client(stream)
            peer = stream.peer.addr() if stream.peer else None
            who = f"{client.name} ({client.role.label}) from {peer[0] if peer else 'unknown'}"
            report, broadcast = await self.ctx.bridge.call(
                lambda: self.broadcast(request.reason, who)
            )  # no deadline: a stop always completes
        dispatch = broadcast - arrived
        slowest = max((a.seconds for a in report.acknowledgements), default=0.0)
        logger.info(  # the system's own line (runtime.estop) is the e-stop's WARNING
            "e-stop over gRPC by %s: broadcast %.3f ms after the request arrived%s, every"
            " device acknowledged %.3f ms after it",
            who,
            dispatch * 1e3,
            " (priority path)" if early is not None else "",
            (dispatch + slowest) * 1e3,
        )
        await stream.send_message(
            pb.EmergencyStopResponse(
                all_stopped=report.all_stopped,
                acknowledgements=[
                    pb.StopAcknowledgement(
                        actor=a.actor,
                        ok=a.ok,
                        latency_ms=(dispatch + a.seconds) * 1e3,
                        error=a.error or "",
                    )
                    for a in report.acknowledgements
                ],
                received_at=received_at,
                dispatch_ms=dispatch * 1e3,
            )
        )

    async def ResetEmergencyStop(
        self, stream: Stream[pb.ResetEmergencyStopRequest, pb.ResetEmergencyStopResponse]
    ) -> None:
        request = await receive(stream)
        client = self.ctx.client(stream)
        reason = f"{request.reason.strip() or 'gRPC ResetEmergencyStop'} [by {client.name}]"
        system, events = self.ctx.system, self.events

        async def reset() -> tuple[str, ...]:
            self._in_flight += 1
            try:
                still = await system.reset_emergency_stop(reason)
            finally:
                self._in_flight -= 1
            self._reported = bool(still)
            events.append(
                StopEvent(Kind.KIND_RESET, reason, time.time(), bool(still), client=client.name)
            )
            return still

        still = await self.ctx.bridge.call(reset)
        await stream.send_message(pb.ResetEmergencyStopResponse(still_latched=list(still)))

    async def GetEmergencyStopState(
        self, stream: Stream[pb.EmergencyStopStateRequest, pb.EmergencyStopState]
    ) -> None:
        await receive(stream)
        await stream.send_message(latch_state(self.ctx.system, self.ctx.edge_name))

    async def StreamEmergencyStopEvents(
        self, stream: Stream[pb.EmergencyStopStateRequest, pb.EmergencyStopEvent]
    ) -> None:
        await receive(stream)
        since = self.events.next_index  # before sending: nothing that happens meanwhile is lost
        state = latch_state(self.ctx.system, self.ctx.edge_name)
        await stream.send_message(
            pb.EmergencyStopEvent(
                kind=Kind.KIND_CURRENT,
                reason=state.reason,
                timestamp=time.time(),
                latched=state.latched,
            )
        )

        async def produce(push: Any) -> None:
            async for event in self.events.follow(since):
                push(event.message())

        async for message in self.ctx.bridge.stream(produce, capacity=1000):
            await stream.send_message(message)
