"""Replace a small file all at once: a crash or a full disk leaves the old content or the new,
never half of either.

The text goes to a temporary file in the same directory, is flushed and fsync'ed, then renamed
over the target (atomic on POSIX), and the directory is fsync'ed so the rename itself survives
a power cut. Blocking: call it in a worker thread. Presets, the plan history's rewrite and the
script id reservation all keep their state this way.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once (tmp + fsync + rename + fsync directory)."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename or an unlink in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


__all__ = ["atomic_write", "fsync_directory"]
