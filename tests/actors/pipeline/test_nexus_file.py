"""The run file: NeXus layout, SWMR readers during the run, and what survives a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # a reader of compressed runs needs the filter registered
import numpy as np
import pytest

from actors.pipeline.nexus_file import (
    ChannelKind,
    ChannelSpec,
    Compression,
    FrameLayout,
    FrameRecord,
    NexusRunFile,
    read_end_record,
    read_manifest,
)

SHAPE = (32, 48)


def frames(first: int, count: int) -> list[FrameRecord]:
    out = []
    for number in range(first, first + count):
        pixels = (np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint16).reshape(SHAPE) + number) % 4096
        out.append(FrameRecord(number, 1.7e9 + number / 47, 20.0, pixels))
    return out


def create(path: Path, compression: Compression = Compression.NONE) -> NexusRunFile:
    return NexusRunFile.create(
        path,
        title="test-run",
        start_time=1.7e9,
        manifest={"devices": {"camera": {"parameters": {"exposure": {"value": 20.0}}}}},
        metadata={"sample": "quartz"},
        devices={
            "camera": {"exposure": {"value": 20.0, "units": "ms"}},
            "meter": {"wavelength": {"value": 800, "units": "nm"}, "filter": {"value": "fast"}},
        },
        frames=FrameLayout("camera", SHAPE, compression),
        channels=[
            ChannelSpec("meter", "reading", ChannelKind.READING, "float", "W"),
            ChannelSpec("meter", "filter", ChannelKind.PARAMETER, "str"),
            ChannelSpec("meter", "wavelength", ChannelKind.PARAMETER, "int", "nm"),
        ],
    )


def test_layout_is_nexus_and_frames_land_with_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "run.nxs"
    run = create(path)
    run.append_frames(frames(1, 5))
    run.append_channel("meter/reading", [1.0, 2.0], [1e-3, float("nan")], ["", "saturated"])
    run.append_channel("meter/filter", [1.5], ["slow"])
    run.append_channel("meter/wavelength", [1.5], [1064])
    assert run.flush() == 5
    run.finish({"status": "completed", "frames_written": 5}, end_time=1.7e9 + 10)
    with h5py.File(path, "r") as f:
        assert f["entry"].attrs["NX_class"] == "NXentry"
        assert f["entry/instrument/camera"].attrs["NX_class"] == "NXdetector"
        assert f["entry/data"].attrs["signal"] == "data"
        data = f["entry/data/data"]  # the NXdata link resolves to the detector's frames
        assert data.shape == (5, *SHAPE) and data.dtype == np.uint16
        assert data.chunks == (1, *SHAPE)
        assert list(f["entry/instrument/camera/frame_number"]) == [1, 2, 3, 4, 5]
        assert np.array_equal(data[2], frames(3, 1)[0].pixels)
        assert f["entry/instrument/camera/exposure_time"].attrs["units"] == "ms"
        assert f["entry/instrument/meter/wavelength"][()] == 800
        assert f["entry/instrument/meter/wavelength"].attrs["units"] == "nm"
        reading = f["entry/readings/meter/reading"]
        assert list(reading["flags"]) == [b"", b"saturated"]
        assert reading["value"].attrs["units"] == "W"
        assert list(f["entry/readings/meter/parameters/filter/value"]) == [b"slow"]
        assert list(f["entry/readings/meter/parameters/wavelength/value"]) == [1064]
        assert f["entry/end_time"][()].decode().startswith("2023-11-14T22:13:30")
    assert read_end_record(path) == {"status": "completed", "frames_written": 5}
    assert read_manifest(path)["devices"]["camera"]["parameters"]["exposure"]["value"] == 20.0


def test_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "run.nxs"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        create(path)
    assert path.read_bytes() == b"precious"


def test_bitshuffle_lz4_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "run.nxs"
    run = create(path, Compression.BITSHUFFLE_LZ4)
    run.append_frames(frames(1, 3))
    run.finish({"status": "completed"}, end_time=1.7e9)
    with h5py.File(path, "r") as f:
        data = f["entry/instrument/camera/data"]
        assert data.id.get_create_plist().get_filter(0)[0] == hdf5plugin.BSHUF_ID
        assert np.array_equal(data[1], frames(2, 1)[0].pixels)


def test_a_swmr_reader_follows_the_run_while_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "run.nxs"
    run = create(path)
    run.append_frames(frames(1, 3))
    run.flush()
    with h5py.File(path, "r", swmr=True) as reader:
        data = reader["entry/instrument/camera/data"]
        numbers = reader["entry/instrument/camera/frame_number"]
        assert data.shape[0] == 3
        assert read_end_record(path) == {"status": "running"}
        run.append_frames(frames(4, 4))
        run.flush()
        data.refresh()
        numbers.refresh()
        assert data.shape[0] == 7 and list(numbers) == list(range(1, 8))
        assert np.array_equal(data[6], frames(7, 1)[0].pixels)
    run.finish({"status": "completed"}, end_time=1.7e9)


WRITER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from tests.actors.pipeline.test_nexus_file import create, frames
run = create(Path(sys.argv[1]))
run.append_frames(frames(1, 10))
run.flush()
print("flushed", flush=True)
number = 11
while True:  # keep writing (unflushed) until killed
    run.append_frames(frames(number, 1))
    number += 1
    time.sleep(0.001)
"""


