"""Starlark, as benchd runs it: parse and lint a script, evaluate it under a budget.

Starlark (starlark-pyo3, the Rust interpreter) is hermetic: no ``import``, no file system, no
network, no clock; ``load`` has no loader here, so it fails. The only way out of a script is
the builtins the runner puts in its module. This module knows nothing of actors: it is given
callables and evaluates synchronously; the script's worker process (``worker.py``) calls it, with
builtins that are messages to the runner.

Budget: starlark-pyo3 calls ``EvalOptions.check_cancelled`` about every 1000 bytecode
instructions. One call is one *step*; a script may take ``budget`` steps (default 10 000, the
number the Rust original's Rhai limit used, but each step is ~1000 instructions, so ~10 million
instructions, a few seconds of pure computation). Time spent inside builtins (a move, a sleep)
costs no steps: the budget catches runaway loops, not long experiments. The same hook makes a
stop, abort or e-stop take effect within ~1000 instructions (the worker checks its pipe for a
stop there).

Error handling: every failure is a :class:`ScriptError` with the line and column that Starlark
reports (1-based; 0 when it gave none) and its one-line message.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import starlark

SCRIPT_FILE = "script.star"
DEFAULT_BUDGET = 10_000  # steps of ~1000 bytecode instructions (check_cancelled calls)

# The Starlark half of the builtins: Starlark functions cannot be handed to Python, so a
# helper that calls a script's function is written in Starlark over Python primitives. The
# runner closes the shutter at the end of every execution that opened it, so an error or an
# abort inside ``block`` still leaves it closed.
PRELUDE = """
def with_shutter_open(block, *args, **kwargs):
    _shutter_open()
    result = block(*args, **kwargs)
    _shutter_close()
    return result
"""

_LOCATION = re.compile(r"--> (?P<file>[^:\n]+):(?P<line>\d+):(?P<column>\d+)")
_ERROR_LINE = re.compile(r"^error: (?P<message>.*)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ScriptProblem:
    """One problem found by parsing, linting or running: where, and what."""

    line: int  # 1-based; 0: unknown
    column: int
    message: str
    severity: str = "error"  # "error", "warning", "advice", "disabled"

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}" if self.line else "unknown line"
        return f"{where}: {self.message}"


class ScriptError(Exception):
    """A script failed to parse or to run; ``problem`` says where."""

    def __init__(self, problem: ScriptProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class BudgetExceeded(ScriptError):
    """The script used more than its operation budget (a runaway loop)."""


class ScriptInterrupted(ScriptError):
    """The script was stopped, aborted or e-stopped from outside."""


def _dialect() -> starlark.Dialect:
    dialect = starlark.Dialect.extended()
    dialect.enable_top_level_stmt = True  # for/if at top level: scripts are not BUILD files
    dialect.enable_load = False
    dialect.enable_f_strings = True
    return dialect


def _globals() -> starlark.Globals:
    extensions = starlark.LibraryExtension
    return starlark.Globals.extended_by(
        [extensions.StructType, extensions.Map, extensions.Filter, extensions.Partial]
    )


def problem_from(error: starlark.StarlarkError, file: str = SCRIPT_FILE) -> ScriptProblem:
    """The line, column and message of a Starlark error (its deepest location in ``file``)."""
    text = str(error)
    locations = [m for m in _LOCATION.finditer(text) if m.group("file") == file]
    found = _ERROR_LINE.search(text)
    message = found.group("message") if found else text.strip().splitlines()[0]
    if not locations:
        return ScriptProblem(0, 0, message)
    last = locations[-1]
    return ScriptProblem(int(last.group("line")), int(last.group("column")), message)


def parse(source: str) -> starlark.AstModule:
    try:
        return starlark.parse(SCRIPT_FILE, source, _dialect())
    except starlark.StarlarkError as error:
        problem = problem_from(error)
        if _at_end(error, problem):
            # starlark-rust puts an error at the end of the input (an unclosed bracket) at 1:1
            # with no source snippet: say where it really is
            last = max(1, len(source.rstrip("\n").splitlines()))
            problem = ScriptProblem(last, 0, f"{problem.message} (at the end of the script)")
        raise ScriptError(problem) from None


def _at_end(error: starlark.StarlarkError, problem: ScriptProblem) -> bool:
    return (problem.line, problem.column) == (1, 1) and bool(
        re.search(r":1:1\n \|\n \|\s*$", str(error))
    )


def check(source: str) -> tuple[ScriptProblem, ...]:
    """Parse and lint: a syntax error (at most one: parsing stops there), else lint findings
    (unused variables, unreachable code, misplaced ``load``) as warnings."""
    try:
        ast = parse(source)
    except ScriptError as error:
        return (error.problem,)
    problems = []
    for lint in ast.lint():
        severity = str(lint.severity).rsplit(".", 1)[-1].lower()
        if severity == "disabled":
            continue
        begin = lint.resolved_location.span.begin
        problems.append(
            ScriptProblem(
                begin.line + 1,
                begin.column + 1,
                f"{lint.short_name}: {lint.problem}",
                severity,
            )
        )
    return tuple(problems)


#: Stack for parsing and linting a script. starlark-rust walks the syntax tree recursively, up
#: to ~500 bytes a level, and a script of MAX_SCRIPT_BYTES can nest one level a byte
#: (``"-" * 262000 + "1"``, ``"1+" * 131000``): on a thread's usual 8 MiB that overflows the
#: stack and the process dies of SIGSEGV, daemon and e-stop with it. 512 MiB is 4x what the
#: worst such script measured needs; it is address space, touched only as deep as a script goes.
PARSE_STACK = 512 * 1024 * 1024
_STACK_SIZE_LOCK = threading.Lock()


def run_with_parse_stack(function: Callable[[], Any]) -> Any:
    """``function()`` on a new thread with :data:`PARSE_STACK` of stack, its result or its
    exception: for whatever parses or runs a client's script (blocks until it returns)."""
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(function())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name="script-parse", daemon=True)
    with _STACK_SIZE_LOCK:  # the size is process-wide: set it for this one thread only
        previous = threading.stack_size(PARSE_STACK)
        try:
            thread.start()
        finally:
            threading.stack_size(previous)
    thread.join()
    if error:
        raise error[0]
    return result[0]


