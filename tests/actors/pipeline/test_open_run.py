"""A run composed from its pieces without the recorder, as the acquisition executor does it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import h5py
import pytest
import trio

from actors.capabilities import GetAcquisitionStatus, StartAcquisition
from actors.instruments.synthetic import SyntheticReadable
from actors.pipeline.manifest import survey
from actors.pipeline.nexus_file import Compression, FrameLayout, read_end_record
from actors.pipeline.run import RunPieces, open_run
from actors.pipeline.run_setup import RunOptions, create_run
from actors.pipeline.run_status import RunOutcome, RunState, RunStatus
from runtime import ActorSystem, ValidationError, WrongState
from supervisors import ActorSpec, open_actor_system

from .fakes import FakeCamera


@contextlib.asynccontextmanager
async def system() -> AsyncIterator[ActorSystem]:
    specs = [
        ActorSpec("camera", lambda: FakeCamera(interval=0.002)),
        ActorSpec("meter", lambda: SyntheticReadable(rate=200.0)),
    ]
    async with open_actor_system(specs) as actors:
        yield actors


async def pieces(actors: ActorSystem, directory: Path, name: str, **options: object) -> RunPieces:
    settings: dict[str, object] = {
        "name": name,
        "directory": directory,
        "metadata": {"plan": "count"},
        "camera": "camera",
        "frames": None,
        "duration": None,
        "compression": Compression.NONE,
        "frame_queue": 64,
        "min_free_bytes": 0,
        "flush_interval": 0.05,
        "scan_columns": ("point", "power"),
        **options,
    }
    run_options = RunOptions(**settings)  # type: ignore[arg-type]
    return await create_run(
        actors,
        run_options,
        path=directory / f"{name}.nxs",
        start_time=time.time(),
        devices=await survey(actors, ("camera", "meter")),
        layout=FrameLayout("camera", (64, 48)),
    )


async def test_an_executor_records_points_and_frames_and_ends_the_run(tmp_path: Path) -> None:
    statuses: list[RunStatus] = []
    async with system() as actors:
        made = await pieces(actors, tmp_path, "plan")
        async with open_run(made, flush_interval=0.05, publish=statuses.append) as run:
            assert run.status.state is RunState.RECORDING
            for point in range(3):  # the executor's loop: trigger frames, read, one row a point
                await actors.ref("camera").ask(StartAcquisition(5))
                while (await actors.ref("camera").ask(GetAcquisitionStatus())).running:
                    await trio.sleep(0.005)  # the sequence ends before the next one starts
                run.add_scan_point({"point": point, "power": 0.5 * point}, time.time())
            with pytest.raises(ValidationError, match="not declared"):
                run.add_scan_point({"angle": 1.0}, time.time())
            run.stop("plan completed")
        with pytest.raises(WrongState):
            run.add_scan_point({"point": 9}, time.time())
    assert run.end is not None and run.end.outcome is RunOutcome.COMPLETED
    assert run.status == statuses[-1] and run.status.outcome == "completed"
    record = read_end_record(tmp_path / "plan.nxs")
    assert record == run.end.to_record() and record["scan_points"] == 3
    with h5py.File(tmp_path / "plan.nxs", "r") as f:
        assert list(f["entry/scan/point/value"]) == [0, 1, 2]
        assert f["entry/data/data"].shape[0] == record["frames_written"] == 15


async def test_an_error_in_the_owners_block_fails_the_run_and_is_raised(tmp_path: Path) -> None:
    async with system() as actors:
        made = await pieces(actors, tmp_path, "broken", camera=None)
        with pytest.raises(RuntimeError, match="the motor stalled"):
            async with open_run(made) as run:
                raise RuntimeError("the motor stalled")
    assert run.status.outcome == "failed" and "the motor stalled" in run.status.error
    assert read_end_record(tmp_path / "broken.nxs")["status"] == "failed"


async def test_cancelling_the_owner_stops_the_run_with_its_reason(tmp_path: Path) -> None:
    async with system() as actors:
        made = await pieces(actors, tmp_path, "cancelled", frames=100_000)
        with trio.move_on_after(0.2):
            async with open_run(made, cancel_reason="the executor was aborted") as run:
                await trio.sleep_forever()
    assert (run.status.outcome, run.status.state) == ("stopped", RunState.COMPLETED)
    record = read_end_record(tmp_path / "cancelled.nxs")
    assert record["reason"] == "the executor was aborted" and record["frames_written"] > 0
