"""Power meter: a strip chart of a Readable device's readings with a large readout, the
statistics of the window shown and the reading's flags (saturated, over-range) in words.

Readings come from ``Hardware.StreamValues`` at the chosen interval: the daemon reads the
instrument that often for this GUI (the 1830-C allows ~48 readings a second on its 9600-baud
line), so the interval is the operator's choice, 10 a second by default.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from client import AsyncBench, DeviceInfo, Reading

from .. import theme
from ..connection import Session, Watch
from ..state import BenchState
from ..widgets import ErrorLabel, error_text, muted, readout, si, value_label

INTERVALS = {"20 /s": 0.05, "10 /s": 0.1, "5 /s": 0.2, "1 /s": 1.0}
WINDOWS = {"10 s": 10.0, "30 s": 30.0, "1 min": 60.0, "5 min": 300.0}
MAX_POINTS = 20_000


class PowerPanel(QWidget):
    def __init__(self, state: BenchState, *, device_hint: str = "power_meter") -> None:
        super().__init__()
        self.state = state
        self.device_hint = device_hint
        self.device = QComboBox()
        self.device.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.device.currentTextChanged.connect(lambda _: self._restart())
        self.interval = QComboBox()
        self.interval.addItems(list(INTERVALS))
        self.interval.setCurrentText("10 /s")
        self.interval.activated.connect(lambda _: self._restart())
        self.span = QComboBox()
        self.span.addItems(list(WINDOWS))
        self.span.setCurrentText("1 min")
        self.span.activated.connect(lambda _: self._redraw())
        self.pause = QCheckBox("Pause")
        self.clear = QPushButton("Clear")
        self.clear.clicked.connect(self._clear)
        top = QHBoxLayout()
        for widget in (
            QLabel("Device"),
            self.device,
            QLabel("Rate"),
            self.interval,
            QLabel("Window"),
            self.span,
            self.pause,
            self.clear,
        ):
            top.addWidget(widget)
        top.addStretch(1)
        self.value = readout("—")
        self.value.setStyleSheet("font-size: 30px;")
        self.flags = muted("")
        self.error = ErrorLabel()
        self.stats: dict[str, QLabel] = {}
        side = QGridLayout()
        side.addWidget(self.value, 0, 0, 1, 2)
        side.addWidget(self.flags, 1, 0, 1, 2)
        for row, key in enumerate(("mean", "std", "min", "max", "readings"), start=2):
            label = value_label("—")
            label.setAlignment(theme.ALIGN_RIGHT)
            self.stats[key] = label
            side.addWidget(muted(key), row, 0)
            side.addWidget(label, row, 1)
        side.setRowStretch(8, 1)
        side_widget = QWidget()
        side_widget.setLayout(side)
        side_widget.setFixedWidth(230)
        self.plot = pg.PlotWidget()
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setLabel("bottom", "time", units="s")
        self.curve = self.plot.plot(pen=pg.mkPen(theme.ACCENT, width=1.6))
        middle = QHBoxLayout()
        middle.addWidget(self.plot, 1)
        middle.addWidget(side_widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(middle, 1)
        layout.addWidget(self.error)
        self.times: deque[float] = deque(maxlen=MAX_POINTS)
        self.values: deque[float] = deque(maxlen=MAX_POINTS)
        self.units = ""
        self._label: tuple[str, str] = ("", "")
        self.readings = 0
        self._watch: Watch | None = None
        state.devices_changed.connect(self._on_devices)
        state.connection.connected.connect(self._on_connected)

    def _on_connected(self, session: Session) -> None:
        self._watch = None
        self._restart()

    def _on_devices(self, devices: list[DeviceInfo]) -> None:
        names = self.state.with_capability("Readable")
        if names != [self.device.itemText(i) for i in range(self.device.count())]:
            current = self.device.currentText() or self.device_hint
            self.device.blockSignals(True)
            self.device.clear()
            self.device.addItems(names)
            self.device.setCurrentText(current if current in names else (names[0] if names else ""))
            self.device.blockSignals(False)
            self._restart()

    def _restart(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        device = self.device.currentText()
        if not device or not self.state.connection.connected_now:
            return
        interval = INTERVALS[self.interval.currentText()]
        self._clear()

        def stream(bench: AsyncBench) -> AsyncIterator[Reading]:
            return bench.stream_values(device, interval)

        self._watch = self.state.connection.watch(
            stream,
            self._on_reading,
            failed=lambda e: self.error.show_error(error_text(e)),
        )

    def _clear(self) -> None:
        self.times.clear()
        self.values.clear()
        self.readings = 0
        self._redraw()

    def _on_reading(self, reading: Reading) -> None:
        self.error.clear_error()
        self.units = reading.units
        self.readings += 1
        self.value.setText(si(reading.value, reading.units))
        self.flags.setText(", ".join(reading.flags) if reading.flags else "valid")
        self.flags.setStyleSheet(f"color: {theme.AMBER};" if reading.flags else "")
        if self.pause.isChecked():
            return
        self.times.append(reading.timestamp)
        self.values.append(reading.value)
        self._redraw()

    def _redraw(self) -> None:
        if not self.times:
            self.curve.setData([], [])
            for label in self.stats.values():
                label.setText("—")
            return
        now = time.time()
        span = WINDOWS[self.span.currentText()]
        times = np.fromiter(self.times, float)
        values = np.fromiter(self.values, float)
        keep = times >= now - span
        times, values = times[keep] - now, values[keep]
        self.curve.setData(times, values)
        self.plot.setXRange(-span, 0, padding=0)
        wanted = (self.device.currentText() or "reading", self.units)
        if wanted != self._label:  # relabelling re-lays the axis out: only when it changes
            self._label = wanted
            self.plot.setLabel("left", wanted[0], units=wanted[1])
        finite = values[np.isfinite(values)]
        if finite.size:
            self.stats["mean"].setText(si(float(finite.mean()), self.units))
            self.stats["std"].setText(si(float(finite.std()), self.units))
            self.stats["min"].setText(si(float(finite.min()), self.units))
            self.stats["max"].setText(si(float(finite.max()), self.units))
        self.stats["readings"].setText(str(self.readings))
