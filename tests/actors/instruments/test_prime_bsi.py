"""The Prime BSI camera actor against the simulated camera, in virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest
import trio

from actors.capabilities import (
    Capability,
    Describe,
    Frame,
    GetAcquisitionStatus,
    SoftwareTrigger,
    StartAcquisition,
    StopAcquisition,
    WaitAcquisition,
)
from actors.instruments.prime_bsi import AcquisitionRefused, AcquisitionRunning, PrimeBsi
from actors.pipeline.taps import AddTap, TapPolicy
from runtime import ActorError, ActorRef, GetParameter, SetParameter, ValidationError
from simulators.prime_bsi import SimulatedPrimeBsi, stamped_number
from supervisors import ActorSpec, Backoff, SupervisedSystem, open_actor_system


@asynccontextmanager
async def camera(
    simulator: SimulatedPrimeBsi | None = None,
) -> AsyncIterator[tuple[SimulatedPrimeBsi, ActorRef, SupervisedSystem]]:
    simulator = simulator or SimulatedPrimeBsi()
    spec = ActorSpec("camera", lambda: PrimeBsi(simulator, temperature_poll=1.0))
    backoff = Backoff(initial=0.2, maximum=1.0, jitter=0.0)
    async with open_actor_system([spec], max_restarts=10, backoff=backoff) as system:
        yield simulator, system.ref("camera"), system


async def set_(cam: ActorRef, name: str, value: object) -> object:
    return (await cam.ask(SetParameter(name, value))).value


async def get(cam: ActorRef, name: str) -> object:
    return (await cam.ask(GetParameter(name))).value


async def refused(cam: ActorRef, name: str, value: object) -> str:
    with pytest.raises(ActorError) as caught:
        await cam.ask(SetParameter(name, value))
    assert isinstance(caught.value.cause, ValidationError) and not caught.value.crashed
    return str(caught.value.cause)


async def take(tap: object, count: int) -> list[Frame]:
    return [await tap.receive() for _ in range(count)]  # type: ignore[attr-defined]


async def test_describe_and_the_enumerated_parameters(autojump_clock):
    async with camera() as (_, cam, _):
        info = await cam.ask(Describe())
        assert info.driver == "photometrics_prime_bsi" and "GS2020" in info.identity
        assert set(info.capabilities) == {
            Capability.EXPOSURE_CONTROL,
            Capability.TRIGGERABLE,
            Capability.FRAME_PRODUCER,
            Capability.PARAMETERIZED,
        }
        assert await get(cam, "roi") == "0,0,2048,2048"
        assert (await get(cam, "readout_port"), await get(cam, "readout_gain")) == (0, 1)
        assert await get(cam, "bit_depth") == 16
        assert await get(cam, "readout") == "Sensitivity / Speed_0 (10 ns/px) / HDR (16-bit)"


async def test_hdr_is_16_bit_and_cms_12_bit(autojump_clock):
    async with camera() as (_, cam, _):
        tap = await cam.ask(AddTap("frames", "check", TapPolicy.LOSSLESS))
        await cam.ask(StartAcquisition(frames=1))
        (hdr,) = await take(tap, 1)
        assert hdr.bit_depth == 16 and hdr.pixels.dtype == np.uint16
        assert 4095 < int(hdr.pixels.max()) <= 65535
        await set_(cam, "readout_gain", 2)
        assert await get(cam, "bit_depth") == 12
        await cam.ask(StartAcquisition(frames=1))
        (cms,) = await take(tap, 1)
        assert cms.bit_depth == 12 and int(cms.pixels.max()) <= 4095
        assert not cms.pixels.flags.writeable  # nobody changes what another actor reads


async def test_setting_the_port_revalidates_speed_and_gain(autojump_clock):
    async with camera() as (simulator, cam, _):
        await set_(cam, "readout_gain", 2)
        await set_(cam, "readout_port", 1)  # "Speed": one 11-bit gain, index 1
        assert await get(cam, "readout_gain") == 1 and simulator.state.gain == 1
        assert await get(cam, "bit_depth") == 11
        assert "is not one of 1" in await refused(cam, "readout_gain", 2)
        assert "is not one of 0, 1" in await refused(cam, "readout_port", 5)


async def test_roi_binning_and_exposure_are_validated_with_what_is_allowed(autojump_clock):
    async with camera() as (simulator, cam, _):
        before = simulator.state
        message = await refused(cam, "roi", "1024,0,2048,100")
        assert "extends beyond the 2048x2048 sensor" in message
        assert "x + width <= 2048" in message
        assert "width and height >= 1" in await refused(cam, "roi", "0,0,0,10")
        assert "'x,y,width,height'" in await refused(cam, "roi", "0,0,10")
        assert "is not one of '1x1', '2x2', '4x4', '8x8'" in await refused(cam, "binning", "3x3")
        assert "outside the allowed range 1 to 10000 ms" in await refused(cam, "exposure", 0.2)
        assert simulator.state == before  # nothing refused reached the camera
        assert (await cam.ask(GetParameter("roi"))).desired == "0,0,2048,2048"
        await set_(cam, "roi", "0,0,4,4")
        assert "larger than the 4x4 roi" in await refused(cam, "binning", "8x8")


async def test_frame_shape_follows_roi_and_binning(autojump_clock):
    async with camera() as (_, cam, _):
        await set_(cam, "roi", "100,200,512,256")
        await set_(cam, "binning", "4x4")
        tap = await cam.ask(AddTap("frames", "check", TapPolicy.LOSSLESS))
        await cam.ask(StartAcquisition(frames=1))
        (frame,) = await take(tap, 1)
        assert frame.pixels.shape == (64, 128) == frame.roi.shape
        assert (frame.roi.x, frame.roi.y, frame.roi.bin_x) == (100, 200, 4)


async def test_a_sequence_delivers_n_consecutive_frames(autojump_clock):
    async with camera() as (_, cam, _):
        await set_(cam, "exposure", 5.0)
        tap = await cam.ask(AddTap("frames", "writer", TapPolicy.LOSSLESS, capacity=64))
        await cam.ask(StartAcquisition(frames=20))
        status = await cam.ask(WaitAcquisition(timeout=10.0))
        assert not status.running and status.frames_acquired == 20 and not status.error
        assert (status.frames_missing, status.frames_lost, status.last_frame_number) == (0, 0, 20)
        frames = await take(tap, 20)
        assert [f.frame_number for f in frames] == list(range(1, 21))
        assert stamped_number(frames[7].pixels, 16) == 8  # the number is in the pixels
        assert all(f.exposure_ms == 5.0 for f in frames)


async def test_live_mode_runs_at_47_fps_full_frame_and_faster_with_fewer_rows(autojump_clock):
    async with camera() as (_, cam, _):
        await set_(cam, "exposure", 5.0)
        await cam.ask(StartAcquisition())
        start = trio.current_time()
        await trio.sleep(2.0)
        status = await cam.ask(StopAcquisition())
        assert status.fps == pytest.approx(47.0, rel=0.02)
        assert status.frames_acquired == pytest.approx(47 * (trio.current_time() - start), abs=2)
        assert status.frames_missing == 0
        await set_(cam, "roi", "0,0,2048,256")
        await set_(cam, "exposure", 1.0)
        await cam.ask(StartAcquisition())
        await trio.sleep(1.0)
        fast = await cam.ask(StopAcquisition())
        assert fast.fps == pytest.approx(47.0 * 2048 / 256, rel=0.02)  # rows x row time


async def test_gaps_in_frame_numbers_are_counted(autojump_clock):
    async with camera() as (simulator, cam, _):
        simulator.faults.drop = {4, 5, 9}
        await cam.ask(StartAcquisition(frames=12))
        status = await cam.ask(WaitAcquisition(timeout=10.0))
        assert (status.frames_acquired, status.frames_missing) == (9, 3)
        # Live mode: while the camera cannot deliver, its 16-frame buffer is overwritten.
        simulator.faults.drop = set()
        await cam.ask(StartAcquisition())
        await trio.sleep(0.5)
        simulator.faults.stall = True
        await trio.sleep(1.0)  # ~47 frames read out, only the newest 16 kept
        simulator.faults.stall = False
        await trio.sleep(0.5)
        status = await cam.ask(StopAcquisition())
        assert status.frames_missing == pytest.approx(47 - 16, abs=2)
        assert status.frames_acquired + status.frames_missing == status.last_frame_number


async def test_a_lossless_tap_that_falls_behind_is_counted_as_lost(autojump_clock):
    async with camera() as (_, cam, _):
        await cam.ask(AddTap("frames", "slow_writer", TapPolicy.LOSSLESS, capacity=4))
        await cam.ask(StartAcquisition(frames=10))
        status = await cam.ask(WaitAcquisition(timeout=10.0))
        assert (status.frames_acquired, status.frames_lost) == (10, 6)


async def test_software_trigger_mode_delivers_a_frame_per_trigger(autojump_clock):
    async with camera() as (_, cam, _):
        tap = await cam.ask(AddTap("frames", "check", TapPolicy.LOSSLESS))
        with pytest.raises(ActorError, match="no acquisition is running to trigger"):
            await cam.ask(SoftwareTrigger())
        await cam.ask(StartAcquisition(frames=3))  # internal trigger: triggers make no sense
        with pytest.raises(ActorError, match="software triggers need one of: Software Trigger"):
            await cam.ask(SoftwareTrigger())
        await cam.ask(StopAcquisition())
        await set_(cam, "trigger_mode", "Software Trigger Edge")
        await cam.ask(StartAcquisition(frames=3))
        await trio.sleep(10.0)  # no trigger, no frame; and waiting is not an error
        status = await cam.ask(GetAcquisitionStatus())
        assert status.running and status.frames_acquired == 0 and not status.error
        for expected in (1, 2, 3):
            await cam.ask(SoftwareTrigger())
            (frame,) = await take(tap, 1)
            assert frame.frame_number == expected
        status = await cam.ask(WaitAcquisition(timeout=1.0))
        assert not status.running and status.frames_acquired == 3


async def test_geometry_is_refused_while_acquiring(autojump_clock):
    async with camera() as (_, cam, _):
        await cam.ask(StartAcquisition())
        for name, value in (("roi", "0,0,64,64"), ("binning", "2x2"), ("exposure", 20.0)):
            with pytest.raises(ActorError) as caught:
                await cam.ask(SetParameter(name, value))
            assert isinstance(caught.value.cause, AcquisitionRunning)
            assert "stop the running acquisition first" in str(caught.value)
        assert await get(cam, "roi") == "0,0,2048,2048"
        await set_(cam, "temperature_setpoint", -15.0)  # not a frame setting: allowed
        with pytest.raises(ActorError) as caught:
            await cam.ask(StartAcquisition(frames=2))
        assert isinstance(caught.value.cause, AcquisitionRefused)
        with pytest.raises(ActorError, match="live mode runs until stopped"):
            await cam.ask(WaitAcquisition())
        await cam.ask(StopAcquisition())
        await set_(cam, "roi", "0,0,64,64")


async def test_temperature_approaches_the_setpoint_over_minutes(autojump_clock):
    async with camera() as (_, cam, _):
        start = await get(cam, "temperature")
        assert start > 15.0
        await trio.sleep(60.0)
        after_a_minute = await get(cam, "temperature")
        assert -20.0 < after_a_minute < start - 20.0
        await trio.sleep(400.0)
        assert await get(cam, "temperature") == pytest.approx(-20.0, abs=0.1)


async def test_emergency_stop_stops_the_acquisition(autojump_clock):
    async with camera() as (simulator, cam, system):
        await cam.ask(StartAcquisition())
        await trio.sleep(0.5)
        report = await system.emergency_stop("door opened")
        assert report.all_stopped
        status = await cam.ask(GetAcquisitionStatus())
        assert not status.running and "emergency stop: door opened" in status.error
        assert simulator._run is None  # the camera was told to finish
        frames = status.frames_acquired
        await trio.sleep(1.0)
        assert (await cam.ask(GetAcquisitionStatus())).frames_acquired == frames


async def test_a_readout_failure_ends_the_acquisition_with_an_error_not_a_crash(autojump_clock):
    async with camera() as (simulator, cam, _):
        await cam.ask(StartAcquisition())
        await trio.sleep(0.2)
        simulator.faults.readout_failure = "USB transfer error"
        status = await cam.ask(WaitAcquisition(timeout=5.0))
        assert not status.running
        assert status.error == "RuntimeError: Readout failed: USB transfer error"
        assert cam.statistics().restarts == 0
        await cam.ask(StartAcquisition(frames=2))  # the camera still works
        assert (await cam.ask(WaitAcquisition(timeout=5.0))).frames_acquired == 2


async def test_a_camera_that_stops_answering_crashes_and_is_reopened(autojump_clock):
    async with camera() as (simulator, cam, _):
        await set_(cam, "exposure", 20.0)
        simulator.faults.temperature_failure = "camera unplugged"
        await trio.sleep(1.05)  # the temperature poll (every 1 s) notices
        simulator.faults.temperature_failure = ""
        await trio.sleep(2.0)
        assert cam.statistics().restarts == 1
        assert simulator.opens == 2 and simulator.is_open
        assert await get(cam, "exposure") == 20.0  # re-applied after the restart
        assert simulator.state.exposure_ms == 20.0


async def test_opening_a_busy_camera_fails(autojump_clock):
    simulator = SimulatedPrimeBsi()
    await simulator.open()
    with pytest.raises(RuntimeError, match="camera busy"):
        await simulator.open()
    await simulator.close()
    await simulator.open()
    await simulator.close()
