"""A demo tree for the daemon until the instrument drivers land.

``python -m runtime`` runs it so the daemon does something observable on any machine: a
simulated rotation stage that takes real time to move (with a position parameter published as
it goes) and a sweeper that drives it back and forth and logs each arrival. Both are ordinary
actors under a supervisor, so the log also shows start order, e-stop and shutdown order.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import trio

from runtime import (
    Actor,
    ActorError,
    EmergencyStopLatched,
    Hazardous,
    Interrupted,
    Message,
    Parameter,
    Request,
    ValidationError,
)

logger = logging.getLogger("actors.demo")


@dataclass(frozen=True, slots=True)
class MoveTo(Request[float], Hazardous):
    """Move to ``position`` degrees; the reply is the position reached."""

    position: float


@dataclass(frozen=True, slots=True)
class GetPosition(Request[float]):
    pass


class DemoStage(Actor):
    """A simulated rotation stage: moves at ``velocity`` deg/s, reports position at 10 Hz."""

    def __init__(self) -> None:
        self.velocity = self.parameters.add(
            Parameter(
                "velocity",
                float,
                30.0,
                units="deg/s",
                limits=(0.1, 430.0),
                description="angular speed of moves",
            )
        )
        self.position = self.parameters.add(
            Parameter(
                "position",
                float,
                0.0,
                units="deg",
                limits=(-360.0, 360.0),
                read_only=True,
                description="current angle",
            )
        )

    async def handle(self, message: Message) -> object:
        match message:
            case MoveTo(position=target):
                return await self._move(target)
            case GetPosition():
                return self.position.value
        return await super().handle(message)

    async def _move(self, target: float) -> float:
        low, high = self.position.limits or (-math.inf, math.inf)
        if not low <= target <= high:
            raise ValidationError(f"position {target:g} deg is outside {low:g} to {high:g} deg")
        start, began = self.position.value, trio.current_time()
        duration = abs(target - start) / self.velocity.value
        while (elapsed := trio.current_time() - began) < duration:
            self.position.report(start + (target - start) * elapsed / duration)
            await trio.sleep(min(0.1, duration - elapsed))
        self.position.report(target)
        return target

    async def on_emergency_stop(self, reason: str) -> None:
        logger.warning("%s: halted at %.2f deg (%s)", self.name, self.position.value, reason)


class Sweeper(Actor):
    """Sweeps the stage between two angles forever, logging every arrival."""

    def __init__(self, stage: str, *, span: float = 45.0) -> None:
        self.stage_name = stage
        self.span = span

    async def on_start(self) -> None:
        self.nursery.start_soon(self._sweep)

    async def _sweep(self) -> None:
        stage = self.system.ref(self.stage_name)
        target = self.span
        while True:
            try:
                reached = await stage.ask(MoveTo(target), timeout=60.0)
            except ActorError as exc:
                if not isinstance(exc.cause, (EmergencyStopLatched, Interrupted)):
                    raise
                logger.info("%s: paused: %s", self.name, exc.cause)
                await trio.sleep(5.0)  # an operator resets the e-stop; then carry on
                continue
            logger.info("%s: %s reached %.1f deg", self.name, self.stage_name, reached)
            target = -target
