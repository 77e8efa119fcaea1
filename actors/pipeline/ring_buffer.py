"""A shared-memory ring of recent frames that other processes read without copies.

Why: a GUI, a Julia notebook or an analysis process on the same machine wants the newest frames
at full rate without a gRPC hop or a copy per frame. The daemon writes frames into a file under
``/dev/shm``; readers ``mmap`` it and wrap slots in numpy arrays. There is one writer and any
number of readers; readers never block or slow the writer (a reader that is too slow sees that
its frame was overwritten and skips on).

File layout (little-endian; version 1). The header is one 4096-byte page::

    offset  type     field
    0       8s       magic  b"BENCHRB\\0"
    8       u32      version (1)
    12      u32      header_size (4096)
    16      u32      capacity (slots)
    20      u32      slot_header_size (64)
    24      u64      slot_size (bytes per slot, header included; a multiple of 4096)
    32      u64      write_seq (frames committed so far; the newest is write_seq - 1)
    40      u64      epoch (new each time a writer creates the ring; readers compare it)

Slot ``i`` starts at ``header_size + i * slot_size``. Frame number ``n`` of the writer (its
``write_seq`` when it began writing) goes to slot ``n % capacity``. Each slot header::

    0   u64  seq           2n+1 while frame n is being written, 2n+2 once it is complete
    8   u64  frame_number  the camera's frame number
    16  f64  timestamp     Unix time
    24  f64  exposure_ms
    32  u32  height
    36  u32  width
    40  u32  bit_depth
    44  u32  dtype code    (2: uint16)
    48  u64  nbytes        pixel bytes that follow the 64-byte slot header

Seqlock rule for readers: read ``seq`` (must be even and equal to ``2n+2`` for the frame you
want), read metadata and pixels, then read ``seq`` again — if it changed, the slot was being
overwritten and what you read is void. The writer is a single thread and updates ``seq`` before
and after the pixels. This relies on x86-64's store order (TSO): other processes see the
writer's stores in program order. On weakly ordered CPUs (ARM64) Python has no memory barrier
to offer, so a reader there could accept a torn frame; the daemon runs on x86-64 lab PCs.

A writer that restarts makes a new file (a new ``epoch``) at the same path; a reader holding
the old map keeps seeing the old, frozen ring. :meth:`RingBufferReader.stale` tells, and a new
``RingBufferReader(path)`` follows the new ring.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MAGIC = b"BENCHRB\0"
VERSION = 1
HEADER_SIZE = 4096
SLOT_HEADER_SIZE = 64
PAGE = 4096
DTYPE_CODES = {np.dtype(np.uint16): 2}
DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}

_HEADER = struct.Struct("<8sIIIIQQQ")  # magic .. epoch
_WRITE_SEQ = 32
_EPOCH = 40
_SLOT = struct.Struct("<QQddIIIIQ")
_U64 = struct.Struct("<Q")


class RingBufferError(Exception):
    """The file is not a ring buffer of a version this reader knows, or a frame does not fit."""


class FrameOverwritten(Exception):
    """The frame asked for is no longer in the ring (or was overwritten while being read)."""


@dataclass(frozen=True, slots=True)
class RingHeader:
    capacity: int
    slot_size: int
    write_seq: int
    epoch: int

    @property
    def max_pixel_bytes(self) -> int:
        return self.slot_size - SLOT_HEADER_SIZE


@dataclass(frozen=True, slots=True)
class RingFrame:
    """A frame read from the ring; ``pixels`` is a view into shared memory unless copied."""

    sequence: int  # the writer's count (0 for the first frame it wrote)
    frame_number: int
    timestamp: float
    exposure_ms: float
    bit_depth: int
    pixels: npt.NDArray[Any]


def slot_size_for(max_pixel_bytes: int) -> int:
    return -(-(SLOT_HEADER_SIZE + max_pixel_bytes) // PAGE) * PAGE


def default_directory() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path("/tmp")


class RingBufferWriter:
    """Creates the ring file and writes frames into it (one writer; synchronous, a memcpy)."""

    def __init__(self, path: Path, capacity: int, max_pixel_bytes: int) -> None:
        if capacity < 2:
            raise RingBufferError(f"a ring needs at least 2 slots, got {capacity}")
        self.path = path
        self.capacity = capacity
        self.slot_size = slot_size_for(max_pixel_bytes)
        size = HEADER_SIZE + capacity * self.slot_size
        temporary = path.with_name(path.name + ".new")
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            # Reserve the memory now: a sparse file on a too-small /dev/shm would kill the
            # whole daemon with SIGBUS at the first frame that lands on an unbacked page.
            os.posix_fallocate(fd, 0, size)
            self._map = mmap.mmap(fd, size)
        except OSError as error:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise RingBufferError(
                f"cannot make a {size / 2**20:.0f} MiB ring at {path} ({error.strerror});"
                " give it fewer slots ([storage] ring_slots) or another ring_directory"
            ) from error
        os.close(fd)
        self._write_seq = 0
        self.epoch = time.time_ns()
        _HEADER.pack_into(
            self._map,
            0,
            MAGIC,
            VERSION,
            HEADER_SIZE,
            capacity,
            SLOT_HEADER_SIZE,
            self.slot_size,
            0,
            self.epoch,
        )
        os.replace(temporary, path)  # readers never see a half-made header

    @property
    def write_seq(self) -> int:
        return self._write_seq

    def write(
        self,
        pixels: npt.NDArray[Any],
        *,
        frame_number: int,
        timestamp: float,
        exposure_ms: float,
        bit_depth: int,
    ) -> int:
        """Store one frame; returns its sequence number. Raises RingBufferError if too big."""
        code = DTYPE_CODES.get(pixels.dtype)
        if code is None or pixels.ndim != 2:
            raise RingBufferError(f"frames must be 2-D uint16, got {pixels.dtype} {pixels.shape}")
        if pixels.nbytes > self.slot_size - SLOT_HEADER_SIZE:
            raise RingBufferError(
                f"a {pixels.shape} frame needs {pixels.nbytes} bytes; slots hold"
                f" {self.slot_size - SLOT_HEADER_SIZE}"
            )
        sequence = self._write_seq
        offset = HEADER_SIZE + (sequence % self.capacity) * self.slot_size
        _U64.pack_into(self._map, offset, 2 * sequence + 1)
        height, width = pixels.shape
        _SLOT.pack_into(
            self._map,
            offset,
            2 * sequence + 1,
            frame_number,
            timestamp,
            exposure_ms,
            height,
            width,
            bit_depth,
            code,
            pixels.nbytes,
        )
        start = offset + SLOT_HEADER_SIZE
        target = np.frombuffer(self._map, np.uint8, pixels.nbytes, start)
        target[:] = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
        del target  # release the buffer export so the map can be closed later
        _U64.pack_into(self._map, offset, 2 * sequence + 2)
        self._write_seq = sequence + 1
        _U64.pack_into(self._map, _WRITE_SEQ, self._write_seq)
        return sequence

    def close(self, *, unlink: bool = True) -> None:
        self._map.close()
        if unlink:
            self.path.unlink(missing_ok=True)


class RingBufferReader:
    """Reads frames from a ring another process writes. Needs only numpy.

    >>> ring = RingBufferReader("/dev/shm/benchd-camera.ring")
    >>> frame = ring.latest()          # a copy, safe to keep
    >>> view = ring.read(frame.sequence, copy=False)   # zero-copy; check ring.still_valid(view)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise RingBufferError(f"{self.path}: {size} bytes is too small for a ring header")
            self._map = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, version, header_size, capacity, slot_header, slot_size, _, epoch = (
            _HEADER.unpack_from(self._map, 0)
        )
        if magic != MAGIC:
            raise RingBufferError(f"{self.path}: not a benchd ring buffer (magic {magic!r})")
        if version != VERSION or header_size != HEADER_SIZE or slot_header != SLOT_HEADER_SIZE:
            raise RingBufferError(
                f"{self.path}: ring version {version} (header {header_size}, slot header"
                f" {slot_header}); this reader knows version {VERSION}"
            )
        self.capacity = capacity
        self.slot_size = slot_size
        self.epoch = epoch

    def stale(self) -> bool:
        """True if the file at ``path`` is now another ring (the writer restarted) or gone."""
        try:
            with open(self.path, "rb") as file:
                header = file.read(_HEADER.size)
        except OSError:
            return True
        if len(header) < _HEADER.size:
            return True
        return bool(_HEADER.unpack(header)[7] != self.epoch)

    def header(self) -> RingHeader:
        _, _, _, capacity, _, slot_size, write_seq, epoch = _HEADER.unpack_from(self._map, 0)
        return RingHeader(capacity, slot_size, write_seq, epoch)

    @property
    def write_seq(self) -> int:
        return int(_U64.unpack_from(self._map, _WRITE_SEQ)[0])

    def latest(self, *, copy: bool = True, retries: int = 10) -> RingFrame:
        """The newest complete frame. Raises FrameOverwritten if the ring is still empty."""
        for _ in range(retries):
            newest = self.write_seq - 1
            if newest < 0:
                raise FrameOverwritten(f"{self.path}: no frame written yet")
            try:
                return self.read(newest, copy=copy)
            except FrameOverwritten:
                continue
        raise FrameOverwritten(f"{self.path}: the writer kept overwriting; try again")

    def read(self, sequence: int, *, copy: bool = True) -> RingFrame:
        """Frame ``sequence`` of the writer; with ``copy=False`` a view into shared memory that
        stays meaningful only while :meth:`still_valid` says so."""
        offset = HEADER_SIZE + (sequence % self.capacity) * self.slot_size
        expected = 2 * sequence + 2
        fields = _SLOT.unpack_from(self._map, offset)
        seq, frame_number, timestamp, exposure_ms, height, width, bit_depth, code, nbytes = fields
        if seq != expected:
            raise FrameOverwritten(f"frame {sequence} is not in the ring (slot holds seq {seq})")
        dtype = DTYPES.get(code)
        if dtype is None or nbytes != height * width * dtype.itemsize:
            raise FrameOverwritten(f"frame {sequence}: slot header is inconsistent")
        view = np.frombuffer(self._map, dtype, height * width, offset + SLOT_HEADER_SIZE)
        pixels = view.reshape(height, width)
        if copy:
            pixels = pixels.copy()
        if _U64.unpack_from(self._map, offset)[0] != expected:
            raise FrameOverwritten(f"frame {sequence} was overwritten while being read")
        return RingFrame(sequence, frame_number, timestamp, exposure_ms, bit_depth, pixels)

    def still_valid(self, frame: RingFrame) -> bool:
        """For zero-copy reads: True if the slot still holds ``frame`` (check after use)."""
        offset = HEADER_SIZE + (frame.sequence % self.capacity) * self.slot_size
        return bool(_U64.unpack_from(self._map, offset)[0] == 2 * frame.sequence + 2)

    def close(self) -> None:
        """Close the map; views from ``copy=False`` reads must be dropped first."""
        self._map.close()

    def __enter__(self) -> RingBufferReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
