"""Operations over gRPC: home (with progress), motor on, zero; stop stays StopMotion. Role
checks and the e-stop latch apply as to any motion."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpclib.const import Status

from benchd.v1 import estop_pb2
from benchd.v1 import hardware_pb2 as pb
from runtime.config import EdgeConfig

from .harness import Client, open_client

HOMEABLE = "ell14.2, ell14.3, ell14.8, esp300.axis1, esp300.axis2, esp300.axis3"


async def test_devices_list_their_operations(client: Client) -> None:
    reply = await client.unary(client.hardware.ListDevices, pb.ListDevicesRequest())
    operations = {d.name: list(d.operations) for d in reply.devices}
    assert operations["esp300.axis1"] == ["home", "stop", "motor_on"]
    assert operations["ell14.2"] == ["home", "stop"]
    assert operations["power_meter"] == ["zero"]
    assert operations["maitai"] == []
    axis = next(d for d in reply.devices if d.name == "esp300.axis1")
    assert (axis.position_limits.low, axis.position_limits.high) == (-50.0, 50.0)  # SL/SR


async def test_home_streams_progress_then_done(client: Client) -> None:
    hw = client.hardware
    await client.unary(
        hw.MoveAbsolute, pb.MoveAbsoluteRequest(device="esp300.axis1", position=2.0, wait=True)
    )
    messages = await client.call(lambda: _read_all(hw.Home, pb.HomeRequest(device="esp300.axis1")))
    assert messages[-1].done and messages[-1].position == pytest.approx(0.0, abs=1e-3)
    assert messages[-1].units == "mm" and not any(m.done for m in messages[:-1])
    moving = [m.position for m in messages[:-1] if m.position == m.position]  # not NaN
    assert moving and min(moving) >= 0.0 and max(moving) <= 2.0 + 1e-6
    assert [m.elapsed_s for m in messages] == sorted(m.elapsed_s for m in messages)
    mount = await client.call(lambda: _read_all(hw.Home, pb.HomeRequest(device="ell14.3")))
    assert mount[-1].done and mount[-1].position == pytest.approx(0.0) and mount[-1].units == "deg"


async def test_operations_a_device_lacks_are_unimplemented_naming_who_has_them(
    client: Client,
) -> None:
    hw = client.hardware
    message = await client.call(
        lambda: _stream_status(hw.Home, pb.HomeRequest(device="power_meter"))
    )
    assert message == f"UNIMPLEMENTED: 'power_meter' cannot home; devices that can: {HOMEABLE}"
    message = await client.fails(
        Status.UNIMPLEMENTED, hw.MotorOn, pb.DeviceRequest(device="ell14.2")
    )
    assert message.endswith("devices that can: esp300.axis1, esp300.axis2, esp300.axis3")
    message = await client.fails(Status.UNIMPLEMENTED, hw.Zero, pb.ZeroRequest(device="maitai"))
    assert message == "'maitai' cannot zero; devices that can: power_meter"
    await client.fails(Status.NOT_FOUND, hw.Zero, pb.ZeroRequest(device="nope"))


async def test_motor_on_after_a_motor_off_and_the_latch(client: Client) -> None:
    hw = client.hardware
    simulator = client.bench.simulators["esp300"]
    simulator.axes[2].motor_on = False  # a fault, or a power-up, left it off
    move = pb.MoveAbsoluteRequest(device="esp300.axis2", position=1.0, wait=True)
    message = await client.fails(Status.FAILED_PRECONDITION, hw.MoveAbsolute, move)
    assert "cannot move: the motor is off" in message and "motor_on" in message
    await client.unary(client.estop.EmergencyStop, estop_pb2.EmergencyStopRequest(reason="x"))
    latched = await client.fails(
        Status.FAILED_PRECONDITION, hw.MotorOn, pb.DeviceRequest(device="esp300.axis2")
    )
    assert "MotorOn is refused: e-stop latched since" in latched
    homing = await client.call(
        lambda: _stream_status(hw.Home, pb.HomeRequest(device="esp300.axis1"))
    )
    assert homing.startswith("FAILED_PRECONDITION: ") and "latched" in homing
    stopped = await client.unary(hw.StopMotion, pb.DeviceRequest(device="esp300.axis2"))
    assert stopped.device == "esp300.axis2"  # stop is never refused
    await client.unary(client.estop.ResetEmergencyStop, estop_pb2.ResetEmergencyStopRequest())
    state = await client.unary(hw.MotorOn, pb.DeviceRequest(device="esp300.axis2"))
    assert state.motor_on and state.fault == "" and simulator.axes[2].motor_on
    assert (await client.unary(hw.MoveAbsolute, move)).position == pytest.approx(1.0, abs=1e-3)


async def test_zero_the_power_meter(client: Client) -> None:
    hw = client.hardware
    meter = client.bench.simulators["power_meter"]
    state = await client.unary(hw.Zero, pb.ZeroRequest(device="power_meter"))
    assert state.zero and meter.zero == 1
    state = await client.unary(hw.Zero, pb.ZeroRequest(device="power_meter", off=True))
    assert not state.zero and meter.zero == 0


async def test_operations_need_the_operator_role_and_stop_does_not(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        '[[client]]\nname = "gui"\nrole = "observer"\ntoken = "observer-token-0123456789"\n'
    )
    tokens.chmod(0o600)
    observer = {"authorization": "Bearer observer-token-0123456789"}
    edge = EdgeConfig(port=0, tokens_file=tokens, presets_dir=tmp_path)
    async with open_client(tmp_path, edge=edge) as client:
        hw = client.hardware
        for method, request in (
            (hw.MotorOn, pb.DeviceRequest(device="esp300.axis1")),
            (hw.Zero, pb.ZeroRequest(device="power_meter")),
        ):
            message = await client.fails(
                Status.PERMISSION_DENIED, method, request, metadata=observer
            )
            assert "needs the operator role" in message
        homing = await client.call(
            lambda: _stream_status(
                hw.Home, pb.HomeRequest(device="esp300.axis1"), metadata=observer
            )
        )
        assert homing.startswith("PERMISSION_DENIED: Home needs the operator role")
        await client.unary(
            hw.StopMotion, pb.DeviceRequest(device="esp300.axis1"), metadata=observer
        )


async def _stream_status(method: object, request: object, **kwargs: object) -> str:
    from grpclib.exceptions import GRPCError

    try:
        async with method.open(**kwargs) as stream:  # type: ignore[attr-defined]
            await stream.send_message(request, end=True)
            while await stream.recv_message() is not None:
                pass
    except GRPCError as error:
        return f"{error.status.name}: {error.message}"
    return "no error"


async def _read_all(method: object, request: object) -> list[pb.HomeProgress]:
    received = []
    async with method.open() as stream:  # type: ignore[attr-defined]
        await stream.send_message(request, end=True)
        while (message := await stream.recv_message()) is not None:
            received.append(message)
    return received
