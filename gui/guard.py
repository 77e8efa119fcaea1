"""Which controls may be used now: one place decides, every panel registers its controls.

A control that changes the bench is *mutating*: disabled, with a tooltip saying why, while the
GUI is disconnected or its token is an observer's (the daemon would refuse it anyway, with
PERMISSION_DENIED; the GUI says so before the click). A *safety* control (emergency stop, stop a
stage) is open to observers, as on the daemon, and only needs a connection. Panels also have
their own conditions (Pause only while a scan runs): :meth:`Guard.enable` combines both.
"""

from __future__ import annotations

import shiboken6
from PySide6.QtWidgets import QWidget

OBSERVER_REASON = (
    "Read-only: this GUI's token has the observer role, which may watch and stop but not change"
    " the bench. Start benchd-gui with an operator token (--token) to use this control."
)


class Guard:
    def __init__(self) -> None:
        self._controls: dict[QWidget, tuple[bool, bool, str]] = {}  # safety, wanted, tooltip
        self.connected = False
        self.operator = False
        self.client = ""

    def mutating(self, *widgets: QWidget) -> None:
        for widget in widgets:
            self._add(widget, safety=False)

    def safety(self, *widgets: QWidget) -> None:
        for widget in widgets:
            self._add(widget, safety=True)

    def _add(self, widget: QWidget, *, safety: bool) -> None:
        self._controls[widget] = (safety, True, widget.toolTip())
        widget.destroyed.connect(lambda _=None, w=widget: self._controls.pop(w, None))
        self._apply(widget)

    def enable(self, widget: QWidget, wanted: bool) -> None:
        """The panel's own condition for ``widget``; the guard's still applies."""
        safety, _, tooltip = self._controls.get(widget, (False, True, widget.toolTip()))
        self._controls[widget] = (safety, wanted, tooltip)
        self._apply(widget)

    def set_tooltip(self, widget: QWidget, tooltip: str) -> None:
        safety, wanted, _ = self._controls[widget]
        self._controls[widget] = (safety, wanted, tooltip)
        self._apply(widget)

    def update(self, *, connected: bool, operator: bool) -> None:
        self.connected, self.operator = connected, operator
        for widget in list(self._controls):
            if shiboken6.isValid(widget):
                self._apply(widget)
            else:
                self._controls.pop(widget, None)

    def reason(self, safety: bool) -> str:
        """Why a control of that kind is blocked now ("" if it is not)."""
        if not self.connected:
            return "Not connected to the daemon (see the connection state at the top)."
        if not safety and not self.operator:
            return OBSERVER_REASON
        return ""

    def allowed(self, widget: QWidget) -> bool:
        safety, wanted, _ = self._controls[widget]
        return wanted and not self.reason(safety)

    def _apply(self, widget: QWidget) -> None:
        safety, wanted, tooltip = self._controls[widget]
        why = self.reason(safety)
        widget.setEnabled(wanted and not why)
        widget.setToolTip(f"{tooltip}\n\n{why}".strip() if why else tooltip)
