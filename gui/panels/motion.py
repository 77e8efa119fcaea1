"""Motion: every Movable device with its live position, limits, absolute and relative moves,
home and stop. Stop (one axis or all) is open to observers, as on the daemon: stopping only
makes the bench safer.

Moves are sent with ``wait`` so the row can say when the axis settled or why it did not; the
position column follows the daemon's position stream (5 per second) meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from client import AsyncBench, DeviceInfo, MoveResult, Position

from ..guard import Guard
from ..state import BenchState
from ..widgets import ErrorLabel, button, error_text, muted, readout

log = logging.getLogger("gui.actions")

HEADERS = ["Axis", "Position", "", "Limits", "Move to", "", "Step", "", "", "", ""]


class _Axis:
    def __init__(self, panel: MotionPanel, device: DeviceInfo, row: int) -> None:
        self.panel, self.name, self.units = panel, device.name, device.units
        self.limits = device.position_limits
        guard, grid = panel.guard, panel.grid
        self.label = QLabel(device.name)
        self.label.setToolTip(device.identity)
        self.position = readout()
        self.position.setMinimumWidth(110)
        self.unit_label = muted(device.units)
        low_high = f"{self.limits[0]:g} … {self.limits[1]:g}" if self.limits else "none set"
        self.limit_label = muted(low_high)
        self.limit_label.setToolTip("software position limits reported by the daemon")
        self.target = QLineEdit()
        self.target.setPlaceholderText(f"position ({device.units})")
        self.target.setMaximumWidth(110)
        self.target.returnPressed.connect(self.move_to)
        self.go = button("Move", "primary", f"Move {device.name} to the position typed (Enter)")
        self.go.clicked.connect(self.move_to)
        self.step = QLineEdit("1")
        self.step.setMaximumWidth(70)
        self.step.setToolTip(f"step of a relative move ({device.units})")
        self.minus = button("−", tooltip="Move back by the step")
        self.plus = button("+", tooltip="Move forward by the step")
        self.minus.clicked.connect(lambda: self.move_by(-1))
        self.plus.clicked.connect(lambda: self.move_by(+1))
        for small in (self.minus, self.plus):
            small.setFixedWidth(32)
        self.home = button("Home", tooltip=f"Find {device.name}'s home (reference) position")
        self.home.clicked.connect(self.go_home)
        self.stop = button("Stop", "danger", f"Stop {device.name} now (open to observers)")
        self.stop.clicked.connect(self.stop_now)
        self.status = muted("")
        self.error = ErrorLabel()
        cells: list[QWidget] = [
            self.label,
            self.position,
            self.unit_label,
            self.limit_label,
            self.target,
            self.go,
            self.step,
            self.minus,
            self.plus,
            self.home,
            self.stop,
        ]
        for column, cell in enumerate(cells):
            grid.addWidget(cell, row, column)
        grid.addWidget(self.status, row, len(cells))
        grid.addWidget(self.error, row + 1, 1, 1, len(cells))
        guard.mutating(self.target, self.go, self.step, self.minus, self.plus, self.home)
        guard.safety(self.stop)
        if "home" not in device.operations:
            guard.enable(self.home, False)
            guard.set_tooltip(self.home, f"{device.name} has no home search")

    def show(self, position: Position) -> None:
        self.position.setText(f"{position.position:.4f}")

    def _number(self, field: QLineEdit, what: str) -> float | None:
        try:
            return float(field.text())
        except ValueError:
            self.error.show_error(f"{what}: {field.text()!r} is not a number ({self.units})")
            return None

    def _moving(self, what: str) -> tuple[Any, Any]:
        self.error.clear_error()
        self.status.setText(f"moving {what}…")
        log.info("move %s %s", self.name, what)

        def done(result: MoveResult) -> None:
            self.status.setText("settled" if result.settled else "moving")
            self.position.setText(f"{result.position:.4f}")
            log.info("%s at %.4f %s", self.name, result.position, result.units)

        def failed(error: BaseException) -> None:
            self.status.setText("")
            self.error.show_error(error_text(error))
            log.warning("move %s refused: %s", self.name, error_text(error))

        return done, failed

    def move_to(self) -> None:
        target = self._number(self.target, "target")
        if target is None:
            return
        done, failed = self._moving(f"to {target:g} {self.units}")
        name = self.name
        self.panel.state.connection.call(lambda b: b.move_to(name, target), done, failed)

    def move_by(self, sign: int) -> None:
        step = self._number(self.step, "step")
        if step is None:
            return
        distance = sign * step
        done, failed = self._moving(f"by {distance:+g} {self.units}")
        name = self.name
        self.panel.state.connection.call(lambda b: b.move_by(name, distance), done, failed)

    def go_home(self) -> None:
        _, failed = self._moving("home")
        name = self.name

        async def home(bench: AsyncBench) -> Any:
            return await bench.home(name)

        def homed(result: Any) -> None:
            self.status.setText("homed")
            log.info("%s homed", self.name)

        self.panel.state.connection.call(home, homed, failed)

    def stop_now(self) -> None:
        log.info("stop %s", self.name)
        name = self.name

        def done(position: Position) -> None:
            self.status.setText("stopped")
            self.show(position)

        def failed(error: BaseException) -> None:
            self.error.show_error(error_text(error))

        self.panel.state.connection.call(lambda b: b.stop(name), done, failed)


class MotionPanel(QWidget):
    def __init__(self, state: BenchState, guard: Guard) -> None:
        super().__init__()
        self.state, self.guard = state, guard
        self.stop_all = button("Stop all axes", "danger", "Stop every axis now (open to observers)")
        self.stop_all.clicked.connect(self._stop_all)
        guard.safety(self.stop_all)
        top = QHBoxLayout()
        note = muted("Positions stream from the daemon 5× a second; Enter in a field moves.")
        note.setWordWrap(True)
        top.addWidget(note, 1)
        top.addStretch(1)
        top.addWidget(self.stop_all)
        self.body = QWidget()
        self.grid = QGridLayout(self.body)
        self.grid.setHorizontalSpacing(6)
        self.grid.setVerticalSpacing(2)
        self.grid.setContentsMargins(6, 6, 6, 6)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(scroll, 1)
        self.axes: dict[str, _Axis] = {}
        for column, title in enumerate(HEADERS):
            header = muted(title)
            header.setStyleSheet("font-weight: 600;")
            self.grid.addWidget(header, 0, column, Qt.AlignmentFlag.AlignLeft)
        state.devices_changed.connect(self._on_devices)
        state.position_changed.connect(self._on_position)

    def _on_devices(self, devices: list[DeviceInfo]) -> None:
        for device in devices:
            if "Movable" in device.capabilities and device.name not in self.axes:
                row = 1 + 2 * len(self.axes)
                self.axes[device.name] = _Axis(self, device, row)
                self.grid.setRowStretch(row + 2, 0)
        self.grid.setRowStretch(1 + 2 * len(self.axes), 1)
        self.grid.setColumnStretch(len(HEADERS), 1)

    def _on_position(self, position: Position) -> None:
        axis = self.axes.get(position.device)
        if axis is not None:
            axis.show(position)

    def _stop_all(self) -> None:
        for axis in self.axes.values():
            axis.stop_now()

    def axis(self, name: str) -> _Axis:
        return self.axes[name]
