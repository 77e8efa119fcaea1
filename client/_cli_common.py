"""What every ``benchctl`` command shares: the parser class, output, values, messages.

Error handling: :func:`human_message` turns a client error into the bench's words for people
(``--json`` keeps the daemon's message and gRPC status as they are).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from typing import Any

from rich.console import Console

from ._errors import BenchError, ConnectionLost
from ._types import PlainValue
from ._units import UnitError, to_unit

#: a leading gRPC status name some messages carry ("INVALID_ARGUMENT: ..."): not for people
_STATUS_PREFIX = re.compile(r"^(?:Status\.)?[A-Z][A-Z_]{3,}:\s+")
#: "-5", "-0.5", "-5mm", "-2.5e-3 deg": values, not options
_NEGATIVE_VALUE = re.compile(r"^-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:\s*[A-Za-zµμ°%Ω].*)?$")


#: tables printed to a pipe are this wide (a terminal's own width otherwise)
PIPE_WIDTH = 240


class Parser(argparse.ArgumentParser):
    """argparse, where a negative number with a unit (``-5mm``) is a value, not an option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_VALUE


def parse_value(text: str) -> bool | int | float | str:
    """A command-line value: true/false, an integer, a number, else the text itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def seconds(text: str) -> float:
    """An argparse type: seconds, as a number or with a time unit (``500ms``, ``2 min``)."""
    try:
        value = to_unit(text, "s", "", "option")
    except UnitError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix(": ")) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a time cannot be negative")
    return value


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(highlight=False, soft_wrap=True)
        if not self.console.is_terminal:  # a pipe or a file: whole names and paths, for grep
            self.console = Console(highlight=False, soft_wrap=True, width=PIPE_WIDTH)
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def live(self) -> bool:
        """Progress bars and live tables: on a terminal, never with --json."""
        return not self.as_json and self.errors.is_terminal

    def emit(self, value: Any, text: Any) -> None:
        """``value`` as JSON with --json, else ``text`` (a string or a rich renderable)."""
        if self.as_json:
            print(json.dumps(plain(value), indent=2, sort_keys=True))
        else:
            self.console.print(text)

    def note(self, text: str) -> None:
        """A remark for people on stderr (never in --json output)."""
        if not self.as_json:
            self.errors.print(text, markup=False)


def fmt(value: PlainValue, units: str = "") -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} {units}".rstrip()


def human_message(error: BenchError, address: str) -> str:
    """The error in the bench's words: no gRPC status names, an unreachable daemon said as
    such (with what to check), the daemon's own message otherwise."""
    if isinstance(error, ConnectionLost):
        return _unreachable(error.message, address)
    return _STATUS_PREFIX.sub("", error.message)


def _unreachable(message: str, address: str) -> str:
    if "could not reach the daemon" not in message:
        return message  # a call cut off mid-way: the client's message says what may have happened
    budget = re.search(r"for ([\d.]+) s", message)
    why = "it does not answer"
    if "ConnectionRefused" in message or "Connection refused" in message:
        why = "nothing listens there (connection refused)"
    elif "Name or service not known" in message or "gaierror" in message:
        why = "no such host"
    elif "timed out" in message or "TimeoutError" in message:
        why = "no answer (timed out)"
    tried = f" (tried for {budget.group(1)} s)" if budget else ""
    return (
        f"cannot reach the daemon at {address}: {why}{tried}. Is it running"
        " (python -m runtime)? Another daemon: --address HOST:PORT or BENCHD_ADDRESS."
    )
