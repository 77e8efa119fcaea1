"""``benchctl``: the common bench actions from a shell.

    benchctl [GLOBAL OPTIONS] COMMAND ... [GLOBAL OPTIONS]

Global options (``--address``, ``--token``, ``--token-file``, ``--tls``, ``--json``, ``--wait``)
go anywhere on the line, before or after the command. Defaults come from ``BENCHD_ADDRESS``
(else 127.0.0.1:50051) and ``BENCHD_TOKEN``. Output is a table or a line for people, or JSON with
``--json``. Each command is one asyncio run of an :class:`AsyncBench` (no thread). Values may
carry units (``move esp300.axis1 12.5mm``, ``set maitai.wavelength "800 nm"``): they are
converted to the axis's or parameter's unit (``client._units``). Shell completion:
``benchctl completion bash`` (``client._completion``).

Error handling: an error prints a message for people on stderr, in the bench's words (as JSON
with the daemon's message and gRPC status with ``--json``), and exits with the error's code:
1 other, 2 usage (also a value of the wrong unit), 3 invalid argument, 4 not found, 5 refused
(the e-stop is latched), 6 already exists, 7 unauthenticated / permission denied, 8 unavailable
or the daemon unreachable, 9 deadline exceeded, 10 aborted, 11 unimplemented, 12 internal
error, 13 disk space low (a run refused), 130 interrupted (Ctrl-C; a move in flight, a scan or
a run being waited for is stopped first, and the message says where it stopped; ``watch`` ends
with 0), 141 the output's reader went away (``benchctl runs | head``: quietly, no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import _completion as completion
from ._async import AsyncBench, RetryPolicy, default_address
from ._cli_common import (
    JSON_ERRORS,
    Output,
    Parser,
    count,
    fmt,
    human_message,
    lost_daemon,
    parse_value,
    seconds,
)
from ._cli_scan import add_scan_commands, run_scan_command, scan_line
from ._cli_watch import add_watch_command, watch
from ._errors import BenchError, ConnectionLost, FailedPrecondition, NotFound, Unimplemented
from ._sync import RunProgress, split_parameter
from ._types import (
    DeviceInfo,
    Execution,
    HomeProgress,
    MoveResult,
    ParameterValue,
    Position,
    RunFile,
    RunStatus,
    ScanStatus,
)
from ._units import UnitError, is_quantity, to_number, to_unit

USAGE_ERROR = 2
INTERRUPTED = 130
#: 128 + SIGPIPE: the output's reader went away (``| head``)
BROKEN_PIPE = 141


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, wherever they are on the line. Only the top parser
    has defaults; a command's copy has none (SUPPRESS), so it never overwrites a value given
    before the command."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("global options (anywhere on the line)")
    group.add_argument(
        "--address",
        default=default(None),
        help="the daemon, host:port (default: $BENCHD_ADDRESS, else 127.0.0.1:50051)",
    )
    group.add_argument(
        "--token",
        default=default(None),
        help="the bearer token (others on this machine can see it in ps: prefer"
        " --token-file or $BENCHD_TOKEN)",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        default=default(None),
        help="a file holding the bearer token (default: $BENCHD_TOKEN, else no token)",
    )
    group.add_argument(
        "--tls", metavar="CERT", default=default(None), help="use TLS, trusting this CA"
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print machine-readable JSON (errors too, with their gRPC status)",
    )
    if defaults:
        group.add_argument("--version", action="version", version=f"benchctl {_version()}")
    group.add_argument(
        "--wait",
        type=seconds,
        default=default(5.0),
        metavar="SECONDS",
        help="keep trying to reach the daemon this long (default 5)",
    )


def _version() -> str:
    try:
        return importlib.metadata.version("benchd")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _spread_global_options(parser: argparse.ArgumentParser, seen: set[int]) -> None:
    """Give every command (and sub-command) the global options, without defaults."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    _global_options(sub, defaults=False)
                    _spread_global_options(sub, seen)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="benchctl",
        description="Drive a benchd daemon: devices, parameters, motion, e-stop, presets, runs,"
        " scans, scripts. Values may carry units: 12.5mm, '800 nm', 10ms.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 invalid argument, 4 not found, 5 refused"
        " (e-stop latched), 6 already exists, 7 unauthenticated or not allowed, 8 unavailable"
        " or unreachable, 9 deadline exceeded, 10 aborted, 11 unimplemented, 12 internal,"
        ' 13 disk space low, 130 interrupted. Completion: eval "$(benchctl completion bash)".',
    )
    _global_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("devices", help="list the devices, their state and capabilities")
    commands.add_parser("services", help="the daemon's own services: recorder, ring, scripts, …")
    get = commands.add_parser("get", help="read a parameter: get maitai.wavelength")
    completion.attach(get.add_argument("parameter", metavar="DEVICE.PARAM"), completion.parameters)
    put = commands.add_parser("set", help="set a parameter: set maitai.wavelength '800 nm'")
    completion.attach(put.add_argument("parameter", metavar="DEVICE.PARAM"), completion.parameters)
    put.add_argument("value", metavar="VALUE", help="true/false, a number (with a unit) or text")
    params = commands.add_parser("params", help="list a device's parameters")
    completion.attach(params.add_argument("device", metavar="DEVICE"), completion.devices())
    move = commands.add_parser("move", help="move a stage and wait: move esp300.axis1 12.5mm")
    movable = completion.devices("Movable")
    completion.attach(move.add_argument("device", metavar="DEVICE"), movable)
    move.add_argument("position", metavar="POSITION", help="in the device's units, or 12.5mm")
    move.add_argument("--relative", action="store_true", help="POSITION is a distance")
    move.add_argument("--timeout", type=seconds, default=60.0, help="seconds (default 60)")
    where = commands.add_parser("position", help="where a stage is")
    completion.attach(where.add_argument("device", metavar="DEVICE"), movable)
    read = commands.add_parser("read", help="one reading: read power_meter")
    readable = completion.devices("Readable")
    completion.attach(read.add_argument("device", metavar="DEVICE"), readable)
    home = commands.add_parser("home", help="run a stage's home search, with progress")
    completion.attach(home.add_argument("device", metavar="DEVICE"), movable)
    home.add_argument("--timeout", type=seconds, default=120.0, help="seconds (default 120)")
    motor_on = commands.add_parser("motor-on", help="switch a motor on after a fault")
    completion.attach(motor_on.add_argument("device", metavar="DEVICE"), movable)
    zero = commands.add_parser("zero", help="power meter: store the dark offset (cover it)")
    completion.attach(zero.add_argument("device", metavar="DEVICE"), readable)
    zero.add_argument("--off", action="store_true", help="stop subtracting the offset")
    _add_control_commands(commands)
    estop = commands.add_parser("estop", help="EMERGENCY STOP every device and latch")
    estop.add_argument("reason", nargs="?", default="benchctl estop")
    reset = commands.add_parser("reset", help="reset the emergency stop (operator)")
    reset.add_argument("reason", nargs="?", default="benchctl reset")
    commands.add_parser("health", help="the machine and every actor")
    commands.add_parser("info", help="the daemon: version, bench, features, your role")
    add_watch_command(commands)
    _add_preset_commands(commands)
    _add_run_commands(commands)
    _add_script_commands(commands)
    add_scan_commands(commands)
    shells = commands.add_parser(
        "completion",
        help='print the shell hook for TAB completion: eval "$(benchctl completion bash)"',
    )
    shells.add_argument("shell", choices=completion.SHELLS)
    _spread_global_options(parser, set())
    return parser


