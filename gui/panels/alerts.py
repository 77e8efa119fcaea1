"""Alerts and log: the daemon's alerts (disk low, device degraded, writer lag, frames lost;
raised and cleared) and this GUI's own log — every action it sent and the daemon's answer,
connection changes and errors — so what happened can be read back after the fact."""

from __future__ import annotations

import contextlib
import logging
import time

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHeaderView,
    QPlainTextEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from client import Alert

from .. import theme
from ..state import BenchState
from ..widgets import error_text, muted

MAX_ALERTS = 500


class _LogBridge(QObject):
    line = Signal(str, int)


class _Handler(logging.Handler):
    """Log records of the ``gui`` loggers into the panel (any thread; delivered on Qt's)."""

    def __init__(self, bridge: _LogBridge) -> None:
        super().__init__(logging.INFO)
        self.bridge = bridge
        self.setFormatter(logging.Formatter("%(asctime)s  %(levelname)-7s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(RuntimeError):  # the panel is gone (the window closed)
            self.bridge.line.emit(self.format(record), record.levelno)


class AlertsPanel(QWidget):
    def __init__(self, state: BenchState) -> None:
        super().__init__()
        self.state = state
        self.alerts = QTableWidget(0, 5)
        self.alerts.setHorizontalHeaderLabels(["Time", "State", "Kind", "Subject", "Message"])
        self.alerts.verticalHeader().setVisible(False)
        self.alerts.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.alerts.setAlternatingRowColors(True)
        header = self.alerts.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(theme.monospace())
        self.log.setMaximumBlockCount(5000)
        self.active = muted("No active alert")
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.active)
        top_layout.addWidget(self.alerts)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(muted("GUI log: actions sent, the daemon's answers, connection"))
        bottom_layout.addWidget(self.log)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(top)
        splitter.addWidget(bottom)
        splitter.setSizes([600, 600])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        self._active: dict[tuple[str, str], Alert] = {}
        self._bridge = _LogBridge()
        self._bridge.line.connect(self._append)
        self._handler = _Handler(self._bridge)
        gui_log = logging.getLogger("gui")
        gui_log.addHandler(self._handler)
        if gui_log.getEffectiveLevel() > logging.INFO:
            gui_log.setLevel(logging.INFO)  # the panel shows actions (INFO) whatever the root says
        state.alert.connect(self._on_alert)
        state.problem.connect(self._on_problem)
        state.connection.state_changed.connect(self._on_connection)

    def close_log(self) -> None:
        logging.getLogger("gui").removeHandler(self._handler)

    def _append(self, line: str, level: int) -> None:
        colour = (
            theme.RED
            if level >= logging.ERROR
            else theme.AMBER
            if level >= logging.WARNING
            else None
        )
        if colour:
            self.log.appendHtml(f'<span style="color:{colour}">{_escape(line)}</span>')
        else:
            self.log.appendPlainText(line)

    def _on_connection(self, state: str, detail: str) -> None:
        logging.getLogger("gui.connection").log(
            logging.WARNING if state in ("disconnected", "refused") else logging.INFO,
            "%s: %s",
            state,
            detail,
        )

    def _on_problem(self, what: str, error: object) -> None:
        message = error_text(error) if isinstance(error, BaseException) else str(error)
        logging.getLogger("gui.state").warning("%s: %s", what, message)

    def _on_alert(self, alert: Alert) -> None:
        key = (alert.kind, alert.subject)
        if alert.active:
            self._active[key] = alert
        else:
            self._active.pop(key, None)
        self.alerts.insertRow(0)
        cells = [
            time.strftime("%H:%M:%S", time.localtime(alert.timestamp or time.time())),
            "raised" if alert.active else "cleared",
            alert.kind,
            alert.subject,
            alert.message,
        ]
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if alert.active:
                item.setForeground(QColor(theme.AMBER))
            self.alerts.setItem(0, column, item)
        while self.alerts.rowCount() > MAX_ALERTS:
            self.alerts.removeRow(self.alerts.rowCount() - 1)
        count = len(self._active)
        self.active.setText(
            f"{count} active alert{'s' if count != 1 else ''}" if count else "No active alert"
        )
        self.active.setStyleSheet(f"color: {theme.AMBER}; font-weight: 600;" if count else "")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
