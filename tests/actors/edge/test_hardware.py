"""Hardware service over loopback: devices, parameters, motion, readings; errors as statuses."""

from __future__ import annotations

import math

import pytest
import trio
from grpclib.const import Status

from benchd.v1 import common_pb2
from benchd.v1 import hardware_pb2 as pb

from .harness import Client


async def test_lists_devices_with_capabilities_units_and_state(client: Client) -> None:
    reply = await client.unary(client.hardware.ListDevices, pb.ListDevicesRequest())
    devices = {d.name: d for d in reply.devices}
    assert "edge" not in devices
    assert set(devices) >= {"esp300.axis1", "ell14.2", "maitai", "power_meter"}
    axis = devices["esp300.axis1"]
    assert list(axis.capabilities) == ["Movable", "Parameterized"]
    assert axis.units == "mm" and axis.driver and axis.identity.startswith("ESP300")
    assert all(d.state == common_pb2.DEVICE_STATE_READY for d in devices.values())
    assert list(devices["power_meter"].capabilities) == ["Readable", "Parameterized"]
    one = await client.unary(client.hardware.GetDevice, pb.DeviceRequest(device="maitai"))
    assert one.units == "W" and one.restarts == 0 and not one.HasField("last_failure")
    message = await client.fails(
        Status.NOT_FOUND, client.hardware.GetDevice, pb.DeviceRequest(device="nope")
    )
    assert "no device named 'nope'; devices: ell14, " in message
    devices_part, services_part = message.split(" (services: ")
    assert "recorder" not in devices_part and "recorder" in services_part  # listed apart


async def test_parameters_list_get_set_with_the_right_errors(client: Client) -> None:
    hw = client.hardware
    listing = await client.unary(hw.ListParameters, pb.DeviceRequest(device="maitai"))
    infos = {p.name: p for p in listing.parameters}
    wavelength = infos["wavelength"]
    assert wavelength.dtype == "float" and wavelength.units == "nm"
    assert (wavelength.limits.low, wavelength.limits.high) == (690.0, 1040.0)
    assert any(p.read_only for p in infos.values()) and any(p.hazardous for p in infos.values())

    got = await client.unary(
        hw.GetParameter, pb.ParameterRequest(device="maitai", name="wavelength")
    )
    assert got.value.number == 800.0 and got.units == "nm"

    request = pb.SetParameterRequest(
        device="maitai", name="wavelength", value=common_pb2.Value(integer=920)
    )
    done = await client.unary(hw.SetParameter, request)
    assert done.value.number == 920.0 and done.desired.number == 920.0
    assert done.source == common_pb2.SOURCE_USER and done.version > got.version

    too_far = pb.SetParameterRequest(
        device="maitai", name="wavelength", value=common_pb2.Value(number=5000.0)
    )
    message = await client.fails(Status.INVALID_ARGUMENT, hw.SetParameter, too_far)
    assert "outside the allowed range 690 to 1040 nm" in message
    wrong_type = pb.SetParameterRequest(
        device="maitai", name="wavelength", value=common_pb2.Value(text="blue")
    )
    assert "expected float" in await client.fails(
        Status.INVALID_ARGUMENT, hw.SetParameter, wrong_type
    )
    no_value = pb.SetParameterRequest(device="maitai", name="wavelength")
    assert "no value given" in await client.fails(
        Status.INVALID_ARGUMENT, hw.SetParameter, no_value
    )
    read_only = next(n for n, p in infos.items() if p.read_only)
    ro = pb.SetParameterRequest(device="maitai", name=read_only, value=common_pb2.Value(number=1))
    assert "read-only" in await client.fails(Status.INVALID_ARGUMENT, hw.SetParameter, ro)
    unknown = pb.ParameterRequest(device="maitai", name="colour")
    assert "parameters: " in await client.fails(Status.NOT_FOUND, hw.GetParameter, unknown)
    nobody = pb.ParameterRequest(device="", name="wavelength")
    assert "device is required" in await client.fails(
        Status.INVALID_ARGUMENT, hw.GetParameter, nobody
    )


async def test_parameter_stream_sends_the_current_value_then_changes(client: Client) -> None:
    hw = client.hardware

    async def change() -> None:
        await hw.SetParameter(
            pb.SetParameterRequest(
                device="power_meter", name="wavelength", value=common_pb2.Value(number=633.0)
            )
        )

    received = await client.stream(
        hw.StreamParameters,
        pb.StreamParametersRequest(device="power_meter", names=["wavelength"]),
        2,
        between=change,
    )
    assert [m.name for m in received] == ["wavelength", "wavelength"]
    assert received[1].value.integer == 633 and received[1].source == common_pb2.SOURCE_USER
    assert received[1].version > received[0].version


