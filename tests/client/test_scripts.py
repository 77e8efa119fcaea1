"""Issue 7's promise end to end: a grid scan uploaded from the client runs in the daemon after
the client has gone, and leaves a complete NeXus file with every point, the script text in its
manifest and an end record."""

from __future__ import annotations

import json

import h5py
import pytest

from client import Bench, InvalidArgument

from .conftest import Daemon
from .test_cli import benchctl

GRID_SCAN = """
result = grid_scan(
    ["esp300.axis1", 0.0, 0.02, params["rows"]],
    ["ell14.2", 0.0, 2.0, params["columns"]],
    read=["power_meter"],
    snake=True,
    name="laptop-closed",
    metadata={"sample": params["sample"]},
)
log("scanned", result["points"], "points")
"""


def test_a_grid_scan_outlives_the_client_that_started_it(process_daemon: Daemon) -> None:
    with Bench.connect(process_daemon.address) as bench:
        stored = bench.scripts.upload("grid", GRID_SCAN)
        assert stored.name == "grid" and stored.size == len(GRID_SCAN.encode())
        started = bench.scripts.start("grid", params={"rows": 3, "columns": 4, "sample": "Si"})
    # the laptop is closed: a new client, later, finds the execution by its id
    with Bench.connect(process_daemon.address) as bench:
        final = bench.scripts.wait(started.id)
        assert final.state == "completed", final.error
        assert bench.scripts.output(started.id)[-1].endswith("scanned 12 points")
        runs = [r for r in bench.runs() if r.name.endswith("_laptop-closed")]
    assert len(runs) == 1 and runs[0].status == "completed"
    with h5py.File(runs[0].path, "r") as f:
        points = list(f["entry/scan/point/value"])
        fast = list(f["entry/scan/ell14_2/value"])  # NeXus names: ell14.2 -> ell14_2
        end = json.loads(bytes(f["entry/end_record"][()]).rstrip(b" "))
        metadata = json.loads(f["entry/manifest/metadata_json"][()])
    assert points == list(range(12)) and end["status"] == "completed"
    assert fast[:4] == pytest.approx([0.0, 0.667, 1.333, 2.0], abs=0.01)
    assert fast[4:8] == pytest.approx([2.0, 1.333, 0.667, 0.0], abs=0.01)  # snake
    assert metadata["script"] == GRID_SCAN and metadata["sample"] == "Si"


def test_a_script_that_does_not_parse_is_refused_with_its_line(process_daemon: Daemon) -> None:
    with (
        Bench.connect(process_daemon.address) as bench,
        pytest.raises(InvalidArgument, match="line 2"),
    ):
        bench.scripts.upload("broken", "x = 1\ny = (\n")


def test_benchctl_runs_a_script_file_and_prints_its_output(
    process_daemon: Daemon, tmp_path
) -> None:
    script = tmp_path / "hello.star"
    script.write_text('log("wavelength", get("maitai.wavelength"), params["who"])\n')
    done = benchctl(process_daemon, "script", "run", str(script), "--param", 'who="ada"')
    assert done.returncode == 0, done.stderr
    assert "wavelength" in done.stdout and "ada" in done.stdout and "completed" in done.stdout
    listed = benchctl(process_daemon, "--json", "script", "list")
    assert any(e["state"] == "completed" for e in json.loads(listed.stdout))


def test_a_scan_from_the_scan_service_pauses_resumes_and_completes(
    process_daemon: Daemon,
) -> None:
    with Bench.connect(process_daemon.address) as bench:
        with pytest.raises(InvalidArgument, match="power_meter is not Movable"):
            bench.scans.create([("power_meter", 0.0, 1.0, 3)])
        created = bench.scans.create(
            [("esp300.axis2", 0.0, 0.01, 6)], read=["power_meter"], name="client-scan"
        )
        assert created.state == "created"
        bench.scans.start(created.id)
        paused = bench.scans.pause(created.id)
        assert paused.pause_requested or paused.state == "paused"
        resumed = bench.scans.resume(created.id)
        assert not resumed.pause_requested
        final = bench.scans.wait(created.id)
        assert final.state == "completed", final.error
        assert (final.points_done, final.points_total) == (6, 6)
        assert final.run_path.endswith("_client-scan.nxs")
        assert any(s.id == created.id for s in bench.scans.list())
    with h5py.File(final.run_path, "r") as f:
        assert list(f["entry/scan/point/value"]) == list(range(6))
