"""The GUI against a real daemon: ``python -m runtime`` on the simulated bench, on loopback,
started by the tests; Qt on its offscreen platform (no display needed).

One daemon (with an operator and an observer token) serves the module's tests; a test that
kills its daemon starts its own. Every wait is ``qtbot.waitUntil`` on what the GUI shows, with
generous bounds: the machine may be busy, the tests wait on events, not on timing.
"""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt is imported anywhere

from collections.abc import Callable, Iterator

import pytest
from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QApplication

from gui import theme
from gui.connection import Connection
from gui.window import MainWindow
from tests.client.conftest import OPERATOR, Daemon, start_daemon, tokens_file


@pytest.fixture(scope="module")
def gui_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("gui-daemon")
    daemon = start_daemon(directory, tokens=tokens_file(directory))
    try:
        yield daemon
    finally:
        if daemon.process.poll() is None:
            text = daemon.stop()
            assert "Traceback" not in text, text


@pytest.fixture
def open_window(qapp: QApplication) -> Iterator[Callable[..., MainWindow]]:
    """``open_window(address, token=...)``: a connected main window, closed and deleted after
    the test (a window left alive would be re-polished by every later ``setStyleSheet``)."""
    if qapp.styleSheet() != theme.STYLESHEET:
        theme.apply(qapp)
    windows: list[MainWindow] = []

    def open_(address: str, *, token: str | None = OPERATOR, **options: object) -> MainWindow:
        connection = Connection(address, token=token)
        window = MainWindow(connection, **options)  # type: ignore[arg-type]
        window.show()
        connection.start()
        windows.append(window)
        return window

    yield open_
    for window in windows:
        window.close()
        window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