def check_deep(source: str) -> tuple[ScriptProblem, ...]:
    """:func:`check` on a stack deep enough for any script the runner accepts."""
    problems: tuple[ScriptProblem, ...] = run_with_parse_stack(lambda: check(source))
    return problems


class Budget:
    """The ``check_cancelled`` hook: counts steps, and tells Starlark to stop on a budget
    overrun or when ``interrupted()`` returns a reason."""

    def __init__(self, steps: int, interrupted: Callable[[], str | None]) -> None:
        self.limit = steps
        self.used = 0
        self.reason: str | None = None
        self._interrupted = interrupted

    def __call__(self) -> bool:
        self.used += 1
        interrupted = self._interrupted()
        if interrupted is not None:
            self.reason = interrupted
            return True
        if self.used > self.limit:
            self.reason = (
                f"operation budget exceeded: more than {self.limit} steps of ~1000 bytecode"
                " instructions (a runaway loop?)"
            )
            return True
        return False


def evaluate(
    source: str,
    builtins: Mapping[str, Callable[..., Any]],
    *,
    variables: Mapping[str, Any] | None = None,
    budget: Budget,
    retain: list[object] | None = None,
) -> None:
    """Run ``source`` with ``builtins`` (and ``variables``, e.g. ``params``) in its module.
    Blocks, holding the GIL while Starlark computes: the daemon runs it in a worker process.

    ``retain``: the module is appended to it, so its heap is not freed on return. Freeing
    a big Starlark heap takes ~0.3 s a gigabyte; a worker that exits right after reporting
    lets the kernel drop it at once instead.

    Error handling: ScriptError (syntax, runtime, a builtin's failure, with the line);
    BudgetExceeded or ScriptInterrupted when the budget hook ended the evaluation.
    """
    ast = parse(source)
    module = starlark.Module()
    if retain is not None:
        retain.append(module)
    for name, function in builtins.items():
        module.add_callable(name, function)
    for name, value in (variables or {}).items():
        module[name] = value
    options = starlark.EvalOptions(check_cancelled=budget)
    globals_ = _globals()
    prelude = starlark.parse("prelude.star", PRELUDE, _dialect())
    starlark.eval_with(options, module, prelude, globals_)
    try:
        starlark.eval_with(options, module, ast, globals_)
    except starlark.StarlarkError as error:
        problem = problem_from(error)
        if budget.reason is not None:
            located = ScriptProblem(problem.line, problem.column, budget.reason)
            if budget.used > budget.limit:
                raise BudgetExceeded(located) from None
            raise ScriptInterrupted(located) from None
        raise ScriptError(problem) from None
