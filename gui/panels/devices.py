"""Devices: every actor of the bench as a tree (a controller above its axes), with its state,
restarts, the e-stop latch and the reason for any degraded state, word for word."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from client import ActorHealth, DeviceInfo, Health

from .. import theme
from ..state import BenchState
from ..widgets import muted, state_icon

COLUMNS = ["Device", "State", "Driver", "Restarts", "Detail"]


def _detail(device: DeviceInfo, actor: ActorHealth | None) -> str:
    if device.latched:
        return f"e-stop latched: {device.latched}"
    if device.state != "ready":
        failure = device.last_failure
        why = f": {failure.type}: {failure.message}" if failure else ""
        return f"{actor.detail if actor else device.state}{why}"
    if actor is not None and not actor.responsive:
        return "not answering its heartbeat"
    parts = []
    if device.units and device.position_limits:
        low, high = device.position_limits
        parts.append(f"limits {low:g} … {high:g} {device.units}")
    if device.identity:
        parts.append(device.identity)
    return " · ".join(parts)


class DevicesPanel(QWidget):
    device_selected = Signal(str)

    def __init__(self, state: BenchState) -> None:
        super().__init__()
        self.state = state
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setAlternatingRowColors(True)
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        header = self.tree.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.summary = muted("Not connected")
        self.summary.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.summary)
        layout.addWidget(self.tree)
        self._items: dict[str, QTreeWidgetItem] = {}
        self._health: dict[str, ActorHealth] = {}
        self._devices: list[DeviceInfo] = []
        state.devices_changed.connect(self._on_devices)
        state.health_changed.connect(self._on_health)
        state.connection.disconnected.connect(self._on_disconnected)
        # the selection, not the current item: Qt makes the first row current on focus
        self.tree.itemSelectionChanged.connect(self._on_selection)

    def _on_selection(self) -> None:
        items = self.tree.selectedItems()
        if items:
            self.device_selected.emit(items[0].data(0, Qt.ItemDataRole.UserRole))

    def _on_health(self, health: Health) -> None:
        self._health = {a.name: a for a in health.actors}
        self._on_devices(self._devices)

    def _on_disconnected(self, reason: str) -> None:
        self.summary.setText("Disconnected: states below are the last known")
        for item in self._items.values():
            item.setIcon(1, state_icon("unknown"))
            item.setText(1, "unknown")

    def _on_devices(self, devices: list[DeviceInfo]) -> None:
        self._devices = devices
        names = {d.name for d in devices}
        for name in list(self._items):
            if name not in names:
                item = self._items.pop(name)
                parent = item.parent()
                if parent is not None:
                    parent.removeChild(item)
                else:
                    self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item))
        ready = 0
        for device in devices:
            found = self._items.get(device.name)
            if found is None:
                item = self._items[device.name] = QTreeWidgetItem()
                item.setData(0, Qt.ItemDataRole.UserRole, device.name)
                parent = (
                    self._items.get(device.name.rsplit(".", 1)[0]) if "." in device.name else None
                )
                if parent is not None:
                    parent.addChild(item)
                    parent.setExpanded(True)
                else:
                    self.tree.addTopLevelItem(item)
            else:
                item = found
            actor = self._health.get(device.name)
            state = "latched" if device.latched and device.state == "ready" else device.state
            ready += device.state == "ready"
            item.setText(0, device.name)
            item.setIcon(1, state_icon(state))
            item.setText(1, state)
            item.setText(2, device.driver or "service")
            item.setText(3, str(device.restarts))
            detail = _detail(device, actor)
            item.setText(4, detail)
            colour = theme.state_colour(state) if state != "ready" else None
            for column in (1, 4):
                item.setForeground(column, colour or self.palette().text().color())
            tooltip = [
                f"{device.name}: {state}",
                f"capabilities: {', '.join(device.capabilities) or 'none'}",
            ]
            if actor is not None:
                tooltip.append(
                    f"mailbox {actor.mailbox_depth}/{actor.mailbox_capacity},"
                    f" handled {actor.handled}, failed {actor.failed},"
                    f" heartbeat {actor.heartbeat_ms:.1f} ms"
                )
            if device.last_failure is not None:
                when = time.strftime("%H:%M:%S", time.localtime(device.last_failure.when))
                failure = device.last_failure
                tooltip.append(f"last failure at {when}: {failure.type}: {failure.message}")
            for column in range(len(COLUMNS)):
                item.setToolTip(column, "\n".join(tooltip))
        self.summary.setText(f"{ready} of {len(devices)} devices ready")
