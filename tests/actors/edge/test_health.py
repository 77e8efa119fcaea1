"""Health service, grpc.health.v1 and reflection; a degraded device shows everywhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import trio
from grpclib.const import Status
from grpclib.health.v1 import health_pb2 as std_health
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.reflection.v1alpha import reflection_pb2
from grpclib.reflection.v1alpha.reflection_grpc import ServerReflectionStub

from benchd.v1 import common_pb2
from benchd.v1 import hardware_pb2 as hw
from benchd.v1 import health_pb2 as pb
from runtime.config import EdgeConfig, parse_config
from supervisors.bench import SIMULATED_BENCH

from .harness import Client, open_client


async def test_system_and_actor_health(client: Client) -> None:
    system = await client.unary(client.health.GetSystemHealth, pb.SystemHealthRequest())
    assert system.memory_total_bytes > system.memory_used_bytes > 0
    assert system.disk_total_bytes >= system.disk_free_bytes > 0
    assert system.actors == system.actors_ready == 17 and system.uptime_s > 0  # documents too
    await trio.sleep(0.3)  # one heartbeat round
    actors = await client.unary(client.health.ListActors, pb.ListActorsRequest())
    by_name = {a.name: a for a in actors.actors}
    axis = by_name["esp300.axis1"]
    assert axis.state == common_pb2.DEVICE_STATE_READY and axis.detail == "running"
    assert axis.responsive and axis.heartbeat_ms > 0 and axis.handled > 0
    assert axis.mailbox_capacity == 1024 and axis.restarts == 0


async def test_standard_health_and_reflection(client: Client) -> None:
    async def check() -> int:
        reply = await HealthStub(client.channel).Check(std_health.HealthCheckRequest())
        return int(reply.status)

    await trio.sleep(0.3)
    assert await client.call(check) == std_health.HealthCheckResponse.SERVING

    async def services() -> list[str]:
        stub = ServerReflectionStub(client.channel)
        async with stub.ServerReflectionInfo.open() as stream:
            await stream.send_message(
                reflection_pb2.ServerReflectionRequest(list_services=""), end=True
            )
            reply = await stream.recv_message()
        assert reply is not None
        return [s.name for s in reply.list_services_response.service]

    names = await client.call(services)
    assert {"benchd.v1.Hardware", "benchd.v1.EmergencyStop", "benchd.v1.Preset"} <= set(names)
    assert "grpc.health.v1.Health" in names


async def test_a_degraded_device_is_unavailable_alerted_and_not_serving(tmp_path: Path) -> None:
    text = SIMULATED_BENCH.replace(
        'id = "power_meter"\ndriver = "newport_1830c"\nport = "sim"',
        'id = "power_meter"\ndriver = "newport_1830c"\nport = "/dev/benchd-unplugged"',
    )
    config = parse_config(text, "<test>")
    async with open_client(tmp_path, config=config, health_period=0.05) as client:
        message = await client.fails(
            Status.UNAVAILABLE,
            client.hardware.ReadValue,
            hw.DeviceRequest(device="power_meter"),
        )
        assert "device 'power_meter' is degraded" in message and "last failure" in message

        alerts = await client.stream(client.health.StreamAlerts, pb.StreamAlertsRequest(), 1)
        assert alerts[0].kind == pb.Alert.KIND_DEVICE_DEGRADED
        assert alerts[0].subject == "power_meter" and alerts[0].active

        async def check() -> int:
            reply = await HealthStub(client.channel).Check(std_health.HealthCheckRequest())
            return int(reply.status)

        assert await client.call(check) == std_health.HealthCheckResponse.NOT_SERVING
        device = await client.unary(
            client.hardware.GetDevice, hw.DeviceRequest(device="power_meter")
        )
        assert device.state == common_pb2.DEVICE_STATE_DEGRADED
        assert "benchd-unplugged" in device.last_failure.message


async def test_disk_low_and_unresponsive_actor_alerts_are_raised_and_cleared(
    tmp_path: Path,
) -> None:
    """Reads the alert stream until the axis's alert is cleared: on busy cores other actors may
    be slow to answer a Ping too, and their alerts may come first (they are not this test's)."""
    edge = EdgeConfig(port=0, presets_dir=tmp_path, disk_path=tmp_path, disk_free_min_gb=1e12)
    async with open_client(tmp_path, edge=edge, health_period=0.05, ping_timeout=0.2) as client:

        def axis(alerts: list[pb.Alert], active: bool) -> list[int]:
            """Where the axis's unresponsive alert was raised (active) or cleared."""
            return [
                index
                for index, a in enumerate(alerts)
                if a.kind == pb.Alert.KIND_ACTOR_UNRESPONSIVE
                and a.subject == "esp300.axis1"
                and a.active == active
            ]

        def cleared(alerts: list[pb.Alert]) -> bool:
            raised = axis(alerts, True)
            return bool(raised) and any(index > raised[0] for index in axis(alerts, False))

        async def read() -> list[pb.Alert]:
            alerts: list[pb.Alert] = []
            move = None
            async with client.health.StreamAlerts.open() as stream:
                await stream.send_message(pb.StreamAlertsRequest(), end=True)
                while not cleared(alerts):
                    alerts.append(await stream.recv_message())
                    if move is None:  # a 1 s move holds the axis's mailbox: Pings wait
                        move = asyncio.ensure_future(
                            client.hardware.MoveAbsolute(
                                hw.MoveAbsoluteRequest(
                                    device="esp300.axis1", position=5.0, wait=True
                                )
                            )
                        )
                await stream.cancel()
            assert move is not None
            await move
            return alerts

        with trio.fail_after(60):  # generous: the move takes about a second
            alerts = await client.call(read)
        disk = [a for a in alerts if a.kind == pb.Alert.KIND_DISK_LOW]
        assert disk[0].active
        assert "GB free on" in disk[0].message and "below 1e+12 GB" in disk[0].message
        unresponsive = alerts[axis(alerts, True)[0]]
        assert "did not answer a Ping within 0.2 s" in unresponsive.message
        assert cleared(alerts)  # once the move is over
