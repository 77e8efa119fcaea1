"""Storage service: runs (start, stop, status, progress stream, files), the camera's ring buffer
and per-tap accounting.

StartRun goes to the acquisition executor, which records the run as a count plan (frames for
``frames`` or ``duration``, every reading source streaming for the run's length; see
``actors/acquisition/recording.py``); the rest goes to the recorder actor
(``actors/pipeline/recorder.py``), which holds the bench's one run slot. Both refuse with the
kernel's errors — a bad name is INVALID_ARGUMENT, a second run FAILED_PRECONDITION, a full disk
RESOURCE_EXHAUSTED — so the statuses and messages are the same as everywhere else.
"""

from __future__ import annotations

import math
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from benchd.v1 import storage_grpc
from benchd.v1 import storage_pb2 as pb
from runtime import Subscription

from ..acquisition.executor import EXECUTOR_NAME
from ..pipeline.frame_ring import GetRingInfo, RingInfo
from ..pipeline.nexus_file import to_json
from ..pipeline.recorder import (
    RECORDER_NAME,
    GetRunStatus,
    ListRuns,
    RunFile,
    StartRun,
    StopRun,
    WatchRun,
)
from ..pipeline.run_status import RunOutcome, RunState, RunStatus
from ..pipeline.taps import GetTapStatistics
from ._context import EdgeContext
from ._convert import json_object
from ._guard import receive
from .errors import invalid

STATES = {
    RunState.IDLE: pb.RUN_STATE_IDLE,
    RunState.RECORDING: pb.RUN_STATE_RECORDING,
    RunState.FINISHING: pb.RUN_STATE_FINISHING,
    RunState.COMPLETED: pb.RUN_STATE_COMPLETED,
    RunState.FAILED: pb.RUN_STATE_FAILED,
}
RING_SUFFIX = ".ring"  # the bench names each camera's ring actor "<camera>.ring"


def status_message(status: RunStatus) -> pb.RunStatus:
    return pb.RunStatus(
        name=status.name,
        path=status.path,
        state=STATES[status.state],
        started=status.started,
        ended=status.ended,
        frames_expected=status.frames_expected,
        frames_received=status.frames_received,
        frames_written=status.frames_written,
        frames_committed=status.frames_committed,
        frames_dropped=status.frames_dropped,
        frames_missing=status.frames_missing,
        writer_lag=status.writer_lag,
        readings_recorded=status.readings_recorded,
        readings_lost=status.readings_lost,
        parameter_changes=status.parameter_changes,
        parameter_changes_skipped=status.parameter_changes_skipped,
        error=status.error,
        end_record_json=to_json(status.end_record) if status.end_record else "",
        outcome=status.outcome,
        frames_discarded=status.frames_discarded,
        readings_discarded=status.readings_discarded,
        scan_points=status.scan_points,
        parameter_changes_discarded=status.parameter_changes_discarded,
    )


def run_file_message(run: RunFile) -> pb.RunFile:
    return pb.RunFile(
        name=run.name,
        path=run.path,
        size_bytes=run.size_bytes,
        modified=run.modified,
        status=run.status,
        frames_written=run.frames_written,
        readings_recorded=run.readings_recorded,
        reason=run.reason,
        error=run.error,
    )


def start_request(request: pb.StartRunRequest) -> StartRun:
    """The recorder's StartRun; INVALID_ARGUMENT for what the wire format itself gets wrong."""
    metadata: dict[str, Any] = dict(request.metadata)
    metadata.update(json_object(request.metadata_json, "metadata_json", '{"sample": "quartz"}'))
    if not math.isfinite(request.duration_s) or request.duration_s < 0:
        raise invalid("duration_s must be 0 (no limit) or a positive number of seconds")
    return StartRun(
        request.name,
        metadata=metadata,
        frames=request.frames or None,
        duration=request.duration_s or None,
        compression=request.compression,  # "": the bench's default ([storage] compression)
        record_frames=not request.readings_only,
    )


