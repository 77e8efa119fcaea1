"""The plan form: every plan kind the daemon runs (count, line, list, grid, adaptive, tune),
built with ``client.plans`` and checked by the daemon's one validator before it starts.

The daemon is the only judge of a plan (``ValidatePlan``): the form does not re-implement its
rules, it sends the plan and shows **every** problem it gets back next to the field it names —
``path.axes[0]: esp300.axis1: 500 mm is above its travel -50 to 50 mm`` goes under the first
axis row, ``read[1]: no device named 'nope'`` under the readables. Each field of the form
registers the plan fields it stands for (:class:`Slot`); a problem goes to the slot with the
longest matching prefix (:func:`match_field`), and one no slot claims shows at the bottom, so
nothing is ever dropped. The only checks made here are the ones the plan message cannot carry:
text that is not a number.

The plan is checked as it is edited (400 ms after the last change) and again on **Start**; a
plan with problems does not start. Check is open to observers (the daemon allows it); Start is
an operator's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from benchd.v1 import plan_pb2
from client import PlanCheck, PlanProblem, ScanStatus, plans

from . import theme
from .guard import Guard
from .state import BenchState
from .widgets import ErrorLabel, button, error_text, muted

log = logging.getLogger("gui.actions")

KINDS = ["line", "grid", "list", "count", "adaptive", "tune"]
DESCRIPTIONS = {
    "count": "Readings where everything is: a number of points, or for a duration.",
    "line": "Evenly spaced points; several axes move in step (Bluesky's scan).",
    "list": "Explicit positions per axis, the axes in step (list_scan).",
    "grid": "Every combination; the first axis slowest, snake on faster ones (grid_scan).",
    "adaptive": "1-D; the step shrinks where the detector changes, grows where it is flat.",
    "tune": "A line, then the peak (centroid, gaussian fit or maximum); the axis goes there.",
}
CONDITIONS = ["below", "above", "equals", "not equals", "degraded"]
MAX_AXES = 8
MAX_SUSPENDERS = 16
CHECK_DELAY_MS = 400
#: Where a problem's field ends and a finer one begins: "read" owns "read[1]", "path.axes"
#: owns "path.axes[0].stop", "bench suspender" owns "bench suspender power_meter below …".
BOUNDARIES = ".[ "


def match_field(problem_field: str, keys: Iterable[str]) -> str | None:
    """The longest key that ``problem_field`` is, or starts with at a boundary."""
    best: str | None = None
    for key in keys:
        owns = problem_field == key or (
            problem_field.startswith(key)
            and len(problem_field) > len(key)
            and problem_field[len(key)] in BOUNDARIES
        )
        if owns and (best is None or len(key) > len(best)):
            best = key
    return best


def parse_metadata(text: str) -> dict[str, str]:
    """``key=value`` lines (blank lines and ``#`` comments skipped); ValueError names a bad line."""
    metadata = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"line {number}: expected key=value, got {line[:40]!r}")
        metadata[key.strip()] = value.strip()
    return metadata


