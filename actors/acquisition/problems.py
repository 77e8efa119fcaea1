"""What is wrong with a plan: every problem at once, each saying where, what and what is allowed.

A plan is checked completely before anything moves (``validator.py``); the checks collect
:class:`Problem` values instead of raising at the first one, because a user who fixes one limit
only to be told about the next wastes a beamtime's worth of round trips.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

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


#: How deeply a client's JSON text (a run's metadata, a script's parameters) may nest: ``json``
#: recurses (RecursionError past ~1000 levels), and run files and manifests hold these values.
MAX_JSON_DEPTH = 32

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
#: Bytes -> steps: an opening bracket is +1, a closing one -1 (int8 0xff); the rest deleted.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def json_depth(text: str) -> int:
    """How deeply the brackets of a JSON text nest, strings skipped, before ``json`` sees it.

    Linear and at C speed whatever the text: escapes go first (``\\"`` is no quote), so every
    string is then a plain ``"[^"]*"`` and no quote is scanned past more than once (a pattern
    for strings with escapes in it backtracks over an unclosed one from every quote: 64 KiB of
    ``\\"`` took tens of seconds). A text that is not JSON may be over-counted, never under.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return min(MAX_JSON_DEPTH, text.count("[") + text.count("{"))
    data = _STRING.sub(b"", _ESCAPE.sub(b"", text.encode("utf-8", "surrogatepass")))
    brackets = data.translate(_STEPS, _NOT_BRACKETS)
    if not brackets:
        return 0
    return int(np.cumsum(np.frombuffer(brackets, dtype=np.int8), dtype=np.int32).max())
