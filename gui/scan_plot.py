"""The live plot of a scan: the values recorded at each point, drawn as they arrive.

* 1-D paths (line, list, adaptive, tune, a one-axis grid): the chosen reading against the
  first axis's position where it arrived (a count: against time since its first point);
* grids of two axes or more: an image of the two fastest axes (cells not yet measured are
  left blank; a grid of three or more shows the slice being measured), with a colour bar;
* what happened between points is marked where it happened: a suspension (amber line: what
  held it and for how long), a pause (grey), a point taken again after a suspension (an amber
  cross), a tune's peak (green line: centre and FWHM), events the daemon no longer kept (a note).

Redraws are coalesced: events mark the plot dirty and a 10 Hz timer redraws, so a scan of
thousands of points a second costs one redraw per tenth of a second.
"""

from __future__ import annotations

import math
from array import array

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QTimer
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QStackedWidget, QVBoxLayout, QWidget

from . import theme
from .scan_events import ScanData
from .widgets import muted

REDRAW_MS = 100
#: Above this many points a 1-D curve is drawn without symbols (10⁶ symbols take seconds).
SYMBOLS_UP_TO = 2000
#: Units pyqtgraph may scale with an SI prefix (1e-6 W -> 1 µW); others (mm, deg, nm, %) are
#: shown as they are: "mm" with a prefix would read "mmm".
SI_UNITS = {"W", "V", "A", "s", "Hz", "J", "m", "Pa", "C", "F", "Ω", "T"}


def label(plot: pg.PlotItem | pg.PlotWidget, side: str, name: str, units: str) -> None:
    label_axis(plot.getAxis(side), name, units)


def label_axis(axis: pg.AxisItem, name: str, units: str) -> None:
    if units in SI_UNITS:
        axis.setLabel(name, units=units, siPrefixEnableRanges=None)
        axis.enableAutoSIPrefix(True)
    else:  # no prefix ranges: pyqtgraph 0.14 scales even with the prefix "disabled"
        axis.setLabel(f"{name} ({units})" if units else name, units=None, siPrefixEnableRanges=())
        axis.enableAutoSIPrefix(False)


MARK_COLOURS = {"suspended": theme.AMBER, "paused": theme.MUTED, "gap": theme.RED}


