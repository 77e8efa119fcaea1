"""Hardware service, the camera's part: StartStream / StopStream / GetAcquisition /
SoftwareTrigger drive its acquisition, and StreamFrames follows it through a latest-only tap —
so a slow client, or one that dies mid-stream, never slows the camera or the run being recorded.

:class:`CameraHardwareServicer` is the Hardware servicer the edge serves: the device, parameter,
motion and reading RPCs of ``hardware.py`` plus these.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from benchd.v1 import hardware_pb2 as pb

from ..capabilities import (
    AcquisitionStatus,
    Capability,
    GetAcquisitionStatus,
    StartAcquisition,
    StopAcquisition,
)
from ..capabilities import SoftwareTrigger as TriggerNow
from ..pipeline.subscription import add_tap, remove_tap
from ..pipeline.taps import TapClosed, TapPolicy
from ._codec import encode_frame
from ._guard import receive
from .errors import grpc_error, invalid
from .hardware import HardwareServicer

MAX_FPS = 1000.0
_stream_numbers = itertools.count(1)


def acquisition_message(device: str, status: AcquisitionStatus) -> pb.AcquisitionStatus:
    return pb.AcquisitionStatus(
        device=device,
        running=status.running,
        frames_requested=status.frames_requested or 0,
        frames_acquired=status.frames_acquired,
        frames_missing=status.frames_missing,
        frames_lost=status.frames_lost,
        last_frame_number=max(0, status.last_frame_number),
        fps=status.fps,
        error=status.error,
        frames_zero=status.frames_zero,
        stalls=status.stalls,
        warning=status.warning,
        overwrite_fallback=status.overwrite_fallback,
    )


class CameraHardwareServicer(HardwareServicer):
    """The camera's RPCs (FrameProducer, Triggerable) on top of the rest of Hardware."""

    async def _camera(self, stream: Stream[Any, Any], message: Any, what: str) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        status = await self._ask(stream, ref, message(request), Capability.FRAME_PRODUCER, what)
        if not isinstance(status, AcquisitionStatus):
            status = await self._ask(
                stream, ref, GetAcquisitionStatus(), Capability.FRAME_PRODUCER, what
            )
        await stream.send_message(acquisition_message(ref.name, status))

    async def StartStream(
        self, stream: Stream[pb.StartStreamRequest, pb.AcquisitionStatus]
    ) -> None:
        await self._camera(stream, lambda r: StartAcquisition(r.frames or None), "acquire frames")

    async def StopStream(self, stream: Stream[pb.DeviceRequest, pb.AcquisitionStatus]) -> None:
        await self._camera(stream, lambda r: StopAcquisition(), "acquire frames")

    async def GetAcquisition(self, stream: Stream[pb.DeviceRequest, pb.AcquisitionStatus]) -> None:
        await self._camera(stream, lambda r: GetAcquisitionStatus(), "acquire frames")

    async def SoftwareTrigger(self, stream: Stream[pb.DeviceRequest, pb.AcquisitionStatus]) -> None:
        await self._camera(stream, lambda r: TriggerNow(), "take a software trigger")

    async def StreamFrames(self, stream: Stream[pb.StreamFramesRequest, pb.Frame]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        if not (math.isfinite(request.max_fps) and 0 <= request.max_fps <= MAX_FPS):
            raise invalid(f"max_fps must be 0 (no limit) to {MAX_FPS:g}, got {request.max_fps}")
        gap = 1.0 / request.max_fps if request.max_fps > 0 else 0.0
        tap = f"grpc-frames-{next(_stream_numbers)}"
        await self._ask(
            stream, ref, GetAcquisitionStatus(), Capability.FRAME_PRODUCER, "stream frames"
        )

        async def produce(push: Any) -> None:
            reader = await add_tap(ref, "frames", tap, TapPolicy.LATEST)
            seen, last = 0, -math.inf
            try:
                while True:
                    try:
                        frame = await reader.receive()
                    except TapClosed:
                        break
                    seen += 1
                    now = trio.current_time()
                    if now - last < gap:
                        continue
                    last = now
                    push((frame, seen + reader.statistics().skipped))
            finally:
                with trio.CancelScope(shield=True):
                    await remove_tap(ref, "frames", tap)
            raise GRPCError(
                Status.UNAVAILABLE, f"camera {ref.name!r} stopped or restarted; stream again"
            )

        sent = 0
        try:
            async for frame, offered in self.ctx.bridge.stream(produce, capacity=1):
                sent += 1
                await stream.send_message(encode_frame(ref.name, frame, offered - sent))  # type: ignore[arg-type]
        except GRPCError:
            raise
        except Exception as exc:
            raise grpc_error(exc) from exc
