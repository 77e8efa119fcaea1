"""One truth for a run's outcome: RunStatus, ListRuns and the file's end record agree, for every
way a run ends. (Crashed is in test_crash_repair.py; a SIGKILLed daemon, a client that goes
away and a real EFBIG are in tests/test_daemon_runs.py.)"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import pytest
import trio

from actors.instruments.synthetic import SyntheticReadable
from actors.pipeline.nexus_file import FrameRecord, NexusRunFile, read_end_record
from actors.pipeline.recorder import GetRunStatus, ListRuns, RecorderActor, StartRun, StopRun
from actors.pipeline.run_status import RunOutcome, RunState, RunStatus
from runtime import ActorError, ActorRef, ActorSystem, InsufficientResources
from supervisors import ActorSpec, open_actor_system

from .fakes import FakeCamera
from .test_recorder import finished

GB = 1024**3


class Disk:
    """Free space as the recorder sees it; a test "fills" it by setting ``free``."""

    def __init__(self) -> None:
        self.free = 100 * GB

    def __call__(self, directory: Path) -> int:
        return self.free


@contextlib.asynccontextmanager
async def bench(
    directory: Path, disk: Disk | None = None, **camera: Any
) -> AsyncIterator[ActorSystem]:
    specs = [
        ActorSpec("camera", lambda: FakeCamera(**{"interval": 0.002, **camera})),
        ActorSpec("meter", lambda: SyntheticReadable(rate=500.0)),
        ActorSpec(
            "recorder",
            lambda: RecorderActor(
                directory,
                camera="camera",
                min_free_mb=100,
                flush_interval=0.1,
                free_space=disk or Disk(),
            ),
        ),
    ]
    async with open_actor_system(specs) as system:
        yield system


async def agreed(recorder: ActorRef, final: RunStatus) -> dict[str, Any]:
    """Assert that the three views of the run say the same; the end record."""
    record = read_end_record(Path(final.path))
    (listed,) = [r for r in await recorder.ask(ListRuns()) if r.path == final.path]
    assert await recorder.ask(GetRunStatus()) == final
    assert final.outcome == record["status"] == listed.status
    assert final.state is RunOutcome(final.outcome).state
    assert final == RunStatus.from_end_record(final.name, final.path, record)
    for key in ("frames_written", "readings_recorded"):
        assert getattr(listed, key) == getattr(final, key) == record[key], key
    with h5py.File(final.path, "r") as f:  # closed properly: any reader opens it, no SWMR
        frames = f.get("entry/instrument/camera/data")
        if frames is not None:
            assert frames.shape[0] == record["frames_written"]
        assert f["entry/readings/meter/reading/value"].shape[0] == record["readings_recorded"]
    return record


async def frames_written(recorder: ActorRef, at_least: int) -> None:
    with trio.fail_after(20):
        while (await recorder.ask(GetRunStatus())).frames_written < at_least:
            await trio.sleep(0.02)


async def test_completed(tmp_path: Path) -> None:
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("done", frames=30))
        final = await finished(recorder)
        record = await agreed(recorder, final)
    assert (final.state, final.outcome, final.error) == (RunState.COMPLETED, "completed", "")
    assert record["frames_written"] == 30 and record["reason"] == "all frames recorded"
    assert record["camera"]["frames_acquired"] == 30  # the camera's own accounting, as is


async def test_stopped_before_its_frames_were_in(tmp_path: Path) -> None:
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("long", frames=100_000))
        await frames_written(recorder, 10)
        final = await recorder.ask(StopRun("enough"))
        record = await agreed(recorder, final)
    assert (final.state, final.outcome) == (RunState.COMPLETED, "stopped")
    assert record["reason"] == "enough" and record["frames_written"] < 100_000


async def test_an_open_ended_run_its_owner_ends_is_complete_unless_a_user_stops_it(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("scan", record_frames=False))
        owner = await recorder.ask(StopRun("scan completed"))
        assert (owner.outcome, owner.state) == ("completed", RunState.COMPLETED)
        await agreed(recorder, owner)
        await recorder.ask(StartRun("live", record_frames=False))
        user = await recorder.ask(StopRun("stopped by user", RunOutcome.STOPPED))
        assert (user.outcome, user.state) == ("stopped", RunState.COMPLETED)
        await agreed(recorder, user)


async def test_incomplete_when_the_camera_loses_frames(tmp_path: Path) -> None:
    async with bench(tmp_path, skip={3, 4}) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("gaps", frames=20))
        final = await finished(recorder)
        record = await agreed(recorder, final)
    assert (final.state, final.outcome) == (RunState.FAILED, "incomplete")
    assert record["frames_missing"] == 2 and "2 of 20 frames are not in the file" in final.error


async def test_e_stopped(tmp_path: Path) -> None:
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("incident", frames=100_000))
        await frames_written(recorder, 10)
        await system.emergency_stop("operator hit the button")
        final = await finished(recorder)  # the camera stopped: the run ends
        record = await agreed(recorder, final)
    assert (final.state, final.outcome) == (RunState.FAILED, "e-stopped")
    assert final.error.startswith("emergency stop: operator hit the button")
    assert record["frames_received"] == record["frames_written"]  # nothing lost in the stop


async def test_disk_full_and_the_next_run_starts_once_space_is_back(tmp_path: Path) -> None:
    disk = Disk()
    async with bench(tmp_path, disk) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("filling", frames=100_000))
        await frames_written(recorder, 10)
        disk.free = 99 * 1024 * 1024  # below min_free_mb = 100
        final = await finished(recorder)
        record = await agreed(recorder, final)
        assert (final.state, final.outcome) == (RunState.FAILED, "disk full")
        assert "99 MiB free" in final.error and "min_free_mb" in final.error
        assert record["frames_received"] == record["frames_written"] + record["frames_discarded"]
        with pytest.raises(ActorError) as refused:
            await recorder.ask(StartRun("too-soon", frames=5))
        assert isinstance(refused.value.cause, InsufficientResources)
        disk.free = 100 * GB
        await recorder.ask(StartRun("space-is-back", frames=5))
        again = await finished(recorder)
        await agreed(recorder, again)
        assert again.outcome == "completed"


async def test_a_write_error_names_its_errno_and_the_daemon_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO from the file layer (fault injection: the 21st frame fails as HDF5 reports it)."""
    append = NexusRunFile.append_frames

    def failing(self: NexusRunFile, frames: Sequence[FrameRecord]) -> None:
        if self.path.name.endswith("_bad-disk.nxs") and self.frames_written + len(frames) > 20:
            raise OSError(errno.EIO, "Can't write data (file write failed: errno = 5, ...)")
        append(self, frames)

    monkeypatch.setattr(NexusRunFile, "append_frames", failing)
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("bad-disk", frames=100_000))
        final = await finished(recorder)
        record = await agreed(recorder, final)
        assert (final.state, final.outcome) == (RunState.FAILED, "write error")
        assert record["error"] == "EIO" and "Input/output error" in final.error
        assert record["frames_written"] <= 20
        assert record["frames_received"] == record["frames_written"] + record["frames_discarded"]
        await recorder.ask(StartRun("next", frames=5))
        assert (await finished(recorder)).outcome == "completed"
