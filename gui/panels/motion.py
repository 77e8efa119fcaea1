"""Motion: every Movable device with its live position, limits, absolute and relative moves,
home, motor on and stop. Stop (one axis or all) is open to observers, as on the daemon:
stopping only makes the bench safer.

Moves are sent with ``wait`` so the row can say when the axis settled or why it did not.
Positions come from two streams, the newer one shown: the daemon's position stream (5 per
second, answered between moves) and the axis's ``position`` parameter, which the driver reports
while it polls its own motion — so the column moves *during* a move, not only after it.

Home runs the client's ``stream_home``: the row shows the search's time and position as it
goes, then "homed at …". An ESP300 axis whose motor is off (a fault, or power-up) says so with
the controller's fault text, and offers **Motor on** (hazardous: refused while the e-stop is
latched); re-home afterwards, the position may be lost.
"""

from __future__ import annotations

import logging
import math
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

from client import (
    AsyncBench,
    DeviceInfo,
    HomeProgress,
    MotorState,
    MoveResult,
    ParameterValue,
    Position,
)

from .. import theme
from ..guard import Guard
from ..state import BenchState
from ..widgets import ErrorLabel, button, error_text, muted, readout

log = logging.getLogger("gui.actions")

HEADERS = ["Axis", "Position", "", "Limits", "Move to", "", "Step", "", "", "", "", ""]


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
        self.motor_on = button(
            "Motor on",
            "primary",
            f"Switch {device.name}'s motor on after a fault or power-up (refused while the"
            " e-stop is latched); home afterwards: the position may be lost",
        )
        self.motor_on.clicked.connect(self.switch_motor_on)
        self.motor_on.setVisible(False)
        self.status = muted("")
        self.shown_at = 0.0  # the timestamp of the position shown (the newer source wins)
        self._motor_note = ""  # the motor-off note last shown (a repeat does not hide news)
        self.homing = False
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
            self.motor_on,
        ]
        for column, cell in enumerate(cells):
            grid.addWidget(cell, row, column)
        grid.addWidget(self.status, row, len(cells))
        grid.addWidget(self.error, row + 1, 1, 1, len(cells))
        guard.mutating(
            self.target, self.go, self.step, self.minus, self.plus, self.home, self.motor_on
        )
        guard.safety(self.stop)
        if "home" not in device.operations:
            guard.enable(self.home, False)
            guard.set_tooltip(self.home, f"{device.name} has no home search")

    def show(self, position: Position) -> None:
        self.show_at(position.position, position.timestamp)

    def show_at(self, position: float, timestamp: float) -> None:
        if timestamp and timestamp < self.shown_at:
            return  # an older answer than the one shown (the two streams interleave)
        self.shown_at = timestamp or self.shown_at
        self.position.setText(f"{position:.4f}")

    def on_parameter(self, value: ParameterValue) -> None:
        if value.name == "position" and isinstance(value.value, int | float):
            self.show_at(float(value.value), value.timestamp)
        elif value.name in ("motor", "fault"):
            self._show_motor()

    def _show_motor(self) -> None:
        state = self.panel.state
        motor = state.value(self.name, "motor")
        if motor is None:
            return
        off = motor is False
        self.motor_on.setVisible(off)
        if off:
            fault = str(state.value(self.name, "fault") or "no fault recorded")
            self.status.setText("MOTOR OFF")
            self.status.setStyleSheet(f"color: {theme.RED}; font-weight: 700;")
            note = f"motor off: {fault}. Motor on, then home."
            if note != self._motor_note:  # news; the same note again must not hide a refusal
                self._motor_note = note
                self.error.show_error(note)
        elif self.status.text() == "MOTOR OFF":
            self._motor_note = ""
            self.status.setText("motor on")
            self.status.setStyleSheet("")
            self.error.clear_error()

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
        name, units = self.name, self.units
        self.homing = True
        self.status.setText("homing…")
        connection = self.panel.state.connection

        def step(progress: HomeProgress) -> None:
            if not self.homing:
                return
            at = "" if math.isnan(progress.position) else f" · at {progress.position:.4f} {units}"
            self.status.setText(f"homing… {progress.elapsed:.1f} s{at}")
            if not math.isnan(progress.position):
                self.show_at(progress.position, progress.timestamp)

        report = connection.on_qt(step)

        async def home(bench: AsyncBench) -> Position:
            return await bench.home(name, progress=report)

        def homed(result: Position) -> None:
            self.homing = False
            self.status.setText(f"homed at {result.position:.4f} {result.units}")
            self.show(result)
            log.info("%s homed at %.4f %s", name, result.position, result.units)

        def refused(error: BaseException) -> None:
            self.homing = False
            failed(error)

        connection.call(home, homed, refused)

    def switch_motor_on(self) -> None:
        name = self.name
        self.error.clear_error()
        log.info("motor on %s", name)

        def done(state: MotorState) -> None:
            self.status.setText("motor on: home it" if state.motor_on else "motor still off")
            self.status.setStyleSheet("")
            self.motor_on.setVisible(not state.motor_on)
            if not state.motor_on:
                self.error.show_error(f"motor still off: {state.fault}")

        def failed(error: BaseException) -> None:
            self.error.show_error(error_text(error))
            log.warning("motor on %s refused: %s", name, error_text(error))

        self.panel.state.connection.call(lambda b: b.motor_on(name), done, failed)

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
        note = muted("Live positions, also during moves; Enter in a field moves.")
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
        state.parameter_changed.connect(self._on_parameter)

    def _on_devices(self, devices: list[DeviceInfo]) -> None:
        for device in devices:
            if "Movable" in device.capabilities and device.name not in self.axes:
                row = 1 + 2 * len(self.axes)
                axis = self.axes[device.name] = _Axis(self, device, row)
                axis._show_motor()  # its parameters may have come first
                self.grid.setRowStretch(row + 2, 0)
        self.grid.setRowStretch(1 + 2 * len(self.axes), 1)
        self.grid.setColumnStretch(len(HEADERS), 1)

    def _on_position(self, position: Position) -> None:
        axis = self.axes.get(position.device)
        if axis is not None:
            axis.show(position)

    def _on_parameter(self, value: ParameterValue) -> None:
        axis = self.axes.get(value.device)
        if axis is not None:
            axis.on_parameter(value)

    def _stop_all(self) -> None:
        for axis in self.axes.values():
            axis.stop_now()

    def axis(self, name: str) -> _Axis:
        return self.axes[name]