class StorageServicer(storage_grpc.StorageBase):
    def __init__(self, context: EdgeContext) -> None:
        self.ctx = context

    def _recorder(self) -> Any:
        return self.ctx.ref(RECORDER_NAME)

    async def StartRun(self, stream: Stream[pb.StartRunRequest, pb.RunStatus]) -> None:
        request = start_request(await receive(stream))
        executor = self.ctx.ref(EXECUTOR_NAME)  # a recording is a plan (frames, streams)
        status = await self.ctx.request(stream, executor, request, default=30.0)
        await stream.send_message(status_message(status))

    async def StopRun(self, stream: Stream[pb.StopRunRequest, pb.RunStatus]) -> None:
        request = await receive(stream)
        outcome = RunOutcome.COMPLETED if request.complete else RunOutcome.STOPPED
        message = StopRun(request.reason or "stopped by user", outcome)
        status = await self.ctx.request(stream, self._recorder(), message, default=120.0)
        await stream.send_message(status_message(status))

    async def GetRunStatus(self, stream: Stream[pb.RunStatusRequest, pb.RunStatus]) -> None:
        await receive(stream)
        status = await self.ctx.request(stream, self._recorder(), GetRunStatus())
        await stream.send_message(status_message(status))

    async def StreamRunStatus(self, stream: Stream[pb.RunStatusRequest, pb.RunStatus]) -> None:
        await receive(stream)
        recorder = self._recorder()

        async def produce(push: Any) -> None:
            subscription: Subscription[RunStatus] = await recorder.ask(WatchRun())
            async for sample in subscription:
                push(status_message(sample.value))
            raise GRPCError(Status.UNAVAILABLE, "the recorder restarted; stream again")

        async for item in self.ctx.bridge.stream(produce, capacity=1):
            await stream.send_message(item)

    async def ListRuns(self, stream: Stream[pb.ListRunsRequest, pb.ListRunsResponse]) -> None:
        await receive(stream)
        runs = await self.ctx.request(stream, self._recorder(), ListRuns())
        await stream.send_message(pb.ListRunsResponse(runs=[run_file_message(r) for r in runs]))

    async def GetRingInfo(self, stream: Stream[pb.RingInfoRequest, pb.RingInfo]) -> None:
        request = await receive(stream)
        camera = request.camera
        if not camera:  # the bench's first ring (it stays up while its camera restarts)
            rings = [n for n in self.ctx.device_names() if n.endswith(RING_SUFFIX)]
            if not rings:
                raise GRPCError(Status.NOT_FOUND, "this bench has no camera ring")
            camera = rings[0].removesuffix(RING_SUFFIX)
        ring = self.ctx.ref(f"{camera}{RING_SUFFIX}")
        info: RingInfo = await self.ctx.request(stream, ring, GetRingInfo())
        await stream.send_message(
            pb.RingInfo(
                camera=camera,
                path=info.path,
                version=info.version,
                capacity=info.capacity,
                slot_size=info.slot_size,
                header_size=info.header_size,
                slot_header_size=info.slot_header_size,
                write_seq=info.write_seq,
                epoch=info.epoch,
                frames_skipped=info.frames_skipped,
            )
        )

    async def ListTaps(self, stream: Stream[pb.ListTapsRequest, pb.ListTapsResponse]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        stats = await self.ctx.request(stream, ref, GetTapStatistics(request.stream or "frames"))
        await stream.send_message(
            pb.ListTapsResponse(
                taps=[
                    pb.TapStatistics(
                        name=s.name,
                        policy=s.policy.value,
                        capacity=s.capacity,
                        offered=s.offered,
                        delivered=s.delivered,
                        pending=s.pending,
                        dropped=s.dropped,
                        skipped=s.skipped,
                    )
                    for s in stats
                ]
            )
        )
