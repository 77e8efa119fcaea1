"""``python -m gui.screenshots [--out docs/gui] [--address HOST:PORT]``: render the main window
and each panel offscreen to PNG files, from a live daemon.

Without ``--address`` it starts ``python -m runtime`` (the simulated bench) with a temporary
home, so its runs and presets never touch yours, and stops it afterwards. It then puts the
bench in a state worth showing — a recorded run or two, an axis moved, a script's output, a
tune scan — connects the GUI as an operator, waits for live frames, starts a line scan and then a
grid from the plan form as a user would, and saves ``main.png`` (the line half done), one PNG
per panel (``runs.png``: the grid a third done), ``plan.png`` (the form with the daemon's
problems under their fields) and ``estop.png`` after pressing the e-stop.
The README and docs/gui.md show these files; they are committed from this script's output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QApplication, QWidget

from client import Bench, plans

from . import theme
from .connection import Connection
from .window import MainWindow

SCRIPT = """# A knife-edge scan: the power meter at each point of a line on axis 1.
points = params.get("points", 21)
log("scanning esp300.axis1 with", points, "points")
for i in range(points):
    x = 0.25 * i
    move("esp300.axis1", x)
    log("x =", x, "mm  P =", read("power_meter"), "W")
    progress((i + 1) / points)
log("done")
"""
SIZES = {
    "devices": (760, 440),
    "parameters": (980, 560),
    "motion": (1240, 420),
    "laser": (640, 720),
    "runs": (1560, 900),
    "plan": (1560, 1010),
}


@contextlib.contextmanager
def simulated_daemon() -> Iterator[str]:
    """``python -m runtime`` on the simulated bench, HOME in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="benchd-screenshots-") as home:
        log = Path(home) / "daemon.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "runtime", "--listen", "127.0.0.1:0"],
                stderr=sink, stdout=subprocess.DEVNULL, env={**os.environ, "HOME": home},
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                found = re.search(r"benchd serving gRPC on (\S+)", log.read_text())
                if found:
                    yield found.group(1)
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"the daemon did not start:\n{log.read_text()}")
        finally:
            process.terminate()
            process.wait(timeout=60)


def prepare(bench: Bench) -> None:
    """Runs to list, a script's output, an axis away from zero, the laser tuned, a tune scan
    that found the peak detector's peak."""
    bench.parameters["maitai.wavelength"] = 920
    bench["esp300.axis2"].move_to(3.25)
    bench["ell14.2"].move_to(45.0)
    bench.record("dark-frames", frames=20, metadata={"sample": "none", "operator": "demo"})
    bench.record("readings-baseline", duration=1.5, readings_only=True)
    bench.scripts.upload("knife_edge", SCRIPT)
    bench.scripts.wait(bench.scripts.start("knife_edge", params={"points": 6}).id)
    bench.scans.run(plans.tune("esp300.axis1", -0.4, 1.0, 29, detector="peak", name="tune-peak"))


