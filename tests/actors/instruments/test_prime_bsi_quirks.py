"""The camera actor against the simulated Prime BSI's quirk modes (issue 13): what the lab
camera and its driver were recorded doing, and what the actor does about it. Virtual time,
except the recorder test at the end (its writer works in a thread)."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from actors.capabilities import (
    AcquisitionStatus,
    Frame,
    GetAcquisitionStatus,
    StartAcquisition,
    StopAcquisition,
    WaitAcquisition,
)
from actors.instruments.prime_bsi import PrimeBsi
from actors.pipeline.nexus_file import read_end_record
from actors.pipeline.recorder import RecorderActor, StartRun, wait_run
from actors.pipeline.taps import AddTap, TapPolicy
from runtime import ActorRef, GetParameter, SetParameter
from runtime.config import ConfigError, parse_config
from simulators.prime_bsi import STALL_AFTER, SimulatedPrimeBsi
from supervisors import ActorSpec, open_actor_system
from supervisors.bench import build_tree, open_bench

FULL_FRAME_INTERVAL = 1 / 47  # s, at the default 10 ms exposure


@asynccontextmanager
async def camera(*quirks: str, **options: Any) -> AsyncIterator[tuple[SimulatedPrimeBsi, ActorRef]]:
    simulator = SimulatedPrimeBsi(quirks=quirks)
    options.setdefault("temperature_poll", 1.0)
    spec = ActorSpec("camera", lambda: PrimeBsi(simulator, **options))
    async with open_actor_system([spec]) as system:
        yield simulator, system.ref("camera")


async def take(tap: Any, count: int) -> list[Frame]:
    return [await tap.receive() for _ in range(count)]


def balanced(status: AcquisitionStatus) -> bool:
    """Every frame number is accounted for: delivered, missing or all-zero."""
    acquired, missing, zero = status.frames_acquired, status.frames_missing, status.frames_zero
    return acquired + missing + zero == status.last_frame_number


# -- no parameter reads while streaming -------------------------------------------------------


async def test_nothing_is_read_while_streaming_and_the_temperature_is_served_with_its_age(
    autojump_clock,
):
    async with camera("stall_on_parameter_read", frame_timeout=0.5) as (simulator, cam):
        before = await cam.ask(GetParameter("temperature"))
        await cam.ask(StartAcquisition())
        await trio.sleep(5.5)  # five temperature polls and a health check's worth
        status = await cam.ask(GetAcquisitionStatus())
        assert simulator.reads_while_streaming == 0
        assert status.stalls == 0 and not status.warning
        assert status.frames_acquired == pytest.approx(5.5 * 47, abs=3)
        during = await cam.ask(GetParameter("temperature"))
        assert during.version == before.version + 1  # read once, just before the start
        age = (await cam.ask(GetParameter("temperature_age_s"))).value
        assert 4.9 <= age <= 5.6  # published at every poll: visible to clients

        # A set-point change is held (PyVCAM reads parameters to write them)...
        changed = await cam.ask(SetParameter("temperature_setpoint", -10.0))
        assert changed.value == -10.0 and simulator.state.temperature_setpoint == -20.0
        await trio.sleep(1.0)
        assert simulator.reads_while_streaming == 0
        stopped = await cam.ask(StopAcquisition())
        assert stopped.stalls == 0 and stopped.frames_missing == 0 and balanced(stopped)
        # ... and written when the acquisition ends, with a fresh temperature read.
        assert simulator.state.temperature_setpoint == -10.0
        assert (await cam.ask(GetParameter("temperature_age_s"))).value == 0.0
        assert (await cam.ask(GetParameter("temperature"))).version > during.version


async def test_the_quirk_is_real_a_read_while_streaming_stops_the_frames(autojump_clock):
    """What the actor avoids: a read behind its back stops the frames — and the stall
    detector brings them back."""
    async with camera("stall_on_parameter_read", frame_timeout=0.5) as (simulator, cam):
        await cam.ask(StartAcquisition())
        await trio.sleep(0.5)
        await simulator.read_temperature()  # as a background poll did on the lab camera
        await trio.sleep(2.0)
        status = await cam.ask(StopAcquisition())
        assert simulator.reads_while_streaming == 1
        assert status.stalls == 1 and "stall 1" in status.warning
        assert status.frames_missing > 0 and balanced(status)


# -- a camera left acquiring ------------------------------------------------------------------


async def test_a_camera_left_acquiring_is_halted_before_the_start(autojump_clock):
    async with camera("left_acquiring") as (_, cam):
        await cam.ask(StartAcquisition(frames=5))
        status = await cam.ask(WaitAcquisition(timeout=5.0))
        assert status.frames_acquired == 5 and status.stalls == 0 and not status.error


async def test_a_camera_that_never_delivers_is_reported_not_waited_on(autojump_clock):
    async with camera(frame_timeout=0.5, stall_restarts=2) as (simulator, cam):
        simulator.faults.stall = True  # 'exposure in progress' with 0 bytes, whatever we do
        await cam.ask(StartAcquisition(frames=10))
        started = trio.current_time()
        status = await cam.ask(WaitAcquisition(timeout=60.0))
        bound = 0.01 + 1 / 47 + 0.5  # exposure + readout + frame_timeout
        assert trio.current_time() - started == pytest.approx(3 * bound, abs=0.1)
        assert not status.running and status.stalls == 2 and status.frames_acquired == 0
        assert "no frame at start within 0.531 s" in status.error
        assert "also after 2 restarts" in status.error
        assert simulator._run is None  # the camera was told to finish


# -- stalls --------------------------------------------------------------------------------------


async def test_a_stalled_sequence_is_restarted_and_completed_with_the_gap_counted(
    autojump_clock,
):
    async with camera("stalls", frame_timeout=0.5) as (_, cam):
        tap = await cam.ask(AddTap("frames", "writer", TapPolicy.LOSSLESS, capacity=64))
        await cam.ask(StartAcquisition(frames=50))
        status = await cam.ask(WaitAcquisition(timeout=30.0))
        assert not status.running and not status.error
        assert status.frames_acquired == 50 and status.frames_requested == 50
        assert status.stalls == 2  # 19 + 19 + 12 frames
        # Each stall lasted the bound plus the restart: ~25 frame slots counted missing.
        gap = math.floor((0.01 + 1 / 47 + 0.5) / FULL_FRAME_INTERVAL)
        assert status.frames_missing == pytest.approx(2 * gap, abs=2)
        assert balanced(status) and status.last_frame_number == 50 + status.frames_missing
        assert "stall 2" in status.warning and "counted missing" in status.warning
        numbers = [f.frame_number for f in await take(tap, 50)]
        assert numbers[:STALL_AFTER] == list(range(1, STALL_AFTER + 1))
        assert numbers == sorted(numbers) and numbers[-1] == status.last_frame_number
        jumps = [b - a for a, b in itertools.pairwise(numbers) if b - a > 1]
        assert len(jumps) == 2 and sum(j - 1 for j in jumps) == status.frames_missing


async def test_live_mode_rides_through_stalls(autojump_clock):
    async with camera("stalls", frame_timeout=0.25) as (_, cam):
        await cam.ask(StartAcquisition())
        await trio.sleep(4.0)
        status = await cam.ask(StopAcquisition())
        assert status.stalls >= 3 and status.frames_acquired >= 3 * STALL_AFTER
        assert balanced(status) and not status.error


# -- all-zero frames ---------------------------------------------------------------------------


async def test_all_zero_frames_are_counted_and_never_published(autojump_clock):
    async with camera("zero_frames") as (_, cam):
        tap = await cam.ask(AddTap("frames", "writer", TapPolicy.LOSSLESS, capacity=64))
        await cam.ask(StartAcquisition(frames=30))
        status = await cam.ask(WaitAcquisition(timeout=10.0))
        assert (status.frames_acquired, status.frames_zero, status.frames_missing) == (27, 3, 0)
        assert status.last_frame_number == 30 and balanced(status) and not status.running
        assert "frame 30 was all zero" in status.warning
        frames = await take(tap, 27)
        assert all(int(f.pixels.min()) >= 100 for f in frames)  # the bias, never zero
        assert {10, 20, 30}.isdisjoint(f.frame_number for f in frames)
        with trio.move_on_after(1.0):
            await tap.receive()
            pytest.fail("an all-zero frame was published")


# -- circular overwrite refused at start -----------------------------------------------------


async def test_live_mode_falls_back_to_no_overwrite_and_says_so(autojump_clock, caplog):
    async with camera("overwrite_refused") as (simulator, cam):
        await cam.ask(StartAcquisition(frames=3))  # a sequence has no circular buffer
        sequence = await cam.ask(WaitAcquisition(timeout=5.0))
        assert sequence.frames_acquired == 3 and not sequence.overwrite_fallback
        status = await cam.ask(StartAcquisition())
        assert status.overwrite_fallback and "PVCAM error 185" in status.warning
        assert "running without overwrite" in status.warning
        assert simulator._run is not None and not simulator._run.overwrite
        await trio.sleep(1.0)
        status = await cam.ask(StopAcquisition())
        assert status.frames_acquired == pytest.approx(47, abs=2) and not status.error
        assert status.overwrite_fallback  # still said after the end
    assert any("running without overwrite" in r.getMessage() for r in caplog.records)


# -- the run's end record ---------------------------------------------------------------------


async def test_the_new_counters_reach_the_runs_end_record(tmp_path: Path) -> None:
    """Real clock: the recorder's writer works in a thread."""
    simulator = SimulatedPrimeBsi(quirks=("stalls", "zero_frames"))
    specs = [
        ActorSpec("camera", lambda: PrimeBsi(simulator, frame_timeout=0.2)),
        ActorSpec(
            "recorder",
            lambda: RecorderActor(
                tmp_path,
                camera="camera",
                min_free_mb=0,
                flush_interval=0.1,
                config_text="[bench]\nname = 'test'\n",
                config_source="test.toml",
            ),
        ),
    ]
    async with open_actor_system(specs) as system:
        cam = system.ref("camera")
        await cam.ask(SetParameter("roi", "0,0,64,64"))
        await cam.ask(SetParameter("exposure", 1.0))
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("quirks", frames=30))
        with trio.fail_after(30):
            final = await wait_run(recorder)
    record = read_end_record(Path(final.path))
    camera_section = record["camera"]
    assert camera_section["stalls"] == 1  # 19 frames, a stall, then 11 more
    assert camera_section["frames_zero"] == 2  # frame 10 of each start
    assert camera_section["frames_acquired"] == 28
    # Not in the file: the stall's gap and the all-zero frames (never published).
    assert record["frames_missing"] == camera_section["frames_missing"] + 2
    assert camera_section["frames_missing"] > 0 and record["frames_written"] == 28
    assert np.isfinite(camera_section["fps"])


