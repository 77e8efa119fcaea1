"""A script's worker process: ``python -m actors.scripting.worker``.

Why a process: Starlark evaluation holds the GIL and starlark-pyo3 frees nothing while one
evaluation runs, so a script that computes or allocates without end would freeze the daemon's
event loop or eat the machine's memory. Here it can only eat its own caps (RLIMIT_AS and
RLIMIT_CPU, set by the runner with ``prlimit`` before the job arrives) and die alone.

The process speaks :mod:`.protocol` frames on the stdin/stdout it was started with, which it
moves to private descriptors first (stdout then points at stderr, so a stray print cannot
corrupt a frame). It says ``ready``, waits for one ``run`` job, evaluates it and reports
``finished`` or ``failed``, then exits: one script per process, so no state and no heap
survive from one script to the next. Each builtin is a proxy that sends a ``call`` frame and
blocks until the runner's ``result`` or ``error``; the proxies are built from the list of
names in the job, so this module never changes when a builtin is added.

The operation budget's hook (every ~1000 instructions) polls the pipe for a ``stop`` frame, so
a stop takes effect within a step while the script computes; while it waits for a builtin a
``stop`` ends the wait at once. The end of the pipe (the daemon is gone) stops it the same way.

Imports: the standard library, :mod:`.protocol` and :mod:`.engine` (Starlark) — nothing of the
daemon, so a pool member starts in a few tens of milliseconds.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable
from typing import Any

from .engine import (
    Budget,
    BudgetExceeded,
    ScriptError,
    ScriptInterrupted,
    evaluate,
    run_with_parse_stack,
)
from .protocol import (
    EXIT_MEMORY,
    MAX_FRAME,
    ProtocolError,
    encode,
    read_frame,
    write_all,
    write_frame,
)

RUNNER_GONE = "the script runner went away"
_RETAINED: list[object] = []  # the script's module: its heap is the kernel's to drop at exit


class BuiltinError(Exception):
    """A builtin was refused by the runner (the name Starlark shows before the message)."""


class BuiltinInterrupted(Exception):
    """The builtin was cut short by a stop, an abort or an emergency stop."""


class _Link:
    """This process's end of the pipe pair: blocking calls, and the stop check for the
    budget hook."""

    def __init__(self, inbox: int, outbox: int) -> None:
        self.inbox = inbox
        self.outbox = outbox
        self.stop: str | None = None
        self.steps: Callable[[], int] = lambda: 0
        self._poller = select.poll()
        self._poller.register(inbox, select.POLLIN)

    def interrupted(self) -> str | None:
        """For the budget hook: the stop reason once a ``stop`` frame (or the end of the pipe)
        has arrived; one poll() without waiting otherwise."""
        if self.stop is None and self._poller.poll(0):
            self._unsolicited(self._receive())
        return self.stop

    def _receive(self) -> dict[str, Any] | None:
        try:
            return read_frame(self.inbox)
        except (OSError, ProtocolError):
            return None

    def _unsolicited(self, message: dict[str, Any] | None) -> None:
        if message is None:
            self.stop = RUNNER_GONE
        elif message["type"] == "stop":
            self.stop = str(message.get("reason") or "stopped")

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.interrupted() is not None:
            raise BuiltinInterrupted(self.stop)
        try:
            frame = encode(
                {
                    "type": "call",
                    "name": name,
                    "args": args,
                    "kwargs": kwargs,
                    "steps": self.steps(),
                }
            )
        except ProtocolError:
            raise BuiltinError(
                f"{name}: its arguments are too large (at most {MAX_FRAME} bytes as JSON)"
            ) from None
        except (TypeError, ValueError):
            raise BuiltinError(
                f"{name}: arguments must be numbers, strings, booleans, None, lists and dicts"
            ) from None
        except MemoryError:
            raise BuiltinError(f"{name}: memory limit reached preparing its arguments") from None
        try:
            write_all(self.outbox, frame)
        except OSError:
            self.stop = RUNNER_GONE
            raise BuiltinInterrupted(self.stop) from None
        while True:
            reply = self._receive()
            if reply is None or reply["type"] == "stop":
                self._unsolicited(reply)
                raise BuiltinInterrupted(self.stop)
            if reply["type"] == "result":
                return reply.get("value")
            if reply["type"] == "error":
                message = str(reply.get("message", ""))
                if reply.get("kind") == "interrupted":
                    raise BuiltinInterrupted(message)
                raise BuiltinError(message)


def _proxy(link: _Link, name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return link.call(name, args, kwargs)

    call.__name__ = name
    return call


def _take_pipes() -> tuple[int, int]:
    """The frame pipes on private descriptors; fd 0 reads nothing, fd 1 goes to stderr."""
    inbox, outbox = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return inbox, outbox


def _outcome(job: dict[str, Any], link: _Link) -> dict[str, Any]:
    budget = Budget(int(job.get("budget", 1)), link.interrupted)
    link.steps = lambda: budget.used
    builtins = {str(name): _proxy(link, str(name)) for name in job.get("builtins", ())}
    variables = job.get("variables") or {}
    try:
        evaluate(
            str(job.get("source", "")),
            builtins,
            variables=variables,
            budget=budget,
            retain=_RETAINED,
        )
    except ScriptError as error:
        kind = "error"
        if isinstance(error, BudgetExceeded):
            kind = "budget"
        elif isinstance(error, ScriptInterrupted):
            kind = "interrupted"
        problem = error.problem
        return {
            "type": "failed",
            "kind": kind,
            "line": problem.line,
            "column": problem.column,
            "message": problem.message[:4000],
            "steps": budget.used,
        }
    except MemoryError:
        return {"type": "failed", "kind": "memory", "message": "", "steps": budget.used}
    except BaseException as error:  # a Rust panic (pyo3 PanicException) is a BaseException
        text = str(error)[:500]
        if "out of memory" in text or "memory allocation" in text:
            return {"type": "failed", "kind": "memory", "message": "", "steps": budget.used}
        message = f"the interpreter failed: {type(error).__name__}: {text}"
        return {"type": "failed", "kind": "error", "message": message, "steps": budget.used}
    return {"type": "finished", "steps": budget.used}


def main() -> int:
    inbox, outbox = _take_pipes()
    try:
        write_frame(outbox, {"type": "ready", "pid": os.getpid()})
        job = read_frame(inbox)
    except (OSError, ProtocolError):
        return 1
    if job is None or job["type"] != "run":
        return 0  # the pool is closing: nothing to do
    link = _Link(inbox, outbox)
    report = _outcome(job, link)
    try:
        write_frame(outbox, report)
    except MemoryError:
        return EXIT_MEMORY
    except (OSError, ProtocolError):
        return 1
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    # os._exit: skip freeing the script's heap (it may be a gigabyte) and interpreter teardown
    # on a stack deep enough for any script the runner accepts (engine.PARSE_STACK): a deeply
    # nested expression would overflow the main thread's and kill the worker with SIGSEGV
    os._exit(run_with_parse_stack(main))
