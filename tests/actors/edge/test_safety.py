"""The e-stop latch is visible (health, alerts, daemon info, e-stop state) and refuses moves,
settings and recordings with the same words everywhere, until the reset."""

from __future__ import annotations

import time

from grpclib.const import Status

from benchd.v1 import common_pb2, daemon_pb2, health_pb2, plan_pb2, scan_pb2, storage_pb2
from benchd.v1 import estop_pb2 as pb
from benchd.v1 import hardware_pb2 as hw

from .harness import Client

WHO = "local (operator) from 127.0.0.1"


async def _latch(client: Client, reason: str) -> float:
    before = time.time()
    await client.unary(client.estop.EmergencyStop, pb.EmergencyStopRequest(reason=reason))
    return before


def _check(latch: common_pb2.EmergencyStopLatch, reason: str, before: float) -> None:
    assert latch.latched and latch.reason == reason and latch.by == WHO
    assert before - 1.0 <= latch.since <= time.time()
    assert "esp300.axis1" in latch.actors and "camera" in latch.actors
    assert latch.summary.startswith("e-stop latched since ")
    assert latch.summary.endswith(f" by {WHO} ({reason})")


async def test_the_latch_shows_in_health_info_and_the_estop_state(client: Client) -> None:
    health = await client.unary(client.health.GetSystemHealth, health_pb2.SystemHealthRequest())
    info = await client.unary(client.daemon.GetDaemonInfo, daemon_pb2.DaemonInfoRequest())
    assert not health.estop.latched and not info.estop.latched and not info.estop.summary

    before = await _latch(client, "beam dump open")
    health = await client.unary(client.health.GetSystemHealth, health_pb2.SystemHealthRequest())
    _check(health.estop, "beam dump open", before)
    info = await client.unary(client.daemon.GetDaemonInfo, daemon_pb2.DaemonInfoRequest())
    _check(info.estop, "beam dump open", before)
    state = await client.unary(client.estop.GetEmergencyStopState, pb.EmergencyStopStateRequest())
    assert state.latched and state.by == WHO and state.since == info.estop.since
    assert state.summary == info.estop.summary

    await client.unary(client.estop.ResetEmergencyStop, pb.ResetEmergencyStopRequest())
    health = await client.unary(client.health.GetSystemHealth, health_pb2.SystemHealthRequest())
    info = await client.unary(client.daemon.GetDaemonInfo, daemon_pb2.DaemonInfoRequest())
    assert not health.estop.latched and not info.estop.latched


async def test_the_latch_is_an_alert_raised_then_cleared_by_the_reset(client: Client) -> None:
    latched = health_pb2.Alert.KIND_ESTOP_LATCHED

    async def read() -> list[health_pb2.Alert]:
        seen: list[health_pb2.Alert] = []
        async with client.health.StreamAlerts.open() as stream:
            await stream.send_message(health_pb2.StreamAlertsRequest(), end=True)
            await client.estop.EmergencyStop(pb.EmergencyStopRequest(reason="door open"))
            while not any(a.kind == latched and a.active for a in seen):
                seen.append(await stream.recv_message())
            await client.estop.ResetEmergencyStop(pb.ResetEmergencyStopRequest())
            while not any(a.kind == latched and not a.active for a in seen):
                seen.append(await stream.recv_message())
            await stream.cancel()
        return seen

    seen = [a for a in await client.call(read) if a.kind == latched]
    raised, cleared = seen[0], seen[-1]
    assert raised.active and raised.subject == "estop"
    assert raised.message.startswith("e-stop latched since ")
    assert f"by {WHO} (door open)" in raised.message
    assert "refused until the emergency stop is reset" in raised.message
    assert not cleared.active and cleared.message == "cleared"


async def test_moves_sets_and_records_are_refused_while_latched(client: Client) -> None:
    await _latch(client, "beam dump open")
    refusals = {
        "MoveAbsolute": (
            client.hardware.MoveAbsolute,
            hw.MoveAbsoluteRequest(device="esp300.axis1", position=1.0, wait=True),
        ),
        "esp300.axis1.velocity=3.0": (
            client.hardware.SetParameter,
            hw.SetParameterRequest(
                device="esp300.axis1", name="velocity", value=common_pb2.Value(number=3.0)
            ),
        ),
        "StartRun": (
            client.storage.StartRun,
            storage_pb2.StartRunRequest(name="latched-run", duration_s=1.0),
        ),
        "StartAcquisition": (
            client.hardware.StartStream,
            hw.StartStreamRequest(device="camera", frames=3),
        ),
        "starting a plan": (
            client.scan.CreateScan,
            scan_pb2.CreateScanRequest(
                plan=plan_pb2.Plan(count=plan_pb2.CountPath(num=2), read=["power_meter"]),
                start=True,
            ),
        ),
    }
    for what, (method, request) in refusals.items():
        message = await client.fails(Status.FAILED_PRECONDITION, method, request)
        assert f"{what} is refused: e-stop latched since " in message, message
        assert f"by {WHO} (beam dump open); reset the emergency stop first" in message
    runs = await client.unary(client.storage.ListRuns, storage_pb2.ListRunsRequest())
    assert "latched-run" not in [r.name for r in runs.runs]  # nothing was half-started

    # reads still answer, and the reset lets everything through again
    position = await client.unary(
        client.hardware.GetPosition, hw.DeviceRequest(device="esp300.axis1")
    )
    assert position.device == "esp300.axis1"
    await client.unary(client.estop.ResetEmergencyStop, pb.ResetEmergencyStopRequest())
    refusals["StartRun"] = (
        client.storage.StartRun,
        storage_pb2.StartRunRequest(name="after-reset", readings_only=True),
    )
    for method, request in refusals.values():
        await client.unary(method, request)
    await client.unary(client.hardware.StopStream, hw.DeviceRequest(device="camera"))
    stopped = await client.unary(client.storage.StopRun, storage_pb2.StopRunRequest())
    assert stopped.name == "after-reset"


async def test_the_client_library_carries_the_latch(client: Client) -> None:
    """What the daemon says of the latch reaches a client's types (the GUI and benchctl show
    them): who, since when, the summary — in the state, in info, in health and as an alert."""
    from client._types import Alert, DaemonInfo, EmergencyStopState, SystemHealth

    await _latch(client, "beam dump open")
    try:
        state = EmergencyStopState.from_pb(
            await client.unary(client.estop.GetEmergencyStopState, pb.EmergencyStopStateRequest())
        )
        info = DaemonInfo.from_pb(
            await client.unary(client.daemon.GetDaemonInfo, daemon_pb2.DaemonInfoRequest())
        )
        health = SystemHealth.from_pb(
            await client.unary(client.health.GetSystemHealth, health_pb2.SystemHealthRequest())
        )
        assert state.latched and state.by == WHO and state.since is not None
        assert info.estop is not None and health.estop is not None
        for latch in (info.estop, health.estop):
            assert latch.latched and latch.by == WHO and latch.since == state.since
            assert latch.reason == "beam dump open" and latch.summary == state.summary
        alert = health_pb2.Alert(kind=health_pb2.Alert.KIND_ESTOP_LATCHED, active=True)
        assert Alert.from_pb(alert).kind == "estop_latched"
    finally:
        await client.unary(client.estop.ResetEmergencyStop, pb.ResetEmergencyStopRequest())
