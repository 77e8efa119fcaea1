"""The run file as NeXus readers see it: valid names (the bench's kept beside them), NX_class on
every group, NXlogs with units, one default plot that resolves, NeXus's validator without
errors, silx, compressed frames, the audit trail, and the read helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from actors.pipeline import nexus_file
from actors.pipeline.audit_trail import LIMITS, AuditEntry, AuditTrail
from actors.pipeline.nexus_file import (
    ChannelKind,
    ChannelSpec,
    Compression,
    FrameLayout,
    FrameRecord,
    NexusRunFile,
    ScanPlot,
    frames_path,
    read_audit,
    read_channel,
    read_layout,
    read_scan_table,
)
from actors.pipeline.nexus_names import VALID, NameAllocator, nexus_name

from .nexus_check import assert_valid_nexus, nexus_messages

ROOT = Path(__file__).resolve().parents[3]
T0 = 1.7e9

DEVICES = {
    "camera": {"exposure": {"value": 20.0, "units": "ms"}},
    "esp300.axis1": {"velocity": {"value": 2.0, "units": "mm/s"}, "limit.low": {"value": 0.0}},
    "ell14.2": {"position": {"value": 45.0, "units": "deg"}},
    "power_meter": {"wavelength": {"value": 800, "units": "nm"}, "filter": {"value": "fast"}},
}
READINGS = [ChannelSpec("power_meter", "reading", ChannelKind.READING, "float", "W")]
PARAMETERS = [
    ChannelSpec("esp300.axis1", "velocity", ChannelKind.PARAMETER, "float", "mm/s"),
    ChannelSpec("power_meter", "filter", ChannelKind.PARAMETER, "str"),
    ChannelSpec("power_meter", "zeroed", ChannelKind.PARAMETER, "bool"),
    ChannelSpec("power_meter", "averages", ChannelKind.PARAMETER, "int"),
]
SCAN = [
    ChannelSpec("scan", "point", ChannelKind.SCAN, "float", "1"),
    ChannelSpec("scan", "esp300.axis1", ChannelKind.SCAN, "float", "mm"),
    ChannelSpec("scan", "ell14.2", ChannelKind.SCAN, "float", "deg"),
    ChannelSpec("scan", "power_meter", ChannelKind.SCAN, "float", "W"),
    ChannelSpec("scan", "2theta", ChannelKind.SCAN, "float"),
]


def make(
    path: Path,
    *,
    frames: FrameLayout | None = None,
    channels: list[ChannelSpec] | None = None,
    plot: ScanPlot | None = None,
) -> NexusRunFile:
    return NexusRunFile.create(
        path,
        title="layout",
        start_time=T0,
        manifest={"run": {"name": "layout"}},
        metadata={"sample": "quartz"},
        devices=DEVICES,
        frames=frames,
        channels=[*READINGS, *PARAMETERS, *(SCAN if channels is None else channels)],
        plot=plot,
    )


def fill(run: NexusRunFile, points: int = 5) -> None:
    run.append_channel("power_meter/reading", [T0 + 0.1, T0 + 0.2], [1e-3, 2e-3], ["", "sat"])
    run.append_channel("power_meter/filter", [T0 + 1], ["slow"])
    run.append_channel("power_meter/zeroed", [T0 + 1], [True])
    run.append_channel("power_meter/averages", [T0 + 1], [8])
    run.append_channel("esp300.axis1/velocity", [T0 + 1], [2.5])
    times = [T0 + i for i in range(points)]
    for column, values in (
        ("point", list(range(points))),
        ("esp300.axis1", [0.5 * i for i in range(points)]),
        ("ell14.2", [10.0 * i for i in range(points)]),
        ("power_meter", [float(i * i) for i in range(points)]),
        ("2theta", [1.0] * points),
    ):
        run.append_channel(f"scan/{column}", times, values)


def scan_file(path: Path, **options: object) -> Path:
    run = make(path, plot=ScanPlot("power_meter", ("esp300.axis1",)), **options)  # type: ignore[arg-type]
    fill(run)
    run.append_audit([AuditEntry(T0 + 2, "alice", "operator", "MoveAbsolute ell14.2 10", "ok")])
    run.finish({"status": "completed"}, T0 + 9)
    return path


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("esp300.axis1", "esp300_axis1"),
        ("ell14.2", "ell14_2"),
        ("2theta", "_2theta"),
        ("power_meter", "power_meter"),
        ("Maï Tai/λ", "Ma__Tai__"),
        ("", "_"),
    ],
)
def test_every_bench_name_has_a_valid_nexus_name(name: str, expected: str) -> None:
    assert nexus_name(name) == expected and VALID.fullmatch(expected)


def test_names_that_would_collide_are_made_unique_in_order() -> None:
    name = NameAllocator(("title",))
    assert [name("a.b"), name("a_b"), name("a-b"), name("title"), name("a.b")] == [
        "a_b",
        "a_b_2",
        "a_b_3",
        "title_2",
        "a_b",
    ]


def test_groups_have_valid_names_an_nx_class_and_keep_the_bench_names(tmp_path: Path) -> None:
    path = scan_file(tmp_path / "run.nxs", frames=FrameLayout("camera", (8, 6)))
    with h5py.File(path, "r") as f:
        assert f.attrs["NX_class"] == "NXroot" and f.attrs["default"] == "entry"
        assert f.attrs["file_name"] == "run.nxs" and f.attrs["creator"] == "benchd"

        def check(name: str, item: object) -> None:
            assert VALID.fullmatch(name.rsplit("/", 1)[-1]), name
            if isinstance(item, h5py.Group):
                assert "NX_class" in item.attrs, f"/{name} has no NX_class"

        f.visititems(check)
        assert f["entry/instrument/esp300_axis1"].attrs["device"] == "esp300.axis1"
        assert f["entry/instrument/esp300_axis1/limit_low"].attrs["long_name"] == "limit.low"
        assert f["entry/instrument/camera/local_name"][()] == b"camera"
        assert f["entry/readings/esp300_axis1"].attrs["device"] == "esp300.axis1"
        velocity = f["entry/readings/esp300_axis1/parameters/velocity"]
        assert velocity.attrs["NX_class"] == "NXlog"
        assert velocity["description"][()] == b"esp300.axis1.velocity"
        assert velocity["value"].attrs["long_name"] == "esp300.axis1.velocity (mm/s)"
        assert f["entry/scan/ell14_2/description"][()] == b"ell14.2"
        assert f["entry/scan/_2theta/description"][()] == b"2theta"
    layout = read_layout(path)
    assert layout["devices"]["esp300.axis1"] == "/entry/instrument/esp300_axis1"
    assert layout["detector"] == "/entry/instrument/camera"
    assert layout["scan"]["ell14.2"] == "/entry/scan/ell14_2"
    assert layout["parameters"]["esp300.axis1"]["velocity"] == (
        "/entry/readings/esp300_axis1/parameters/velocity"
    )
    assert layout["default_plot"] == "/entry/data" and layout["audit"] == "/entry/audit"
    assert frames_path(path) == "/entry/instrument/camera/data"
    laid_out = {
        **{f"{d}/reading": p for d, p in layout["readings"].items()},
        **{f"{d}/{n}": p for d, ps in layout["parameters"].items() for n, p in ps.items()},
        **{f"scan/{c}": p for c, p in layout["scan"].items()},
    }
    assert {c.key: c.path for c in (*READINGS, *PARAMETERS, *SCAN)} == laid_out  # the rule


def test_every_log_has_unix_times_and_every_value_has_units(tmp_path: Path) -> None:
    path = scan_file(tmp_path / "run.nxs")
    columns = read_layout(path)["scan"]
    logs: list[h5py.Group] = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda _, item: (
                logs.append(item)
                if isinstance(item, h5py.Group) and item.attrs["NX_class"] == "NXlog"
                else None
            )
        )
        assert len(logs) == len(READINGS) + len(PARAMETERS) + len(SCAN)
        for log in logs:
            assert log["time"].attrs["units"] == "s", log.name
            assert log["time"].attrs["start"] == "1970-01-01T00:00:00+00:00", log.name
            assert "units" in log["value"].attrs, log.name
        units = {c.name: f[columns[c.name]]["value"].attrs["units"] for c in SCAN}
        assert units == {
            "point": "1",
            "esp300.axis1": "mm",
            "ell14.2": "deg",
            "power_meter": "W",
            "2theta": "1",  # a number nothing gave units: dimensionless
        }
        assert f["entry/readings/power_meter/reading/value"].attrs["units"] == "W"
        assert f["entry/readings/power_meter/parameters/filter/value"].attrs["units"] == ""
        assert f["entry/readings/power_meter/parameters/averages/value"].attrs["units"] == "1"
    # the read helpers, by the bench's names
    reading = read_channel(path, "power_meter")
    assert reading.times.tolist() == [T0 + 0.1, T0 + 0.2] and reading.flags == ("", "sat")
    assert reading.units == "W"
    assert read_channel(path, "power_meter", "filter").values.tolist() == ["slow"]
    assert read_channel(path, "esp300.axis1", "velocity").values.tolist() == [2.5]
    with pytest.raises(KeyError, match=r"no changes of power_meter\.nothing"):
        read_channel(path, "power_meter", "nothing")
    table = read_scan_table(path)
    assert list(table) == [c.name for c in SCAN]
    assert table["esp300.axis1"].values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert table["esp300.axis1"].units == "mm"


# -- the default plot ---------------------------------------------------------------------------


def test_a_scan_plots_its_detector_against_its_axis_in_nexus_readers(tmp_path: Path) -> None:
    from nexusformat.nexus import nxload

    path = scan_file(tmp_path / "scan.nxs")
    with h5py.File(path, "r") as f:
        assert f["entry"].attrs["default"] == "data"
        data = f["entry/data"]
        assert data.attrs["NX_class"] == "NXdata"
        assert data.attrs["signal"] == "power_meter"
        assert list(data.attrs["axes"]) == ["esp300_axis1"]
        assert data.attrs["esp300_axis1_indices"] == 0
        assert data["esp300_axis1"].attrs["units"] == "mm"
        assert data["esp300_axis1"].attrs["target"] == "/entry/scan/esp300_axis1/value"
    root = nxload(str(path))
    try:
        plot = root.plottable_data  # NXroot @default -> NXentry @default -> NXdata
        assert plot.nxpath == "/entry/data"
        assert plot.nxsignal.nxname == "power_meter"
        assert plot.nxsignal.nxvalue.tolist() == [0.0, 1.0, 4.0, 9.0, 16.0]
        assert [axis.nxname for axis in plot.nxaxes] == ["esp300_axis1"]
        assert plot.nxaxes[0].nxvalue.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    finally:
        root.nxfile.close()
    warnings = assert_valid_nexus(path)
    assert (
        "/entry/readings/power_meter/parameters/filter/value",
        "The field value is not a valid NX_NUMBER",
    ) in warnings  # text parameters: the only value warned about


def test_a_grid_scan_plots_against_its_first_axis_and_keeps_the_other(tmp_path: Path) -> None:
    path = scan_file(tmp_path / "grid.nxs")
    path.unlink()
    run = make(path, plot=ScanPlot("power_meter", ("esp300.axis1", "ell14.2")))
    fill(run)
    run.finish({"status": "completed"}, T0 + 9)
    with h5py.File(path, "r") as f:
        data = f["entry/data"]
        assert list(data.attrs["axes"]) == ["esp300_axis1"]  # one per signal dimension
        assert data.attrs["ell14_2_indices"] == 0  # the same points' other coordinate
        assert data["ell14_2"].shape == data["power_meter"].shape == (5,)
    assert_valid_nexus(path)


def test_a_frames_run_plots_its_frames_and_a_scan_with_frames_keeps_both(tmp_path: Path) -> None:
    from nexusformat.nexus import nxload

    frames = [FrameRecord(n, T0 + n, 5.0, np.full((8, 6), n, np.uint16)) for n in (3, 4, 5)]
    only = make(tmp_path / "frames.nxs", frames=FrameLayout("camera", (8, 6)), channels=[])
    only.append_frames(frames)
    only.finish({"status": "completed"}, T0 + 9)
    root = nxload(str(tmp_path / "frames.nxs"))
    try:
        plot = root.plottable_data
        assert plot.nxpath == "/entry/data" and plot.nxsignal.shape == (3, 8, 6)
        assert plot.nxaxes[0].nxname == "frame_number"
        assert plot.nxaxes[0].nxvalue.tolist() == [3, 4, 5]
    finally:
        root.nxfile.close()
    assert_valid_nexus(tmp_path / "frames.nxs")
    both = make(
        tmp_path / "both.nxs",
        frames=FrameLayout("camera", (8, 6)),
        plot=ScanPlot("power_meter", ("esp300.axis1",)),
    )
    both.append_frames(frames)
    fill(both)
    both.finish({"status": "completed"}, T0 + 9)
    with h5py.File(tmp_path / "both.nxs", "r") as f:
        assert f["entry"].attrs["default"] == "data"
        assert f["entry/data"].attrs["signal"] == "power_meter"
        assert f["entry/frames"].attrs["signal"] == "data"
        assert f["entry/frames/data"].shape == (3, 8, 6)
    assert_valid_nexus(tmp_path / "both.nxs")


def test_a_readings_run_plots_a_reading_against_time_and_an_empty_run_plots_nothing(
    tmp_path: Path,
) -> None:
    run = make(tmp_path / "readings.nxs", channels=[])
    fill_readings = [T0 + 0.1, T0 + 0.2, T0 + 0.3]
    run.append_channel("power_meter/reading", fill_readings, [1.0, 2.0, 3.0], [""] * 3)
    run.finish({"status": "completed"}, T0 + 9)
    with h5py.File(tmp_path / "readings.nxs", "r") as f:
        data = f[f"entry/{f['entry'].attrs['default']}"]
        assert data.attrs["signal"] == "power_meter" and list(data.attrs["axes"]) == ["time"]
        assert data["time"][:].tolist() == fill_readings
    assert_valid_nexus(tmp_path / "readings.nxs")
    empty = NexusRunFile.create(
        tmp_path / "empty.nxs",
        title="empty",
        start_time=T0,
        manifest={},
        metadata={},
        devices={},
        frames=None,
        channels=[],
    )
    empty.finish({"status": "completed"}, T0)
    with h5py.File(tmp_path / "empty.nxs", "r") as f:
        assert "default" not in f["entry"].attrs and "data" not in f["entry"]
    assert read_layout(tmp_path / "empty.nxs")["default_plot"] is None
    errors, _ = nexus_messages(tmp_path / "empty.nxs")
    assert not errors


def test_a_plot_must_name_declared_distinct_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not scan columns"):
        make(tmp_path / "a.nxs", plot=ScanPlot("nothing", ("esp300.axis1",)))
    with pytest.raises(ValueError, match="distinct"):
        make(tmp_path / "b.nxs", plot=ScanPlot("power_meter", ("power_meter",)))
    assert not list(tmp_path.iterdir())  # nothing left behind


SILX = """
import os, sys
import silx.io, silx.io.nxdata
with silx.io.open(sys.argv[1]) as file:
    plot = silx.io.nxdata.get_default(file)
    assert plot is not None and plot.is_valid and plot.is_curve, plot
    print(plot.signal.name, plot.signal_name, plot.axes_dataset_names[0], plot.axes_names[0])
    print(plot.signal[()].tolist(), plot.signal.attrs["units"], plot.axes[0].attrs["units"])
