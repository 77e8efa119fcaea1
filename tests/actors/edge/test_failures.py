"""A wrong serial port fails its device at once with the port and the OS's reason; the rest of
the bench and the edge come up and serve, and every client surface shows the reason."""

from __future__ import annotations

import time
from pathlib import Path

from grpclib.const import Status

from benchd.v1 import common_pb2, daemon_pb2
from benchd.v1 import hardware_pb2 as hw
from benchd.v1 import health_pb2 as pb
from runtime.config import parse_config
from supervisors.bench import SIMULATED_BENCH

from .harness import open_client


def _bench_with(tmp_path: Path) -> tuple[str, Path, Path]:
    missing = tmp_path / "ttyUSB9"
    not_a_tty = tmp_path / "notes.txt"
    not_a_tty.write_text("this is not a serial port")
    text = SIMULATED_BENCH.replace(
        'id = "esp300"\ndriver = "newport_esp300"\nport = "sim"',
        f'id = "esp300"\ndriver = "newport_esp300"\nport = "{missing}"',
    ).replace(
        'id = "power_meter"\ndriver = "newport_1830c"\nport = "sim"',
        f'id = "power_meter"\ndriver = "newport_1830c"\nport = "{not_a_tty}"',
    )
    assert str(missing) in text and str(not_a_tty) in text
    return text, missing, not_a_tty


async def test_a_wrong_port_fails_its_device_fast_and_says_why(tmp_path: Path) -> None:
    text, missing, not_a_tty = _bench_with(tmp_path)
    config = parse_config(text, "<test>")
    began, began_at = time.monotonic(), time.time()
    async with open_client(tmp_path, config=config, health_period=0.05) as client:
        # it took 30 s (three axes each waiting 10 s on a controller that never started); a
        # generous bound for busy cores, the failure itself is timed below
        assert time.monotonic() - began < 15.0
        info = await client.unary(client.daemon.GetDaemonInfo, daemon_pb2.DaemonInfoRequest())
        assert info.uptime_s >= 0  # the edge is up and serving

        devices = await client.unary(client.hardware.ListDevices, hw.ListDevicesRequest())
        by_name = {d.name: d for d in devices.devices}
        esp300, meter = by_name["esp300"], by_name["power_meter"]
        assert esp300.state == common_pb2.DEVICE_STATE_DEGRADED
        assert esp300.last_failure.type.endswith("PortUnavailable")
        assert f"cannot open serial port {missing}: No such file or directory (ENOENT)" in (
            esp300.last_failure.message
        )
        assert 0.0 <= esp300.last_failure.when - began_at < 10.0  # its first attempt failed
        assert meter.state == common_pb2.DEVICE_STATE_DEGRADED
        assert f"cannot open serial port {not_a_tty}: Inappropriate ioctl for device (ENOTTY)" in (
            meter.last_failure.message
        )
        assert "it is not a serial port" in meter.last_failure.message
        axis = by_name["esp300.axis1"]
        assert axis.state == common_pb2.DEVICE_STATE_DEGRADED
        assert axis.last_failure.type == "NotStarted"
        assert "waiting for esp300, which failed to start" in axis.last_failure.message
        assert str(missing) in axis.last_failure.message
        assert by_name["ell14.2"].state == common_pb2.DEVICE_STATE_READY  # the others serve
        assert by_name["maitai"].state == common_pb2.DEVICE_STATE_READY

        single = await client.unary(client.hardware.GetDevice, hw.DeviceRequest(device="esp300"))
        assert single.last_failure.message == esp300.last_failure.message
        refused = await client.fails(
            Status.UNAVAILABLE,
            client.hardware.MoveAbsolute,
            hw.MoveAbsoluteRequest(device="esp300.axis1", position=1.0),
        )
        assert "waiting for esp300" in refused and "ENOENT" in refused

        alerts = await client.stream(client.health.StreamAlerts, pb.StreamAlertsRequest(), 2)
        degraded = {a.subject: a.message for a in alerts if a.kind == pb.Alert.KIND_DEVICE_DEGRADED}
        assert any("ENOENT" in m or "ENOTTY" in m for m in degraded.values()), degraded
