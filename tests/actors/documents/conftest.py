"""A synthetic bench with a simulated camera (small frames) for the documents tests, and
helpers to collect a run's live documents and check them against event-model's schemas."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from event_model import DocumentNames, schema_validators

from actors.acquisition import EXECUTOR_NAME, AbortPlan, CreatePlan, Plan, WatchPlan
from actors.documents import DOCUMENTS_NAME, FindRun, FollowDocuments, replay
from runtime import SetParameter, Source
from runtime.config import BenchConfig, parse_config
from supervisors.bench import Bench, open_bench

BENCH = """
[bench]
name = "docbench"

[storage]
directory = "{directory}"
min_free_mb = 1
ring_slots = 0
flush_interval = 0.1

[scripting]
pool_size = 0

[[device]]
id = "x"
driver = "synthetic_motor"
port = "sim"
options = {{ limits = [-10.0, 10.0], units = "mm" }}

[[device]]
id = "peak"
driver = "synthetic_peak"
port = "sim"
options = {{ motor = "x", centre = 1.0, width = 1.0, amplitude = 10.0, noise = 0.0, units = "V" }}

[[device]]
id = "sine"
driver = "synthetic_signal"
port = "sim"
options = {{ rate = {rate} }}

[[device]]
id = "camera"
driver = "photometrics_prime_bsi"
port = "sim"
{extra}
"""

Documents = list[tuple[str, dict[str, Any]]]


def bench_config(directory: Path, *, rate: float = 0.0, extra: str = "") -> BenchConfig:
    return parse_config(
        BENCH.format(directory=directory, rate=rate, extra=extra), str(directory / "bench.toml")
    )


@contextlib.asynccontextmanager
async def small_bench(config: BenchConfig) -> AsyncIterator[Bench]:
    """The bench, its camera cut to 32 x 48 pixels and 1 ms exposures (fast, small frames)."""
    async with open_bench(config) as bench:
        camera = bench.system.ref("camera")
        await camera.ask(SetParameter("roi", "0,0,48,32", Source.USER))
        await camera.ask(SetParameter("exposure", 1.0, Source.USER))
        yield bench


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async with small_bench(bench_config(tmp_path / "runs")) as running:
        yield running


class Collector:
    """Every live document from the moment it is made (all runs), as the gRPC stream sees
    them: JSON decoded."""

    def __init__(self) -> None:
        self.documents: Documents = []
        self.stopped = trio.Event()
        self.stops = 0

    async def run(self, bench: Bench, *, task_status: trio.TaskStatus[None]) -> None:
        cursor = await bench.system.ref(DOCUMENTS_NAME).ask(FollowDocuments())
        task_status.started()
        for header in cursor.headers:
            self.documents.append((header.name, json.loads(header.body)))
        async with contextlib.aclosing(cursor.log.follow(cursor.since)) as follower:
            async for document in follower:
                self.documents.append((document.name, json.loads(document.body)))
                if document.name == "stop":
                    self.stops += 1
                    self.stopped.set()
                    self.stopped = trio.Event()

    async def wait_stops(self, count: int, timeout: float = 30) -> Documents:
        with trio.fail_after(timeout):
            while self.stops < count:
                await self.stopped.wait()
        return self.documents


def validate(documents: Documents) -> None:
    """Every document against event-model's schema, and the stream's order: start first,
    a descriptor before its events, a resource before its datums, stop last."""
    assert documents and documents[0][0] == "start" and documents[-1][0] == "stop"
    descriptors: set[str] = set()
    resources: set[str] = set()
    for name, document in documents:
        schema_validators[DocumentNames[name]].validate(document)
        if name == "descriptor":
            descriptors.add(document["uid"])
        elif name in ("event", "event_page"):
            assert document["descriptor"] in descriptors
        elif name == "stream_resource":
            resources.add(document["uid"])
        elif name == "stream_datum":
            assert document["stream_resource"] in resources
            assert document["descriptor"] in descriptors


def of(documents: Documents, name: str) -> list[dict[str, Any]]:
    return [document for kind, document in documents if kind == name]


def stream(documents: Documents, stream_name: str) -> dict[str, list[Any]]:
    """The events of one stream, column by column (pages concatenated)."""
    (descriptor,) = [d for d in of(documents, "descriptor") if d["name"] == stream_name]
    columns: dict[str, list[Any]] = {}
    for page in of(documents, "event_page"):
        if page["descriptor"] == descriptor["uid"]:
            for key, values in page["data"].items():
                columns.setdefault(key, []).extend(values)
            columns.setdefault("seq_num", []).extend(page["seq_num"])
            columns.setdefault("time", []).extend(page["time"])
    return columns


def one_run(documents: Documents, uid: str) -> Documents:
    """The documents of one run out of a stream of several."""
    descriptors = {d["uid"] for d in of(documents, "descriptor") if d["run_start"] == uid}
    resources = {d["uid"] for d in of(documents, "stream_resource") if d["run_start"] == uid}
    picked = []
    for name, document in documents:
        if (
            (name == "start" and document["uid"] == uid)
            or (
                name in ("descriptor", "stream_resource", "stop")
                and document.get("run_start") == uid
            )
            or (name in ("event_page", "event") and document["descriptor"] in descriptors)
            or (name == "stream_datum" and document["stream_resource"] in resources)
        ):
            picked.append((name, document))
    return picked


async def run_plan(bench: Bench, plan: Plan, *, abort_after: int = 0) -> str:
    """Run the plan to its end (aborted once ``abort_after`` points are done); its run file."""
    executor = bench.system.ref(EXECUTOR_NAME)
    started = await executor.ask(CreatePlan(plan, "test", start=True))
    subscription = await executor.ask(WatchPlan(started.id))
    aborted = False
    async for sample in subscription:
        if abort_after and not aborted and sample.value.points_done >= abort_after:
            await executor.ask(AbortPlan(started.id, "enough"))
            aborted = True
        if sample.value.state.finished:
            return str(sample.value.run_path)
    raise AssertionError("the executor went away")


async def rebuilt(bench: Bench, reference: str) -> Documents:
    """A run's documents rebuilt from its file (``reference``: a uid or a path)."""
    found = await bench.system.ref(DOCUMENTS_NAME).ask(FindRun(reference))
    return await trio.to_thread.run_sync(
        lambda: list(replay(found.path, origin=found.origin, bench=found.bench))
    )