class ScanPlot(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.data: ScanData | None = None
        self.detector = QComboBox()
        self.detector.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.detector.setToolTip("Which reading to plot")
        self.detector.currentTextChanged.connect(lambda _: self._redraw(full=True))
        self.note = muted("No scan yet: start one from the form, or follow one in Scans.")
        self.note.setWordWrap(True)
        self.note.setToolTip(
            "The values the daemon recorded at each point, from the scan's event stream: the"
            " same rows as the run file's /entry/scan table."
        )

        self.line = pg.PlotWidget()
        self.line.showGrid(x=True, y=True, alpha=0.2)
        self.curve = self.line.plot(
            pen=pg.mkPen(theme.ACCENT, width=1.5),
            symbol="o",
            symbolSize=5,
            symbolBrush=theme.ACCENT,
            symbolPen=None,
        )
        self.retaken = pg.ScatterPlotItem(
            symbol="x", size=12, pen=pg.mkPen(theme.AMBER, width=2), brush=None
        )
        self.line.addItem(self.retaken)
        self._mark_items: list[pg.InfiniteLine] = []

        self.image_view = pg.GraphicsLayoutWidget()
        self.image_plot = self.image_view.addPlot()
        self.image_plot.setAspectLocked(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image_plot.addItem(self.image)
        self.image_retaken = pg.ScatterPlotItem(
            symbol="x", size=12, pen=pg.mkPen(theme.AMBER, width=2), brush=None
        )
        self.image_plot.addItem(self.image_retaken)
        self.colour_bar = pg.ColorBarItem(
            colorMap=pg.colormap.get("viridis"), interactive=False, width=14
        )
        self.colour_bar.setImageItem(self.image, insert_in=self.image_plot)
        self._cells: np.ndarray = np.full((1, 1), np.nan)
        self._slice: tuple[int, ...] = ()
        self._drawn = 0  # points already in the image
        self._retaken: list[tuple[float, float]] = []  # the slice's points taken again
        # on the curve itself: the plot item's setting reaches the scatter of retaken points too,
        # which has no downsampling
        self.curve.setClipToView(True)
        self.curve.setDownsampling(auto=True, method="peak")

        self.stack = QStackedWidget()
        self.stack.addWidget(self.line)
        self.stack.addWidget(self.image_view)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Plot"))
        bar.addWidget(self.detector)
        bar.addWidget(self.note, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.stack, 1)

        self._dirty = False
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.start(REDRAW_MS)

    # -- feeding ---------------------------------------------------------------------------------

    def show_scan(self, data: ScanData) -> None:
        """Start over with another scan."""
        self.data = data
        self.detector.blockSignals(True)
        self.detector.clear()
        self.detector.blockSignals(False)
        self.curve.setData([], [])
        self.retaken.setData([], [])
        self.image_retaken.setData([], [])
        self._clear_marks()
        self._drawn = 0
        self._slice = ()
        self._dirty = True
        self._redraw(full=True)

    def changed(self) -> None:
        self._dirty = True

    def _tick(self) -> None:
        if self._dirty:
            self._redraw()

    # -- drawing ---------------------------------------------------------------------------------

    def _sync_detectors(self) -> None:
        data = self.data
        if data is None:
            return
        names = list(data.detectors)
        if [self.detector.itemText(i) for i in range(self.detector.count())] != names:
            current = self.detector.currentText() or data.detector
            self.detector.blockSignals(True)
            self.detector.clear()
            self.detector.addItems(names)
            if current in names:
                self.detector.setCurrentText(current)
            self.detector.blockSignals(False)

    def _redraw(self, *, full: bool = False) -> None:
        self._dirty = False
        data = self.data
        if data is None:
            return
        self._sync_detectors()
        self._describe(data)
        if data.is_image:
            self.stack.setCurrentWidget(self.image_view)
            self._draw_image(data, full=full)
        else:
            self.stack.setCurrentWidget(self.line)
            self._draw_line(data)

    def _describe(self, data: ScanData) -> None:
        total = f" of {data.points_total:,}" if data.points_total else ""
        text = f"{data.scan_id} · {data.kind or 'scan'} · {len(data.index):,}{total} points"
        held = [m for m in data.marks if m.kind == "suspended"]
        if held:
            text += f" · held {len(held)}×"
        if data.ended is not None:
            text += f" · {data.ended.state}"
            peak = data.ended.result
            if peak:
                if peak.get("found"):
                    text += f" · peak at {peak.get('centre', math.nan):.4g}"
                else:
                    text += f" · no peak: {str(peak.get('reason', ''))[:80]}"
        if data.is_image and len(data.grid_dims) > 2 and self._slice:
            slow = data.grid_dims[: len(self._slice)]
            where = ", ".join(f"{a['axis']}[{d}]" for a, d in zip(slow, self._slice, strict=True))
            text += f" · slice {where}"
        self.note.setText(text)

    def _units(self, name: str) -> str:
        return self.data.units.get(name, "") if self.data is not None else ""

    def _draw_line(self, data: ScanData) -> None:
        name = self.detector.currentText()
        xs = np.array(data.x(), dtype=float)
        ys = np.array(data.readings.get(name, array("d")), dtype=float)
        n = min(len(xs), len(ys))
        self.curve.setSymbol("o" if n <= SYMBOLS_UP_TO else None)
        self.curve.setData(xs[:n], ys[:n], connect="finite")
        retaken = np.flatnonzero(np.array(data.attempts[:n], dtype=np.int64) > 1)
        self.retaken.setData(xs[retaken], ys[retaken])
        axis = data.x_axis
        label(self.line, "bottom", axis, self._units(axis) or ("s" if not data.axes else ""))
        label(self.line, "left", name, self._units(name))
        self._draw_marks(data, xs[:n])

    def _clear_marks(self) -> None:
        for item in self._mark_items:
            self.line.removeItem(item)
        self._mark_items.clear()

    def _draw_marks(self, data: ScanData, xs: np.ndarray) -> None:
        """One line per suspension (with how long it held), pause, gap, and a tune's peak."""
        wanted: list[tuple[float, str, str]] = []
        pending: dict[str, int] = {}
        for mark in data.marks:
            x = float(xs[mark.after - 1]) if 0 < mark.after <= len(xs) else math.nan
            if mark.kind in ("suspended", "paused", "gap"):
                pending[mark.kind] = len(wanted)
                wanted.append((x, mark.kind, mark.text))
            elif mark.kind == "resumed" and "suspended" in pending:
                index = pending.pop("suspended")
                x0, kind, text = wanted[index]
                wanted[index] = (x0, kind, f"{text.split(';')[0]}; {mark.text}")
            elif mark.kind == "unpaused":
                pending.pop("paused", None)
        peak = data.ended.result if data.ended is not None else {}
        if peak.get("found") and isinstance(peak.get("centre"), int | float):
            fwhm = peak.get("fwhm")
            width = f" · FWHM {fwhm:.3g}" if isinstance(fwhm, int | float) else ""
            wanted.append((float(peak["centre"]), "peak", f"peak {peak['centre']:.4g}{width}"))
        if len(wanted) == len(self._mark_items) and all(
            item.label is not None and item.label.toPlainText() == text
            for item, (_, _, text) in zip(self._mark_items, wanted, strict=True)
        ):
            return
        self._clear_marks()
        for where, kind, text in wanted:
            x = (float(xs[0]) if len(xs) else 0.0) if math.isnan(where) else where
            colour = theme.GREEN if kind == "peak" else MARK_COLOURS.get(kind, theme.AMBER)
            style = (
                pg.QtCore.Qt.PenStyle.SolidLine
                if kind == "peak"
                else pg.QtCore.Qt.PenStyle.DashLine
            )
            item = pg.InfiniteLine(
                pos=x,
                angle=90,
                pen=pg.mkPen(colour, width=1.5, style=style),
                label=text,
                labelOpts={"position": 0.92, "color": colour, "anchors": [(0, 0), (0, 0)]},
            )
            self.line.addItem(item)
            self._mark_items.append(item)

    def _draw_image(self, data: ScanData, *, full: bool) -> None:
        dims = data.grid_dims
        slow, fast = dims[-2], dims[-1]
        rows, columns = max(1, int(slow.get("points", 1))), max(1, int(fast.get("points", 1)))
        if full or self._cells.shape != (rows, columns):
            self._cells = np.full((rows, columns), np.nan)
            self._drawn = 0
            self._slice = ()
            self._retaken = []
        name = self.detector.currentText()
        values = data.readings.get(name, array("d"))
        for k in range(self._drawn, min(len(data.index), len(values))):  # the new points only
            digits = data.grid_cell(data.index[k])
            outer = digits[:-2]
            if outer != self._slice:  # a new slice of a 3-D or larger grid
                self._cells[:] = np.nan
                self._slice = outer
                self._retaken = []
            self._cells[digits[-2], digits[-1]] = values[k]
            if data.attempts[k] > 1:
                self._retaken.append(self._centre(data, digits[-2], digits[-1]))
        self._drawn = min(len(data.index), len(values))
        retaken = self._retaken
        finite = self._cells[np.isfinite(self._cells)]
        if finite.size:
            low, high = float(finite.min()), float(finite.max())
            if high <= low:
                high = low + (abs(low) * 1e-6 or 1e-12)
            self.image.setImage(self._cells, autoLevels=False, levels=(low, high))
            self.colour_bar.setLevels((low, high))
        else:
            self.image.setImage(self._cells, autoLevels=False, levels=(0.0, 1.0))
        self.image.setRect(self._rect(data))
        xs = [x for x, _ in retaken]
        ys = [y for _, y in retaken]
        self.image_retaken.setData(xs, ys)
        for side, dim in (("bottom", fast), ("left", slow)):
            axis = str(dim.get("axis", ""))
            label(self.image_plot, side, axis, self._units(axis))
        label_axis(self.colour_bar.axis, name, self._units(name))

    def _origin(self, data: ScanData, axis: str, start: float) -> float:
        """A relative grid's offset: where the first point's axis was, less its start."""
        values = data.positions.get(axis)
        if data.plan.get("relative") and values and data.index and data.index[0] == 0:
            return values[0] - start
        return 0.0

    def _span(self, data: ScanData, dim: dict[str, object]) -> tuple[float, float, float]:
        start, stop = float(dim.get("start", 0.0)), float(dim.get("stop", 0.0))  # type: ignore[arg-type]
        points = max(1, int(dim.get("points", 1)))  # type: ignore[call-overload]
        offset = self._origin(data, str(dim.get("axis", "")), start)
        step = (stop - start) / (points - 1) if points > 1 else 1.0
        return start + offset, stop + offset, step

    def _centre(self, data: ScanData, row: int, column: int) -> tuple[float, float]:
        dims = data.grid_dims
        x0, _, dx = self._span(data, dims[-1])
        y0, _, dy = self._span(data, dims[-2])
        return x0 + column * dx, y0 + row * dy

    def _rect(self, data: ScanData) -> QRectF:
        """Pixel (row, column) centred on the slow / fast positions it stands for; a
        descending axis gives a negative width, which pyqtgraph draws mirrored, as wanted."""
        dims = data.grid_dims
        x0, _, dx = self._span(data, dims[-1])
        y0, _, dy = self._span(data, dims[-2])
        rows, columns = self._cells.shape
        return QRectF(x0 - dx / 2, y0 - dy / 2, dx * columns, dy * rows)
