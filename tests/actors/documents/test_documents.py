"""Every run kind's Bluesky documents: live from the writer, rebuilt from the file, the same,
and every one valid against event-model's schemas.

Real clock (the run writer works in a thread, as in the recorder's tests); waits are on
documents arriving, bounded.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import trio
from event_model import RunRouter

from actors.acquisition import EXECUTOR_NAME, Line, Plan, Span
from actors.documents import (
    DOCUMENTS_NAME,
    FindRun,
    FollowDocuments,
    GetDocumentsStatus,
    RunComposer,
    RunStillRecording,
    compose,
    exit_status,
    replay,
)
from actors.edge.documents import _Rebuild
from actors.pipeline.nexus_file import read_end_record, read_manifest
from actors.pipeline.recorder import RECORDER_NAME, StartRun, StopRun, wait_run
from actors.pipeline.run_feed import RunOpened
from actors.scripting.runner import RUNNER_NAME, ExecutionState, GetExecution, StartScript
from runtime import ActorError, SetParameter, Source
from supervisors.bench import Bench

from .conftest import (
    Collector,
    Documents,
    bench_config,
    of,
    one_run,
    rebuilt,
    run_plan,
    small_bench,
    stream,
    validate,
)

ORIGIN_PREFIX = "benchd://"


def same_documents(live: Documents, again: Documents) -> None:
    """What a consumer sees is the same live and rebuilt: the start, every descriptor, every
    stream's events (batched differently), the frames' rows, the stop."""
    assert of(live, "start") == of(again, "start")
    key = lambda d: d["name"]  # noqa: E731
    assert sorted(of(live, "descriptor"), key=key) == sorted(of(again, "descriptor"), key=key)
    for descriptor in of(live, "descriptor"):
        name = descriptor["name"]
        live_columns, again_columns = stream(live, name), stream(again, name)
        assert live_columns.keys() == again_columns.keys()
        for column, values in live_columns.items():
            assert np.array_equal(
                np.asarray(values, dtype=object), np.asarray(again_columns[column], dtype=object)
            ), (name, column)
    assert of(live, "stream_resource") == of(again, "stream_resource")
    rows = lambda docs: [(d["indices"], d["seq_nums"]) for d in of(docs, "stream_datum")]  # noqa: E731
    live_rows, again_rows = rows(live), rows(again)
    assert bool(live_rows) == bool(again_rows)
    if live_rows:
        assert live_rows[0][0]["start"] == again_rows[0][0]["start"] == 0
        assert live_rows[-1][0]["stop"] == again_rows[-1][0]["stop"]
    (live_stop,), (again_stop,) = of(live, "stop"), of(again, "stop")
    assert {k: v for k, v in live_stop.items() if k != "time"} == {
        k: v for k, v in again_stop.items() if k != "time"
    }


async def test_a_plan_with_frames_and_readings(bench: Bench, tmp_path: Path) -> None:
    collector = Collector()
    metadata = {"sample": "quartz", "scan_id": "not-an-int", "op.erator": {"na.me": "ada"}}
    plan = Plan(
        Line((Span("x", 0.0, 2.0),), 5),
        read=("peak",),
        frames=2,
        metadata_json=json.dumps(metadata),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run, bench)
        path = await run_plan(bench, plan)
        live = await collector.wait_stops(1)
        nursery.cancel_scope.cancel()
    validate(live)
    (start,) = of(live, "start")
    manifest = read_manifest(Path(path))
    assert start["uid"] == manifest["run"]["uid"]  # the file knows its documents' run
    assert start["plan_name"] == "scan" and start["motors"] == ["x"]
    assert start["detectors"] == ["peak", "camera"]
    assert start["hints"] == {"dimensions": [[["x"], "primary"]]}
    assert start["sample"] == "quartz" and start["op_erator"] == {"na_me": "ada"}
    # not an integer: refused by the schema, kept in the manifest; the plan's number instead
    assert start["scan_id"] == int(manifest["run"]["recorded_by"]["plan_id"][1:])
    assert start["benchd"]["manifest"]["metadata"]["scan_id"] == "not-an-int"
    assert start["bench"] == "docbench" and start["benchd"]["path"] == path
    assert start["num_points"] == 5

    descriptors = {d["name"]: d for d in of(live, "descriptor")}
    assert {"primary", "camera", "x_parameters"} <= set(descriptors)
    keys = descriptors["primary"]["data_keys"]
    assert keys["x"]["units"] == "mm" and keys["x"]["dtype"] == "number"
    assert keys["x"]["limits"]["control"] == {"low": -10.0, "high": 10.0}
    assert keys["x"]["source"].startswith(ORIGIN_PREFIX) and keys["x"]["source"].endswith("/x")
    assert keys["peak"]["units"] == "V" and keys["point"]["dtype"] == "integer"
    configuration = descriptors["primary"]["configuration"]["x"]
    assert configuration["data"]["x_velocity"] == 0.0  # instant (the synthetic default)
    assert configuration["data_keys"]["x_velocity"]["units"] == "mm/s"

    primary = stream(live, "primary")
    with h5py.File(path, "r") as file:
        positions = file["entry/scan/x/value"][()]
        readings = file["entry/scan/peak/value"][()]
        numbers = file["entry/instrument/camera/frame_number"][()]
    assert primary["x"] == pytest.approx(list(positions)) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert primary["peak"] == pytest.approx(list(readings))
    assert primary["frame_index"] == [0, 2, 4, 6, 8] and primary["frames"] == [2] * 5

    camera = descriptors["camera"]["data_keys"]["camera"]
    assert camera["external"] == "STREAM:" and camera["shape"] == [1, 32, 48]
    assert camera["dtype_numpy"] == "<u2"
    (resource,) = of(live, "stream_resource")
    assert resource["mimetype"] == "application/x-hdf5"
    assert resource["uri"] == f"file://localhost{path}"
    assert resource["parameters"] == {
        "dataset": "/entry/instrument/camera/data",
        "chunk_shape": [1, 32, 48],
        "swmr": True,
    }
    datums = of(live, "stream_datum")
    assert datums[0]["indices"]["start"] == 0 and datums[-1]["indices"]["stop"] == 10
    for before, after in itertools.pairwise(datums):
        assert before["indices"]["stop"] == after["indices"]["start"]  # every row, once
    frames = stream(live, "camera")
    assert frames["camera_frame_number"] == list(numbers)
    assert frames["seq_num"] == list(range(1, 11))

    (stop,) = of(live, "stop")
    assert stop["exit_status"] == "success" and stop["reason"] == "scan completed"
    assert stop["num_events"]["primary"] == 5 and stop["num_events"]["camera"] == 10
    assert stop["benchd"]["end_record"] == read_end_record(Path(path))

    again = await rebuilt(bench, Path(path).stem)
    validate(again)
    same_documents(live, again)
    # GetRunDocuments' batches say which run each document is of
    found = await bench.system.ref(DOCUMENTS_NAME).ask(FindRun(path))
    rebuild = _Rebuild(found.path, found.origin, found.bench)
    batch = await trio.to_thread.run_sync(rebuild.take)
    await trio.to_thread.run_sync(rebuild.close)
    assert {run for _, _, run in batch} == {start["uid"]} and batch[0][0] == "start"

    # a Bluesky consumer takes them as a RunEngine's: RunRouter hands each run to callbacks
    seen: list[str] = []

    def factory(name: str, document: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        return [lambda name, document: seen.append(name)], []

    router = RunRouter([factory])
    for name, document in again:
        router(name, document)
    assert seen[0] == "start" and seen[-1] == "stop" and "stream_datum" in seen


async def test_a_record_of_frames_and_a_fast_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compose, "PAGE_ROWS", 256)  # pages of a few hundred readings
    async with small_bench(bench_config(tmp_path / "runs", rate=2000.0)) as bench:
        await bench.system.ref("camera").ask(SetParameter("exposure", 20.0, Source.USER))
        collector = Collector()
        recorder = bench.system.ref(RECORDER_NAME)
        async with trio.open_nursery() as nursery:
            await nursery.start(collector.run, bench)
            await recorder.ask(StartRun("burst", metadata={"sample": "Si"}, frames=40))
            status = await wait_run(recorder)
            live = await collector.wait_stops(1)
            nursery.cancel_scope.cancel()
        validate(live)
        (start,) = of(live, "start")
        assert start["plan_name"] == "record" and start["sample"] == "Si"
        assert "primary" not in {d["name"] for d in of(live, "descriptor")}
        end = read_end_record(Path(status.path))
        frames = stream(live, "camera")
        assert len(frames["camera_frame_number"]) == end["frames_written"] == 40
        assert of(live, "stream_datum")[-1]["indices"]["stop"] == 40
        sine = stream(live, "sine")
        assert len(sine["sine"]) == end["readings_recorded"] > 256  # several pages
        pages = [p for p in of(live, "event_page") if p["descriptor"].endswith("/sine")]
        assert len(pages) >= 2 and all(len(p["seq_num"]) <= 256 for p in pages)
        assert sine["seq_num"] == list(range(1, len(sine["sine"]) + 1))
        with h5py.File(status.path, "r") as file:
            assert sine["sine"] == pytest.approx(list(file["entry/readings/sine/reading/value"]))
        (stop,) = of(live, "stop")
        assert stop["exit_status"] == "success"
        again = await rebuilt(bench, start["uid"])  # found by uid too
        validate(again)
        same_documents(live, again)
        status_now = await bench.system.ref(DOCUMENTS_NAME).ask(GetDocumentsStatus())
        assert status_now.updates_lost == 0 and status_now.runs_open == 0


async def test_a_clients_record_through_the_executor_rebuilds_as_it_was_told(
    tmp_path: Path,
) -> None:
    """Storage.StartRun is a count plan (the executor records it): its table (``primary``)
    is in the rebuilt documents too, its status expects its frames from the start, and a
    recording of readings alone plots a reading, not its bookkeeping."""
    async with small_bench(bench_config(tmp_path / "runs", rate=200.0)) as bench:
        await bench.system.ref("camera").ask(SetParameter("exposure", 20.0, Source.USER))
        executor = bench.system.ref(EXECUTOR_NAME)
        recorder = bench.system.ref(RECORDER_NAME)
        collector = Collector()
        async with trio.open_nursery() as nursery:
            await nursery.start(collector.run, bench)
            started = await executor.ask(StartRun("burst", metadata={"sample": "Si"}, frames=10))
            assert started.frames_expected == 10  # the reply knows the run's size
            await wait_run(recorder)
            readings = await executor.ask(
                StartRun("quiet", duration=0.5, record_frames=False, metadata={"sample": "Si"})
            )
            await wait_run(recorder)
            live = await collector.wait_stops(2)
            nursery.cancel_scope.cancel()
        validate(live)
        for start in of(live, "start"):
            mine = one_run(live, start["uid"])
            assert "primary" in {d["name"] for d in of(mine, "descriptor")}
            again = await rebuilt(bench, start["uid"])
            validate(again)
            same_documents(mine, again)
        assert read_end_record(Path(started.path))["frames_expected"] == 10
        with h5py.File(readings.path, "r") as file:
            plot = file["entry/data"]  # the reading against time, not attempts against point
            assert plot.attrs["signal"] in ("peak", "sine") and list(plot.attrs["axes"]) == ["time"]


async def test_a_scripts_run(bench: Bench) -> None:
    collector = Collector()
    runner = bench.system.ref(RUNNER_NAME)
    source = 'run_plan(count(3, read=["peak"], metadata={"sample": "glass"}))\n'
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run, bench)
        started = await runner.ask(StartScript(source=source))
        with trio.fail_after(30):
            while not (status := await runner.ask(GetExecution(started.id))).state.finished:
                await trio.sleep(0.05)
        assert status.state is ExecutionState.COMPLETED, status.error
        live = await collector.wait_stops(1)
        nursery.cancel_scope.cancel()
    validate(live)
    (start,) = of(live, "start")
    assert start["plan_name"] == "count" and start["sample"] == "glass"
    assert start["plan_origin"] == f"script {started.id}"
    assert stream(live, "primary")["point"] == [0, 1, 2]
    assert of(live, "stop")[0]["exit_status"] == "success"
    same_documents(live, await rebuilt(bench, start["uid"]))


async def test_the_stop_document_says_how_the_run_ended(bench: Bench) -> None:
    collector = Collector()
    recorder = bench.system.ref(RECORDER_NAME)
    async with trio.open_nursery() as nursery:
        await nursery.start(collector.run, bench)
        await recorder.ask(StartRun("stopped", duration=60.0, record_frames=False))
        await recorder.ask(StopRun("enough", outcome=None))  # an owner's end: "stopped"
        await recorder.ask(StartRun("incident", duration=60.0, record_frames=False))
        await bench.system.emergency_stop("test incident", by="tests")
        await recorder.ask(StopRun("after the incident"))
        live = await collector.wait_stops(2)
        nursery.cancel_scope.cancel()
    starts = of(live, "start")
    first, second = (one_run(live, s["uid"]) for s in starts)
    validate(first)
    validate(second)
    (stopped,), (estopped,) = of(first, "stop"), of(second, "stop")
    assert stopped["exit_status"] == "success" and stopped["reason"] == "stopped: enough"
    assert stopped["benchd"]["outcome"] == "stopped"
    assert estopped["exit_status"] == "fail" and estopped["reason"].startswith("e-stopped")
    assert "test incident" in estopped["reason"]


def test_exit_status_of_every_outcome() -> None:
    assert exit_status({"status": "completed", "reason": "scan completed"}) == (
        "success",
        "scan completed",
    )
    assert exit_status({"status": "stopped", "reason": "by alice"}) == (
        "success",
        "stopped: by alice",
    )
    for outcome in ("incomplete", "e-stopped", "disk full", "failed", "crashed"):
        status, reason = exit_status({"status": outcome, "reason": "why"})
        assert (status, reason) == ("fail", f"{outcome}: why")
    assert exit_status({"status": "write error", "error": "ENOSPC", "reason": "disk"}) == (
        "fail",
        "write error (ENOSPC): disk",
    )


def test_a_stop_after_lost_updates_says_the_live_stream_is_incomplete() -> None:
    opened = RunOpened(
        "0" * 8 + "-0000-4000-8000-" + "0" * 12, "/runs/r.nxs", "r", 1.0, {}, (), None
    )
    composer = RunComposer(opened, origin="benchd://host:50051")
    composer.start()
    ((_name, stop),) = composer.stop({"status": "completed", "reason": "done"}, lost=3)
    assert stop["exit_status"] == "success"
    assert "3 update(s)" in stop["reason"] and "GetRunDocuments" in stop["reason"]
    assert math.isfinite(stop["time"])


async def test_runs_are_found_only_in_the_run_directory(bench: Bench, tmp_path: Path) -> None:
    documents = bench.system.ref(DOCUMENTS_NAME)
    outside = tmp_path / "elsewhere.nxs"
    outside.write_bytes(b"")
    for reference, expected in (
        (str(outside), "is not in the run directory"),
        ("../elsewhere", "a name has no '/'"),
        ("no-such-run", "no run 'no-such-run'"),
        ("x" * 2000, "at most 1024 characters"),
    ):
        with pytest.raises(ActorError, match=expected):
            await documents.ask(FindRun(reference))
    with pytest.raises(ActorError, match="past the newest document"):
        await documents.ask(FollowDocuments(since=10**12))
    recorder = bench.system.ref(RECORDER_NAME)
    status = await recorder.ask(StartRun("ongoing", duration=60.0, record_frames=False))
    found = await documents.ask(FindRun(status.path))
    with pytest.raises(RunStillRecording, match="still recording"):
        await trio.to_thread.run_sync(
            lambda: list(replay(found.path, origin=found.origin, bench=found.bench))
        )
    await recorder.ask(StopRun("done"))
