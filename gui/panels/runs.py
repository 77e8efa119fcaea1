"""Runs and scans: record a run or start a scan from a form, follow its progress, pause /
resume / stop it, plot the running scan's points live, and list the runs on the daemon's disk.

A run that records camera frames needs the camera free: if the camera is in live view, the
panel stops the live view for the run and starts it again when the run has ended (the run's
own frames show in the live view meanwhile). Scans come from the Scan service (line or grid);
a scan started elsewhere (a script, benchctl, another GUI) is picked up and followed too.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from client import AsyncBench, DeviceInfo, RunFile, RunStatus, ScanStatus

from .. import theme
from ..connection import Session
from ..guard import Guard
from ..scan_points import PointSource, ScanPoint, StatusPoints
from ..state import BenchState
from ..widgets import ErrorLabel, button, error_text, muted

log = logging.getLogger("gui.actions")

SCAN_POLL = 1.0
ACTIVE_SCAN = ("pending", "running", "paused")
PLOT_COLOURS = [theme.ACCENT, theme.GREEN, theme.AMBER, "#c678dd", "#56b6c2", theme.RED]


def parse_metadata(text: str) -> dict[str, str]:
    """``key=value`` lines (blank lines and ``#`` comments skipped); ValueError names a bad line."""
    metadata = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"metadata line {number}: expected key=value, got {line[:40]!r}")
        metadata[key.strip()] = value.strip()
    return metadata


