"""ActorSystem: the registry of actor cells and the system-wide emergency stop.

The registry hands out refs by name (refs stay valid across restarts, see ``_cell.py``). The
emergency stop lives here, not in any actor, because it must reach every device *directly*:
it is put on each actor's priority lane in one synchronous pass — no await between the first
actor and the last, so nothing queued anywhere can delay any of them — and only then are the
acknowledgements awaited.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from ._cell import ActorCell, ActorStatistics
from ._errors import BenchError, NotFoundError
from ._latch import Latch
from ._mailbox import Envelope
from ._messages import EmergencyStop, ResetEmergencyStop
from ._ref import ActorRef
from ._reply import ReplySlot

logger = logging.getLogger("runtime.estop")


@dataclass(frozen=True, slots=True)
class StopAcknowledgement:
    actor: str
    ok: bool
    seconds: float  # from the broadcast to the actor's reply (or to the deadline)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class EmergencyStopReport:
    reason: str
    acknowledgements: tuple[StopAcknowledgement, ...]

    @property
    def all_stopped(self) -> bool:
        return all(a.ok for a in self.acknowledgements)


class ActorSystem:
    def __init__(self) -> None:
        self._cells: dict[str, ActorCell] = {}

    def cell(self, name: str, capacity: int) -> ActorCell:
        """Get or create the cell for ``name`` (kernel use: supervisors call this)."""
        existing = self._cells.get(name)
        if existing is not None:
            return existing
        cell = self._cells[name] = ActorCell(name, capacity)
        return cell

    def ref(self, name: str) -> ActorRef:
        return ActorRef(self._lookup(name))

    def _lookup(self, name: str) -> ActorCell:
        try:
            return self._cells[name]
        except KeyError:
            known = ", ".join(sorted(self._cells)) or "none"
            raise NotFoundError(f"no actor named {name!r}; actors: {known}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._cells)

    def statistics(self) -> tuple[ActorStatistics, ...]:
        return tuple(cell.statistics() for cell in self._cells.values())

    @property
    def latched(self) -> bool:
        return any(cell.latch is not None for cell in self._cells.values())

    @property
    def latch(self) -> Latch | None:
        """The newest latch still held by any actor (why, by whom, since when); None if clear."""
        latches = [cell.latch for cell in self._cells.values() if cell.latch is not None]
        return max(latches, key=lambda latch: latch.since, default=None)

    async def emergency_stop(
        self,
        reason: str,
        *,
        by: str = "",
        timeout: float = 2.0,
        only: Iterable[str] | None = None,
    ) -> EmergencyStopReport:
        """Stop every actor (or the ``only`` ones) now, latch, and report who acknowledged.

        Never raises for an actor that fails or is down: the report says so, because an
        emergency stop must reach every other actor whatever one of them does. ``by`` (a
        client's name, "script") is kept with the latch and quoted in every refusal. One log
        line tells the whole story: who, why, how many stopped, the slowest, any that did not.
        """
        if only is None:
            targets = list(self._cells.values())
        else:
            targets = [self._lookup(name) for name in only]
        message = EmergencyStop(reason, by)
        sent = trio.current_time()
        slots = []
        for cell in targets:  # one synchronous pass: no checkpoint until every lane has it
            slot = ReplySlot()
            cell.deliver_priority(Envelope(message, slot))
            slots.append((cell.name, slot))
        acknowledgements = await _gather(slots, sent, timeout)
        report = EmergencyStopReport(reason, acknowledgements)
        _log_report(report, by)
        return report

    async def reset_emergency_stop(
        self, reason: str = "", *, timeout: float = 5.0
    ) -> tuple[str, ...]:
        """Clear every latch; the names of actors still latched afterwards (should be none).

        The reset travels the normal lanes, so hazardous work queued before it stays refused.
        A down actor cannot answer: its latch is cleared directly.
        """
        failures: list[str] = []

        async def reset(cell: ActorCell, epoch: int) -> None:
            if cell.mailbox.closed:
                if cell.latch_epoch == epoch:
                    cell.latch = None
                return
            try:
                await ActorRef(cell).ask(ResetEmergencyStop(reason, epoch), timeout=timeout)
            except BenchError as exc:
                failures.append(cell.name)
                logger.error("e-stop reset of %s failed: %s", cell.name, exc)

        async with trio.open_nursery() as nursery:
            for cell in self._cells.values():
                if cell.latch is not None:
                    nursery.start_soon(reset, cell, cell.latch_epoch)
        return tuple(
            failures
            + [
                c.name
                for c in self._cells.values()
                if c.latch is not None and c.name not in failures
            ]
        )


def _log_report(report: EmergencyStopReport, by: str) -> None:
    acks = report.acknowledgements
    stopped = [ack for ack in acks if ack.ok]
    slowest = max(stopped, key=lambda ack: ack.seconds, default=None)
    text = f"emergency stop by {by or 'an unnamed caller'} ({report.reason}):"
    text += f" {len(stopped)}/{len(acks)} actors stopped"
    if slowest is not None:
        text += f", slowest {slowest.actor} in {slowest.seconds * 1e3:.1f} ms"
    failed = [f"{ack.actor} ({ack.error})" for ack in acks if not ack.ok]
    if failed:
        logger.error("%s; NOT stopped: %s", text, "; ".join(failed))
    else:
        logger.warning("%s", text)


async def _gather(
    slots: list[tuple[str, ReplySlot]], sent: float, timeout: float
) -> tuple[StopAcknowledgement, ...]:
    results: dict[str, StopAcknowledgement] = {}

    async def wait_one(name: str, slot: ReplySlot) -> None:
        try:
            await slot.wait()
        except Exception as exc:
            results[name] = StopAcknowledgement(name, False, trio.current_time() - sent, str(exc))
        else:
            results[name] = StopAcknowledgement(name, True, trio.current_time() - sent)

    with trio.move_on_after(math.inf if timeout is None else timeout):
        async with trio.open_nursery() as nursery:
            for name, slot in slots:
                nursery.start_soon(wait_one, name, slot)
    late = trio.current_time() - sent
    return tuple(
        results.get(name)
        or StopAcknowledgement(name, False, late, f"no acknowledgement within {timeout:g} s")
        for name, _ in slots
    )