def plain_value(text: str) -> bool | int | float | str:
    """What a typed value means: true/false/on/off, a number, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "on"):
        return True
    if lowered in ("false", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            continue
    return text.strip()


def _grid_column(layout: QGridLayout, row: int, cells: list[QWidget | None]) -> None:
    for column, cell in enumerate(cells):
        if cell is not None:
            layout.addWidget(cell, row, column)


@dataclass
class Slot:
    """A place in the form where problems show: the plan fields it stands for (``keys``),
    the widgets marked invalid, the label under them."""

    keys: tuple[str, ...]
    widgets: tuple[QWidget, ...] = ()
    error: ErrorLabel = field(default_factory=ErrorLabel)

    def show(self, messages: list[str]) -> None:
        self.error.show_error("\n".join(messages))
        for widget in self.widgets:
            widget.setProperty("invalid", bool(messages))
            theme.restyle(widget)


class Parser:
    """Reads the form's text fields; every one that is not a number becomes a problem of its
    slot (all of them at once, like the daemon's)."""

    def __init__(self) -> None:
        self.problems: list[tuple[Slot, str]] = []

    def number(self, edit: QLineEdit, slot: Slot, what: str, *, optional: bool = False) -> float:
        text = edit.text().strip()
        if not text and optional:
            return float("nan")
        try:
            return float(text)
        except ValueError:
            shown = repr(text[:30]) if text else "nothing"
            self.problems.append((slot, f"{what}: {shown} is not a number"))
            return 0.0


def _number_edit(text: str, width: int = 80, tip: str = "") -> QLineEdit:
    edit = QLineEdit(text)
    edit.setMinimumWidth(width)
    if tip:
        edit.setToolTip(tip)
    return edit


class AxisRow:
    """One axis: the device (Movable, or a writable number ``device.parameter`` typed in),
    its travel, and the kind's numbers (from / to, points and snake, or a list)."""

    def __init__(self, form: PlanForm, kind: str, index: int) -> None:
        self.form, self.kind, self.index = form, kind, index
        self.device = QComboBox()
        self.device.setEditable(True)
        self.device.setMinimumContentsLength(9)
        self.device.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.device.setToolTip(
            "A Movable device, or a writable number typed as device.parameter (maitai.wavelength)"
        )
        self.limits = muted("")
        self.start = _number_edit("0", 52)
        self.stop = _number_edit("1", 52)
        self.points = QSpinBox()
        self.points.setRange(1, 1_000_000)
        self.points.setValue(11 if kind == "grid" else 21)
        self.points.setMaximumWidth(84)
        self.snake = QCheckBox("snake")
        self.snake.setToolTip("Run backwards on every other pass of the slower axes")
        self.positions = QLineEdit("0, 0.5, 1, 2")
        self.positions.setToolTip("Positions, separated by commas or spaces")
        self.remove = button("✕", "icon")
        self.remove.setToolTip("Remove this axis")
        self.slot = Slot((f"path.axes[{index}]",), (self.device,))
        self.device.currentTextChanged.connect(self._show_limits)
        for edit in (self.start, self.stop, self.positions):
            edit.textEdited.connect(form.changed)
        self.points.valueChanged.connect(form.changed)
        self.snake.toggled.connect(form.changed)
        self.device.currentTextChanged.connect(form.changed)

    def cells(self) -> list[QWidget | None]:
        if self.kind == "list":
            return [self.device, self.limits, self.positions, None, None, None, self.remove]
        if self.kind == "grid":
            snake = self.snake if self.index > 0 else muted("slowest")
            return [self.device, self.limits, self.start, self.stop, self.points, snake,
                    self.remove]  # fmt: skip
        return [self.device, self.limits, self.start, self.stop, None, None, self.remove]

    def widgets(self) -> list[QWidget]:
        return [
            self.device, self.limits, self.start, self.stop, self.points, self.snake,
            self.positions, self.remove,
        ]  # fmt: skip

    def set_devices(self, names: list[str], default: int) -> None:
        current = self.device.currentText()
        self.device.blockSignals(True)
        self.device.clear()
        self.device.addItems(names)
        if current:
            self.device.setCurrentText(current)
        elif names:
            self.device.setCurrentIndex(min(default, len(names) - 1))
        self.device.blockSignals(False)
        self._show_limits()

    def _show_limits(self) -> None:
        self.limits.setText(self.form.travel(self.device.currentText().strip()))

    def values(self, parser: Parser) -> tuple[str, float, float]:
        return (
            self.device.currentText().strip(),
            parser.number(self.start, self.slot, f"axis {self.index + 1} from"),
            parser.number(self.stop, self.slot, f"axis {self.index + 1} to"),
        )

    def list_positions(self, parser: Parser) -> list[float]:
        values = []
        for token in self.positions.text().replace(",", " ").split():
            try:
                values.append(float(token))
            except ValueError:
                parser.problems.append(
                    (self.slot, f"axis {self.index + 1}: {token[:30]!r} is not a number")
                )
        return values


class AxesEditor(QWidget):
    """The rows of axes of a line, list or grid, with add / remove."""

    def __init__(self, form: PlanForm, kind: str) -> None:
        super().__init__()
        self.form, self.kind = form, kind
        self.rows: list[AxisRow] = []
        self.grid = QGridLayout()
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(4)
        self.grid.setVerticalSpacing(2)
        heads = {
            "line": ["axis", "travel", "from", "to", "", "", ""],
            "grid": ["axis (slowest first)", "travel", "from", "to", "points", "", ""],
            "list": ["axis", "travel", "positions", "", "", "", ""],
        }[kind]
        for column, title in enumerate(heads):
            if title:
                head = muted(title)
                self.grid.addWidget(head, 0, column)
        self.grid.setColumnStretch(0, 3)
        self.grid.setColumnStretch(2 if kind == "list" else 1, 1 if kind != "list" else 4)
        self.add = button("+ axis", tooltip=f"Add an axis (at most {MAX_AXES})")
        self.add.clicked.connect(self._add_clicked)
        self.slot = Slot(("path.axes", "path.positions"))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(self.grid)
        bar = QHBoxLayout()
        bar.addWidget(self.add)
        bar.addStretch(1)
        layout.addLayout(bar)
        layout.addWidget(self.slot.error)
        self.add_row()
        if kind == "grid":
            self.add_row()

    def _add_clicked(self) -> None:
        self.add_row()
        self.form.changed()

    def add_row(self) -> None:
        if len(self.rows) >= MAX_AXES:
            return
        row = AxisRow(self.form, self.kind, len(self.rows))
        row.remove.clicked.connect(lambda _=False, r=row: self.remove_row(r))
        self.rows.append(row)
        row.set_devices(self.form.movable(), len(self.rows) - 1)
        if self.kind == "grid" and row.index > 0:
            row.snake.setChecked(True)
        self._layout()

    def remove_row(self, row: AxisRow) -> None:
        if len(self.rows) <= 1:
            return
        self.rows.remove(row)
        for widget in row.widgets():
            widget.setParent(None)
            widget.deleteLater()
        row.slot.error.setParent(None)
        row.slot.error.deleteLater()
        for index, kept in enumerate(self.rows):
            kept.index = index
            kept.slot.keys = (f"path.axes[{index}]",)
        self._layout()
        self.form.changed()

    def _layout(self) -> None:
        for number, row in enumerate(self.rows):
            for widget in row.widgets():
                self.grid.removeWidget(widget)
                widget.hide()
            self.grid.removeWidget(row.slot.error)
            _grid_column(self.grid, 1 + 2 * number, row.cells())
            for cell in row.cells():
                if cell is not None:
                    cell.show()
            self.grid.addWidget(row.slot.error, 2 + 2 * number, 0, 1, 7)
            row.remove.setEnabled(len(self.rows) > 1)
        self.add.setEnabled(len(self.rows) < MAX_AXES)

    def slots(self) -> list[Slot]:
        return [self.slot, *(row.slot for row in self.rows)]

    def refresh_devices(self) -> None:
        for number, row in enumerate(self.rows):
            row.set_devices(self.form.movable(), number)


class SuspenderRow:
    def __init__(self, form: PlanForm, index: int) -> None:
        self.form, self.index = form, index
        self.signal = QComboBox()
        self.signal.setEditable(True)
        self.signal.setToolTip("A Readable's readings, or a parameter (maitai.shutter)")
        self.condition = QComboBox()
        self.condition.addItems(CONDITIONS)
        self.threshold = _number_edit("5e-7", 60, "the threshold (below/above), or the value")
        self.resume = _number_edit("", 60, "below/above: the level it must get back to")
        self.resume.setPlaceholderText("resume at")
        self.settle = _number_edit("2", 40, "seconds without a new trip before it goes on")
        self.remove = button("✕", "icon", "Remove this suspender")
        self.slot = Slot((f"suspenders[{index}]",), (self.signal,))
        for edit in (self.threshold, self.resume, self.settle):
            edit.textEdited.connect(form.changed)
        self.signal.currentTextChanged.connect(form.changed)
        self.condition.currentTextChanged.connect(self._condition_changed)

    def _condition_changed(self, condition: str) -> None:
        self.threshold.setEnabled(condition != "degraded")
        self.resume.setEnabled(condition in ("below", "above"))
        self.form.changed()

    def widgets(self) -> list[QWidget]:
        return [self.signal, self.condition, self.threshold, self.resume, self.settle, self.remove]

    def build(self, parser: Parser) -> plan_pb2.Suspender | None:
        signal = self.signal.currentText().strip()
        condition = self.condition.currentText().replace(" ", "_")
        settle = parser.number(self.settle, self.slot, "settle", optional=True)
        options: dict[str, Any] = {"settle": 0.0 if math.isnan(settle) else settle}
        if condition in ("below", "above"):
            options[condition] = parser.number(self.threshold, self.slot, "threshold")
            resume = parser.number(self.resume, self.slot, "resume", optional=True)
            if not math.isnan(resume):  # given
                options["resume"] = resume
        elif condition == "degraded":
            options["degraded"] = True
        else:
            options[condition] = plain_value(self.threshold.text())
        try:
            return plans.suspender(signal, **options)
        except ValueError as error:
            parser.problems.append((self.slot, str(error)))
            return None


class PlanForm(QWidget):
    """The form; ``started`` carries the new scan's status once the daemon has queued it."""

    started = Signal(object)  # ScanStatus
    checked = Signal(object)  # PlanCheck

    def __init__(self, state: BenchState, guard: Guard) -> None:
        super().__init__()
        self.state, self.guard = state, guard
        self.last_check: PlanCheck | None = None
        self._check_number = 0
        self._starting = False
        self._building = True
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(CHECK_DELAY_MS)
        self._timer.timeout.connect(self.check)

        self.kind = QComboBox()
        self.kind.addItems(KINDS)
        self.kind.setToolTip("The plan's path: where the points are")
        self.kind_note = muted(DESCRIPTIONS[KINDS[0]])
        self.kind_note.setWordWrap(True)
        self.pages = QStackedWidget()
        self.axes: dict[str, AxesEditor] = {}  # line, grid, list
        self.single: dict[str, AxisRow] = {}  # adaptive, tune: one axis
        self.detector: dict[str, QComboBox] = {}  # adaptive, tune
        self.relative: dict[str, QCheckBox] = {}
        self.numbers: dict[str, QLineEdit] = {}  # "count.interval", "adaptive.min_step", …
        self._slots: dict[str, list[Slot]] = {}
        for kind in KINDS:
            self.pages.addWidget(self._page(kind))
        self.kind.currentIndexChanged.connect(self._kind_changed)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        head = QFormLayout()
        head.addRow("Plan", self.kind)
        head.addRow("", self.kind_note)
        layout.addLayout(head)
        path_box = QGroupBox("Path")
        path_layout = QVBoxLayout(path_box)
        path_layout.setContentsMargins(6, 4, 6, 6)
        path_layout.addWidget(self.pages)
        layout.addWidget(path_box)
        layout.addWidget(self._point_box())
        layout.addWidget(self._suspender_box())
        layout.addWidget(self._run_box())

        self.estimate = muted("")
        self.estimate.setWordWrap(True)
        self.general = Slot(("",))
        self.check_button = button(
            "Check", tooltip="Ask the daemon whether this plan can run now (nothing moves)"
        )
        self.check_button.clicked.connect(self.check)
        self.start_button = button(
            "▶  Start", "primary", "Check the plan with the daemon, then start it if it can run"
        )
        self.start_button.clicked.connect(self.start)
        guard.safety(self.check_button)
        guard.mutating(self.start_button)
        bar = QHBoxLayout()
        bar.addWidget(self.check_button)
        bar.addWidget(self.start_button, 1)
        layout.addWidget(self.estimate)
        layout.addLayout(bar)
        layout.addWidget(self.general.error)
        layout.addStretch(1)

        state.devices_changed.connect(self._on_devices)
        state.parameters_listed.connect(lambda *_: self._refresh_travel())
        state.connection.connected.connect(lambda _: self.changed())
        self._building = False
        self._kind_changed(0)

    # -- building the form -----------------------------------------------------------------

    def _page(self, kind: str) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        slots: list[Slot] = []
        self._slots[kind] = slots

        def add(label: str, widget: QWidget, *keys: str, marked: QWidget | None = None) -> Slot:
            slot = Slot(keys, (marked or widget,))
            form.addRow(label, widget)
            form.addRow("", slot.error)
            slots.append(slot)
            return slot

        def number(label: str, text: str, *keys: str, tip: str = "") -> QLineEdit:
            edit = _number_edit(text, tip=tip)
            edit.textEdited.connect(self.changed)
            self.numbers[f"{kind}.{keys[0].rsplit('.', 1)[-1]}"] = edit
            add(label, edit, *keys)
            return edit

        if kind in ("line", "grid", "list"):
            editor = self.axes[kind] = AxesEditor(self, kind)
            form.addRow(editor)
            if kind == "line":
                self.line_points = QSpinBox()
                self.line_points.setRange(1, 1_000_000)
                self.line_points.setValue(21)
                self.line_points.valueChanged.connect(self.changed)
                add("Points", self.line_points, "path.points")
        elif kind == "count":
            self.count_num = QSpinBox()
            self.count_num.setRange(0, 1_000_000)
            self.count_num.setValue(10)
            self.count_num.setSpecialValueText("until the duration")
            self.count_num.valueChanged.connect(self.changed)
            add("Points", self.count_num, "path.num")
            number("Interval (s)", "0", "path.interval", tip="seconds from one point to the next")
            number("Duration (s)", "0", "path.duration", tip="> 0: end after this long")
        else:  # adaptive, tune: one axis and a detector
            row = AxisRow(self, kind, 0)
            row.slot.keys = ("path.axis", "path.axes")
            self.single[kind] = row
            axis = QWidget()
            line = QHBoxLayout(axis)
            line.setContentsMargins(0, 0, 0, 0)
            line.addWidget(row.device, 1)
            line.addWidget(row.limits)
            form.addRow("Axis", axis)
            form.addRow("", row.slot.error)
            slots.append(row.slot)
            row.start.setText("-0.2")
            row.stop.setText("0.8")
            add("From", row.start, "path.start")
            add("To", row.stop, "path.stop")
            detector = QComboBox()
            detector.setToolTip("The Readable whose readings decide (a peak, a power)")
            detector.currentTextChanged.connect(self.changed)
            self.detector[kind] = detector
            add("Detector", detector, "path.detector")
            if kind == "adaptive":
                number("Target Δ", "0.05", "path.target_delta",
                       tip="the change in the detector wanted between points")  # fmt: skip
                number("Min step", "0.005", "path.min_step")
                number("Max step", "0.1", "path.max_step")
                self.adaptive_max_points = QSpinBox()
                self.adaptive_max_points.setRange(0, 1_000_000)
                self.adaptive_max_points.setSpecialValueText("no limit")
                self.adaptive_max_points.valueChanged.connect(self.changed)
                add("Max points", self.adaptive_max_points, "path.max_points")
            else:
                self.tune_points = QSpinBox()
                self.tune_points.setRange(3, 1_000_000)
                self.tune_points.setValue(21)
                self.tune_points.valueChanged.connect(self.changed)
                add("Points", self.tune_points, "path.points")
                self.tune_method = QComboBox()
                self.tune_method.addItems(["centroid", "gaussian", "maximum"])
                self.tune_method.currentTextChanged.connect(self.changed)
                add("Peak by", self.tune_method, "path.method")
                self.tune_move = QCheckBox("move the axis to the peak")
                self.tune_move.setChecked(True)
                self.tune_move.toggled.connect(self.changed)
                form.addRow("", self.tune_move)
        if kind != "count":
            relative = QCheckBox("relative: offsets from where the axes are")
            relative.setToolTip("The axes go back to where they were when the plan ends")
            relative.toggled.connect(self.changed)
            self.relative[kind] = relative
            add("", relative, "path.relative")
        return page

    def _point_box(self) -> QGroupBox:
        box = QGroupBox("At each point")
        form = QFormLayout(box)
        self.read = QListWidget()
        self.read.setMaximumHeight(78)
        self.read.setToolTip("Readable devices read at every point")
        self.read.itemChanged.connect(lambda _: self.changed())
        self.read_slot = Slot(("read",), (self.read,))
        form.addRow("Read", self.read)
        form.addRow("", self.read_slot.error)
        self.settle = _number_edit("0.02", tip="seconds between arriving and reading")
        self.dwell = _number_edit("0", tip="seconds after each point")
        self.settle_slot = Slot(("settle",), (self.settle,))
        self.dwell_slot = Slot(("dwell",), (self.dwell,))
        timing = QHBoxLayout()
        timing.addWidget(self.settle)
        timing.addWidget(muted("dwell (s)"))
        timing.addWidget(self.dwell)
        form.addRow("Settle (s)", timing)
        form.addRow("", self.settle_slot.error)
        form.addRow("", self.dwell_slot.error)
        self.frames = QSpinBox()
        self.frames.setRange(0, 10_000)
        self.frames.setSpecialValueText("none")
        self.camera = QComboBox()
        self.camera.setToolTip("The camera that takes the frames")
        frames = QHBoxLayout()
        frames.addWidget(self.frames)
        frames.addWidget(self.camera, 1)
        self.frames_slot = Slot(("frames", "camera"), (self.frames,))
        form.addRow("Frames", frames)
        form.addRow("", self.frames_slot.error)
        for edit in (self.settle, self.dwell):
            edit.textEdited.connect(self.changed)
        self.frames.valueChanged.connect(self.changed)
        return box

    def _suspender_box(self) -> QGroupBox:
        box = QGroupBox("Suspenders (hold while the bench is not fit to measure)")
        layout = QVBoxLayout(box)
        layout.setSpacing(2)
        self.suspender_grid = QGridLayout()
        self.suspender_grid.setHorizontalSpacing(4)
        for column, title in enumerate(["signal", "condition", "value", "resume", "settle s"]):
            self.suspender_grid.addWidget(muted(title), 0, column)
        self.suspender_grid.setColumnStretch(0, 2)
        self.suspenders: list[SuspenderRow] = []
        self.suspenders_slot = Slot(("suspenders",))
        self.add_suspender = button("+ suspender", tooltip="Hold the plan while a value is bad")
        self.add_suspender.clicked.connect(self._add_suspender_clicked)
        self.bench_suspenders = QCheckBox("and the bench's default suspenders")
        self.bench_suspenders.setChecked(True)
        self.bench_suspenders.toggled.connect(self.changed)
        self.bench_slot = Slot(("bench suspender",), (self.bench_suspenders,))
        layout.addLayout(self.suspender_grid)
        bar = QHBoxLayout()
        bar.addWidget(self.add_suspender)
        bar.addWidget(self.bench_suspenders, 1)
        layout.addLayout(bar)
        layout.addWidget(self.suspenders_slot.error)
        layout.addWidget(self.bench_slot.error)
        return box

    def _add_suspender_clicked(self) -> None:
        self._add_suspender()
        self.changed()

    def _add_suspender(self) -> None:
        if len(self.suspenders) >= MAX_SUSPENDERS:
            return
        row = SuspenderRow(self, len(self.suspenders))
        row.signal.addItems(self.signals())
        row.remove.clicked.connect(lambda _=False, r=row: self._remove_suspender(r))
        self.suspenders.append(row)
        self._layout_suspenders()

    def _remove_suspender(self, row: SuspenderRow) -> None:
        self.suspenders.remove(row)
        for widget in (*row.widgets(), row.slot.error):
            widget.setParent(None)
            widget.deleteLater()
        for index, kept in enumerate(self.suspenders):
            kept.index = index
            kept.slot.keys = (f"suspenders[{index}]",)
        self._layout_suspenders()
        self.changed()

    def _layout_suspenders(self) -> None:
        for number, row in enumerate(self.suspenders):
            for widget in (*row.widgets(), row.slot.error):
                self.suspender_grid.removeWidget(widget)
            _grid_column(self.suspender_grid, 1 + 2 * number, list(row.widgets()))
            self.suspender_grid.addWidget(row.slot.error, 2 + 2 * number, 0, 1, 6)
        self.add_suspender.setEnabled(len(self.suspenders) < MAX_SUSPENDERS)

    def _run_box(self) -> QGroupBox:
        box = QGroupBox("Run")
        form = QFormLayout(box)
        self.name = QLineEdit()
        self.name.setPlaceholderText("the plan's kind")
        self.name.setToolTip("The run file's name (letters, digits, . _ -)")
        self.name_slot = Slot(("name",), (self.name,))
        form.addRow("Name", self.name)
        form.addRow("", self.name_slot.error)
        self.settings = QPlainTextEdit()
        self.settings.setPlaceholderText("maitai.wavelength = 800")
        self.settings.setMaximumHeight(44)
        self.settings.setToolTip("device.parameter = value lines, set before the first point")
        self.settings_slot = Slot(("parameters",), (self.settings,))
        form.addRow("Set first", self.settings)
        form.addRow("", self.settings_slot.error)
        self.metadata = QPlainTextEdit()
        self.metadata.setPlaceholderText("sample=knife edge\noperator=alice")
        self.metadata.setMaximumHeight(44)
        self.metadata_slot = Slot(("metadata",), (self.metadata,))
        form.addRow("Metadata", self.metadata)
        form.addRow("", self.metadata_slot.error)
        self.name.textEdited.connect(self.changed)
        self.settings.textChanged.connect(self.changed)
        self.metadata.textChanged.connect(self.changed)
        return box

    # -- what the bench offers ---------------------------------------------------------------

    def movable(self) -> list[str]:
        return self.state.with_capability("Movable")

    def readable(self) -> list[str]:
        return self.state.with_capability("Readable")

    def signals(self) -> list[str]:
        """Suspender signals: readables, then the bench's on/off parameters (shutters…)."""
        names = list(self.readable())
        for device, infos in self.state.infos.items():
            for info in infos.values():
                if info.dtype == "bool":
                    names.append(f"{device}.{info.name}")
        return names

    def travel(self, axis: str) -> str:
        """ "-50 … 50 mm" for a Movable (its position limits) or a number parameter."""
        device = self.state.devices.get(axis)
        if device is not None and device.position_limits:
            low, high = device.position_limits
            return f"{low:g} … {high:g} {device.units}".strip()
        if device is not None:
            return "no limits reported"
        owner, _, name = axis.rpartition(".")
        info = self.state.infos.get(owner, {}).get(name)
        if info is not None:
            if info.read_only or info.dtype not in ("float", "int"):
                return "not a writable number"
            if info.limits:
                return f"{info.limits[0]:g} … {info.limits[1]:g} {info.units}".strip()
            return "no limits"
        return ""

    def _on_devices(self, *_: object) -> None:
        movable = self.movable()
        for editor in self.axes.values():
            first = editor.rows[0].device
            if [first.itemText(i) for i in range(first.count())] != movable:
                editor.refresh_devices()
        for kind, row in self.single.items():
            if row.device.count() != len(self.movable()):
                row.set_devices(self.movable(), 0)
            detector = self.detector[kind]
            readable = self.readable()
            if [detector.itemText(i) for i in range(detector.count())] != readable:
                current = detector.currentText()
                detector.blockSignals(True)
                detector.clear()
                detector.addItems(readable)
                default = current or ("peak" if "peak" in readable else "")
                if default in readable:
                    detector.setCurrentText(default)
                detector.blockSignals(False)
        readable = self.readable()
        existing = [self.read.item(i).text() for i in range(self.read.count())]
        if existing != readable:
            checked = {
                self.read.item(i).text()
                for i in range(self.read.count())
                if self.read.item(i).checkState() == Qt.CheckState.Checked
            } or {"peak" if "peak" in readable else "power_meter"}
            self.read.blockSignals(True)
            self.read.clear()
            for name in readable:
                item = QListWidgetItem(name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(
                    Qt.CheckState.Checked if name in checked else Qt.CheckState.Unchecked
                )
                self.read.addItem(item)
            self.read.blockSignals(False)
        cameras = self.state.cameras
        if [self.camera.itemText(i) for i in range(self.camera.count())] != cameras:
            self.camera.clear()
            self.camera.addItems(cameras)
        self.camera.setVisible(len(cameras) > 1)
        self.changed()

    def _refresh_travel(self) -> None:
        for editor in self.axes.values():
            for row in editor.rows:
                row._show_limits()
        for row in self.single.values():
            row._show_limits()

    def _kind_changed(self, index: int) -> None:
        kind = KINDS[index]
        self.pages.setCurrentIndex(index)
        for number in range(self.pages.count()):  # the box takes the height of this page only
            policy = QSizePolicy.Policy.Preferred if number == index else QSizePolicy.Policy.Ignored
            page = self.pages.widget(number)
            if page is not None:
                page.setSizePolicy(policy, policy)
        self.pages.adjustSize()
        self.kind_note.setText(DESCRIPTIONS[kind])
        self.name.setPlaceholderText(kind)
        self.changed()

    # -- the plan ------------------------------------------------------------------------------

    @property
    def current_kind(self) -> str:
        return KINDS[self.kind.currentIndex()]

    def slots(self) -> list[Slot]:
        kind = self.current_kind
        found = list(self._slots[kind])
        if kind in self.axes:
            found += self.axes[kind].slots()
        found += [
            self.read_slot, self.settle_slot, self.dwell_slot, self.frames_slot,
            self.suspenders_slot, self.bench_slot, self.name_slot, self.settings_slot,
            self.metadata_slot, *(row.slot for row in self.suspenders),
        ]  # fmt: skip
        return found

    def read_devices(self) -> list[str]:
        return [
            self.read.item(i).text()
            for i in range(self.read.count())
            if self.read.item(i).checkState() == Qt.CheckState.Checked
        ]

    def build(self) -> tuple[plan_pb2.Plan | None, list[tuple[Slot, str]]]:
        """The plan the form describes, or the fields that are not numbers."""
        parser = Parser()
        kind = self.current_kind
        options: dict[str, Any] = {
            "read": self.read_devices(),
            "settle": parser.number(self.settle, self.settle_slot, "settle"),
            "dwell": parser.number(self.dwell, self.dwell_slot, "dwell"),
            "frames": self.frames.value(),
            "camera": self.camera.currentText() if self.frames.value() else "",
            "name": self.name.text().strip(),
            "bench_suspenders": self.bench_suspenders.isChecked(),
        }
        try:
            options["metadata"] = parse_metadata(self.metadata.toPlainText())
        except ValueError as error:
            parser.problems.append((self.metadata_slot, f"metadata {error}"))
        settings: dict[str, bool | int | float | str] = {}
        for number, raw in enumerate(self.settings.toPlainText().splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, equals, value = line.partition("=")
            if not equals or "." not in key.strip():
                parser.problems.append(
                    (self.settings_slot, f"line {number}: expected device.parameter = value")
                )
                continue
            settings[key.strip()] = plain_value(value)
        options["parameters"] = settings
        suspenders = [row.build(parser) for row in self.suspenders]
        options["suspenders"] = [s for s in suspenders if s is not None]
        plan = self._path(kind, parser, options)
        return (None if parser.problems else plan), parser.problems

    def _path(self, kind: str, parser: Parser, options: dict[str, Any]) -> plan_pb2.Plan:
        def number(name: str, what: str) -> float:
            return parser.number(self.numbers[f"{kind}.{name}"], self._slot(f"path.{name}"), what)

        if kind == "count":
            return plans.count(
                self.count_num.value(),
                interval=number("interval", "interval"),
                duration=number("duration", "duration"),
                **options,
            )
        relative = self.relative[kind].isChecked()
        if kind == "line":
            spans = [row.values(parser) for row in self.axes["line"].rows]
            return plans.line(spans, points=self.line_points.value(), relative=relative,
                              **options)  # fmt: skip
        if kind == "grid":
            dims = [
                (*row.values(parser), row.points.value(), row.index > 0 and row.snake.isChecked())
                for row in self.axes["grid"].rows
            ]
            return plans.grid(*dims, relative=relative, **options)
        if kind == "list":
            positions = {
                row.device.currentText().strip(): row.list_positions(parser)
                for row in self.axes["list"].rows
            }
            return plans.list_scan(positions, relative=relative, **options)
        row = self.single[kind]
        axis = row.device.currentText().strip()
        start = parser.number(row.start, self._slot("path.start"), "from")
        stop = parser.number(row.stop, self._slot("path.stop"), "to")
        detector = self.detector[kind].currentText()
        if kind == "adaptive":
            return plans.adaptive(
                axis, start, stop, detector=detector,
                target_delta=number("target_delta", "target Δ"),
                min_step=number("min_step", "min step"),
                max_step=number("max_step", "max step"),
                max_points=self.adaptive_max_points.value(), relative=relative, **options,
            )  # fmt: skip
        return plans.tune(
            axis, start, stop, self.tune_points.value(), detector=detector,
            method=self.tune_method.currentText(), move=self.tune_move.isChecked(),
            relative=relative, **options,
        )  # fmt: skip

    def _slot(self, key: str) -> Slot:
        for slot in self.slots():
            if key in slot.keys:
                return slot
        return self.general

    # -- problems --------------------------------------------------------------------------------

    def show_problems(self, problems: Iterable[tuple[Slot, str]]) -> None:
        grouped: dict[int, list[str]] = {}
        slots = [*self.slots(), self.general]
        for slot, message in problems:
            grouped.setdefault(id(slot), []).append(message)
        for slot in slots:
            slot.show(grouped.get(id(slot), []))

    def route(self, problems: Iterable[PlanProblem]) -> list[tuple[Slot, str]]:
        """Each problem of the daemon's to the slot of its field (the general one if none)."""
        slots = self.slots()
        keys = {key: slot for slot in slots for key in slot.keys}
        routed = []
        for problem in problems:
            key = match_field(problem.field, keys)
            slot = keys[key] if key is not None else self.general
            text = problem.message
            if slot is self.general and problem.field:
                text = f"{problem.field}: {text}"
            routed.append((slot, text))
        return routed

    def problem_texts(self) -> dict[str, str]:
        """What each visible problem label says, by its slot's first key (for tests)."""
        return {
            (slot.keys[0] if slot.keys else ""): slot.error.text()
            for slot in [*self.slots(), self.general]
            if slot.error.text()
        }

    # -- checking and starting -------------------------------------------------------------------

    def changed(self, *_: object) -> None:
        if self._building:
            return
        self.last_check = None
        if self.state.connection.connected_now:
            self._timer.start()

    def check(self, then: Callable[[plan_pb2.Plan], None] | None = None) -> None:
        """Ask the daemon; show every problem inline. ``then(plan)`` if it can run."""
        self._timer.stop()
        plan, local = self.build()
        if plan is None:
            self.show_problems(local)
            self.estimate.setText("")
            if then is not None:
                self._starting = False
                self._update_start()
            return
        self._check_number += 1
        number = self._check_number

        def done(check: PlanCheck) -> None:
            if number != self._check_number:
                return  # the form changed since: a newer check is on its way
            self.last_check = check
            self.show_problems(self.route(check.problems))
            self._show_estimate(check)
            self.checked.emit(check)
            if then is not None:
                if check.ok:
                    then(plan)
                else:
                    self._starting = False
                    self._update_start()
                    log.warning(
                        "plan not started: %d problem%s", len(check.problems),
                        "s" if len(check.problems) != 1 else "",
                    )  # fmt: skip

        def failed(error: BaseException) -> None:
            if number != self._check_number:
                return
            self.show_problems([(self.general, error_text(error))])
            if then is not None:
                self._starting = False
                self._update_start()

        self.state.connection.call(lambda b: b.validate_plan(plan), done, failed)

    def _show_estimate(self, check: PlanCheck) -> None:
        if not check.ok:
            count = len(check.problems)
            self.estimate.setText(f"{count} problem{'s' if count != 1 else ''}: see the fields")
            self.estimate.setStyleSheet(f"color: {theme.RED};")
            return
        self.estimate.setStyleSheet("")
        estimate = check.estimate
        if estimate is None:
            self.estimate.setText("Can run now.")
            return
        points = "open-ended" if estimate.points is None else f"{estimate.points:,} points"
        size = estimate.bytes / 1e6
        frames = f" · {estimate.frames:,} frames" if estimate.frames else ""
        self.estimate.setText(
            f"Can run now: {points} · ≈ {_duration(estimate.seconds)}{frames} · {size:.1f} MB"
        )

    def start(self) -> None:
        if self._starting:
            return
        self._starting = True
        self._update_start()

        def create(plan: plan_pb2.Plan) -> None:
            log.info("start a %s plan", self.current_kind)

            def done(status: ScanStatus) -> None:
                self._starting = False
                self._update_start()
                log.info("scan %s queued (%s)", status.id, status.state)
                self.started.emit(status)

            def failed(error: BaseException) -> None:
                self._starting = False
                self._update_start()
                self.show_problems([(self.general, error_text(error))])
                log.warning("scan refused: %s", error_text(error))

            self.state.connection.call(lambda b: b.create_scan(plan, start=True), done, failed)

        self.check(then=create)

    def _update_start(self) -> None:
        self.guard.enable(self.start_button, not self._starting)
        self.start_button.setText("Starting…" if self._starting else "▶  Start")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["PlanForm", "Slot", "match_field", "parse_metadata", "plain_value"]
