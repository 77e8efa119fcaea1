"""Scan service: plans from clients, run by the one executor (docs/acquisition.md).

A servicer translates only: ``CreateScan`` turns the Plan message into a plan and asks the
executor (``actors.acquisition``) to check and store it, exactly as a script's ``run_plan`` or
``benchctl scan`` does; every status, event and table comes from the executor. Scans are the
executor's plans, so a plan started by a script is listed here too.

Events are pulled, not pushed: the servicer asks the executor's event log for the next batch
after the last one it sent and awaits ``send_message`` (HTTP/2 flow control) before asking
again, so a slow client reads behind in the log and never slows the plan or loses an event
(one further behind than the log keeps gets a gap event). The table is copied out on the trio
side and turned into Arrow IPC in a worker thread, at most about 16 MiB per reply.
"""

from __future__ import annotations

import contextlib
from typing import Any

import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from benchd.v1 import plan_pb2, scan_grpc
from benchd.v1 import scan_pb2 as pb
from runtime import Subscription

from ..acquisition import (
    EXECUTOR_NAME,
    AbortPlan,
    CheckPlan,
    CreatePlan,
    EventLog,
    GetPlan,
    ListPlans,
    PausePlan,
    PlanEvent,
    PlanEvents,
    PlanStatus,
    PlanTable,
    ResumePlan,
    StartPlan,
    StopPlan,
    Table,
    WatchPlan,
)
from ._context import EdgeContext
from ._plan_codec import (
    EncodedPlans,
    brief_status_to_pb,
    check_to_pb,
    event_to_pb,
    plan_from_pb,
)
from .errors import invalid
from .hardware import receive

MAX_ID = 64  # characters of a scan id
EVENT_BATCH = 256
TABLE_BYTES = 16 * 1024 * 1024  # per GetScanTable reply


def _id(value: str) -> str:
    if not value or len(value) > MAX_ID:
        shown = value if len(value) <= MAX_ID else f"{value[:MAX_ID]}… ({len(value)} characters)"
        raise invalid(f"id {shown!r}: a scan id such as 'p3' (ListScans lists them)")
    return value


async def next_events(log: EventLog, since: int, batch: int = EVENT_BATCH) -> list[PlanEvent]:
    """Up to ``batch`` events from ``since`` on, waiting for the first; [] once the log has
    closed and everything was read (trio side)."""
    events: list[PlanEvent] = []
    async with contextlib.aclosing(log.follow(since)) as follower:
        async for event in follower:
            events.append(event)
            if len(events) >= batch or event.seq + 1 >= log.count:
                break
    return events


class ScanServicer(scan_grpc.ScanBase):
    def __init__(self, context: EdgeContext) -> None:
        self.ctx = context
        self.plans = EncodedPlans()

    def _executor(self) -> Any:
        return self.ctx.ref(EXECUTOR_NAME)

    async def _ask(self, stream: Stream[Any, Any], message: Any, timeout: float = 30.0) -> Any:
        return await self.ctx.request(stream, self._executor(), message, default=timeout)

    async def _reply(self, stream: Stream[Any, pb.ScanStatus], message: Any) -> None:
        status: PlanStatus = await self._ask(stream, message)
        await stream.send_message(self.plans.status(status))

    def _origin(self, stream: Stream[Any, Any]) -> str:
        return f"client {self.ctx.client(stream).name}"

    async def ValidatePlan(self, stream: Stream[plan_pb2.Plan, pb.PlanCheck]) -> None:
        plan = plan_from_pb(await receive(stream))
        check = await self._ask(stream, CheckPlan(plan))
        await stream.send_message(check_to_pb(check))

    async def CreateScan(self, stream: Stream[pb.CreateScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        if not request.HasField("plan"):
            raise invalid("plan: required (a Plan with one of count, line, list, grid, …)")
        plan = plan_from_pb(request.plan)
        message = CreatePlan(plan, self._origin(stream), start=request.start)
        await self._reply(stream, message)

    async def StartScan(self, stream: Stream[pb.ScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        await self._reply(stream, StartPlan(_id(request.id)))

    async def PauseScan(self, stream: Stream[pb.ScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        await self._reply(stream, PausePlan(_id(request.id)))

    async def ResumeScan(self, stream: Stream[pb.ScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        await self._reply(stream, ResumePlan(_id(request.id)))

    async def StopScan(self, stream: Stream[pb.StopScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        reason = request.reason[:200] or f"stopped by {self.ctx.client(stream).name}"
        await self._reply(stream, StopPlan(_id(request.id), reason))

    async def AbortScan(self, stream: Stream[pb.StopScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        reason = request.reason[:200] or f"aborted by {self.ctx.client(stream).name}"
        await self._reply(stream, AbortPlan(_id(request.id), reason))

    async def GetScan(self, stream: Stream[pb.ScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        await self._reply(stream, GetPlan(_id(request.id)))

    async def ListScans(self, stream: Stream[pb.ListScansRequest, pb.ListScansResponse]) -> None:
        await receive(stream)
        listed = await self._ask(stream, ListPlans())
        scans = [brief_status_to_pb(s) for s in listed]
        await stream.send_message(pb.ListScansResponse(scans=scans))

    async def StreamScan(self, stream: Stream[pb.ScanRequest, pb.ScanStatus]) -> None:
        request = await receive(stream)
        plan_id = _id(request.id)
        await self._ask(stream, GetPlan(plan_id))  # NOT_FOUND answered here
        executor = self._executor()

        async def produce(push: Any) -> None:
            subscription: Subscription[PlanStatus] = await executor.ask(WatchPlan(plan_id))
            async for sample in subscription:
                push(self.plans.status(sample.value))
                if sample.value.state.finished:
                    return
            raise GRPCError(Status.UNAVAILABLE, "the plan executor restarted; stream again")

        # capacity 1: latest-only, a slow client skips intermediate updates, never the last.
        async for item in self.ctx.bridge.stream(produce, capacity=1):
            await stream.send_message(item)

    async def StreamScanEvents(self, stream: Stream[pb.ScanEventsRequest, pb.ScanEvent]) -> None:
        request = await receive(stream)
        log: EventLog = await self._ask(stream, PlanEvents(_id(request.id)))
        since = request.since
        while True:
            events = await self.ctx.bridge.call(lambda since=since: next_events(log, since))  # type: ignore[misc]
            if not events:
                return
            for event in events:
                await stream.send_message(event_to_pb(event))
            since = events[-1].seq + 1

    async def GetScanTable(self, stream: Stream[pb.ScanTableRequest, pb.ScanTable]) -> None:
        request = await receive(stream)
        plan_id = _id(request.id)
        table: Table = await self._ask(stream, PlanTable(plan_id))
        status: PlanStatus = await self._ask(stream, GetPlan(plan_id))
        fitting = max(1, TABLE_BYTES // (8 * max(1, len(table.columns))))
        limit = min(request.limit or fitting, fitting)
        start = request.start

        async def export() -> tuple[bytes, int, int]:
            total = table.rows
            chunk = table.snapshot(start, start + limit)
            data = await trio.to_thread.run_sync(chunk.ipc)
            return data, chunk.rows, total

        data, rows, total = await self.ctx.bridge.call(export)
        await stream.send_message(
            pb.ScanTable(
                arrow_ipc=data,
                start=start,
                rows=rows,
                total=total,
                finished=status.state.finished,
            )
        )
