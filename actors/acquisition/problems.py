"""What is wrong with a plan: every problem at once, each saying where, what and what is allowed.

A plan is checked completely before anything moves (``validator.py``); the checks collect
:class:`Problem` values instead of raising at the first one, because a user who fixes one limit
only to be told about the next wastes a beamtime's worth of round trips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runtime import ValidationError

#: Problems quoted in one error message (all of them are in ``PlanRejected.problems``).
QUOTED = 8
#: A client's text is quoted up to this many characters in a message.
QUOTE = 60


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem: ``field`` is where in the plan (``path.axes[1].stop``, ``read[0]``),
    ``message`` a sentence naming the device, the value and what is allowed."""

    field: str
    message: str
    device: str = ""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class PlanRejected(ValidationError):
    """The plan cannot run as it is; ``problems`` lists every reason (nothing has moved)."""

    def __init__(self, problems: tuple[Problem, ...]) -> None:
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:QUOTED])
        more = f" (and {len(problems) - QUOTED} more)" if len(problems) > QUOTED else ""
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"plan refused, {count}: {shown}{more}")


def quote(value: object) -> str:
    """``repr`` of a client's value, cut to a short prefix (never the whole of a huge one)."""
    text = repr(value)
    if len(text) <= QUOTE:
        return text
    return f"{text[:QUOTE]}… ({len(text)} characters)"


def finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
