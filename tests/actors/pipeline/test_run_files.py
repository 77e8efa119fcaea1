"""What a run puts in its file beyond frames and readings: the audit trail the edge feeds it,
frames compressed by default (the bench's setting, the run's choice), a scan's units and its
default plot worked out from the bench."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import pytest
import trio

from actors.capabilities import Capability, DeviceInfo
from actors.instruments.synthetic import SyntheticReadable
from actors.pipeline.audit_trail import AuditEntry, AuditTrail, RecordAudit
from actors.pipeline.manifest import DeviceRecord, survey
from actors.pipeline.nexus_file import (
    Compression,
    FrameLayout,
    ScanPlot,
    read_audit,
    read_end_record,
    read_manifest,
    read_scan_table,
)
from actors.pipeline.recorder import RecorderActor, StartRun, StopRun, wait_run
from actors.pipeline.run import open_run
from actors.pipeline.run_setup import RunOptions, create_run, scan_plot, scan_units
from runtime import ActorSystem, ParameterInfo, ValidationError
from runtime.config import ConfigError, parse_config
from supervisors import ActorSpec, open_actor_system

from .fakes import FakeCamera
from .nexus_check import assert_valid_nexus


@contextlib.asynccontextmanager
async def bench(directory: Path, **recorder: Any) -> AsyncIterator[ActorSystem]:
    specs = [
        ActorSpec("camera", lambda: FakeCamera(interval=0.002)),
        ActorSpec("meter", SyntheticReadable),
        ActorSpec(
            "recorder",
            lambda: RecorderActor(
                directory, camera="camera", min_free_mb=0, flush_interval=0.1, **recorder
            ),
        ),
    ]
    async with open_actor_system(specs) as system:
        yield system


def entry(what: str, result: str = "ok") -> AuditEntry:
    return AuditEntry(time.time(), "alice", "operator", what, result)


async def test_audit_entries_told_to_the_recorder_land_in_the_running_runs_file(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as system:
        recorder = system.ref("recorder")
        assert recorder.try_tell(RecordAudit(entry("SetParameter meter.rate=5")))  # no run: no-op
        await recorder.ask(StartRun("audited", record_frames=False))
        told = [
            entry("SetParameter meter.rate=10"),
            entry("MoveAbsolute esp300.axis1 30", "refused: 30 mm is outside 0-25 mm"),
        ]
        assert all(recorder.try_tell(RecordAudit(e)) for e in told)  # never waits
        final = await recorder.ask(StopRun("done"))
        assert recorder.try_tell(RecordAudit(entry("after the run")))  # no run: no-op
        await recorder.ask(StartRun("next", record_frames=False))
        await recorder.ask(StopRun("done"))
    path = Path(final.path)
    assert read_audit(path) == told
    assert final.audit_entries == 2 and final.audit_dropped == 0
    assert read_end_record(path)["audit_entries"] == 2
    assert [e.what for e in read_audit(Path(next(tmp_path.glob("*_next.nxs"))))] == []


async def test_a_full_audit_queue_drops_and_counts_and_the_file_keeps_the_rest(
    tmp_path: Path,
) -> None:
    async with open_actor_system([ActorSpec("meter", SyntheticReadable)]) as system:
        options = RunOptions(
            name="flood",
            directory=tmp_path,
            metadata={},
            camera=None,
            frames=None,
            duration=None,
            compression=Compression.NONE,
            frame_queue=8,
            min_free_bytes=0,
            flush_interval=0.05,
        )
        made = await create_run(
            system,
            options,
            path=tmp_path / "flood.nxs",
            start_time=time.time(),
            devices=await survey(system, ("meter",)),
            layout=None,
        )
        made = dataclasses.replace(made, audit=AuditTrail(capacity=3))
        async with open_run(made, flush_interval=60.0) as run:  # no flush before the end
            accepted = [run.record_audit(entry(f"Set {i}")) for i in range(5)]
            run.stop("done")
        assert not run.record_audit(entry("too late"))  # the run has ended
    assert accepted == [True, True, True, False, False]
    record = read_end_record(tmp_path / "flood.nxs")
    assert (record["audit_entries"], record["audit_dropped"]) == (3, 2)
    assert [e.what for e in read_audit(tmp_path / "flood.nxs")] == ["Set 0", "Set 1", "Set 2"]


@pytest.mark.parametrize(
    ("bench_default", "asked", "stored"),
    [
        ("bitshuffle-lz4", "", hdf5plugin.BSHUF_ID),  # the default: compressed
        ("bitshuffle-lz4", "none", None),  # the run asks for raw frames
        ("none", "", None),  # the bench is set to raw frames
        ("none", "bitshuffle-lz4", hdf5plugin.BSHUF_ID),
    ],
)
async def test_frames_are_compressed_unless_the_bench_or_the_run_says_raw(
    tmp_path: Path, bench_default: str, asked: str, stored: int | None
) -> None:
    async with bench(tmp_path, compression=bench_default) as system:
        recorder = system.ref("recorder")
        await recorder.ask(StartRun("frames", frames=8, compression=asked))
        with trio.fail_after(20):
            final = await wait_run(recorder)
    assert final.outcome == "completed" and final.frames_written == 8
    with h5py.File(final.path, "r") as f:
        data = f["entry/instrument/camera/data"]
        plist = data.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        assert filters == ([stored] if stored else [])
        assert int(data[7][0, 0]) == 8  # the fake camera's pixels are its frame number
    used = read_manifest(Path(final.path))["run"]["options"]["compression"]
    assert used == ("bitshuffle-lz4" if stored else "none")  # the manifest says what was used
    assert_valid_nexus(Path(final.path))


CONFIG = """
[storage]
{storage}

