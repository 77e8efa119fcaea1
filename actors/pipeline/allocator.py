"""Give the memory of a finished run's frames back to the operating system.

Why: frames are large (8 MiB at full sensor size) and many are alive at once while a writer
catches up (up to ``frame_queue`` in its tap, plus the preview streams' copies). glibc's
allocator serves such blocks with ``mmap`` only until the first one is freed; from then on it
raises its threshold (the "dynamic mmap threshold") and serves them from its heaps, which it
seldom returns to the system: the daemon's resident memory then stays at the highest backlog
it ever had, and grows with each new high — +193 MB over 18 streamed runs of full frames
(benchmarks/soak.py; +1.6 MB with this module). Pinning the threshold instead (``mallopt``)
would make every frame a fresh ``mmap`` and cost a third of the compressed writer's speed
(measured with benchmarks/pipeline.py), so the recorder asks glibc to hand back what is free
(``malloc_trim``) once a run has ended, off the event loop.

On other C libraries (musl, macOS) this does nothing: their allocators behave differently and
the soak benchmark is what tells.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    function: Callable[[int], int] = trim
    return function


def release_free_memory() -> bool:
    """Return the allocator's free memory to the system; True if any was returned. Takes a
    few milliseconds with a large heap and holds the allocator's locks meanwhile: call it from
    a worker thread, between runs."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