def test_sigkill_mid_run_leaves_a_readable_file_with_every_flushed_frame(tmp_path: Path) -> None:
    path = tmp_path / "run.nxs"
    root = Path(__file__).resolve().parents[3]
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(root)], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "flushed"
            time.sleep(0.2)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with h5py.File(path, "r", swmr=True) as f:
        count = f["entry/instrument/camera/frame_number"].shape[0]
        assert count >= 10
        assert list(f["entry/instrument/camera/frame_number"][:10]) == list(range(1, 11))
        assert np.array_equal(f["entry/instrument/camera/data"][9], frames(10, 1)[0].pixels)
        assert json.loads(f["entry/manifest/metadata_json"][()]) == {"sample": "quartz"}
    assert read_end_record(path)["status"] == "running"  # it never ended: readers can tell


def test_nexus_readers_find_the_frames_as_the_default_plot(tmp_path: Path) -> None:
    """What NeXpy, silx and HDFView rely on: NX_class attributes and the default NXdata."""
    from nexusformat.nexus import nxload

    path = tmp_path / "run.nxs"
    run = create(path)
    run.append_frames(frames(1, 2))
    run.finish({"status": "completed"}, end_time=1.7e9)
    root = nxload(str(path))
    try:
        assert root.entry.nxclass == "NXentry"
        assert root.entry.instrument.camera.nxclass == "NXdetector"
        plot = root.entry.plottable_data
        assert plot is not None and plot.nxsignal.shape == (2, *SHAPE)
    finally:
        root.nxfile.close()


#: A writer whose file may not grow past 1 MiB: frames until HDF5 reports EFBIG, then finish.
#: HDF5 cannot close such a file (it must extend it to what it allocated); finish writes the end
#: record in place and seals the superblock instead. os._exit: the library still holds the
#: file, and this process must not let it try again at exit.
EFBIG = """
import json, os, resource, sys
import numpy as np
from pathlib import Path
from actors.pipeline.nexus_file import *
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
run = NexusRunFile.create(
    Path(sys.argv[1]), title="big", start_time=1.7e9, manifest={}, metadata={}, devices={},
    frames=FrameLayout("camera", (128, 128), Compression.NONE), channels=[],
)
pixels = np.ones((128, 128), np.uint16)
try:
    for number in range(1, 1000):
        run.append_frames([FrameRecord(number, 1.7e9 + number, 2.0, pixels)])
        if number % 5 == 0:
            run.flush()  # as a run does every second
except OSError as error:
    print(error.errno, run.frames_written, run.frames_committed, flush=True)
record = {"status": "write error", "frames_written": run.frames_written, "frames_discarded": 0}
print(json.dumps(run.finish(record, 1.7e9 + 99)), flush=True)
os._exit(0)
"""


def test_a_file_hdf5_cannot_close_is_sealed_with_its_end_record_in_place(tmp_path: Path) -> None:
    path = tmp_path / "big.nxs"
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", EFBIG, str(path)], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    failure, returned = done.stdout.split("\n")[:2]
    errno_number, written, committed = (int(x) for x in failure.split())
    assert errno_number == 27 and 0 < committed <= written  # EFBIG
    with h5py.File(path, "r") as f:  # no SWMR, no h5clear: the seal made it a closed file
        record = json.loads(bytes(f["entry/end_record"][()]).rstrip(b" "))
        numbers = list(f["entry/instrument/camera/frame_number"][:committed])
    assert record == json.loads(returned)  # what finish said it wrote
    assert "HDF5 could not close the file" in record["sealed"]  # the normal close failed
    # Only what the last flush made durable is claimed; the rest is counted as discarded.
    assert (record["frames_written"], record["frames_discarded"]) == (
        committed,
        written - committed,
    )
    assert numbers == list(range(1, committed + 1))
    assert not path.with_name(f".{path.name}.reserve").exists()
