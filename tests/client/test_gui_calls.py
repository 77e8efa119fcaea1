"""The client calls the GUI added: the camera preview, script checks, pausing an execution,
and following a scan's status stream."""

from __future__ import annotations

import asyncio
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
        assert frame.pixels.shape == (256, 256) and frame.pixels.dtype == "uint16"
        assert frame.factor == 8 and frame.reduction == "mean" and frame.binning == (1, 1)
        assert frame.source_shape == (2048, 2048) and frame.roi == (0, 0, 2048, 2048)
        assert frame.sensor_rect(10, 20, 4, 2) == (80, 160, 32, 16)
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