def _add_control_commands(commands: Any) -> None:
    """``pause``, ``resume``, ``stop``: of what runs (a scan, a script), or a stage."""
    what = "a scan (p3) or script execution (x2) id; none: whatever runs now (one scan or script)"
    pause = commands.add_parser("pause", help="pause the running scan or script at its next point")
    completion.attach(
        pause.add_argument("target", nargs="?", metavar="ID", help=what), completion.running
    )
    resume = commands.add_parser("resume", help="resume a paused scan or script")
    completion.attach(
        resume.add_argument("target", nargs="?", metavar="ID", help=what), completion.running
    )
    stop = commands.add_parser(
        "stop",
        help="stop the running scan or script (at its next point; --force: now), or a stage",
        description="benchctl stop: what runs now; stop p3 / stop x2: that scan or script;"
        " stop esp300.axis1: abort that stage's move (never refused).",
    )
    completion.attach(
        stop.add_argument("target", nargs="?", metavar="ID|DEVICE", help=what + "; or a stage"),
        completion.running,
    )
    stop.add_argument("--force", action="store_true", help="abort now (the stage in motion stops)")
    stop.add_argument("--reason", default="stopped with benchctl", help="kept with the scan")


def _add_preset_commands(commands: Any) -> None:
    presets = commands.add_parser("presets", help="list, show, save, load or delete presets")
    actions = presets.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="the saved presets (the default)")
    show = actions.add_parser("show", help="a preset's values")
    show.add_argument("name")
    save = actions.add_parser("save", help="snapshot writable, non-hazardous parameters")
    save.add_argument("name")
    save.add_argument("--description", default="")
    save.add_argument("--device", action="append", default=[], dest="devices")
    save.add_argument("--overwrite", action="store_true")
    load = actions.add_parser("load", help="apply a preset (all or nothing)")
    load.add_argument("name")
    load.add_argument("--device", action="append", default=[], dest="devices")
    delete = actions.add_parser("delete", help="delete a preset")
    delete.add_argument("name")


