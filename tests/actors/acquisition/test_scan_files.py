"""A scan's run file as a NeXus reader opens it: the executor's table with units on every
column, and a default plot of the detector against the axis (a count: against the point)."""

from __future__ import annotations

from pathlib import Path

from nexusformat.nexus import nxload

from actors.acquisition import Count, Grid, GridAxis, Line, Plan, PlanState, Span
from actors.pipeline.nexus_file import read_layout, read_scan_table
from supervisors.bench import Bench

from ..pipeline.nexus_check import assert_valid_nexus
from .conftest import run_plan


def default_plot(path: Path) -> tuple[str, list[str], list[float], str, str]:
    """The default plot's signal name, axis names, signal values, signal and axis units."""
    root = nxload(str(path))
    try:
        plot = root.plottable_data
        axes = [axis.nxname for axis in plot.nxaxes]
        return (
            plot.nxsignal.nxname,
            axes,
            plot.nxsignal.nxvalue.tolist(),
            plot.nxsignal.attrs["units"],
            plot.nxaxes[0].attrs["units"],
        )
    finally:
        root.nxfile.close()


async def test_a_line_scan_file_plots_its_detector_against_its_axis(bench: Bench) -> None:
    plan = Plan(Line((Span("x", 0.0, 2.0),), 5), read=("peak", "sine"), name="line")
    status = await run_plan(bench, plan)
    assert status.state is PlanState.COMPLETED, status.error
    path = Path(status.run_path)
    table = read_scan_table(path)
    assert table["x"].values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert {name: column.units for name, column in table.items()} == {
        "point": "1",
        "x": "mm",
        "peak": "V",
        "sine": "V",
        "attempts": "1",
        "suspended_s": "s",
    }
    signal, axes, values, signal_units, axis_units = default_plot(path)
    assert (signal, axes, signal_units, axis_units) == ("peak", ["x"], "V", "mm")
    assert values == table["peak"].values.tolist()
    assert read_layout(path)["default_plot"] == "/entry/data"
    assert_valid_nexus(path)


async def test_a_grid_scan_plots_against_its_first_axis_and_a_count_against_the_point(
    bench: Bench,
) -> None:
    grid = Plan(Grid((GridAxis("z", 0, 1, 2), GridAxis("x", 0, 2, 3))), read=("peak",))
    status = await run_plan(bench, grid)
    assert status.state is PlanState.COMPLETED, status.error
    signal, axes, _values, _units, axis_units = default_plot(Path(status.run_path))
    assert (signal, axes, axis_units) == ("peak", ["z"], "deg")
    assert_valid_nexus(Path(status.run_path))
    count = Plan(Count(4), read=("sine",), name="count")
    status = await run_plan(bench, count)
    assert status.state is PlanState.COMPLETED, status.error
    signal, axes, _values, _units, axis_units = default_plot(Path(status.run_path))
    assert (signal, axes, axis_units) == ("sine", ["point"], "1")
    assert_valid_nexus(Path(status.run_path))
