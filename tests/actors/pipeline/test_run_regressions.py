"""Regression tests for defects a review found in runs: each failed before its fix."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import pytest
import trio

from actors.capabilities import StartAcquisition, StopAcquisition
from actors.instruments.synthetic import SyntheticReadable
from actors.pipeline.nexus_file import read_end_record
from actors.pipeline.recorder import GetRunStatus, ListRuns, RecorderActor, StartRun, StopRun
from runtime import ActorError, ActorSystem, Message, Request, SetParameter, WrongState
from supervisors import ActorSpec, open_actor_system

from .fakes import Crash, FakeCamera
from .test_recorder import finished


@dataclass(frozen=True, slots=True)
class Break(Request[None]):
    pass


class BreakableMeter(SyntheticReadable):
    async def handle(self, message: Message) -> object:
        if isinstance(message, Break):
            raise RuntimeError("the meter's link failed (test)")
        return await super().handle(message)


@contextlib.asynccontextmanager
async def bench(directory: Path, **recorder: Any) -> AsyncIterator[ActorSystem]:
    options: dict[str, Any] = {"min_free_mb": 0, "flush_interval": 0.1, **recorder}
    specs = [
        ActorSpec("camera", lambda: FakeCamera(interval=0.002)),
        ActorSpec("meter", lambda: BreakableMeter(rate=1000.0)),
        ActorSpec("recorder", lambda: RecorderActor(directory, camera="camera", **options)),
    ]
    async with open_actor_system(specs) as system:
        yield system


async def test_listing_runs_never_crashes_the_recorder_or_its_run(tmp_path: Path) -> None:
    (tmp_path / "latest.nxs").symlink_to(tmp_path / "gone.nxs")  # a dangling link
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("busy", frames=200))
        runs = await recorder.ask(ListRuns())
        final = await finished(recorder)
        assert recorder.statistics().restarts == 0
    # every frame accounted for (on 2 starved cores the 500 fps fake camera can outrun the
    # writer's queue: drops are counted, which is what this test is not about)
    assert final.frames_written + final.frames_dropped == 200
    assert final.outcome == ("completed" if final.frames_dropped == 0 else "incomplete")
    assert any(r.name.endswith("_busy") for r in runs)


async def test_a_camera_that_cannot_start_refuses_the_run_with_its_reason(tmp_path: Path) -> None:
    async with bench(tmp_path) as system:
        recorder, camera = system.ref("recorder"), system.ref("camera")
        await camera.ask(StartAcquisition(None))  # live view
        with pytest.raises(ActorError) as caught:
            await recorder.ask(StartRun("seq", frames=10))
        assert isinstance(caught.value.cause, WrongState)
        assert "acquiring already" in str(caught.value.cause)
        await camera.ask(StopAcquisition())
        assert recorder.statistics().restarts == 0
    assert list(tmp_path.glob("*.nxs")) == []  # refused before any file was made


async def test_readings_are_followed_across_a_readable_restart(tmp_path: Path) -> None:
    async with bench(tmp_path) as system:
        recorder, meter = system.ref("recorder"), system.ref("meter")
        started = await recorder.ask(StartRun("readings", record_frames=False))
        await trio.sleep(0.5)
        with pytest.raises(ActorError):
            await meter.ask(Break())
        await trio.sleep(1.5)
        final = await recorder.ask(StopRun())
    with h5py.File(started.path, "r") as f:
        times = f["entry/readings/meter/reading/time"][:]
    assert final.readings_recorded == len(times)
    assert times[-1] - times[0] > 1.5  # readings after the restart are there too


async def test_a_full_disk_ends_the_run_before_the_next_write_and_counts_what_was_left(
    tmp_path: Path,
) -> None:
    """Below min_free_mb nothing more is written: what the tap still held is counted as
    discarded (writing it would overshoot into ENOSPC), and the file closes cleanly."""
    async with bench(tmp_path, frame_queue=512) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("low", frames=100_000))
        await trio.sleep(0.3)
        await recorder.ask(SetParameter("min_free_mb", 1e8))  # "disk low": room still left
        final = await finished(recorder)
    record = read_end_record(Path(final.path))
    assert record["status"] == final.outcome == "disk full" and "min_free_mb" in record["reason"]
    assert record["frames_received"] == record["frames_written"] + record["frames_discarded"]
    with h5py.File(final.path, "r") as f:  # closed properly: no SWMR needed
        assert f["entry/data/data"].shape[0] == record["frames_written"] == final.frames_written


async def test_camera_restart_drops_are_counted_once(tmp_path: Path) -> None:
    starts = itertools.count()

    class SlowToReopen(FakeCamera):
        async def on_start(self) -> None:
            if next(starts):
                await trio.sleep(0.5)  # longer than the flush interval

    specs = [
        ActorSpec("camera", lambda: SlowToReopen(interval=0.0005, shape=(256, 256))),
        ActorSpec(
            "recorder",
            lambda: RecorderActor(
                tmp_path, camera="camera", min_free_mb=0, flush_interval=0.05, frame_queue=2
            ),
        ),
    ]
    async with open_actor_system(specs) as system:
        recorder, camera = system.ref("recorder"), system.ref("camera")
        await recorder.ask(StartRun("live"))
        await camera.ask(StartAcquisition(None))
        await trio.sleep(0.5)
        await camera.ask(StopAcquisition())
        await trio.sleep(0.2)
        with pytest.raises(ActorError):
            await camera.ask(Crash())
        await trio.sleep(1.0)
        final = await recorder.ask(StopRun())
        assert await recorder.ask(GetRunStatus()) == final
    record = read_end_record(Path(final.path))
    short = record["frames_written"] < record["frames_expected"]  # drops, if the writer lagged
    assert record["status"] == final.outcome == ("incomplete" if short else "completed")
    published = record["frames_received"] + record["frames_dropped"]
    assert published == record["frames_expected"]  # one acquisition: numbers 1..N, each once


def test_a_ram_disk_is_not_taken_for_a_32_bit_file_system(tmp_path: Path) -> None:
    """glibc's pathconf(FILESIZEBITS) says 32 for tmpfs: runs on /dev/shm ended with a false
    EFBIG at 2 GiB. Only FAT (or ulimit -f) limits a run's file on Linux."""
    from actors.pipeline.disk_space import file_size_limit

    shm = Path("/dev/shm")
    for directory in [tmp_path, *([shm] if shm.is_dir() else [])]:
        limit, source = file_size_limit(directory)
        assert limit is None or "RLIMIT_FSIZE" in source, (directory, source)
