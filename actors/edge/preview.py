"""Preview service: a camera's live frames, reduced in the daemon for a GUI over a network.

Why: ``Hardware.StreamFrames`` sends full frames (8 MiB each, ~400 MB/s from a Prime BSI at
full rate); a live view needs ~0.5 MiB a frame at 20-30 frames a second. The stream follows
the camera through a latest-only tap, like StreamFrames, so a slow client or one that dies
never slows the camera or a run being recorded; it keeps at most ``max_fps`` frames a second
(one frame of credit, so the average reaches the limit when the camera is faster) and reduces
each kept frame by an integer factor to fit ``max_width`` x ``max_height``.

The reduction and the message's encoding run in a worker thread (``trio.to_thread``), at most
:data:`REDUCERS` at a time for all preview streams together, so the event loop that handles
e-stops never does per-pixel work and many viewers cannot take every core. Measured on the
full 2048 x 2048 frame (benchmarks/preview.py, docs/performance.md): ~2 ms to bin it 4x4 by
strided additions plus ~1 ms for its min / max / saturated count; numpy releases the GIL for
those loops.

Error handling: limits out of range are INVALID_ARGUMENT naming the allowed range; a device
that is not a camera is UNIMPLEMENTED (with the devices that are); the camera stopping or
restarting ends the stream with UNAVAILABLE ("stream again").
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from benchd.v1 import preview_grpc
from benchd.v1 import preview_pb2 as pb

from ..capabilities import Capability, Frame, GetAcquisitionStatus
from ..pipeline.subscription import add_tap, remove_tap
from ..pipeline.taps import TapClosed, TapPolicy
from ._codec import Encoded, _varint
from ._context import EdgeContext
from .errors import grpc_error, invalid
from .frames import CameraHardwareServicer
from .hardware import receive

DEFAULT_FPS = 25.0
MIN_FPS, MAX_FPS = 0.1, 100.0
DEFAULT_SIZE = 512
MIN_SIZE, MAX_SIZE = 16, 4096
#: Reductions running at once, for every preview stream of this daemon together.
REDUCERS = 2
#: Preview streams open at once (each is a tap on the camera and a reduction per frame sent).
MAX_STREAMS = 32

REDUCTIONS = {
    pb.PREVIEW_REDUCTION_UNSPECIFIED: pb.PREVIEW_REDUCTION_MEAN,
    pb.PREVIEW_REDUCTION_MEAN: pb.PREVIEW_REDUCTION_MEAN,
    pb.PREVIEW_REDUCTION_DECIMATE: pb.PREVIEW_REDUCTION_DECIMATE,
    pb.PREVIEW_REDUCTION_MAX: pb.PREVIEW_REDUCTION_MAX,
}
_DATA_TAG = _varint((24 << 3) | 2)  # PreviewFrame.data, length-delimited
_SKIPPED_TAG = _varint(21 << 3)  # PreviewFrame.skipped, varint
_stream_numbers = itertools.count(1)

Pixels = npt.NDArray[np.uint16]


def reduction_factor(width: int, height: int, max_width: int, max_height: int) -> int:
    """The smallest integer factor that fits ``width`` x ``height`` into the maximum size
    (never so large that no pixel is left)."""
    factor = max(1, math.ceil(width / max_width), math.ceil(height / max_height))
    return max(1, min(factor, width, height))


def reduce_pixels(pixels: Pixels, factor: int, reduction: int) -> Pixels:
    """``pixels`` reduced by ``factor`` along both axes; a partial block at the right or bottom
    edge is left out (as the camera's own binning does).

    MEAN and MAX add (or take the maximum of) the ``factor`` strided row views first, then the
    ``factor`` strided column views: ~10x faster here than ``reshape(...).sum(axis=(1, 3))``,
    which walks the frame in a cache-hostile order.
    """
    if factor == 1:
        return np.ascontiguousarray(pixels)
    rows, columns = pixels.shape[0] // factor, pixels.shape[1] // factor
    cropped = pixels[: rows * factor, : columns * factor]
    if reduction == pb.PREVIEW_REDUCTION_DECIMATE:
        return np.ascontiguousarray(cropped[::factor, ::factor])
    if reduction == pb.PREVIEW_REDUCTION_MAX:
        lines = cropped[0::factor].copy()
        for offset in range(1, factor):
            np.maximum(lines, cropped[offset::factor], out=lines)
        out = lines[:, 0::factor].copy()
        for offset in range(1, factor):
            np.maximum(out, lines[:, offset::factor], out=out)
        return out
    wide = np.uint32 if factor <= 256 else np.uint64  # 65535 * factor² must fit
    sums = cropped[0::factor].astype(wide)
    for offset in range(1, factor):
        np.add(sums, cropped[offset::factor], out=sums)
    total = sums[:, 0::factor].copy()
    for offset in range(1, factor):
        np.add(total, sums[:, offset::factor], out=total)
    np.floor_divide(total, factor * factor, out=total)
    return total.astype(np.uint16)


def encode_preview(
    device: str, frame: Frame, factor: int, reduction: int
) -> tuple[bytes, memoryview]:
    """The message's small fields (all but ``skipped`` and ``data``) and its pixel buffer.

    Runs in a worker thread: the reduction and the full frame's statistics are the per-pixel
    work of the stream.
    """
    started = time.perf_counter()
    full = frame.pixels
    small = reduce_pixels(full, factor, reduction).astype("<u2", copy=False)
    low, high = int(full.min()), int(full.max())
    full_scale = (1 << frame.bit_depth) - 1 if 0 < frame.bit_depth <= 16 else 65535
    saturated = int(np.count_nonzero(full >= full_scale)) if high >= full_scale else 0
    roi = frame.roi
    head = pb.PreviewFrame(
        device=device,
        frame_number=frame.frame_number,
        timestamp=frame.timestamp,
        exposure_ms=frame.exposure_ms,
        width=small.shape[1],
        height=small.shape[0],
        factor=factor,
        reduction=reduction,  # type: ignore[arg-type]
        roi_x=roi.x,
        roi_y=roi.y,
        roi_width=roi.width,
        roi_height=roi.height,
        bin_x=roi.bin_x,
        bin_y=roi.bin_y,
        source_width=full.shape[1],
        source_height=full.shape[0],
        bit_depth=frame.bit_depth,
        source_min=low,
        source_max=high,
        saturated=saturated,
        reduce_ms=(time.perf_counter() - started) * 1000.0,
        pixel_format="uint16le",
    ).SerializeToString()
    return head, memoryview(small.data).cast("B")


def preview_message(head: bytes, pixels: memoryview, skipped: int) -> Encoded:
    """The whole ``PreviewFrame``: protobuf readers take fields in any order."""
    return Encoded(
        b"".join((head, _SKIPPED_TAG, _varint(skipped), _DATA_TAG, _varint(pixels.nbytes), pixels))
    )


def _limits(request: pb.PreviewRequest) -> tuple[float, int, int, int]:
    fps = request.max_fps or DEFAULT_FPS
    if not (math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        raise invalid(
            f"max_fps must be {MIN_FPS:g} to {MAX_FPS:g} (0: {DEFAULT_FPS:g}),"
            f" got {request.max_fps}"
        )
    sizes = []
    for name in ("max_width", "max_height"):
        size = getattr(request, name) or DEFAULT_SIZE
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise invalid(
                f"{name} must be {MIN_SIZE} to {MAX_SIZE} pixels (0: {DEFAULT_SIZE}), got {size}"
            )
        sizes.append(size)
    if request.reduction not in REDUCTIONS:
        allowed = ", ".join(pb.PreviewReduction.Name(r) for r in REDUCTIONS)
        raise invalid(f"reduction {request.reduction} is not one of {allowed}")
    return fps, sizes[0], sizes[1], REDUCTIONS[request.reduction]


class PreviewServicer(preview_grpc.PreviewBase):
    def __init__(self, context: EdgeContext) -> None:
        self.ctx = context
        self._hardware = CameraHardwareServicer(context)  # its capability-aware asking
        self._reducers = trio.CapacityLimiter(REDUCERS)
        self.open_streams = 0

    async def StreamPreview(self, stream: Stream[pb.PreviewRequest, pb.PreviewFrame]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        fps, max_width, max_height, reduction = _limits(request)
        await self._hardware._ask(
            stream, ref, GetAcquisitionStatus(), Capability.FRAME_PRODUCER, "stream a preview"
        )
        if self.open_streams >= MAX_STREAMS:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"{MAX_STREAMS} preview streams are open on this daemon (the most it serves);"
                " close one, or share one viewer",
            )
        gap = 1.0 / fps
        tap = f"grpc-preview-{next(_stream_numbers)}"
        reducers = self._reducers

        async def produce(push: Any) -> None:
            reader = await add_tap(ref, "frames", tap, TapPolicy.LATEST)
            seen, due = 0, -math.inf
            try:
                while True:
                    try:
                        frame: Frame = await reader.receive()
                    except TapClosed:
                        break
                    seen += 1
                    now = trio.current_time()
                    if now < due:
                        continue  # over the rate: the next frame will do
                    # paced from the first frame sent, with at most one frame of credit
                    due = now + gap if due == -math.inf else max(due + gap, now - gap)
                    height, width = frame.pixels.shape
                    factor = reduction_factor(width, height, max_width, max_height)
                    head, pixels = await trio.to_thread.run_sync(
                        encode_preview, ref.name, frame, factor, reduction, limiter=reducers
                    )
                    push((head, pixels, seen + reader.statistics().skipped))
            finally:
                with trio.CancelScope(shield=True):
                    await remove_tap(ref, "frames", tap)
            raise GRPCError(
                Status.UNAVAILABLE, f"camera {ref.name!r} stopped or restarted; stream again"
            )

        sent = 0
        self.open_streams += 1
        try:
            async for head, pixels, offered in self.ctx.bridge.stream(produce, capacity=1):
                sent += 1
                await stream.send_message(preview_message(head, pixels, offered - sent))  # type: ignore[arg-type]
        except GRPCError:
            raise
        except Exception as exc:
            raise grpc_error(exc) from exc
        finally:
            self.open_streams -= 1