print(any(name.startswith(("PySide", "PyQt")) for name in sys.modules))
"""


def test_silx_opens_a_run_file_and_finds_its_default_plot_without_a_display(
    tmp_path: Path,
) -> None:
    path = scan_file(tmp_path / "scan.nxs")
    environment = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    environment.pop("QT_QPA_PLATFORM", None)
    done = subprocess.run(
        [sys.executable, "-c", SILX, str(path)], capture_output=True, text=True, env=environment
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names, values, uses_qt = done.stdout.strip().split("\n")
    assert names.split() == [
        "/entry/data/power_meter",
        "power_meter",
        "(W)",
        "esp300_axis1",
        "esp300.axis1",
        "(mm)",
    ]
    assert values == "[0.0, 1.0, 4.0, 9.0, 16.0] W mm" and uses_qt == "False"


# -- frames ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(37, 53), (1, 1), (256, 130)])
@pytest.mark.parametrize("direct", [True, False])
def test_compressed_frames_are_bitshuffle_lz4_chunks_any_reader_with_the_filter_decodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int], direct: bool
) -> None:
    """Compressed by bitshuffle here (direct) or by HDF5's filter when bitshuffle is missing:
    the same chunks, decoded by hdf5plugin's filter."""
    if not direct:
        monkeypatch.setattr(nexus_file, "_compress_frame", None)
    rng = np.random.default_rng(7)
    pool = [rng.poisson(100, shape).astype(np.uint16) for _ in range(3)]
    path = tmp_path / "run.nxs"
    run = make(path, frames=FrameLayout("camera", shape), channels=[])
    assert run.layout is not None and run.layout.compression is Compression.BITSHUFFLE_LZ4
    run.append_frames([FrameRecord(n, T0 + n, 1.0, pool[n]) for n in range(3)])
    run.finish({"status": "completed"}, T0)
    with h5py.File(path, "r") as f:
        data = f["entry/instrument/camera/data"]
        assert data.id.get_create_plist().get_filter(0)[0] == hdf5plugin.BSHUF_ID
        for n in range(3):
            assert np.array_equal(data[n], pool[n])
        if shape[0] > 1:
            stored = data.id.get_chunk_info(0).size
            assert stored < pool[0].nbytes  # Poisson noise around 100 compresses ~2x


