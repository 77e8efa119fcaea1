"""Runs end to end: taps in, NeXus file out, and every frame and reading accounted for.

These use the real clock (short runs): the writer works in a thread, and a virtual clock
would race the camera ahead of it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import trio

from actors.instruments.synthetic import SyntheticReadable
from actors.pipeline.arrow_readings import read_readings
from actors.pipeline.nexus_file import read_end_record, read_manifest
from actors.pipeline.recorder import (
    GetRunStatus,
    ListRuns,
    RecorderActor,
    StartRun,
    StopRun,
    wait_run,
)
from actors.pipeline.run import RunState, RunStatus
from actors.pipeline.subscription import add_tap
from actors.pipeline.taps import TapPolicy
from runtime import (
    ActorError,
    ActorRef,
    ActorSystem,
    InsufficientResources,
    SetParameter,
    ValidationError,
    WrongState,
)
from supervisors import ActorSpec, open_actor_system

from .fakes import Crash, FakeCamera


@contextlib.asynccontextmanager
async def bench(directory: Path, **camera: Any) -> AsyncIterator[ActorSystem]:
    specs = [
        ActorSpec("camera", lambda: FakeCamera(**camera)),
        ActorSpec("meter", SyntheticReadable),
        ActorSpec(
            "recorder",
            lambda: RecorderActor(
                directory,
                camera="camera",
                min_free_mb=0,
                flush_interval=0.1,
                config_text="[bench]\nname = 'test'\n",
                config_source="test.toml",
            ),
        ),
    ]
    async with open_actor_system(specs) as system:
        yield system


async def finished(recorder: ActorRef, seconds: float = 20.0) -> RunStatus:
    with trio.fail_after(seconds):
        return await wait_run(recorder)


async def test_a_sequence_lands_in_the_file_with_its_frame_numbers_and_manifest(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        status = await recorder.ask(
            StartRun("seq-1", metadata={"sample": "quartz", "operator": "ada"}, frames=60)
        )
        assert status.state is RunState.RECORDING
        final = await finished(recorder)
    assert final.state is RunState.COMPLETED
    path = Path(final.path)
    assert path.parent == tmp_path and path.name.endswith("_seq-1.nxs")
    record = read_end_record(path)
    assert record["status"] == "completed"
    assert (record["frames_expected"], record["frames_written"], record["frames_dropped"]) == (
        60,
        60,
        0,
    )
    assert record["frames_missing"] == 0
    with h5py.File(path, "r") as f:
        assert list(f["entry/instrument/camera/frame_number"]) == list(range(1, 61))
        assert f["entry/data/data"].shape == (60, 64, 48)
        assert int(f["entry/data/data"][59, 0, 0]) == 60
        assert f["entry/title"][()] == b"seq-1"
    manifest = read_manifest(path)
    assert manifest["metadata"] == {"sample": "quartz", "operator": "ada"}
    assert manifest["devices"]["meter"]["parameters"]["amplitude"]["value"] == 1.0
    assert manifest["devices"]["meter"]["info"]["driver"] == "synthetic_signal"
    assert manifest["devices"]["camera"]["parameters"]["exposure"]["units"] == "ms"
    assert manifest["config"] == {"source": "test.toml", "text": "[bench]\nname = 'test'\n"}
    assert manifest["software"]["h5py"] == h5py.__version__
    assert "recorder" not in manifest["devices"]


async def test_a_slow_preview_consumer_never_costs_the_writer_a_frame(tmp_path: Path) -> None:
    async with bench(tmp_path, interval=0.001) as system:
        recorder = system.ref("recorder")
        preview = await add_tap(system.ref("camera"), "frames", "gui", TapPolicy.LATEST)
        shown = []

        async def slow_gui() -> None:
            async for frame in preview:
                shown.append(frame.frame_number)
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_gui)
            await recorder.ask(StartRun("preview", frames=200))
            final = await finished(recorder)
            nursery.cancel_scope.cancel()
        stats = preview.statistics()
    assert final.frames_written == 200 and final.frames_dropped == 0
    assert len(shown) < 50 and stats.skipped > 100  # the GUI skipped; nobody waited for it


async def test_gaps_in_the_cameras_numbers_are_counted_as_missing(tmp_path: Path) -> None:
    async with bench(tmp_path, skip={5, 6, 20}) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("gaps", frames=30))
        final = await finished(recorder)
    record = read_end_record(Path(final.path))
    assert record["status"] == "incomplete"  # 30 asked for, 27 came: said, not hidden
    assert (record["frames_written"], record["frames_missing"], record["frames_dropped"]) == (
        27,
        3,
        0,
    )


async def test_readings_and_parameter_changes_are_recorded_without_loss(tmp_path: Path) -> None:
    async with bench(tmp_path) as system:
        recorder, meter = system.ref("recorder"), system.ref("meter")
        await meter.ask(SetParameter("rate", 5000.0))
        await recorder.ask(StartRun("readings", record_frames=False))
        await trio.sleep(0.3)
        await meter.ask(SetParameter("amplitude", 2.5))
        for _ in range(5):  # the same value again: a report, not a change, and not recorded
            await meter.ask(SetParameter("amplitude", 2.5))
        await trio.sleep(0.3)
        final = await recorder.ask(StopRun())
    assert final.state is RunState.COMPLETED
    assert final.readings_lost == 0 and final.readings_recorded > 1000
    path = Path(final.path)
    with h5py.File(path, "r") as f:
        values = f["entry/readings/meter/reading/value"]
        assert values.shape[0] == final.readings_recorded
        assert values.attrs["units"] == "V"
        amplitude = f["entry/readings/meter/parameters/amplitude"]
        assert list(amplitude["value"]) == [1.0, 2.5]  # the start value, then the change
        assert "camera" not in f["entry/instrument"] or "data" not in f["entry/instrument/camera"]
    table = read_readings(path.with_suffix(".readings.arrows"))
    readings = table.filter(table["channel"].to_numpy(zero_copy_only=False) == "reading")
    assert readings.num_rows == final.readings_recorded
    assert read_end_record(path)["reason"] == "stopped by user"


async def test_bad_requests_are_refused_with_what_is_allowed(tmp_path: Path) -> None:
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        for request, error, text in [
            (StartRun("../etc/passwd"), ValidationError, "1 to 64 characters"),
            (StartRun("ok", compression="gzip9"), ValidationError, "allowed: none, bitshuffle-lz4"),
            (StartRun("ok", frames=0), ValidationError, "frames must be 1.."),
            (StartRun("ok", frames=5, record_frames=False), ValidationError, "record_frames=True"),
            (StartRun("ok", duration=-1.0), ValidationError, "duration must be > 0"),
            (StopRun(), WrongState, "no run is recording"),
        ]:
            with pytest.raises(ActorError) as caught:
                await recorder.ask(request)
            assert isinstance(caught.value.cause, error) and text in str(caught.value.cause)
        await recorder.ask(StartRun("first", record_frames=False))
        with pytest.raises(ActorError, match="is recording; stop it"):
            await recorder.ask(StartRun("second"))
        await recorder.ask(StopRun())
        runs = await recorder.ask(ListRuns())
        assert [(r.status, r.name.endswith("_first")) for r in runs] == [("completed", True)]
        assert (await recorder.ask(GetRunStatus())).state is RunState.COMPLETED
    assert len(list(tmp_path.glob("*.nxs"))) == 1  # refused runs left no files behind


async def test_low_disk_space_refuses_a_run_and_ends_a_running_one_with_an_end_record(
    tmp_path: Path,
) -> None:
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        await recorder.ask(SetParameter("min_free_mb", free_mb * 2))
        with pytest.raises(ActorError) as caught:
            await recorder.ask(StartRun("refused"))
        assert isinstance(caught.value.cause, InsufficientResources)
        assert "disk space low" in str(caught.value.cause)
        await recorder.ask(SetParameter("min_free_mb", 0.0))
        await recorder.ask(StartRun("squeezed"))
        await trio.sleep(0.2)
        await recorder.ask(SetParameter("min_free_mb", free_mb * 2))  # the disk "fills"
        final = await finished(recorder)
    assert final.state is RunState.FAILED and "disk full" in final.error
    record = read_end_record(Path(final.path))
    assert record["status"] == final.outcome == "disk full" and "min_free_mb" in record["reason"]
    assert record["frames_written"] == final.frames_written


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return result.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> AsyncIterator[Path]:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "4m"):
        pytest.skip("needs root to mount a 4 MB tmpfs (CI runs as root on the lab machine)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


async def test_a_really_full_disk_ends_the_run_with_a_write_error_and_the_next_run_starts_once_space_is_back(
    small_disk: Path,
) -> None:
    """min_free_mb = 0: nothing stops the run before the file system says ENOSPC."""
    async with bench(small_disk, shape=(256, 256), interval=0.002) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("full", frames=200, compression="none"))  # fills the disk
        final = await finished(recorder)
        assert (final.state, final.outcome) == (RunState.FAILED, "write error")
        assert "No space left on device" in final.error
        assert final.end_record["error"] == "ENOSPC"
        (listed,) = await recorder.ask(ListRuns())
        assert (listed.status, listed.error, listed.frames_written) == (
            "write error",
            "ENOSPC",
            final.frames_written,
        )
        for leftover in small_disk.glob("*full*"):  # space is back
            shutil.move(leftover, small_disk.parent / leftover.name)
        await recorder.ask(StartRun("after", frames=5))
        again = await finished(recorder)
        assert again.outcome == "completed" and again.frames_written == 5
    path = small_disk.parent / Path(final.path).name
    with h5py.File(path, "r") as f:  # no SWMR needed: the file was closed properly
        in_file = f["entry/instrument/camera/frame_number"].shape[0]
        record = json.loads(bytes(f["entry/end_record"][()]).rstrip(b" "))
    assert in_file == record["frames_written"] == final.frames_written < 200
    assert record["frames_received"] == in_file + record["frames_discarded"]


async def test_the_simulated_bench_records_full_prime_bsi_frames(tmp_path: Path) -> None:
    """The bench as the daemon builds it: the real camera actor on the simulated sensor."""
    import dataclasses

    from runtime.config import StorageConfig
    from supervisors.bench import open_bench, simulated_bench_config

    storage = StorageConfig(directory=tmp_path, ring_directory=tmp_path, min_free_mb=0)
    config = dataclasses.replace(simulated_bench_config(), storage=storage)
    async with open_bench(config) as bench:
        recorder = bench.system.ref("recorder")
        await recorder.ask(StartRun("full-frames", frames=12, metadata={"who": "ci"}))
        final = await finished(recorder, 60)
    assert final.state is RunState.COMPLETED and final.frames_written == 12
    with h5py.File(final.path, "r") as f:
        data = f["entry/data/data"]
        assert data.shape == (12, 2048, 2048) and data.dtype == np.uint16
        assert list(f["entry/instrument/camera/frame_number"]) == list(range(1, 13))
        assert f["entry/instrument/camera/settings/roi"][()] == b"0,0,2048,2048"
        devices = json.loads(f["entry/manifest/json"][()])["devices"]
    assert {"esp300.axis1", "maitai", "power_meter", "camera", "camera.ring"} <= devices.keys()
    assert devices["maitai"]["parameters"]["wavelength"]["units"] == "nm"


async def test_the_output_directory_is_a_parameter_checked_before_it_is_taken(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        with pytest.raises(ActorError, match="absolute path"):
            await recorder.ask(SetParameter("directory", "relative/runs"))
        for outside in ("/", "/proc/self", "/etc", str(tmp_path / ".." / "x"), str(tmp_path) + "x"):
            with pytest.raises(ActorError, match="outside where run files may go") as caught:
                await recorder.ask(SetParameter("directory", outside))
            assert f"{tmp_path} and below" in str(caught.value)
        with pytest.raises(ActorError) as caught:
            await recorder.ask(SetParameter("directory", "/" + "a" * 100_000))
        assert len(str(caught.value)) < 600
        await recorder.ask(SetParameter("directory", str(tmp_path / "elsewhere")))
        await recorder.ask(StartRun("moved", record_frames=False))
        final = await recorder.ask(StopRun())
    assert Path(final.path).parent == tmp_path / "elsewhere"


async def test_a_camera_crash_mid_run_ends_the_run_incomplete_with_its_frames_kept(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path, interval=0.005) as system:
        recorder, camera = system.ref("recorder"), system.ref("camera")
        await recorder.ask(StartRun("crashy", frames=10_000))
        with trio.fail_after(10):
            while (await recorder.ask(GetRunStatus())).frames_written < 20:
                await trio.sleep(0.05)
        with pytest.raises(ActorError):
            await camera.ask(Crash())
        final = await finished(recorder)
    record = read_end_record(Path(final.path))
    assert record["status"] == "incomplete" and record["frames_dropped"] == 0
    assert record["frames_written"] == record["frames_received"] >= 20
    with h5py.File(final.path, "r") as f:
        numbers = list(f["entry/instrument/camera/frame_number"])
    assert numbers == list(range(1, len(numbers) + 1))  # every frame before the crash, in order
