"""The main window: the e-stop always in view, the panels as docks, the connection and the
machine's health in the status bar.

Layout (PyMoDAQ-like: every panel is a dock that can be moved, tabbed, floated or closed, and
View ▸ Panels brings it back): devices on the left, the camera's live view in the middle,
parameters / motion / laser on the right, power meter / runs and scans / scripts / alerts and
log along the bottom.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QStatusBar,
    QTabBar,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from client import EmergencyStopEvent, EmergencyStopResult, Health, ResetResult, RunStatus

from . import latch, theme
from .connection import Connection, Session
from .guard import Guard
from .panels.alerts import AlertsPanel
from .panels.camera import CameraPanel
from .panels.devices import DevicesPanel
from .panels.laser import LaserPanel
from .panels.motion import MotionPanel
from .panels.parameters import ParametersPanel
from .panels.power import PowerPanel
from .panels.runs import RunsPanel
from .panels.scripts import ScriptsPanel
from .state import BenchState
from .widgets import dot, error_text, si

log = logging.getLogger("gui.actions")

#: The e-stop's keyboard shortcuts (application-wide: whichever panel has the focus).
ESTOP_KEYS = ("F12", "Pause")


class MainWindow(QMainWindow):
    def __init__(
        self,
        connection: Connection,
        *,
        live: bool = True,
        preview_fps: float = 30.0,
        preview_size: int = 512,
    ) -> None:
        super().__init__()
        self.connection = connection
        self.state = BenchState(connection)
        self.guard = Guard()
        self.setWindowTitle(f"benchd — {connection.address}")
        self.setDockOptions(
            QMainWindow.DockOption.AllowTabbedDocks | QMainWindow.DockOption.AnimatedDocks
        )

        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.camera = CameraPanel(
            self.state, self.guard, live=live, max_fps=preview_fps, size=preview_size
        )
        self.devices = DevicesPanel(self.state)
        self.parameters = ParametersPanel(self.state, self.guard)
        self.motion = MotionPanel(self.state, self.guard)
        self.laser = LaserPanel(self.state, self.guard)
        self.power = PowerPanel(self.state)
        self.runs = RunsPanel(self.state, self.guard)
        self.scripts = ScriptsPanel(self.state, self.guard)
        self.alerts = AlertsPanel(self.state)
        self.devices.device_selected.connect(self.parameters.select)

        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self._latch_banner())
        column.addWidget(self._offline_banner())
        column.addWidget(self.camera, 1)
        self.setCentralWidget(central)
        self.docks: dict[str, QDockWidget] = {}
        view = self.menuBar().addMenu("&View")
        panels = view.addMenu("Panels")
        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        bottom = Qt.DockWidgetArea.BottomDockWidgetArea
        tab_groups: dict[Qt.DockWidgetArea, QDockWidget] = {}
        for key, title, widget, area in (
            ("devices", "Devices", self.devices, left),
            ("parameters", "Parameters", self.parameters, right),
            ("motion", "Motion", self.motion, right),
            ("laser", "Laser", self.laser, right),
            ("power", "Power meter", self.power, bottom),
            ("runs", "Runs and scans", self.runs, bottom),
            ("scripts", "Scripts", self.scripts, bottom),
            ("alerts", "Alerts and log", self.alerts, bottom),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(key)
            dock.setWidget(widget)
            dock.setFeatures(
                QDockWidget.DockWidgetFeature.DockWidgetMovable
                | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                | QDockWidget.DockWidgetFeature.DockWidgetClosable
            )
            # Each further dock of an area goes straight into the area's tab group: added side
            # by side first and tabified after, Qt 6 leaves stale tab bars drawn over the docks.
            if area in tab_groups:
                self.tabifyDockWidget(tab_groups[area], dock)
            else:
                self.addDockWidget(area, dock)
                tab_groups[area] = dock
            panels.addAction(dock.toggleViewAction())
            self.docks[key] = dock
        self.docks["parameters"].raise_()
        self.docks["power"].raise_()
        self._arranged = False
        reconnect = QAction("Reconnect now", self)
        reconnect.triggered.connect(connection.reconnect_now)
        self.menuBar().addMenu("&Daemon").addAction(reconnect)

        self._toolbar()
        self._status_bar()
        # Building the docks leaves a minimum size from their size hints (~2200 px wide): let
        # the layout's true minimum apply again, then take a size that fits a 1080p screen.
        self.setMinimumSize(0, 0)
        self.resize(1680, 1050)
        self.guard.update(connected=False, operator=False)
        connection.connected.connect(self._on_connected)
        connection.disconnected.connect(self._on_disconnected)
        connection.state_changed.connect(self._on_connection_state)
        self.state.estop_event.connect(self._on_estop)
        connection.latch_refusal.connect(self._on_latch_refusal)
        self.state.health_changed.connect(self._on_health)
        self._latch_info = latch.LatchInfo(False)
        self._latch_clock = QTimer(self)  # "since … (3 min ago)" stays true while latched
        self._latch_clock.timeout.connect(lambda: self._show_latch(self._latch_info))
        self._latch_clock.start(10_000)
        self.state.run_status.connect(self._on_run)
        self.camera.frame_shown.connect(lambda _: self._frames_label_tick())

    # -- building -------------------------------------------------------------------------------

    def _toolbar(self) -> None:
        bar = QToolBar("Emergency stop")
        bar.setObjectName("estop-bar")
        bar.setMovable(False)
        bar.setIconSize(QSize(14, 14))
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.connection_label = QLabel("connecting…")
        self.connection_label.setStyleSheet("font-weight: 600; padding: 0 6px;")
        self.connection_icon = QLabel()
        self.connection_icon.setPixmap(dot(theme.AMBER).pixmap(14, 14))
        self.role_label = QLabel("")
        self.role_label.setStyleSheet(f"color: {theme.MUTED}; padding: 0 6px;")
        bar.addWidget(self.connection_icon)
        bar.addWidget(self.connection_label)
        bar.addWidget(self.role_label)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bar.addWidget(spacer)
        self.latch = QLabel("E-stop: unknown")
        self.latch.setObjectName("latch")
        self.latch.setProperty("latched", "false")
        bar.addWidget(self.latch)
        self.reset = QPushButton("Reset e-stop")
        self.reset.setToolTip("Clear the emergency-stop latch (operator role)")
        self.reset.clicked.connect(self.reset_estop)
        bar.addWidget(self.reset)
        self.guard.mutating(self.reset)
        self.guard.enable(self.reset, False)
        self.estop = QPushButton("■  EMERGENCY STOP")
        self.estop.setObjectName("estop")
        self.estop.setToolTip(
            "Stop every device now and latch the bench (F12 or Pause, from anywhere in this"
            " window). Open to every role."
        )
        self.estop.clicked.connect(self.emergency_stop)
        bar.addWidget(self.estop)
        self.estop_action = QAction("Emergency stop", self)
        self.estop_action.setShortcuts([QKeySequence(k) for k in ESTOP_KEYS])
        self.estop_action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        self.estop_action.triggered.connect(self.emergency_stop)
        self.addAction(self.estop_action)

    def _latch_banner(self) -> QFrame:
        self.banner = QFrame()
        self.banner.setObjectName("banner")
        layout = QHBoxLayout(self.banner)
        layout.setContentsMargins(12, 6, 12, 6)
        self.banner_text = QLabel("")
        self.banner_text.setWordWrap(True)
        layout.addWidget(self.banner_text, 1)
        self.banner.hide()
        return self.banner

    def _offline_banner(self) -> QFrame:
        self.offline = QFrame()
        self.offline.setObjectName("offline")
        layout = QHBoxLayout(self.offline)
        layout.setContentsMargins(12, 6, 12, 6)
        self.offline_text = QLabel("Connecting to the daemon…")
        self.offline_text.setWordWrap(True)
        layout.addWidget(self.offline_text, 1)
        retry = QPushButton("Reconnect now")
        retry.clicked.connect(self.connection.reconnect_now)
        layout.addWidget(retry)
        return self.offline

    def _status_bar(self) -> None:
        bar = QStatusBar()
        self.setStatusBar(bar)
        self.status: dict[str, QLabel] = {}
        for key in ("daemon", "cpu", "memory", "disk", "run", "preview"):
            label = QLabel("")
            self.status[key] = label
            bar.addPermanentWidget(label)
        self._frames = 0

    # -- connection --------------------------------------------------------------------------------

    def _on_connected(self, session: Session) -> None:
        info = session.info
        self.guard.update(connected=True, operator=session.operator)
        self.setWindowTitle(f"benchd — {info.bench or 'bench'} @ {self.connection.address}")
        role = "operator" if session.operator else "observer: read-only, stop allowed"
        self.role_label.setText(f"role: {role} · benchd {info.version} · bench '{info.bench}'")
        self.status["daemon"].setText(f"benchd {info.version}")
        self.offline.hide()
        fields = latch.from_fields(info)
        if fields is not None:
            self._show_latch(self._latch_info.merged(fields))

    def _on_disconnected(self, reason: str) -> None:
        self.guard.update(connected=False, operator=False)
        self.offline.show()
        if self.latch.property("latched") != "true":  # a latch stays shown: it is the safe side
            self.latch.setText("E-stop: unknown")
            self.latch.setToolTip("not connected: the daemon's latch state is unknown")

    def _on_connection_state(self, state: str, detail: str) -> None:
        colours = {"connected": theme.GREEN, "connecting": theme.AMBER}
        self.connection_icon.setPixmap(dot(colours.get(state, theme.RED)).pixmap(14, 14))
        shown = {
            "connected": "connected",
            "connecting": "connecting…",
            "refused": "refused",
            "disconnected": "disconnected",
        }
        self.connection_label.setText(f"{shown.get(state, state)} · {self.connection.address}")
        self.connection_label.setToolTip(detail)
        if state != "connected":
            self.offline_text.setText(
                f"{'Disconnected' if state != 'connecting' else 'Connecting'}: {detail}. The"
                " daemon keeps running without this GUI; controls are off until it answers."
            )
            self.offline.show()

    # -- e-stop ----------------------------------------------------------------------------------

    def emergency_stop(self) -> None:
        log.warning("EMERGENCY STOP pressed")

        def done(result: EmergencyStopResult) -> None:
            slowest = max((a.latency_ms for a in result.acknowledgements), default=0.0)
            failed = [f"{a.actor}: {a.error}" for a in result.acknowledgements if not a.ok]
            log.warning(
                "e-stop: %d devices acknowledged (slowest %.1f ms)%s",
                len(result.acknowledgements),
                slowest,
                "; NOT STOPPED: " + "; ".join(failed) if failed else "",
            )
            if not self._latch_info.latched:  # the event stream brings who and when
                self._show_latch(latch.LatchInfo(True, "GUI emergency-stop button", "this GUI"))

        def failed(error: BaseException) -> None:
            message = error_text(error)
            log.error("E-STOP NOT DELIVERED: %s — use the hardware stop", message)
            self.banner_text.setText(
                f"EMERGENCY STOP NOT DELIVERED: {message}. Use the bench's hardware stop."
            )
            self.banner.show()

        self.connection.call(lambda b: b.emergency_stop("GUI emergency-stop button"), done, failed)

    def reset_estop(self) -> None:
        log.info("reset the emergency stop")

        def done(result: ResetResult) -> None:
            if result.cleared:
                log.info("e-stop reset: every latch cleared")
            else:
                log.warning("e-stop reset: still latched: %s", ", ".join(result.still_latched))

        self.connection.call(
            lambda b: b.reset_emergency_stop("reset from the GUI"),
            done,
            lambda e: log.warning("reset refused: %s", error_text(e)),
        )

    def _on_estop(self, event: EmergencyStopEvent) -> None:
        news = latch.from_event(event)
        if event.kind == "stopped" or not self._latch_info.latched:
            self._show_latch(news)  # a new stop: who and when are this one's
        else:
            self._show_latch(self._latch_info.merged(news))

    def _on_latch_refusal(self, text: str) -> None:
        """A refusal names the latch's time and author: fill in what the event stream's
        current state left out (or learn of a latch it has not reported yet)."""
        found = latch.from_refusal(text, self._latch_info.reason)
        if found is not None:
            self._show_latch(self._latch_info.merged(found))

    @property
    def latch_info(self) -> latch.LatchInfo:
        return self._latch_info

    def _show_latch(self, info: latch.LatchInfo) -> None:
        self._latch_info = info
        latched = info.latched
        self.latch.setProperty("latched", "true" if latched else "false")
        if latched:
            full = latch.describe(info)
            self.latch.setText(latch.short(info))
            self.latch.setToolTip(f"Emergency stop latched {full}")
            self.banner_text.setText(
                f"EMERGENCY STOP LATCHED {full}. Motion, emission and opening the shutter are"
                " refused until the e-stop is reset."
            )
        else:
            self.latch.setText("E-stop: clear")
            self.latch.setToolTip(
                f"Last reset: {info.reason}" if info.reason else "No emergency stop is latched"
            )
        theme.restyle(self.latch)
        self.guard.enable(self.reset, latched)
        self.banner.setVisible(latched)

    # -- status bar ------------------------------------------------------------------------------

    def _on_health(self, health: Health) -> None:
        system = health.system
        fields = latch.from_fields(system)
        if fields is not None and self._latch_info.latched:
            self._show_latch(self._latch_info.merged(fields))
        self.status["cpu"].setText(f"CPU {system.cpu_percent:.0f} %")
        self.status["memory"].setText(f"memory {system.memory_percent:.0f} %")
        self.status["disk"].setText(
            f"disk {si(system.disk_free_bytes, 'B', 3)} free ({system.disk_path})"
        )
        uptime = system.uptime_s
        self.status["daemon"].setText(
            self.status["daemon"].text().split(" · ")[0] + f" · up {uptime / 3600:.1f} h"
        )
        self.status["preview"].setText(f"preview skipped {system.preview_frames_skipped}")

    def _on_run(self, status: RunStatus) -> None:
        text = f"run: {status.state}"
        if status.state in ("recording", "finishing"):
            text += f" '{status.name}' · lag {status.writer_lag} · dropped {status.frames_dropped}"
        self.status["run"].setText(text)

    def _frames_label_tick(self) -> None:
        self._frames += 1
        if self._frames % 10 == 0:
            self.status["preview"].setToolTip(f"{self._frames} preview frames shown")

    # -- lifecycle -------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._arranged:  # dock sizes only take once the window has its own size
            self._arranged = True
            self.resizeDocks([self.docks["devices"]], [340], Qt.Orientation.Horizontal)
            self.resizeDocks([self.docks["parameters"]], [500], Qt.Orientation.Horizontal)
            self.resizeDocks([self.docks["power"]], [360], Qt.Orientation.Vertical)
            QTimer.singleShot(0, self._hide_stale_tab_bars)

    def _hide_stale_tab_bars(self) -> None:
        """Qt 6 leaves tab bars it used while the bottom docks were tabified one by one drawn
        over the left dock (it only hides its spare bars if they were ever shown hidden); a bar
        whose tabs are a strict part of another bar's is such a leftover."""
        bars = [b for b in self.findChildren(QTabBar) if b.parent() is self and b.isVisible()]
        tabs = {b: {b.tabText(i) for i in range(b.count())} for b in bars}
        for bar in bars:
            if any(tabs[bar] < tabs[other] for other in bars if other is not bar):
                bar.hide()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.camera.stop()
        self.alerts.close_log()
        self.connection.close()
        super().closeEvent(event)
