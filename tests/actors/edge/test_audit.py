"""The audit trail: one record per mutating request, from the guard, none for reads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import trio
from grpclib.const import Status

from actors.edge.audit import AuditEntry, AuditTrail
from actors.pipeline.nexus_read import read_audit
from benchd.v1 import common_pb2, daemon_pb2, plan_pb2, preset_pb2, scan_pb2, storage_pb2
from benchd.v1 import estop_pb2 as estop
from benchd.v1 import hardware_pb2 as hw
from benchd.v1 import health_pb2 as health
from runtime.config import EdgeConfig
from runtime.logs import JsonFormatter

from .harness import Client, open_client
from .test_auth import OBSERVER, OPERATOR, bearer, tokens_file

AUDIT = "benchd.audit"


def audits(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """The audit records captured so far, as their structured data."""
    return [r.audit for r in caplog.records if r.name == AUDIT]  # type: ignore[attr-defined]


async def test_each_mutating_call_leaves_one_record(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    hardware = client.hardware
    await client.unary(
        hardware.MoveAbsolute,
        hw.MoveAbsoluteRequest(device="esp300.axis1", position=0.5, wait=True),
    )
    await client.fails(
        Status.INVALID_ARGUMENT,
        hardware.SetParameter,
        hw.SetParameterRequest(
            device="esp300.axis1", name="velocity", value=common_pb2.Value(number=-1.0)
        ),
    )
    await client.unary(client.estop.EmergencyStop, estop.EmergencyStopRequest(reason="door open"))
    await client.unary(client.estop.ResetEmergencyStop, estop.ResetEmergencyStopRequest())
    await client.unary(
        client.storage.StartRun, storage_pb2.StartRunRequest(name="audited", readings_only=True)
    )
    await client.unary(client.storage.StopRun, storage_pb2.StopRunRequest(reason="done"))
    scan = await client.unary(
        client.scan.CreateScan,
        scan_pb2.CreateScanRequest(
            plan=plan_pb2.Plan(count=plan_pb2.CountPath(num=2), read=["power_meter"])
        ),
    )
    await client.unary(client.preset.SavePreset, preset_pb2.SavePresetRequest(name="p1"))
    await client.unary(client.preset.DeletePreset, preset_pb2.PresetRequest(name="p1"))

    records = audits(caplog)
    methods = [r["method"] for r in records]
    assert methods == [
        "Hardware/MoveAbsolute",
        "Hardware/SetParameter",
        "EmergencyStop/EmergencyStop",
        "EmergencyStop/ResetEmergencyStop",
        "Storage/StartRun",
        "Storage/StopRun",
        "Scan/CreateScan",
        "Preset/SavePreset",
        "Preset/DeletePreset",
    ]  # one record each, in order
    move, refused, stop = records[0], records[1], records[2]
    assert move["who"] == "local" and move["role"] == "operator"
    assert str(move["peer"]).startswith("127.0.0.1:")
    assert move["target"] == "esp300.axis1"
    assert move["arguments"] == {"position": "0.5", "wait": "True"}
    assert move["result"] == "ok" and float(move["duration_ms"]) > 0  # type: ignore[arg-type]
    assert refused["target"] == "esp300.axis1"
    assert refused["arguments"] == {"name": "'velocity'", "value": "{number=-1.0}"}
    assert str(refused["result"]).startswith("INVALID_ARGUMENT: ")
    assert stop["arguments"] == {"reason": "'door open'"} and stop["result"] == "ok"
    assert records[4]["target"] == "audited"
    assert records[6]["target"] == scan.id  # a new scan is named by the reply
    assert records[7]["target"] == "p1"
    line = next(r for r in caplog.records if r.name == AUDIT).getMessage()
    assert line.startswith("local (operator) from 127.0.0.1:")
    assert "Hardware/MoveAbsolute esp300.axis1 position=0.5 wait=True -> ok (" in line


async def test_reads_are_not_audited(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    device = hw.DeviceRequest(device="esp300.axis1")
    await client.unary(client.hardware.GetPosition, device)
    await client.unary(client.hardware.ListDevices, hw.ListDevicesRequest())
    await client.unary(
        client.hardware.GetParameter, hw.ParameterRequest(device="maitai", name="wavelength")
    )
    await client.unary(client.health.GetSystemHealth, health.SystemHealthRequest())
    await client.unary(client.daemon.GetDaemonInfo, daemon_pb2.DaemonInfoRequest())
    await client.unary(client.estop.GetEmergencyStopState, estop.EmergencyStopStateRequest())
    await client.unary(client.storage.ListRuns, storage_pb2.ListRunsRequest())
    assert audits(caplog) == []


async def test_refused_callers_are_audited_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    edge = EdgeConfig(port=0, tokens_file=tokens_file(tmp_path), presets_dir=tmp_path)
    move = hw.MoveAbsoluteRequest(device="esp300.axis2", position=1.0, wait=False)
    async with open_client(tmp_path, edge=edge) as client:
        await client.fails(
            Status.PERMISSION_DENIED, client.hardware.MoveAbsolute, move, metadata=bearer(OBSERVER)
        )
        await client.fails(Status.UNAUTHENTICATED, client.hardware.MoveAbsolute, move)
        await client.unary(client.hardware.MoveAbsolute, move, metadata=bearer(OPERATOR))
        stop = hw.DeviceRequest(device="esp300.axis2")
        await client.unary(client.hardware.StopMotion, stop, metadata=bearer(OBSERVER))
    denied, unknown, moved, stopped = audits(caplog)
    assert (denied["who"], denied["role"]) == ("gui", "observer")
    assert str(denied["result"]).startswith("PERMISSION_DENIED: MoveAbsolute needs the operator")
    assert denied["arguments"] == {}  # refused before its body was read
    assert (unknown["who"], unknown["role"]) == ("", "")
    assert str(unknown["result"]).startswith("UNAUTHENTICATED: ")
    assert (moved["who"], moved["role"], moved["result"]) == ("alice", "operator", "ok")
    assert moved["arguments"] == {"position": "1.0"}
    assert (stopped["who"], stopped["method"]) == ("gui", "Hardware/StopMotion")  # stops: anyone


async def test_a_clients_long_values_are_quoted_short(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    await client.unary(
        client.storage.StartRun,
        storage_pb2.StartRunRequest(name="long", readings_only=True, metadata={"note": "x" * 4000}),
    )
    await client.unary(client.storage.StopRun, storage_pb2.StopRunRequest())
    start = audits(caplog)[0]
    arguments = start["arguments"]
    assert isinstance(arguments, dict)
    assert all(len(value) <= 80 for value in arguments.values())
    assert "4000 characters" in arguments["metadata"]


def test_the_json_log_carries_the_record_as_an_object() -> None:
    entry = AuditEntry(
        when=1.0e9,
        who="alice",
        role="operator",
        peer="10.0.0.7:51234",
        method="Hardware/MoveAbsolute",
        target="esp300.axis1",
        arguments={"position": "12.5"},
        result="ok",
        duration_ms=812.0,
    )
    record = logging.LogRecord(AUDIT, logging.INFO, __file__, 1, "%s", (entry.line(),), None)
    record.audit = entry.as_dict()
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == AUDIT and line["audit"]["who"] == "alice"
    assert line["audit"]["result"] == "ok" and line["audit"]["duration_ms"] == 812.0
    assert line["message"] == (
        "alice (operator) from 10.0.0.7:51234: Hardware/MoveAbsolute esp300.axis1"
        " position=12.5 -> ok (812 ms)"
    )


def test_sinks_get_every_entry_and_a_failing_sink_fails_nothing(caplog) -> None:
    trail = AuditTrail()
    got: list[AuditEntry] = []
    remove = trail.add_sink(got.append)

    def broken(entry: AuditEntry) -> None:
        raise RuntimeError("the run file is gone")

    trail.add_sink(broken)
    entry = AuditEntry(1.0, "alice", "operator", "", "Storage/StartRun", "r1")
    trail.record(entry)
    assert got == [entry] and trail.recorded == 1
    assert "an audit sink failed on Storage/StartRun" in caplog.text
    remove()
    trail.record(entry)
    assert got == [entry]


async def test_the_run_being_recorded_keeps_the_entries_made_while_it_records(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The same entries, in the run file's ``/entry/audit``: who, role, what, result."""
    caplog.set_level(logging.INFO, logger=AUDIT)
    await client.unary(  # before the run: in the log only
        client.hardware.SetParameter,
        hw.SetParameterRequest(
            device="esp300.axis1", name="velocity", value=common_pb2.Value(number=2.0)
        ),
    )
    run = await client.unary(
        client.storage.StartRun, storage_pb2.StartRunRequest(name="watched", readings_only=True)
    )
    await client.unary(
        client.hardware.SetParameter,
        hw.SetParameterRequest(
            device="esp300.axis1", name="velocity", value=common_pb2.Value(number=2.5)
        ),
    )
    await client.fails(
        Status.INVALID_ARGUMENT,
        client.hardware.SetParameter,
        hw.SetParameterRequest(
            device="esp300.axis1", name="velocity", value=common_pb2.Value(number=-1.0)
        ),
    )
    # each entry is recorded (log and sinks) once its call has ended; wait for the last
    with trio.fail_after(10):
        while len(audits(caplog)) < 4:
            await trio.sleep(0.01)
    await client.unary(client.storage.StopRun, storage_pb2.StopRunRequest(reason="done"))
    with trio.fail_after(30):
        while (
            await client.unary(client.storage.GetRunStatus, storage_pb2.RunStatusRequest())
        ).state in (storage_pb2.RUN_STATE_RECORDING, storage_pb2.RUN_STATE_FINISHING):
            await trio.sleep(0.05)
    entries = read_audit(Path(run.path))
    whats = [e.what for e in entries]
    assert whats[0].startswith("Storage/StartRun watched")  # the request that started it
    assert whats[1:] == [
        "Hardware/SetParameter esp300.axis1 name='velocity' value={number=2.5}",
        "Hardware/SetParameter esp300.axis1 name='velocity' value={number=-1.0}",
    ]  # not the set before the run, nor the StopRun (answered after the file closed)
    assert all(e.who == "local" and e.role == "operator" for e in entries)
    assert entries[1].result == "ok"
    assert entries[2].result.startswith("INVALID_ARGUMENT: ")
    assert entries[0].time <= entries[1].time <= entries[2].time
