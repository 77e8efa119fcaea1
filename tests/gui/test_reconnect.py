"""A daemon that goes away: the GUI says so, keeps its window, and reconnects by itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from gui.window import MainWindow
from tests.client.conftest import start_daemon

WAIT_MS = 30_000


def test_killing_the_daemon_shows_disconnected_and_a_restarted_one_is_reconnected(
    qtbot: QtBot, open_window: Callable[..., MainWindow], tmp_path: Path
) -> None:
    daemon = start_daemon(tmp_path / "first")
    again = None
    try:
        window = open_window(daemon.address, token=None)
        qtbot.waitUntil(lambda: window.camera.frames_shown > 0, timeout=WAIT_MS)
        assert window.camera.live.isEnabled()
        daemon.process.kill()  # SIGKILL: no goodbye on any stream
        daemon.process.wait(timeout=30)
        qtbot.waitUntil(lambda: not window.connection.connected_now, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: "disconnected" in window.connection_label.text(), timeout=WAIT_MS)
        assert window.offline.isVisible() and "Disconnected" in window.offline_text.text()
        assert not window.camera.live.isEnabled()  # nothing to click while nobody answers
        assert "Not connected" in window.camera.live.toolTip()
        assert window.estop.isEnabled()  # pressed now, it says it could not stop anything
        qtbot.mouseClick(window.estop, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(window.banner.isVisible, timeout=WAIT_MS)
        assert "NOT DELIVERED" in window.banner_text.text()
        shown = window.camera.frames_shown
        again = start_daemon(tmp_path / "second", listen=daemon.address)
        qtbot.waitUntil(lambda: window.connection.connected_now, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: "connected ·" in window.connection_label.text(), timeout=WAIT_MS)
        assert not window.offline.isVisible()
        # the new session's streams: live frames again (the GUI restarts its live view)
        qtbot.waitUntil(lambda: window.camera.frames_shown > shown, timeout=WAIT_MS)
        assert window.camera.live.isEnabled()
    finally:
        for running in (daemon, again):
            if running is not None and running.process.poll() is None:
                running.stop()
