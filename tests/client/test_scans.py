"""Plans from the client and ``benchctl scan`` against ``python -m runtime`` on the simulated
bench: a 3-D snake grid, a tune and an adaptive scan, each a run; a plan past a limit refused
with every problem; the events iterator and the table (pyarrow, pandas)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from actors.pipeline.nexus_file import read_end_record
from client import Bench, InvalidArgument, plans

from .conftest import Daemon
from .test_cli import benchctl


def test_benchctl_runs_a_3d_snake_grid_a_tune_and_an_adaptive_scan(process_daemon: Daemon) -> None:
    grid = benchctl(
        process_daemon, "--json", "scan", "grid",
        "--axis", "esp300.axis1", "0", "0.002", "2",
        "--axis", "esp300.axis2", "0", "0.002", "2",
        "--axis", "esp300.axis3", "0", "0.002", "3",
        "--snake", "esp300.axis2", "--snake", "esp300.axis3",
        "--read", "power_meter", "--name", "cli-grid", "--metadata", "sample=A1",
    )  # fmt: skip
    assert grid.returncode == 0, grid.stderr
    status = json.loads(grid.stdout)
    assert status["state"] == "completed" and status["points_done"] == 12
    assert status["kind"] == "grid" and status["origin"] == "client local"
    assert read_end_record(Path(status["run_path"]))["scan_points"] == 12
    tune = benchctl(
        process_daemon, "scan", "tune", "esp300.axis1", "-0.1", "0.7", "9",
        "--detector", "peak", "--method", "gaussian",
    )  # fmt: skip
    assert tune.returncode == 0, tune.stderr
    assert "(tune) completed: 9 of 9 points" in tune.stdout
    peak = re.search(r"peak at (-?[\d.e-]+)", tune.stdout)  # 0.3, or 0.299916 by noise
    assert peak and float(peak.group(1)) == pytest.approx(0.3, abs=0.02), tune.stdout
    assert "moved there" in tune.stdout
    adaptive = benchctl(
        process_daemon, "--json", "scan", "adaptive", "esp300.axis1", "0", "0.6",
        "--detector", "peak", "--target-delta", "0.3", "--min-step", "0.05",
        "--max-step", "0.3",
    )  # fmt: skip
    assert adaptive.returncode == 0, adaptive.stderr
    status = json.loads(adaptive.stdout)
    assert status["state"] == "completed" and status["kind"] == "adaptive"
    table = benchctl(process_daemon, "--json", "scan", "table", status["id"])
    rows = json.loads(table.stdout)
    assert len(rows) == status["points_done"] and rows[-1]["esp300.axis1"] == pytest.approx(0.6)
    listed = json.loads(benchctl(process_daemon, "--json", "scan", "scans").stdout)
    assert {"grid", "tune", "adaptive"} <= {s["kind"] for s in listed}


def test_benchctl_refuses_a_plan_past_a_limit_naming_it(process_daemon: Daemon) -> None:
    done = benchctl(
        process_daemon, "scan", "line", "maitai.wavelength", "700", "1500", "3",
        "--read", "power_meter", "--read", "nope", "--check",
    )  # fmt: skip
    assert done.returncode != 0
    assert "maitai.wavelength: 1500 nm is above its travel 690 to 1040 nm" in done.stdout
    assert "read[1]: no device named 'nope'" in done.stdout
    done = benchctl(process_daemon, "scan", "line", "maitai.wavelength", "700", "1500", "3")
    assert done.returncode == 3  # INVALID_ARGUMENT, before anything moved
    assert "plan refused, 1 problem" in done.stderr and "above its travel" in done.stderr
    done = benchctl(
        process_daemon, "scan", "count", "2", "--read", "power_meter",
        "--suspend", "power_meter<1e-12", "--check",
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("ok: 2 points")
    done = benchctl(process_daemon, "scan", "count", "--suspend", "power_meter~1")
    assert done.returncode == 2 and "expected SIGNAL<VALUE" in done.stderr


def test_the_client_builds_plans_follows_events_and_reads_the_table(
    process_daemon: Daemon,
) -> None:
    plan = plans.line(
        "esp300.axis2", 0.0, 0.004, 5, read=["power_meter", "peak"],
        suspenders=[plans.suspender("power_meter", below=1e-12, settle=0.1)],
        metadata={"sample": "C3"},
    )  # fmt: skip
    with Bench.connect(process_daemon.address) as bench:
        check = bench.scans.validate(plan)
        assert check.ok and check.estimate is not None and check.estimate.points == 5
        with pytest.raises(InvalidArgument, match=r"esp300\.axis2 is not Readable"):
            bench.scans.create(plans.count(1, read=["esp300.axis2"]))
        final = bench.scans.run(plan)
        assert final.state == "completed" and final.points_done == 5
        events = list(bench.scans.events(final.id))
        kinds = [e.kind for e in events]
        assert kinds[0] == "started" and kinds[-1] == "ended" and kinds.count("point") == 5
        assert events[0].units["esp300.axis2"] == "mm"
        points = [e for e in events if e.kind == "point"]
        assert [p.index for p in points] == list(range(5))
        table = bench.scans.table(final.id)
        assert table.num_rows == 5
        assert table.column("power_meter").to_pylist() == [
            p.readings["power_meter"] for p in points
        ]
        frame = table.to_pandas()
        assert list(frame["point"]) == list(range(5))
        assert frame["esp300.axis2"].iloc[-1] == pytest.approx(0.004, abs=1e-4)
        again = list(bench.scans.events(final.id, since=len(events) - 1))
        assert [e.kind for e in again] == ["ended"]
