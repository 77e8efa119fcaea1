"""Runs and scans: start a plan (or record a run) from a form, follow its progress, pause /
resume / stop / abort it, plot what it records point by point, see its table, and list the
scans and run files the daemon keeps.

Plans come from :class:`gui.plan_form.PlanForm` (every kind, checked by the daemon before they
start). The plot follows the scan's event stream (:mod:`gui.scan_events`): the values the
daemon recorded at each point, the same rows as the run file. A scan started elsewhere (a
script, ``benchctl``, another GUI) is picked up and followed too; any scan in the list can be
plotted again, and its table viewed or exported to CSV.

A run that records camera frames needs the camera free: if the camera is in live view, the
panel stops the live view for the run and starts it again when the run has ended (the run's
own frames show in the live view meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
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

from client import AsyncBench, RunFile, RunStatus, ScanEvent, ScanStatus

from .. import theme
from ..connection import Session
from ..guard import Guard
from ..plan_form import PlanForm, parse_metadata
from ..scan_events import ScanData, ScanFollower
from ..scan_plot import ScanPlot
from ..scan_table import ScanTableDialog, export_csv
from ..state import BenchState
from ..widgets import ErrorLabel, button, error_text, muted

log = logging.getLogger("gui.actions")

SCAN_POLL = 1.0
RUNNING_SCAN = ("pending", "running", "paused", "suspended")
OUTCOME_COLOURS = {
    "completed": theme.GREEN,
    "running": theme.ACCENT,
    "stopped": theme.MUTED,
    "aborted": theme.AMBER,
}

__all__ = ["RunsPanel", "parse_metadata"]


def _size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(size)


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else ""


def _left(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s left"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min left"
    return f"{seconds / 3600:.1f} h left"


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(22)
    table.setAlternatingRowColors(True)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    return table


class RunsPanel(QWidget):
    def __init__(self, state: BenchState, guard: Guard) -> None:
        super().__init__()
        self.state, self.guard = state, guard
        self.run: RunStatus | None = None
        self.scan: ScanStatus | None = None  # the scan followed (plotted, controlled)
        self.scans: dict[str, ScanStatus] = {}
        self.data: ScanData | None = None
        self.follower = ScanFollower()
        self._resume_live = ""
        self._tables: list[ScanTableDialog] = []

        self.plan_form = PlanForm(state, guard)
        self.plan_form.started.connect(self._on_started)
        forms = QTabWidget()
        self.plan_scroll = QScrollArea()  # the plan form's page (its own window in screenshots)
        for page, title in ((self.plan_form, "Plan"), (self._record_form(), "Record a run")):
            scroll = self.plan_scroll if page is self.plan_form else QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QScrollArea.Shape.NoFrame)
            scroll.setWidget(page)
            forms.addTab(scroll, title)
        forms.setMinimumWidth(400)

        self.plot = ScanPlot()
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self._progress_box())
        top_layout.addWidget(self.plot, 1)

        lists = QTabWidget()
        lists.addTab(self._scans_page(), "Scans")
        lists.addTab(self._runs_page(), "Run files")
        self.lists = lists

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(top)
        right.addWidget(lists)
        right.setStretchFactor(0, 4)
        right.setStretchFactor(1, 1)
        right.setSizes([700, 170])
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(forms)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([520, 940])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        state.connection.connected.connect(self._on_connected)
        state.run_status.connect(self._on_run)
        self._clock = QTimer(self)
        self._clock.timeout.connect(self._show_progress)
        self._clock.start(1000)

    # -- building -------------------------------------------------------------------------------

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
        note = muted(
            "A run records the bench as it is: readings, parameter changes and camera frames."
            " To record at positions, use a plan (a count plan with frames is a recording)."
        )
        note.setWordWrap(True)
        form.addRow(note)
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
        self.progress_detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        self.pause = button("Pause", tooltip="Pause the scan at its next point")
        self.resume = button("Resume", tooltip="Carry on from where the scan paused")
        self.stop = button("Stop", "danger", "Stop at the next point; the run file is completed")
        self.abort = button("Abort", "danger", "Abort now: the axes in motion are stopped")
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
        layout.addLayout(head)
        below = QHBoxLayout()
        below.addWidget(self.progress_detail, 1)
        below.addLayout(buttons)
        layout.addLayout(below)
        layout.addWidget(self.progress_error)
        return box

    def _scans_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 4, 0, 0)
        self.scan_list = _table(
            ["Scan", "Plan", "State", "Points", "Started", "Origin", "Run file / reason"]
        )
        self.scan_list.itemSelectionChanged.connect(self._update_scan_buttons)
        self.scan_list.itemDoubleClicked.connect(lambda _: self._plot_selected())
        self.plot_scan = button("Plot", tooltip="Plot the selected scan's points")
        self.plot_scan.clicked.connect(self._plot_selected)
        self.view_table = button("Table…", tooltip="The selected scan's table (as the run file)")
        self.view_table.clicked.connect(lambda: self._fetch_table(export=False))
        self.export_table = button("Export CSV…", tooltip="Save the selected scan's table as CSV")
        self.export_table.clicked.connect(lambda: self._fetch_table(export=True))
        self.table_error = ErrorLabel()
        bar = QHBoxLayout()
        bar.addWidget(muted("Scans the daemon keeps (newest first; double-click to plot)"), 1)
        for widget in (self.plot_scan, self.view_table, self.export_table):
            bar.addWidget(widget)
            self.guard.safety(widget)  # reading a table changes nothing: observers too
            self.guard.enable(widget, False)
        layout.addLayout(bar)
        layout.addWidget(self.scan_list, 1)
        layout.addWidget(self.table_error)
        return page

    def _runs_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 4, 0, 0)
        self.runs = _table(
            ["Run", "Outcome", "Frames", "Readings", "Size", "Modified", "Reason", "File"]
        )
        self.refresh = button("Refresh", tooltip="List the run files again")
        self.refresh.clicked.connect(self._list_runs)
        bar = QHBoxLayout()
        bar.addWidget(muted("Run files on the daemon's disk (newest first)"), 1)
        bar.addWidget(self.refresh)
        layout.addLayout(bar)
        layout.addWidget(self.runs, 1)
        return page

    # -- session ---------------------------------------------------------------------------------

    def _on_connected(self, session: Session) -> None:
        if self.scan is not None and not self.scan.finished:
            self.scan = None  # followed again (from its first event) when the list comes
        self.state.connection.poll(lambda b: b.scans(), self._on_scans, SCAN_POLL)
        self._list_runs()

    def _list_runs(self) -> None:
        self.state.connection.call(lambda b: b.runs(), self._on_runs)

    def _on_runs(self, runs: list[RunFile]) -> None:
        runs = sorted(runs, key=lambda r: r.modified, reverse=True)
        self.runs.setRowCount(len(runs))
        for row, run in enumerate(runs):
            reason = run.reason + (f" ({run.error})" if run.error else "")
            cells = [
                run.name,
                run.status,
                f"{run.frames_written:,}",
                f"{run.readings_recorded:,}",
                _size(run.size_bytes),
                _clock(run.modified),
                reason,
                run.path,
            ]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 1:
                    item.setForeground(QColor(OUTCOME_COLOURS.get(run.status, theme.RED)))
                if column in (2, 3, 4):
                    item.setTextAlignment(theme.ALIGN_RIGHT)
                if column in (6, 7):
                    item.setToolTip(text)
                self.runs.setItem(row, column, item)

    # -- scans: the list, following one ----------------------------------------------------------

    def _on_scans(self, scans: list[ScanStatus]) -> None:
        self.scans = {s.id: s for s in scans}
        shown = sorted(scans, key=lambda s: s.created, reverse=True)
        selected = self.selected_scan()
        self.scan_list.setRowCount(len(shown))
        for row, scan in enumerate(shown):
            done = f"{scan.points_done:,}" + (
                f" / {scan.points_total:,}" if scan.points_total else ""
            )
            where = scan.error if scan.error and scan.finished else scan.run_path
            cells = [scan.id, scan.kind, scan.state, done, _clock(scan.started), scan.origin, where]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 2:
                    colour = OUTCOME_COLOURS.get(scan.state, theme.RED)
                    if scan.state in RUNNING_SCAN:
                        colour = theme.AMBER if scan.state == "suspended" else theme.ACCENT
                    item.setForeground(QColor(colour))
                if column == 6:
                    item.setToolTip(text)
                self.scan_list.setItem(row, column, item)
            if scan.id == selected:
                self.scan_list.selectRow(row)
        # a recording (StartRun: a count plan, origin "record") shows as a run, not a scan
        running = [s for s in scans if s.state in RUNNING_SCAN and s.origin != "record"]
        current = self.scan
        if running and (current is None or current.finished or current.id not in self.scans):
            self.follow(running[0])
        elif current is not None and current.id in self.scans:
            self._on_scan(self.scans[current.id])  # newer than the stream's, if that lags
        self._update_scan_buttons()

    def selected_scan(self) -> str:
        rows = self.scan_list.selectionModel().selectedRows()
        if not rows:
            return ""
        item = self.scan_list.item(rows[0].row(), 0)
        return item.text() if item is not None else ""

    def _update_scan_buttons(self) -> None:
        chosen = self.selected_scan()
        self.guard.enable(self.plot_scan, bool(chosen))
        self.guard.enable(self.view_table, bool(chosen))
        self.guard.enable(self.export_table, bool(chosen))

    def _plot_selected(self) -> None:
        chosen = self.scans.get(self.selected_scan())
        if chosen is not None:
            self.follow(chosen)

    def _on_started(self, status: ScanStatus) -> None:
        self.scans[status.id] = status
        self.follow(status)

    def follow(self, status: ScanStatus) -> None:
        """Plot ``status``'s scan from its first event and show its progress."""
        if self.scan is not None and self.scan.id == status.id and self.data is not None:
            self._on_scan(status)
            return
        self.scan = None  # the next status of this scan is taken, whatever it says
        self.data = ScanData(status.id, kind=status.kind)
        self.plot.show_scan(self.data)
        self.progress_error.clear_error()

        def failed(error: BaseException) -> None:
            self.progress_error.show_error(f"following scan {status.id}: {error_text(error)}")

        self.follower.start(
            self.state.connection,
            status.id,
            self._on_events,
            self._on_scan,
            failed=failed,
            status=not status.finished,
        )
        self._on_scan(status)

    def _on_events(self, events: list[ScanEvent]) -> None:
        data = self.data
        if data is None or not events or events[0].scan_id != data.scan_id:
            return
        data.add(events)
        self.plot.changed()
        self._show_progress()
        if any(e.kind == "ended" for e in events):
            self._list_runs()

    def _on_scan(self, status: ScanStatus) -> None:
        """A status of the followed scan, from its stream, the list or a reply: the newest
        wins (``events`` counts what the scan has done; a status never goes back)."""
        previous = self.scan
        if previous is not None and (
            status.id != previous.id or (status.events < previous.events and not status.finished)
        ):
            return
        self.scan = status
        self.scans[status.id] = status
        self._show_progress()
        if status.finished and (previous is None or not previous.finished):
            self._list_runs()

    # -- the scan's table ------------------------------------------------------------------------

    def _fetch_table(self, *, export: bool) -> None:
        scan_id = self.selected_scan()
        if not scan_id:
            return
        status = self.scans.get(scan_id)
        run_path = status.run_path if status is not None else ""
        self.table_error.clear_error()
        target: Path | None = None
        if export:
            name, _ = QFileDialog.getSaveFileName(
                self, "Export the scan's table", f"scan-{scan_id}.csv", "CSV (*.csv)"
            )
            if not name:
                return
            target = Path(name)

        def fetched(table: pa.Table) -> None:
            if target is not None:
                log.info(
                    "exported scan %s's table (%d rows) to %s", scan_id, table.num_rows, target
                )
                return
            self.show_table(scan_id, table, run_path)

        async def fetch(bench: AsyncBench) -> pa.Table:
            table = await bench.scan_table(scan_id)
            if target is not None:
                await asyncio.to_thread(export_csv, table, target)
            return table

        def failed(error: BaseException) -> None:
            self.table_error.show_error(f"scan {scan_id}'s table: {error_text(error)}")

        self.state.connection.call(fetch, fetched, failed)

    def show_table(self, scan_id: str, table: pa.Table, run_path: str) -> ScanTableDialog:
        dialog = ScanTableDialog(
            self, scan_id, table, run_path, self.state.connection.on_qt(lambda f: f())
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda _=None, d=dialog: self._forget(d))
        self._tables.append(dialog)
        dialog.show()
        return dialog

    def _forget(self, dialog: ScanTableDialog) -> None:
        if dialog in self._tables:
            self._tables.remove(dialog)

    # -- recording -------------------------------------------------------------------------------

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
            self.record_error.show_error(f"metadata {error}")
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

    # -- progress and control --------------------------------------------------------------------

    def _show_progress(self) -> None:
        scan, run = self.scan, self.run
        scanning = scan is not None and scan.state in RUNNING_SCAN
        recording = run is not None and run.state in ("recording", "finishing")
        self.progress_detail.setStyleSheet("")
        if scan is not None and (scanning or not recording):
            self._show_scan(scan)
        elif run is not None and run.state != "idle":
            self._show_run(run)
        else:
            self.progress_title.setText("Nothing running")
            self.progress.setValue(0)
            self.progress.setFormat("")
            self.progress_detail.setText("")
        running = scanning and scan is not None
        self.guard.enable(self.pause, running and scan.state in ("running", "suspended"))  # type: ignore[union-attr]
        self.guard.enable(self.resume, running and scan.state == "paused")  # type: ignore[union-attr]
        self.guard.enable(self.abort, scanning)
        self.guard.enable(self.stop, scanning or recording)

    def _show_scan(self, scan: ScanStatus) -> None:
        pausing = scan.pause_requested and scan.state == "running"
        self.progress_title.setText(
            f"Scan {scan.id} · {scan.kind or 'plan'}: {scan.state}"
            + (" (pausing)" if pausing else "")
        )
        total = scan.points_total
        done = scan.points_done  # or the points plotted, if the status lags behind the events
        if self.data is not None and self.data.scan_id == scan.id:
            done = max(done, len(self.data.index))
        if total:
            self.progress.setValue(int(1000 * done / total))
            left = ""
            if scan.state == "running" and scan.started and done >= 2:
                elapsed = time.time() - scan.started
                left = " · " + _left(elapsed / done * (total - done))
            self.progress.setFormat(f"{done:,} / {total:,} points{left}")
        else:
            elapsed = (scan.ended or time.time()) - scan.started if scan.started else 0.0
            self.progress.setValue(1000 if scan.finished else 0)
            self.progress.setFormat(f"{done:,} points · {elapsed:.0f} s")
        details = []
        if scan.state == "suspended":
            details.append(f"HELD by {scan.suspended_by}: the point will be taken again")
            self.progress_detail.setStyleSheet(f"color: {theme.AMBER};")
        elif scan.finished and scan.state != "completed":
            details.append(scan.error or scan.state)
            self.progress_detail.setStyleSheet(f"color: {theme.RED};")
        where = ", ".join(f"{k} {v:.4g}" for k, v in scan.positions.items())
        if where and not scan.finished:
            details.append(f"at {where}")
        if scan.suspensions:
            held = sum(s.seconds for s in scan.suspensions)
            details.append(f"held {len(scan.suspensions)}× ({held:.1f} s)")
        if scan.result:
            found = scan.result.get("found")
            details.append(
                f"peak at {scan.result.get('centre', float('nan')):.4g}"
                if found
                else f"no peak: {scan.result.get('reason', '')}"
            )
        if scan.run_path:
            details.append(scan.run_path)
        self.progress_detail.setText(" · ".join(details))

    def _show_run(self, run: RunStatus) -> None:
        outcome = f" ({run.outcome})" if run.outcome and run.outcome != run.state else ""
        self.progress_title.setText(f"Run '{run.name}': {run.state}{outcome}")
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
        self.progress_detail.setStyleSheet(f"color: {theme.RED};" if lost or run.error else "")

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
        if scan is not None and scan.state in RUNNING_SCAN:
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
