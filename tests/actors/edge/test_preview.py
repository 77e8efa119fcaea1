"""Preview.StreamPreview: reduced live frames for GUIs, never at the run's expense."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from actors.edge import preview as preview_module
from actors.edge.preview import reduce_pixels, reduction_factor
from benchd.v1 import common_pb2, preview_grpc, storage_pb2
from benchd.v1 import hardware_pb2 as hw
from benchd.v1 import preview_pb2 as pb
from runtime.config import EdgeConfig

from .harness import Client, open_client
from .test_auth import OBSERVER, bearer, tokens_file

ROI = "0,0,256,128"


def test_the_factor_fits_the_frame_into_the_maximum_size() -> None:
    assert reduction_factor(2048, 2048, 512, 512) == 4
    assert reduction_factor(2048, 2048, 500, 512) == 5  # never larger than asked
    assert reduction_factor(256, 128, 512, 512) == 1
    assert reduction_factor(2048, 100, 16, 16) == 100  # one row is left, not none


@pytest.mark.parametrize("shape", [(64, 96), (67, 101)])
@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_each_reduction_is_the_block_mean_max_or_first_pixel(
    shape: tuple[int, int], factor: int
) -> None:
    pixels = np.random.default_rng(7).integers(0, 65536, shape, dtype=np.uint16)
    rows, columns = shape[0] // factor, shape[1] // factor
    blocks = pixels[: rows * factor, : columns * factor].reshape(rows, factor, columns, factor)
    mean = reduce_pixels(pixels, factor, pb.PREVIEW_REDUCTION_MEAN)
    assert mean.dtype == np.uint16 and mean.shape == (rows, columns)
    exact = blocks.astype(np.uint64).sum(axis=(1, 3)) // (factor * factor)
    assert np.array_equal(mean, exact.astype(np.uint16))
    biggest = reduce_pixels(pixels, factor, pb.PREVIEW_REDUCTION_MAX)
    assert np.array_equal(biggest, blocks.max(axis=(1, 3)))
    first = reduce_pixels(pixels, factor, pb.PREVIEW_REDUCTION_DECIMATE)
    assert np.array_equal(first, blocks[:, 0, :, 0])
    assert first.flags.c_contiguous and biggest.flags.c_contiguous


async def small_roi(client: Client) -> None:
    await client.unary(
        client.hardware.SetParameter,
        hw.SetParameterRequest(device="camera", name="roi", value=common_pb2.Value(text=ROI)),
    )


async def test_a_preview_is_reduced_in_the_daemon_and_limited_to_the_rate_asked(
    client: Client,
) -> None:
    await small_roi(client)
    await client.unary(client.hardware.StartStream, hw.StartStreamRequest(device="camera"))
    preview = preview_grpc.PreviewStub(client.channel)
    request = pb.PreviewRequest(device="camera", max_fps=5, max_width=64, max_height=64)
    started = time.monotonic()
    frames = await client.stream(preview.StreamPreview, request, 6)
    elapsed = time.monotonic() - started
    await client.unary(client.hardware.StopStream, hw.DeviceRequest(device="camera"))
    first, last = frames[0], frames[-1]
    assert (first.width, first.height, first.factor) == (64, 32, 4)
    assert (first.roi_x, first.roi_y, first.roi_width, first.roi_height) == (0, 0, 256, 128)
    assert (first.source_width, first.source_height, first.bin_x, first.bin_y) == (256, 128, 1, 1)
    assert first.reduction == pb.PREVIEW_REDUCTION_MEAN and first.pixel_format == "uint16le"
    pixels = np.frombuffer(first.data, "<u2").reshape(first.height, first.width)
    assert first.source_min <= pixels.min() <= pixels.max() <= first.source_max
    assert first.bit_depth == 16 and first.reduce_ms >= 0
    # 5 a second at most, with one frame of credit: 6 frames take at least ~0.8 s
    assert elapsed >= 0.75
    assert last.frame_number - first.frame_number > len(frames)  # the camera runs faster
    assert last.skipped > first.skipped


async def test_bad_limits_are_refused_with_the_allowed_range(client: Client) -> None:
    preview = preview_grpc.PreviewStub(client.channel)
    cases = [
        (pb.PreviewRequest(device="camera", max_fps=1000), "max_fps must be 0.1 to 100"),
        (pb.PreviewRequest(device="camera", max_width=8), "max_width must be 16 to 4096"),
        (pb.PreviewRequest(device="camera", max_height=10**6), "max_height must be 16 to 4096"),
        (pb.PreviewRequest(device="camera", reduction=9), "reduction 9 is not one of"),  # type: ignore[arg-type]
    ]
    for request, expected in cases:
        assert expected in await client.fails(
            Status.INVALID_ARGUMENT, preview.StreamPreview, request
        )
    message = await client.fails(
        Status.UNIMPLEMENTED, preview.StreamPreview, pb.PreviewRequest(device="power_meter")
    )
    assert "not FrameProducer" in message and "camera" in message
    await client.fails(Status.NOT_FOUND, preview.StreamPreview, pb.PreviewRequest(device="x"))


async def test_a_slow_preview_client_never_costs_the_run_a_frame(client: Client) -> None:
    await small_roi(client)
    await client.unary(
        client.storage.StartRun, storage_pb2.StartRunRequest(name="watched", frames=80)
    )
    preview = preview_grpc.PreviewStub(client.channel)

    async def busy() -> None:
        await asyncio.sleep(1.0)  # a GUI busy drawing, its stream open: the run goes on

    frames = await client.stream(
        preview.StreamPreview,
        pb.PreviewRequest(device="camera", max_fps=100, reduction=pb.PREVIEW_REDUCTION_MAX),
        4,
        between=busy,
    )
    status = await client.unary(client.storage.GetRunStatus, storage_pb2.RunStatusRequest())
    while status.state in (storage_pb2.RUN_STATE_RECORDING, storage_pb2.RUN_STATE_FINISHING):
        await trio.sleep(0.1)
        status = await client.unary(client.storage.GetRunStatus, storage_pb2.RunStatusRequest())
    assert (status.frames_written, status.frames_dropped, status.frames_missing) == (80, 0, 0)
    assert all(f.reduction == pb.PREVIEW_REDUCTION_MAX for f in frames)
    assert frames[0].factor == 1  # 256 x 128 fits the default 512 x 512 as it is


async def test_observers_may_watch_the_preview(tmp_path: Path) -> None:
    edge = EdgeConfig(port=0, tokens_file=tokens_file(tmp_path), presets_dir=tmp_path)
    async with open_client(tmp_path, edge=edge) as client:
        operator = bearer("operator-token-0123456789")
        await client.unary(
            client.hardware.SetParameter,
            hw.SetParameterRequest(device="camera", name="roi", value=common_pb2.Value(text=ROI)),
            metadata=operator,
        )
        await client.unary(
            client.hardware.StartStream, hw.StartStreamRequest(device="camera"), metadata=operator
        )
        preview = preview_grpc.PreviewStub(client.channel)
        frames = await client.stream(
            preview.StreamPreview,
            pb.PreviewRequest(device="camera"),
            1,
            metadata=bearer(OBSERVER),
        )
        assert frames[0].width == 256
        await client.unary(
            client.hardware.StopStream, hw.DeviceRequest(device="camera"), metadata=operator
        )


async def test_preview_streams_are_bounded(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preview_module, "MAX_STREAMS", 1)
    await small_roi(client)
    await client.unary(client.hardware.StartStream, hw.StartStreamRequest(device="camera"))
    preview = preview_grpc.PreviewStub(client.channel)
    refused: list[str] = []

    async def second() -> None:
        try:
            async with preview.StreamPreview.open() as stream:
                await stream.send_message(pb.PreviewRequest(device="camera"), end=True)
                await stream.recv_message()
        except GRPCError as error:
            assert error.status is Status.RESOURCE_EXHAUSTED
            refused.append(error.message or "")

    first = await client.stream(
        preview.StreamPreview, pb.PreviewRequest(device="camera"), 2, between=second
    )
    assert len(first) == 2 and "1 preview streams are open" in refused[0]
    # the first stream's end freed its place (the servicer counts down as it unwinds)
    again: list[pb.PreviewFrame] = []
    for _ in range(100):
        try:
            again = await client.stream(
                preview.StreamPreview, pb.PreviewRequest(device="camera"), 1
            )
            break
        except GRPCError as error:
            assert error.status is Status.RESOURCE_EXHAUSTED
            await trio.sleep(0.05)
    await client.unary(client.hardware.StopStream, hw.DeviceRequest(device="camera"))
    assert len(again) == 1
