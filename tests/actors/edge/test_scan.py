"""Scan service over real loopback gRPC on the simulated bench: plans as messages through the
one validator and executor — a 3-D snake grid, a tune and an adaptive scan, each a run; every
problem at once before anything moves; the events stream and the Arrow table."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import trio
from grpclib.const import Status

from actors.pipeline.nexus_file import read_end_record, read_manifest
from benchd.v1 import common_pb2
from benchd.v1 import plan_pb2 as plan
from benchd.v1 import scan_pb2 as pb
from runtime import SetParameter

from .harness import Client


def snake_grid() -> plan.Plan:
    return plan.Plan(
        grid=plan.GridPath(
            axes=[
                plan.GridAxis(axis="esp300.axis1", start=0, stop=0.002, points=2),
                plan.GridAxis(axis="esp300.axis2", start=0, stop=0.002, points=2, snake=True),
                plan.GridAxis(axis="esp300.axis3", start=0, stop=0.004, points=3, snake=True),
            ]
        ),
        read=["power_meter"],
        name="svc-grid",
        metadata_json=json.dumps({"sample": "B2"}),
    )


async def wait(client: Client, scan_id: str) -> pb.ScanStatus:
    async def follow() -> list[pb.ScanStatus]:
        async with client.scan.StreamScan.open() as stream:
            await stream.send_message(pb.ScanRequest(id=scan_id), end=True)
            return [update async for update in stream]

    with trio.fail_after(60):
        updates = await client.call(follow)
    done = [u.points_done for u in updates]
    assert done == sorted(done)  # progress only goes forward
    return updates[-1]


async def events(client: Client, scan_id: str, since: int = 0) -> list[pb.ScanEvent]:
    async def read() -> list[pb.ScanEvent]:
        async with client.scan.StreamScanEvents.open() as stream:
            await stream.send_message(pb.ScanEventsRequest(id=scan_id, since=since), end=True)
            return [event async for event in stream]

    return await client.call(read)


async def test_a_3d_snake_grid_runs_streams_its_events_and_serves_its_table(client: Client) -> None:
    created = await client.unary(client.scan.CreateScan, pb.CreateScanRequest(plan=snake_grid()))
    assert created.state == pb.SCAN_STATE_CREATED and created.points_total == 12
    assert created.estimate.points == 12 and created.origin == "client local"
    request = pb.ScanRequest(id=created.id)
    started = await client.unary(client.scan.StartScan, request)
    assert started.state in (pb.SCAN_STATE_PENDING, pb.SCAN_STATE_RUNNING)
    final = await wait(client, created.id)
    assert final.state == pb.SCAN_STATE_COMPLETED, final.error
    assert (final.points_done, final.points_total) == (12, 12)
    got = await events(client, created.id)
    kinds = [e.WhichOneof("body") for e in got]
    assert kinds[0] == "started" and kinds[-1] == "ended" and kinds.count("point") == 12
    assert [e.seq for e in got] == list(range(len(got)))
    points = [e.point for e in got if e.WhichOneof("body") == "point"]
    axis3 = [round(p.positions["esp300.axis3"], 4) for p in points]
    assert axis3 == [0, 0.002, 0.004, 0.004, 0.002, 0] * 2  # snakes, never flies back
    assert got[0].started.units["esp300.axis1"] == "mm"
    tail = await events(client, created.id, since=len(got) - 2)
    assert [e.seq for e in tail] == [len(got) - 2, len(got) - 1]
    reply = await client.unary(client.scan.GetScanTable, pb.ScanTableRequest(id=created.id))
    table = pa.ipc.open_stream(reply.arrow_ipc).read_all()
    assert (reply.rows, reply.total, reply.finished) == (12, 12, True)
    assert table.column("point").to_pylist() == list(range(12))
    assert table.column("power_meter").to_pylist() == [p.readings["power_meter"] for p in points]
    page = await client.unary(
        client.scan.GetScanTable, pb.ScanTableRequest(id=created.id, start=10, limit=5)
    )
    assert (page.start, page.rows) == (10, 2)
    record = read_end_record(Path(final.run_path))
    assert (record["scan_points"], record["reason"]) == (12, "scan completed")
    metadata = read_manifest(Path(final.run_path))["metadata"]
    assert metadata["sample"] == "B2" and metadata["plan_id"] == created.id
    assert metadata["scan"]["kind"] == "grid"
    await client.fails(Status.FAILED_PRECONDITION, client.scan.StartScan, request)
    await client.fails(Status.FAILED_PRECONDITION, client.scan.StopScan,
                       pb.StopScanRequest(id=created.id))  # fmt: skip
    listed = await client.unary(client.scan.ListScans, pb.ListScansRequest())
    assert [s.id for s in listed.scans] == [created.id]


async def test_tune_and_adaptive_over_the_simulated_stage(client: Client) -> None:
    stage = client.bench.system.ref("esp300.axis1")
    for name, value in (("velocity", 25.0), ("acceleration", 200.0), ("deceleration", 200.0)):
        await stage.ask(SetParameter(name, value))  # travel is not what this test is about
    tune = plan.Plan(
        tune=plan.TunePath(
            axis="esp300.axis1", start=-0.2, stop=0.8, points=15, detector="peak",
            method=plan.TUNE_METHOD_GAUSSIAN,
        )
    )  # fmt: skip
    created = await client.unary(
        client.scan.CreateScan, pb.CreateScanRequest(plan=tune, start=True)
    )
    final = await wait(client, created.id)
    assert final.state == pb.SCAN_STATE_COMPLETED, final.error
    result = json.loads(final.result_json)
    assert result["found"] and result["centre"] == pytest.approx(0.3, abs=0.02)
    assert final.positions["esp300.axis1"] != pytest.approx(result["centre"])  # the last point
    adaptive = plan.Plan(
        adaptive=plan.AdaptivePath(
            axis="esp300.axis1", start=-0.3, stop=0.9, detector="peak", target_delta=0.25,
            min_step=0.02, max_step=0.4, max_points=200,
        )
    )  # fmt: skip
    created = await client.unary(
        client.scan.CreateScan, pb.CreateScanRequest(plan=adaptive, start=True)
    )
    final = await wait(client, created.id)
    assert final.state == pb.SCAN_STATE_COMPLETED, final.error
    reply = await client.unary(client.scan.GetScanTable, pb.ScanTableRequest(id=created.id))
    xs = pa.ipc.open_stream(reply.arrow_ipc).read_all().column("esp300.axis1").to_pylist()
    assert xs[0] == pytest.approx(-0.3, abs=1e-4) and xs[-1] == pytest.approx(0.9, abs=1e-4)
    assert 8 < len(xs) < 60, xs
    assert read_end_record(Path(final.run_path))["scan_points"] == len(xs)


async def test_a_bad_plan_is_refused_with_every_problem_before_anything_moves(
    client: Client,
) -> None:
    create = client.scan.CreateScan
    message = await client.fails(Status.INVALID_ARGUMENT, create, pb.CreateScanRequest())
    assert message.startswith("plan: required")
    no_path = pb.CreateScanRequest(plan=plan.Plan(read=["power_meter"]))
    message = await client.fails(Status.INVALID_ARGUMENT, create, no_path)
    assert message == "plan: no path; set one of count, line, list, grid, adaptive, tune"
    bad = plan.Plan(
        line=plan.LinePath(
            axes=[
                plan.Span(axis="maitai.wavelength", start=700, stop=2000),
                plan.Span(axis="power_meter", start=0, stop=1),
            ],
            points=5,
        ),
        read=["esp300.axis1", "x" * 100_000],
        settle=-1,
    )
    message = await client.fails(Status.INVALID_ARGUMENT, create, pb.CreateScanRequest(plan=bad))
    # The edge refuses an over-long name before any work, quoting only its start.
    assert message.startswith("plan.read[1]: at most 128 characters, got 'xxx")
    assert "(100000 bytes)" in message and len(message) < 500
    bad.read[1] = "y" * 100
    message = await client.fails(Status.INVALID_ARGUMENT, create, pb.CreateScanRequest(plan=bad))
    assert message.startswith("plan refused, 1 problem: settle: -1.0 is not allowed")
    bad.settle = 0  # the plan's own numbers first, then the bench
    message = await client.fails(Status.INVALID_ARGUMENT, create, pb.CreateScanRequest(plan=bad))
    assert message.startswith("plan refused, 4 problems:")
    assert "maitai.wavelength: 2000 nm is above its travel" in message
    assert "power_meter is not Movable" in message
    assert "esp300.axis1 is not Readable" in message
    assert "yyyy" in message and len(message) < 2000  # the unknown device, quoted short
    check = await client.unary(client.scan.ValidatePlan, bad)
    assert len(check.problems) == 4 and not check.HasField("estimate")
    assert {p.device for p in check.problems} >= {"maitai", "power_meter", "esp300.axis1"}
    fine = await client.unary(client.scan.ValidatePlan, snake_grid())
    assert list(fine.problems) == [] and fine.estimate.points == 12
    listed = await client.unary(client.scan.ListScans, pb.ListScansRequest())
    assert list(listed.scans) == []  # nothing was created
    await client.fails(Status.NOT_FOUND, client.scan.GetScan, pb.ScanRequest(id="p99"))
    message = await client.fails(Status.INVALID_ARGUMENT, client.scan.GetScan,
                                 pb.ScanRequest(id="p" * 10_000))  # fmt: skip
    assert len(message) < 200


async def test_pause_resume_abort_and_a_suspender_through_the_service(client: Client) -> None:
    line = plan.Plan(
        line=plan.LinePath(axes=[plan.Span(axis="esp300.axis2", start=0, stop=0.01)], points=6),
        read=["power_meter"],
        settle=0.05,
        suspenders=[
            plan.Suspender(
                signal="maitai.shutter",
                condition=plan.SUSPENDER_CONDITION_EQUALS,
                threshold=common_pb2.Value(flag=True),
                settle=0.05,
            )
        ],
    )
    created = await client.unary(client.scan.CreateScan, pb.CreateScanRequest(plan=line))
    request = pb.ScanRequest(id=created.id)
    await client.unary(client.scan.StartScan, request)
    paused = await client.unary(client.scan.PauseScan, request)
    assert paused.pause_requested
    with trio.fail_after(30):
        while (await client.unary(client.scan.GetScan, request)).state != pb.SCAN_STATE_PAUSED:
            await trio.sleep(0.05)
    await client.unary(client.scan.ResumeScan, request)
    final = await wait(client, created.id)
    assert final.state == pb.SCAN_STATE_COMPLETED and final.points_done == 6
    assert not final.suspensions  # the shutter stayed closed (equals true never held)
    second = await client.unary(
        client.scan.CreateScan,
        pb.CreateScanRequest(plan=snake_grid(), start=True),
    )
    aborted = await client.unary(
        client.scan.AbortScan, pb.StopScanRequest(id=second.id, reason="test abort")
    )
    final = await wait(client, aborted.id)
    assert final.state == pb.SCAN_STATE_ABORTED and final.error == "test abort"


async def test_a_list_of_scans_stays_small_whatever_their_plans_hold(client: Client) -> None:
    positions = [0.001 * (i % 3) for i in range(20_000)]  # 160 kB of positions
    big = plan.Plan(
        list=plan.ListPath(axes=[plan.AxisPositions(axis="esp300.axis1", positions=positions)]),
        read=["power_meter"],
        metadata_json=json.dumps({"note": "n" * 30_000}),
    )
    created = await client.unary(client.scan.CreateScan, pb.CreateScanRequest(plan=big))
    small = await client.unary(client.scan.CreateScan, pb.CreateScanRequest(plan=snake_grid()))
    assert list(created.plan.list.axes[0].positions) == positions  # the reply has it whole
    listed = await client.unary(client.scan.ListScans, pb.ListScansRequest())
    brief, whole = listed.scans
    assert (brief.id, brief.plan_elided, whole.id, whole.plan_elided) == (
        created.id,
        True,
        small.id,
        False,
    )
    assert brief.plan.WhichOneof("path") == "list" and brief.plan.read == ["power_meter"]
    assert [a.axis for a in brief.plan.list.axes] == ["esp300.axis1"]
    assert not brief.plan.list.axes[0].positions and brief.plan.metadata_json == "{}"
    assert brief.points_total == 20_000 and listed.ByteSize() < 4096
    assert whole.plan == snake_grid()
    again = await client.unary(client.scan.GetScan, pb.ScanRequest(id=created.id))
    assert again.plan == created.plan and not again.plan_elided
    for scan in (created, small):
        await client.unary(client.scan.StopScan, pb.StopScanRequest(id=scan.id))