[[device]]
id = "meter"
driver = "synthetic_signal"
port = "sim"
"""


def test_the_benchs_compression_is_configured_in_the_storage_table() -> None:
    default = parse_config(CONFIG.format(storage=""), "b.toml")
    assert default.storage.compression == "bitshuffle-lz4"
    raw = parse_config(CONFIG.format(storage="compression = 'none'"), "b.toml")
    assert raw.storage.compression == "none"
    with pytest.raises(ConfigError, match=r"b.toml: storage.compression: 'zip' is not known"):
        parse_config(CONFIG.format(storage="compression = 'zip'"), "b.toml")


# -- a scan's units and default plot, from the bench --------------------------------------------


def device(name: str, capability: Capability, units: str, *parameters: ParameterInfo) -> Any:
    info = DeviceInfo(name, "test", (capability, Capability.PARAMETERIZED), "", units)
    return DeviceRecord(name, info, parameters, {}, "")


def parameter(name: str, units: str) -> ParameterInfo:
    return ParameterInfo(name, "float", units, None, None, False, False, "")


DEVICES = {
    "esp300.axis1": device("esp300.axis1", Capability.MOVABLE, "mm"),
    "ell14.2": device("ell14.2", Capability.MOVABLE, "deg"),
    "power_meter": device("power_meter", Capability.READABLE, "W"),
    "maitai": device("maitai", Capability.PARAMETERIZED, "", parameter("wavelength", "nm")),
}


def test_scan_columns_get_their_units_from_the_bench() -> None:
    columns = (
        "point",
        "esp300.axis1",
        "maitai.wavelength",
        "power_meter",
        "frames",
        "attempts",
        "suspended_s",
        "other",
    )
    assert scan_units(columns, DEVICES, {"other": "V"}) == {
        "point": "1",
        "esp300.axis1": "mm",
        "maitai.wavelength": "nm",
        "power_meter": "W",
        "frames": "1",
        "attempts": "1",
        "suspended_s": "s",
        "other": "V",
    }


def test_a_scan_plots_its_first_detector_against_its_axes() -> None:
    line = ("point", "esp300.axis1", "power_meter", "attempts")
    assert scan_plot(line, DEVICES, frames=False) == ScanPlot("power_meter", ("esp300.axis1",))
    grid = ("point", "ell14.2", "esp300.axis1", "power_meter")
    assert scan_plot(grid, DEVICES, frames=True) == ScanPlot(
        "power_meter", ("ell14.2", "esp300.axis1")
    )
    tuned = ("point", "maitai.wavelength", "power_meter")
    assert scan_plot(tuned, DEVICES, frames=False) == ScanPlot(
        "power_meter", ("maitai.wavelength",)
    )
    count = ("point", "power_meter", "attempts")
    assert scan_plot(count, DEVICES, frames=False) == ScanPlot("power_meter", ("point",))
    frames_only = ("point", "esp300.axis1", "frames", "frame_index")
    assert scan_plot(frames_only, DEVICES, frames=True) is None  # the frames are the plot
    moves_only = ("point", "esp300.axis1", "attempts")
    assert scan_plot(moves_only, DEVICES, frames=False) == ScanPlot("esp300.axis1", ("point",))
    assert scan_plot((), DEVICES, frames=False) is None
    given = ScanPlot("attempts", ("point",))
    assert scan_plot(line, DEVICES, frames=False, given=given) == given
    with pytest.raises(ValidationError, match="declared"):
        scan_plot(line, DEVICES, frames=False, given=ScanPlot("nothing"))


async def test_a_frames_only_scan_plots_the_detector_data(tmp_path: Path) -> None:
    async with open_actor_system([ActorSpec("camera", FakeCamera)]) as system:
        options = RunOptions(
            name="frames-scan",
            directory=tmp_path,
            metadata={},
            camera=None,
            frames=None,
            duration=None,
            compression=Compression.BITSHUFFLE_LZ4,
            frame_queue=8,
            min_free_bytes=0,
            flush_interval=0.05,
            scan_columns=("point", "frames", "frame_index"),
        )
        made = await create_run(
            system,
            options,
            path=tmp_path / "frames-scan.nxs",
            start_time=time.time(),
            devices=await survey(system, ("camera",)),
            layout=FrameLayout("camera", (64, 48)),
        )
        async with open_run(made, flush_interval=0.05) as run:
            run.add_scan_point({"point": 0, "frames": 0, "frame_index": -1}, time.time())
            run.stop("done")
    with h5py.File(tmp_path / "frames-scan.nxs", "r") as f:
        assert f["entry"].attrs["default"] == "data"
        assert f["entry/data"].attrs["signal"] == "data"
        assert f["entry/data/data"].shape[1:] == (64, 48)
    assert read_scan_table(tmp_path / "frames-scan.nxs")["frames"].units == "1"
    assert_valid_nexus(tmp_path / "frames-scan.nxs")
