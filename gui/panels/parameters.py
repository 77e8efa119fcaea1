"""Parameters: one device's parameter tree with editors, units, limits or choices, the value
asked for (desired) beside what the hardware reports (read-back), the source of the last
change, and the daemon's refusal inline under the row."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from client import ParameterInfo, ParameterValue

from .. import theme
from ..editors import ParameterEditor, limits_text
from ..guard import Guard
from ..state import BenchState
from ..widgets import format_value, muted, value_label

HEADERS = ["Parameter", "Set to", "Read-back", "Desired", "Units", "Limits / choices", "Source"]


class _Row:
    def __init__(
        self,
        editor: ParameterEditor | None,
        readback: QLabel,
        desired: QLabel,
        source: QLabel,
        name: QLabel,
    ) -> None:
        self.editor, self.readback, self.desired, self.source, self.name = (
            editor,
            readback,
            desired,
            source,
            name,
        )


class ParametersPanel(QWidget):
    def __init__(self, state: BenchState, guard: Guard) -> None:
        super().__init__()
        self.state, self.guard = state, guard
        self.device = QComboBox()
        self.device.setMinimumWidth(160)
        self.device.currentTextChanged.connect(self.show_device)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter parameters")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._apply_filter)
        top = QHBoxLayout()
        top.addWidget(QLabel("Device"))
        top.addWidget(self.device, 1)
        top.addWidget(self.filter, 1)
        self.scroller = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        self._new_body()
        self.note = muted("")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.note)
        self.rows: dict[str, _Row] = {}
        self._widgets: list[tuple[str, list[QWidget]]] = []
        self.shown = ""
        self._wanted = ""
        state.parameters_listed.connect(self._on_listed)
        state.parameter_changed.connect(self._on_value)
        state.devices_changed.connect(self._on_devices)

    def _on_devices(self, devices: list[object]) -> None:
        names = [n for n, d in self.state.devices.items() if "Parameterized" in d.capabilities]
        if names != [self.device.itemText(i) for i in range(self.device.count())]:
            current = self.device.currentText()
            self.device.blockSignals(True)
            self.device.clear()
            self.device.addItems(names)
            self.device.blockSignals(False)
            cameras = [n for n in self.state.cameras if n in names]
            default = cameras[0] if cameras else (names[0] if names else "")
            if self._wanted in names:
                current = self._wanted
            self.select(current if current in names else default)

    def select(self, device: str) -> None:
        """Show ``device`` (once the daemon has listed it, if it has not yet)."""
        self._wanted = device
        index = self.device.findText(device)
        if index >= 0:
            if self.device.currentIndex() != index:
                self.device.setCurrentIndex(index)  # show_device follows
            elif self.shown != device:
                self.show_device(device)

    def _on_listed(self, device: str, infos: list[ParameterInfo]) -> None:
        if device == self.device.currentText():
            self.show_device(device)

    def show_device(self, device: str) -> None:
        """Rebuild the grid for ``device`` from the parameters the daemon listed."""
        self._new_body()  # the scroll area deletes the old one with its editors
        self.rows.clear()
        self._widgets.clear()
        self.shown = device
        infos = self.state.infos.get(device)
        if not device or infos is None:
            self.note.setText("No parameters listed yet" if device else "")
            return
        for column, title in enumerate(HEADERS):
            header = muted(title)
            header.setStyleSheet("font-weight: 600;")
            self.grid.addWidget(header, 0, column)
        row = 1
        for info in infos.values():
            name = QLabel(info.name + ("  ⚠" if info.hazardous else ""))
            name.setToolTip(
                (info.description or info.name)
                + ("\nhazardous: refused while the e-stop is latched" if info.hazardous else "")
                + ("\nread-only: reported by the device" if info.read_only else "")
            )
            editor = None if info.read_only else ParameterEditor(self.state, self.guard, info)
            readback, desired = value_label(), value_label()
            readback.setWordWrap(True)
            desired.setWordWrap(True)
            source = muted()
            limits = muted(f"{len(info.choices)} choices" if info.choices else limits_text(info))
            limits.setToolTip(limits_text(info))
            units = muted(info.units)
            cells: list[QWidget] = [
                name,
                editor or muted("read-only"),
                readback,
                desired,
                units,
                limits,
                source,
            ]
            for column, cell in enumerate(cells):
                self.grid.addWidget(cell, row, column)
            widgets = list(cells)
            if editor is not None:
                self.grid.addWidget(editor.error, row + 1, 1, 1, len(HEADERS) - 1)
                widgets.append(editor.error)
            self._widgets.append((info.name, widgets))
            self.rows[info.name] = _Row(editor, readback, desired, source, name)
            value = self.state.values.get((device, info.name))
            if value is not None:
                self._show(self.rows[info.name], value)
            row += 2
        for column, stretch in ((1, 3), (2, 2), (3, 2), (5, 1)):
            self.grid.setColumnStretch(column, stretch)
        self.grid.setRowStretch(row, 1)
        for info in infos.values():  # the desired values: only Get replies carry them
            if not info.read_only:
                self._get(device, info.name)
        self.note.setText(
            f"{len(infos)} parameters · read-back: what the hardware reports · desired: what was"
            " last asked for · ⚠ hazardous"
        )
        self._apply_filter(self.filter.text())

    def _new_body(self) -> None:
        self.body = QWidget()
        self.grid = QGridLayout(self.body)
        self.grid.setContentsMargins(6, 6, 6, 6)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(3)
        self.scroller.setWidget(self.body)

    def _get(self, device: str, name: str) -> None:
        self.state.connection.call(lambda b: b.get(device, name), self.state.record)

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for name, widgets in self._widgets:
            visible = needle in name.lower()
            for widget in widgets:
                if widget.property("role") == "error":
                    widget.setVisible(visible and bool(widget.text()))  # type: ignore[attr-defined]
                else:
                    widget.setVisible(visible)

    def _on_value(self, value: ParameterValue) -> None:
        if value.device == self.shown and value.name in self.rows:
            self._show(self.rows[value.name], value)

    def _show(self, row: _Row, value: ParameterValue) -> None:
        row.readback.setText(format_value(value.value))
        row.desired.setText(format_value(value.desired) if value.desired is not None else "")
        row.source.setText(value.source)
        mismatch = (
            value.desired is not None
            and value.desired != value.value
            and not (
                isinstance(value.desired, float)
                and isinstance(value.value, float)
                and abs(value.desired - value.value) <= 1e-9 * max(1.0, abs(value.desired))
            )
        )
        row.readback.setStyleSheet(f"color: {theme.AMBER};" if mismatch else "")
        row.readback.setToolTip(
            "the hardware reports a value other than the one asked for" if mismatch else ""
        )
        if row.editor is not None:
            row.editor.show_value(value)
