"""The GUI on a real daemon: what an operator does, and what the daemon then holds."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from client import Bench, PreviewFrame
from gui.guard import OBSERVER_REASON
from gui.window import MainWindow
from tests.client.conftest import OBSERVER, OPERATOR, Daemon

WAIT_MS = 30_000  # bound of each wait for the daemon's answer (busy 2-core machines)

Open = Callable[..., MainWindow]


def connected(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.connection.connected_now, timeout=WAIT_MS)


def test_the_live_view_draws_preview_frames_and_repaints_keep_python_alive(
    qtbot: QtBot, open_window: Open, gui_daemon: Daemon
) -> None:
    window = open_window(gui_daemon.address)
    frames: list[PreviewFrame] = []
    window.camera.frame_shown.connect(frames.append)
    qtbot.waitUntil(lambda: len(frames) >= 5, timeout=WAIT_MS)  # the GUI started live itself
    frame = frames[-1]
    assert frame.pixels.shape == (512, 512) and frame.factor == 4  # 2048² reduced in the daemon
    assert frame.source_shape == (2048, 2048) and frame.pixels.max() > 0
    assert [f.frame_number for f in frames] == sorted(f.frame_number for f in frames)
    assert window.camera.image.image is not None and window.camera.image.image.shape == (512, 512)
    assert window.camera.statistics["mean"].text() != "—"  # ROI statistics follow the frames
    # PySide6 6.12.0 dropped a reference to None on each pyqtgraph repaint: Python 3.11 died
    # after a few hundred. The count must not fall while frames are drawn.
    before = sys.getrefcount(None)
    shown = window.camera.frames_shown
    qtbot.waitUntil(lambda: window.camera.frames_shown >= shown + 40, timeout=WAIT_MS)
    for _ in range(20):
        window.grab()
    assert sys.getrefcount(None) >= before - 100


def test_editing_the_exposure_sets_the_camera_parameter_through_a_running_live_view(
    qtbot: QtBot, open_window: Open, gui_daemon: Daemon
) -> None:
    window = open_window(gui_daemon.address)
    qtbot.waitUntil(lambda: "exposure" in window.camera.editors, timeout=WAIT_MS)
    qtbot.waitUntil(window.camera.live.isChecked, timeout=WAIT_MS)
    editor = window.camera.editors["exposure"]
    assert editor.field is not None
    editor.field.clear()
    qtbot.keyClicks(editor.field, "25")
    qtbot.keyClick(editor.field, Qt.Key.Key_Return)
    with Bench.connect(gui_daemon.address, token=OPERATOR) as bench:
        qtbot.waitUntil(lambda: bench.parameters["camera.exposure"] == 25.0, timeout=WAIT_MS)
        # the camera refuses settings while acquiring: the GUI paused its live view around it
        qtbot.waitUntil(lambda: bench["camera"].acquisition().running, timeout=WAIT_MS)
        qtbot.waitUntil(
            lambda: window.camera.frame is not None and window.camera.frame.exposure_ms == 25.0,
            timeout=WAIT_MS,
        )
        assert not editor.error.isVisible()
        window.close()  # the next tests' frame rate: 10 ms, set with the camera idle
        bench["camera"].stop_acquisition()
        bench.parameters["camera.exposure"] = 10


def test_a_bad_value_shows_the_daemons_reason_inline(
    qtbot: QtBot, open_window: Open, gui_daemon: Daemon
) -> None:
    window = open_window(gui_daemon.address)
    window.parameters.select("maitai")
    qtbot.waitUntil(lambda: "wavelength" in window.parameters.rows, timeout=WAIT_MS)
    editor = window.parameters.rows["wavelength"].editor
    assert editor is not None and editor.field is not None and editor.button is not None
    editor.field.setText("5000")
    qtbot.mouseClick(editor.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(editor.error.isVisible, timeout=WAIT_MS)
    assert "outside the allowed range 690 to 1040" in editor.error.text()
    assert editor.field.property("invalid") is True
    editor.field.setText("many")  # not a number: said before anything is sent
    qtbot.keyClick(editor.field, Qt.Key.Key_Return)
    assert "'many' is not a number" in editor.error.text()
    with Bench.connect(gui_daemon.address, token=OPERATOR) as bench:
        assert bench.parameters["maitai.wavelength"] != 5000
    editor.field.setText("920")
    qtbot.keyClick(editor.field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not editor.error.isVisible(), timeout=WAIT_MS)
    qtbot.waitUntil(
        lambda: window.parameters.rows["wavelength"].desired.text() == "920", timeout=WAIT_MS
    )


def test_the_emergency_stop_button_latches_the_daemon_and_reset_clears_it(
    qtbot: QtBot, open_window: Open, gui_daemon: Daemon
) -> None:
    window = open_window(gui_daemon.address)
    connected(qtbot, window)
    qtbot.mouseClick(window.estop, Qt.MouseButton.LeftButton)
    with Bench.connect(gui_daemon.address, token=OPERATOR) as bench:
        qtbot.waitUntil(lambda: bench.emergency_stop_state().latched, timeout=WAIT_MS)
        qtbot.waitUntil(window.banner.isVisible, timeout=WAIT_MS)
        assert window.latch.text().startswith("LATCHED")
        qtbot.waitUntil(window.reset.isEnabled, timeout=WAIT_MS)
        qtbot.mouseClick(window.reset, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not bench.emergency_stop_state().latched, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=WAIT_MS)
        # the keyboard shortcut does the same, whichever panel has the focus
        window.activateWindow()
        window.parameters.filter.setFocus()
        qtbot.keyClick(window.parameters.filter, Qt.Key.Key_F12)
        qtbot.waitUntil(lambda: bench.emergency_stop_state().latched, timeout=WAIT_MS)
        bench.reset_emergency_stop("F12 worked")
        qtbot.waitUntil(lambda: not bench.emergency_stop_state().latched, timeout=WAIT_MS)
        qtbot.keyClick(window.camera, Qt.Key.Key_Pause)
        qtbot.waitUntil(lambda: bench.emergency_stop_state().latched, timeout=WAIT_MS)
        bench.reset_emergency_stop("test done")


def test_an_observer_token_disables_every_control_that_changes_the_bench(
    qtbot: QtBot, open_window: Open, gui_daemon: Daemon
) -> None:
    window = open_window(gui_daemon.address, token=OBSERVER)
    connected(qtbot, window)
    qtbot.waitUntil(lambda: "wavelength" in window.parameters.rows or
                    "exposure" in window.parameters.rows, timeout=WAIT_MS)  # fmt: skip
    qtbot.waitUntil(lambda: bool(window.motion.axes), timeout=WAIT_MS)
    assert not window.state.operator
    blocked = [w for w, (safety, _, _) in window.guard._controls.items() if not safety]
    assert len(blocked) > 20
    for widget in blocked:
        assert not widget.isEnabled(), widget
        assert OBSERVER_REASON in widget.toolTip()
    # stopping is open to observers, as on the daemon
    assert window.estop.isEnabled()
    axis = next(iter(window.motion.axes.values()))
    assert axis.stop.isEnabled() and not axis.go.isEnabled()
    assert not window.camera.live.isEnabled() and "observer" in window.camera.live.toolTip()
    assert "observer" in window.role_label.text()


def test_benchd_gui_screenshot_saves_the_window_once_the_live_view_has_a_frame(
    tmp_path: Path, gui_daemon: Daemon
) -> None:
    target = tmp_path / "shots" / "main.png"
    done = subprocess.run(
        [sys.executable, "-m", "gui", "--address", gui_daemon.address, "--token", OPERATOR,
         "--screenshot", str(target)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    header = target.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1680, 1050)


def test_a_newcomer_moves_an_axis_and_records_a_run_from_the_gui(
    qtbot: QtBot, open_window: Open, gui_daemon: Daemon
) -> None:
    window = open_window(gui_daemon.address, live=False)
    qtbot.waitUntil(lambda: "esp300.axis1" in window.motion.axes, timeout=WAIT_MS)
    axis = window.motion.axis("esp300.axis1")
    qtbot.waitUntil(axis.go.isEnabled, timeout=WAIT_MS)
    axis.target.setText("1.25")
    qtbot.mouseClick(axis.go, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: axis.status.text() == "settled", timeout=WAIT_MS)
    assert axis.position.text() == "1.2500"
    runs = window.runs
    runs.run_name.setText("from-the-gui")
    runs.run_duration.setValue(0.5)
    runs.run_readings_only.setChecked(True)
    runs.run_metadata.setPlainText("sample=none\n# a comment\noperator=test")
    qtbot.mouseClick(runs.record, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: any(
            (item := runs.runs.item(row, 0)) is not None and "from-the-gui" in item.text()
            for row in range(runs.runs.rowCount())
        ),
        timeout=WAIT_MS,
    )
    with Bench.connect(gui_daemon.address, token=OPERATOR) as bench:
        assert bench["esp300.axis1"].position == pytest.approx(1.25, abs=1e-3)
        run = next(r for r in bench.runs() if r.name.endswith("from-the-gui"))
        assert run.status == "completed"
