"""Runs a crash left open are repaired when the recorder starts: any HDF5 reader opens them
without SWMR, their end record says "crashed" with what is in the file, ListRuns and the run
status say the same, leftovers are gone. (The same against a SIGKILLed daemon:
tests/test_daemon_runs.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pyarrow as pa
import pytest
import trio

from actors.pipeline.crash_repair import repair_directory
from actors.pipeline.hdf5_superblock import clear_status_flags, lookup3, read_superblock
from actors.pipeline.nexus_file import (
    ChannelKind,
    ChannelSpec,
    NexusRunFile,
    read_end_record,
    reserve_path,
)
from actors.pipeline.recorder import GetRunStatus, ListRuns, RecorderActor
from actors.pipeline.run_status import RunState
from supervisors import ActorSpec, open_actor_system

ROOT = Path(__file__).resolve().parents[3]

#: A writer that dies the way SIGKILL kills: 10 frames and 5 readings flushed, then 3 more
#: frames and an Arrow batch cut in half, then gone without closing anything.
CRASH = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import pyarrow as pa
    from pathlib import Path
    from actors.pipeline.nexus_file import *
    from actors.pipeline.arrow_readings import ArrowReadingsWriter, Row
    path = Path(sys.argv[1])
    run = NexusRunFile.create(
        path, title="doomed", start_time=1.0e9,
        manifest={"run": {"name": "doomed", "start_time": 1.0e9, "options": {"frames": 100}}},
        metadata={}, devices={}, frames=FrameLayout("camera", (32, 16)),
        channels=[ChannelSpec("meter", "reading", ChannelKind.READING, "float", "V")],
    )
    arrow = ArrowReadingsWriter(path.with_suffix(".readings.arrows"))
    def frames(numbers):
        pixels = np.ones((32, 16), np.uint16)
        return [FrameRecord(n, 1.0e9 + n, 2.0, pixels) for n in numbers]
    run.append_frames(frames(range(1, 11)))
    run.append_channel("meter/reading", [1.0e9 + i for i in range(5)], [0.5] * 5, [""] * 5)
    arrow.append([Row("meter", "reading", 1.0e9 + i, 0.5) for i in range(5)])
    arrow.flush()
    run.flush()
    run.append_frames(frames(range(11, 14)))
    with open(arrow.path, "ab") as tail:
        tail.write(b"\\xff\\xff\\xff\\xff\\x80\\x00")  # half a message
    os._exit(9)
    """
)


def crash(path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CRASH, str(path)], cwd=ROOT, capture_output=True)
    assert done.returncode == 9, done.stderr.decode()[-2000:]


def test_lookup3_is_jenkins_hashlittle_and_reproduces_hdf5s_checksum(tmp_path: Path) -> None:
    # Test vectors from Bob Jenkins' lookup3.c (driver5).
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["x"] = 1
    block = read_superblock(path)  # raises unless our checksum equals the one HDF5 wrote
    assert block.version == 3 and block.flags == 0


def test_a_crashed_run_is_repaired_when_the_recorder_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "20260101-120000_doomed.nxs"
    crash(path)
    assert read_superblock(path).flags  # "open for SWMR write", left by the dead writer
    with pytest.raises(OSError, match="h5clear"):
        h5py.File(path, "r")
    assert reserve_path(path).exists()

    async def start_recorder() -> tuple[object, object]:
        specs = [ActorSpec("recorder", lambda: RecorderActor(tmp_path, min_free_mb=0))]
        async with open_actor_system(specs) as system:
            recorder = system.ref("recorder")
            return await recorder.ask(GetRunStatus()), await recorder.ask(ListRuns())

    status, runs = trio.run(start_recorder)
    record = read_end_record(path)
    with h5py.File(path, "r") as f:  # no SWMR, no h5clear
        in_file = f["entry/data/data"].shape[0]
        numbers = list(f["entry/instrument/camera/frame_number"])
        readings = f["entry/readings/meter/reading/value"].shape[0]
        stored = json.loads(bytes(f["entry/end_record"][()]).rstrip(b" "))
    assert stored == record and record["status"] == "crashed"
    assert 10 <= in_file <= 13 and numbers == list(range(1, in_file + 1))  # flushed ones kept
    assert (
        (record["frames_written"], record["readings_recorded"])
        == (in_file, readings)
        == (
            in_file,
            5,
        )
    )
    assert record["frames_expected"] == 100 and "killed, crashed or lost power" in record["reason"]
    assert status.state is RunState.FAILED and status.outcome == "crashed"  # type: ignore[attr-defined]
    assert (status.name, status.frames_written) == ("doomed", in_file)  # type: ignore[attr-defined]
    (listed,) = runs  # type: ignore[misc]
    assert (listed.status, listed.frames_written, listed.readings_recorded) == (
        "crashed",
        in_file,
        5,
    )
    assert not reserve_path(path).exists()
    table = pa.ipc.open_stream(pa.OSFile(str(path.with_suffix(".readings.arrows")))).read_all()
    assert table.num_rows == 5  # the half batch is gone, the stream ends properly
    assert any("repaired a run left open by a crash" in r.message for r in caplog.records)
    assert repair_directory(tmp_path) == []  # repaired once, then left alone


def test_a_run_whose_writer_is_alive_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "20260101-120000_live.nxs"
    run = NexusRunFile.create(
        path,
        title="live",
        start_time=1.0e9,
        manifest={},
        metadata={},
        devices={},
        frames=None,
        channels=[ChannelSpec("meter", "reading", ChannelKind.READING, "float")],
    )
    try:
        assert repair_directory(tmp_path) == []
        assert read_superblock(path).flags  # untouched: still open for writing
        assert read_end_record(path) == {"status": "running"}
    finally:
        run.finish({"status": "completed"}, 1.0e9 + 1)
    assert read_superblock(path).flags == 0 and not reserve_path(path).exists()


def test_clearing_the_flags_keeps_a_valid_checksum(tmp_path: Path) -> None:
    path = tmp_path / "20260101-120000_doomed.nxs"
    crash(path)
    before = clear_status_flags(path)
    after = read_superblock(path)  # re-verifies the checksum it wrote
    assert before.flags and not after.flags and after.end_of_file == before.end_of_file