def test_raw_frames_are_stored_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "raw.nxs"
    run = make(path, frames=FrameLayout("camera", (16, 8), Compression.NONE), channels=[])
    pixels = np.arange(128, dtype=np.uint16).reshape(16, 8)
    run.append_frames([FrameRecord(1, T0, 1.0, pixels)])
    run.finish({"status": "completed"}, T0)
    with h5py.File(path, "r") as f:
        data = f["entry/instrument/camera/data"]
        assert data.id.get_create_plist().get_nfilters() == 0
        assert data.id.get_chunk_info(0).size == pixels.nbytes
        assert np.array_equal(data[0], pixels)


# -- the audit trail ---------------------------------------------------------------------------


def test_the_audit_trail_is_a_table_of_bounded_entries(tmp_path: Path) -> None:
    path = tmp_path / "audit.nxs"
    run = make(path, channels=[])
    entries = [
        AuditEntry(T0 + 1, "alice", "operator", "SetParameter maitai.wavelength=800 nm", "ok"),
        AuditEntry(T0 + 2, "bob", "observer", "MoveAbsolute esp300.axis1 30", "refused: λ" * 40),
        AuditEntry(T0 + 3, "é" * 500, "r" * 500, "x" * 5000, "y"),
    ]
    assert entries[2].who == "é" * 30 + "…"  # 63 bytes: no half character
    assert len(entries[2].what.encode()) == LIMITS["what"] and len(entries[1].result) == 400
    run.append_audit(entries[:2])
    run.append_audit(entries[2:])
    assert run.bytes_for_audit(1) == 0  # the chunk has room
    run.finish({"status": "completed"}, T0 + 9)
    assert read_audit(path) == entries
    with h5py.File(path, "r") as f:
        audit = f["entry/audit"]
        assert audit.attrs["NX_class"] == "NXcollection"
        assert audit["time"].attrs["units"] == "s"
        assert audit["who"][0] == b"alice"


