"""``benchctl watch``: live values of devices and parameters, refreshed in place.

Each name is a device or a ``DEVICE.PARAM``: a Movable device shows its position, a Readable
its reading, any other device all its parameters, a ``DEVICE.PARAM`` that parameter; no name:
every Movable's position and every Readable's reading. One stream per name, each re-subscribing
by itself after a dropped connection; the table is redrawn by rich.live a few times a second,
whatever the streams' rates (latest-only: a value that changes faster is shown as it is now).

On a terminal the table refreshes in place until Ctrl-C (which ends it cleanly, exit 0) or
``--duration``; otherwise (a pipe, a log) the table is printed once at the end. ``--json``
prints one JSON object per update instead (JSON lines), for scripts.

Error handling: an unknown name fails at once with the daemon's message (nothing is watched);
a stream that fails later shows its error in its row (in the bench's words) and the others go
on. When every stream has failed (the daemon went away for longer than the retry budget) the
watch ends with the first stream's error (exit 8 for a lost daemon), after the last table. A
reader that closed the pipe (``| head``) ends the watch at once; Ctrl-C prints the last table
too when the output is not a terminal (``watch ... > log.txt``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from rich.live import Live
from rich.table import Table

from . import _completion as completion
from ._async import AsyncBench
from ._cli_common import Output, fmt, human_message, lost_daemon, seconds
from ._errors import BenchError, ConnectionLost, NotFound
from ._sync import split_parameter
from ._types import DeviceInfo, ParameterValue, Position, Reading

REFRESH_PER_SECOND = 8


@dataclass
class Row:
    """One value on screen."""

    name: str
    value: str = "…"
    units: str = ""
    updated: float = 0.0
    note: str = ""


def add_watch_command(commands: Any) -> None:
    watch = commands.add_parser(
        "watch",
        help="live values of devices and parameters, refreshed in place (Ctrl-C ends it)",
        description="Positions, readings and parameters as they change. NAME: a device (its"
        " position or reading; all its parameters if it has neither) or DEVICE.PARAM. No NAME:"
        " every stage's position and every reading.",
    )
    names = watch.add_argument("names", nargs="*", metavar="NAME")
    completion.attach(names, completion.watchables)
    watch.add_argument(
        "--interval", type=seconds, default=0.2, help="positions and readings this often (s)"
    )
    watch.add_argument(
        "--duration", type=seconds, default=0.0, help="stop after this long (default: Ctrl-C)"
    )


async def _sources(
    bench: AsyncBench, names: list[str], interval: float
) -> list[tuple[str, AsyncIterator[Any]]]:
    """(label, stream) for each name; an unknown device or parameter raises here."""
    devices = {d.name: d for d in await bench.actors()}
    if not names:
        names = [
            d.name
            for d in devices.values()
            if not d.is_service and {"Movable", "Readable"} & set(d.capabilities)
        ]
    streams: list[tuple[str, AsyncIterator[Any]]] = []
    for name in dict.fromkeys(names):
        if name in devices:
            streams.append((name, _device_stream(bench, devices[name], interval)))
            continue
        if "." not in name:
            raise NotFound(f"no device named {name!r}; devices: {', '.join(devices)}")
        device, parameter = split_parameter(name)
        await bench.get(device, parameter)  # NotFound naming what exists, before any watching
        streams.append((name, bench.stream_parameters(device, [parameter])))
    return streams


def _device_stream(bench: AsyncBench, device: DeviceInfo, interval: float) -> AsyncIterator[Any]:
    if "Movable" in device.capabilities:
        return bench.stream_position(device.name, interval)
    if "Readable" in device.capabilities:
        return bench.stream_values(device.name, interval)
    return bench.stream_parameters(device.name)


def _label(source: str, update: Any) -> tuple[str, str, str]:
    """(row name, value, units) of one update."""
    match update:
        case Position():
            return source, fmt(update.position), update.units
        case Reading():
            flags = f" ({', '.join(update.flags)})" if update.flags else ""
            return source, f"{update.value:.6g}{flags}", update.units
        case ParameterValue():
            return f"{update.device}.{update.name}", fmt(update.value), update.units
    return source, str(update), ""


def _table(rows: dict[str, Row]) -> Table:
    table = Table("name", "value", "units", "updated", box=None)
    now = time.time()
    for row in rows.values():
        age = f"{now - row.updated:.1f} s ago" if row.updated else ""
        table.add_row(row.name, row.value if not row.note else row.note, row.units, age)
    return table


async def watch(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    streams = await _sources(bench, args.names, args.interval)
    rows = {source: Row(source) for source, _ in streams}

    async def follow(source: str, stream: AsyncIterator[Any]) -> None:
        try:
            async for update in stream:
                name, value, units = _label(source, update)
                row = rows.setdefault(name, Row(name))
                row.value, row.units, row.updated, row.note = value, units, time.time(), ""
                if name != source and source in rows and rows[source].value == "…":
                    del rows[source]  # a device's parameters: one row each instead
                if out.as_json:
                    record = {"name": name, "value": value, "units": units, "time": row.updated}
                    print(json.dumps(record), flush=True)
        except BenchError as error:
            failures.append(error)
            rows.setdefault(source, Row(source)).note = f"error: {_brief(error, args.address)}"
            raise

    async def refresh(live: Live | None) -> None:
        while True:
            if live is not None:
                live.update(_table(rows), refresh=True)
            await asyncio.sleep(1 / REFRESH_PER_SECOND)

    failures: list[BenchError] = []
    live = Live(_table(rows), console=out.console, auto_refresh=False) if out.live else None
    tasks = [asyncio.ensure_future(follow(source, stream)) for source, stream in streams]
    painter = asyncio.ensure_future(refresh(live))
    out.doing = " during watch"
    pipe_gone = False
    try:
        if live is not None:
            live.start()
        else:  # a pipe or a file: say it works, or a silent watch looks hung
            end = f"after {args.duration:g} s" if args.duration else "on Ctrl-C"
            out.note(f"benchctl: watching {len(rows)} value(s); the table is printed {end}")
        pipe_gone = await _until_done(tasks, args.duration)
    finally:
        painter.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(painter, *tasks, return_exceptions=True)
        if live is not None:
            live.update(_table(rows), refresh=True)
            live.stop()
        elif not out.as_json and not pipe_gone:
            out.console.print(_table(rows))
    if pipe_gone:
        raise BrokenPipeError
    if failures and len(failures) == len(tasks):
        raise failures[0]  # nothing left to watch: say why, with its exit code


async def _until_done(tasks: Sequence[asyncio.Future[None]], duration: float) -> bool:
    """Wait until every stream has ended (a daemon going away for good), ``duration`` (0: no
    end) or Ctrl-C; True, at once, when the reader of our output went away (``| head``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration if duration else None
    pending = set(tasks)
    while pending:
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            break
        done, pending = await asyncio.wait(pending, timeout=left, return_when="FIRST_COMPLETED")
        if any(not t.cancelled() and isinstance(t.exception(), BrokenPipeError) for t in done):
            return True
        if not done:
            break  # --duration
    return False


def _brief(error: BenchError, address: str) -> str:
    """A stream's error for its row: the bench's words (a lost daemon said as such)."""
    if isinstance(error, ConnectionLost):
        return lost_daemon(error.message, address, "")
    return human_message(error, address)
