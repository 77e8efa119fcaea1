"""One parameter's editor: parse what the operator typed, send it, show the daemon's answer.

The daemon validates every value before it reaches the hardware (limits, choices, the e-stop
latch) and says why it refused; the editor shows that message inline under the control, word
for word, and marks the field. Only what the daemon cannot see is checked here: text that is
not a number for a numeric parameter. The field shows the value asked for; the read-back
(what the hardware reports) is shown next to it by whoever places the editor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLineEdit, QPushButton, QWidget

from client import AsyncBench, ParameterInfo, ParameterValue

from . import theme
from .guard import Guard
from .state import BenchState
from .widgets import ErrorLabel, PlainValue, error_text, format_value

log = logging.getLogger("gui.actions")


def parse(info: ParameterInfo, text: str) -> bool | int | float | str:
    """The typed text as the parameter's type; ValueError with a message the operator reads."""
    text = text.strip()
    if info.dtype == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(
                f"{info.name}: {text!r} is not a number (a value in {info.units or 'its units'})"
            ) from None
    if info.dtype == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{info.name}: {text!r} is not a whole number") from None
    if info.dtype == "bool":
        lowered = text.lower()
        if lowered in ("1", "true", "on", "yes", "open"):
            return True
        if lowered in ("0", "false", "off", "no", "closed"):
            return False
        raise ValueError(f"{info.name}: {text!r} is not on / off")
    return text


async def set_parameter(
    bench: AsyncBench, device: str, name: str, value: bool | int | float | str, *, camera: bool
) -> ParameterValue:
    """Set a parameter; a camera in live view is stopped for the change and started again.

    The camera takes acquisition settings (exposure, binning, ROI, ...) only between
    acquisitions and refuses them while one runs; a live view is the GUI's own, so the GUI
    pauses it around the change (as Micro-Manager does). A sequence (a run recording) is never
    interrupted: the daemon's refusal is shown instead.
    """
    restart = False
    if camera:
        status = await bench.acquisition(device)
        restart = status.running and status.frames_requested == 0
        if restart:
            await bench.stop_acquisition(device)
    try:
        return await bench.set(device, name, value)
    finally:
        if restart:
            await bench.start_acquisition(device)


def limits_text(info: ParameterInfo) -> str:
    if info.choices:
        return " | ".join(format_value(c) for c in info.choices)
    if info.limits:
        low, high = info.limits
        return f"{low:g} … {high:g}"
    return ""


class ParameterEditor(QWidget):
    """An editor for one writable parameter: a field (Enter or Set applies), a choice list or a
    check box, with an inline error label (``self.error``) the owner places under it."""

    applied = Signal(object)  # ParameterValue the daemon answered with

    def __init__(
        self,
        state: BenchState,
        guard: Guard,
        info: ParameterInfo,
        *,
        with_button: bool = True,
    ) -> None:
        super().__init__()
        self.state = state
        self.info = info
        self.error = ErrorLabel()
        self.key = f"{info.device}.{info.name}"
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.field: QLineEdit | None = None
        self.choice: QComboBox | None = None
        self.check: QCheckBox | None = None
        self.button: QPushButton | None = None
        tip = info.description or info.name
        if info.limits and not info.choices:
            tip += f"\nallowed: {limits_text(info)} {info.units}".rstrip()
        if info.hazardous:
            tip += "\nhazardous: refused while the emergency stop is latched"
        if info.choices:
            self.choice = QComboBox()
            for choice in info.choices:
                self.choice.addItem(format_value(choice), choice)
            self.choice.activated.connect(lambda _: self._submit_choice())
            self.choice.setToolTip(tip)
            layout.addWidget(self.choice, 1)
            guard.mutating(self.choice)
        elif info.dtype == "bool":
            self.check = QCheckBox("on")
            self.check.clicked.connect(lambda checked: self.submit(bool(checked)))
            self.check.setToolTip(tip)
            layout.addWidget(self.check, 1)
            guard.mutating(self.check)
        else:
            self.field = QLineEdit()
            self.field.setPlaceholderText(info.units or info.dtype)
            self.field.setMinimumWidth(90)
            self.field.setToolTip(tip + "\nEnter applies")
            self.field.returnPressed.connect(self._submit_text)
            self.field.textEdited.connect(lambda _: self._mark(""))
            layout.addWidget(self.field, 1)
            guard.mutating(self.field)
            if with_button:
                self.button = QPushButton("Set")
                self.button.setToolTip(f"Set {self.key}")
                self.button.clicked.connect(self._submit_text)
                layout.addWidget(self.button)
                guard.mutating(self.button)
        current = state.values.get((info.device, info.name))
        if current is not None:
            self.show_value(current)

    # -- showing --------------------------------------------------------------------------------

    def show_value(self, value: ParameterValue) -> None:
        """A new sample from the daemon: the field follows it unless the operator is typing."""
        shown: PlainValue = value.desired if value.desired is not None else value.value
        typing = self.field is not None and (
            self.field.isModified() or self.field.hasFocus() or self.field.property("invalid")
        )  # the operator's text (or a refused value to correct) is never overwritten
        if self.field is not None and not typing:
            self.field.setText(format_value(shown))
        elif self.choice is not None:
            index = self.choice.findData(value.value)
            if index >= 0:
                self.choice.setCurrentIndex(index)
        elif self.check is not None:
            self.check.setChecked(bool(value.value))

    def _mark(self, message: str) -> None:
        self.error.show_error(message)
        if self.field is not None:
            self.field.setProperty("invalid", bool(message))
            theme.restyle(self.field)

    # -- applying -------------------------------------------------------------------------------

    def _submit_text(self) -> None:
        assert self.field is not None
        try:
            value = parse(self.info, self.field.text())
        except ValueError as error:
            self._mark(str(error))
            return
        self.submit(value)

    def _submit_choice(self) -> None:
        assert self.choice is not None
        value = self.choice.currentData()
        if isinstance(value, (bool, int, float, str)):
            self.submit(value)

    def submit(
        self, value: bool | int | float | str, after: Callable[[], None] | None = None
    ) -> None:
        device, name = self.info.device, self.info.name
        log.info("set %s = %s", self.key, format_value(value))

        def done(answer: ParameterValue) -> None:
            self._mark("")
            if self.field is not None:
                self.field.setModified(False)
                self.field.setText(format_value(answer.value))
            log.info("%s is %s %s", self.key, format_value(answer.value), answer.units)
            self.state.record(answer)
            self.applied.emit(answer)
            if after is not None:
                after()

        def failed(error: BaseException) -> None:
            message = error_text(error)
            self._mark(message)
            log.warning("set %s refused: %s", self.key, message)
            current = self.state.values.get((device, name))
            if current is not None and self.field is None:
                self.show_value(current)  # the box or list goes back to what the device has

        known = self.state.devices.get(device)
        camera = known is not None and "FrameProducer" in known.capabilities
        self.state.connection.call(
            lambda b: set_parameter(b, device, name, value, camera=camera), done, failed
        )
