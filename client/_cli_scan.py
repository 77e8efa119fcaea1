"""``benchctl scan``: plans (count, line, list, grid, adaptive, tune) run by the daemon, with a
live progress bar and a summary; and acting on scans by id.

Positions may carry units (``scan line esp300.axis1 0 5mm 11``): each is converted to its
axis's unit (a device's position unit, or a parameter's for a parameter axis such as
``maitai.wavelength``) before the plan is built, so the daemon's validator sees numbers in the
units it checks travel against. Times (``--settle 200ms``) are seconds or carry a time unit.

Error handling: a malformed position, suspender or KEY=VALUE is a ``ValueError`` (exit 2); a
value of the wrong kind a ``UnitError`` naming the axis and its unit (exit 2); the plan's
problems come from the daemon's validator, every one at once (exit 3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import plans
from ._async import AsyncBench
from ._cli_common import Output, count, parse_value, seconds
from ._errors import BenchError
from ._sync import split_parameter
from ._types import ScanStatus
from ._units import is_quantity, to_unit

#: (axis, text) -> the number in the axis's unit
Convert = Callable[[str, str], float]

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


def _plain_number(axis: str, text: str) -> float:
    """Without the daemon's units: plain numbers only."""
    if is_quantity(text):
        raise ValueError(f"{axis}: {text!r}: units need the axis's unit from the daemon")
    return _number(text)


def _add_scan_options(parser: argparse.ArgumentParser) -> None:
    """What happens at each point: the same options for every plan kind."""
    parser.add_argument(
        "--read",
        action="append",
        default=[],
        metavar="DEVICE",
        help="a Readable read at each point; repeatable",
    )
    parser.add_argument("--frames", type=count, default=0, help="camera frames per point")
    parser.add_argument("--camera", default="", help="the camera (default: the bench's first)")
    parser.add_argument("--settle", type=seconds, default=0.0, help="time before reading (s)")
    parser.add_argument("--dwell", type=seconds, default=0.0, help="time after each point (s)")
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
        type=seconds,
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


def add_scan_commands(commands: Any) -> None:
    scan = commands.add_parser(
        "scan",
        help="run a plan (count, line, list, grid, adaptive, tune) or act on a scan",
        description="Plans run in the daemon, each as one run file; Ctrl-C stops the scan.",
    )
    kinds = scan.add_subparsers(dest="kind", required=True, metavar="KIND")
    count = kinds.add_parser("count", help="points in time where everything is")
    count.add_argument("num", type=int, nargs="?", default=1, help="points (0: --duration)")
    count.add_argument("--interval", type=seconds, default=0.0, help="s between point starts")
    count.add_argument("--duration", type=seconds, default=0.0, help="s, then end")
    line = kinds.add_parser("line", help="AXIS START STOP POINTS (more axes: --axis)")
    line.add_argument("axis")
    line.add_argument("start", help="a number in the axis's unit, or with a unit: 5mm")
    line.add_argument("stop")
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
    adaptive.add_argument("start", help="a number in the axis's unit, or with a unit: 5mm")
    adaptive.add_argument("stop")
    adaptive.add_argument("--detector", required=True)
    adaptive.add_argument("--target-delta", type=float, required=True)
    adaptive.add_argument("--min-step", required=True, help="in the axis's unit, or with a unit")
    adaptive.add_argument("--max-step", required=True)
    adaptive.add_argument("--max-points", type=int, default=0)
    adaptive.add_argument("--relative", action="store_true")
    tune = kinds.add_parser("tune", help="AXIS START STOP POINTS, then go to --detector's peak")
    tune.add_argument("axis")
    tune.add_argument("start", help="a number in the axis's unit, or with a unit: 5mm")
    tune.add_argument("stop")
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


def scan_axes(args: argparse.Namespace) -> list[str]:
    """The axes a ``benchctl scan KIND ...`` line moves (for their units)."""
    match args.kind:
        case "line":
            return [args.axis, *(a for a, _, _ in args.more)]
        case "list":
            return [item.partition("=")[0] for item in args.positions]
        case "grid":
            return [axis for axis, *_ in args.axes]
        case "adaptive" | "tune":
            return [args.axis]
    return []


async def axis_units(bench: AsyncBench, axes: list[str]) -> dict[str, str]:
    """Each axis's unit: a device's position unit, else (DEVICE.PARAM) the parameter's."""
    units: dict[str, str] = {}
    devices = {d.name: d for d in await bench.actors()}
    for axis in dict.fromkeys(axes):
        if axis in devices:
            units[axis] = devices[axis].units
            continue
        try:
            device, name = split_parameter(axis)
        except KeyError:
            continue  # the validator names it
        if device not in devices:
            continue
        info = next((p for p in await bench.parameters(device) if p.name == name), None)
        if info is not None:
            units[axis] = info.units
    return units