def wait(app: QApplication, condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"screenshots: gave up waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def start_plan(app: QApplication, window: MainWindow, kind: str) -> None:
    """Start the form's plan; its problems, if the daemon refused it."""
    runs, form = window.runs, window.runs.plan_form
    form.start()
    wait(app, lambda: (runs.data is not None and runs.data.kind == kind) or bool(
        form.problem_texts()), 120, f"the {kind} plan to start")  # fmt: skip
    if form.problem_texts():
        raise RuntimeError(f"screenshots: the {kind} plan was refused: {form.problem_texts()}")


def fill_line(window: MainWindow, name: str) -> None:
    """What a user types for a line scan over the simulated peak (centre 0.3 mm)."""
    form = window.runs.plan_form
    form.kind.setCurrentText("line")
    row = form.axes["line"].rows[0]
    row.device.setCurrentText("esp300.axis1")
    row.start.setText("-0.5")
    row.stop.setText("1.1")
    form.line_points.setValue(81)
    form.settle.setText("0.02")
    form.dwell.setText("0.05")
    form.name.setText(name)
    for i in range(form.read.count()):
        item = form.read.item(i)
        item.setCheckState(
            Qt.CheckState.Checked
            if item.text() in ("peak", "power_meter")
            else Qt.CheckState.Unchecked
        )


def fill_grid(window: MainWindow, name: str) -> None:
    form = window.runs.plan_form
    form.kind.setCurrentText("grid")
    slow, fast = form.axes["grid"].rows
    for row, axis, start, stop, points in (
        (slow, "esp300.axis2", "2.5", "4", 16),
        (fast, "esp300.axis1", "-0.5", "1.1", 33),
    ):
        row.device.setCurrentText(axis)
        row.start.setText(start)
        row.stop.setText(stop)
        row.points.setValue(points)
    fast.snake.setChecked(True)
    form.dwell.setText("0")
    form.settle.setText("0")
    form.name.setText(name)
    form.add_suspender.click()
    suspender = form.suspenders[-1]
    suspender.signal.setCurrentText("power_meter")
    suspender.threshold.setText("5e-7")
    suspender.resume.setText("8e-7")


def shoot(address: str, out: Path) -> list[Path]:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    theme.apply(app)
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with Bench.connect(address) as bench:
        prepare(bench)
        connection = Connection(address)
        window = MainWindow(connection)
        window.resize(QSize(1920, 1200))
        window.show()
        connection.start()
        wait(app, lambda: window.camera.frames_shown >= 10, 60, "live frames")
        runs = window.runs
        wait(app, runs.plan_form.start_button.isEnabled, 30, "the plan form")
        wait(app, lambda: runs.plan_form.read.count() > 0, 30, "the readable devices")
        # a line scan from the form, half done: the main window
        fill_line(window, "knife-edge-scan")
        start_plan(app, window, "line")
        wait(app, lambda: runs.plot.detector.count() > 1, 60, "the scan's readings")
        runs.plot.detector.setCurrentText("peak")
        wait(app, lambda: runs.data is not None and len(runs.data.index) >= 40, 90, "scan points")
        wait(app, lambda: window.power.readings >= 30, 30, "power readings")
        window.docks["runs"].raise_()
        window.parameters.select("maitai")
        window.scripts.select(bench.scripts.executions()[0].id)
        wait(app, lambda: "wavelength" in window.parameters.rows, 30, "the laser's parameters")
        editor = window.parameters.rows["wavelength"].editor
        assert editor is not None and editor.field is not None
        editor.field.setText("1200")  # out of range: the daemon's reason shows inline
        editor.field.setModified(True)  # as if typed
        editor.submit(1200.0)
        wait(app, editor.error.isVisible, 30, "the inline error")
        settle(app, 1.0)
        saved.append(save(window.grab(), out / "main.png"))
        saved.append(save(window.camera.grab(), out / "camera.png"))
        wait(app, lambda: runs.data is not None and runs.data.ended is not None, 90, "the line")
        # a grid from the form, a third done: the runs and scans panel (an image, live)
        fill_grid(window, "knife-edge-map")
        start_plan(app, window, "grid")
        wait(app, lambda: runs.plot.detector.count() > 1, 60, "the grid's readings")
        runs.plot.detector.setCurrentText("peak")
        wait(app, lambda: runs.data is not None and len(runs.data.index) >= 180, 120, "grid points")
        runs.lists.setCurrentIndex(0)
        saved.append(shoot_panel(app, window, "runs", out))
        wait(app, lambda: runs.data is not None and runs.data.ended is not None, 180, "the grid")
        # the form refusing a plan past an axis's travel, every problem under its field
        form = runs.plan_form
        fill_line(window, "too-far")
        form.axes["line"].rows[0].stop.setText("75")
        form.dwell.setText("-1")
        form.check()
        wait(app, lambda: bool(form.problem_texts()), 30, "the plan's problems")
        form.dwell.setText("0.05")  # the plan's own numbers right: the bench's view next
        form.suspenders[-1].signal.setCurrentText("power_metre")  # a typo
        form.check()
        wait(app, lambda: len(form.problem_texts()) >= 2, 30, "the bench's problems")
        saved.append(shoot_panel(app, window, "runs", out, part=runs.plan_scroll, name="plan"))
        # motion after a home search from the panel
        axis = window.motion.axis("esp300.axis3")
        axis.home.click()
        wait(app, lambda: axis.status.text().startswith("homed at"), 60, "the home search")
        for key in ("devices", "parameters", "motion", "power", "scripts"):
            saved.append(shoot_panel(app, window, key, out))
        # the e-stop: the window, then the laser's safe-state read-back and the log
        window.emergency_stop()
        wait(app, window.banner.isVisible, 30, "the e-stop latch")
        wait(app, lambda: window.latch_info.by != "", 30, "who latched it")
        laser = window.laser
        wait(app, lambda: "confirmed" in laser.interlocks["safe_state"].text(), 30, "safe state")
        settle(app, 1.0)
        saved.append(save(window.grab(), out / "estop.png"))
        saved.append(shoot_panel(app, window, "laser", out))
        window.reset_estop()
        wait(app, lambda: not window.banner.isVisible(), 30, "the reset")
        saved.append(shoot_panel(app, window, "alerts", out))
        window.close()
    return saved


def shoot_panel(
    app: QApplication,
    window: MainWindow,
    key: str,
    out: Path,
    *,
    part: QWidget | None = None,
    name: str = "",
) -> Path:
    """A panel on its own (or a ``part`` of it), floated at a size that shows it whole."""
    name = name or key
    dock = window.docks[key]
    dock.setFloating(True)
    dock.resize(QSize(*SIZES.get(name, (1400, 640))))
    settle(app, 0.8)
    path = save((part or dock.widget()).grab(), out / f"{name}.png")
    dock.setFloating(False)
    settle(app, 0.2)
    return path


def settle(app: QApplication, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def save(pixmap: object, path: Path) -> Path:
    if not pixmap.save(str(path)):  # type: ignore[attr-defined]
        raise OSError(f"could not write {path}")
    print(f"saved {path}", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gui.screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/gui"))
    parser.add_argument("--address", help="an operator-reachable daemon (default: start one)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # read when QApplication starts
    if args.address:
        shoot(args.address, args.out)
    else:
        with simulated_daemon() as address:
            shoot(address, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
