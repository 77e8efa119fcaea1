"""Plans kept across restarts: ``plans.jsonl`` beside the runs, one JSON line per event.

Why: a plan's id is how people and files name it ("plan p7" in a script's log, in a run's
manifest, in ``benchctl scan status p7``). Ids that began again at ``p1`` after a restart — of
the daemon, or of the executor under its supervisor — would give two plans one id, and
``benchctl scans`` would forget the day's scans though their run files remain. Bluesky's queue
server keeps its history for the same reason.

What is written: a ``created`` line (id, time, origin; a few dozen bytes) when a plan is
created, so an id is never handed out twice even if the daemon dies mid-plan, and an ``ended``
line (the plan's final status, its plan as :meth:`Plan.describe` gives it) when it ends. A
plan that never ended (the daemon was killed) comes back as unknown with the reason; its run
was repaired at start (``crash_repair``).

Bounds: a plan whose description would pass ``MAX_PLAN_BYTES`` (a list scan of a million
positions, a megabyte of metadata) is written without it — its run file's manifest has it — and
comes back as an id that says so. The file is rewritten (atomically, to a temporary file renamed
over it) with the newest ``keep`` ended plans once it holds four times that many lines, so it
never grows past a few megabytes. Reading it skips a line it cannot parse (a torn last line
after a power cut) with a warning naming the line; nothing here can stop the executor.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..atomic_file import atomic_write
from .described import plan_from_description
from .plans import ListScan, Plan
from .problems import PlanRejected
from .status import PlanState, PlanStatus
from .suspenders import Suspension

logger = logging.getLogger(__name__)

HISTORY_FILE = "plans.jsonl"
FORMAT = 1
MAX_PLAN_BYTES = 64 * 1024  # a plan described larger is left out of its line
MAX_LINE_BYTES = MAX_PLAN_BYTES + 16 * 1024  # a longer line was not written by us: skipped
_ID = re.compile(r"p([1-9][0-9]{0,17})")


def plan_number(plan_id: str) -> int:
    """7 for ``p7``; 0 for an id this executor never hands out."""
    found = _ID.fullmatch(plan_id)
    return int(found.group(1)) if found else 0


def described_size(plan: Plan) -> int:
    """An upper bound of the plan's description in bytes, without describing it: a list scan's
    positions are counted, not printed (printing a million of them is ~0.1 s of the loop)."""
    size = 4096 + 2 * len(plan.metadata_json)
    if isinstance(plan.path, ListScan):
        size += 26 * sum(len(column) for column in plan.path.positions)
    return size


def created_line(plan_id: str, created: float, origin: str) -> str:
    return _line({"event": "created", "id": plan_id, "created": created, "origin": origin[:256]})


def ended_line(status: PlanStatus) -> str:
    """The finished plan's line; its plan is left out if it is too large to keep here."""
    plan = status.plan
    fields: dict[str, Any] = {
        "event": "ended",
        "id": status.id,
        "origin": status.origin[:256],
        "kind": plan.kind,
        "run_name": plan.run_name[:256],
        "state": status.state.value,
        "created": status.created,
        "started": status.started,
        "ended": status.ended,
        "points_done": status.points_done,
        "points_total": status.points_total,
        "positions": {k: v for k, v in status.positions.items() if math.isfinite(v)},
        "run_path": status.run_path,
        "error": status.error[:4096],
        "suspensions": [s.describe() for s in status.suspensions[-100:]],
        "events": status.events,
        "plan": None,
        "metadata_json": "{}",
    }
    result = _json_or_none(status.result)
    fields["result"] = result if result is not None and len(result) <= 16 * 1024 else "{}"
    if described_size(plan) <= MAX_PLAN_BYTES:
        fields["plan"] = plan.describe()
        fields["metadata_json"] = plan.metadata_json
    return _line(fields)


def _json_or_none(value: Mapping[str, Any]) -> str | None:
    try:
        return json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError):
        return None


def _line(fields: Mapping[str, Any]) -> str:
    return json.dumps({"v": FORMAT, **fields}, separators=(",", ":")) + "\n"


@dataclass
class Restored:
    """What the file says: the finished plans it could rebuild (oldest first), why each other
    id it names is not kept, the next id's number and the ended lines to keep."""

    statuses: list[PlanStatus] = field(default_factory=list)
    unknown: dict[str, str] = field(default_factory=dict)  # id -> why it is not kept
    next_number: int = 1
    ended_lines: list[str] = field(default_factory=list)
    lines: int = 0


