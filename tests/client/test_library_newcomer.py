"""The library's part of issue 15: a time-out on frames(), devices and services apart, the
address and token from the environment, and a run that records what the bench produces."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import trio

from client import AsyncBench, Bench, DeadlineExceeded
from client._run_sources import EVERY_SOURCE

T = TypeVar("T")


async def in_thread(function: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(function)


async def test_frames_time_out_saying_why_when_no_frame_flows(daemon: str) -> None:
    def scenario() -> None:
        with Bench.connect(daemon) as bench:
            began = time.monotonic()
            with (
                pytest.raises(DeadlineExceeded, match="no frame from camera: frames flow while"),
                bench.frames("camera", timeout=0.5) as frames,
            ):
                next(frames)
            assert time.monotonic() - began < 10
            # with an acquisition, frames come within the time-out
            bench.parameters["camera.roi"] = "0,0,64,64"
            # ~20 fps: the simulated camera's 16-frame live buffer then covers the 0.8 s a
            # busy 2-core machine can keep the daemon from fetching (at 55 fps it lost frames)
            bench.parameters["camera.exposure"] = 40.0
            bench["camera"].start_acquisition(3)
            with bench.frames("camera", timeout=10) as frames:
                assert next(frames).shape == (64, 64)
            axis = bench["esp300.axis1"]
            # a stream whose messages come less often than its time-out
            with (
                pytest.raises(DeadlineExceeded, match=r"no position from esp300\.axis1"),
                axis.watch_position(interval=2.0, timeout=0.3) as where,
            ):
                next(where)
                next(where)

    await in_thread(scenario)


async def test_devices_and_services_apart(daemon: str) -> None:
    def scenario() -> None:
        with Bench.connect(daemon) as bench:
            devices, services = set(bench.devices), set(bench.services)
            assert {"esp300.axis1", "maitai", "power_meter", "camera"} <= devices
            assert services == {"documents", "recorder", "camera.ring", "scripts", "plans"}
            assert bench.services["recorder"].info().kind == "service"
            assert all(d.kind == "device" for d in bench.device_info())
            assert "scans" in bench.info().features

    await in_thread(scenario)


async def test_connect_takes_the_address_and_token_from_the_environment(
    daemon: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCHD_ADDRESS", daemon)

    def scenario() -> None:
        with Bench.connect() as bench:
            assert bench.address == daemon

    await in_thread(scenario)


async def test_a_duration_run_records_frames_and_readings_and_puts_the_bench_back(
    daemon: str,
) -> None:
    def scenario() -> None:
        with Bench.connect(daemon) as bench:
            assert EVERY_SOURCE in bench.info().features  # the daemon sees to it (a count plan)
            bench.parameters["camera.roi"] = "0,0,64,64"
            # ~20 fps: the simulated camera's 16-frame live buffer then covers the 0.8 s a
            # busy 2-core machine can keep the daemon from fetching (at 55 fps it lost frames)
            bench.parameters["camera.exposure"] = 40.0
            assert bench.parameters["power_meter.streaming"] is False
            status = bench.record("by-duration", duration=1.0)
            assert status.state == "completed", status
            assert status.frames_written > 0 and status.frames_dropped == 0
            assert status.readings_recorded > 0
            assert bench.parameters["power_meter.streaming"] is False
            assert not bench["camera"].acquisition().running
            # readings only: no camera started
            quiet = bench.record("readings", duration=0.5, readings_only=True)
            assert quiet.frames_written == 0 and quiet.readings_recorded > 0

    await in_thread(scenario)


async def test_async_lists_are_typed_and_apart(daemon: str) -> None:
    import asyncio

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        async with await AsyncBench.connect(daemon) as bench:
            devices = [d.name for d in await bench.devices()]
            services = [d.name for d in await bench.services()]
            everything = [d.name for d in await bench.actors()]
            return devices, services, everything

    def run() -> tuple[list[str], list[str], list[str]]:
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            return runner.run(scenario())

    devices, services, everything = await in_thread(run)
    assert sorted(devices + services) == sorted(everything)
