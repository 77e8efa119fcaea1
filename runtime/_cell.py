"""The persistent half of an actor: its name, mailbox, counters and e-stop latch.

An actor *instance* is disposable (a restart builds a fresh one from its factory, so no
corrupted state survives). The cell is not: it lives as long as the actor system, so every
``ActorRef`` stays valid across restarts, statistics are cumulative, and — the point that
matters on a bench — an emergency-stop latch set before a crash still holds after the restart.
Only the kernel (mailbox, actor loop, supervisor) touches a cell; user code sees refs.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import trio

from ._errors import describe_failure
from ._latch import Latch
from ._mailbox import Envelope, Mailbox
from ._messages import EmergencyStop
from ._parameter_tree import DesiredValues


class ActorState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    RESTARTING = "restarting"  # crashed; its supervisor will start it again after a backoff
    DOWN = "down"  # not running and not coming back unless something restarts it


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """One failure, as health reports and clients see it."""

    type: str
    message: str
    when: float  # Unix time

    @classmethod
    def from_exception(cls, exc: BaseException) -> FailureRecord:
        kind, message = describe_failure(exc)
        return cls(kind, message, time.time())

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    """A snapshot of one actor, trio-style: a frozen record, cheap to take, safe to keep."""

    name: str
    state: ActorState
    normal_depth: int
    normal_capacity: int
    priority_depth: int
    handled: int
    failed: int
    refused: int  # try_tell found the normal lane full
    expired: int  # asks abandoned by their caller before the actor reached them
    preempted: int  # handlers cancelled by a priority message
    last_handler_seconds: float
    max_handler_seconds: float
    restarts: int
    last_failure: FailureRecord | None
    latched: str | None  # the e-stop reason while latched
    last_activity: float  # trio clock time the loop last finished a message or started
    latch: Latch | None = None  # the whole latch (reason, by whom, since when) while latched
    query_depth: int = 0  # queries waiting in the query lane
    queries: int = 0  # queries answered (also counted in ``handled``)


class ActorCell:
    __slots__ = (
        "desired",
        "expired",
        "failed",
        "handled",
        "in_flight",
        "last_activity",
        "last_failure",
        "last_handler_seconds",
        "latch",
        "latch_epoch",
        "mailbox",
        "max_handler_seconds",
        "name",
        "preempted",
        "queries",
        "restarts",
        "state",
        "stop_requested",
    )

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.mailbox = Mailbox(name, capacity)
        self.state = ActorState.DOWN
        self.latch: Latch | None = None
        self.latch_epoch = 0  # counts emergency stops delivered; a reset names the one it clears
        self.handled = 0
        self.failed = 0
        self.expired = 0
        self.preempted = 0
        self.queries = 0
        self.last_handler_seconds = 0.0
        self.max_handler_seconds = 0.0
        self.restarts = 0
        self.last_failure: FailureRecord | None = None
        self.last_activity = 0.0
        # Parameter values a user or script set, carried from one instance to the next.
        self.desired: DesiredValues = {}
        # The running instance's scope around normal handlers; a priority message cancels it.
        self.in_flight: trio.CancelScope | None = None
        self.stop_requested = False
        self.mailbox.on_priority = self._preempt

    @property
    def latched(self) -> str | None:
        """The e-stop reason while latched, None otherwise."""
        return None if self.latch is None else self.latch.reason

    def _preempt(self) -> None:
        if self.in_flight is not None:
            self.in_flight.cancel()

    def deliver_priority(self, envelope: Envelope) -> None:
        """Latch first, then enqueue: from this instant no hazardous command starts, even one
        the loop dequeues before it reaches the EmergencyStop (or while the actor is down)."""
        message = envelope.message
        if isinstance(message, EmergencyStop):
            self.latch_epoch += 1
            reason = message.reason or "emergency stop"
            self.latch = Latch(reason, message.by, time.time(), self.latch_epoch)
        self.mailbox.put_priority(envelope)

    def request_stop(self) -> None:
        """Graceful stop: finish the handler in flight, then leave the loop."""
        self.stop_requested = True
        self.mailbox.wake()

    def statistics(self) -> ActorStatistics:
        box = self.mailbox
        return ActorStatistics(
            name=self.name,
            state=self.state,
            normal_depth=box.normal_depth,
            normal_capacity=box.capacity,
            priority_depth=box.priority_depth,
            handled=self.handled,
            failed=self.failed,
            refused=box.refused,
            expired=self.expired,
            preempted=self.preempted,
            last_handler_seconds=self.last_handler_seconds,
            max_handler_seconds=self.max_handler_seconds,
            restarts=self.restarts,
            last_failure=self.last_failure,
            latched=self.latched,
            last_activity=self.last_activity,
            latch=self.latch,
            query_depth=box.query_depth,
            queries=self.queries,
        )
