"""Storage service and the camera's frame RPCs over real loopback gRPC."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import h5py
import numpy as np
import trio
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Status

from actors.pipeline.nexus_file import read_end_record
from actors.pipeline.ring_buffer import RingBufferReader
from actors.pipeline.subscription import add_tap
from actors.pipeline.taps import TapPolicy
from benchd.v1 import common_pb2
from benchd.v1 import estop_pb2 as estop_pb
from benchd.v1 import hardware_pb2 as hw
from benchd.v1 import health_pb2 as health_pb
from benchd.v1 import scan_pb2 as scan_pb
from benchd.v1 import storage_pb2 as pb
from benchd.v1.hardware_grpc import HardwareStub
from runtime import GetParameter

from .harness import Client

SMALL_ROI = "0,0,256,128"


async def small_frames(client: Client) -> None:
    await client.unary(
        client.hardware.SetParameter,
        hw.SetParameterRequest(device="camera", name="roi", value=common_pb2.Value(text=SMALL_ROI)),
    )


async def test_a_run_records_frames_and_reports_progress_until_done(
    client: Client, tmp_path: Path
) -> None:
    await small_frames(client)
    started = await client.unary(
        client.storage.StartRun,
        pb.StartRunRequest(
            name="grpc-run", frames=30, metadata={"sample": "quartz"}, metadata_json='{"n": 3}'
        ),
    )
    assert started.state == pb.RUN_STATE_RECORDING and started.path.endswith("_grpc-run.nxs")
    updates = await client.stream(client.storage.StreamRunStatus, pb.RunStatusRequest(), 2)
    assert updates[0].name == "grpc-run"  # the current status first, then progress
    final = updates[-1]
    while final.state not in (pb.RUN_STATE_COMPLETED, pb.RUN_STATE_FAILED):
        await trio.sleep(0.1)
        final = await client.unary(client.storage.GetRunStatus, pb.RunStatusRequest())
    assert final.state == pb.RUN_STATE_COMPLETED, final.error
    assert (final.frames_written, final.frames_dropped, final.frames_missing) == (30, 0, 0)
    assert json.loads(final.end_record_json)["status"] == "completed"
    path = Path(final.path)
    assert path.parent == tmp_path / "runs"
    with h5py.File(path, "r") as f:
        assert f["entry/data/data"].shape == (30, 128, 256)
        assert list(f["entry/instrument/camera/frame_number"]) == list(range(1, 31))
        manifest = json.loads(f["entry/manifest/json"][()])
    assert manifest["metadata"] == {"sample": "quartz", "n": 3}
    assert manifest["devices"]["camera"]["parameters"]["roi"]["value"] == SMALL_ROI
    runs = await client.unary(client.storage.ListRuns, pb.ListRunsRequest())
    assert [(r.status, r.frames_written) for r in runs.runs] == [("completed", 30)]
    assert read_end_record(path)["frames_expected"] == 30


async def test_bad_run_requests_get_statuses_that_say_what_is_allowed(client: Client) -> None:
    storage = client.storage
    for request, status, text in [
        (pb.StartRunRequest(name="a/b"), Status.INVALID_ARGUMENT, "1 to 64 characters"),
        (pb.StartRunRequest(name="x", compression="zip"), Status.INVALID_ARGUMENT, "allowed: none"),
        (pb.StartRunRequest(name="x", metadata_json="[1]"), Status.INVALID_ARGUMENT, "JSON object"),
        (
            pb.StartRunRequest(name="x", metadata_json="{"),
            Status.INVALID_ARGUMENT,
            "not valid JSON",
        ),
        (
            pb.StartRunRequest(name="x", frames=3, readings_only=True),
            Status.INVALID_ARGUMENT,
            "record_frames",
        ),
        (
            pb.StartRunRequest(name="x", duration_s=float("nan")),
            Status.INVALID_ARGUMENT,
            "duration_s",
        ),
    ]:
        assert text in await client.fails(status, storage.StartRun, request)
    assert "no run is recording" in await client.fails(
        Status.FAILED_PRECONDITION, storage.StopRun, pb.StopRunRequest()
    )
    await client.unary(storage.StartRun, pb.StartRunRequest(name="first", readings_only=True))
    assert "stop it" in await client.fails(
        Status.FAILED_PRECONDITION, storage.StartRun, pb.StartRunRequest(name="second")
    )
    stopped = await client.unary(storage.StopRun, pb.StopRunRequest(reason="enough"))
    assert stopped.state == pb.RUN_STATE_COMPLETED
    assert json.loads(stopped.end_record_json)["reason"] == "enough"
    assert "cannot acquire frames" in await client.fails(
        Status.UNIMPLEMENTED, client.hardware.StartStream, hw.StartStreamRequest(device="maitai")
    )
    assert "max_fps" in await client.fails(
        Status.INVALID_ARGUMENT,
        client.hardware.StreamFrames,
        hw.StreamFramesRequest(device="camera", max_fps=-1),
    )


async def test_a_slow_frame_stream_never_costs_the_run_a_frame(client: Client) -> None:
    await small_frames(client)
    await client.unary(client.storage.StartRun, pb.StartRunRequest(name="watched", frames=60))
    taps = await client.unary(
        client.storage.ListTaps, pb.ListTapsRequest(device="camera", stream="frames")
    )
    assert [t.name for t in taps.taps if t.policy == "lossless"] == ["run:watched"]

    async def read_slowly() -> list[hw.Frame]:
        """HTTP/2 flow control is the client's say: a window of about two frames means the
        daemon holds at most that much for it, and it skips to the newest frame."""
        received = []
        host, port = client.address.rsplit(":", 1)
        window = Configuration(http2_connection_window_size=2**17, http2_stream_window_size=2**17)
        channel = Channel(host, int(port), config=window)
        async with HardwareStub(channel).StreamFrames.open() as stream:
            await stream.send_message(hw.StreamFramesRequest(device="camera"), end=True)
            for _ in range(6):
                message = await stream.recv_message()
                received.append(message)
                await asyncio.sleep(0.2)  # a slow GUI
            await stream.cancel()
        channel.close()
        return received

    frames = await client.call(read_slowly)
    final = await client.unary(client.storage.GetRunStatus, pb.RunStatusRequest())
    while final.state in (pb.RUN_STATE_RECORDING, pb.RUN_STATE_FINISHING):
        await trio.sleep(0.1)
        final = await client.unary(client.storage.GetRunStatus, pb.RunStatusRequest())
    assert (final.frames_written, final.frames_dropped) == (60, 0)
    assert frames[-1].skipped > 0  # the stream skipped frames; the run did not
    numbers = [f.frame_number for f in frames]
    assert numbers[-1] - numbers[0] > len(numbers)
    pixels = np.frombuffer(frames[0].data, "<u2").reshape(frames[0].height, frames[0].width)
    assert pixels.shape == (128, 256) and pixels.max() > 0


async def test_the_ring_buffer_is_found_and_read_through_its_info(client: Client) -> None:
    await small_frames(client)
    started = await client.unary(
        client.hardware.StartStream, hw.StartStreamRequest(device="camera", frames=10)
    )
    assert started.running and started.frames_requested == 10
    status = started
    while status.running:
        await trio.sleep(0.05)
        status = await client.unary(
            client.hardware.GetAcquisition, hw.DeviceRequest(device="camera")
        )
    assert status.frames_acquired == 10
    info = await client.unary(client.storage.GetRingInfo, pb.RingInfoRequest())
    assert info.camera == "camera" and info.capacity == 16 and info.write_seq >= 1
    with RingBufferReader(info.path) as ring:
        assert ring.epoch == info.epoch
        latest = ring.latest()
        assert latest.pixels.shape == (128, 256) and latest.frame_number <= 10


async def test_health_reports_the_run_and_preview_skips(client: Client) -> None:
    await small_frames(client)
    idle = await client.unary(client.health.GetSystemHealth, health_pb.SystemHealthRequest())
    assert idle.run_state == "idle" and idle.writer_lag == 0
    idle_gui = await add_tap(client.bench.system.ref("camera"), "frames", "gui", TapPolicy.LATEST)
    run = await client.unary(client.storage.StartRun, pb.StartRunRequest(name="healthy", frames=40))
    while run.state in (pb.RUN_STATE_RECORDING, pb.RUN_STATE_FINISHING):
        await trio.sleep(0.05)
        run = await client.unary(client.storage.GetRunStatus, pb.RunStatusRequest())
    busy = await client.unary(client.health.GetSystemHealth, health_pb.SystemHealthRequest())
    assert busy.run_state == "completed"
    assert busy.run_frames_dropped == 0 and busy.run_frames_missing == 0
    assert busy.preview_frames_skipped >= idle_gui.statistics().skipped > 10  # never read
    idle_gui.close()


async def finished_run(client: Client) -> pb.RunStatus:
    status = await client.unary(client.storage.GetRunStatus, pb.RunStatusRequest())
    with trio.fail_after(60):
        while status.state in (pb.RUN_STATE_RECORDING, pb.RUN_STATE_FINISHING):
            await trio.sleep(0.05)
            status = await client.unary(client.storage.GetRunStatus, pb.RunStatusRequest())
    return status


async def test_a_duration_record_takes_frames_and_every_streaming_reading(
    client: Client,
) -> None:
    """Issue 15: ``record NAME --duration 5`` alone recorded 0 frames and 0 readings. A record
    is a count plan now: the camera live for the duration, every reading source streaming."""
    await small_frames(client)
    # ~25 fps: the simulated camera's 16-frame live buffer then covers ~0.6 s of a busy machine
    # keeping the daemon from fetching (at 86 fps it missed frames beside other work)
    await client.unary(
        client.hardware.SetParameter,
        hw.SetParameterRequest(device="camera", name="exposure", value=common_pb2.Value(number=40)),
    )
    meter = client.bench.system.ref("power_meter")
    assert (await meter.ask(GetParameter("streaming"))).value is False
    started = await client.unary(
        client.storage.StartRun, pb.StartRunRequest(name="timed", duration_s=1.0)
    )
    assert started.state == pb.RUN_STATE_RECORDING and started.path.endswith("_timed.nxs")
    assert (await meter.ask(GetParameter("streaming"))).value is True  # for the run's length
    final = await finished_run(client)
    record = json.loads(final.end_record_json)
    assert final.frames_written > 10 and final.frames_written == final.frames_received
    assert final.frames_dropped == 0  # the writer kept up
    if final.frames_missing:  # the simulated sensor starved of CPU (a loaded machine) missed
        # frames: the run says so, with the count, instead of looking complete
        assert final.state == pb.RUN_STATE_FAILED and record["status"] == "incomplete"
        assert f"{final.frames_missing} of {final.frames_expected} frames" in record["reason"]
    else:
        assert final.state == pb.RUN_STATE_COMPLETED, final.error
        assert (record["status"], record["reason"]) == ("completed", "duration reached")
    with h5py.File(final.path, "r") as f:
        frame_times = f["entry/instrument/camera/timestamp"][:]
        reading_times = f["entry/readings/power_meter/reading/time"][:]
        manifest = json.loads(f["entry/manifest/json"][()])
    assert len(reading_times) > 10 and reading_times[-1] - reading_times[0] > 0.5
    assert frame_times[-1] - frame_times[0] > 0.5  # frames all along the duration
    assert manifest["metadata"] == {}  # a record's metadata is the user's own
    assert manifest["run"]["recorded_by"]["plan"]["live"] is True
    # the bench is left as it was: the meter no longer streams, the camera is idle
    assert (await meter.ask(GetParameter("streaming"))).value is False
    acquisition = await client.unary(
        client.hardware.GetAcquisition, hw.DeviceRequest(device="camera")
    )
    assert not acquisition.running
    runs = await client.unary(client.storage.ListRuns, pb.ListRunsRequest())
    assert [(r.status, r.frames_written) for r in runs.runs] == [
        (record["status"], final.frames_written)  # ListRuns agrees with the end record
    ]
    scans = await client.unary(client.scan.ListScans, scan_pb.ListScansRequest())
    assert [s.origin for s in scans.scans] == ["record"]  # it ran as a plan


async def test_a_record_refuses_what_it_cannot_do_with_startruns_statuses(
    client: Client,
) -> None:
    await small_frames(client)
    await client.unary(
        client.hardware.StartStream, hw.StartStreamRequest(device="camera")
    )  # live view: a sequence of frames cannot start
    try:
        message = await client.fails(
            Status.FAILED_PRECONDITION,
            client.storage.StartRun,
            pb.StartRunRequest(name="seq", frames=5),
        )
        assert "acquiring already" in message
    finally:
        await client.unary(client.hardware.StopStream, hw.DeviceRequest(device="camera"))
    await client.unary(client.estop.EmergencyStop, estop_pb.EmergencyStopRequest(reason="test"))
    try:
        assert "latched" in await client.fails(
            Status.FAILED_PRECONDITION, client.storage.StartRun, pb.StartRunRequest(name="late")
        )
    finally:
        await client.unary(
            client.estop.ResetEmergencyStop, estop_pb.ResetEmergencyStopRequest(reason="test")
        )
    runs = await client.unary(client.storage.ListRuns, pb.ListRunsRequest())
    assert list(runs.runs) == []  # refused before any file was made
