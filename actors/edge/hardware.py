"""Hardware service: devices, parameters, motion, readings.

Each method validates what it can on the asyncio side (device exists and is ready, numbers are
finite), hands the actor request to trio through the bridge, and translates the reply. Frames
are the camera's, in ``frames.py``, whose servicer completes this one.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from benchd.v1 import hardware_grpc
from benchd.v1 import hardware_pb2 as pb
from runtime import (
    Abort,
    ActorRef,
    ActorState,
    AskTimeout,
    GetParameter,
    ListParameters,
    ParameterInfo,
    SetParameter,
    Subscription,
    UnhandledMessage,
    WatchParameter,
)

from ..capabilities import (
    Capability,
    GetPosition,
    Home,
    MotorOn,
    MoveAbsolute,
    MoveRelative,
    Operation,
    Read,
    Reading,
    StopMotion,
    WaitSettled,
    Zero,
)
from . import _convert as convert
from ._context import DEFAULT_WAIT, EdgeContext
from ._guard import receive as receive  # noqa: PLC0414 (re-exported: scan.py imports it here)
from .errors import grpc_error, invalid

DEFAULT_HOME = 120.0  # s: a home search with no timeout given
HOME_HEARTBEAT = 0.25  # s: progress at least this often while homing
MIN_INTERVAL = 0.01
DEFAULT_INTERVAL = 0.1
MAX_INTERVAL = 60.0


def interval_of(request: pb.StreamRequest) -> float:
    interval = request.interval_s or DEFAULT_INTERVAL
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise invalid(
            f"interval_s {request.interval_s} is outside {MIN_INTERVAL} to {MAX_INTERVAL} s"
            f" (0: {DEFAULT_INTERVAL} s)"
        )
    return interval


def wait_timeout(value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise invalid(f"timeout_s must be >= 0 s (0: {DEFAULT_WAIT:g} s), got {value}")
    return value


class HardwareServicer(hardware_grpc.HardwareBase):
    def __init__(self, context: EdgeContext) -> None:
        self.ctx = context

    # -- devices ---------------------------------------------------------------------------------

    async def _device(self, ref: ActorRef) -> pb.Device:
        stats = ref.statistics()
        device = pb.Device(
            name=ref.name,
            state=convert.device_state(stats.state),
            restarts=stats.restarts,
            last_failure=convert.failure(stats.last_failure),
            latched=stats.latched or "",
        )
        if stats.state is ActorState.RUNNING:
            cached = await self.ctx.bridge.call(lambda: self.ctx.describe(ref))
            if cached is not None:
                info = cached.info
                device.driver = info.driver
                device.capabilities.extend(str(c) for c in info.capabilities)
                device.identity = info.identity
                device.units = info.units
                device.operations.extend(str(o) for o in info.operations)
                limits = convert.limits(cached.position_limits)
                if limits is not None:
                    device.position_limits.CopyFrom(limits)
        device.kind = self.ctx.kind(ref.name)
        return device

    async def ListDevices(
        self, stream: Stream[pb.ListDevicesRequest, pb.ListDevicesResponse]
    ) -> None:
        await receive(stream)
        devices = [
            await self._device(self.ctx.ref(name, ready=False)) for name in self.ctx.device_names()
        ]
        await stream.send_message(pb.ListDevicesResponse(devices=devices))

    async def GetDevice(self, stream: Stream[pb.DeviceRequest, pb.Device]) -> None:
        request = await receive(stream)
        await stream.send_message(await self._device(self.ctx.ref(request.device, ready=False)))

    # -- parameters ------------------------------------------------------------------------------

    async def ListParameters(
        self, stream: Stream[pb.DeviceRequest, pb.ListParametersResponse]
    ) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        infos: tuple[ParameterInfo, ...] = await self.ctx.request(stream, ref, ListParameters())
        await stream.send_message(
            pb.ListParametersResponse(
                device=ref.name, parameters=[convert.parameter_info(i) for i in infos]
            )
        )

    async def GetParameter(self, stream: Stream[pb.ParameterRequest, pb.ParameterValue]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        snapshot = await self.ctx.request(stream, ref, GetParameter(request.name))
        await stream.send_message(convert.parameter_value(ref.name, snapshot))

    async def SetParameter(self, stream: Stream[pb.SetParameterRequest, pb.ParameterValue]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        if not request.HasField("value"):
            raise invalid(f"{request.name}: no value given; set value to the new value")
        value = convert.from_value(request.value, request.name or "value")
        message = SetParameter(request.name, value)
        snapshot = await self.ctx.request(stream, ref, message)
        await stream.send_message(convert.parameter_value(ref.name, snapshot))

    async def StreamParameters(
        self, stream: Stream[pb.StreamParametersRequest, pb.ParameterValue]
    ) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        wanted = list(request.names)

        async def produce(push: Any) -> None:
            infos: tuple[ParameterInfo, ...] = await ref.ask(ListParameters())
            units = {i.name: i.units for i in infos}
            names = wanted or list(units)
            subscriptions = [(n, await ref.ask(WatchParameter(n))) for n in names]

            async def forward(name: str, subscription: Subscription[Any]) -> None:
                async for sample in subscription:
                    push(convert.sample_value(ref.name, name, units.get(name, ""), sample))

            async with trio.open_nursery() as nursery:
                for name, subscription in subscriptions:
                    nursery.start_soon(forward, name, subscription)
            raise GRPCError(
                Status.UNAVAILABLE, f"device {ref.name!r} stopped or restarted; subscribe again"
            )

        await self._relay(stream, produce, capacity=64)

    async def _relay(self, stream: Stream[Any, Any], produce: Any, *, capacity: int) -> None:
        try:
            async for item in self.ctx.bridge.stream(produce, capacity=capacity):
                await stream.send_message(item)
        except GRPCError:
            raise
        except Exception as exc:
            raise grpc_error(exc) from exc

    # -- motion ------------------------------------------------------------------------------------

    async def _not_capable(self, ref: ActorRef, capability: Capability, what: str) -> GRPCError:
        able = await self.ctx.bridge.call(lambda: self.ctx.capable(capability))
        return GRPCError(
            Status.UNIMPLEMENTED,
            f"{ref.name!r} cannot {what}: it is not {capability};"
            f" {capability} devices: {', '.join(able) or 'none'}",
        )

    async def _ask(
        self,
        stream: Stream[Any, Any],
        ref: ActorRef,
        message: Any,
        capability: Capability,
        what: str,
        *,
        timeout: float = 0.0,
        default: float = 10.0,
    ) -> Any:
        try:
            return await self.ctx.request(stream, ref, message, timeout=timeout, default=default)
        except GRPCError as error:
            cause = error.__cause__
            root = getattr(cause, "root_cause", cause)
            if isinstance(root, UnhandledMessage):
                raise await self._not_capable(ref, capability, what) from None
            if error.status is Status.DEADLINE_EXCEEDED and isinstance(
                message, (MoveAbsolute, MoveRelative)
            ):
                raise GRPCError(
                    Status.DEADLINE_EXCEEDED,
                    f"{ref.name!r} did not settle in time ({error.message}); the move goes"
                    " on: call StopMotion to stop it, or WaitSettled",
                ) from None
            raise

    async def _units(self, ref: ActorRef) -> str:
        cached = self.ctx.cached(ref) or await self.ctx.bridge.call(lambda: self.ctx.describe(ref))
        return cached.info.units if cached is not None else ""

    async def _move(
        self, stream: Stream[Any, pb.MoveResponse], message: Any, ref: ActorRef, timeout: float
    ) -> None:
        default = DEFAULT_WAIT if message.wait else 10.0
        position = await self._ask(
            stream, ref, message, Capability.MOVABLE, "move", timeout=timeout, default=default
        )
        await stream.send_message(
            pb.MoveResponse(
                device=ref.name,
                position=position,
                settled=message.wait,
                units=await self._units(ref),
            )
        )

    async def MoveAbsolute(self, stream: Stream[pb.MoveAbsoluteRequest, pb.MoveResponse]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        position = convert.finite(request.position, "position")
        timeout = wait_timeout(request.timeout_s)
        await self._move(stream, MoveAbsolute(position, wait=request.wait), ref, timeout)

    async def MoveRelative(self, stream: Stream[pb.MoveRelativeRequest, pb.MoveResponse]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        distance = convert.finite(request.distance, "distance")
        timeout = wait_timeout(request.timeout_s)
        await self._move(stream, MoveRelative(distance, wait=request.wait), ref, timeout)

    async def _position(
        self, stream: Stream[Any, pb.Position], ref: ActorRef, value: float
    ) -> None:
        await stream.send_message(
            pb.Position(
                device=ref.name, position=value, units=await self._units(ref), timestamp=time.time()
            )
        )

    async def StopMotion(self, stream: Stream[pb.DeviceRequest, pb.Position]) -> None:
        """Abort (priority lane: cancels a move in flight, which a queued StopMotion would wait
        behind, and stops the axis; no latch), then StopMotion for the position at rest."""
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        cached = await self.ctx.bridge.call(lambda: self.ctx.describe(ref))
        if cached is not None and Capability.MOVABLE not in cached.info.capabilities:
            raise await self._not_capable(ref, Capability.MOVABLE, "stop motion")
        client = self.ctx.client(stream)
        await self.ctx.request(stream, ref, Abort(f"StopMotion by {client.name}"))
        value = await self._ask(stream, ref, StopMotion(), Capability.MOVABLE, "stop motion")
        await self._position(stream, ref, value)

    async def WaitSettled(self, stream: Stream[pb.WaitSettledRequest, pb.Position]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        timeout = wait_timeout(request.timeout_s) or DEFAULT_WAIT
        message = WaitSettled(timeout=timeout)
        value = await self._ask(
            stream, ref, message, Capability.MOVABLE, "wait for settle", timeout=timeout + 1.0
        )
        await self._position(stream, ref, value)

    async def GetPosition(self, stream: Stream[pb.DeviceRequest, pb.Position]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        value = await self._ask(stream, ref, GetPosition(), Capability.MOVABLE, "report a position")
        await self._position(stream, ref, value)

    async def StreamPosition(self, stream: Stream[pb.StreamRequest, pb.Position]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        interval = interval_of(request)
        units = await self._units(ref)
        await self._ask(stream, ref, GetPosition(), Capability.MOVABLE, "report a position")

        async def produce(push: Any) -> None:
            while True:
                value = await ref.ask(GetPosition())
                push(
                    pb.Position(device=ref.name, position=value, units=units, timestamp=time.time())
                )
                await trio.sleep(interval)

        await self._relay(stream, produce, capacity=4)

    # -- readings ----------------------------------------------------------------------------------

    async def ReadValue(self, stream: Stream[pb.DeviceRequest, pb.Reading]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        reading = await self._ask(stream, ref, Read(), Capability.READABLE, "read a value")
        await stream.send_message(reading_message(ref.name, reading))

    async def StreamValues(self, stream: Stream[pb.StreamRequest, pb.Reading]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        interval = interval_of(request)
        first = await self._ask(stream, ref, Read(), Capability.READABLE, "read a value")
        await stream.send_message(reading_message(ref.name, first))

        async def produce(push: Any) -> None:
            while True:
                await trio.sleep(interval)
                push(reading_message(ref.name, await ref.ask(Read())))

        await self._relay(stream, produce, capacity=16)

    # -- operations (home, motor on, zero; stop is StopMotion) -------------------------------

    async def _operation(self, ref: ActorRef, operation: Operation, what: str) -> str:
        """UNIMPLEMENTED unless the device has ``operation``; its units otherwise."""
        cached = await self.ctx.bridge.call(lambda: self.ctx.describe(ref))
        if cached is None:
            raise GRPCError(Status.UNAVAILABLE, f"device {ref.name!r} cannot describe itself")
        if operation not in cached.info.operations:
            able = await self.ctx.bridge.call(lambda: self._with_operation(operation))
            raise GRPCError(
                Status.UNIMPLEMENTED,
                f"{ref.name!r} cannot {what}; devices that can: {', '.join(able) or 'none'}",
            )
        return cached.info.units

    async def _with_operation(self, operation: Operation) -> list[str]:
        names = []
        for name in self.ctx.device_names():
            ref = self.ctx.system.ref(name)
            if ref.statistics().state is ActorState.RUNNING:
                cached = await self.ctx.describe(ref)
                if cached is not None and operation in cached.info.operations:
                    names.append(name)
        return names

    async def Home(self, stream: Stream[pb.HomeRequest, pb.HomeProgress]) -> None:
        """The position parameter is watched before the search starts, so progress costs
        the axis nothing (it reports positions while it polls its own motion)."""
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        timeout = wait_timeout(request.timeout_s) or DEFAULT_HOME
        units = await self._operation(ref, Operation.HOME, "home")

        async def produce(push: Any) -> None:
            watch = await ref.ask(WatchParameter("position"))
            started = trio.current_time()
            latest = [math.nan]
            homed: list[float] = []
            failed: list[Exception] = []

            def progress(done: bool = False) -> pb.HomeProgress:
                return pb.HomeProgress(
                    device=ref.name,
                    position=latest[0],
                    units=units,
                    elapsed_s=trio.current_time() - started,
                    done=done,
                    timestamp=time.time(),
                )

            async with trio.open_nursery() as nursery:

                async def home() -> None:
                    try:
                        homed.append(await ref.ask(Home(), timeout=timeout))
                    except Exception as error:  # raised below, outside the nursery's group
                        failed.append(error)
                    nursery.cancel_scope.cancel()

                async def positions() -> None:
                    async for sample in watch:
                        latest[0] = sample.value
                        push(progress())

                async def heartbeat() -> None:
                    while True:
                        await trio.sleep(HOME_HEARTBEAT)
                        push(progress())

                nursery.start_soon(home)
                nursery.start_soon(positions)
                nursery.start_soon(heartbeat)
            if failed:
                if isinstance(failed[0], AskTimeout):
                    raise GRPCError(
                        Status.DEADLINE_EXCEEDED,
                        f"{ref.name!r} is still homing after {timeout:g} s; the search goes"
                        " on: call StopMotion to stop it",
                    )
                raise failed[0]
            latest[0] = homed[0]
            push(progress(done=True))

        await self._relay(stream, produce, capacity=16)

    async def MotorOn(self, stream: Stream[pb.DeviceRequest, pb.MotorState]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        await self._operation(ref, Operation.MOTOR_ON, "switch a motor on")
        on = await self.ctx.request(stream, ref, MotorOn())
        fault = ""
        with contextlib.suppress(GRPCError):  # a device without a fault parameter
            fault = (await self.ctx.request(stream, ref, GetParameter("fault"))).value
        await stream.send_message(pb.MotorState(device=ref.name, motor_on=on, fault=str(fault)))

    async def Zero(self, stream: Stream[pb.ZeroRequest, pb.ZeroState]) -> None:
        request = await receive(stream)
        ref = self.ctx.ref(request.device)
        await self._operation(ref, Operation.ZERO, "zero")
        zero = await self.ctx.request(stream, ref, Zero(enable=not request.off))
        await stream.send_message(pb.ZeroState(device=ref.name, zero=zero))


def reading_message(device: str, reading: Reading) -> pb.Reading:
    return pb.Reading(
        device=device,
        value=reading.value,
        units=reading.units,
        timestamp=reading.timestamp,
        flags=list(reading.flags),
    )