# -- a bench file switches the quirks on -------------------------------------------------------


async def test_a_bench_file_switches_camera_quirks_on_for_a_simulated_camera_only(tmp_path):
    storage = (
        f"[storage]\ndirectory = '{tmp_path}'\nring_directory = '{tmp_path}'\nmin_free_mb = 0\n"
    )
    device = "[[device]]\nid = 'camera'\ndriver = 'photometrics_prime_bsi'\n"
    options = "options = { quirks = ['zero_frames'], frame_timeout = 0.5, stall_restarts = 1 }\n"
    text = device + "port = 'sim'\n" + options + storage
    async with open_bench(parse_config(text, "lab.toml")) as bench:
        cam = bench.system.ref("camera")
        await cam.ask(SetParameter("roi", "0,0,64,64"))
        await cam.ask(StartAcquisition(frames=20))
        status = await cam.ask(WaitAcquisition(timeout=20.0))
        assert (status.frames_acquired, status.frames_zero) == (18, 2)
    with pytest.raises(ConfigError, match=r'quirk modes are a simulator\'s: only for port = "sim"'):
        build_tree(parse_config(device + "port = 'pvcamUSB_0'\n" + options + storage, "l.toml"), {})
    unknown = options.replace("zero_frames", "stall")
    with pytest.raises(ConfigError, match="unknown quirk 'stall' for photometrics_prime_bsi"):
        build_tree(parse_config(device + "port = 'sim'\n" + unknown + storage, "l.toml"), {})


def test_the_new_counters_cross_the_edge_to_the_client():
    from actors.edge.frames import acquisition_message
    from client import AcquisitionStatus as ClientStatus

    status = AcquisitionStatus(
        True, None, 40, 25, 0, 68, 47.0, "", 3, 1, "stall 1: ...", overwrite_fallback=True
    )
    message = acquisition_message("camera", status)
    seen = ClientStatus.from_pb(type(message).FromString(message.SerializeToString()))
    assert (seen.frames_zero, seen.stalls, seen.warning) == (3, 1, "stall 1: ...")
    assert seen.overwrite_fallback and seen.frames_missing == 25 and seen.device == "camera"
