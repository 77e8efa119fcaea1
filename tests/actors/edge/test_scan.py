"""Scan service over real loopback gRPC: a definition is validated at once; a created scan
runs through the script runner, pauses, streams its progress and lands in its run file."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import trio
from grpclib.const import Status

from actors.pipeline.nexus_file import read_end_record, read_manifest
from benchd.v1 import scan_pb2 as pb

from .harness import Client


def line(**changes: object) -> pb.ScanDefinition:
    definition = pb.ScanDefinition(
        kind=pb.SCAN_KIND_LINE,
        axes=[pb.ScanAxis(device="esp300.axis2", start=0, stop=0.6, points=4)],
        read=["power_meter"],
        name="svc-line",
        metadata_json=json.dumps({"sample": "B2"}),
    )
    for key, value in changes.items():
        setattr(definition, key, value)
    return definition


async def test_a_bad_definition_is_refused_naming_the_field(client: Client) -> None:
    create = client.scan.CreateScan
    message = await client.fails(Status.INVALID_ARGUMENT, create, pb.ScanDefinition())
    assert message.startswith("kind must be SCAN_KIND_LINE")
    bad_axis = line()
    bad_axis.axes[0].device = "power_meter"
    message = await client.fails(Status.INVALID_ARGUMENT, create, bad_axis)
    assert "axes[0].device: 'power_meter' is not a Movable device" in message
    assert "esp300.axis1" in message
    bad_points = line()
    bad_points.axes[0].points = 0
    message = await client.fails(Status.INVALID_ARGUMENT, create, bad_points)
    assert message == "axes[0].points must be 1 … 1000000, got 0"
    message = await client.fails(Status.INVALID_ARGUMENT, create, line(dwell=-1.0))
    assert message.startswith("dwell must be a number 0 … 3600")
    message = await client.fails(Status.INVALID_ARGUMENT, create, line(snake=True))
    assert message == "snake: only for SCAN_KIND_GRID"
    message = await client.fails(Status.INVALID_ARGUMENT, create, line(name="a/b"))
    assert message.startswith("name 'a/b' is not allowed")
    message = await client.fails(Status.INVALID_ARGUMENT, create, line(metadata_json="[1]"))
    assert "metadata_json must be a JSON object" in message
    grid = pb.ScanDefinition(kind=pb.SCAN_KIND_GRID, axes=line().axes)
    message = await client.fails(Status.INVALID_ARGUMENT, create, grid)
    assert message.startswith("axes: a grid scan has 2 axes")
    await client.fails(Status.NOT_FOUND, client.scan.GetScan, pb.ScanRequest(id="s99"))
    listed = await client.unary(client.scan.ListScans, pb.ListScansRequest())
    assert list(listed.scans) == []


async def test_create_start_pause_stream_until_completed(client: Client) -> None:
    created = await client.unary(client.scan.CreateScan, line())
    assert created.state == pb.SCAN_STATE_CREATED and created.points_total == 4
    request = pb.ScanRequest(id=created.id)
    await client.fails(Status.FAILED_PRECONDITION, client.scan.PauseScan, request)
    started = await client.unary(client.scan.StartScan, request)
    assert started.execution_id and started.state == pb.SCAN_STATE_PENDING
    paused = await client.unary(client.scan.PauseScan, request)
    assert paused.pause_requested
    with trio.fail_after(10):
        while (await client.unary(client.scan.GetScan, request)).state != pb.SCAN_STATE_PAUSED:
            await trio.sleep(0.05)
    await client.unary(client.scan.ResumeScan, request)

    async def follow() -> list[pb.ScanStatus]:
        async with client.scan.StreamScan.open() as stream:
            await stream.send_message(request, end=True)
            return [update async for update in stream]

    updates = await client.call(follow)
    final = updates[-1]
    assert final.state == pb.SCAN_STATE_COMPLETED, final
    assert (final.points_done, final.points_total) == (4, 4)
    assert final.positions["esp300.axis2"] == pytest.approx(0.6, abs=1e-3)
    done = [u.points_done for u in updates]
    assert done == sorted(done)  # progress only goes forward
    record = read_end_record(Path(final.run_path))
    assert (record["scan_points"], record["reason"]) == (4, "scan completed")
    metadata = read_manifest(Path(final.run_path))["metadata"]
    assert metadata["sample"] == "B2" and metadata["scan_id"] == created.id
    assert metadata["scan"]["kind"] == "line"
    with h5py.File(final.run_path, "r") as f:
        assert list(f["entry/scan/point/value"]) == [0, 1, 2, 3]
    await client.fails(Status.FAILED_PRECONDITION, client.scan.StartScan, request)
    await client.fails(Status.FAILED_PRECONDITION, client.scan.StopScan, pb.StopScanRequest(
        id=created.id))  # fmt: skip
    second = await client.unary(
        client.scan.CreateScan,
        pb.ScanDefinition(
            kind=pb.SCAN_KIND_GRID, snake=True, name="svc-grid", read=["power_meter"],
            axes=[pb.ScanAxis(device="esp300.axis2", start=0, stop=0.002, points=2),
                  pb.ScanAxis(device="esp300.axis3", start=0, stop=0.004, points=3)],
        ),
    )  # fmt: skip
    assert second.points_total == 6
    await client.unary(client.scan.StartScan, pb.ScanRequest(id=second.id))
    aborted = await client.unary(
        client.scan.AbortScan, pb.StopScanRequest(id=second.id, reason="test abort")
    )
    with trio.fail_after(10):
        while aborted.state != pb.SCAN_STATE_ABORTED:
            await trio.sleep(0.05)
            aborted = await client.unary(client.scan.GetScan, pb.ScanRequest(id=second.id))
    assert aborted.error == "test abort"
    listed = await client.unary(client.scan.ListScans, pb.ListScansRequest())
    assert [(s.id, s.state) for s in listed.scans] == [
        (created.id, pb.SCAN_STATE_COMPLETED),
        (second.id, pb.SCAN_STATE_ABORTED),
    ]