async def test_moves_wait_and_report_positions(client: Client) -> None:
    hw = client.hardware
    moved = await client.unary(
        hw.MoveAbsolute, pb.MoveAbsoluteRequest(device="esp300.axis1", position=0.5, wait=True)
    )
    assert moved.settled and moved.units == "mm" and moved.position == pytest.approx(0.5, abs=1e-3)
    relative = await client.unary(
        hw.MoveRelative, pb.MoveRelativeRequest(device="esp300.axis1", distance=-0.25, wait=True)
    )
    assert relative.position == pytest.approx(0.25, abs=1e-3)
    where = await client.unary(hw.GetPosition, pb.DeviceRequest(device="esp300.axis1"))
    assert where.position == pytest.approx(0.25, abs=1e-3) and where.units == "mm"
    settled = await client.unary(
        hw.WaitSettled, pb.WaitSettledRequest(device="esp300.axis1", timeout_s=5)
    )
    assert settled.position == pytest.approx(0.25, abs=1e-3)
    stopped = await client.unary(hw.StopMotion, pb.DeviceRequest(device="esp300.axis1"))
    assert math.isfinite(stopped.position)
    positions = await client.stream(
        hw.StreamPosition, pb.StreamRequest(device="esp300.axis1", interval_s=0.02), 3
    )
    assert len(positions) == 3 and all(p.device == "esp300.axis1" for p in positions)


async def test_motion_errors_say_what_is_allowed(client: Client) -> None:
    hw = client.hardware
    message = await client.fails(
        Status.UNIMPLEMENTED,
        hw.MoveAbsolute,
        pb.MoveAbsoluteRequest(device="power_meter", position=1),
    )
    assert "'power_meter' cannot move: it is not Movable; Movable devices: ell14.2" in message
    assert "finite" in await client.fails(
        Status.INVALID_ARGUMENT,
        hw.MoveAbsolute,
        pb.MoveAbsoluteRequest(device="esp300.axis1", position=math.inf),
    )
    assert "timeout_s" in await client.fails(
        Status.INVALID_ARGUMENT,
        hw.MoveRelative,
        pb.MoveRelativeRequest(device="esp300.axis1", distance=1, timeout_s=-1),
    )
    far = pb.MoveAbsoluteRequest(device="esp300.axis2", position=20.0, wait=True, timeout_s=0.05)
    message = await client.fails(Status.DEADLINE_EXCEEDED, hw.MoveAbsolute, far)
    assert "StopMotion" in message
    await client.unary(hw.StopMotion, pb.DeviceRequest(device="esp300.axis2"))


async def test_reads_values_and_streams_them(client: Client) -> None:
    hw = client.hardware
    reading = await client.unary(hw.ReadValue, pb.DeviceRequest(device="power_meter"))
    assert reading.units == "W" and reading.device == "power_meter"
    values = await client.stream(
        hw.StreamValues, pb.StreamRequest(device="power_meter", interval_s=0.02), 3
    )
    assert len(values) == 3 and values[2].timestamp >= values[0].timestamp
    message = await client.fails(
        Status.UNIMPLEMENTED, hw.ReadValue, pb.DeviceRequest(device="esp300.axis1")
    )
    assert "Readable devices: maitai, power_meter" in message
    with trio.fail_after(5):
        message = await client.call(
            lambda: _stream_error(hw.StreamValues, pb.StreamRequest(device="maitai", interval_s=99))
        )
    assert message.startswith("INVALID_ARGUMENT") and "interval_s 99.0" in message


async def _stream_error(method: object, request: object) -> str:
    from grpclib.exceptions import GRPCError

    try:
        async with method.open() as stream:  # type: ignore[attr-defined]
            await stream.send_message(request, end=True)
            await stream.recv_message()
    except GRPCError as error:
        return f"{error.status.name}: {error.message}"
    return "no error"


async def test_the_remaining_error_paths(client: Client) -> None:
    hw = client.hardware
    await client.fails(Status.NOT_FOUND, hw.ListParameters, pb.DeviceRequest(device="laser"))
    assert "'maitai' cannot stop motion: it is not Movable" in await client.fails(
        Status.UNIMPLEMENTED, hw.StopMotion, pb.DeviceRequest(device="maitai")
    )
    assert "cannot report a position" in await client.fails(
        Status.UNIMPLEMENTED, hw.GetPosition, pb.DeviceRequest(device="maitai")
    )
    with trio.fail_after(5):
        message = await client.call(
            lambda: _stream_error(
                hw.StreamParameters, pb.StreamParametersRequest(device="maitai", names=["colour"])
            )
        )
        assert message.startswith("NOT_FOUND: no parameter 'colour'")
        message = await client.call(
            lambda: _stream_error(
                hw.StreamPosition, pb.StreamRequest(device="esp300.axis1", interval_s=0.001)
            )
        )
        assert message.startswith("INVALID_ARGUMENT: interval_s 0.001 is outside 0.01 to 60")

    await client.unary(hw.MoveAbsolute, pb.MoveAbsoluteRequest(device="esp300.axis3", position=15))
    message = await client.fails(
        Status.DEADLINE_EXCEEDED,
        hw.WaitSettled,
        pb.WaitSettledRequest(device="esp300.axis3", timeout_s=0.05),
    )
    assert "esp300.axis3 is still moving after 0.05 s" in message

    async def stop_soon() -> None:
        await trio.sleep(0.2)
        await client.bench.system.emergency_stop("test")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_soon)
        message = await client.fails(
            Status.ABORTED,
            hw.MoveAbsolute,
            pb.MoveAbsoluteRequest(device="esp300.axis3", position=-15, wait=True),
        )
    assert "interrupted by EmergencyStop" in message
    await client.bench.system.reset_emergency_stop()
