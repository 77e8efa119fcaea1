"""A plan's state and status as every surface sees them, and the executor's record of it
(status observable, event log, table, the control flags the point loop reads)."""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from runtime import Observable, Source

from ..pipeline.run import Run
from .events import Ended, EventLog, Table
from .plans import Plan
from .problems import Problem
from .suspenders import Suspension
from .validator import Checked, Estimate


class PlanState(enum.StrEnum):
    CREATED = "created"  # checked and stored; StartPlan queues it
    PENDING = "pending"  # queued behind another plan
    RUNNING = "running"
    PAUSED = "paused"  # waiting at a checkpoint until resumed
    SUSPENDED = "suspended"  # held by a suspender until the bench recovers
    COMPLETED = "completed"
    STOPPED = "stopped"  # StopPlan: ended at a checkpoint
    ABORTED = "aborted"  # AbortPlan or an emergency stop
    ERROR = "error"  # refused at start, or a device failed

    @property
    def finished(self) -> bool:
        return self in (PlanState.COMPLETED, PlanState.STOPPED, PlanState.ABORTED, PlanState.ERROR)


@dataclass(frozen=True, slots=True)
class PlanStatus:
    id: str
    plan: Plan
    origin: str  # who asked: "script x3", "client alice", …
    state: PlanState
    created: float
    started: float = 0.0
    ended: float = 0.0
    points_done: int = 0
    points_total: int = 0  # the most it takes (0: bounded by a duration only)
    positions: Mapping[str, float] = field(default_factory=dict)  # the last point's axes
    run_path: str = ""
    error: str = ""  # why it ended, if not completed
    pause_requested: bool = False
    suspended_by: str = ""  # while suspended: the suspender's label
    suspensions: tuple[Suspension, ...] = ()
    estimate: Estimate | None = None
    result: Mapping[str, Any] = field(default_factory=dict)  # a tune's peak, …
    events: int = 0  # events emitted so far


@dataclass(frozen=True, slots=True)
class PlanCheck:
    """A plan's problems (empty: it can run now) and, if it can, its estimate."""

    problems: tuple[Problem, ...]
    estimate: Estimate | None


class Stop(Exception):
    """Ends the point loop at a checkpoint (a stop)."""


class PlanRecord:
    """One plan as the executor keeps it; touched only on the event loop's thread."""

    def __init__(self, status: PlanStatus, checked: Checked | None) -> None:
        self.checked = checked  # None: restored from the history, never run here
        self.remembered = False  # its end is in the history
        self.observable: Observable[PlanStatus] = Observable(status)
        self.log = EventLog(status.id)
        self.table: Table | None = None
        self.paused = False
        self.stop_reason: str | None = None
        self.abort_reason: str | None = None
        self.run: Run | None = None  # the plan's run, once it is open
        self.opened = trio.Event()  # the run is open, or the plan ended before it could be
        self.failure: BaseException | None = None  # what ended the plan before its run opened
        self.scope: trio.CancelScope | None = None
        self.busy: set[str] = set()  # devices with a move in flight for this plan
        self.done = trio.Event()
        self._wake = trio.Event()

    @classmethod
    def restored(cls, status: PlanStatus) -> PlanRecord:
        """A finished plan from the history: its status, and its end as its last event (a
        follower from the start is told of the events before it as a gap)."""
        record = cls(status, None)
        record.remembered = True
        record.log = EventLog(status.id, first=max(0, status.events - 1))
        body = Ended(status.state.value, status.error, status.points_done, status.result)
        record.log.append(body, status.ended or status.created)
        record.log.close()
        record.opened.set()
        record.done.set()
        return record

    @property
    def status(self) -> PlanStatus:
        return self.observable.value

    def update(self, **changes: Any) -> None:
        self.observable.set(replace(self.status, **changes), Source.HARDWARE)

    def emit(self, body: Any) -> None:
        self.log.append(body, time.time())

    def poke(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    async def woken(self) -> None:
        await self._wake.wait()
