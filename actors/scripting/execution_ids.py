"""Execution ids (``x1``, ``x2``, …) that are never handed out twice, across restarts too.

Why: an execution's id names it in logs, in a plan's origin ("script x3") and in the runs it
records; ids that began again at ``x1`` after a restart would give two executions one name.

How: the way a database sequence caches values — the file ``script-ids`` beside the runs holds
the first number not yet reserved; the runner reserves ``BLOCK`` numbers at a time (one small
write in a thread, fsync'd) and hands them out from memory, reserving the next block while half
of this one is left. A restart starts after the last block reserved, so it skips the numbers
the last daemon did not use, never reuses one. If the file cannot be written the runner goes
on counting and says so: ids are then unique only until the next restart.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from ..atomic_file import atomic_write

logger = logging.getLogger(__name__)

IDS_FILE = "script-ids"
BLOCK = 100
_MAX = 10**15


class ExecutionIds:
    """Hands out ``x<n>``; ``path`` None: in memory only (a test harness)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._next = 1
        self._reserved_until = 1 if path is not None else _MAX  # first number not reserved
        self._reserving = False
        self._warned = False

    async def start(self) -> None:
        """Read where the last daemon got to and reserve the first block."""
        if self.path is None:
            return
        try:
            stored = await trio.to_thread.run_sync(_read, self.path)
        except (OSError, ValueError) as error:
            logger.error("%s cannot be read (%s): execution ids start at x1", self.path, error)
            stored = 1
        self._next = self._reserved_until = stored
        await self._reserve()

    def allocate(self) -> str:
        """The next id, at once; reserving more is left to ``needs_reserve``/``reserve``."""
        number = self._next
        self._next += 1
        if number >= self._reserved_until and not self._warned:
            self._warned = True
            logger.warning(
                "execution ids past the reserved x%d: they may repeat after a restart",
                self._reserved_until,
            )
        return f"x{number}"

    @property
    def needs_reserve(self) -> bool:
        return not self._reserving and self._reserved_until - self._next < BLOCK // 2

    async def reserve(self) -> None:
        """Reserve the next block (call it from a task when ``needs_reserve``)."""
        if self.path is None or self._reserving:
            return
        self._reserving = True
        try:
            await self._reserve()
        finally:
            self._reserving = False

    async def _reserve(self) -> None:
        assert self.path is not None
        until = max(self._reserved_until, self._next) + BLOCK
        try:
            await trio.to_thread.run_sync(_write, self.path, until)
        except OSError as error:
            logger.error("%s not written (%s): execution ids may repeat after a restart",
                         self.path, error)  # fmt: skip
            return
        self._reserved_until = until
        self._warned = False


def _read(path: Path) -> int:
    try:
        text = path.read_text(encoding="ascii")[:32].strip()
    except FileNotFoundError:
        return 1
    number = int(text)
    if not 1 <= number < _MAX:
        raise ValueError(f"{text!r} is not a number from 1 to {_MAX - 1}")
    return number


def _write(path: Path, number: int) -> None:
    """Atomically (``atomic_write``): a crash leaves the old number or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, f"{number}\n")


__all__ = ["BLOCK", "IDS_FILE", "ExecutionIds"]
