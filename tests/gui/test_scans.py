"""Plans from the GUI on a real daemon: the form, the daemon's validator, the live plot from
the scan's event stream, pause / resume / stop, the table and its CSV."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from client import Bench
from gui.plan_form import KINDS
from gui.window import MainWindow
from tests.client.conftest import OPERATOR, Daemon

WAIT_MS = 30_000

Open = Callable[..., MainWindow]


def ready_form(qtbot: QtBot, window: MainWindow) -> None:
    form = window.runs.plan_form
    qtbot.waitUntil(form.start_button.isEnabled, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: form.read.count() > 0 and form.detector["tune"].count() > 0,
                    timeout=WAIT_MS)  # fmt: skip


def line_plan(window: MainWindow, start: str, stop: str, points: int, *, dwell: str = "0") -> None:
    """What a user types: a line on esp300.axis1 reading the bench's peak detector."""
    form = window.runs.plan_form
    form.kind.setCurrentText("line")
    row = form.axes["line"].rows[0]
    row.device.setCurrentText("esp300.axis1")
    row.start.setText(start)
    row.stop.setText(stop)
    form.line_points.setValue(points)
    form.dwell.setText(dwell)
    form.settle.setText("0")
    for i in range(form.read.count()):
        item = form.read.item(i)
        wanted = item.text() == "peak"
        item.setCheckState(Qt.CheckState.Checked if wanted else Qt.CheckState.Unchecked)


def test_a_line_scan_from_the_form_runs_and_its_plot_shows_the_recorded_points(
    qtbot: QtBot, open_window: Open, gui_daemon: Daemon, tmp_path: Path
) -> None:
    window = open_window(gui_daemon.address, live=False)
    ready_form(qtbot, window)
    line_plan(window, "-0.2", "0.8", 11)
    runs = window.runs
    qtbot.mouseClick(runs.plan_form.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: runs.data is not None and runs.data.ended is not None, timeout=WAIT_MS)
    data, scan = runs.data, runs.scan
    assert data is not None and scan is not None and data.ended is not None
    assert data.ended.state == "completed" and data.kind == "line"
    assert runs.plan_form.problem_texts() == {}
    with Bench.connect(gui_daemon.address, token=OPERATOR) as bench:
        table = bench.scans.table(data.scan_id)
    # the plot holds exactly what the daemon recorded, point by point
    assert list(data.index) == list(range(11))
    assert list(data.positions["esp300.axis1"]) == table.column("esp300.axis1").to_pylist()
    assert list(data.readings["peak"]) == table.column("peak").to_pylist()
    runs.plot._redraw()
    xs, ys = runs.plot.curve.getData()
    assert list(xs) == list(data.positions["esp300.axis1"])
    assert list(ys) == list(data.readings["peak"])
    assert max(ys) == pytest.approx(1.05, abs=0.05)  # the simulated peak: centre 0.3 mm
    assert xs[list(ys).index(max(ys))] == pytest.approx(0.3, abs=0.11)
    qtbot.waitUntil(lambda: runs.scan is not None and runs.scan.state == "completed",
                    timeout=WAIT_MS)  # fmt: skip
    assert runs.progress.format().startswith("11 / 11 points")
    # the scans list has it; its table opens and exports to CSV with units in the header
    qtbot.waitUntil(lambda: runs.scan_list.rowCount() >= 1, timeout=WAIT_MS)
    rows = [runs.scan_list.item(r, 0).text() for r in range(runs.scan_list.rowCount())]
    runs.scan_list.selectRow(rows.index(data.scan_id))
    qtbot.mouseClick(runs.view_table, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(runs._tables), timeout=WAIT_MS)
    dialog = runs._tables[-1]
    assert dialog.model.rowCount() == 11
    target = tmp_path / "scan.csv"
    dialog.export_to(target)
    qtbot.waitUntil(lambda: dialog.done_note.text().startswith("exported"), timeout=WAIT_MS)
    with target.open() as handle:
        exported = list(csv.DictReader(handle))
    assert len(exported) == 11 and not (tmp_path / "scan.csv.partial").exists()
    assert [float(r["esp300.axis1 [mm]"]) for r in exported] == list(data.positions["esp300.axis1"])
    assert [float(r["peak [V]"]) for r in exported] == list(data.readings["peak"])
    # the run file is listed with its outcome and what it holds
    qtbot.waitUntil(
        lambda: any(
            (item := runs.runs.item(r, 7)) is not None and item.text() == scan.run_path
            for r in range(runs.runs.rowCount())
        ),
        timeout=WAIT_MS,
    )
    row = next(
        r for r in range(runs.runs.rowCount()) if runs.runs.item(r, 7).text() == scan.run_path
    )
    assert runs.runs.item(row, 1).text() == "completed"
    assert int(runs.runs.item(row, 3).text().replace(",", "")) >= 11  # at least the points'
    assert runs.runs.item(row, 6).text() == "scan completed"


