"""Small pieces every panel uses: value formatting, state dots, inline error labels."""

from __future__ import annotations

import math
import time
from collections import deque
from functools import cache

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QLabel, QPushButton, QWidget

from client import BenchError

from . import theme

#: A parameter value as the client gives it.
PlainValue = bool | int | float | str | None

_PREFIXES = [
    (1e-15, "f"),
    (1e-12, "p"),
    (1e-9, "n"),
    (1e-6, "µ"),
    (1e-3, "m"),
    (1.0, ""),
    (1e3, "k"),
    (1e6, "M"),
    (1e9, "G"),
]


def format_value(value: PlainValue, units: str = "") -> str:
    """A parameter value as an editor shows it (no units), compactly and without float noise."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.6g}"
    return str(value)


def with_units(value: PlainValue, units: str) -> str:
    text = format_value(value)
    return f"{text} {units}" if units and value is not None else text


def si(value: float, units: str, digits: int = 4) -> str:
    """1.234e-3 W -> '1.234 mW' (for readings spanning decades, like optical power)."""
    if not math.isfinite(value):
        return f"{value} {units}"
    magnitude = abs(value)
    scale, prefix = 1.0, ""
    if magnitude > 0:
        for factor, name in _PREFIXES:
            if magnitude >= factor * 0.9995:
                scale, prefix = factor, name
    return f"{value / scale:.{digits}g} {prefix}{units}"


def error_text(error: BaseException) -> str:
    """The daemon's own message for a BenchError; type and message otherwise."""
    if isinstance(error, BenchError):
        return error.message
    return f"{type(error).__name__}: {error}"


@cache
def dot(colour: str, size: int = 12) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(colour))
    painter.setPen(QColor(colour).darker(140))
    painter.drawEllipse(1, 1, size - 2, size - 2)
    painter.end()
    return QIcon(pixmap)


def state_icon(state: str) -> QIcon:
    return dot(theme.STATE_COLOURS.get(state, theme.MUTED))


class ErrorLabel(QLabel):
    """A red line under a control: the daemon's refusal, word for word; hidden when empty."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setProperty("role", "error")
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hide()

    def show_error(self, message: str) -> None:
        self.setText(message)
        self.setVisible(bool(message))

    def clear_error(self) -> None:
        self.show_error("")


def muted(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "muted")
    return label


def readout(text: str = "—") -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "readout")
    label.setAlignment(theme.ALIGN_RIGHT)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def value_label(text: str = "—") -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "value")
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def button(text: str, role: str = "", tooltip: str = "") -> QPushButton:
    widget = QPushButton(text)
    if role:
        widget.setProperty("role", role)
    if tooltip:
        widget.setToolTip(tooltip)
    return widget


class RateMeter:
    """Events per second over the last ``window`` seconds (display fps, readings/s)."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], 1e-9)
        return (len(self._times) - 1) / span if span < self.window else len(self._times) / span
