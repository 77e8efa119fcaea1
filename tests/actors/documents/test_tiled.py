"""The Tiled publisher against a real ``tiled serve`` on loopback: a scan is published with its
frames linked from the run's HDF5 file, another process finds it by plan name and sample and
reads its table and a frame; the server stopped mid-run, the daemon goes on, the backlog is
counted, and the runs are caught up when the server is back.

Waits are on the publisher's status (bounded), never on wall-clock margins.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import pytest
import trio
from event_model import DocumentNames, schema_validators

from actors.acquisition import EXECUTOR_NAME, Count, CreatePlan, Line, Plan, Span, WatchPlan
from actors.documents import PUBLISHER_NAME, PublishRun, replay
from actors.documents.tiled import LEDGER, GetPublishStatus, PublishStatus
from runtime.config import ConfigError
from supervisors.bench import Bench
from tests.run_engine import run_engine

from .conftest import bench_config, small_bench
from .consumer import audit
from .tiled_server import API_KEY, TiledServer, read_from_another_process


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("published")


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory, runs_root: Path) -> Iterator[TiledServer]:
    server = TiledServer(tmp_path_factory.mktemp("tiled"), runs_root)
    server.start(wait=False)  # it boots (~10 s) while the first bench starts and scans: the
    # publisher meets a server that is not up yet, and retries
    try:
        yield server
    finally:
        server.stop()


def publishing(directory: Path, server: str, extra: str = "") -> str:
    return f'[publish]\ntiled = "{server}"\nretry_max = 1.0\n{extra}'


async def status(bench: Bench) -> PublishStatus:
    result: PublishStatus = await bench.system.ref(PUBLISHER_NAME).ask(GetPublishStatus())
    return result


async def wait_status(
    bench: Bench, condition: Callable[[PublishStatus], bool], timeout: float = 45.0
) -> PublishStatus:
    with trio.fail_after(timeout):
        while not condition(now := await status(bench)):
            await trio.sleep(0.05)
    return now


async def run_plan(bench: Bench, plan: Plan) -> str:
    executor = bench.system.ref(EXECUTOR_NAME)
    started = await executor.ask(CreatePlan(plan, "test", start=True))
    subscription = await executor.ask(WatchPlan(started.id))
    async for sample in subscription:
        if sample.value.state.finished:
            assert sample.value.state.value == "completed", sample.value.error
            return str(sample.value.run_path)
    raise AssertionError("the executor went away")


def read(url: str, *queries: dict[str, Any]) -> list[dict[str, Any]]:
    return read_from_another_process(url, *queries)


async def test_a_scan_is_published_searchable_and_readable_and_caught_up_after_an_outage(
    tiled: TiledServer, runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCHD_TILED_API_KEY", API_KEY)
    directory = runs_root / "bench-a"
    config = bench_config(directory, extra=publishing(directory, tiled.url))
    async with small_bench(config) as bench:
        scan = Plan(
            Line((Span("x", 0.0, 2.0),), 5),
            read=("peak",),
            frames=1,
            metadata_json=json.dumps({"sample": "quartz"}),
        )
        path = await run_plan(bench, scan)
        await wait_status(bench, lambda s: s.published == 1 and s.backlog == 0, 90.0)

        found, nothing = await trio.to_thread.run_sync(
            lambda: read(
                tiled.url,
                {"plan_name": "scan", "sample": "quartz", "frame": 3, "documents": True},
                {"sample": "no"},
            )
        )
        assert len(found["uids"]) == 1 and nothing["uids"] == []
        assert {"primary", "camera", "peak"} <= set(found["streams"])
        assert found["exit_status"] == "success"
        table = found["table"]
        assert table["x"] == [0.0, 0.5, 1.0, 1.5, 2.0]
        with h5py.File(path, "r") as file:
            assert table["peak"] == pytest.approx(list(file["entry/scan/peak/value"]))
            frame = file["entry/instrument/camera/data"][3]
        assert found["frames_shape"] == [5, 1, 32, 48]
        assert found["frame"] == [frame.tolist()]  # read from the daemon's file, over HTTP
        # run.documents() (the server's JSON-seq exporter, configured as docs/facility.md
        # says) replays the run as a consumer takes it, frames pointing into the file
        documents = [(name, document) for name, document in found["documents"]]
        audit(documents)
        assert [d["data"]["x"] for n, d in documents if n == "event" and "x" in d["data"]] == (
            table["x"]
        )
        (resource,) = [d for n, d in documents if n == "stream_resource"]
        assert resource["uri"] == f"file://localhost{path}"

        # the server goes away mid-run: the run and the daemon go on, the backlog is counted
        during = Plan(
            Count(num=10, interval=0.2), read=("peak",), metadata_json='{"sample": "outage"}'
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_plan, bench, during)
            await trio.to_thread.run_sync(tiled.stop)
        down = await wait_status(bench, lambda s: not s.connected and s.backlog >= 1)
        assert down.published == 1 and down.attempts_failed >= 1 and down.last_error
        assert math.isfinite(down.retry_in)
        await trio.to_thread.run_sync(lambda: tiled.start(wait=False))  # it boots meanwhile
        second = await run_plan(bench, Plan(Count(num=2), metadata_json='{"sample": "outage"}'))
        back = await wait_status(bench, lambda s: s.published == 3 and s.backlog == 0, 90.0)
        assert back.connected and back.failed_runs == 0
        (caught,) = await trio.to_thread.run_sync(lambda: read(tiled.url, {"sample": "outage"}))
        assert len(caught["uids"]) == 2
        ledger = json.loads((directory / LEDGER).read_text())
        published = ledger["servers"][tiled.url]["published"]
        assert {Path(path).name, Path(second).name} <= set(published)


async def test_catch_up_at_start_publishes_what_ended_while_no_daemon_published(
    tiled: TiledServer, runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCHD_TILED_API_KEY", API_KEY)
    directory = runs_root / "bench-b"
    async with small_bench(bench_config(directory)) as bench:  # no publisher configured
        offline = await run_plan(bench, Plan(Count(num=2), metadata_json='{"sample": "later"}'))
    config = bench_config(directory, extra=publishing(directory, tiled.url))
    async with small_bench(config) as bench:
        await wait_status(bench, lambda s: s.published == 1 and s.backlog == 0)
    ledger = json.loads((directory / LEDGER).read_text())
    assert Path(offline).name in ledger["servers"][tiled.url]["published"]


async def test_publishing_again_is_idempotent_and_a_half_written_run_is_written_whole(
    tiled: TiledServer, runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed attempt left half a run in the catalog (no stop): the publisher deletes it and
    writes the run whole; publishing the run again (a lost ledger, a rescan) writes nothing."""
    monkeypatch.setenv("BENCHD_TILED_API_KEY", API_KEY)
    directory = runs_root / "bench-c"
    async with small_bench(bench_config(directory)) as bench:  # no publisher configured
        plan = Plan(Count(num=3), read=("peak",), frames=1, metadata_json='{"sample": "half"}')
        path = await run_plan(bench, plan)

    def write_half() -> str:
        from bluesky_tiled_plugins import TiledWriter
        from tiled.client import from_uri

        documents = list(replay(Path(path), origin="benchd://elsewhere"))
        client = from_uri(tiled.url, api_key=API_KEY)
        try:
            writer = TiledWriter(client)
            for name, document in documents[: len(documents) // 2]:
                writer(name, document)
        finally:
            client.context.close()
        return str(documents[0][1]["uid"])

    uid = await trio.to_thread.run_sync(write_half)
    config = bench_config(directory, extra=publishing(directory, tiled.url))
    async with small_bench(config) as bench:
        await wait_status(bench, lambda s: s.published == 1 and s.backlog == 0)
        await bench.system.ref(PUBLISHER_NAME).tell(PublishRun(path, uid))  # once more
        again = await wait_status(bench, lambda s: s.backlog == 0)
        assert again.published == 1 and again.failed_runs == 0
    (found,) = await trio.to_thread.run_sync(
        lambda: read(tiled.url, {"sample": "half", "documents": True})
    )
    assert found["uids"] == [uid] and found["exit_status"] == "success"
    documents = [(name, document) for name, document in found["documents"]]
    audit(documents)
    (stop,) = [d for n, d in documents if n == "stop"]
    assert stop["num_events"]["primary"] == 3 and stop["num_events"]["camera"] == 3


@pytest.fixture
def RE() -> Iterator[Any]:  # noqa: N802 (bluesky's name for it)
    with run_engine() as engine:
        yield engine


def test_a_runengine_scan_on_a_running_daemon_appears_in_tiled_seconds_later(
    tiled: TiledServer,
    runs_root: Path,
    RE: Any,  # noqa: N803
) -> None:
    """The issue's "done when": a stock RunEngine scans an ESP300 axis against the power meter
    on a running daemon (client.bluesky); the daemon's run of it is in the Tiled server seconds
    later, searchable and readable from another process, and every document validates."""
    from bluesky import plans as bp

    from client import Bench
    from client.bluesky import connect
    from tests.client.conftest import start_daemon

    daemon = start_daemon(
        runs_root / "daemon",
        extra=publishing(runs_root, tiled.url, "catch_up = false"),
        env={"BENCHD_TILED_API_KEY": API_KEY},
    )
    try:
        documents: list[tuple[str, dict[str, Any]]] = []
        with Bench.connect(daemon.address) as control:
            bench = connect(daemon.address)
            try:
                axis, meter = bench["esp300.axis1"], bench["power_meter"]
                control.record(
                    "knife-edge", wait=False, metadata={"plan_name": "scan", "sample": "razor"}
                )
                RE(bp.scan([meter], axis, -1, 1, 11), lambda n, d: documents.append((n, d)))
                run = control.stop_run("scan done")
            finally:
                bench.close()
            deadline = time.monotonic() + 60
            while (publish := control.health().system.publish) is not None and (
                publish.published < 1 and time.monotonic() < deadline
            ):
                time.sleep(0.1)
            assert publish is not None and publish.published == 1, publish
            daemon_documents = list(control.run_documents(Path(run.path).stem))
        for name, document in documents + daemon_documents:
            schema_validators[DocumentNames[name]].validate(document)
        (found,) = read(
            tiled.url, {"plan_name": "scan", "sample": "razor", "stream": "power_meter"}
        )
        assert len(found["uids"]) == 1 and found["exit_status"] == "success"
        assert found["uids"] == [daemon_documents[0][1]["uid"]]
        # the RunEngine's 11 readings of the power meter are among the daemon's readings of it
        engine = [d["data"]["power_meter"] for n, d in documents if n == "event"]
        assert len(engine) == 11
        assert set(engine) <= set(found["table"]["power_meter"])
    finally:
        daemon.stop()


def test_publish_config_errors_name_file_key_and_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BENCHD_TILED_API_KEY", raising=False)
    with pytest.raises(
        ConfigError, match=r"bench.toml: publish.api_key_env: .*BENCHD_TILED_API_KEY"
    ):
        bench_config(tmp_path, extra=publishing(tmp_path, "http://127.0.0.1:8000"))
    monkeypatch.setenv("BENCHD_TILED_API_KEY", "k")
    with pytest.raises(ConfigError, match=r"publish.tiled: 'tiled.lab' is not an http\(s\) URL"):
        bench_config(tmp_path, extra=publishing(tmp_path, "tiled.lab"))
    with pytest.raises(ConfigError, match=r"publish\.api_key: keys never go in the file"):
        bench_config(tmp_path, extra=publishing(tmp_path, "http://h:1", 'api_key = "x"'))
