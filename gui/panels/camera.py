"""Camera: the live view (image, histogram and levels, auto-levels, ROI statistics, frame rate
and drop counters) and the camera's exposure, binning and ROI.

The image is the daemon's preview stream (``Preview.StreamPreview``): frames reduced in the
daemon to at most the chosen size and rate, from a latest-only tap, so the view never pulls the
camera's full rate over the network and never slows a run being recorded. The image is drawn in
*sensor* coordinates (unbinned pixels), so the axes, the ROI and "selection → camera ROI" mean
the same thing whatever the camera's binning or the preview's reduction.

ROI statistics are of the preview's pixels (each the mean, or maximum, of factor² sensor
pixels); the full frame's minimum, maximum and saturated-pixel count come from the daemon,
which computes them before reducing.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from client import AcquisitionStatus, AsyncBench, ParameterInfo, PreviewFrame, RunStatus

from .. import theme
from ..connection import Session, Watch
from ..editors import ParameterEditor
from ..guard import Guard
from ..state import BenchState
from ..widgets import ErrorLabel, RateMeter, button, error_text, muted, value_label

log = logging.getLogger("gui.actions")

COLOURMAPS = ["grey", "viridis", "inferno", "magma", "plasma", "CET-L8"]
SIZES = [256, 512, 1024]
RATES = [5.0, 10.0, 20.0, 30.0, 50.0]
REDUCTIONS = {"mean (bin)": "mean", "decimate": "decimate", "max (hot pixels)": "max"}
SENSOR = re.compile(r"(\d+)\s*x\s*(\d+)")


def auto_levels(pixels: np.ndarray[Any, Any]) -> tuple[float, float]:
    """Robust display levels: the 0.1 and 99.9 percentiles of a subsample (a few hot pixels
    do not flatten the image)."""
    sample = pixels[::2, ::2] if pixels.size > 65536 else pixels
    low, high = np.percentile(sample, (0.1, 99.9))
    if high <= low:
        high = low + 1
    return float(low), float(high)


def roi_statistics(pixels: np.ndarray[Any, Any]) -> dict[str, float]:
    if pixels.size == 0:
        return {}
    values = pixels.astype(np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "pixels": float(values.size),
    }


class CameraPanel(QWidget):
    #: Each preview frame drawn (for tests, --screenshot and the status bar).
    frame_shown = Signal(object)

    def __init__(
        self,
        state: BenchState,
        guard: Guard,
        *,
        live: bool = True,
        max_fps: float = 30.0,
        size: int = 512,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.state, self.guard = state, guard
        self.want_live = live
        self.camera = ""
        self.frame: PreviewFrame | None = None
        self.frames_shown = 0
        self.display_rate = RateMeter()
        self._watch: Watch | None = None
        self._rect: tuple[float, float, float, float] | None = None
        self._session_checked = False
        self._setting_levels = False
        self._build_view()
        controls = self._build_controls(max_fps, size, reduction)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.graphics, 1)
        left_layout.addWidget(self.info)
        splitter.addWidget(left)
        splitter.addWidget(controls)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([900, 300])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(splitter)
        state.connection.connected.connect(self._on_connected)
        state.connection.disconnected.connect(self._on_disconnected)
        state.devices_changed.connect(self._on_devices)
        state.parameters_listed.connect(self._on_parameters)
        state.acquisition_changed.connect(self._on_acquisition)
        state.run_status.connect(self._on_run)
        state.parameter_changed.connect(self._on_parameter)
        self._ticker = QTimer(self)
        self._ticker.timeout.connect(self._tick)
        self._ticker.start(500)

    # -- building -------------------------------------------------------------------------------

    def _build_view(self) -> None:
        self.graphics = pg.GraphicsLayoutWidget()
        self.plot = pg.PlotItem()
        self.plot.setLabel("bottom", "x (sensor px)")
        self.plot.setLabel("left", "y (sensor px)")
        self.plot.showGrid(x=False, y=False)
        self.view = self.plot.getViewBox()
        self.view.setAspectLocked(True)
        self.view.invertY(True)
        self.view.setBackgroundColor(theme.PLOT_BACKGROUND)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.histogram = pg.HistogramLUTItem()
        self.histogram.setImageItem(self.image)
        self.histogram.gradient.loadPreset("grey")
        self.histogram.sigLevelChangeFinished.connect(self._on_levels_dragged)
        self.graphics.addItem(self.plot, 0, 0)
        self.graphics.addItem(self.histogram, 0, 1)
        self.roi = pg.RectROI(
            [768, 768],
            [512, 512],
            pen=pg.mkPen(theme.AMBER, width=2),
            hoverPen=pg.mkPen("#ffd27a", width=2),
        )
        self.roi.addScaleHandle([0, 0], [1, 1])
        self.roi.setZValue(10)
        self.roi.sigRegionChanged.connect(lambda _: self._update_statistics())
        self.plot.addItem(self.roi)
        self.waiting = pg.TextItem("waiting for frames…", color=theme.MUTED, anchor=(0.5, 0.5))
        self.plot.addItem(self.waiting)
        self.waiting.setPos(1024, 1024)
        self.info = muted("No frame yet")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def _group(self, title: str) -> tuple[QGroupBox, QFormLayout]:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setLabelAlignment(theme.ALIGN_RIGHT)
        form.setHorizontalSpacing(8)
        form.setVerticalSpacing(4)
        return box, form

    def _build_controls(self, max_fps: float, size: int, reduction: str) -> QWidget:
        column = QWidget()
        layout = QVBoxLayout(column)
        layout.setContentsMargins(4, 0, 4, 0)

        box, form = self._group("Acquisition")
        self.camera_label = value_label("—")
        form.addRow("Camera", self.camera_label)
        buttons = QHBoxLayout()
        self.live = button("▶  Live", "primary", "Start or stop the camera's live acquisition")
        self.live.setCheckable(True)
        self.live.clicked.connect(self._toggle_live)
        self.snap = button("Snap", tooltip="Acquire one frame")
        self.snap.clicked.connect(self._snap)
        buttons.addWidget(self.live, 2)
        buttons.addWidget(self.snap, 1)
        form.addRow(buttons)
        self.guard.mutating(self.live, self.snap)
        self.acquisition_state = muted("idle")
        form.addRow("State", self.acquisition_state)
        self.counters: dict[str, QLabel] = {}
        counters = QGridLayout()
        counters.setHorizontalSpacing(10)
        names = [
            ("camera_fps", "camera fps"),
            ("display_fps", "display fps"),
            ("acquired", "acquired"),
            ("skipped", "preview skipped"),
            ("missing", "missing (camera)"),
            ("lost", "lost (pipeline)"),
            ("run_dropped", "run dropped"),
        ]
        for index, (key, title) in enumerate(names):
            label = value_label("0")
            label.setAlignment(theme.ALIGN_RIGHT)
            self.counters[key] = label
            counters.addWidget(muted(title), index, 0)
            counters.addWidget(label, index, 1)
        form.addRow(counters)
        self.acquisition_error = ErrorLabel()
        form.addRow(self.acquisition_error)
        layout.addWidget(box)

        box, form = self._group("Camera settings")
        self.settings_form = form
        self.settings_note = muted("")
        self.settings_note.setWordWrap(True)
        form.addRow(self.settings_note)
        self.editors: dict[str, ParameterEditor] = {}
        self._settings_rows = 1
        roi_buttons = QHBoxLayout()
        self.roi_from_selection = button(
            "Selection → ROI", tooltip="Set the camera's ROI to the yellow rectangle"
        )
        self.roi_full = button("Full sensor", tooltip="Set the camera's ROI to the whole sensor")
        self.roi_from_selection.clicked.connect(self._roi_from_selection)
        self.roi_full.clicked.connect(self._roi_full)
        roi_buttons.addWidget(self.roi_from_selection)
        roi_buttons.addWidget(self.roi_full)
        self.roi_buttons = QWidget()
        self.roi_buttons.setLayout(roi_buttons)
        roi_buttons.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.roi_buttons)
        self.guard.mutating(self.roi_from_selection, self.roi_full)
        layout.addWidget(box)

        box, form = self._group("Display")
        self.colourmap = QComboBox()
        self.colourmap.addItems(COLOURMAPS)
        self.colourmap.currentTextChanged.connect(self._set_colourmap)
        form.addRow("Colour map", self.colourmap)
        levels = QHBoxLayout()
        self.auto = QCheckBox("Auto levels")
        self.auto.setChecked(True)
        self.auto.setToolTip(
            "Levels follow every frame (0.1 – 99.9 percentile); dragging the"
            " histogram's bounds switches this off"
        )
        self.auto_once = QPushButton("Auto once")
        self.auto_once.clicked.connect(self._auto_once)
        levels.addWidget(self.auto)
        levels.addWidget(self.auto_once)
        form.addRow(levels)
        self.levels_label = value_label("—")
        form.addRow("Levels", self.levels_label)
        self.reduction = QComboBox()
        self.reduction.addItems(list(REDUCTIONS))
        self.reduction.setCurrentIndex(list(REDUCTIONS.values()).index(reduction))
        self.reduction.setToolTip("How the daemon makes the preview small")
        self.max_size = QComboBox()
        for option in sorted({*SIZES, size}):
            self.max_size.addItem(f"{option} px", option)
        self.max_size.setCurrentIndex(self.max_size.findData(size))
        self.rate = QComboBox()
        for rate in sorted({*RATES, max_fps}):
            self.rate.addItem(f"{rate:g} fps", rate)
        self.rate.setCurrentIndex(self.rate.findData(max_fps))
        for combo in (self.reduction, self.max_size, self.rate):
            combo.activated.connect(lambda _: self._start_preview())
        form.addRow("Preview", self.reduction)
        form.addRow("Max size", self.max_size)
        form.addRow("Max rate", self.rate)
        layout.addWidget(box)

        box, form = self._group("ROI statistics (yellow box)")
        self.statistics: dict[str, QLabel] = {}
        for key in ("mean", "std", "min", "max", "pixels", "region"):
            label = value_label("—")
            self.statistics[key] = label
            form.addRow(key, label)
        self.full_frame = value_label("—")
        self.full_frame.setToolTip(
            "minimum, maximum and saturated pixels of the full frame,"
            " computed by the daemon before reducing it"
        )
        form.addRow("full frame", self.full_frame)
        layout.addWidget(box)
        layout.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(column)
        scroll.setMinimumWidth(300)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        return scroll

    # -- session --------------------------------------------------------------------------------

    def _on_connected(self, session: Session) -> None:
        self._session_checked = False
        if self.camera:
            self._start_preview()

    def _on_disconnected(self, reason: str) -> None:
        self._watch = None
        self.acquisition_state.setText("unknown (disconnected)")
        self.waiting.setText("disconnected")
        self.waiting.setVisible(True)

    def _on_devices(self, devices: list[Any]) -> None:
        cameras = self.state.cameras
        if cameras and self.camera not in cameras:
            self.camera = cameras[0]
            self.camera_label.setText(self.camera)
            self._start_preview()
        elif not cameras:
            self.camera_label.setText("no camera on this bench")

    def _on_parameters(self, device: str, infos: list[ParameterInfo]) -> None:
        if device != self.camera:
            return
        by_name = {i.name: i for i in infos}
        for name, title in (("exposure", "Exposure"), ("binning", "Binning"), ("roi", "ROI")):
            info = by_name.get(name)
            if info is None or info.read_only or name in self.editors:
                continue
            editor = ParameterEditor(self.state, self.guard, info, with_button=name == "roi")
            self.editors[name] = editor
            label = f"{title} ({info.units})" if info.units and name != "roi" else title
            if name == "roi":  # x,y,width,height needs the whole width
                self.settings_form.insertRow(self._settings_rows, muted("ROI x,y,width,height"))
                self._settings_rows += 1
                self.settings_form.insertRow(self._settings_rows, editor)
            else:
                self.settings_form.insertRow(self._settings_rows, label, editor)
            self.settings_form.insertRow(self._settings_rows + 1, editor.error)
            self._settings_rows += 2
        self.settings_note.setText(
            "A live view is paused for a change and started again;"
            " a recording is never interrupted."
        )
        self.guard.enable(self.roi_full, self.sensor_size() is not None)
        for editor in self.editors.values():
            value = self.state.values.get((device, editor.info.name))
            if value is not None:
                editor.show_value(value)

    def _on_parameter(self, value: Any) -> None:
        if value.device == self.camera and value.name in self.editors:
            self.editors[value.name].show_value(value)

    def sensor_size(self) -> tuple[int, int] | None:
        info = self.state.infos.get(self.camera, {}).get("roi")
        match = SENSOR.search(info.description) if info is not None else None
        return (int(match.group(1)), int(match.group(2))) if match else None

    # -- preview stream -------------------------------------------------------------------------

    def preview_options(self) -> dict[str, Any]:
        return {
            "max_fps": float(self.rate.currentData()),
            "max_width": int(self.max_size.currentData()),
            "max_height": int(self.max_size.currentData()),
            "reduction": REDUCTIONS[self.reduction.currentText()],
        }

    def _start_preview(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if not self.camera or not self.state.connection.connected_now:
            return
        camera, options = self.camera, self.preview_options()

        def stream(bench: AsyncBench) -> Any:
            return bench.stream_preview(camera, **options)

        self._watch = self.state.connection.watch(
            stream, self._on_frame, latest=True, failed=self._on_preview_failed
        )

    def _on_preview_failed(self, error: BaseException) -> None:
        self.waiting.setText(f"preview: {error_text(error)}")
        self.waiting.setVisible(True)

    def _on_frame(self, frame: PreviewFrame) -> None:
        first = self.frame is None
        self.frame = frame
        pixels = frame.pixels
        if self.auto.isChecked() or first:
            low, high = auto_levels(pixels)
            self._setting_levels = True
            self.image.setImage(pixels, autoLevels=False, levels=(low, high))
            self.histogram.setLevels(low, high)
            self._setting_levels = False
        else:
            self.image.setImage(pixels, autoLevels=False)
        rect = frame.sensor_rect(0, 0, pixels.shape[1], pixels.shape[0])
        if rect != self._rect:
            self.image.setRect(QRectF(*rect))
            self._rect = rect
            self.view.autoRange(padding=0.02)
            x, y, width, height = rect
            self.waiting.setPos(x + width / 2, y + height / 2)
            if first:
                self.roi.setPos((x + width * 3 / 8, y + height * 3 / 8))
                self.roi.setSize((width / 4, height / 4))
        self.waiting.setVisible(False)
        self.frames_shown += 1
        self.display_rate.tick()
        low, high = self.image.getLevels()
        self.levels_label.setText(f"{low:.0f} … {high:.0f}")
        source_height, source_width = frame.source_shape
        self.info.setText(
            f"frame {frame.frame_number} · {frame.exposure_ms:g} ms · "
            f"{source_width}×{source_height} → {pixels.shape[1]}×{pixels.shape[0]} "
            f"({frame.reduction} ÷{frame.factor}, camera bin {frame.binning[0]}×{frame.binning[1]})"
            f" · {frame.bit_depth}-bit · reduced in {frame.reduce_ms:.1f} ms by the daemon · "
            + time.strftime("%H:%M:%S", time.localtime(frame.timestamp))
        )
        self.counters["skipped"].setText(str(frame.skipped))
        self.full_frame.setText(
            f"{frame.source_min} … {frame.source_max}, {frame.saturated} saturated"
        )
        self.full_frame.setStyleSheet(f"color: {theme.RED};" if frame.saturated else "")
        self._update_statistics()
        self.frame_shown.emit(frame)

    def _update_statistics(self) -> None:
        frame = self.frame
        if frame is None:
            return
        x0, y0, scale_x, scale_y = (
            frame.roi[0],
            frame.roi[1],
            frame.factor * frame.binning[0],
            frame.factor * frame.binning[1],
        )
        position, size = self.roi.pos(), self.roi.size()
        left = max(0, int((position.x() - x0) / scale_x))
        top = max(0, int((position.y() - y0) / scale_y))
        right = max(left, int(np.ceil((position.x() + size.x() - x0) / scale_x)))
        bottom = max(top, int(np.ceil((position.y() + size.y() - y0) / scale_y)))
        region = frame.pixels[top:bottom, left:right]
        statistics = roi_statistics(region)
        for key in ("mean", "std"):
            self.statistics[key].setText(f"{statistics[key]:.1f}" if statistics else "—")
        for key in ("min", "max", "pixels"):
            self.statistics[key].setText(f"{statistics[key]:.0f}" if statistics else "—")
        self.statistics["region"].setText(
            f"x {position.x():.0f}, y {position.y():.0f}, {size.x():.0f}×{size.y():.0f} px"
        )

    # -- levels and colours ----------------------------------------------------------------------

    def _on_levels_dragged(self, _: object) -> None:
        if not self._setting_levels:
            self.auto.setChecked(False)
        low, high = self.histogram.getLevels()
        self.levels_label.setText(f"{low:.0f} … {high:.0f}")

    def _auto_once(self) -> None:
        if self.frame is not None:
            low, high = auto_levels(self.frame.pixels)
            self._setting_levels = True
            self.histogram.setLevels(low, high)
            self._setting_levels = False
            self.levels_label.setText(f"{low:.0f} … {high:.0f}")

    def _set_colourmap(self, name: str) -> None:
        if name == "grey":
            self.histogram.gradient.loadPreset("grey")
        else:
            self.histogram.gradient.setColorMap(pg.colormap.get(name))

    # -- acquisition ----------------------------------------------------------------------------

    def _on_acquisition(self, status: AcquisitionStatus) -> None:
        if status.device != self.camera:
            return
        running = status.running
        mode = "live" if status.frames_requested == 0 else f"sequence of {status.frames_requested}"
        self.acquisition_state.setText(f"acquiring ({mode})" if running else "idle")
        self.live.setChecked(running and status.frames_requested == 0)
        self.live.setText("■  Stop live" if self.live.isChecked() else "▶  Live")
        self.counters["camera_fps"].setText(f"{status.fps:.1f}")
        self.counters["acquired"].setText(str(status.frames_acquired))
        self.counters["missing"].setText(str(status.frames_missing))
        self.counters["lost"].setText(str(status.frames_lost))
        for key in ("missing", "lost"):
            bad = int(self.counters[key].text()) > 0
            self.counters[key].setStyleSheet(f"color: {theme.RED};" if bad else "")
        self.acquisition_error.show_error(status.error)
        if not self._session_checked:
            self._session_checked = True
            if self.want_live and not running and self.state.operator:
                log.info(
                    "starting %s live (the GUI's live view; --no-live to keep it idle)", self.camera
                )
                self._start_live()

    def _on_run(self, status: RunStatus) -> None:
        self.counters["run_dropped"].setText(str(status.frames_dropped))
        bad = status.frames_dropped > 0
        self.counters["run_dropped"].setStyleSheet(f"color: {theme.RED};" if bad else "")

    def _tick(self) -> None:
        self.counters["display_fps"].setText(f"{self.display_rate.rate():.1f}")

    def _start_live(self) -> None:
        camera = self.camera
        self.state.connection.call(
            lambda b: b.start_acquisition(camera), self._on_acquisition, self._acquisition_failed
        )

    def _acquisition_failed(self, error: BaseException) -> None:
        self.acquisition_error.show_error(error_text(error))
        log.warning("%s: %s", self.camera, error_text(error))

    def _toggle_live(self) -> None:
        camera = self.camera
        status = self.state.acquisitions.get(camera)
        if status is not None and status.running:
            self.want_live = False
            log.info("stop %s acquisition", camera)
            self.state.connection.call(
                lambda b: b.stop_acquisition(camera),
                self._on_acquisition,
                self._acquisition_failed,
            )
        else:
            self.want_live = True
            log.info("start %s live", camera)
            self._start_live()

    def _snap(self) -> None:
        camera = self.camera
        log.info("snap one frame from %s", camera)
        self.state.connection.call(
            lambda b: b.start_acquisition(camera, 1), self._on_acquisition, self._acquisition_failed
        )

    # -- ROI ------------------------------------------------------------------------------------

    def _set_roi(self, x: int, y: int, width: int, height: int) -> None:
        editor = self.editors.get("roi")
        if editor is None:
            return
        value = f"{x},{y},{width},{height}"
        if editor.field is not None:
            editor.field.setText(value)
        editor.submit(value)

    def _roi_from_selection(self) -> None:
        position, size = self.roi.pos(), self.roi.size()
        self._set_roi(round(position.x()), round(position.y()), round(size.x()), round(size.y()))

    def _roi_full(self) -> None:
        sensor = self.sensor_size()
        if sensor is not None:
            self._set_roi(0, 0, *sensor)

    def stop(self) -> None:
        self._ticker.stop()
        if self._watch is not None:
            self._watch.cancel()
