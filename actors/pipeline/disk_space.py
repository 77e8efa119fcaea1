"""Room for a run's next write — free disk space and the largest file allowed — checked
before every write (not once a flush).

Why before every write: a run at full frame rate writes ~400 MB a second; checked once a
flush, it overshot ``min_free_mb`` and ran into ENOSPC, which ends a run with a hard write
error instead of a clean "disk full" end. ``statvfs`` is one system call (a few microseconds):
the writer makes it in its worker thread, just before each write, so it costs the event loop
nothing.

Why the file size too: a write past the largest file the process may write (``ulimit -f``,
RLIMIT_FSIZE) or the file system allows (FAT32: 4 GiB) fails with EFBIG, and HDF5 cannot close
a file after that (it must extend the file to what it had allocated, which fails again): the
library keeps the file open for the life of the process. Stopping one write short, with
``FILE_MARGIN`` left for the end record and the close, keeps every file closable.

Error handling: :class:`DiskFull` says how much is free and how much the run keeps free;
:class:`FileTooLarge` what the limit is and where it comes from; a directory whose free space
cannot be read raises the ``OSError`` (it would refuse the write).
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path

MB = 1024 * 1024
FILE_MARGIN = MB  # left below a file size limit for the end record and HDF5's close

#: How the free space of a directory is read; tests swap it for one that "fills the disk".
FreeSpace = Callable[[Path], int]


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on ``directory``'s file system."""
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


#: FAT's statfs magic: the one Linux file system a run may meet whose files stop at 4 GiB.
MSDOS_SUPER_MAGIC = 0x4D44


def _file_system_type(directory: Path) -> int | None:
    """The file system's magic number (Linux ``statfs`` ``f_type``); None elsewhere.

    Why not ``pathconf(PC_FILESIZEBITS)`` on Linux: glibc answers 32 for every file system it
    does not list — tmpfs (/dev/shm) among them — so a run on a RAM disk ended with a false
    EFBIG at 2 GiB. Every Linux file system but FAT takes files far larger than a run."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buffer = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on x86-64
        if libc.statfs(os.fsencode(directory), buffer) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return ctypes.c_long.from_buffer(buffer).value  # f_type: the struct's first field


def file_size_limit(directory: Path) -> tuple[int | None, str]:
    """The largest file this process may write in ``directory``, and where the limit comes
    from; None if there is none worth checking."""
    limits: list[tuple[int, str]] = []
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        limits.append((soft, "the process's file size limit (RLIMIT_FSIZE, ulimit -f)"))
    kind = _file_system_type(directory)
    if kind == MSDOS_SUPER_MAGIC:
        limits.append((2**32 - 1, "the file system's largest file (FAT: 4 GiB)"))
    elif kind is None:  # not Linux: the system's own answer
        try:
            bits = os.pathconf(directory, "PC_FILESIZEBITS")
        except (OSError, ValueError):
            bits = -1
        if 0 < bits < 64:
            limits.append(
                (2 ** (bits - 1) - 1, f"the file system's largest file ({bits}-bit sizes)")
            )
    if not limits:
        return None, ""
    return min(limits)


class DiskFull(Exception):
    """The disk has less free space than the run must leave (``min_free_mb``)."""


class FileTooLarge(Exception):
    """The next write would take the file past the largest file allowed (EFBIG)."""


class DiskGuard:
    """Refuses a write that would leave less than ``min_free_bytes`` free, or make the file
    larger than allowed. Thread-safe for one writer thread; ``min_free_bytes`` may be changed
    from the event loop (an int store)."""

    def __init__(
        self, directory: Path, min_free_bytes: int, free_space: FreeSpace = free_bytes
    ) -> None:
        self.directory = directory
        self.min_free_bytes = min_free_bytes
        self._free_space = free_space
        self.max_file_bytes, self._max_file_source = file_size_limit(directory)

    def free(self) -> int:
        return self._free_space(self.directory)

    def check(self, needed: int = 0, file_size: int = 0, *, space: bool = True) -> None:
        """Raise unless ``needed`` more bytes keep a file of ``file_size`` bytes within the
        size limit (FileTooLarge) and (``space``) leave at least ``min_free_bytes`` free
        (DiskFull)."""
        largest = self.max_file_bytes
        if largest is not None and file_size + needed + FILE_MARGIN > largest:
            raise FileTooLarge(
                f"the next write would take the file past {largest // MB} MiB, the largest"
                f" file allowed by {self._max_file_source}: File too large"
            )
        limit = self.min_free_bytes
        if limit <= 0 or not space:  # no margin asked for: the file system says when it is full
            return
        free = self.free()
        if free - needed < limit:
            raise DiskFull(
                f"disk full: {free // MB} MiB free in {self.directory}, and the run keeps at"
                f" least {limit // MB} MiB free (min_free_mb)"
            )
