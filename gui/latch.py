"""The e-stop latch as the GUI shows it: why, by whom and since when.

An operator who finds the bench latched needs to know whom to ask and what to check, not just
"latched". The daemon says it in three places, each with part of it:

* the e-stop event stream: a stop made while this GUI watched carries its time and who asked
  (``client``: "alice (operator) from 10.0.0.5"); the *current* state sent when the stream
  opens carries only the reason (its timestamp is when the stream opened, not the latch);
* every refusal while latched: "… is refused: e-stop latched since 14:02:05 by alice
  (operator) from 10.0.0.5 (beam dump open); reset the emergency stop first" — so the first
  refused call fills in what the current state left out;
* the latch in ``Health`` and ``DaemonInfo`` (their ``estop``: reason, by whom, since when),
  read at each connect and with each health update.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

#: "e-stop latched since 14:02:05 by WHO (REASON)" (runtime/_latch.py ``Latch.describe``).
_REFUSAL = re.compile(r"e-stop latched since (\d{1,2}):(\d{2}):(\d{2}) by (.+)$", re.DOTALL)
_TAIL = "; reset the emergency stop first"


@dataclass(frozen=True, slots=True)
class LatchInfo:
    latched: bool
    reason: str = ""
    by: str = ""  # who asked for the stop; "" if the daemon has not said
    since: float | None = None  # Unix time the latch was set; None if the daemon has not said

    def merged(self, other: LatchInfo) -> LatchInfo:
        """``other`` (newer news of the same latch) over this, keeping what it does not say."""
        if not other.latched:
            return other
        return replace(
            other,
            reason=other.reason or self.reason,
            by=other.by or self.by,
            since=other.since if other.since is not None else self.since,
        )


def _attribute(value: object, *names: str) -> object:
    for name in names:
        found = getattr(value, name, None)
        if found not in (None, "", 0, 0.0):
            return found
    return None


def from_event(event: object) -> LatchInfo:
    """An ``EmergencyStopEvent`` (or a state with the same fields)."""
    latched = bool(getattr(event, "latched", False))
    reason = str(getattr(event, "reason", "") or "")
    since = _attribute(event, "latched_since", "since")
    by = _attribute(event, "latched_by", "by")
    if getattr(event, "kind", "") == "stopped":  # a stop seen as it happened
        since = since if since is not None else getattr(event, "timestamp", None) or None
        by = by or getattr(event, "client", "") or None
    return LatchInfo(
        latched,
        reason,
        str(by or ""),
        float(since) if isinstance(since, int | float) else None,
    )


def from_fields(value: object) -> LatchInfo | None:
    """The latch a daemon reports in Health or DaemonInfo (their ``estop``); None when it
    says nothing of a latch set now (an older daemon, or no latch)."""
    estop = getattr(value, "estop", None)
    if estop is None or not getattr(estop, "latched", False):
        return None  # a reset reaches the GUI through the e-stop stream
    since = getattr(estop, "since", None)
    return LatchInfo(
        True,
        str(getattr(estop, "reason", "") or ""),
        str(getattr(estop, "by", "") or ""),
        float(since) if isinstance(since, int | float) and since > 0 else None,
    )


def from_refusal(text: str, reason: str = "", now: float | None = None) -> LatchInfo | None:
    """The latch a refusal describes, or None if the text is not such a refusal. ``reason``
    (known from the event stream) separates "by whom" from the reason when either holds
    parentheses; the clock time is taken as the latest such time not in the future."""
    found = _REFUSAL.search(text)
    if found is None:
        return None
    hours, minutes, seconds, rest = found.groups()
    rest = rest.split(_TAIL, 1)[0]
    if reason and rest.endswith(f" ({reason})"):
        by, said = rest[: -len(reason) - 3], reason
    else:
        cut = rest.rfind(" (")
        by, said = (
            (rest[:cut], rest[cut + 2 : -1]) if cut > 0 and rest.endswith(")") else (rest, "")
        )
    now = time.time() if now is None else now
    local = time.localtime(now)
    candidate = time.mktime(
        (local.tm_year, local.tm_mon, local.tm_mday, int(hours), int(minutes), int(seconds),
         0, 0, -1)
    )  # fmt: skip
    if candidate > now + 60:  # set before midnight
        candidate -= 86400
    return LatchInfo(True, said, by.strip(), candidate)


def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def describe(info: LatchInfo, now: float | None = None) -> str:
    """ "since 14:02:05 (3 min ago) by alice (operator) from 10.0.0.5: beam dump open"."""
    now = time.time() if now is None else now
    parts = []
    if info.since is not None:
        day = "%Y-%m-%d " if now - info.since > 20 * 3600 else ""
        when = time.strftime(f"{day}%H:%M:%S", time.localtime(info.since))
        parts.append(f"since {when} ({ago(now - info.since)})")
    else:
        parts.append("since before this GUI connected")
    parts.append(f"by {info.by}" if info.by else "by whom not reported yet")
    text = " ".join(parts)
    return f"{text}: {info.reason}" if info.reason else text


def short(info: LatchInfo) -> str:
    """For the toolbar: "LATCHED 14:02:05 · alice · beam dump open"."""
    bits = ["LATCHED"]
    if info.since is not None:
        bits.append(time.strftime("%H:%M:%S", time.localtime(info.since)))
    if info.by:
        bits.append(info.by.split(" (", 1)[0])
    text = " · ".join(bits)
    if info.reason:
        text += f" · {info.reason}"
    return text if len(text) <= 60 else text[:59] + "…"
