"""Scripts: a Starlark editor with check, upload and run; the executions in the daemon with
their state, progress and errors; the selected execution's output log.

A script runs in the daemon and outlives this GUI: close it, reopen it, and the execution and
its output are still listed. Check asks the daemon to parse and lint the text (nothing is
stored); a problem's line is highlighted and a click on it moves the cursor there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

from PySide6.QtCore import QRect, QRegularExpression, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QPainter,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
)
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from client import AsyncBench, Execution, ScriptCheck, ScriptInfo

from .. import theme
from ..connection import Session, Watch
from ..guard import Guard
from ..state import BenchState
from ..widgets import ErrorLabel, button, error_text, muted

log = logging.getLogger("gui.actions")

EXAMPLE = """# A knife-edge scan: move an axis, read the power meter at each point, record a run.
# params come from the "Parameters" field (JSON), e.g. {"points": 41}
points = params.get("points", 21)
log("scanning with", points, "points")
result = line_scan("esp300.axis1", 0, 5, points, read=["power_meter"], settle=0.02,
                   name="knife-edge")
log("recorded", result["points"], "points to", result["path"])
"""
KEYWORDS = [
    "def",
    "return",
    "for",
    "in",
    "if",
    "elif",
    "else",
    "and",
    "or",
    "not",
    "lambda",
    "pass",
    "break",
    "continue",
    "load",
    "True",
    "False",
    "None",
]
BUILTINS = [
    "move",
    "move_rel",
    "position",
    "read",
    "read_averaged",
    "set",
    "get",
    "sleep",
    "acquire",
    "log",
    "print",
    "progress",
    "devices",
    "start_run",
    "stop_run",
    "with_shutter_open",
    "line_scan",
    "grid_scan",
    "params",
    "len",
    "range",
    "struct",
]
EXECUTIONS_POLL = 1.0
OUTPUT_POLL = 0.5
ACTIVE = ("pending", "running", "paused")


class StarlarkHighlighter(QSyntaxHighlighter):
    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)

        def style(colour: str, bold: bool = False) -> QTextCharFormat:
            text_format = QTextCharFormat()
            text_format.setForeground(QColor(colour))
            if bold:
                text_format.setFontWeight(700)
            return text_format

        self.rules = [
            (QRegularExpression(r"\b(" + "|".join(KEYWORDS) + r")\b"), style("#c678dd", True)),
            (QRegularExpression(r"\b(" + "|".join(BUILTINS) + r")\b"), style("#61afef")),
            (QRegularExpression(r"\b[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?\b"), style("#d19a66")),
            (
                QRegularExpression(r"\"[^\"\\]*(\\.[^\"\\]*)*\"|'[^'\\]*(\\.[^'\\]*)*'"),
                style("#98c379"),
            ),
            (QRegularExpression(r"#[^\n]*"), style("#7f848e")),
        ]

    def highlightBlock(self, text: str) -> None:
        for pattern, text_format in self.rules:
            matches = pattern.globalMatch(text)
            while matches.hasNext():
                match = matches.next()
                self.setFormat(match.capturedStart(), match.capturedLength(), text_format)


class _LineNumbers(QWidget):
    def __init__(self, editor: CodeEditor) -> None:
        super().__init__(editor)
        self.editor = editor

    def sizeHint(self) -> QSize:
        return QSize(self.editor.gutter_width(), 0)

    def paintEvent(self, event: Any) -> None:
        self.editor.paint_gutter(event)


class CodeEditor(QPlainTextEdit):
    """A plain-text editor with line numbers and a marked problem line."""

    def __init__(self) -> None:
        super().__init__()
        self.setFont(theme.monospace())
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setTabStopDistance(4 * self.fontMetrics().horizontalAdvance(" "))
        self.gutter = _LineNumbers(self)
        self.highlighter = StarlarkHighlighter(self.document())
        self.problem_lines: set[int] = set()
        self.blockCountChanged.connect(
            lambda _: self.setViewportMargins(self.gutter_width(), 0, 0, 0)
        )
        self.updateRequest.connect(self._update_gutter)
        self.setViewportMargins(self.gutter_width(), 0, 0, 0)

    def gutter_width(self) -> int:
        digits = max(3, len(str(self.blockCount())))
        return 10 + self.fontMetrics().horizontalAdvance("9") * digits

    def _update_gutter(self, rect: QRect, dy: int) -> None:
        if dy:
            self.gutter.scroll(0, dy)
        else:
            self.gutter.update(0, rect.y(), self.gutter.width(), rect.height())

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        rect = self.contentsRect()
        self.gutter.setGeometry(QRect(rect.left(), rect.top(), self.gutter_width(), rect.height()))

    def paint_gutter(self, event: Any) -> None:
        painter = QPainter(self.gutter)
        painter.fillRect(event.rect(), QColor(theme.RAISED))
        block = self.firstVisibleBlock()
        number = block.blockNumber()
        top = round(self.blockBoundingGeometry(block).translated(self.contentOffset()).top())
        bottom = top + round(self.blockBoundingRect(block).height())
        height = self.fontMetrics().height()
        while block.isValid() and top <= event.rect().bottom():
            if block.isVisible() and bottom >= event.rect().top():
                bad = number + 1 in self.problem_lines
                painter.setPen(QColor(theme.RED if bad else theme.MUTED))
                painter.drawText(
                    0,
                    top,
                    self.gutter.width() - 5,
                    height,
                    Qt.AlignmentFlag.AlignRight,
                    str(number + 1),
                )
            block = block.next()
            top = bottom
            bottom = top + round(self.blockBoundingRect(block).height())
            number += 1
        painter.end()

    def mark(self, lines: set[int]) -> None:
        self.problem_lines = lines
        selections = []
        for line in sorted(lines):
            block = self.document().findBlockByNumber(line - 1)
            if not block.isValid():
                continue
            selection = QTextEdit.ExtraSelection()
            selection.format.setBackground(QColor("#4a2527"))
            selection.format.setProperty(QTextFormat.Property.FullWidthSelection, True)
            selection.cursor = QTextCursor(block)
            selections.append(selection)
        self.setExtraSelections(selections)
        self.gutter.update()

    def go_to(self, line: int, column: int = 1) -> None:
        block = self.document().findBlockByNumber(max(0, line - 1))
        cursor = QTextCursor(block)
        cursor.movePosition(QTextCursor.MoveOperation.Right, n=max(0, column - 1))
        self.setTextCursor(cursor)
        self.setFocus()


class ScriptsPanel(QWidget):
    def __init__(self, state: BenchState, guard: Guard) -> None:
        super().__init__()
        self.state, self.guard = state, guard
        self.editor = CodeEditor()
        self.editor.setPlainText(EXAMPLE)
        self.editor.textChanged.connect(lambda: self.editor.mark(set()))
        self.name = QLineEdit("knife_edge")
        self.name.setToolTip("Name the script is uploaded under")
        self.name.setMaximumWidth(160)
        self.uploaded = QComboBox()
        self.uploaded.setToolTip("Scripts stored in the daemon")
        self.uploaded.setMinimumWidth(120)
        self.params = QLineEdit('{"points": 21}')
        self.params.setToolTip("The script's params: a JSON object")
        self.check = button("Check", tooltip="Parse and lint in the daemon (stores nothing)")
        self.upload = button("Upload", tooltip="Store the script in the daemon under its name")
        self.run = button("▶  Run", "primary", "Run the text in the editor in the daemon")
        self.pause = button("Pause", tooltip="Pause at the next scan point or builtin call")
        self.resume = button("Resume")
        self.stop = button("Stop", "danger", "Stop at the next step; the run file is completed")
        self.abort = button("Abort", "danger", "Stop now: the device in motion is aborted")
        self.check.clicked.connect(self._check)
        self.upload.clicked.connect(self._upload)
        self.run.clicked.connect(self._run)
        self.pause.clicked.connect(lambda: self._act("pause"))
        self.resume.clicked.connect(lambda: self._act("resume"))
        self.stop.clicked.connect(lambda: self._act("stop"))
        self.abort.clicked.connect(lambda: self._act("abort"))
        guard.safety(self.check)
        guard.mutating(self.upload, self.run, self.pause, self.resume, self.stop, self.abort)
        bar = QHBoxLayout()
        for widget in (QLabel("Name"), self.name, self.uploaded, self.check, self.upload):
            bar.addWidget(widget)
        bar.addStretch(1)
        second = QHBoxLayout()
        second.addWidget(QLabel("Parameters"))
        second.addWidget(self.params, 1)
        second.addWidget(self.run)
        self.problems = QListWidget()
        self.problems.setMaximumHeight(70)
        self.problems.itemActivated.connect(self._go_to_problem)
        self.problems.itemClicked.connect(self._go_to_problem)
        self.error = ErrorLabel()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(bar)
        left_layout.addLayout(second)
        left_layout.addWidget(self.editor, 1)
        left_layout.addWidget(muted("Problems"))
        left_layout.addWidget(self.problems)
        left_layout.addWidget(self.error)

        self.executions = QTableWidget(0, 5)
        self.executions.setHorizontalHeaderLabels(
            ["Execution", "Script", "State", "Progress", "Started"]
        )
        self.executions.verticalHeader().setVisible(False)
        self.executions.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.executions.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.executions.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.executions.setAlternatingRowColors(True)
        header = self.executions.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.executions.itemSelectionChanged.connect(self._on_selected)
        self.status = QLabel("No execution")
        self.status.setStyleSheet("font-weight: 600;")
        self.status_detail = muted("")
        self.status_detail.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        controls = QHBoxLayout()
        for widget in (self.pause, self.resume, self.stop, self.abort):
            controls.addWidget(widget)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setFont(theme.monospace())
        self.output.setMaximumBlockCount(10_000)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(muted("Executions in the daemon"))
        right_layout.addWidget(self.executions, 1)
        right_layout.addWidget(self.status)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(self.status_detail)
        right_layout.addLayout(controls)
        right_layout.addWidget(muted("Output"))
        right_layout.addWidget(self.output, 2)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setSizes([620, 520])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        self.selected = ""
        self.execution: Execution | None = None
        self._lines = 0
        self._rows: dict[str, int] = {}
        self._output_watch: Watch | None = None
        self._refresh_controls()
        state.connection.connected.connect(self._on_connected)

    # -- session -------------------------------------------------------------------------------

    def _on_connected(self, session: Session) -> None:
        conn = self.state.connection
        conn.poll(lambda b: b.executions(), self._on_executions, EXECUTIONS_POLL)
        conn.call(lambda b: b.scripts(), self._on_scripts)
        self._output_watch = None
        if self.selected:
            self._follow_output(self.selected, reset=True)

    def _on_scripts(self, scripts: list[ScriptInfo]) -> None:
        current = self.uploaded.currentText()
        self.uploaded.clear()
        self.uploaded.addItems([s.name for s in scripts])
        if current:
            self.uploaded.setCurrentText(current)

    def _on_executions(self, executions: list[Execution]) -> None:
        executions = sorted(executions, key=lambda e: e.submitted, reverse=True)
        self.executions.blockSignals(True)
        self.executions.setRowCount(len(executions))
        self._rows.clear()
        for row, execution in enumerate(executions):
            self._rows[execution.id] = row
            started = (
                time.strftime("%H:%M:%S", time.localtime(execution.started))
                if execution.started
                else ""
            )
            cells = [
                execution.id,
                execution.script,
                execution.state,
                f"{100 * execution.progress:.0f} %",
                started,
            ]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 2 and execution.state in ("error", "aborted"):
                    item.setForeground(QColor(theme.RED))
                elif column == 2 and execution.state in ACTIVE:
                    item.setForeground(QColor(theme.ACCENT))
                self.executions.setItem(row, column, item)
            if execution.id == self.selected:
                self.executions.selectRow(row)
                self._show_execution(execution)
        self.executions.blockSignals(False)
        if not self.selected and executions:
            newest = executions[0]
            if newest.state in ACTIVE:
                self.select(newest.id)

    def select(self, execution_id: str) -> None:
        row = self._rows.get(execution_id)
        self.selected = execution_id
        if row is not None:
            self.executions.selectRow(row)
        self._follow_output(execution_id, reset=True)

    def _on_selected(self) -> None:
        rows = self.executions.selectionModel().selectedRows()
        if rows:
            item = self.executions.item(rows[0].row(), 0)
            if item is not None and item.text() != self.selected:
                self.select(item.text())

    def _follow_output(self, execution_id: str, *, reset: bool) -> None:
        if self._output_watch is not None:
            self._output_watch.cancel()
        if reset:
            self.output.clear()
            self._lines = 0

        async def lines(bench: AsyncBench) -> Any:
            start = 0  # counted here, on the worker: the Qt thread may lag behind
            while True:
                new = await bench.output(execution_id, start)
                start += len(new)
                execution = await bench.execution(execution_id)
                yield new, execution
                if execution.finished and not new:
                    return
                await asyncio.sleep(OUTPUT_POLL)

        self._output_watch = self.state.connection.watch(lines, self._on_output, reopen=False)

    def _on_output(self, update: tuple[list[str], Execution]) -> None:
        new, execution = update
        if execution.id != self.selected:
            return
        if new:
            self.output.appendPlainText("\n".join(new))
            self._lines += len(new)
        self._show_execution(execution)

    def _show_execution(self, execution: Execution) -> None:
        self.execution = execution
        self.status.setText(f"{execution.id} · {execution.script or 'inline'}: {execution.state}")
        self.progress.setValue(int(1000 * execution.progress))
        detail = f"{execution.steps} steps of the budget used"
        if execution.error:
            where = f"line {execution.line}, column {execution.column}: " if execution.line else ""
            detail = f"{where}{execution.error}"
        self.status_detail.setText(detail)
        self.status_detail.setStyleSheet(f"color: {theme.RED};" if execution.error else "")
        self._refresh_controls()

    def _refresh_controls(self) -> None:
        execution = self.execution
        state = execution.state if execution is not None else ""
        self.guard.enable(self.pause, state == "running")
        self.guard.enable(self.resume, state == "paused")
        self.guard.enable(self.stop, state in ACTIVE)
        self.guard.enable(self.abort, state in ACTIVE)

    # -- actions ---------------------------------------------------------------------------------

    def _show_problems(self, problems: tuple[Any, ...]) -> None:
        self.problems.clear()
        lines = set()
        for problem in problems:
            text = f"{problem.severity}  line {problem.line}:{problem.column}  {problem.message}"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, (problem.line, problem.column))
            item.setForeground(QColor(theme.RED if problem.severity == "error" else theme.AMBER))
            self.problems.addItem(item)
            if problem.severity == "error" and problem.line:
                lines.add(problem.line)
        self.editor.mark(lines)

    def _go_to_problem(self, item: QListWidgetItem) -> None:
        line, column = item.data(Qt.ItemDataRole.UserRole)
        if line:
            self.editor.go_to(line, column)

    def _refused(self, what: str) -> Any:
        def failed(error: BaseException) -> None:
            message = error_text(error)
            self.error.show_error(message)
            log.warning("%s refused: %s", what, message)
            match = re.search(r"line (\d+)(?:, column |:)(\d+)?", message)
            if match:
                self.editor.mark({int(match.group(1))})

        return failed

    def _check(self) -> None:
        source = self.editor.toPlainText()
        self.error.clear_error()

        def checked(result: ScriptCheck) -> None:
            self._show_problems(result.problems)
            if result.ok:
                self.problems.insertItem(
                    0,
                    QListWidgetItem(
                        "ok: the script parses" + (" (warnings below)" if result.problems else "")
                    ),
                )
            log.info(
                "check: %s, %d problems", "ok" if result.ok else "errors", len(result.problems)
            )

        self.state.connection.call(
            lambda b: b.check_script(source), checked, self._refused("check")
        )

    def _upload(self) -> None:
        name, source = self.name.text().strip(), self.editor.toPlainText()
        self.error.clear_error()

        def uploaded(info: ScriptInfo) -> None:
            self._show_problems(info.problems)
            log.info("uploaded script %r (%d bytes)", info.name, info.size)
            self.state.connection.call(lambda b: b.scripts(), self._on_scripts)

        log.info("upload script %r", name)
        self.state.connection.call(
            lambda b: b.upload_script(name, source), uploaded, self._refused("upload")
        )

    def _run(self) -> None:
        source = self.editor.toPlainText()
        self.error.clear_error()
        try:
            params = json.loads(self.params.text() or "{}")
            if not isinstance(params, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            self.error.show_error(
                f'parameters: {error} (expected a JSON object, e.g. {{"points": 21}})'
            )
            return

        def started(execution: Execution) -> None:
            log.info("execution %s queued", execution.id)
            self.selected = ""
            self.select(execution.id)
            self._show_execution(execution)

        log.info("run the editor's script")
        self.state.connection.call(
            lambda b: b.start_script(source=source, params=params), started, self._refused("run")
        )

    def _act(self, action: str) -> None:
        execution_id = self.selected
        if not execution_id:
            return
        calls = {
            "pause": lambda b: b.pause_execution(execution_id),
            "resume": lambda b: b.resume_execution(execution_id),
            "stop": lambda b: b.stop_execution(execution_id, reason="stopped from the GUI"),
            "abort": lambda b: b.stop_execution(
                execution_id, force=True, reason="aborted from the GUI"
            ),
        }
        log.info("%s execution %s", action, execution_id)
        self.state.connection.call(calls[action], self._show_execution, self._refused(action))
