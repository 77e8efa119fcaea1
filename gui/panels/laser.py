"""Laser: wavelength (setpoint and actual), shutter, emission, power and warm-up, with the
interlocks that decide what may be switched on.

The laser is the device with ``shutter`` and ``emission`` parameters (the Mai Tai). Opening
the shutter and switching emission on are hazardous: the daemon refuses them while the
emergency stop is latched, and refuses emission unless the shutter is confirmed closed; the
panel shows each of those conditions before the click, and the daemon's refusal after it.
The laser's own hardware interlock is shown if the driver reports it as a parameter (one named
``interlock``); the Mai Tai driver does not (its status-byte bits are unconfirmed, see
shared/reference/maitai.md), and the panel says so rather than guess.

What the driver is doing (``status``: "waiting for warm-up: 63 % (emission at 100 %)") shows
under the warm-up bar: emission waits for 100 %, so a click on **On** during warm-up is not
lost, it is pending. After an emergency stop the driver reads the shutter back (``SHUT?``) and
says so in ``safe_state``: the panel shows *confirming*, then *confirmed* (green) or *NOT
CONFIRMED* (red: treat the beam as on) with the driver's own sentence.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from client import AsyncBench, EmergencyStopEvent, ParameterInfo, ParameterValue, Reading

from .. import theme
from ..connection import Session, Watch
from ..editors import ParameterEditor
from ..guard import Guard
from ..state import BenchState
from ..widgets import ErrorLabel, button, error_text, muted, readout, si

log = logging.getLogger("gui.actions")


def _chip(label: QLabel, text: str, colour: str) -> None:
    label.setText(text)
    label.setStyleSheet(
        f"color: {colour}; border: 1px solid {colour}; border-radius: 3px; padding: 2px 8px;"
        " font-weight: 700;"
    )


class LaserPanel(QWidget):
    def __init__(self, state: BenchState, guard: Guard) -> None:
        super().__init__()
        self.state, self.guard = state, guard
        self.laser = ""
        self.title = muted("No laser on this bench (a device with shutter and emission)")
        self.title.setWordWrap(True)
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)

        wavelength = QGroupBox("Wavelength")
        self.wavelength_form = QFormLayout(wavelength)
        self.actual = readout()
        self.wavelength_form.addRow("Actual", self.actual)
        body.addWidget(wavelength)

        beam = QGroupBox("Beam")
        form = QFormLayout(beam)
        self.shutter_state, self.emission_state = QLabel("—"), QLabel("—")
        self.open_shutter = button("Open", tooltip="Open the output shutter (hazardous)")
        self.close_shutter = button("Close", tooltip="Close the output shutter")
        self.emission_on = button("On", tooltip="Pump diodes on (needs the shutter closed)")
        self.emission_off = button("Off", tooltip="Pump diodes off")
        for widget, name, value in (
            (self.open_shutter, "shutter", True),
            (self.close_shutter, "shutter", False),
            (self.emission_on, "emission", True),
            (self.emission_off, "emission", False),
        ):
            widget.clicked.connect(lambda _=False, n=name, v=value: self._switch(n, v))
        guard.mutating(self.open_shutter, self.close_shutter, self.emission_on, self.emission_off)
        row = QHBoxLayout()
        row.addWidget(self.shutter_state)
        row.addStretch(1)
        row.addWidget(self.open_shutter)
        row.addWidget(self.close_shutter)
        form.addRow("Shutter", row)
        row = QHBoxLayout()
        row.addWidget(self.emission_state)
        row.addStretch(1)
        row.addWidget(self.emission_on)
        row.addWidget(self.emission_off)
        form.addRow("Emission", row)
        self.power = readout()
        form.addRow("Power", self.power)
        self.warmup = QProgressBar()
        self.warmup.setRange(0, 100)
        self.warmup.setFormat("%p %")
        form.addRow("Warm-up", self.warmup)
        self.status = muted("")
        self.status.setWordWrap(True)
        self.status.setToolTip("what the laser's driver is doing or waiting for")
        form.addRow("Driver", self.status)
        self.error = ErrorLabel()
        form.addRow(self.error)
        body.addWidget(beam)

        interlocks = QGroupBox("Interlocks")
        self.interlock_form = QFormLayout(interlocks)
        self.interlocks: dict[str, QLabel] = {}
        for key, title in (
            ("estop", "Emergency stop"),
            ("shutter_rule", "Emission rule"),
            ("warmup", "Warm-up"),
            ("hardware", "Laser interlock"),
            ("safe_state", "E-stop safe state"),
        ):
            label = QLabel("—")
            label.setWordWrap(True)
            self.interlocks[key] = label
            self.interlock_form.addRow(title, label)
        self.safe_state = muted("")
        self.safe_state.setWordWrap(True)
        self.safe_state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.interlock_form.addRow("", self.safe_state)
        body.addWidget(interlocks)
        body.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.body)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(scroll, 1)
        scroll.setVisible(False)
        self._scroll = scroll
        self._editor: ParameterEditor | None = None
        self._watch: Watch | None = None
        state.parameters_listed.connect(self._on_listed)
        state.parameter_changed.connect(self._on_value)
        state.estop_event.connect(self._on_estop)
        state.connection.connected.connect(self._on_connected)

    def _on_connected(self, session: Session) -> None:
        self._watch = None
        if self.laser:
            self._follow_power()

    def _on_listed(self, device: str, infos: list[ParameterInfo]) -> None:
        names = {i.name for i in infos}
        if not {"shutter", "emission"} <= names or (self.laser and device != self.laser):
            return
        first = not self.laser
        self.laser = device
        identity = self.state.devices[device].identity if device in self.state.devices else ""
        self.title.setText(f"{device} · {identity}" if identity else device)
        self._scroll.setVisible(True)
        wavelength = next((i for i in infos if i.name == "wavelength"), None)
        if wavelength is not None and self._editor is None:
            self._editor = ParameterEditor(self.state, self.guard, wavelength)
            self.wavelength_form.insertRow(0, f"Setpoint ({wavelength.units})", self._editor)
            self.wavelength_form.insertRow(1, self._editor.error)
            limits = wavelength.limits
            if limits:
                self.wavelength_form.insertRow(
                    2, "Range", muted(f"{limits[0]:g} … {limits[1]:g} nm")
                )
        if "interlock" not in names:
            _chip(self.interlocks["hardware"], "not reported", theme.MUTED)
            self.interlocks["hardware"].setToolTip(
                "This driver does not report the laser's own interlock (the Mai Tai's status-byte"
                " bits are unconfirmed); check the front panel."
            )
        for name in (
            "wavelength",
            "actual_wavelength",
            "shutter",
            "emission",
            "warmup",
            "power",
            "interlock",
            "status",
            "safe_state",
        ):
            value = self.state.values.get((device, name))
            if value is not None:
                self._on_value(value)
        self._update_rules()
        if first:
            self._follow_power()

    def _follow_power(self) -> None:
        laser = self.laser

        def stream(bench: AsyncBench) -> Any:
            return bench.stream_values(laser, 1.0)

        self._watch = self.state.connection.watch(stream, self._on_power, latest=True)

    def _on_power(self, reading: Reading) -> None:
        self.power.setText(si(reading.value, reading.units))

    def _on_value(self, value: ParameterValue) -> None:
        if value.device != self.laser:
            return
        if value.name == "wavelength" and self._editor is not None:
            self._editor.show_value(value)
        elif value.name == "actual_wavelength":
            self.actual.setText(f"{float(value.value or 0):.1f} nm")
        elif value.name == "shutter":
            if value.value:
                _chip(self.shutter_state, "OPEN", theme.RED)
            else:
                _chip(self.shutter_state, "CLOSED", theme.GREEN)
        elif value.name == "emission":
            if value.value:
                _chip(self.emission_state, "ON", theme.AMBER)
            else:
                _chip(self.emission_state, "OFF", theme.MUTED)
        elif value.name == "warmup":
            self.warmup.setValue(int(float(value.value or 0)))
        elif value.name == "status":
            self.status.setText(str(value.value or "") or "idle")
        elif value.name == "safe_state":
            self._show_safe_state(str(value.value or ""))
        elif value.name == "power" and self.power.text() == "—":
            self.power.setText(si(float(value.value or 0.0), value.units))
        elif value.name == "interlock":
            ok = value.value in (True, "ok", "closed", "OK")
            _chip(self.interlocks["hardware"], str(value.value), theme.GREEN if ok else theme.RED)
        self._update_rules()

    def _show_safe_state(self, text: str) -> None:
        """The driver's read-back of the shutter after an e-stop, as a verdict and its words."""
        label = self.interlocks["safe_state"]
        lowered = text.lower()
        if not text:
            _chip(label, "no e-stop since the driver started", theme.MUTED)
        elif lowered.startswith("not confirmed"):
            _chip(label, "NOT CONFIRMED: treat the beam as ON", theme.RED)
        elif lowered.startswith("confirmed"):
            _chip(label, "shutter confirmed closed", theme.GREEN)
        elif lowered.startswith("reset before"):
            _chip(label, "reset before confirmation", theme.AMBER)
        else:
            _chip(label, "confirming the shutter…", theme.AMBER)
        self.safe_state.setText(text)
        self.safe_state.setVisible(bool(text))

    def _on_estop(self, event: EmergencyStopEvent) -> None:
        self._update_rules()

    def _update_rules(self) -> None:
        if not self.laser:
            return
        if self.state.latched:
            reason = self.state.latch_event.reason if self.state.latch_event else ""
            _chip(self.interlocks["estop"], "LATCHED", theme.RED)
            self.interlocks["estop"].setToolTip(
                f"{reason}: opening the shutter and emission on are refused until reset"
            )
        else:
            _chip(self.interlocks["estop"], "clear", theme.GREEN)
        shutter = self.state.value(self.laser, "shutter")
        if shutter:
            _chip(self.interlocks["shutter_rule"], "emission on refused: shutter open", theme.AMBER)
        else:
            _chip(self.interlocks["shutter_rule"], "ok: shutter closed", theme.GREEN)
        warmup = float(self.state.value(self.laser, "warmup") or 0.0)
        if warmup >= 100:
            _chip(self.interlocks["warmup"], "warm (100 %)", theme.GREEN)
        else:
            _chip(
                self.interlocks["warmup"],
                f"warming up ({warmup:.0f} %): emission waits for 100 %",
                theme.AMBER,
            )
        if self.state.value(self.laser, "safe_state") is None:
            self._show_safe_state("")
        self.guard.enable(self.open_shutter, not self.state.latched)
        self.guard.enable(self.emission_on, not self.state.latched and not shutter)

    def _switch(self, name: str, value: bool) -> None:
        laser = self.laser
        log.info("set %s.%s = %s", laser, name, "on" if value else "off")

        def failed(error: BaseException) -> None:
            self.error.show_error(error_text(error))
            log.warning("%s.%s refused: %s", laser, name, error_text(error))

        self.error.clear_error()
        self.state.connection.call(lambda b: b.set(laser, name, value), None, failed)