def converter(units: dict[str, str]) -> Convert:
    def convert(axis: str, text: str) -> float:
        if axis not in units:
            return _plain_number(axis, text)
        return to_unit(text, units[axis], axis, "axis")

    return convert


def scan_plan(args: argparse.Namespace, number: Convert = _plain_number) -> Any:
    """The plan a ``benchctl scan KIND ...`` line asks for; ``number(axis, text)`` makes each
    position a number in its axis's unit."""
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
            spans = [(args.axis, number(args.axis, args.start), number(args.axis, args.stop))]
            spans += [(a, number(a, b), number(a, c)) for a, b, c in args.more]
            return plans.line(spans, points=args.points, relative=args.relative, **options)
        case "list":
            positions: dict[str, list[float]] = {}
            for item in args.positions:
                axis, equals, values = item.partition("=")
                if not equals or not axis:
                    raise ValueError(f"{item!r}: expected AXIS=P1,P2,...")
                positions[axis] = [number(axis, v) for v in values.split(",") if v.strip()]
            return plans.list_scan(positions, relative=args.relative, **options)
        case "grid":
            axes = []
            for axis, start, stop, points in args.axes:
                if not points.isdigit():
                    raise ValueError(
                        f"--axis {axis}: POINTS must be a whole number, got {points!r}"
                    )
                span = (number(axis, start), number(axis, stop))
                axes.append((axis, *span, int(points), axis in args.snake))
            unknown = set(args.snake) - {a[0] for a in axes}
            if unknown:
                raise ValueError(f"--snake {sorted(unknown)[0]}: not an --axis of this grid")
            return plans.grid(*axes, relative=args.relative, **options)
        case "adaptive":
            return plans.adaptive(
                args.axis,
                number(args.axis, args.start),
                number(args.axis, args.stop),
                detector=args.detector,
                target_delta=args.target_delta,
                min_step=number(args.axis, args.min_step),
                max_step=number(args.axis, args.max_step),
                max_points=args.max_points,
                relative=args.relative,
                **options,
            )
    return plans.tune(
        args.axis,
        number(args.axis, args.start),
        number(args.axis, args.stop),
        args.points,
        detector=args.detector,
        method=args.method,
        relative=args.relative,
        move=not args.stay,
        **options,
    )


def scan_line(status: ScanStatus) -> str:
    line = f"scan {status.id} ({status.kind}) {status.state}: {status.points_done}"
    if status.points_total:
        line += f" of {status.points_total}"
    line += " points"
    if status.started and status.ended > status.started:
        line += f" in {status.ended - status.started:.1f} s"
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


async def _print_table(bench: AsyncBench, scan_id: str, out: Output) -> None:
    data = await bench.scan_table(scan_id)
    if out.as_json:
        print(json.dumps(data.to_pylist(), indent=2, default=str))
        return
    table = Table(*data.column_names, box=None)
    for row in data.to_pylist():
        table.add_row(*(f"{v:g}" if isinstance(v, float) else str(v) for v in row.values()))
    out.console.print(table)


async def run_scan_command(bench: AsyncBench, args: argparse.Namespace, out: Output) -> None:
    match args.kind:
        case "status" | "pause" | "resume":
            call = {"status": bench.scan, "pause": bench.pause_scan, "resume": bench.resume_scan}
            status = await call[args.kind](args.id)
            out.emit(status, scan_line(status))
            return
        case "stop":
            status = await bench.stop_scan(args.id, force=args.force)
            out.emit(status, scan_line(status))
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
            await _print_table(bench, args.id, out)
            return
    plan = scan_plan(args, converter(await axis_units(bench, scan_axes(args))))
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
        out.emit(status, scan_line(status))
        return
    show = not out.as_json and out.errors.is_terminal
    out.doing = f" during scan {status.id}"
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
        out.interrupted = await _stop_interrupted(bench, status)
        raise
    except BenchError:
        total = f" of {status.points_total}" if status.points_total else ""
        out.doing = (
            f" during scan {status.id} (at point {status.points_done}{total}; its run file is"
            " kept: 'benchctl runs' once the daemon is back)"
        )
        raise
    out.emit(status, scan_line(status))
    if status.state in ("error", "aborted"):
        raise BenchError(scan_line(status))


#: how long Ctrl-C waits for the stopped scan to end at its point (a second Ctrl-C: at once)
STOP_WAIT = 10.0


async def _stop_interrupted(bench: AsyncBench, status: ScanStatus) -> str:
    """Ctrl-C during a scan: stop it at its next point, wait for it to end, and say where it
    stopped and where its run file is (a scan left running would move the bench on)."""
    try:
        status = await bench.stop_scan(status.id, reason="interrupted (benchctl, Ctrl-C)")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_WAIT):
                async for update in bench.stream_scan(status.id):
                    status = update
    except BenchError as error:
        return f"could not stop scan {status.id}: {error.message}; 'benchctl stop {status.id}'"
    return scan_line(status)