def _add_script_commands(commands: Any) -> None:
    script = commands.add_parser("script", help="Starlark scripts and scans in the daemon")
    actions = script.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run",
        help="run a stored script by NAME (or a .star FILE) in the daemon, and wait",
        description="NAME: a script stored with 'script upload' ('script stored' lists them);"
        " a path to an existing file runs that file's source instead.",
    )
    completion.attach(run.add_argument("script", metavar="NAME|FILE"), completion.scripts)
    run.add_argument(
        "--param", action="append", default=[], metavar="KEY=JSON", help="params[KEY]; repeatable"
    )
    run.add_argument("--no-wait", action="store_true", help="print the execution id and return")
    upload = actions.add_parser("upload", help="store a script by name")
    upload.add_argument("name")
    upload.add_argument("file")
    actions.add_parser("stored", help="the scripts stored in the daemon")
    actions.add_parser("list", help="executions, newest last")
    for action, text in (
        ("status", "one execution"),
        ("output", "an execution's output log"),
        ("pause", "pause an execution at its next scan point"),
        ("resume", "resume a paused execution"),
    ):
        actions.add_parser(action, help=text).add_argument("id")
    stop = actions.add_parser("stop", help="stop an execution (graceful; --force aborts)")
    stop.add_argument("id")
    stop.add_argument("--force", action="store_true")


def _add_run_commands(commands: Any) -> None:
    record = commands.add_parser(
        "record",
        help="record a run and wait for it, with progress",
        description="Records what the bench produces: the camera's frames (--frames N, or for"
        " the run's --duration) and every reading source streaming while it lasts.",
    )
    record.add_argument("name", help="1-64 of A-Z a-z 0-9 . _ -")
    record.add_argument("--frames", type=count, default=0, help="camera frames, then end")
    record.add_argument("--duration", type=seconds, default=0.0, help="seconds (or 2min), then end")
    record.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    record.add_argument(
        "--compression", default="", help="bitshuffle-lz4 or none (default: the bench's)"
    )
    record.add_argument("--readings-only", action="store_true", help="no camera frames")
    record.add_argument("--no-wait", action="store_true", help="start it and return")
    runs = commands.add_parser("runs", help="the run files (list; show NAME|PATH: a summary)")
    actions = runs.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="every run file, oldest first (the default)")
    show = actions.add_parser("show", help="a run's outcome, counts and file")
    completion.attach(show.add_argument("run", metavar="NAME|PATH"), completion.runs)
    stop_run = commands.add_parser("stop-run", help="end the run now")
    stop_run.add_argument("reason", nargs="?", default="stopped with benchctl")


def _parameter_line(p: ParameterValue) -> str:
    line = f"{p.device}.{p.name} = {fmt(p.value, p.units)}"
    if p.desired is not None and p.desired != p.value:
        line += f" (asked for {fmt(p.desired, p.units)})"
    return line


def _devices_table(devices: list[DeviceInfo]) -> Table:
    table = Table("device", "state", "capabilities", "units", "identity", box=None)
    for d in devices:
        state = d.state
        if d.latched:
            state += f" (e-stop: {d.latched})"
        elif d.state != "ready" and d.last_failure is not None:
            state += f": {d.last_failure.message}"  # why: the port, the OS's reason
        table.add_row(d.name, state, ", ".join(d.capabilities), d.units, d.identity)
    return table


def _services_table(services: list[DeviceInfo]) -> Table:
    table = Table("service", "state", "restarts", "last failure", box=None)
    for s in services:
        failure = s.last_failure.message if s.last_failure else ""
        table.add_row(s.name, s.state, str(s.restarts), failure)
    return table


# -- values with units -------------------------------------------------------------------------


async def _set_value(bench: AsyncBench, key: str, text: str) -> bool | int | float | str:
    """What to send for ``set KEY TEXT``: a number with a unit converted to the parameter's
    unit (a text parameter takes the text as it is); anything else as ``parse_value`` reads it.
    A value the parameter's type cannot take (``abc`` for a wavelength, ``maybe`` for a
    shutter) is refused here in words, as a wrong unit is (exit 2)."""
    device, name = split_parameter(key)
    info = next((p for p in await bench.parameters(device) if p.name == name), None)
    if info is None:
        await bench.get(device, name)  # the daemon's NotFound, naming the parameters there are
        return parse_value(text)
    if info.dtype not in ("float", "int"):
        value = parse_value(text)
        if info.dtype == "bool" and not isinstance(value, bool):
            raise UnitError(f"{key}: {text[:64]!r} is not true or false")
        return text if info.dtype == "str" else value  # "4x4", "1 s", "10": the text itself
    if not is_quantity(text):
        value = parse_value(text)
        if isinstance(value, str | bool):
            kind = (
                f"a number in {info.units} (or with a unit: 12.5{info.units})"
                if info.units
                else "a number"
            )
            raise UnitError(f"{key}: {text[:64]!r} is not a number; give {kind}")
        return value
    value = to_unit(text, info.units, key, "parameter")
    return to_number(value, info.dtype, key, info.units, text)