def test_an_audit_trail_holds_its_capacity_and_counts_the_rest() -> None:
    trail = AuditTrail(capacity=3)
    accepted = [trail.add(AuditEntry(T0, "a", "operator", f"Set {i}")) for i in range(5)]
    assert accepted == [True, True, True, False, False] and trail.dropped == 2
    assert [e.what for e in trail.take()] == ["Set 0", "Set 1", "Set 2"]
    assert trail.recorded == 3 and trail.add(AuditEntry(T0, "a", "operator", "Set 5"))


#: A writer killed between two flushes, its audit trail's columns of different lengths.
CRASH = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from actors.pipeline.nexus_file import *
    from actors.pipeline.audit_trail import AuditEntry
    run = NexusRunFile.create(
        Path(sys.argv[1]), title="doomed", start_time=1.0e9,
        manifest={"run": {"name": "doomed", "start_time": 1.0e9, "options": {}}},
        metadata={}, devices={"esp300.axis1": {}}, frames=None,
        channels=[ChannelSpec("scan", "esp300.axis1", ChannelKind.SCAN, "float", "mm")],
        plot=ScanPlot("esp300.axis1"),
    )
    run.append_audit([AuditEntry(1.0e9 + i, "alice", "operator", f"Move {i}") for i in range(3)])
    run.append_channel("scan/esp300.axis1", [1.0e9, 1.0e9 + 1], [0.0, 1.0])
    run.flush()
    audit = run._audit
    audit[0].resize(5, axis=0)  # the time column of two more rows, the rest never written
    run.flush()
    os._exit(9)
    """
)


def test_the_crash_repair_cuts_the_audit_trail_to_whole_rows_and_counts_it(
    tmp_path: Path,
) -> None:
    from actors.pipeline.crash_repair import repair_directory

    path = tmp_path / "20260101-120000_doomed.nxs"
    done = subprocess.run(
        [sys.executable, "-c", CRASH, str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 9, done.stderr[-2000:]
    (repair,) = repair_directory(tmp_path)
    assert repair.end is not None and repair.end.counts.audit_entries == 3
    assert any("audit trail to its 3 whole rows" in action for action in repair.actions)
    assert [e.what for e in read_audit(path)] == ["Move 0", "Move 1", "Move 2"]
    assert read_scan_table(path)["esp300.axis1"].values.tolist() == [0.0, 1.0]
    assert json.loads(h5py.File(path, "r")["entry/end_record"][()])["status"] == "crashed"
    assert_valid_nexus(path)
