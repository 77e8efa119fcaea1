"""What a supervision tree is made of: child specs, strategies, restart types, backoff.

Specs are plain frozen values so a tree can be built from configuration, printed, compared
and tested without starting anything. Names follow Erlang/OTP on purpose: people who know
supervisors already know what ``rest_for_one`` and ``transient`` mean.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from runtime import Actor


class Strategy(enum.StrEnum):
    """Which siblings are restarted when one child has to be."""

    ONE_FOR_ONE = "one_for_one"  # only the failed child
    ONE_FOR_ALL = "one_for_all"  # every child (they only make sense together)
    REST_FOR_ONE = "rest_for_one"  # the failed child and those started after it (they depend on it)


class Restart(enum.StrEnum):
    """When a child that exited is started again."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only after a crash; a normal exit is final
    TEMPORARY = "temporary"  # never (not even when a sibling's failure stops it)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between restarts, never above ``maximum`` seconds.

    Attempt *n* (the number of restarts within the intensity period, from 1) waits
    ``initial * multiplier**(n-1)`` seconds, spread by ±``jitter`` (a fraction) so that devices
    sharing a failure do not reconnect in lockstep, and clipped to ``maximum``.
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (0 <= self.initial <= self.maximum and math.isfinite(self.maximum)):
            raise ValueError(f"backoff needs 0 <= initial <= maximum < inf, got {self}")
        if self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"backoff needs multiplier >= 1 and 0 <= jitter < 1, got {self}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        spread = base * self.jitter * rng.uniform(-1.0, 1.0)
        return min(self.maximum, max(0.0, base + spread))


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """One actor child. ``factory`` builds a fresh instance for every (re)start."""

    name: str
    factory: Callable[[], Actor]
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0  # graceful stop, then cancel
    mailbox_capacity: int = 1024
    #: How long the supervisor waits for this child to be ready before it starts the next
    #: one; the child goes on starting meanwhile (it shows as starting: degraded).
    start_timeout: float = math.inf

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.shutdown_timeout < 0 or self.mailbox_capacity < 1:
            raise ValueError(f"{self.name}: shutdown_timeout >= 0 and mailbox_capacity >= 1")
        if not self.start_timeout > 0:
            raise ValueError(f"{self.name}: start_timeout must be > 0 (inf: wait until ready)")


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    """A supervisor child: its own children, strategy and restart intensity.

    More than ``max_restarts`` restarts within ``period`` seconds and the supervisor stops
    its children and escalates (raises SupervisorGaveUp) to its parent.
    """

    name: str
    children: tuple[ActorSpec | SupervisorSpec, ...]
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    period: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = math.inf  # a supervisor stops when its children have
    #: How long the parent waits for this subtree to be ready before it starts its next child
    #: (an instrument that hangs at start-up must not hold the rest of the bench).
    start_timeout: float = math.inf

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not self.start_timeout > 0:
            raise ValueError(f"{self.name}: start_timeout must be > 0 (inf: wait until ready)")
        object.__setattr__(self, "children", tuple(self.children))
        if self.max_restarts < 0 or self.period <= 0:
            raise ValueError(f"{self.name}: max_restarts >= 0 and period > 0 required")
        seen: set[str] = set()
        for child in self.children:
            if child.name in seen:
                raise ValueError(f"{self.name}: two children named {child.name!r}")
            seen.add(child.name)

    def walk(self) -> Iterator[ActorSpec | SupervisorSpec]:
        """Every spec in this subtree, depth first, this one included."""
        yield self
        for child in self.children:
            if isinstance(child, SupervisorSpec):
                yield from child.walk()
            else:
                yield child


ChildSpec = ActorSpec | SupervisorSpec


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"a child name must be non-empty without spaces, got {name!r}")
