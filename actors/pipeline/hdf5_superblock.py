"""Clear the "open for writing" marks a dead SWMR writer leaves in an HDF5 file's superblock.

Why this exists: a file written in SWMR mode (superblock version 2 or 3) carries *file
consistency flags* — "open for write", "open for SWMR write" — set while a writer has it open
and cleared when it closes the file. A writer that dies (SIGKILL, power loss) leaves them set,
and then every HDF5 reader that does not ask for SWMR refuses the file ("file is already open
for write (may use <h5clear file> to clear file consistency flags)"), as does any writer.
HDF5 clears them only through ``h5clear``, a command-line tool that is not part of h5py and
whose library hook is a private property, so h5py cannot reach it. The superblock format is
public and small (HDF5 File Format Specification, "Superblock version 2 and 3"):

=======  ======================================================================
offset   field
=======  ======================================================================
0        signature ``\\x89HDF\\r\\n\\x1a\\n``
8        version (2 or 3)
9, 10    size of offsets, size of lengths (8 and 8 here)
11       file consistency flags
12       base address, superblock extension address, end-of-file address,
         root group object header address (size-of-offsets bytes each)
12+4n    checksum: Jenkins' lookup3 over everything before it
=======  ======================================================================

:func:`clear_status_flags` rewrites byte 11 and the checksum — what ``h5clear -s`` does — and
optionally the end-of-file address, for a file that was cut short where its writer failed to
extend it (``h5clear --increment``'s case, here set to the real size). It first checks that its
own lookup3 reproduces the checksum HDF5 stored; if not, it changes nothing.

Error handling: :class:`SuperblockError` for a file this cannot handle (no HDF5 signature at 0,
an old superblock version, a checksum it cannot reproduce).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

SIGNATURE = b"\x89HDF\r\n\x1a\n"
FLAGS_OFFSET = 11
MASK = 0xFFFFFFFF


class SuperblockError(Exception):
    """The file's superblock is not one this module can rewrite."""


@dataclass(frozen=True, slots=True)
class Superblock:
    version: int
    offset_size: int
    flags: int
    end_of_file: int  # the end-of-file address HDF5 stored (the file must be at least this long)

    @property
    def size(self) -> int:
        return 12 + 4 * self.offset_size + 4


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, as HDF5 checksums its metadata."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & MASK
    view = memoryview(data)
    position = 0
    while length - position > 12:
        x, y, z = struct.unpack_from("<III", view, position)
        a, b, c = _mix((a + x) & MASK, (b + y) & MASK, (c + z) & MASK)
        position += 12
    tail = bytes(view[position:])
    if not tail:
        return c
    x, y, z = struct.unpack("<III", tail.ljust(12, b"\0"))
    a, b, c = _final((a + x) & MASK, (b + y) & MASK, (c + z) & MASK)
    return c


def _rot(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = ((a - c) & MASK) ^ _rot(c, 4)
    c = (c + b) & MASK
    b = ((b - a) & MASK) ^ _rot(a, 6)
    a = (a + c) & MASK
    c = ((c - b) & MASK) ^ _rot(b, 8)
    b = (b + a) & MASK
    a = ((a - c) & MASK) ^ _rot(c, 16)
    c = (c + b) & MASK
    b = ((b - a) & MASK) ^ _rot(a, 19)
    a = (a + c) & MASK
    c = ((c - b) & MASK) ^ _rot(b, 4)
    b = (b + a) & MASK
    return a, b, c


def _final(a: int, b: int, c: int) -> tuple[int, int, int]:
    c = ((c ^ b) - _rot(b, 14)) & MASK
    a = ((a ^ c) - _rot(c, 11)) & MASK
    b = ((b ^ a) - _rot(a, 25)) & MASK
    c = ((c ^ b) - _rot(b, 16)) & MASK
    a = ((a ^ c) - _rot(c, 4)) & MASK
    b = ((b ^ a) - _rot(a, 14)) & MASK
    c = ((c ^ b) - _rot(b, 24)) & MASK
    return a, b, c


def _parse(head: bytes) -> Superblock:
    if head[:8] != SIGNATURE:
        raise SuperblockError("no HDF5 signature at the start of the file")
    version = head[8]
    if version not in (2, 3):
        raise SuperblockError(f"superblock version {version} has no consistency flags to clear")
    offset_size = head[9]
    if offset_size not in (2, 4, 8):
        raise SuperblockError(f"unexpected size of offsets {offset_size}")
    block = Superblock(version, offset_size, head[FLAGS_OFFSET], 0)
    if len(head) < block.size:
        raise SuperblockError("the file ends inside its superblock")
    eof_at = 12 + 2 * offset_size
    end_of_file = int.from_bytes(head[eof_at : eof_at + offset_size], "little")
    stored = struct.unpack_from("<I", head, block.size - 4)[0]
    if lookup3(head[: block.size - 4]) != stored:
        raise SuperblockError("the superblock checksum does not match (a damaged superblock?)")
    return Superblock(version, offset_size, block.flags, end_of_file)


def read_superblock(path: Path) -> Superblock:
    with open(path, "rb") as file:
        return _parse(file.read(64))


def clear_status_flags(path: Path, *, end_of_file: int | None = None) -> Superblock:
    """Clear the consistency flags (and set the end-of-file address, if given); returns the
    superblock as it was. Synchronous file I/O: call it from a worker thread."""
    with open(path, "r+b") as file:
        head = file.read(64)
        before = _parse(head)
        block = bytearray(head[: before.size])
        block[FLAGS_OFFSET] = 0
        if end_of_file is not None:
            eof_at = 12 + 2 * before.offset_size
            block[eof_at : eof_at + before.offset_size] = end_of_file.to_bytes(
                before.offset_size, "little"
            )
        struct.pack_into("<I", block, before.size - 4, lookup3(bytes(block[:-4])))
        file.seek(0)
        file.write(block)
        file.flush()
        os.fsync(file.fileno())
    return before
