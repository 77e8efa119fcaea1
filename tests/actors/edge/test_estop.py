"""EmergencyStop service: stop, latch refuses motion, events stream, reset."""

from __future__ import annotations

import trio
import trio_asyncio
from grpclib.const import Status

from benchd.v1 import common_pb2
from benchd.v1 import estop_pb2 as pb
from benchd.v1 import hardware_pb2 as hw

from .harness import Client


async def test_estop_latches_streams_events_and_resets(client: Client) -> None:
    estop = client.estop

    async def stop() -> None:
        report = await estop.EmergencyStop(pb.EmergencyStopRequest(reason="beam dump open"))
        assert report.all_stopped
        acks = {a.actor: a for a in report.acknowledgements}
        assert acks["esp300.axis1"].ok and acks["esp300.axis1"].latency_ms > 0

    events = await client.stream(
        estop.StreamEmergencyStopEvents, pb.EmergencyStopStateRequest(), 2, between=stop
    )
    assert events[0].kind == pb.EmergencyStopEvent.KIND_CURRENT and not events[0].latched
    assert events[1].kind == pb.EmergencyStopEvent.KIND_STOPPED and events[1].latched
    assert events[1].reason == "beam dump open"
    assert events[1].client == "local (operator) from 127.0.0.1"
    assert events[1].all_stopped

    state = await client.unary(estop.GetEmergencyStopState, pb.EmergencyStopStateRequest())
    assert state.latched and "esp300.axis1" in state.latched_actors
    assert "beam dump open" in state.reason

    move = hw.MoveAbsoluteRequest(device="esp300.axis1", position=1.0, wait=True)
    message = await client.fails(Status.FAILED_PRECONDITION, client.hardware.MoveAbsolute, move)
    assert "MoveAbsolute is refused: e-stop latched since " in message
    assert "by local (operator) from 127.0.0.1 (beam dump open)" in message
    assert "reset the emergency stop first" in message
    shutter = hw.SetParameterRequest(
        device="maitai", name="shutter", value=common_pb2.Value(flag=True)
    )
    await client.fails(Status.FAILED_PRECONDITION, client.hardware.SetParameter, shutter)

    reset = await client.unary(
        estop.ResetEmergencyStop, pb.ResetEmergencyStopRequest(reason="dump closed")
    )
    assert list(reset.still_latched) == []
    state = await client.unary(estop.GetEmergencyStopState, pb.EmergencyStopStateRequest())
    assert not state.latched
    moved = await client.unary(client.hardware.MoveAbsolute, move)
    assert moved.position == 1.0


async def test_stops_and_resets_made_elsewhere_are_streamed_too(client: Client) -> None:
    system = client.bench.system

    async def script_stops_and_resets() -> None:
        await system.emergency_stop("scan script: limit switch")
        # the e-stop answers once the stop bytes are out (ms); the edge sees stops made
        # elsewhere by looking every 50 ms: its timer comes due before this one
        await trio.sleep(0.2)
        await system.reset_emergency_stop("scan script")

    events = await client.stream(
        client.estop.StreamEmergencyStopEvents,
        pb.EmergencyStopStateRequest(),
        3,
        between=trio_asyncio.trio_as_aio(script_stops_and_resets),
    )
    kinds = [e.kind for e in events]
    assert kinds == [
        pb.EmergencyStopEvent.KIND_CURRENT,
        pb.EmergencyStopEvent.KIND_STOPPED,
        pb.EmergencyStopEvent.KIND_RESET,
    ]
    assert events[1].reason == "scan script: limit switch" and events[1].client == ""
    assert not events[2].latched