def load(path: Path, keep: int) -> Restored:
    """Read the history (blocking: call it in a thread). A missing file is an empty history."""
    restored = Restored()
    created: dict[str, str] = {}  # id -> origin, for ids created and never ended
    kept: deque[tuple[str, str]] = deque(maxlen=keep)  # (id, line) of ended plans
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return restored
    with handle:
        for number, raw in enumerate(_lines(handle), start=1):
            restored.lines += 1
            entry = _parse(raw, path, number)
            if entry is None:
                continue
            plan_id = entry["id"]
            if entry["event"] == "next":  # the first line of a rewritten file
                restored.next_number = max(restored.next_number, plan_number(plan_id))
                continue
            restored.next_number = max(restored.next_number, plan_number(plan_id) + 1)
            if entry["event"] == "created":
                created[plan_id] = str(entry.get("origin", ""))
                continue
            created.pop(plan_id, None)
            kept.append((plan_id, raw.decode()))
    for plan_id, origin in created.items():
        restored.unknown[plan_id] = (
            f"plan {plan_id} ({origin or 'unknown origin'}) had not ended when the daemon"
            " stopped (it was waiting or running); a run it had begun was repaired at the next"
            " start (benchctl runs lists it)"
        )
    for plan_id, line in kept:
        restored.ended_lines.append(line)
        status, why = _status(json.loads(line))
        if status is not None:
            restored.statuses.append(status)
        else:
            restored.unknown[plan_id] = why
    return restored


def _lines(handle: Any) -> Iterable[bytes]:
    """Lines, a longer one than we ever write cut off and yielded as the torn line it is."""
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if not raw.endswith(b"\n"):
            while (rest := handle.readline(MAX_LINE_BYTES + 1)) and not rest.endswith(b"\n"):
                pass  # skip the rest of an overlong line without holding it
            yield raw[: MAX_LINE_BYTES + 1]  # no newline: _parse refuses it
            continue
        yield raw


def _parse(raw: bytes, path: Path, number: int) -> dict[str, Any] | None:
    try:
        if not raw.endswith(b"\n"):
            raise ValueError("the line is cut off (written when the daemon stopped?)")
        entry = json.loads(raw)
        if not isinstance(entry, dict) or entry.get("v") != FORMAT:
            raise ValueError(f"not a format-{FORMAT} entry")
        if entry.get("event") not in ("created", "ended", "next"):
            raise ValueError(f"unknown event {str(entry.get('event'))[:40]!r}")
        if not isinstance(entry.get("id"), str) or not plan_number(entry["id"]):
            raise ValueError("no plan id (p1, p2, …)")
    except (ValueError, RecursionError) as error:  # RecursionError: JSON nested past the stack
        logger.warning("%s line %d skipped: %s", path, number, str(error)[:200])
        return None
    return entry


def _status(entry: Mapping[str, Any]) -> tuple[PlanStatus | None, str]:
    """The ended plan's status, or None and why it cannot be rebuilt."""
    plan_id = entry["id"]
    where = f"plan {plan_id} ({entry.get('kind', '?')}, {entry.get('state', '?')})"
    run = f" its run file {entry['run_path']} has it" if entry.get("run_path") else ""
    if entry.get("plan") is None:
        return None, (
            f"{where} ended before the daemon restarted and its plan was too large to keep in"
            f" {HISTORY_FILE};{run or ' it had no run'}"
        )
    try:
        plan = replace(
            plan_from_description(entry["plan"]), metadata_json=str(entry["metadata_json"])
        )
        status = PlanStatus(
            plan_id,
            plan,
            str(entry["origin"]),
            PlanState(entry["state"]),
            float(entry["created"]),
            started=float(entry["started"]),
            ended=float(entry["ended"]),
            points_done=int(entry["points_done"]),
            points_total=int(entry["points_total"]),
            positions={str(k): float(v) for k, v in dict(entry["positions"]).items()},
            run_path=str(entry["run_path"]),
            error=str(entry["error"]),
            suspensions=tuple(
                Suspension(
                    str(s["suspender"]),
                    int(s["point"]),
                    float(s["began"]),
                    float(s["ended"]),
                    str(s["value"]),
                )
                for s in entry["suspensions"]
            ),
            result=json.loads(entry["result"]),
            events=int(entry["events"]),
        )
    except (PlanRejected, KeyError, TypeError, ValueError, AttributeError) as error:
        return None, f"{where}: its entry in {HISTORY_FILE} cannot be read ({str(error)[:200]})"
    if not status.state.finished:
        return None, f"{where}: its entry in {HISTORY_FILE} is not of a finished plan"
    return status, ""


def rewrite(path: Path, next_number: int, ended_lines: Iterable[str]) -> None:
    """Replace the file with a ``next`` line and the given ended lines, atomically (blocking)."""
    first = _line({"event": "next", "id": f"p{max(1, next_number)}"})
    atomic_write(path, first + "".join(ended_lines))


def append(path: Path, lines: Iterable[str]) -> None:
    """Append lines (blocking). No fsync: a lost line after a power cut costs an id's history,
    never a run, and the run files have their own. The runs directory is made if need be
    (the recorder makes it at its first run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(lines)


__all__ = [
    "HISTORY_FILE",
    "MAX_PLAN_BYTES",
    "Restored",
    "append",
    "created_line",
    "described_size",
    "ended_line",
    "load",
    "plan_number",
    "rewrite",
]
