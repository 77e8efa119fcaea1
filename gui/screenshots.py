"""``python -m gui.screenshots [--out docs/gui] [--address HOST:PORT]``: render the main window
and each panel offscreen to PNG files, from a live daemon.

Without ``--address`` it starts ``python -m runtime`` (the simulated bench) with a temporary
home, so its runs and presets never touch yours, and stops it afterwards. It then puts the
bench in a state worth showing — a recorded run or two, an axis moved, a script's output, a
line scan in progress — connects the GUI as an operator, waits for live frames and scan points,
and saves ``main.png`` plus one PNG per panel, and ``estop.png`` after pressing the e-stop.
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

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QApplication

from client import Bench

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
PANELS = ["devices", "parameters", "motion", "laser", "power", "runs", "scripts", "alerts"]
SIZES = {
    "devices": (760, 420),
    "parameters": (980, 560),
    "motion": (1180, 400),
    "laser": (620, 640),
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
    """Runs to list, a script's output, an axis away from zero, the laser tuned."""
    bench.parameters["maitai.wavelength"] = 920
    bench["esp300.axis2"].move_to(3.25)
    bench["ell14.2"].move_to(45.0)
    bench.record("dark-frames", frames=20, metadata={"sample": "none", "operator": "demo"})
    bench.record("readings-baseline", duration=1.5, readings_only=True)
    bench.scripts.upload("knife_edge", SCRIPT)
    bench.scripts.wait(bench.scripts.start("knife_edge", params={"points": 6}).id)


def wait(app: QApplication, condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"screenshots: gave up waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def shoot(address: str, out: Path) -> list[Path]:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    theme.apply(app)
    with Bench.connect(address) as bench:
        prepare(bench)
        connection = Connection(address)
        window = MainWindow(connection)
        window.resize(QSize(1920, 1200))
        window.show()
        connection.start()
        wait(app, lambda: window.camera.frames_shown >= 10, 60, "live frames")
        scan = bench.scans.create(
            [("esp300.axis1", -1.0, 1.0, 61)], read=["power_meter"], settle=0.02,
            name="knife-edge-scan",
        )  # fmt: skip
        bench.scans.start(scan.id)
        wait(app, lambda: len(window.runs._data.get(0, ([], []))[0]) >= 25, 90, "scan points")
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
        out.mkdir(parents=True, exist_ok=True)
        saved = [
            save(window.grab(), out / "main.png"),
            save(window.camera.grab(), out / "camera.png"),
        ]
        for key in PANELS:  # each panel on its own, floated at a size that shows it whole
            if key == "alerts":  # after an e-stop and its reset: the log has something to say
                window.emergency_stop()
                wait(app, window.banner.isVisible, 30, "the e-stop latch")
                settle(app, 1.0)
                saved.append(save(window.grab(), out / "estop.png"))
                window.reset_estop()
                wait(app, lambda: not window.banner.isVisible(), 30, "the reset")
            dock = window.docks[key]
            dock.setFloating(True)
            dock.resize(QSize(*SIZES.get(key, (1400, 640))))
            settle(app, 0.8)
            saved.append(save(dock.widget().grab(), out / f"{key}.png"))
            dock.setFloating(False)
            settle(app, 0.2)
        window.close()
    return saved


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