async def _position(bench: AsyncBench, device: str, text: str) -> float:
    """The position (or distance) ``text`` means in the axis's unit."""
    try:
        return float(text)
    except ValueError:
        pass
    info = await bench.device(device)
    if "Movable" not in info.capabilities:
        raise Unimplemented(f"{device} is not Movable; it cannot go to {text!r}")
    return to_unit(text, info.units, device, "axis")


async def _move(bench: AsyncBench, args: argparse.Namespace, out: Output) -> MoveResult:
    """Move and wait; on a terminal, with a progress bar fed by the position stream (the move
    starts without waiting so the axis answers position requests, then WaitSettled)."""
    amount = await _position(bench, args.device, args.position)
    out.doing = f" while {args.device} moved"
    try:
        if not out.live:  # a pipe, a script: the same Ctrl-C, no bar
            if args.relative:
                return await bench.move_by(args.device, amount, timeout=args.timeout)
            return await bench.move_to(args.device, amount, timeout=args.timeout)
        start = (await bench.position(args.device)).position
        target = start + amount if args.relative else amount
        if args.relative:
            await bench.move_by(args.device, amount, wait=False)
        else:
            await bench.move_to(args.device, amount, wait=False)
        span = abs(target - start) or 1.0
        with Progress(
            TextColumn(f"{args.device} → {target:g}"),
            BarColumn(),
            TextColumn("{task.fields[where]}"),
            TimeElapsedColumn(),
            console=out.errors,
            transient=True,
        ) as progress:
            bar = progress.add_task("move", total=span, where=f"{start:g}")
            still, last = 0, start
            async for where in bench.stream_position(args.device, interval=0.05):
                done = span - abs(target - where.position)
                progress.update(bar, completed=max(done, 0.0), where=f"{where.position:g}")
                still = still + 1 if where.position == last else 0
                last = where.position
                if abs(target - where.position) < 1e-6 * max(1.0, abs(target)) or still >= 10:
                    break  # there, or stopped short (an e-stop, a limit): WaitSettled says
        settled = await bench.wait_settled(args.device, timeout=args.timeout)
        return MoveResult(settled.device, settled.position, True, settled.units)
    except (KeyboardInterrupt, asyncio.CancelledError):
        await _stop_stage(bench, args.device, out)  # a cancelled wait alone leaves it moving
        raise


async def _stop_stage(bench: AsyncBench, device: str, out: Output) -> None:
    """Ctrl-C during a move or a home search: stop the stage and say where it rests."""
    try:
        where = await bench.stop(device)
    except BenchError as error:
        out.interrupted = f"could not stop {device}: {human_message(error, '')}"
    else:
        out.interrupted = f"{device} stopped at {fmt(where.position, where.units)}"


