"""The emergency-stop latch as a record: why, by whom and since when.

A refusal that only says "latched" sends an operator hunting through logs; one that says
"e-stop latched since 14:02:05 by alice (beam dump open); reset first" tells them whom to ask
and what to check. Every refusal in the kernel is worded by :func:`latched_refusal`, so the
gRPC edge, scripts and the CLI all show the same sentence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ._errors import EmergencyStopLatched


@dataclass(frozen=True, slots=True)
class Latch:
    reason: str
    by: str  # who asked for the stop ("" when the caller did not say)
    since: float  # Unix time the latch was set
    epoch: int  # counts emergency stops delivered to this actor; a reset names the one it clears

    def describe(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        who = self.by or "an unnamed caller"
        return f"e-stop latched since {when} by {who} ({self.reason})"


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a refusal never quotes a value whole."""
    if isinstance(value, str | bytes) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def latched_refusal(what: str, latch: Latch) -> EmergencyStopLatched:
    """The error for ``what`` (a message or setting) refused while ``latch`` holds."""
    return EmergencyStopLatched(
        f"{what} is refused: {latch.describe()}; reset the emergency stop first"
    )