def _size(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return str(size)


class _Axis:
    def __init__(self) -> None:
        self.device = QComboBox()
        self.start = QDoubleSpinBox()
        self.stop = QDoubleSpinBox()
        for box in (self.start, self.stop):
            box.setRange(-1e6, 1e6)
            box.setDecimals(4)
        self.stop.setValue(5.0)
        self.points = QSpinBox()
        self.points.setRange(1, 1_000_000)
        self.points.setValue(21)
        self.row = QWidget()
        layout = QHBoxLayout(self.row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.device, 2)
        cells: list[tuple[str, QWidget]] = [
            ("from", self.start),
            ("to", self.stop),
            ("points", self.points),
        ]
        for label, cell in cells:
            layout.addWidget(muted(label))
            layout.addWidget(cell, 1)

    def value(self) -> tuple[str, float, float, int]:
        return (
            self.device.currentText(),
            self.start.value(),
            self.stop.value(),
            self.points.value(),
        )


class RunsPanel(QWidget):
    def __init__(self, state: BenchState, guard: Guard, points: PointSource | None = None) -> None:
        super().__init__()
        self.state, self.guard = state, guard
        self.points: PointSource = points or StatusPoints()
        self.run: RunStatus | None = None
        self.scan: ScanStatus | None = None
        self._followed_scan = ""
        self._resume_live = ""
        self._curves: dict[int, pg.PlotDataItem] = {}
        self._data: dict[int, tuple[list[float], list[float]]] = {}
        self._line = 0  # grid scans: the line being plotted, the slow axis's position
        self._slow: float | None = None

        forms = QTabWidget()
        for page, title in ((self._record_form(), "Record a run"), (self._scan_form(), "Scan")):
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QScrollArea.Shape.NoFrame)
            scroll.setWidget(page)
            forms.addTab(scroll, title)
        progress = self._progress_box()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(forms, 1)

        self.plot = pg.PlotWidget()
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.addLegend(offset=(-10, 10))
        self.plot_device = QComboBox()
        self.plot_device.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.plot_device.setToolTip("Which read device to plot against the scan's axis")
        self.plot_note = muted("live impression: GUI readings at the scan's positions")
        self.plot_note.setToolTip(
            "Each point is drawn at the scan's position with the GUI's newest reading of the"
            " device; the run file holds the values the daemon recorded at each point."
        )
        self.runs = QTableWidget(0, 6)
        self.runs.setHorizontalHeaderLabels(["Run", "Status", "Frames", "Size", "Modified", "File"])
        self.runs.verticalHeader().setVisible(False)
        self.runs.setAlternatingRowColors(True)
        self.runs.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.runs.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        header = self.runs.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.refresh = button("Refresh", tooltip="List the run files again")
        self.refresh.clicked.connect(self._list_runs)
        right = QSplitter(Qt.Orientation.Horizontal)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        plot_bar = QHBoxLayout()
        plot_bar.addWidget(QLabel("Plot"))
        plot_bar.addWidget(self.plot_device)
        plot_bar.addWidget(self.plot_note, 1)
        top_layout.addWidget(progress)
        top_layout.addLayout(plot_bar)
        top_layout.addWidget(self.plot, 1)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Past runs (newest first)"))
        bar.addStretch(1)
        bar.addWidget(self.refresh)
        bottom_layout.addLayout(bar)
        bottom_layout.addWidget(self.runs, 1)
        right.addWidget(top)
        right.addWidget(bottom)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 1)
        right.setSizes([640, 460])
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([340, 1100])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        state.connection.connected.connect(self._on_connected)
        state.devices_changed.connect(self._on_devices)
        state.run_status.connect(self._on_run)
        self._clock = QTimer(self)
        self._clock.timeout.connect(self._show_progress)
        self._clock.start(1000)

    # -- forms -----------------------------------------------------------------------------------

    def _record_form(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.run_name = QLineEdit("run")
        self.run_frames = QSpinBox()
        self.run_frames.setRange(0, 65535)
        self.run_frames.setSpecialValueText("none")
        self.run_frames.setToolTip(
            "camera frames to acquire for the run; none: record readings"
            " and parameter changes (and frames, if the camera is live)"
        )
        self.run_duration = QDoubleSpinBox()
        self.run_duration.setRange(0, 7 * 24 * 3600)
        self.run_duration.setSuffix(" s")
        self.run_duration.setSpecialValueText("until stopped")
        self.run_compression = QComboBox()
        self.run_compression.addItems(["none", "bitshuffle-lz4"])
        self.run_readings_only = QCheckBox("readings and parameter changes only (no frames)")
        self.run_metadata = QPlainTextEdit()
        self.run_metadata.setPlaceholderText("sample=knife edge\noperator=alice")
        self.run_metadata.setMaximumHeight(60)
        self.record = button("●  Record", "primary", "Start recording a run")
        self.record.clicked.connect(self._start_record)
        self.record_error = ErrorLabel()
        form.addRow("Name", self.run_name)
        form.addRow("Camera frames", self.run_frames)
        form.addRow("Duration", self.run_duration)
        form.addRow("Compression", self.run_compression)
        form.addRow("", self.run_readings_only)
        form.addRow("Metadata", self.run_metadata)
        form.addRow(self.record)
        form.addRow(self.record_error)
        self.guard.mutating(self.record)
        return page

    def _scan_form(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.scan_kind = QComboBox()
        self.scan_kind.addItems(["line", "grid"])
        self.axis1, self.axis2 = _Axis(), _Axis()
        self.scan_kind.currentTextChanged.connect(
            lambda kind: self.axis2.row.setEnabled(kind == "grid")
        )
        self.axis2.row.setEnabled(False)
        self.snake = QCheckBox("snake (every other line backwards)")
        self.scan_read = QListWidget()
        self.scan_read.setMaximumHeight(70)
        self.dwell = QDoubleSpinBox()
        self.settle = QDoubleSpinBox()
        for box in (self.dwell, self.settle):
            box.setRange(0, 3600)
            box.setDecimals(3)
            box.setSuffix(" s")
        self.settle.setValue(0.05)
        self.scan_frames = QSpinBox()
        self.scan_frames.setRange(0, 65535)
        self.scan_name = QLineEdit()
        self.scan_name.setPlaceholderText("line_scan / grid_scan")
        self.start_scan = button(
            "▶  Start scan", "primary", "Create the scan (checked by the daemon) and start it"
        )
        self.start_scan.clicked.connect(self._start_scan)
        self.scan_error = ErrorLabel()
        form.addRow("Kind", self.scan_kind)
        form.addRow("Axis (slow)", self.axis1.row)
        form.addRow("Axis 2 (fast)", self.axis2.row)
        form.addRow("", self.snake)
        form.addRow("Read", self.scan_read)
        form.addRow("Settle", self.settle)
        form.addRow("Dwell", self.dwell)
        form.addRow("Frames / point", self.scan_frames)
        form.addRow("Name", self.scan_name)
        form.addRow(self.start_scan)
        form.addRow(self.scan_error)
        self.guard.mutating(self.start_scan)
        return page

    def _progress_box(self) -> QWidget:
        box = QGroupBox("Now")
        layout = QVBoxLayout(box)
        layout.setSpacing(3)
        self.progress_title = QLabel("Nothing running")
        self.progress_title.setStyleSheet("font-weight: 600;")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress_detail = muted("")
        self.progress_detail.setWordWrap(True)
        buttons = QHBoxLayout()
        self.pause = button("Pause", tooltip="Pause the scan at its next point")
        self.resume = button("Resume", tooltip="Carry on from where the scan paused")
        self.stop = button("Stop", "danger", "Stop at the next point; the run file is completed")
        self.abort = button("Abort", "danger", "Abort now: the axis in motion is stopped")
        for widget in (self.pause, self.resume, self.stop, self.abort):
            buttons.addWidget(widget)
            self.guard.mutating(widget)
            self.guard.enable(widget, False)
        self.pause.clicked.connect(lambda: self._scan_action("pause"))
        self.resume.clicked.connect(lambda: self._scan_action("resume"))
        self.stop.clicked.connect(self._stop)
        self.abort.clicked.connect(lambda: self._scan_action("abort"))
        self.progress_error = ErrorLabel()
        head = QHBoxLayout()
        head.addWidget(self.progress_title)
        head.addWidget(self.progress, 1)
        head.addLayout(buttons)
        layout.addLayout(head)
        layout.addWidget(self.progress_detail)
        layout.addWidget(self.progress_error)
        return box

    # -- session ---------------------------------------------------------------------------------

    def _on_connected(self, session: Session) -> None:
        self._followed_scan = ""
        self.state.connection.poll(lambda b: b.scans(), self._on_scans, SCAN_POLL)
        self._list_runs()

    def _on_devices(self, devices: list[DeviceInfo]) -> None:
        movable = self.state.with_capability("Movable")
        readable = self.state.with_capability("Readable")
        for axis in (self.axis1, self.axis2):
            if [axis.device.itemText(i) for i in range(axis.device.count())] != movable:
                current = axis.device.currentText()
                axis.device.clear()
                axis.device.addItems(movable)
                if current in movable:
                    axis.device.setCurrentText(current)
        if self.axis2.device.currentIndex() == 0 and len(movable) > 1:
            self.axis2.device.setCurrentIndex(1)
        existing = [self.scan_read.item(i).text() for i in range(self.scan_read.count())]
        if existing != readable:
            self.scan_read.clear()
            for name in readable:
                item = QListWidgetItem(name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(
                    Qt.CheckState.Checked if name == "power_meter" else Qt.CheckState.Unchecked
                )
                self.scan_read.addItem(item)

    def _list_runs(self) -> None:
        self.state.connection.call(lambda b: b.runs(), self._on_runs)

    def _on_runs(self, runs: list[RunFile]) -> None:
        runs = sorted(runs, key=lambda r: r.modified, reverse=True)
        self.runs.setRowCount(len(runs))
        for row, run in enumerate(runs):
            cells = [
                run.name,
                run.status,
                str(run.frames_written),
                _size(run.size_bytes),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.modified)),
                run.path,
            ]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 1 and run.status not in ("completed", "running"):
                    item.setForeground(theme.state_colour("degraded"))
                self.runs.setItem(row, column, item)

    # -- starting ------------------------------------------------------------------------------

    def _camera_live(self) -> str:
        """The camera, if it is in live view now (a run with frames needs it free)."""
        for camera in self.state.cameras:
            status = self.state.acquisitions.get(camera)
            if status is not None and status.running and status.frames_requested == 0:
                return camera
        return ""

    def _start_record(self) -> None:
        try:
            metadata = parse_metadata(self.run_metadata.toPlainText())
        except ValueError as error:
            self.record_error.show_error(str(error))
            return
        name = self.run_name.text().strip()
        frames, duration = self.run_frames.value(), self.run_duration.value()
        options: dict[str, Any] = {
            "frames": frames,
            "duration": duration,
            "metadata": metadata,
            "compression": self.run_compression.currentText(),
            "readings_only": self.run_readings_only.isChecked(),
        }
        live = self._camera_live() if frames and not options["readings_only"] else ""
        self.record_error.clear_error()
        log.info("record run %r (%s)", name, ", ".join(f"{k}={v}" for k, v in options.items() if v))

        async def start(bench: AsyncBench) -> RunStatus:
            if live:
                await bench.stop_acquisition(live)
            try:
                return await bench.start_run(name, **options)
            except BaseException:
                if live:
                    await bench.start_acquisition(live)
                raise

        def started(status: RunStatus) -> None:
            self._resume_live = live
            self._on_run(status)
            log.info(
                "recording to %s%s",
                status.path,
                f" (live view of {live} paused for the run)" if live else "",
            )

        def failed(error: BaseException) -> None:
            self.record_error.show_error(error_text(error))
            log.warning("run %r refused: %s", name, error_text(error))

        self.state.connection.call(start, started, failed)

    def _start_scan(self) -> None:
        axes = [self.axis1.value()]
        if self.scan_kind.currentText() == "grid":
            axes.append(self.axis2.value())
        read = tuple(
            self.scan_read.item(i).text()
            for i in range(self.scan_read.count())
            if self.scan_read.item(i).checkState() == Qt.CheckState.Checked
        )
        options: dict[str, Any] = {
            "read": read,
            "snake": self.snake.isChecked(),
            "dwell": self.dwell.value(),
            "settle": self.settle.value(),
            "frames": self.scan_frames.value(),
            "name": self.scan_name.text().strip(),
        }
        self.scan_error.clear_error()
        log.info(
            "scan %s, read %s",
            " × ".join(f"{d} {a:g}→{b:g} ({n})" for d, a, b, n in axes),
            ", ".join(read) or "nothing",
        )

        async def start(bench: AsyncBench) -> ScanStatus:
            created = await bench.create_scan(axes, **options)
            return await bench.start_scan(created.id)

        def failed(error: BaseException) -> None:
            self.scan_error.show_error(error_text(error))
            log.warning("scan refused: %s", error_text(error))

        self.state.connection.call(start, self._follow_scan, failed)

    # -- following -----------------------------------------------------------------------------

    def _on_scans(self, scans: list[ScanStatus]) -> None:
        active = [s for s in scans if s.state in ACTIVE_SCAN]
        if active and active[0].id != self._followed_scan:
            self._follow_scan(active[0])

    def _follow_scan(self, status: ScanStatus) -> None:
        self._followed_scan = status.id
        self.scan = status
        read = tuple(self.state.with_capability("Readable"))
        self.plot_device.clear()
        self.plot_device.addItems(list(read))
        if "power_meter" in read:
            self.plot_device.setCurrentText("power_meter")
        for curve in self._curves.values():
            self.plot.removeItem(curve)
        self._curves.clear()
        self._data.clear()
        self._line = 0
        self._slow = None
        self.points.start(self.state.connection, status.id, read, self._on_point, self._on_scan)
        self._on_scan(status)

    def _on_point(self, point: ScanPoint) -> None:
        scan = self.scan
        if scan is None or not point.positions:
            return
        axes = list(point.positions)
        fast = axes[-1]
        if len(axes) > 1:  # a grid: a new curve each time the slow axis steps
            slow = point.positions[axes[0]]
            if self._slow is not None and abs(slow - self._slow) > 1e-12:
                self._line += 1
            self._slow = slow
        line = self._line
        value = point.values.get(self.plot_device.currentText())
        if value is None:
            return
        xs, ys = self._data.setdefault(line, ([], []))
        xs.append(point.positions[fast])
        ys.append(value)
        curve = self._curves.get(line)
        if curve is None:
            colour = PLOT_COLOURS[line % len(PLOT_COLOURS)]
            curve = self.plot.plot(
                pen=pg.mkPen(colour, width=1.5),
                symbol="o",
                symbolSize=5,
                symbolBrush=colour,
                name=f"line {line + 1}" if line < 6 else None,
            )
            self._curves[line] = curve
        curve.setData(xs, ys)
        units = {n: d.units for n, d in self.state.devices.items()}
        self.plot.setLabel("bottom", fast, units=units.get(fast, ""))
        device = self.plot_device.currentText()
        self.plot.setLabel("left", device, units=units.get(device, ""))

    def _on_scan(self, status: ScanStatus) -> None:
        self.scan = status
        self._show_progress()
        if status.finished:
            self._list_runs()

    def _on_run(self, status: RunStatus) -> None:
        previous = self.run
        self.run = status
        self._show_progress()
        if status.finished and previous is not None and not previous.finished:
            self._list_runs()
            if self._resume_live:
                camera, self._resume_live = self._resume_live, ""
                log.info("run ended: starting %s live again", camera)
                self.state.connection.call(lambda b: b.start_acquisition(camera))

    def _show_progress(self) -> None:
        scan, run = self.scan, self.run
        scanning = scan is not None and scan.state in ACTIVE_SCAN
        recording = run is not None and run.state in ("recording", "finishing")
        if scanning and scan is not None:
            self.progress_title.setText(
                f"Scan {scan.id}: {scan.state}"
                + (" (pausing)" if scan.pause_requested and scan.state == "running" else "")
            )
            total = max(1, scan.points_total)
            self.progress.setValue(int(1000 * scan.points_done / total))
            self.progress.setFormat(f"{scan.points_done} / {scan.points_total} points")
            where = ", ".join(f"{k} {v:.4g}" for k, v in scan.positions.items())
            self.progress_detail.setText(f"at {where}" if where else "")
        elif run is not None and run.state != "idle":
            self.progress_title.setText(f"Run '{run.name}': {run.state}")
            if run.frames_expected:
                self.progress.setValue(int(1000 * run.frames_written / max(1, run.frames_expected)))
                self.progress.setFormat(f"{run.frames_written} / {run.frames_expected} frames")
            else:
                elapsed = (run.ended or time.time()) - run.started if run.started else 0.0
                self.progress.setValue(1000 if run.finished else 0)
                self.progress.setFormat(f"{elapsed:.0f} s")
            lost = run.frames_dropped + run.frames_missing + run.readings_lost
            self.progress_detail.setText(
                f"{run.frames_written} frames written ({run.frames_committed} flushed),"
                f" {run.readings_recorded} readings, {run.parameter_changes} parameter changes,"
                f" {lost} lost · {run.path}" + (f" · {run.error}" if run.error else "")
            )
            self.progress_detail.setStyleSheet(f"color: {theme.RED};" if lost else "")
        else:
            self.progress_title.setText("Nothing running")
            self.progress.setValue(0)
            self.progress.setFormat("")
            self.progress_detail.setText("")
        self.guard.enable(self.pause, scanning and scan is not None and scan.state == "running")
        self.guard.enable(self.resume, scanning and scan is not None and scan.state == "paused")
        self.guard.enable(self.abort, scanning)
        self.guard.enable(self.stop, scanning or recording)

    def _scan_action(self, action: str) -> None:
        scan = self.scan
        if scan is None:
            return
        scan_id = scan.id
        log.info("%s scan %s", action, scan_id)
        calls = {
            "pause": lambda b: b.pause_scan(scan_id),
            "resume": lambda b: b.resume_scan(scan_id),
            "abort": lambda b: b.stop_scan(scan_id, force=True, reason="aborted from the GUI"),
        }
        self.progress_error.clear_error()
        self.state.connection.call(
            calls[action], self._on_scan, lambda e: self.progress_error.show_error(error_text(e))
        )

    def _stop(self) -> None:
        scan = self.scan
        self.progress_error.clear_error()
        failed = lambda e: self.progress_error.show_error(error_text(e))  # noqa: E731
        if scan is not None and scan.state in ACTIVE_SCAN:
            scan_id = scan.id
            log.info("stop scan %s", scan_id)
            self.state.connection.call(
                lambda b: b.stop_scan(scan_id, reason="stopped from the GUI"), self._on_scan, failed
            )
        else:
            log.info("stop the run")
            self.state.connection.call(
                lambda b: b.stop_run("stopped from the GUI"), self._on_run, failed
            )
