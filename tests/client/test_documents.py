"""Bluesky documents over gRPC (benchd.v1.Documents) against ``python -m runtime``: the live
stream of every run (joining a run mid-way gets its start first), one run's stream, the same
run rebuilt from its file, and the errors a client can meet. The documents feed a stock
event-model RunRouter, as a RunEngine's would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from event_model import DocumentNames, RunRouter, schema_validators

from client import Bench, FailedPrecondition, InvalidArgument, NotFound, plans
from tests.actors.documents.consumer import audit

from .conftest import Daemon

Documents = list[tuple[str, dict[str, Any]]]


def until_stop(stream: Any, into: Documents) -> Documents:
    for name, document in stream:
        into.append((name, document))
        if name == "stop":
            return into
    raise AssertionError("the stream ended before the run's stop")


def validate(documents: Documents) -> None:
    """Each document's schema, and what a third-party consumer checks of the whole stream
    (tests/actors/documents/consumer.py): order, uids, times, data keys, num_events."""
    assert documents[0][0] == "start" and documents[-1][0] == "stop"
    for name, document in documents:
        schema_validators[DocumentNames[name]].validate(document)
    audit(documents)


def test_live_documents_of_every_run_one_runs_and_the_same_rebuilt(
    process_daemon: Daemon,
) -> None:
    with Bench.connect(process_daemon.address) as bench:
        bench.record("docs-open", wait=False, metadata={"sample": "grpc"})
        with bench.documents() as live:
            name, start = next(live)  # joined mid-run: the open run's start comes first
            assert name == "start" and start["benchd"]["run_name"] == "docs-open"
            assert start["plan_name"] == "record" and start["sample"] == "grpc"
            bench.stop_run("enough")
            first = until_stop(live, [(name, start)])
            status = bench.scans.run(
                plans.count(3, read=["power_meter"], metadata={"sample": "grpc-scan"})
            )
            second = until_stop(live, [])
        validate(first)
        validate(second)
        assert first[-1][1]["exit_status"] == "success"
        assert first[-1][1]["reason"] == "stopped: enough"
        scan_start = second[0][1]
        assert scan_start["plan_name"] == "count" and scan_start["sample"] == "grpc-scan"
        assert scan_start["benchd"]["path"] == status.run_path
        primary = [d for n, d in second if n == "descriptor" and d["name"] == "primary"]
        assert set(primary[0]["data_keys"]) >= {"point", "power_meter"}
        assert primary[0]["data_keys"]["power_meter"]["units"] == "W"

        # one run's stream, from its start (the daemon still has it), ends with its stop
        again = until_stop(bench.documents(run=Path(status.run_path).stem), [])
        validate(again)
        assert [n for n, _ in again] == [n for n, _ in second]
        # the same run rebuilt from its file: same start, descriptors and stop
        rebuilt = list(bench.run_documents(scan_start["uid"]))
        validate(rebuilt)
        assert rebuilt[0][1] == scan_start
        assert rebuilt[-1][1]["exit_status"] == "success"
        assert sorted(d["uid"] for n, d in rebuilt if n == "descriptor") == sorted(
            d["uid"] for n, d in second if n == "descriptor"
        )

        # a stock event-model consumer takes them as it takes a RunEngine's
        seen: list[str] = []
        router = RunRouter([lambda name, doc: ([lambda n, d: seen.append(n)], [])])
        for name, document in rebuilt:
            router(name, document)
        assert seen[0] == "start" and seen[-1] == "stop" and "event_page" in seen


def test_documents_errors_say_what_is_wrong(process_daemon: Daemon) -> None:
    with Bench.connect(process_daemon.address) as bench:
        with pytest.raises(NotFound, match="no run 'no-such-run'"):
            list(bench.run_documents("no-such-run"))
        with pytest.raises(InvalidArgument, match="not in the run directory"):
            list(bench.run_documents("/etc/passwd"))
        with pytest.raises(InvalidArgument, match="at most 1024 characters"):
            list(bench.run_documents("r" * 2000))
        with pytest.raises(NotFound, match="in the live log"):
            next(bench.documents(run="no-such-run"))
        running = bench.record("docs-running", wait=False)
        try:
            with pytest.raises(FailedPrecondition, match="still recording"):
                list(bench.run_documents(Path(running.path).stem))
        finally:
            bench.stop_run("done")