async def _operation(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    """``home``, ``motor-on``, ``zero``."""
    match args.command:
        case "home":
            homed = await _home(bench, args, out)
            out.emit(homed, f"{homed.device} homed at {fmt(homed.position, homed.units)}")
        case "motor-on":
            state = await bench.motor_on(args.device)
            out.emit(state, f"{state.device}: motor {'on' if state.motor_on else 'OFF'}")
        case "zero":
            zeroed = await bench.zero(args.device, enable=not args.off)
            out.emit(zeroed, f"{zeroed.device}: zero {'on' if zeroed.zero else 'off'}")


async def _home(bench: AsyncBench, args: argparse.Namespace, out: Output) -> Position:
    """Home and wait; on a terminal, a spinner with the position and the time it takes (the
    daemon streams the search's progress). Ctrl-C stops the axis."""
    out.doing = f" while {args.device} homed"
    try:
        if not out.live:
            return await bench.home(args.device, timeout=args.timeout)
        with Progress(
            SpinnerColumn(),
            TextColumn(f"{args.device} homing"),
            TextColumn("{task.fields[where]}"),
            TimeElapsedColumn(),
            console=out.errors,
            transient=True,
        ) as progress:
            task = progress.add_task("home", total=None, where="")

            def show(step: HomeProgress) -> None:
                if step.position == step.position:  # not NaN: a position is known
                    progress.update(task, where=fmt(step.position, step.units))

            return await bench.home(args.device, timeout=args.timeout, progress=show)
    except (KeyboardInterrupt, asyncio.CancelledError):
        await _stop_stage(bench, args.device, out)
        raise


# -- pause, resume, stop -----------------------------------------------------------------------

ACTIVE_SCAN = ("pending", "running", "paused", "suspended")
ACTIVE_EXECUTION = ("pending", "running", "paused")


async def _control(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    """``pause`` / ``resume`` / ``stop`` [TARGET]: a scan or execution by id, what runs now
    (none given), or (``stop`` only) a stage by name."""
    target: str | None = args.target
    if target is not None and not _looks_like_id(target):
        if args.command != "stop":
            raise FailedPrecondition(
                f"{target!r} is no scan or script execution; give an id (p3, x2) or nothing"
                " for what runs now ('benchctl scan scans', 'benchctl script list')"
            )
        where = await bench.stop(target)  # a stage: abort its move (never refused)
        out.emit(where, f"{where.device} stopped at {fmt(where.position, where.units)}")
        return
    kind, ident = await _resolve(bench, target, args.command)
    if kind == "device":
        where = await bench.stop(ident)
        out.emit(where, f"{where.device} stopped at {fmt(where.position, where.units)}")
        return
    if kind == "scan":
        match args.command:
            case "pause":
                status = await bench.pause_scan(ident)
            case "resume":
                status = await bench.resume_scan(ident)
            case _:
                status = await bench.stop_scan(ident, force=args.force, reason=args.reason)
        out.emit(status, scan_line(status))
        return
    match args.command:
        case "pause":
            execution = await bench.pause_execution(ident)
        case "resume":
            execution = await bench.resume_execution(ident)
        case _:
            execution = await bench.stop_execution(ident, force=args.force, reason=args.reason)
    out.emit(execution, _execution_line(execution))


def _looks_like_id(text: str) -> bool:
    return len(text) > 1 and text[0] in "px" and text[1:].isdigit()


async def _resolve(bench: AsyncBench, target: str | None, command: str) -> tuple[str, str]:
    """("scan" | "execution" | "device", id) for the target, or for what runs now."""
    scans = await bench.scans()
    executions = await bench.executions()
    if target is not None:
        if any(s.id == target for s in scans):
            return "scan", target
        if any(e.id == target for e in executions):
            return "execution", target
        if command == "stop":
            return "device", target  # a device named like an id
        raise FailedPrecondition(f"no scan or script execution {target!r}")
    wanted = ("paused",) if command == "resume" else None
    running = [
        ("execution", e.id, f"execution {e.id} ({e.script}, {e.state})")
        for e in executions
        if e.state in (wanted or ACTIVE_EXECUTION)
    ]
    running += [
        ("scan", s.id, f"scan {s.id} ({s.kind}, {s.state})")
        for s in scans
        if s.state in (wanted or ACTIVE_SCAN) and not s.execution_id  # a script's: its script
    ]
    if not running:
        state = "paused" if command == "resume" else "running"
        raise FailedPrecondition(f"nothing to {command}: no scan or script is {state}")
    if len(running) > 1:
        listed = "; ".join(label for *_, label in running)
        raise FailedPrecondition(
            f"{len(running)} things could {command}: {listed}; say which: benchctl {command}"
            f" {running[0][1]}"
        )
    kind, ident, _ = running[0]
    return kind, ident


# -- the rest ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace, token: str | None, out: Output) -> None:
    retry = RetryPolicy(budget=max(args.wait, 0.0))
    async with await AsyncBench.connect(
        args.address, token=token or "", tls=args.tls, retry=retry
    ) as bench:
        out.connected = True
        handler = HANDLERS.get(args.command)
        if handler is not None:
            await handler(bench, args, out)
            return
        match args.command:
            case "devices":
                devices = await bench.devices()
                out.emit(devices, _devices_table(devices))
            case "services":
                services = await bench.services()
                out.emit(services, _services_table(services))
            case "get":
                value = await bench.get(*split_parameter(args.parameter))
                out.emit(value, _parameter_line(value))
            case "set":
                device, name = split_parameter(args.parameter)
                wanted = await _set_value(bench, args.parameter, args.value)
                value = await bench.set(device, name, wanted)
                out.emit(value, _parameter_line(value))
            case "move":
                moved = await _move(bench, args, out)
                out.emit(moved, f"{moved.device} at {fmt(moved.position, moved.units)}")
            case "position":
                where = await bench.position(args.device)
                out.emit(where, f"{where.device} at {fmt(where.position, where.units)}")
            case "read":
                reading = await bench.read(args.device)
                flags = f" ({', '.join(reading.flags)})" if reading.flags else ""
                out.emit(reading, f"{reading.device}: {reading.value:g} {reading.units}{flags}")
            case "stop-run":
                status = await bench.stop_run(args.reason)
                out.emit(status, _run_line(status))


async def _info(bench: AsyncBench, out: Output) -> None:
    info = await bench.info()
    actors = await bench.actors()
    devices = [d.name for d in actors if not d.is_service]
    services = [d.name for d in actors if d.is_service]
    latch = info.estop
    out.emit(
        info,
        f"benchd {info.version} serving bench {info.bench!r} for {info.uptime_s:.0f} s;"
        f" you are an {info.role}\ndevices: {', '.join(devices)}\n"
        f"services: {', '.join(services)}\nfeatures: {', '.join(info.features)}"
        + (
            f"\n{latch.summary or 'e-stop latched'}; reset first" if latch and latch.latched else ""
        ),
    )


async def _estop(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    if args.command == "estop":
        result = await bench.emergency_stop(args.reason)
        slow = [a.actor for a in result.acknowledgements if not a.ok]
        text = "EMERGENCY STOP latched: " + (
            "every device stopped" if result.all_stopped else f"not confirmed by {slow}"
        )
        text += (
            f" (broadcast {result.dispatch_ms:.1f} ms after the daemon received it;"
            f" reply {result.round_trip_ms:.0f} ms after sending)"
        )
        out.emit(result, text)
    else:
        reset = await bench.reset_emergency_stop(args.reason)
        still = ", ".join(reset.still_latched)
        out.emit(reset, "emergency stop reset" if reset.cleared else f"still latched: {still}")


async def _params(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    infos = await bench.parameters(args.device)
    table = Table("parameter", "dtype", "units", "allowed", "flags", box=None)
    for p in infos:
        if p.limits:
            allowed = f"{p.limits[0]:g} to {p.limits[1]:g}"
        else:
            allowed = ", ".join(map(str, p.choices))
        flags = [f for f, on in (("read-only", p.read_only), ("hazardous", p.hazardous)) if on]
        table.add_row(p.name, p.dtype, p.units, allowed, ", ".join(flags))
    out.emit(infos, table)


async def _health(bench: AsyncBench, out: Output) -> None:
    health = await bench.health()
    s = health.system
    table = Table("actor", "state", "restarts", "mailbox", "heartbeat", box=None)
    for a in health.actors:
        state = a.state + (f" (e-stop: {a.latched})" if a.latched else "")
        beat = f"{a.heartbeat_ms:.1f} ms" if a.responsive else "unresponsive"
        table.add_row(a.name, state, str(a.restarts), str(a.mailbox_depth), beat)
    out.emit(health, table)
    if not out.as_json:
        out.console.print(
            f"cpu {s.cpu_percent:.0f} %, memory {s.memory_percent:.0f} %, disk"
            f" {s.disk_free_bytes / 1e9:.1f} GB free at {s.disk_path}; {s.actors_ready}"
            f" of {s.actors} actors ready; up {s.uptime_s:.0f} s"
        )
        if s.run_state:
            out.console.print(
                f"run {s.run_state}: writer lag {s.writer_lag} frames, {s.run_frames_dropped}"
                f" dropped, {s.run_frames_missing} missing; previews skipped"
                f" {s.preview_frames_skipped}"
            )


# -- runs --------------------------------------------------------------------------------------


def _run_line(status: RunStatus) -> str:
    outcome = status.outcome if status.outcome and status.finished else status.state
    line = (
        f"run {status.name!r} {outcome}: {status.frames_written} frames,"
        f" {status.readings_recorded} readings -> {status.path}"
    )
    lost = {
        "dropped": status.frames_dropped,
        "missing": status.frames_missing,
        "readings lost": status.readings_lost,
    }
    if any(lost.values()):
        line += " (" + ", ".join(f"{v} {k}" for k, v in lost.items() if v) + ")"
    return line + (f"; error: {status.error}" if status.error else "")


async def _runs(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    runs = await bench.runs()
    if args.action in (None, "list"):
        table = Table("run", "outcome", "frames", "readings", "size", "path", box=None)
        for r in runs:
            size = f"{r.size_bytes / 1e6:.1f} MB"
            table.add_row(
                r.name, r.status, str(r.frames_written), str(r.readings_recorded), size, r.path
            )
        out.emit(runs, table)
        return
    found = _find_run(runs, args.run)
    current = await bench.run_status()
    status = current if current.path == found.path else None
    # the scan that made the run, if one did (a plain record is a count plan of its own: no
    # "scan 1 points" for it)
    scan = next((s for s in await bench.scans() if s.run_path == found.path), None)
    if scan is not None and scan.origin == "record":
        scan = None
    text = _run_summary(found, status, scan)
    out.emit({"run": found, "status": status, "scan": scan}, text)


def _find_run(runs: list[RunFile], wanted: str) -> RunFile:
    """A run by its file's path or name, or the newest with that run name."""
    by_path = [r for r in runs if wanted in (r.path, r.name, Path(r.path).name)]
    if by_path:
        return by_path[-1]
    named = [r for r in runs if r.name.partition("_")[2] == wanted]
    if named:
        return named[-1]  # the newest of that name
    newest = ", ".join(r.name for r in runs[-5:]) or "none yet"
    raise NotFound(f"no run named {wanted!r}; newest runs: {newest}")


def _run_summary(run: RunFile, status: RunStatus | None, scan: ScanStatus | None = None) -> str:
    lines = [
        f"run {run.name}",
        f"  outcome   {run.status}" + (f" ({run.reason})" if run.reason else ""),
    ]
    if scan is not None:
        total = f" of {scan.points_total}" if scan.points_total else ""
        lines.append(
            f"  scan      {scan.id} ({scan.kind}, {scan.origin}): {scan.points_done}{total} points"
        )
    if status is not None:
        lines.append(
            f"  frames    {status.frames_written} written of {status.frames_expected or '-'}"
            f" expected; {status.frames_received} received, {status.frames_dropped} dropped,"
            f" {status.frames_missing} missing"
        )
        lines.append(
            f"  readings  {status.readings_recorded} recorded, {status.readings_lost} lost;"
            f" {status.parameter_changes} parameter changes"
        )
        if status.started:
            took = (status.ended or status.started) - status.started
            lines.append(f"  time      {took:.1f} s")
    else:
        lines.append(f"  frames    {run.frames_written} written")
        lines.append(f"  readings  {run.readings_recorded} recorded")
    if run.error:
        lines.append(f"  error     {run.error}")
    lines.append(f"  size      {run.size_bytes / 1e6:.1f} MB")
    lines.append(f"  path      {run.path}")
    return "\n".join(lines)


async def _record(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    if args.frames and args.readings_only:
        raise UnitError(
            "record: --frames and --readings-only contradict (--readings-only: no frames)"
        )
    metadata: dict[str, object] = {}
    for item in args.metadata:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"--metadata {item!r}: expected KEY=VALUE")
        metadata[key] = value
    options: dict[str, Any] = {
        "frames": args.frames,
        "duration": args.duration,
        "metadata": metadata,
        "compression": args.compression,
        "readings_only": args.readings_only,
        "wait": not args.no_wait,
    }
    out.doing = f" during run {args.name!r}"
    try:
        if not args.no_wait and out.live:
            with RunProgress(args.name, args.frames, args.duration) as bar:
                status = await bench.record(args.name, progress=bar.update, **options)
        else:
            status = await bench.record(args.name, **options)
    except (KeyboardInterrupt, asyncio.CancelledError):
        try:
            stopped = await bench.stop_run("interrupted (benchctl, Ctrl-C)")
        except BenchError as error:
            out.interrupted = f"could not stop run {args.name!r}: {human_message(error, '')}"
        else:
            out.interrupted = _run_line(stopped)
        raise
    out.emit(status, _run_line(status))
    if status.state == "failed":
        raise BenchError(f"run {status.name!r} failed: {status.error}")


# -- scripts, presets --------------------------------------------------------------------------


def _read_script(path: str) -> str:
    """A script file is a few kB read once: no need to leave the event loop for it."""
    return Path(path).read_text(encoding="utf-8")


def _script_file(name: str) -> str | None:
    """The source of the file ``name`` names, None if it names no file (a stored script)."""
    path = Path(name)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if "/" in name or name.endswith(".star"):  # a stored script's name has neither
        raise NotFound(f"no script file {name[:200]!r} (and no stored script can be named so)")
    return None


def _execution_line(e: Execution) -> str:
    where = f" at line {e.line}:{e.column}" if e.line else ""
    error = f": {e.error}{where}" if e.error else ""
    return f"execution {e.id} ({e.script}) {e.state}{error}"


def _params_of(items: list[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"--param {item!r}: expected KEY=JSON, e.g. points=21")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value  # a plain word is a string
    return params


async def _script(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    match args.action:
        case "run":
            params = _params_of(args.param)
            source = _script_file(args.script)
            if source is not None:
                execution = await bench.start_script(source=source, params=params)
            else:
                execution = await bench.start_script(args.script, params=params)
            if not args.no_wait:
                execution = await bench.wait_execution(execution.id)
                if not out.as_json:
                    for line in await bench.output(execution.id):
                        out.console.print(line, markup=False)
            out.emit(execution, _execution_line(execution))
            if execution.state == "error":
                raise BenchError(_execution_line(execution))
        case "upload":
            info = await bench.upload_script(args.name, _read_script(args.file))
            out.emit(info, f"script {info.name!r} stored ({info.size} bytes)")
        case "stored":
            stored = await bench.scripts()
            table = Table("script", "size", box=None)
            for s in stored:
                table.add_row(s.name, f"{s.size} bytes")
            out.emit(stored, table)
        case "list":
            executions = await bench.executions()
            table = Table("id", "script", "state", "progress", "error", box=None)
            for e in executions:
                table.add_row(e.id, e.script, e.state, f"{e.progress:.0%}", e.error)
            out.emit(executions, table)
        case "status":
            execution = await bench.execution(args.id)
            out.emit(execution, _execution_line(execution))
        case "output":
            lines = await bench.output(args.id)
            out.emit(lines, "\n".join(lines))
        case "pause":
            out.emit(execution := await bench.pause_execution(args.id), _execution_line(execution))
        case "resume":
            out.emit(execution := await bench.resume_execution(args.id), _execution_line(execution))
        case "stop":
            execution = await bench.stop_execution(args.id, force=args.force)
            out.emit(execution, _execution_line(execution))


async def _presets(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    match args.action:
        case None | "list":
            presets = await bench.presets()
            table = Table("preset", "parameters", "devices", "description", box=None)
            for p in presets:
                table.add_row(p.name, str(p.parameters), ", ".join(p.devices), p.description)
            out.emit(presets, table)
        case "show":
            preset = await bench.preset(args.name)
            lines = [f"{e.device}.{e.name} = {fmt(e.value)}" for e in preset.entries]
            out.emit(preset, "\n".join([f"{preset.info.name}: {preset.info.description}", *lines]))
        case "save":
            info = await bench.save_preset(
                args.name,
                description=args.description,
                devices=args.devices,
                overwrite=args.overwrite,
            )
            out.emit(info, f"saved {info.name!r}: {info.parameters} parameters")
        case "load":
            applied = await bench.load_preset(args.name, devices=args.devices)
            out.emit(applied, f"loaded {args.name!r}: {len(applied)} parameters applied")
        case "delete":
            await bench.delete_preset(args.name)
            out.emit({"deleted": args.name}, f"deleted {args.name!r}")


Handler = Callable[[AsyncBench, argparse.Namespace, Output], Awaitable[None]]


async def _health_command(bench: AsyncBench, _: argparse.Namespace, out: Output) -> None:
    await _health(bench, out)


async def _info_command(bench: AsyncBench, _: argparse.Namespace, out: Output) -> None:
    await _info(bench, out)


#: commands with a handler of their own
HANDLERS: dict[str, Handler] = {
    "params": _params,
    "pause": _control,
    "resume": _control,
    "stop": _control,
    "home": _operation,
    "motor-on": _operation,
    "zero": _operation,
    "estop": _estop,
    "reset": _estop,
    "health": _health_command,
    "info": _info_command,
    "watch": watch,
    "presets": _presets,
    "record": _record,
    "runs": _runs,
    "script": _script,
    "scan": run_scan_command,
}


# -- main --------------------------------------------------------------------------------------


def read_token(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token)
    if args.token_file is not None:
        return args.token_file.read_text().strip() or None
    return os.environ.get("BENCHD_TOKEN") or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    completion.autocomplete(parser)  # a TAB: answers and exits
    given = sys.argv[1:] if argv is None else list(argv)
    JSON_ERRORS.set("--json" in given)
    if not given:  # "benchctl" alone: what it can do, not "COMMAND is required"
        parser.print_help(sys.stderr)
        return USAGE_ERROR
    args = parser.parse_args(argv)
    if args.command == "completion":
        print(completion.shellcode(args.shell))
        return 0
    args.address = args.address or default_address()
    out = Output(args.json)
    try:
        token = read_token(args)
        # a plain selector loop whatever event-loop policy is installed (see client._sync)
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            runner.run(run(args, token, out))
    except BrokenPipeError:
        return _output_closed()
    except BenchError as error:
        status = error.status.name if error.status else ""
        if out.as_json:
            _report(out, type(error).__name__, status, error.message)
        elif isinstance(error, ConnectionLost) and out.connected:
            _report(
                out, "ConnectionLost", status, lost_daemon(error.message, args.address, out.doing)
            )
        else:
            _report(out, type(error).__name__, status, human_message(error, args.address))
        return error.exit_code
    except UnitError as error:  # a value of the wrong kind: usage
        _report(out, "UsageError", "", str(error))
        return USAGE_ERROR
    except (KeyError, ValueError, OSError) as error:  # a bad DEVICE.PARAM, address, token file
        message = error.args[0] if isinstance(error, KeyError) else str(error)
        if isinstance(error, OSError) and error.strerror:  # not "[Errno 2] ..." but the file
            message = f"{error.filename or args.tls}: {error.strerror.lower()}"
            if error.filename is None and args.tls:
                message = f"--tls {message} (the daemon's certificate or its CA)"
            elif args.token_file is not None and error.filename == str(args.token_file):
                message = f"--token-file {message}"
        _report(out, "UsageError", "", str(message))
        return USAGE_ERROR
    except KeyboardInterrupt:
        if args.command == "watch":
            return 0  # Ctrl-C is how a watch ends
        _report(
            out, "Interrupted", "", "interrupted" + (f": {out.interrupted}" * bool(out.interrupted))
        )
        return INTERRUPTED
    return 0


def _output_closed() -> int:
    """Whoever read our output stopped reading (``benchctl runs | head -1``): end quietly, as a
    Unix tool killed by SIGPIPE would (exit 141), with no traceback when Python flushes stdout
    at exit."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return BROKEN_PIPE


def _report(out: Output, kind: str, status: str, message: str) -> None:
    try:
        if out.as_json:
            record = {"error": kind, "status": status, "message": message}
            print(json.dumps(record), file=sys.stderr)
        else:
            out.errors.print(f"benchctl: {message}", markup=False)
    except BrokenPipeError:
        pass  # stderr closed as well: nobody to tell