def test_a_plan_past_an_axis_limit_shows_the_problem_inline_and_nothing_starts(
    qtbot: QtBot, open_window: Open, gui_daemon: Daemon
) -> None:
    window = open_window(gui_daemon.address, live=False)
    ready_form(qtbot, window)
    form = window.runs.plan_form
    with Bench.connect(gui_daemon.address, token=OPERATOR) as bench:
        before = len(bench.scans.list())
        line_plan(window, "0", "500", 11)
        qtbot.mouseClick(form.start_button, Qt.MouseButton.LeftButton)
        row = form.axes["line"].rows[0]
        qtbot.waitUntil(row.slot.error.isVisible, timeout=WAIT_MS)
        qtbot.waitUntil(form.start_button.isEnabled, timeout=WAIT_MS)  # the start was refused
        assert row.slot.error.text() == "esp300.axis1: 500 mm is above its travel -50 to 50 mm"
        assert row.device.property("invalid") is True
        assert set(form.problem_texts()) == {"path.axes[0]"}  # under its field, nowhere else
        assert "problem" in form.estimate.text()
        assert len(bench.scans.list()) == before  # nothing was created, nothing moved
        # the plan's own numbers: every problem at once, each under its field
        row.stop.setText("1")
        form.settle.setText("-1")
        form.dwell.setText("-2")
        form.check()
        qtbot.waitUntil(lambda: set(form.problem_texts()) == {"settle", "dwell"}, timeout=WAIT_MS)
        assert "-1.0 is not allowed" in form.settle_slot.error.text()
        assert not row.slot.error.isVisible() and row.device.property("invalid") is False
        # text that is not a number is caught before anything is sent
        form.settle.setText("fast")
        form.check()
        assert form.settle_slot.error.text() == "settle: 'fast' is not a number"
        # fixed: it can run, and the estimate says what it will take
        form.settle.setText("0")
        form.dwell.setText("0")
        form.check()
        qtbot.waitUntil(lambda: form.estimate.text().startswith("Can run now: 11 points"),
                        timeout=WAIT_MS)  # fmt: skip
        assert form.problem_texts() == {}
        assert len(bench.scans.list()) == before


def test_pause_resume_and_stop_from_the_gui(
    qtbot: QtBot, open_window: Open, gui_daemon: Daemon
) -> None:
    window = open_window(gui_daemon.address, live=False)
    ready_form(qtbot, window)
    runs = window.runs
    line_plan(window, "0", "1", 41, dwell="0.1")
    qtbot.mouseClick(runs.plan_form.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: runs.scan is not None and runs.scan.points_done >= 2, timeout=WAIT_MS)
    qtbot.waitUntil(runs.pause.isEnabled, timeout=WAIT_MS)
    qtbot.mouseClick(runs.pause, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: runs.scan is not None and runs.scan.state == "paused", timeout=WAIT_MS)
    assert runs.resume.isEnabled() and not runs.pause.isEnabled()
    assert runs.scan is not None
    scan_id, paused_at = runs.scan.id, runs.scan.points_done
    with Bench.connect(gui_daemon.address, token=OPERATOR) as bench:
        held = bench.scans.status(scan_id)
        assert held.state == "paused" and held.points_done == paused_at
        qtbot.mouseClick(runs.resume, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: runs.scan is not None and runs.scan.points_done >= paused_at + 2,
                        timeout=WAIT_MS)  # fmt: skip
        qtbot.mouseClick(runs.stop, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: runs.data is not None and runs.data.ended is not None,
                        timeout=WAIT_MS)  # fmt: skip
        final = bench.scans.status(scan_id)
    data = runs.data
    assert data is not None and data.ended is not None
    assert final.state == data.ended.state == "stopped"
    assert paused_at + 2 <= final.points_done < 41
    assert len(data.index) == final.points_done  # every recorded point is plotted
    kinds = [m.kind for m in data.marks]
    assert kinds.index("paused") < kinds.index("unpaused")  # the pause is marked on the plot
    assert data.marks[kinds.index("paused")].after == paused_at
    runs.plot._redraw()
    assert any(item.label.toPlainText() == "paused" for item in runs.plot._mark_items)
    qtbot.waitUntil(lambda: runs.scan is not None and runs.scan.state == "stopped",
                    timeout=WAIT_MS)  # fmt: skip
    assert "stopped from the GUI" in runs.progress_detail.text()


def test_every_plan_kind_of_the_form_is_one_the_daemon_accepts_and_suspenders_too(
    qtbot: QtBot, open_window: Open, gui_daemon: Daemon
) -> None:
    window = open_window(gui_daemon.address, live=False)
    ready_form(qtbot, window)
    form = window.runs.plan_form

    def checked() -> dict[str, str]:
        form.check()
        qtbot.waitUntil(lambda: form.last_check is not None, timeout=WAIT_MS)
        return form.problem_texts()

    for kind in KINDS:
        form.kind.setCurrentText(kind)
        for row in form.axes[kind].rows if kind in form.axes else []:
            row.device.setCurrentText(f"esp300.axis{row.index + 1}")
        if kind in form.single:
            form.single[kind].device.setCurrentText("esp300.axis1")
            form.detector[kind].setCurrentText("peak")
        assert checked() == {}, kind
        assert form.estimate.text().startswith("Can run now: "), kind
    form.kind.setCurrentText("adaptive")  # a rule of the plan itself, under its field
    form.numbers["adaptive.min_step"].setText("0.5")
    assert set(checked()) == {"path.min_step"}
    assert "above max_step" in form.problem_texts()["path.min_step"]
    form.numbers["adaptive.min_step"].setText("0.005")
    form.kind.setCurrentText("line")
    form.add_suspender.click()
    form.add_suspender.click()
    low, shutter = form.suspenders
    low.signal.setCurrentText("power_meter")
    low.threshold.setText("5e-7")
    low.resume.setText("8e-7")
    shutter.signal.setCurrentText("maitai.shutter")
    shutter.condition.setCurrentText("equals")
    shutter.threshold.setText("false")
    assert checked() == {}
    shutter.signal.setCurrentText("maitai.nothing")
    problems = checked()
    assert set(problems) == {"suspenders[1]"} and "maitai" in problems["suspenders[1]"]
    low.remove.click()  # the row below moves up, and so does its problem
    assert list(checked()) == ["suspenders[0]"]
    assert shutter.slot.error.isVisible() and form.suspenders == [shutter]
