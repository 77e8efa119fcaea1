"""What every ``benchctl`` command shares: the parser class, output, values, messages.

Error handling: :func:`human_message` turns a client error into the bench's words for people
(``--json`` keeps the daemon's message and gRPC status as they are), with a "did you mean" for
a mistyped name; a mistyped command gets one from :class:`Parser`. :class:`Output` keeps what a
Ctrl-C left behind (a scan or run stopped, a stage stopped) for the last line, and whether the
daemon had answered, so a daemon that goes away mid-command is not called unreachable.
"""

from __future__ import annotations

import argparse
import contextvars
import dataclasses
import difflib
import json
import re
import sys
from typing import Any, NoReturn

from rich.console import Console

from ._errors import BenchError, ConnectionLost
from ._types import PlainValue
from ._units import UnitError, to_unit

#: a leading gRPC status name some messages carry ("INVALID_ARGUMENT: ..."): not for people
_STATUS_PREFIX = re.compile(r"^(?:Status\.)?[A-Z][A-Z_]{3,}:\s+")
#: "-5", "-0.5", "-5mm", "-2.5e-3 deg": values, not options
_NEGATIVE_VALUE = re.compile(r"^-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:\s*[A-Za-zµμ°%Ω].*)?$")


#: "no device named 'x'; devices: a, b" (the daemon's and the client's not-found messages)
_NOT_FOUND = re.compile(r"^no [\w ]+? '(?P<name>[^']{1,100})'; [\w ]+: (?P<known>.+)$", re.S)

#: the daemon's words for gRPC clients -> what a benchctl user types instead
_FOR_BENCHCTL = (
    # "esp300.axis1: MoveAbsolute is refused: e-stop latched …": a message class's name
    (re.compile(r"(^|: )[A-Z][a-z]+(?:[A-Z][a-z]+)+ is refused: "), r"\1refused: "),
    (
        re.compile(r"reset the emergency stop first$"),
        "reset the emergency stop first (benchctl reset)",
    ),
    (re.compile(r"\(StopRun, or StopScan (\w+)\)"), r"(benchctl stop-run, or benchctl stop \1)"),
    # a move or home that outlived --timeout: the actor's internals, then what to call
    (re.compile(r" \(actor '[^']*' did not reply to .{0,300}? within [\d.]+ s\)"), ""),
    (
        re.compile(r"^'([^']+)'(.*): call StopMotion to stop it(?:, or WaitSettled)?$", re.S),
        r"'\1'\2: 'benchctl stop \1' stops it",
    ),
)
#: a unit typed apart from its number, unquoted: "set maitai.wavelength 800 nm"
_LONE_UNIT = re.compile(r"^unrecognized arguments: ([A-Za-zµμ°%Ω][\w/*^.°µμ%Ω-]{0,11})$")

#: tables printed to a pipe are this wide (a terminal's own width otherwise)
PIPE_WIDTH = 240


#: the command line asked for --json: a usage error is then JSON on stderr too
JSON_ERRORS: contextvars.ContextVar[bool] = contextvars.ContextVar("json_errors", default=False)


class Parser(argparse.ArgumentParser):
    """argparse, where a negative number with a unit (``-5mm``) is a value, not an option, a
    mistyped choice gets a "did you mean", and a usage error is JSON when --json was given."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: --"):
            option = message.split()[2].partition("=")[0]
            close = suggest(option, sorted(_option_strings(self)))
            if close:
                message += f"; did you mean {close}?"
        lone = _LONE_UNIT.match(message)
        if lone:
            message += (
                f" (a value with a unit is one word, 12.5{lone[1]}, or quoted: '12.5 {lone[1]}')"
            )
        if JSON_ERRORS.get():
            record = {"error": "UsageError", "status": "", "message": f"{self.prog}: {message}"}
            print(json.dumps(record), file=sys.stderr)
            raise SystemExit(2)
        super().error(message)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_VALUE

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """A choice not among the allowed (a command, a plan kind, a shell): suggest the
        nearest, as git does (``devics``: did you mean 'devices'?)."""
        choices = action.choices
        if choices is not None and value not in choices:
            close = suggest(str(value), [str(c) for c in choices])
            if close:
                raise argparse.ArgumentError(
                    action, f"invalid choice: {value!r}; did you mean {close!r}?"
                )
        super()._check_value(action, value)


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every --option of the parser and its commands (a typo is reported by the top parser)."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


def suggest(wanted: str, known: list[str]) -> str | None:
    """The known name nearest a mistyped one, None when none is near."""
    close = difflib.get_close_matches(wanted, known, n=1, cutoff=0.6)
    return close[0] if close else None


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


def count(text: str) -> int:
    """An argparse type: a whole number, 0 or more (``--frames -3`` said so here, not as
    protobuf's "Value out of range")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:32]!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: a count cannot be negative")
    return value


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
        #: the daemon answered this command once (a later ConnectionLost: it went away)
        self.connected = False
        #: what Ctrl-C left behind, said with "interrupted" ("scan p3 stopped at 7 of 20 …")
        self.interrupted = ""
        #: what was under way, for a daemon lost mid-command (" during scan p3")
        self.doing = ""
        for console in (self.console, self.errors):
            console.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]

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


def _broken_pipe() -> NoReturn:
    """The reader of our output went away (``benchctl runs | head``): rich's own handler exits
    1 at once; ``main`` instead ends the command quietly, as any Unix tool."""
    raise BrokenPipeError


def fmt(value: PlainValue, units: str = "") -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} {units}".rstrip()


def human_message(error: BenchError, address: str) -> str:
    """The error in the bench's words: no gRPC status names, an unreachable daemon said as
    such (with what to check), the daemon's own message otherwise."""
    if isinstance(error, ConnectionLost):
        return _unreachable(error.message, address)
    message = _STATUS_PREFIX.sub("", error.message)
    for pattern, words in _FOR_BENCHCTL:
        message = pattern.sub(words, message)
    return message + did_you_mean(message)


def did_you_mean(message: str) -> str:
    """``; did you mean 'power_meter'?`` for a not-found message listing what exists."""
    found = _NOT_FOUND.match(message)
    if found is None:
        return ""
    known = [k.strip() for k in found["known"].split(",")]
    close = suggest(found["name"], known)
    if close is None and "." in found["name"]:  # a DEVICE.PARAM named whole: its parameter
        close = suggest(found["name"].rpartition(".")[2], known)
    return f"; did you mean {close!r}?" if close else ""


def lost_daemon(message: str, address: str, doing: str) -> str:
    """A daemon that answered and then went away mid-command (stopped, crashed, the network)."""
    why = "it stopped answering"
    if "ConnectionRefused" in message or "Connection refused" in message:
        why = "it went away (connection refused)"
    budget = re.search(r"for ([\d.]+) s", message)
    tried = f"; tried {budget.group(1)} s to reconnect" if budget else ""
    return f"lost the daemon at {address}{doing}: {why}{tried}"


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
