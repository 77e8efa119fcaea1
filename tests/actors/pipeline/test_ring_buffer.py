"""The shared-memory ring: another process reads frames, and never trusts a torn one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from actors.pipeline.ring_buffer import (
    FrameOverwritten,
    RingBufferError,
    RingBufferReader,
    RingBufferWriter,
)


def frame(number: int, shape: tuple[int, int] = (64, 32)) -> np.ndarray:
    pixels = np.full(shape, number % 65536, dtype=np.uint16)
    pixels[-1, -1] = 7
    return pixels


def write(ring: RingBufferWriter, number: int, shape: tuple[int, int] = (64, 32)) -> int:
    return ring.write(
        frame(number, shape),
        frame_number=number,
        timestamp=1e9 + number,
        exposure_ms=5.0,
        bit_depth=16,
    )


def test_reader_sees_the_newest_frames_and_their_metadata(tmp_path: Path) -> None:
    ring = RingBufferWriter(tmp_path / "cam.ring", capacity=4, max_pixel_bytes=64 * 32 * 2)
    try:
        with RingBufferReader(tmp_path / "cam.ring") as reader:
            with pytest.raises(FrameOverwritten, match="no frame"):
                reader.latest()
            for number in range(1, 11):
                write(ring, number)
            latest = reader.latest()
            assert (latest.sequence, latest.frame_number, latest.timestamp) == (9, 10, 1e9 + 10)
            assert latest.pixels.shape == (64, 32) and latest.pixels[0, 0] == 10
            assert reader.read(6).frame_number == 7  # still in the 4-slot ring
            with pytest.raises(FrameOverwritten):
                reader.read(5)  # overwritten by sequence 9
            view = reader.read(9, copy=False)
            assert reader.still_valid(view)
            write(ring, 11)
            write(ring, 12)
            write(ring, 13)
            write(ring, 14)
            assert not reader.still_valid(view)  # the slot was reused: the view is void
            del view
            header = reader.header()
            assert (header.capacity, header.write_seq) == (4, 14)
    finally:
        ring.close()
    assert not (tmp_path / "cam.ring").exists()


def test_a_frame_too_big_for_a_slot_is_refused(tmp_path: Path) -> None:
    ring = RingBufferWriter(tmp_path / "cam.ring", capacity=2, max_pixel_bytes=100)
    try:
        with pytest.raises(RingBufferError, match="slots hold"):
            write(ring, 1, shape=(2048, 2048))
    finally:
        ring.close()


def test_a_file_that_is_not_a_ring_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other"
    path.write_bytes(b"\0" * 8192)
    with pytest.raises(RingBufferError, match="not a benchd ring"):
        RingBufferReader(path)


READER = """
import json, sys, time
from actors.pipeline.ring_buffer import FrameOverwritten, RingBufferReader
reader = RingBufferReader(sys.argv[1])
checked = torn = 0
deadline = time.monotonic() + 20
while checked < 200 and time.monotonic() < deadline:
    try:
        f = reader.latest(copy=False)
        ok = int(f.pixels[0, 0]) == f.frame_number % 65536 and int(f.pixels[-1, -1]) == 7
        if reader.still_valid(f):
            assert ok, (f.frame_number, int(f.pixels[0, 0]))
            checked += 1
        del f
    except FrameOverwritten:
        torn += 1
print(json.dumps({"checked": checked, "epoch": reader.epoch}))
"""


def test_another_process_reads_frames_while_they_are_written(tmp_path: Path) -> None:
    path = tmp_path / "cam.ring"
    ring = RingBufferWriter(path, capacity=8, max_pixel_bytes=256 * 256 * 2)
    process = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3],
        text=True,
    )
    try:
        number = 0
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            number += 1
            write(ring, number, shape=(256, 256))
            time.sleep(0.0005)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
        ring.close()
    result = json.loads(output)
    assert result["checked"] == 200  # every frame it trusted was whole and the right one
    assert result["epoch"] == ring.epoch


def test_a_restarted_writer_makes_old_readers_stale(tmp_path: Path) -> None:
    path = tmp_path / "cam.ring"
    first = RingBufferWriter(path, capacity=2, max_pixel_bytes=64 * 32 * 2)
    reader = RingBufferReader(path)
    assert not reader.stale()
    first.close()
    assert reader.stale()  # gone
    second = RingBufferWriter(path, capacity=2, max_pixel_bytes=64 * 32 * 2)
    try:
        assert reader.stale() and not RingBufferReader(path).stale()
    finally:
        reader.close()
        second.close()


def test_too_little_shared_memory_is_an_error_not_a_bus_error(tmp_path: Path) -> None:
    disk = tmp_path / "shm"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("needs root to mount a 2 MB tmpfs (CI runs as root on the lab machine)")
    try:
        with pytest.raises(RingBufferError, match="ring_slots"):
            RingBufferWriter(disk / "cam.ring", capacity=4, max_pixel_bytes=2048 * 2048 * 2)
        assert list(disk.iterdir()) == []  # nothing half-made left behind
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)
