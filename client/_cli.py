"""``benchctl``: the common bench actions from a shell.

    benchctl [--address HOST:PORT] [--token-file F] [--json] COMMAND ...

Defaults come from ``BENCHD_ADDRESS`` (else 127.0.0.1:50051) and ``BENCHD_TOKEN``. Output is a
table or a line for people, or JSON with ``--json``. Each command is one asyncio run of an
:class:`AsyncBench` (no thread).

Error handling: an error prints the daemon's message on stderr (as JSON with ``--json``) and
exits with the error's code: 1 other, 2 usage, 3 invalid argument, 4 not found, 5 refused (the
e-stop is latched), 6 already exists, 7 unauthenticated / permission denied, 8 unavailable or
the daemon unreachable, 9 deadline exceeded, 10 aborted, 11 unimplemented, 12 internal error,
13 disk space low (a run refused), 130 interrupted (Ctrl-C; a move in flight or a run being
waited for is stopped first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import plans
from ._async import DEFAULT_PORT, AsyncBench, RetryPolicy
from ._errors import BenchError
from ._sync import RunProgress, split_parameter
from ._types import (
    DeviceInfo,
    Execution,
    HomeProgress,
    MoveResult,
    ParameterValue,
    PlainValue,
    Position,
    RunStatus,
    ScanStatus,
)

USAGE_ERROR = 2
INTERRUPTED = 130


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchctl",
        description="Drive a benchd daemon: devices, parameters, motion, e-stop, presets, runs.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 invalid argument, 4 not found, 5 refused"
        " (e-stop latched), 6 already exists, 7 unauthenticated or not allowed, 8 unavailable"
        " or unreachable, 9 deadline exceeded, 10 aborted, 11 unimplemented, 12 internal,"
        " 13 disk space low, 130 interrupted.",
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("BENCHD_ADDRESS", f"127.0.0.1:{DEFAULT_PORT}"),
        help="the daemon, host:port (default: $BENCHD_ADDRESS, else 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="a file holding the bearer token (default: $BENCHD_TOKEN, else no token)",
    )
    parser.add_argument("--tls", metavar="CERT", help="use TLS, trusting this certificate or CA")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--wait",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="keep trying to reach the daemon this long (default 5)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("devices", help="list the devices, their state and capabilities")
    get = commands.add_parser("get", help="read a parameter: get maitai.wavelength")
    get.add_argument("parameter", metavar="DEVICE.PARAM")
    put = commands.add_parser("set", help="set a parameter: set maitai.wavelength 800")
    put.add_argument("parameter", metavar="DEVICE.PARAM")
    put.add_argument("value", metavar="VALUE", help="true/false, a number or text")
    params = commands.add_parser("params", help="list a device's parameters")
    params.add_argument("device", metavar="DEVICE")
    move = commands.add_parser("move", help="move a stage and wait: move esp300.axis1 12.5")
    move.add_argument("device", metavar="DEVICE")
    move.add_argument("position", type=float, metavar="POSITION", help="in the device's units")
    move.add_argument("--relative", action="store_true", help="POSITION is a distance")
    move.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    where = commands.add_parser("position", help="where a stage is")
    where.add_argument("device", metavar="DEVICE")
    stop = commands.add_parser("stop", help="abort a stage's move")
    stop.add_argument("device", metavar="DEVICE")
    read = commands.add_parser("read", help="one reading: read power_meter")
    read.add_argument("device", metavar="DEVICE")
    home = commands.add_parser("home", help="run a stage's home search, with progress")
    home.add_argument("device", metavar="DEVICE")
    home.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    motor_on = commands.add_parser("motor-on", help="switch a motor on after a fault")
    motor_on.add_argument("device", metavar="DEVICE")
    zero = commands.add_parser("zero", help="power meter: store the dark offset (cover it)")
    zero.add_argument("device", metavar="DEVICE")
    zero.add_argument("--off", action="store_true", help="stop subtracting the offset")
    estop = commands.add_parser("estop", help="EMERGENCY STOP every device and latch")
    estop.add_argument("reason", nargs="?", default="benchctl estop")
    reset = commands.add_parser("reset", help="reset the emergency stop (operator)")
    reset.add_argument("reason", nargs="?", default="benchctl reset")
    commands.add_parser("health", help="the machine and every actor")
    commands.add_parser("info", help="the daemon: version, bench, features, your role")
    _add_preset_commands(commands)
    _add_run_commands(commands)
    _add_script_commands(commands)
    _add_scan_commands(commands)
    return parser


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
    actions = script.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="start a script file in the daemon (and wait)")
    run.add_argument("file", help="a Starlark file (docs/scripting.md)")
    run.add_argument(
        "--param", action="append", default=[], metavar="KEY=JSON", help="params[KEY]; repeatable"
    )
    run.add_argument("--no-wait", action="store_true", help="print the execution id and return")
    upload = actions.add_parser("upload", help="store a script by name")
    upload.add_argument("name")
    upload.add_argument("file")
    actions.add_parser("list", help="executions, newest last")
    status = actions.add_parser("status", help="one execution")
    status.add_argument("id")
    output = actions.add_parser("output", help="an execution's output log")
    output.add_argument("id")
    stop = actions.add_parser("stop", help="stop an execution (graceful; --force aborts)")
    stop.add_argument("id")
    stop.add_argument("--force", action="store_true")


def _add_run_commands(commands: Any) -> None:
    record = commands.add_parser("record", help="record a run and wait for it, with progress")
    record.add_argument("name", help="1-64 of A-Z a-z 0-9 . _ -")
    record.add_argument("--frames", type=int, default=0, help="camera frames, then end")
    record.add_argument("--duration", type=float, default=0.0, help="seconds, then end")
    record.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    record.add_argument(
        "--compression", default="", help="bitshuffle-lz4 or none (default: the bench's)"
    )
    record.add_argument("--readings-only", action="store_true", help="no camera frames")
    record.add_argument("--no-wait", action="store_true", help="start it and return")
    commands.add_parser("runs", help="the run files on the daemon")
    stop_run = commands.add_parser("stop-run", help="end the run now")
    stop_run.add_argument("reason", nargs="?", default="stopped with benchctl")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(highlight=False, soft_wrap=True)
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True)

    def emit(self, value: Any, text: Any) -> None:
        """``value`` as JSON with --json, else ``text`` (a string or a rich renderable)."""
        if self.as_json:
            print(json.dumps(_plain(value), indent=2, sort_keys=True))
        else:
            self.console.print(text)


def _format(value: PlainValue, units: str = "") -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} {units}".rstrip()


def _parameter_line(p: ParameterValue) -> str:
    line = f"{p.device}.{p.name} = {_format(p.value, p.units)}"
    if p.desired is not None and p.desired != p.value:
        line += f" (asked for {_format(p.desired, p.units)})"
    return line


def _devices_table(devices: list[DeviceInfo]) -> Table:
    table = Table("device", "state", "capabilities", "units", "identity", box=None)
    for d in devices:
        state = d.state + (f" (e-stop: {d.latched})" if d.latched else "")
        table.add_row(d.name, state, ", ".join(d.capabilities), d.units, d.identity)
    return table


async def _move(bench: AsyncBench, args: argparse.Namespace, out: Output) -> MoveResult:
    """Move and wait; on a terminal, with a progress bar fed by the position stream (the move
    starts without waiting so the axis answers position requests, then WaitSettled)."""
    show = not out.as_json and out.errors.is_terminal
    if not show:
        if args.relative:
            return await bench.move_by(args.device, args.position, timeout=args.timeout)
        return await bench.move_to(args.device, args.position, timeout=args.timeout)
    start = (await bench.position(args.device)).position
    target = start + args.position if args.relative else args.position
    try:
        if args.relative:
            await bench.move_by(args.device, args.position, wait=False)
        else:
            await bench.move_to(args.device, args.position, wait=False)
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
        with contextlib.suppress(BenchError):
            await bench.stop(args.device)
        raise


async def _operation(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    """``home``, ``motor-on``, ``zero`` (``stop`` is the old StopMotion)."""
    match args.command:
        case "home":
            homed = await _home(bench, args, out)
            out.emit(homed, f"{homed.device} homed at {_format(homed.position, homed.units)}")
        case "motor-on":
            state = await bench.motor_on(args.device)
            out.emit(state, f"{state.device}: motor {'on' if state.motor_on else 'OFF'}")
        case "zero":
            zeroed = await bench.zero(args.device, enable=not args.off)
            out.emit(zeroed, f"{zeroed.device}: zero {'on' if zeroed.zero else 'off'}")


async def _home(bench: AsyncBench, args: argparse.Namespace, out: Output) -> Position:
    """Home and wait; on a terminal, a spinner with the position and the time it takes (the
    daemon streams the search's progress). Ctrl-C stops the axis."""
    try:
        if out.as_json or not out.errors.is_terminal:
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
                    progress.update(task, where=_format(step.position, step.units))

            return await bench.home(args.device, timeout=args.timeout, progress=show)
    except (KeyboardInterrupt, asyncio.CancelledError):
        with contextlib.suppress(BenchError):
            await bench.stop(args.device)
        raise


async def run(args: argparse.Namespace, token: str | None, out: Output) -> None:
    retry = RetryPolicy(budget=max(args.wait, 0.0))
    async with await AsyncBench.connect(
        args.address, token=token, tls=args.tls, retry=retry
    ) as bench:
        match args.command:
            case "devices":
                devices = await bench.devices()
                out.emit(devices, _devices_table(devices))
            case "get":
                value = await bench.get(*split_parameter(args.parameter))
                out.emit(value, _parameter_line(value))
            case "set":
                device, name = split_parameter(args.parameter)
                value = await bench.set(device, name, parse_value(args.value))
                out.emit(value, _parameter_line(value))
            case "params":
                await _params(bench, args, out)
            case "move":
                moved = await _move(bench, args, out)
                out.emit(moved, f"{moved.device} at {_format(moved.position, moved.units)}")
            case "position":
                where = await bench.position(args.device)
                out.emit(where, f"{where.device} at {_format(where.position, where.units)}")
            case "stop":
                where = await bench.stop(args.device)
                out.emit(where, f"{where.device} stopped at {_format(where.position, where.units)}")
            case "read":
                reading = await bench.read(args.device)
                flags = f" ({', '.join(reading.flags)})" if reading.flags else ""
                out.emit(reading, f"{reading.device}: {reading.value:g} {reading.units}{flags}")
            case "home" | "motor-on" | "zero":
                await _operation(bench, args, out)
            case "estop" | "reset":
                await _estop(bench, args, out)
            case "health":
                await _health(bench, out)
            case "info":
                info = await bench.info()
                out.emit(
                    info,
                    f"benchd {info.version} serving bench {info.bench!r} for"
                    f" {info.uptime_s:.0f} s; you are an {info.role}\n"
                    f"devices: {', '.join(info.devices)}\nfeatures: {', '.join(info.features)}",
                )
            case "presets":
                await _presets(bench, args, out)
            case "record":
                await _record(bench, args, out)
            case "runs":
                await _runs(bench, out)
            case "stop-run":
                status = await bench.stop_run(args.reason)
                out.emit(status, _run_line(status))
            case "script":
                await _script(bench, args, out)
            case "scan":
                await _scan(bench, args, out)


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


def _run_line(status: RunStatus) -> str:
    line = (
        f"run {status.name!r} {status.state}: {status.frames_written} frames,"
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


async def _runs(bench: AsyncBench, out: Output) -> None:
    runs = await bench.runs()
    table = Table("run", "status", "frames", "size", "path", box=None)
    for r in runs:
        size = f"{r.size_bytes / 1e6:.1f} MB"
        table.add_row(r.name, r.status, str(r.frames_written), size, r.path)
    out.emit(runs, table)


async def _record(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
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
    show = not args.no_wait and not out.as_json and out.errors.is_terminal
    try:
        if show:
            with RunProgress(args.name, args.frames, args.duration) as bar:
                status = await bench.record(args.name, progress=bar.update, **options)
        else:
            status = await bench.record(args.name, **options)
    except (KeyboardInterrupt, asyncio.CancelledError):
        with contextlib.suppress(BenchError):
            await bench.stop_run("interrupted (benchctl, Ctrl-C)")
        raise
    out.emit(status, _run_line(status))
    if status.state == "failed":
        raise BenchError(f"run {status.name!r} failed: {status.error}")


def _read_script(path: str) -> str:
    """A script file is a few kB read once: no need to leave the event loop for it."""
    return Path(path).read_text(encoding="utf-8")


def _execution_line(e: Execution) -> str:
    where = f" at line {e.line}:{e.column}" if e.line else ""
    error = f": {e.error}{where}" if e.error else ""
    return f"execution {e.id} ({e.script}) {e.state}{error}"


async def _script(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    match args.action:
        case "run":
            params: dict[str, object] = {}
            for item in args.param:
                key, equals, value = item.partition("=")
                if not equals or not key:
                    raise ValueError(f"--param {item!r}: expected KEY=JSON, e.g. points=21")
                try:
                    params[key] = json.loads(value)
                except json.JSONDecodeError:
                    params[key] = value  # a plain word is a string
            source = _read_script(args.file)
            execution = await bench.start_script(source=source, params=params)
            if not args.no_wait:
                execution = await bench.wait_execution(execution.id)
                if not out.as_json:
                    for line in await bench.output(execution.id):
                        out.console.print(line)
            out.emit(execution, _execution_line(execution))
            if execution.state == "error":
                raise BenchError(_execution_line(execution))
        case "upload":
            info = await bench.upload_script(args.name, _read_script(args.file))
            out.emit(info, f"script {info.name!r} stored ({info.size} bytes)")
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
            lines = [f"{e.device}.{e.name} = {_format(e.value)}" for e in preset.entries]
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


# -- benchctl scan ----------------------------------------------------------------------------

SUSPEND_FORMS = (
    ("<=", "below"),
    (">=", "above"),
    ("!=", "not_equals"),
    ("==", "equals"),
    ("<", "below"),
    (">", "above"),
)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _add_scan_options(parser: argparse.ArgumentParser) -> None:
    """What happens at each point: the same options for every plan kind."""
    parser.add_argument(
        "--read",
        action="append",
        default=[],
        metavar="DEVICE",
        help="a Readable read at each point; repeatable",
    )
    parser.add_argument("--frames", type=int, default=0, help="camera frames per point")
    parser.add_argument("--camera", default="", help="the camera (default: the bench's first)")
    parser.add_argument("--settle", type=float, default=0.0, help="seconds before reading")
    parser.add_argument("--dwell", type=float, default=0.0, help="seconds after each point")
    parser.add_argument("--name", default="", help="the run's name (default: the kind)")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="settings",
        metavar="DEVICE.PARAM=VALUE",
        help="set before the first point",
    )
    parser.add_argument(
        "--suspend",
        action="append",
        default=[],
        metavar="CONDITION",
        help="hold the scan while it holds: 'power_meter<5e-7', 'maitai.shutter==false',"
        " 'esp300.axis1 degraded'; repeatable",
    )
    parser.add_argument(
        "--suspend-settle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long after a suspender recovers",
    )
    parser.add_argument(
        "--no-bench-suspenders",
        action="store_true",
        help="without the bench file's default suspenders",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check the plan (every problem, the estimate); move nothing",
    )
    parser.add_argument("--no-wait", action="store_true", help="print the scan id and return")


def _add_scan_commands(commands: Any) -> None:
    scan = commands.add_parser(
        "scan",
        help="run a plan (count, line, list, grid, adaptive, tune) or act on a scan",
        description="Plans run in the daemon, each as one run file; Ctrl-C stops the scan.",
    )
    kinds = scan.add_subparsers(dest="kind", required=True, metavar="KIND")
    count = kinds.add_parser("count", help="points in time where everything is")
    count.add_argument("num", type=int, nargs="?", default=1, help="points (0: --duration)")
    count.add_argument("--interval", type=float, default=0.0, help="s between point starts")
    count.add_argument("--duration", type=float, default=0.0, help="s, then end")
    line = kinds.add_parser("line", help="AXIS START STOP POINTS (more axes: --axis)")
    line.add_argument("axis")
    line.add_argument("start", type=_number)
    line.add_argument("stop", type=_number)
    line.add_argument("points", type=int)
    line.add_argument(
        "--axis",
        action="append",
        nargs=3,
        default=[],
        dest="more",
        metavar=("AXIS", "START", "STOP"),
        help="another axis in step",
    )
    line.add_argument("--relative", action="store_true", help="offsets; return afterwards")
    listed = kinds.add_parser("list", help="AXIS=P1,P2,... (several axes in step)")
    listed.add_argument("positions", nargs="+", metavar="AXIS=P1,P2,...")
    listed.add_argument("--relative", action="store_true")
    grid = kinds.add_parser("grid", help="--axis AXIS START STOP POINTS, slowest first")
    grid.add_argument(
        "--axis",
        action="append",
        nargs=4,
        required=True,
        dest="axes",
        metavar=("AXIS", "START", "STOP", "POINTS"),
    )
    grid.add_argument(
        "--snake",
        action="append",
        default=[],
        metavar="AXIS",
        help="this axis runs backwards on every other pass",
    )
    grid.add_argument("--relative", action="store_true")
    adaptive = kinds.add_parser("adaptive", help="AXIS START STOP, steps follow --detector")
    adaptive.add_argument("axis")
    adaptive.add_argument("start", type=_number)
    adaptive.add_argument("stop", type=_number)
    adaptive.add_argument("--detector", required=True)
    adaptive.add_argument("--target-delta", type=float, required=True)
    adaptive.add_argument("--min-step", type=float, required=True)
    adaptive.add_argument("--max-step", type=float, required=True)
    adaptive.add_argument("--max-points", type=int, default=0)
    adaptive.add_argument("--relative", action="store_true")
    tune = kinds.add_parser("tune", help="AXIS START STOP POINTS, then go to --detector's peak")
    tune.add_argument("axis")
    tune.add_argument("start", type=_number)
    tune.add_argument("stop", type=_number)
    tune.add_argument("points", type=int)
    tune.add_argument("--detector", required=True)
    tune.add_argument("--method", default="centroid", choices=["centroid", "gaussian", "maximum"])
    tune.add_argument("--stay", action="store_true", help="report the peak, do not move there")
    tune.add_argument("--relative", action="store_true")
    for parser in (count, line, listed, grid, adaptive, tune):
        _add_scan_options(parser)
    for action in ("status", "pause", "resume", "table"):
        kinds.add_parser(action, help=f"{action} of a scan").add_argument("id")
    stop = kinds.add_parser("stop", help="stop a scan at its next point (--force: abort now)")
    stop.add_argument("id")
    stop.add_argument("--force", action="store_true")
    kinds.add_parser("scans", help="every scan the daemon keeps, from clients and scripts")


def _suspender(text: str, settle: float) -> Any:
    if text.endswith(" degraded"):
        return plans.suspender(text.removesuffix(" degraded").strip(), degraded=True, settle=settle)
    for operator, condition in SUSPEND_FORMS:
        signal, found, value = text.partition(operator)
        if found and signal.strip() and value.strip():
            parsed: Any = parse_value(value.strip())
            return plans.suspender(signal.strip(), settle=settle, **{condition: parsed})
    raise ValueError(
        f"--suspend {text!r}: expected SIGNAL<VALUE, SIGNAL>VALUE, SIGNAL==VALUE,"
        " SIGNAL!=VALUE or 'DEVICE degraded'"
    )


def _pairs(items: list[str], what: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"{what} {item!r}: expected KEY=VALUE")
        found[key] = parse_value(value)
    return found


def scan_plan(args: argparse.Namespace) -> Any:
    """The plan a ``benchctl scan KIND ...`` line asks for."""
    options: dict[str, Any] = {
        "read": args.read,
        "frames": args.frames,
        "camera": args.camera,
        "settle": args.settle,
        "dwell": args.dwell,
        "name": args.name,
        "metadata": _pairs(args.metadata, "--metadata"),
        "parameters": _pairs(args.settings, "--set"),
        "suspenders": [_suspender(s, args.suspend_settle) for s in args.suspend],
        "bench_suspenders": not args.no_bench_suspenders,
    }
    match args.kind:
        case "count":
            return plans.count(args.num, interval=args.interval, duration=args.duration, **options)
        case "line":
            spans = [(args.axis, args.start, args.stop)]
            spans += [(a, _number(b), _number(c)) for a, b, c in args.more]
            return plans.line(spans, points=args.points, relative=args.relative, **options)
        case "list":
            positions: dict[str, list[float]] = {}
            for item in args.positions:
                axis, equals, values = item.partition("=")
                if not equals or not axis:
                    raise ValueError(f"{item!r}: expected AXIS=P1,P2,...")
                positions[axis] = [_number(v) for v in values.split(",") if v.strip()]
            return plans.list_scan(positions, relative=args.relative, **options)
        case "grid":
            axes = []
            for axis, start, stop, points in args.axes:
                if not points.isdigit():
                    raise ValueError(
                        f"--axis {axis}: POINTS must be a whole number, got {points!r}"
                    )
                axes.append((axis, _number(start), _number(stop), int(points), axis in args.snake))
            unknown = set(args.snake) - {a[0] for a in axes}
            if unknown:
                raise ValueError(f"--snake {sorted(unknown)[0]}: not an --axis of this grid")
            return plans.grid(*axes, relative=args.relative, **options)
        case "adaptive":
            return plans.adaptive(
                args.axis,
                args.start,
                args.stop,
                detector=args.detector,
                target_delta=args.target_delta,
                min_step=args.min_step,
                max_step=args.max_step,
                max_points=args.max_points,
                relative=args.relative,
                **options,
            )
    return plans.tune(
        args.axis,
        args.start,
        args.stop,
        args.points,
        detector=args.detector,
        method=args.method,
        relative=args.relative,
        move=not args.stay,
        **options,
    )


def _scan_line(status: ScanStatus) -> str:
    line = f"scan {status.id} ({status.kind}) {status.state}: {status.points_done}"
    if status.points_total:
        line += f" of {status.points_total}"
    line += " points"
    if status.run_path:
        line += f" -> {status.run_path}"
    if status.suspensions:
        held = sum(s.seconds for s in status.suspensions)
        line += f"; suspended {len(status.suspensions)}x ({held:.1f} s)"
    result = status.result
    if result.get("found"):
        line += f"; peak at {result['centre']:g} (fwhm {result.get('fwhm', float('nan')):.3g})"
        if "moved_to" in result:
            line += ", moved there"
    if status.error:
        line += f"; {status.error}"
    return line


class ScanProgress:
    """A progress bar on stderr fed by the scan's status (points, suspended, paused)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.fields[total_text]}"),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: Any = None

    def __enter__(self) -> ScanProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.__exit__(*exc_info)  # type: ignore[arg-type]

    def update(self, status: ScanStatus) -> None:
        total = status.points_total or None
        state = status.state + (f" ({status.suspended_by})" if status.suspended_by else "")
        fields: dict[str, Any] = {"state": state, "total_text": status.points_total or "?"}
        if self._task is None:
            self._task = self._progress.add_task(
                f"scan {status.id} {status.kind}", total=total, **fields
            )
        self._progress.update(self._task, completed=status.points_done, total=total, **fields)


async def _scan(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    match args.kind:
        case "status" | "pause" | "resume":
            call = {"status": bench.scan, "pause": bench.pause_scan, "resume": bench.resume_scan}
            status = await call[args.kind](args.id)
            out.emit(status, _scan_line(status))
            return
        case "stop":
            status = await bench.stop_scan(args.id, force=args.force)
            out.emit(status, _scan_line(status))
            return
        case "scans":
            listed = await bench.scans()
            table = Table("id", "kind", "state", "points", "origin", "run", box=None)
            for s in listed:
                done = f"{s.points_done}/{s.points_total or '?'}"
                table.add_row(s.id, s.kind, s.state, done, s.origin, s.run_path)
            out.emit(listed, table)
            return
        case "table":
            data = await bench.scan_table(args.id)
            if out.as_json:
                print(json.dumps(data.to_pylist(), indent=2, default=str))
            else:
                table = Table(*data.column_names, box=None)
                for row in data.to_pylist():
                    table.add_row(
                        *(f"{v:g}" if isinstance(v, float) else str(v) for v in row.values())
                    )
                out.console.print(table)
            return
    plan = scan_plan(args)
    if args.check:
        check = await bench.validate_plan(plan)
        estimate = check.estimate
        text = "\n".join(str(p) for p in check.problems) or (
            f"ok: {estimate.points if estimate and estimate.points is not None else '?'}"
            f" points, about {estimate.seconds if estimate else 0:.1f} s,"
            f" {(estimate.bytes if estimate else 0) / 1e6:.1f} MB"
        )
        out.emit(check, text)
        if check.problems:
            raise BenchError(f"the plan has {len(check.problems)} problem(s)")
        return
    status = await bench.create_scan(plan, start=True)
    if args.no_wait:
        out.emit(status, _scan_line(status))
        return
    show = not out.as_json and out.errors.is_terminal
    try:
        if show:
            with ScanProgress(out.errors) as bar:
                bar.update(status)
                async for update in bench.stream_scan(status.id):
                    status = update
                    bar.update(status)
        else:
            async for update in bench.stream_scan(status.id):
                status = update
    except (KeyboardInterrupt, asyncio.CancelledError):
        with contextlib.suppress(BenchError):
            await bench.stop_scan(status.id, reason="interrupted (benchctl, Ctrl-C)")
        raise
    out.emit(status, _scan_line(status))
    if status.state in ("error", "aborted"):
        raise BenchError(_scan_line(status))


def read_token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        return args.token_file.read_text().strip() or None
    return os.environ.get("BENCHD_TOKEN") or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(args.json)
    try:
        token = read_token(args)
        # a plain selector loop whatever event-loop policy is installed (see client._sync)
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            runner.run(run(args, token, out))
    except BenchError as error:
        _report(out, type(error).__name__, error.status.name if error.status else "", error.message)
        return error.exit_code
    except (KeyError, ValueError, OSError) as error:  # a bad DEVICE.PARAM, address, token file
        message = error.args[0] if isinstance(error, KeyError) else str(error)
        _report(out, "UsageError", "", str(message))
        return USAGE_ERROR
    except KeyboardInterrupt:
        _report(out, "Interrupted", "", "interrupted")
        return INTERRUPTED
    return 0


def _report(out: Output, kind: str, status: str, message: str) -> None:
    if out.as_json:
        record = {"error": kind, "status": status, "message": message}
        print(json.dumps(record), file=sys.stderr)
    else:
        out.errors.print(f"benchctl: {message}", markup=False)
