"""A run's audit trail: every mutating request made while the run records, in its file.

Why in the run file: a data file must say who moved or set what while it was taken — a stage
moved by a colleague mid-scan, a wavelength changed from the GUI — without the daemon's logs
(which rotate, and stay on the daemon's machine). The gRPC edge knows who asked (the token's
user and role) and how it ended; it tells the recorder with :class:`RecordAudit`, and the run
writes the entries to ``/entry/audit`` at its next flush.

Why it never blocks the edge: :class:`RecordAudit` is a plain message the edge sends with
``try_tell`` (it never waits for room in the recorder's mailbox), and each entry is bounded
(:data:`LIMITS`, cut with "…"). A run queues at most :data:`CAPACITY` entries between two
flushes; past that an entry is dropped and counted (the end record's ``audit_dropped``), so a
flood of requests costs the run a counter, never memory or time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from runtime import Message

#: Most bytes of UTF-8 each field keeps (the file stores them as fixed-size UTF-8 text).
LIMITS = {"who": 64, "role": 32, "what": 512, "result": 512}
CAPACITY = 4096  # entries a run holds between two flushes (a flush is ~1 s)


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` bytes of UTF-8, cut on a character boundary with "…"."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One mutating request: when (Unix time), who (the token's user, or "local"), their role,
    what was asked (``"SetParameter esp300.axis1 velocity=2.5"``), and how it ended (``"ok"``
    or the error the client got). Longer fields are cut to :data:`LIMITS` (bytes of UTF-8) on
    construction."""

    time: float
    who: str
    role: str
    what: str
    result: str = "ok"

    def __post_init__(self) -> None:
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            text = value if isinstance(value, str) else str(value)
            object.__setattr__(self, name, _cut(text, limit))
        object.__setattr__(self, "time", float(self.time))


@dataclass(frozen=True, slots=True)
class RecordAudit(Message):
    """Tell the recorder (``recorder.try_tell(RecordAudit(entry))``): one entry for the audit
    trail of the run recording now. No reply; ignored when no run records; dropped and
    counted when the run's queue is full."""

    entry: AuditEntry


class AuditTrail:
    """A run's audit entries waiting for the next flush (a run piece, like ScanTable)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.recorded = 0  # taken for the file
        self.dropped = 0  # arrived while the queue was full
        self._queue: deque[AuditEntry] = deque()

    def add(self, entry: AuditEntry) -> bool:
        """Queue an entry; False (and counted) if the queue is full. Never waits."""
        if len(self._queue) >= self.capacity:
            self.dropped += 1
            return False
        self._queue.append(entry)
        return True

    def take(self) -> list[AuditEntry]:
        entries = list(self._queue)
        self._queue.clear()
        self.recorded += len(entries)
        return entries
