"""The client calls the GUI added: the camera preview, script checks, pausing an execution,
and following a scan's status stream."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from client import AsyncBench, Bench, InvalidArgument

from .conftest import Daemon

WAITING = """
for i in range(40):
    sleep(0.05)
    progress((i + 1) / 40.0)
"""


def test_the_preview_is_small_typed_and_mapped_to_the_sensor(process_daemon: Daemon) -> None:
    with Bench.connect(process_daemon.address) as bench:
        camera = bench["camera"]
        camera.start_acquisition()
        try:
            with bench.preview("camera", max_fps=20, max_width=256, max_height=256) as frames:
                frame = next(frames)
                second = next(frames)
        finally:
            camera.stop_acquisition()
        # whatever ROI and binning earlier tests left on this shared daemon's camera:
        height, width = frame.source_shape
        factor = max(1, math.ceil(width / 256), math.ceil(height / 256))
        assert frame.factor == factor and frame.reduction == "mean"
        assert frame.pixels.shape == (height // factor, width // factor)
        assert frame.pixels.dtype == "uint16" and max(frame.pixels.shape) <= 256
        x, y, roi_width, roi_height = frame.roi
        bin_x, bin_y = frame.binning
        assert (roi_height // bin_y, roi_width // bin_x) == frame.source_shape
        assert frame.sensor_rect(10, 20, 4, 2) == (
            x + 10 * factor * bin_x,
            y + 20 * factor * bin_y,
            4 * factor * bin_x,
            2 * factor * bin_y,
        )
        assert second.frame_number > frame.frame_number
        with pytest.raises(ValueError, match="not one of mean, decimate, max"):
            bench.preview("camera", reduction="median")
        with pytest.raises(InvalidArgument, match="max_width must be 16 to 4096"):
            next(bench.preview("camera", max_width=4))


def test_check_pause_and_resume_a_script(process_daemon: Daemon) -> None:
    with Bench.connect(process_daemon.address) as bench:
        bad = bench.scripts.check("x = (1,\n")
        assert not bad.ok and bad.problems[0].severity == "error" and bad.problems[0].line >= 1
        good = bench.scripts.check(WAITING)
        assert good.ok
        execution = bench.scripts.start(source=WAITING)
        paused = bench.scripts.pause(execution.id)
        assert paused.state in ("running", "paused", "pending")
        waited = bench.scripts.status(execution.id)
        deadline = time.monotonic() + 30  # it pauses at its next builtin call
        while waited.state != "paused" and time.monotonic() < deadline:
            time.sleep(0.05)
            waited = bench.scripts.status(execution.id)
        assert waited.state == "paused"  # no longer "unknown": the client knows the state
        bench.scripts.resume(execution.id)
        assert bench.scripts.wait(execution.id).state == "completed"


def test_a_scans_status_stream_ends_with_the_scan(process_daemon: Daemon) -> None:
    async def follow() -> list[int]:
        async with await AsyncBench.connect(process_daemon.address) as bench:
            scan = await bench.create_scan([("esp300.axis3", 0.0, 0.01, 5)], read=["power_meter"])
            await bench.start_scan(scan.id)
            done = [s.points_done async for s in bench.stream_scan(scan.id)]
            assert (await bench.scan(scan.id)).state == "completed"
            return done

    done = asyncio.run(follow())
    assert done[-1] == 5 and done == sorted(done)
