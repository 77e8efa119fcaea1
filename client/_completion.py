"""Shell completion for ``benchctl`` (argcomplete): commands and options from the parser, device,
parameter, run and script names from the daemon.

argcomplete runs ``benchctl`` itself on each TAB (with ``_ARGCOMPLETE`` set), so completion
always matches the installed version and needs no generated file to keep in step. The
completers below ask the daemon (``--address`` from the line being completed, else
``$BENCHD_ADDRESS``) with a short deadline; an unreachable daemon completes nothing rather
than hanging the shell. ``benchctl completion bash|zsh|fish`` prints the shell's hook
(``eval "$(benchctl completion bash)"`` in ~/.bashrc).

Error handling: a completer never raises (argcomplete would print a traceback into the
shell): any failure completes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ._async import AsyncBench, RetryPolicy

SHELLS = ("bash", "zsh", "fish")
#: the most a TAB waits for the daemon (seconds)
DEADLINE = 1.5

Completer = Callable[..., list[str]]


def shellcode(shell: str) -> str:
    """The hook that makes ``shell`` complete ``benchctl`` (and ``python -m client``)."""
    from argcomplete.shell_integration import shellcode as hook  # noqa: PLC0415 (on demand)

    return hook(["benchctl"], shell=shell)


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer a TAB and exit, if this run is one (``_ARGCOMPLETE`` set); else nothing."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete  # noqa: PLC0415

    argcomplete.autocomplete(parser)


def _ask(
    parsed_args: argparse.Namespace, call: Callable[[AsyncBench], Coroutine[Any, Any, list[str]]]
) -> list[str]:
    address = getattr(parsed_args, "address", None) or None
    token = getattr(parsed_args, "token", None)
    token_file = getattr(parsed_args, "token_file", None)
    try:
        if token is None and token_file is not None:
            token = Path(token_file).read_text().strip() or None

        async def run() -> list[str]:
            bench = AsyncBench(address, token=token, retry=RetryPolicy(budget=0), timeout=DEADLINE)
            try:
                return await asyncio.wait_for(call(bench), DEADLINE)
            finally:
                await bench.close()

        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            return runner.run(run())
    except Exception:
        return []


def devices(*capabilities: str, services: bool = False) -> Completer:
    """Device names (with one of ``capabilities`` if given; services too if ``services``)."""

    def complete(prefix: str = "", parsed_args: Any = None, **_: Any) -> list[str]:
        async def names(bench: AsyncBench) -> list[str]:
            found = await bench.actors()
            return [
                d.name
                for d in found
                if (services or not d.is_service)
                and (not capabilities or set(capabilities) & set(d.capabilities))
            ]

        return [n for n in _ask(parsed_args, names) if n.startswith(prefix)]

    return complete


def parameters(prefix: str = "", parsed_args: Any = None, **_: Any) -> list[str]:
    """``DEVICE.PARAM`` names: the devices first, a device's parameters once it is typed."""

    async def names(bench: AsyncBench) -> list[str]:
        found = [d.name for d in await bench.actors()]
        device = next(
            (d for d in sorted(found, key=len, reverse=True) if prefix.startswith(d + ".")), None
        )
        if device is None:
            return [f"{d}." for d in found if d.startswith(prefix)]
        return [f"{device}.{p.name}" for p in await bench.parameters(device)]

    return [n for n in _ask(parsed_args, names) if n.startswith(prefix)]


def watchables(prefix: str = "", parsed_args: Any = None, **kwargs: Any) -> list[str]:
    """Devices and, after a device's name and a dot, its parameters."""
    if "." in prefix:
        return parameters(prefix, parsed_args, **kwargs)
    return devices()(prefix, parsed_args, **kwargs)


def runs(prefix: str = "", parsed_args: Any = None, **_: Any) -> list[str]:
    async def names(bench: AsyncBench) -> list[str]:
        return [r.name for r in await bench.runs()]

    return [n for n in _ask(parsed_args, names) if n.startswith(prefix)]


def scripts(prefix: str = "", parsed_args: Any = None, **_: Any) -> list[str]:
    async def names(bench: AsyncBench) -> list[str]:
        return [s.name for s in await bench.scripts()]

    return [n for n in _ask(parsed_args, names) if n.startswith(prefix)]


def running(prefix: str = "", parsed_args: Any = None, **_: Any) -> list[str]:
    """Ids of scans and script executions not finished yet, and the devices (for ``stop``)."""

    async def names(bench: AsyncBench) -> list[str]:
        ids = [s.id for s in await bench.scans() if not s.finished]
        ids += [e.id for e in await bench.executions() if not e.finished]
        return ids + [d.name for d in await bench.devices() if "Movable" in d.capabilities]

    return [n for n in _ask(parsed_args, names) if n.startswith(prefix)]


def attach(action: argparse.Action, completer: Completer) -> argparse.Action:
    """Give an argument its completer (argcomplete reads ``action.completer``)."""
    action.completer = completer  # type: ignore[attr-defined]
    return action
