"""The asyncio client: :class:`AsyncBench`, typed calls over grpclib with reconnects.

One grpclib ``Channel`` per bench; grpclib opens the HTTP/2 connection on the first call and
again on the first call after it was lost, so a daemon restart needs no new object. Every call
returns one of the frozen dataclasses of ``client._types``, never a protobuf message.

Retries (:class:`RetryPolicy`): a call that cannot reach the daemon (connection refused or
reset, the connection dropped) is retried with capped exponential backoff until the policy's
budget is spent, then raises :class:`ConnectionLost`. Only connection failures are retried,
never an answer from the daemon (``InvalidArgument``, ``Unavailable`` for a degraded device,
...). A request that was already sent when the connection dropped is retried only if repeating
it is harmless (reads, absolute moves, setting a value, the e-stop); a relative move, a preset
save / load / delete raise :class:`ConnectionLost` instead, since the daemon may have done it.
Streams (``stream_*``) re-subscribe after a dropped connection with the same backoff; the
daemon sends the current value first, so a re-subscribed stream starts from the present.

Error handling: a status from the daemon raises the matching ``BenchError`` subclass with the
daemon's message; the client's own deadline passing raises ``DeadlineExceeded``. Cancelling
a call (asyncio) cancels the RPC on the daemon too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar

import numpy as np
import numpy.typing as npt
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError

if TYPE_CHECKING:
    import pyarrow as pa

from benchd.v1 import (
    control_grpc,
    control_pb2,
    daemon_grpc,
    daemon_pb2,
    documents_grpc,
    documents_pb2,
    estop_grpc,
    estop_pb2,
    hardware_grpc,
    hardware_pb2,
    health_grpc,
    health_pb2,
    plan_pb2,
    preset_grpc,
    preset_pb2,
    preview_grpc,
    preview_pb2,
    scan_grpc,
    scan_pb2,
    storage_grpc,
    storage_pb2,
)

from . import plans
from ._errors import ConnectionLost, DeadlineExceeded, from_grpc
from ._run_sources import RunSources
from ._segment import one_segment
from ._types import (
    PREVIEW_REDUCTIONS,
    AcquisitionStatus,
    ActorHealth,
    Alert,
    DaemonInfo,
    DeviceInfo,
    EmergencyStopEvent,
    EmergencyStopResult,
    EmergencyStopState,
    Execution,
    Frame,
    Health,
    HomeProgress,
    MotorState,
    MoveResult,
    ParameterInfo,
    ParameterValue,
    PlanCheck,
    Position,
    Preset,
    PresetEntry,
    PresetInfo,
    PreviewFrame,
    Reading,
    ResetResult,
    RunFile,
    RunStatus,
    ScanEvent,
    ScanStatus,
    ScriptCheck,
    ScriptInfo,
    SystemHealth,
    ZeroState,
    to_value,
)
from ._units import is_quantity, to_number, to_unit

R = TypeVar("R")

DEFAULT_PORT = 50051
#: Deadline of a call that does not wait for the hardware (seconds).
DEFAULT_TIMEOUT = 10.0
#: How long a move with ``wait`` may take before the daemon answers DEADLINE_EXCEEDED.
DEFAULT_MOVE_TIMEOUT = 60.0
#: How long a home search may take before the daemon answers DEADLINE_EXCEEDED.
DEFAULT_HOME_TIMEOUT = 120.0
#: How long ``frames()`` waits for a frame before saying none flows (seconds).
DEFAULT_FRAME_TIMEOUT = 10.0
#: Connection failures: the request never reached the daemon, or its answer never came back.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, StreamTerminatedError)

TLS = bool | str | os.PathLike[str] | ssl.SSLContext | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff for connection failures.

    The first retry waits ``initial`` seconds, each next one ``multiplier`` times longer, at
    most ``maximum``; a call gives up (``ConnectionLost``) once ``budget`` seconds have passed
    since its first failure. ``RetryPolicy(budget=0)`` never retries.
    """

    initial: float = 0.05
    maximum: float = 2.0
    multiplier: float = 2.0
    budget: float = 15.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * self.multiplier, self.maximum)


class _Backoff:
    """One outage: sleeps between attempts, raises ConnectionLost when the budget is spent."""

    def __init__(self, policy: RetryPolicy, target: str) -> None:
        self._policy = policy
        self._target = target
        self._delays = policy.delays()
        self._deadline: float | None = None
        self._first = 0.0
        self.attempts = 0

    async def wait(self, error: BaseException, what: str) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._deadline is None:
            self._deadline = now + self._policy.budget
            self._first = now
        self.attempts += 1
        delay = next(self._delays)
        if now + delay > self._deadline:  # the time it tried, not the budget it had
            raise ConnectionLost(
                f"{what}: could not reach the daemon at {self._target} for"
                f" {now - self._first:.1f} s ({self.attempts} attempts; last error:"
                f" {type(error).__name__}: {error or 'connection lost'})"
            ) from error
        await asyncio.sleep(delay)


async def _within(receive: Awaitable[R], timeout: float | None, silent: str) -> R:
    """``await receive``, at most ``timeout`` seconds (None: as long as it takes).

    Error handling: ``DeadlineExceeded(silent)`` when the time is up (raised here, before the
    caller's connection-error handling sees a TimeoutError, which is an OSError)."""
    if timeout is None:
        return await receive
    try:
        async with asyncio.timeout(timeout):
            return await receive
    except TimeoutError:
        raise DeadlineExceeded(f"{silent} (nothing within {timeout:g} s)") from None


def _pyarrow() -> Any:
    """pyarrow, imported when a scan table is asked for (it is an extra of the client)."""
    try:
        import pyarrow  # noqa: PLC0415 (optional: only scan tables need it)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "scan tables need pyarrow, which the base client install leaves out:"
            " pip install 'benchd[tables]' (or 'benchd[pandas]' for DataFrames)",
            name=error.name,
        ) from error
    return pyarrow


def default_address() -> str:
    """``$BENCHD_ADDRESS``, else the daemon's default, 127.0.0.1:50051."""
    return os.environ.get("BENCHD_ADDRESS") or f"127.0.0.1:{DEFAULT_PORT}"


def parse_address(address: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` (port 50051) as (host, port)."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
    elif address.count(":") == 1:
        host, port = address.split(":")
    else:
        host, port = address, ""
    if not host:
        raise ValueError(f"no host in address {address!r}; expected host:port")
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in address {address!r}; expected host:port") from None
    if not 0 < number < 65536:
        raise ValueError(f"port {number} of {address!r} is not between 1 and 65535")
    return host, number


def ssl_context(tls: TLS) -> ssl.SSLContext | None:
    """``tls``: False/None plain TCP, True the system CAs, a path a certificate or CA file."""
    if tls is None or tls is False:
        return None
    if isinstance(tls, ssl.SSLContext):
        context = tls
    elif tls is True:
        context = ssl.create_default_context()
    else:
        context = ssl.create_default_context(cafile=os.fspath(tls))
    context.set_alpn_protocols(["h2"])
    return context


class AsyncBench:
    """A connection to one benchd daemon, for asyncio code (trio: ``client.trio_bench``).

    Create it with ``await AsyncBench.connect("host:port", token=..., tls=...)`` and close it
    with ``await bench.close()`` or ``async with``.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        tls: TLS = None,
        retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        address = address or default_address()
        if token is None:
            token = os.environ.get("BENCHD_TOKEN") or None
        self.address = address
        host, port = parse_address(address)
        context = ssl_context(tls)
        self._tls = context is not None
        self._channel = Channel(host, port, ssl=context)
        self._metadata = {"authorization": f"Bearer {token}"} if token else {}
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._hardware = hardware_grpc.HardwareStub(self._channel)
        self._estop = estop_grpc.EmergencyStopStub(self._channel)
        self._health = health_grpc.HealthStub(self._channel)
        self._preset = preset_grpc.PresetStub(self._channel)
        self._daemon = daemon_grpc.DaemonInfoStub(self._channel)
        self._storage = storage_grpc.StorageStub(self._channel)
        self._control = control_grpc.ControlStub(self._channel)
        self._scan = scan_grpc.ScanStub(self._channel)
        self._preview = preview_grpc.PreviewStub(self._channel)
        self._documents = documents_grpc.DocumentsStub(self._channel)
        self._closed = False

    @classmethod
    async def connect(
        cls,
        address: str | None = None,
        *,
        token: str | None = None,
        tls: TLS = None,
        retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Self:
        """Connect and check the daemon answers (and accepts the token): ``GetDaemonInfo``.

        ``address`` defaults to ``$BENCHD_ADDRESS``, else 127.0.0.1:50051, and ``token`` to
        ``$BENCHD_TOKEN`` (``token=""``: none), as for ``benchctl``.

        Error handling: ``ConnectionLost`` if nothing answers within the retry budget,
        ``Unauthenticated`` for a missing or unknown token; the channel is closed then.
        """
        bench = cls(address, token=token, tls=tls, retry=retry, timeout=timeout)
        try:
            await bench.info()
        except BaseException:
            await bench.close()
            raise
        return bench

    async def close(self) -> None:
        """Close the connection; calls and streams still open end with ``ConnectionLost``
        (grpclib would reconnect on the next call: a closed client never does)."""
        self._closed = True
        self._channel.close()
        # the transport closes its socket on the next loop iterations, and a TLS one only after
        # the close_notify exchange with the daemon (a round trip): let that happen, so a loop
        # stopped right after this (the blocking Bench's) leaves no socket open
        for _ in range(3):
            await asyncio.sleep(0)
        if self._tls:
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- plumbing ---------------------------------------------------------------------------

    async def _unary(
        self,
        method: Any,
        request: Any,
        convert: Callable[[Any], R],
        *,
        timeout: float | None = None,
        idempotent: bool = True,
        whole: bool = False,
    ) -> R:
        """One call with retries of connection failures (see the module docstring).
        ``whole``: the request leaves in one TCP segment (``_segment.py``: the e-stop)."""
        what = method.name.rsplit("/", 1)[-1]
        backoff = _Backoff(self.retry, self.address)
        while True:
            self._check_open(what)
            sent = False
            try:
                async with method.open(
                    timeout=timeout or self.timeout, metadata=self._metadata
                ) as stream:
                    async with one_segment(self._channel) if whole else contextlib.nullcontext():
                        await stream.send_message(request, end=True)
                    sent = True
                    reply = await stream.recv_message()
                return convert(reply)
            except GRPCError as error:
                raise from_grpc(error) from None
            except TimeoutError:
                raise DeadlineExceeded(
                    f"{what}: no answer within {timeout or self.timeout:g} s"
                ) from None
            except CONNECTION_ERRORS as error:
                if sent and not idempotent:
                    raise ConnectionLost(
                        f"{what}: the connection to {self.address} dropped after the request"
                        " was sent; it may or may not have been done (not retried: repeating"
                        " it would not be harmless)"
                    ) from error
                await backoff.wait(error, what)

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise ConnectionLost(f"{what}: this client is closed")

    async def _subscribe(
        self,
        method: Any,
        request: Any,
        convert: Callable[[Any], R],
        *,
        timeout: float | None = None,
        silent: str = "",
    ) -> AsyncIterator[R]:
        """A server stream that re-subscribes after a dropped connection. ``timeout``: the most
        seconds to wait for each message (the first too), else ``DeadlineExceeded`` saying
        ``silent`` (why nothing may come) and the stream ends."""
        what = method.name.rsplit("/", 1)[-1]
        backoff = _Backoff(self.retry, self.address)
        while True:
            self._check_open(what)
            try:
                async with method.open(metadata=self._metadata) as stream:
                    await stream.send_message(request, end=True)
                    while (
                        message := await _within(stream.recv_message(), timeout, silent)
                    ) is not None:
                        backoff = _Backoff(self.retry, self.address)  # a new outage next time
                        yield convert(message)
                return  # the daemon ended the stream
            except GRPCError as error:
                raise from_grpc(error) from None
            except CONNECTION_ERRORS as error:
                await backoff.wait(error, what)

    # -- devices, parameters ----------------------------------------------------------------

    async def devices(self) -> list[DeviceInfo]:
        """The bench's devices (a controller and each of its axes are devices); the daemon's
        own services (recorder, frame ring, scripts, plans) are :meth:`services`."""
        return [d for d in await self.actors() if not d.is_service]

    async def services(self) -> list[DeviceInfo]:
        """The daemon's own actors that are no instrument: the recorder, each camera's frame
        ring, the script runner, the plans executor (their state, restarts, parameters)."""
        return [d for d in await self.actors() if d.is_service]

    async def actors(self) -> list[DeviceInfo]:
        """Devices and services in one list (one ListDevices call), ``kind`` telling them apart."""
        reply = await self._unary(
            self._hardware.ListDevices, hardware_pb2.ListDevicesRequest(), lambda m: m
        )
        return [DeviceInfo.from_pb(d) for d in reply.devices]

    async def device(self, name: str) -> DeviceInfo:
        return await self._unary(
            self._hardware.GetDevice, hardware_pb2.DeviceRequest(device=name), DeviceInfo.from_pb
        )

    async def parameters(self, device: str) -> list[ParameterInfo]:
        """The device's parameters: dtype, units, limits or choices, read-only, hazardous."""
        reply = await self._unary(
            self._hardware.ListParameters, hardware_pb2.DeviceRequest(device=device), lambda m: m
        )
        return [ParameterInfo.from_pb(device, p) for p in reply.parameters]

    async def get(self, device: str, name: str) -> ParameterValue:
        request = hardware_pb2.ParameterRequest(device=device, name=name)
        return await self._unary(self._hardware.GetParameter, request, ParameterValue.from_pb)

    async def set(self, device: str, name: str, value: bool | int | float | str) -> ParameterValue:
        """Set a parameter; the reply holds the value the hardware now has. A number parameter
        also takes text with a unit (``"0.92 um"`` for a wavelength in nm), converted to its
        unit; a unit of another kind raises ``UnitError`` (a ``ValueError``) before sending."""
        if isinstance(value, str) and is_quantity(value):
            info = next((p for p in await self.parameters(device) if p.name == name), None)
            if info is not None and info.dtype in ("float", "int"):
                key = f"{device}.{name}"
                value = to_number(
                    to_unit(value, info.units, key, "parameter"), info.dtype, key, info.units, value
                )
        request = hardware_pb2.SetParameterRequest(device=device, name=name, value=to_value(value))
        return await self._unary(self._hardware.SetParameter, request, ParameterValue.from_pb)

    def stream_parameters(
        self, device: str, names: list[str] | tuple[str, ...] = ()
    ) -> AsyncIterator[ParameterValue]:
        """The current value of each named parameter (all if none), then every change."""
        request = hardware_pb2.StreamParametersRequest(device=device, names=list(names))
        return self._subscribe(self._hardware.StreamParameters, request, ParameterValue.from_pb)

    # -- motion, readings -------------------------------------------------------------------

    async def move_to(
        self,
        device: str,
        position: float | str,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> MoveResult:
        """Move to ``position`` (device units, or text with a unit: ``"12.5 mm"``); with
        ``wait``, return once settled."""
        timeout = DEFAULT_MOVE_TIMEOUT if timeout is None else timeout
        request = hardware_pb2.MoveAbsoluteRequest(
            device=device,
            position=await self._amount(device, position),
            wait=wait,
            timeout_s=timeout,
        )
        return await self._unary(
            self._hardware.MoveAbsolute,
            request,
            MoveResult.from_pb,
            timeout=timeout + self.timeout,
        )

    async def move_by(
        self,
        device: str,
        distance: float | str,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> MoveResult:
        """Move by ``distance`` (``"-500 um"`` too); never repeated after a connection drop
        (see the module doc)."""
        timeout = DEFAULT_MOVE_TIMEOUT if timeout is None else timeout
        request = hardware_pb2.MoveRelativeRequest(
            device=device,
            distance=await self._amount(device, distance),
            wait=wait,
            timeout_s=timeout,
        )
        return await self._unary(
            self._hardware.MoveRelative,
            request,
            MoveResult.from_pb,
            timeout=timeout + self.timeout,
            idempotent=False,
        )

    async def _amount(self, device: str, value: float | str) -> float:
        """A position or distance in the device's unit: a number as it is, text with a unit
        converted (``UnitError``, a ``ValueError``, for text of another kind or no number)."""
        if not isinstance(value, str):
            return value
        with contextlib.suppress(ValueError):
            return float(value)
        info = await self.device(device)
        return to_unit(value, info.units, device, "axis")

    async def position(self, device: str) -> Position:
        request = hardware_pb2.DeviceRequest(device=device)
        return await self._unary(self._hardware.GetPosition, request, Position.from_pb)

    async def wait_settled(self, device: str, *, timeout: float | None = None) -> Position:
        timeout = DEFAULT_MOVE_TIMEOUT if timeout is None else timeout
        request = hardware_pb2.WaitSettledRequest(device=device, timeout_s=timeout)
        return await self._unary(
            self._hardware.WaitSettled, request, Position.from_pb, timeout=timeout + self.timeout
        )

    async def stop(self, device: str) -> Position:
        """Abort the device's move in flight; returns where it rests."""
        request = hardware_pb2.DeviceRequest(device=device)
        return await self._unary(self._hardware.StopMotion, request, Position.from_pb)

    def stream_position(
        self, device: str, interval: float = 0.1, *, timeout: float | None = None
    ) -> AsyncIterator[Position]:
        """The position every ``interval`` s; ``timeout``: raise ``DeadlineExceeded`` when
        none came for that long (a device that stopped answering)."""
        request = hardware_pb2.StreamRequest(device=device, interval_s=interval)
        return self._subscribe(
            self._hardware.StreamPosition,
            request,
            Position.from_pb,
            timeout=timeout,
            silent=f"no position from {device}",
        )

    async def read(self, device: str) -> Reading:
        """One reading of a Readable device (the power meter, the laser's power)."""
        request = hardware_pb2.DeviceRequest(device=device)
        return await self._unary(self._hardware.ReadValue, request, Reading.from_pb)

    def stream_values(
        self, device: str, interval: float = 0.1, *, timeout: float | None = None
    ) -> AsyncIterator[Reading]:
        """A reading every ``interval`` s; ``timeout``: raise ``DeadlineExceeded`` when none
        came for that long."""
        request = hardware_pb2.StreamRequest(device=device, interval_s=interval)
        return self._subscribe(
            self._hardware.StreamValues,
            request,
            Reading.from_pb,
            timeout=timeout,
            silent=f"no reading from {device}",
        )

    # -- operations: home, stop (above), motor on, zero ----------------------------------------

    async def stream_home(
        self, device: str, *, timeout: float | None = None
    ) -> AsyncIterator[HomeProgress]:
        """Run the device's home search; its progress as it goes, the last one ``done``.

        Never repeated after a connection drop (the search may be running): ConnectionLost.
        Error handling: ``Refused`` while the e-stop is latched, ``Unimplemented`` for a device
        that cannot home (naming those that can), ``DeadlineExceeded`` after ``timeout``
        (default 120 s; the search goes on: ``stop`` it).
        """
        timeout = DEFAULT_HOME_TIMEOUT if timeout is None else timeout
        request = hardware_pb2.HomeRequest(device=device, timeout_s=timeout)
        self._check_open("Home")
        try:
            async with self._hardware.Home.open(
                timeout=timeout + self.timeout, metadata=self._metadata
            ) as stream:
                await stream.send_message(request, end=True)
                while (message := await stream.recv_message()) is not None:
                    yield HomeProgress.from_pb(message)
        except GRPCError as error:
            raise from_grpc(error) from None
        except TimeoutError:
            raise DeadlineExceeded(f"Home: no answer within {timeout + self.timeout:g} s") from None
        except CONNECTION_ERRORS as error:
            raise ConnectionLost(
                f"Home: the connection to {self.address} dropped during the home search; it"
                " may still be running (not repeated)"
            ) from error

    async def home(
        self,
        device: str,
        *,
        timeout: float | None = None,
        progress: Callable[[HomeProgress], None] | None = None,
    ) -> Position:
        """Home the device and wait; where it is homed. ``progress`` sees every step."""
        last: HomeProgress | None = None
        async for step in self.stream_home(device, timeout=timeout):
            last = step
            if progress is not None:
                progress(step)
        if last is None or not last.done:
            raise ConnectionLost(f"Home: the daemon ended the stream before {device} was homed")
        return Position(last.device, last.position, last.units, last.timestamp)

    async def motor_on(self, device: str) -> MotorState:
        """Switch a motor on after a fault or power-up (ESP300 axes); re-home afterwards."""
        request = hardware_pb2.DeviceRequest(device=device)
        return await self._unary(self._hardware.MotorOn, request, MotorState.from_pb)

    async def zero(self, device: str, enable: bool = True) -> ZeroState:
        """A power meter's zero: store the present reading as its dark offset (cover the
        detector first); ``enable=False`` stops subtracting it."""
        request = hardware_pb2.ZeroRequest(device=device, off=not enable)
        return await self._unary(self._hardware.Zero, request, ZeroState.from_pb)

    # -- emergency stop ---------------------------------------------------------------------

    async def emergency_stop(self, reason: str = "") -> EmergencyStopResult:
        """Stop every device now and latch (open to every authenticated client)."""
        request = estop_pb2.EmergencyStopRequest(reason=reason or "client emergency stop")
        sent = time.perf_counter()
        result = await self._unary(
            self._estop.EmergencyStop, request, EmergencyStopResult.from_pb, whole=True
        )
        return dataclasses.replace(result, round_trip_ms=(time.perf_counter() - sent) * 1e3)

    async def reset_emergency_stop(self, reason: str = "") -> ResetResult:
        request = estop_pb2.ResetEmergencyStopRequest(reason=reason)
        return await self._unary(
            self._estop.ResetEmergencyStop,
            request,
            lambda m: ResetResult(tuple(m.still_latched)),
        )

    async def emergency_stop_state(self) -> EmergencyStopState:
        request = estop_pb2.EmergencyStopStateRequest()
        return await self._unary(
            self._estop.GetEmergencyStopState, request, EmergencyStopState.from_pb
        )

    def stream_emergency_stop_events(self) -> AsyncIterator[EmergencyStopEvent]:
        request = estop_pb2.EmergencyStopStateRequest()
        return self._subscribe(
            self._estop.StreamEmergencyStopEvents, request, EmergencyStopEvent.from_pb
        )

    # -- health, presets, daemon ------------------------------------------------------------

    async def health(self) -> Health:
        """The machine (CPU, memory, disk) and every actor's state."""
        system = await self._unary(
            self._health.GetSystemHealth, health_pb2.SystemHealthRequest(), SystemHealth.from_pb
        )
        actors = await self._unary(
            self._health.ListActors,
            health_pb2.ListActorsRequest(),
            lambda m: tuple(ActorHealth.from_pb(a) for a in m.actors),
        )
        return Health(system, actors)

    def stream_alerts(self) -> AsyncIterator[Alert]:
        request = health_pb2.StreamAlertsRequest()
        return self._subscribe(self._health.StreamAlerts, request, Alert.from_pb)

    async def presets(self) -> list[PresetInfo]:
        reply = await self._unary(
            self._preset.ListPresets, preset_pb2.ListPresetsRequest(), lambda m: m
        )
        return [PresetInfo.from_pb(p) for p in reply.presets]

    async def preset(self, name: str) -> Preset:
        request = preset_pb2.PresetRequest(name=name)
        return await self._unary(self._preset.GetPreset, request, Preset.from_pb)

    async def save_preset(
        self,
        name: str,
        *,
        description: str = "",
        devices: list[str] | tuple[str, ...] = (),
        overwrite: bool = False,
    ) -> PresetInfo:
        """Snapshot the writable, non-hazardous parameters of ``devices`` (all if empty)."""
        request = preset_pb2.SavePresetRequest(
            name=name, description=description, devices=list(devices), overwrite=overwrite
        )
        return await self._unary(
            self._preset.SavePreset, request, PresetInfo.from_pb, idempotent=overwrite
        )

    async def load_preset(
        self, name: str, *, devices: list[str] | tuple[str, ...] = ()
    ) -> list[PresetEntry]:
        """Apply a preset (all or nothing: nothing is applied if one value no longer
        validates); returns the values applied."""
        request = preset_pb2.LoadPresetRequest(name=name, devices=list(devices))
        reply = await self._unary(self._preset.LoadPreset, request, lambda m: m, idempotent=False)
        return [PresetEntry.from_pb(e) for e in reply.applied]

    async def delete_preset(self, name: str) -> None:
        request = preset_pb2.PresetRequest(name=name)
        await self._unary(self._preset.DeletePreset, request, lambda m: None, idempotent=False)

    async def info(self) -> DaemonInfo:
        """Version, uptime, the bench, its devices, the daemon's features and your role."""
        return await self._unary(
            self._daemon.GetDaemonInfo, daemon_pb2.DaemonInfoRequest(), DaemonInfo.from_pb
        )

    # -- camera: acquisitions and frames --------------------------------------------------

    async def start_acquisition(self, camera: str, frames: int = 0) -> AcquisitionStatus:
        """Start the camera: ``frames`` frames, or live (0) until ``stop_acquisition``."""
        request = hardware_pb2.StartStreamRequest(device=camera, frames=frames)
        return await self._unary(
            self._hardware.StartStream, request, AcquisitionStatus.from_pb, idempotent=False
        )

    async def stop_acquisition(self, camera: str) -> AcquisitionStatus:
        request = hardware_pb2.DeviceRequest(device=camera)
        return await self._unary(self._hardware.StopStream, request, AcquisitionStatus.from_pb)

    async def acquisition(self, camera: str) -> AcquisitionStatus:
        request = hardware_pb2.DeviceRequest(device=camera)
        return await self._unary(self._hardware.GetAcquisition, request, AcquisitionStatus.from_pb)

    async def trigger(self, camera: str) -> AcquisitionStatus:
        """One exposure now (a camera in a software trigger mode)."""
        request = hardware_pb2.DeviceRequest(device=camera)
        return await self._unary(
            self._hardware.SoftwareTrigger, request, AcquisitionStatus.from_pb, idempotent=False
        )

    def stream_frames(
        self, camera: str, *, max_fps: float = 0.0, timeout: float | None = None
    ) -> AsyncIterator[Frame]:
        """Frames as the camera produces them, latest-only (a slow reader skips frames; the
        acquisition and any run never wait for it). It only watches: start an acquisition
        (``start_acquisition``) or a run with frames for frames to flow. ``timeout``: the most
        seconds to wait for each frame, then ``DeadlineExceeded`` (None: wait for ever)."""
        request = hardware_pb2.StreamFramesRequest(device=camera, max_fps=max_fps)
        return self._subscribe(
            self._hardware.StreamFrames,
            request,
            Frame.from_pb,
            timeout=timeout,
            silent=f"no frame from {camera}: frames flow while an acquisition runs"
            " (start_acquisition) or a run records frames",
        )

    async def frames(
        self,
        camera: str = "camera",
        *,
        max_fps: float = 0.0,
        timeout: float | None = DEFAULT_FRAME_TIMEOUT,
    ) -> AsyncIterator[npt.NDArray[np.uint16]]:
        """``stream_frames`` as bare pixel arrays: uint16, shape (height, width). No frame for
        ``timeout`` seconds (10 by default; None: wait for ever) raises ``DeadlineExceeded``
        saying why frames may not flow."""
        async for frame in self.stream_frames(camera, max_fps=max_fps, timeout=timeout):
            yield frame.pixels

    # -- storage: runs ----------------------------------------------------------------------

    async def start_run(
        self,
        name: str,
        *,
        frames: int = 0,
        duration: float = 0.0,
        metadata: Mapping[str, object] | None = None,
        compression: str = "",
        readings_only: bool = False,
    ) -> RunStatus:
        """Start recording a run (see :meth:`record`); returns at once."""
        plain = {k: v for k, v in (metadata or {}).items() if isinstance(v, str)}
        other = {k: v for k, v in (metadata or {}).items() if not isinstance(v, str)}
        request = storage_pb2.StartRunRequest(
            name=name,
            metadata=plain,
            metadata_json=json.dumps(other) if other else "",
            frames=frames,
            duration_s=duration,
            compression=compression,
            readings_only=readings_only,
        )
        return await self._unary(
            self._storage.StartRun, request, RunStatus.from_pb, idempotent=False
        )

    async def stop_run(self, reason: str = "", *, complete: bool = False) -> RunStatus:
        """End the run now (the file gets its end record); replies with the final status.
        ``complete``: you started this open-ended run and are done with it, so its outcome is
        "completed" rather than "stopped"."""
        request = storage_pb2.StopRunRequest(reason=reason, complete=complete)
        return await self._unary(self._storage.StopRun, request, RunStatus.from_pb)

    async def run_status(self) -> RunStatus:
        return await self._unary(
            self._storage.GetRunStatus, storage_pb2.RunStatusRequest(), RunStatus.from_pb
        )

    def stream_run_status(self) -> AsyncIterator[RunStatus]:
        """The current status, then progress about once a second and every state change."""
        request = storage_pb2.RunStatusRequest()
        return self._subscribe(self._storage.StreamRunStatus, request, RunStatus.from_pb)

    async def record(
        self,
        name: str,
        *,
        frames: int = 0,
        duration: float = 0.0,
        metadata: Mapping[str, object] | None = None,
        compression: str = "",
        readings_only: bool = False,
        wait: bool = True,
        progress: Callable[[RunStatus], object] | None = None,
    ) -> RunStatus:
        """Record a run: ``frames`` camera frames and/or ``duration`` seconds (neither: until
        ``stop_run``), every reading and parameter change. With ``wait``, return the final
        status once the run has ended, calling ``progress(status)`` on each update.

        By default a run records what the bench produces: the camera's frames for the run's
        length (unless ``frames`` or ``readings_only`` say otherwise) and every reading source
        streaming while it lasts. A daemon older than that (no ``runs.every_source`` feature)
        gets it from the client while it waits (``client._run_sources``: the camera is started
        and streaming switched on for the run, then put back as they were).

        Error handling: ``InvalidArgument`` for a bad name, compression or frame count;
        ``FailedPrecondition`` while another run records; ``ResourceExhausted`` when the disk
        is low. Cancelling the wait leaves the run recording (``stop_run`` ends it).
        """
        options: dict[str, Any] = {
            "frames": frames,
            "duration": duration,
            "metadata": metadata,
            "compression": compression,
            "readings_only": readings_only,
        }
        if not wait:
            return await self.start_run(name, **options)
        sources = await RunSources.needed(self, frames=frames, readings_only=readings_only)
        try:
            await sources.before_run()
            started = await self.start_run(name, **options)
            await sources.run_started()
            status = started
            if progress is not None:
                progress(status)
            async for update in self.stream_run_status():
                if update.path != started.path:
                    continue  # still the status from before our run started
                status = update
                if progress is not None:
                    progress(status)
                if status.finished:
                    break
        finally:
            await sources.restore()
        return status

    async def runs(self) -> list[RunFile]:
        """The run files in the daemon's storage directory."""
        reply = await self._unary(
            self._storage.ListRuns, storage_pb2.ListRunsRequest(), lambda m: m
        )
        return [RunFile.from_pb(r) for r in reply.runs]

    # -- scripts (Control) --------------------------------------------------------------------

    async def upload_script(self, name: str, source: str) -> ScriptInfo:
        """Store a script in the daemon (refused, with line and column, if it does not parse)."""
        request = control_pb2.UploadScriptRequest(name=name, source=source)
        return await self._unary(self._control.UploadScript, request, ScriptInfo.from_pb)

    async def scripts(self) -> list[ScriptInfo]:
        reply = await self._unary(
            self._control.ListScripts, control_pb2.ListScriptsRequest(), lambda m: m
        )
        return [ScriptInfo.from_pb(s) for s in reply.scripts]

    async def start_script(
        self,
        name: str = "",
        *,
        source: str = "",
        params: Mapping[str, object] | None = None,
    ) -> Execution:
        """Queue an execution of an uploaded script (``name``) or of ``source``; it runs in the
        daemon and outlives this client. Not retried once sent (it would run twice)."""
        request = control_pb2.StartScriptRequest(
            name=name, source=source, parameters_json=json.dumps(dict(params or {}))
        )
        return await self._unary(
            self._control.StartScript, request, Execution.from_pb, idempotent=False
        )

    async def execution(self, execution_id: str) -> Execution:
        request = control_pb2.ExecutionRequest(id=execution_id)
        return await self._unary(self._control.GetExecution, request, Execution.from_pb)

    async def executions(self) -> list[Execution]:
        reply = await self._unary(
            self._control.ListExecutions, control_pb2.ListExecutionsRequest(), lambda m: m
        )
        return [Execution.from_pb(e) for e in reply.executions]

    async def stop_execution(
        self, execution_id: str, *, force: bool = False, reason: str = ""
    ) -> Execution:
        request = control_pb2.StopExecutionRequest(id=execution_id, force=force, reason=reason)
        return await self._unary(self._control.StopExecution, request, Execution.from_pb)

    async def output(self, execution_id: str, start: int = 0) -> list[str]:
        request = control_pb2.OutputRequest(id=execution_id, start=start)
        reply = await self._unary(self._control.GetOutput, request, lambda m: m)
        return list(reply.lines)

    async def wait_execution(self, execution_id: str, *, poll: float = 0.2) -> Execution:
        """The execution once it has ended. Polls (a reconnect-proof way to wait for hours);
        the script's output stays available with :meth:`output`."""
        while True:
            execution = await self.execution(execution_id)
            if execution.finished:
                return execution
            await asyncio.sleep(poll)

    # -- scans (Scan service): plans run by the daemon's executor ------------------------------

    async def validate_plan(self, plan: plan_pb2.Plan) -> PlanCheck:
        """Every problem the daemon finds with ``plan`` (``client.plans``) against the bench
        as it is now, and its estimate; nothing is stored, nothing moves."""
        return await self._unary(self._scan.ValidatePlan, plan, PlanCheck.from_pb)

    async def create_scan(
        self,
        plan: plan_pb2.Plan | list[tuple[str, float, float, int]],
        *,
        start: bool = False,
        read: tuple[str, ...] | list[str] = (),
        snake: bool = False,
        dwell: float = 0.0,
        settle: float = 0.0,
        frames: int = 0,
        name: str = "",
        metadata: Mapping[str, object] | None = None,
    ) -> ScanStatus:
        """Check and store a plan (``client.plans.line(...)`` …); ``start`` queues it too.

        The older form, a list of ``(device, start, stop, points)`` axes with keyword options,
        is a line scan (one axis) or a grid (two: slow, then fast; ``snake``).

        Error handling: ``InvalidArgument`` listing every problem (devices, limits, disk)
        before anything moves; ``FailedPrecondition`` with ``start`` while the e-stop is
        latched. Not retried once sent (it would create two scans).
        """
        if not isinstance(plan, plan_pb2.Plan):
            plan = _axes_plan(
                plan,
                read=read,
                snake=snake,
                dwell=dwell,
                settle=settle,
                frames=frames,
                name=name,
                metadata=metadata,
            )
        request = scan_pb2.CreateScanRequest(plan=plan, start=start)
        return await self._unary(
            self._scan.CreateScan, request, ScanStatus.from_pb, idempotent=False
        )

    async def run_scan(
        self, plan: plan_pb2.Plan, *, progress: Callable[[ScanStatus], object] | None = None
    ) -> ScanStatus:
        """Create, start and wait for a scan; ``progress(status)`` on each update. Cancelling
        the wait leaves the scan running (it belongs to the daemon: ``stop_scan``)."""
        status = await self.create_scan(plan, start=True)
        if progress is not None:
            progress(status)
        async for update in self.stream_scan(status.id):
            status = update
            if progress is not None:
                progress(status)
        return status

    async def _scan_call(self, method: Any, scan_id: str, *, idempotent: bool = True) -> ScanStatus:
        request = scan_pb2.ScanRequest(id=scan_id)
        return await self._unary(method, request, ScanStatus.from_pb, idempotent=idempotent)

    async def start_scan(self, scan_id: str) -> ScanStatus:
        return await self._scan_call(self._scan.StartScan, scan_id, idempotent=False)

    async def pause_scan(self, scan_id: str) -> ScanStatus:
        return await self._scan_call(self._scan.PauseScan, scan_id)

    async def resume_scan(self, scan_id: str) -> ScanStatus:
        return await self._scan_call(self._scan.ResumeScan, scan_id)

    async def scan(self, scan_id: str) -> ScanStatus:
        return await self._scan_call(self._scan.GetScan, scan_id)

    async def stop_scan(self, scan_id: str, *, force: bool = False, reason: str = "") -> ScanStatus:
        """Stop at the next point (or, ``force``, abort at once: the axis in motion stops)."""
        request = scan_pb2.StopScanRequest(id=scan_id, reason=reason)
        method = self._scan.AbortScan if force else self._scan.StopScan
        return await self._unary(method, request, ScanStatus.from_pb)

    async def scans(self) -> list[ScanStatus]:
        """Every scan the daemon keeps (from clients and scripts alike), oldest first."""
        reply = await self._unary(self._scan.ListScans, scan_pb2.ListScansRequest(), lambda m: m)
        return [ScanStatus.from_pb(s) for s in reply.scans]

    def stream_scan(self, scan_id: str) -> AsyncIterator[ScanStatus]:
        """The scan's status on each change until it ends (latest-only)."""
        request = scan_pb2.ScanRequest(id=scan_id)
        return self._subscribe(self._scan.StreamScan, request, ScanStatus.from_pb)

    async def scan_events(self, scan_id: str, since: int = 0) -> AsyncIterator[ScanEvent]:
        """Every event of the scan from ``since`` on (started, one per point, suspended /
        resumed, paused, ended), then live ones until it ends. Nothing is skipped: after a
        dropped connection it carries on from the next event it had not seen."""
        backoff = _Backoff(self.retry, self.address)
        method = self._scan.StreamScanEvents
        while True:
            self._check_open("StreamScanEvents")
            request = scan_pb2.ScanEventsRequest(id=scan_id, since=since)
            try:
                async with method.open(metadata=self._metadata) as stream:
                    await stream.send_message(request, end=True)
                    while (message := await stream.recv_message()) is not None:
                        backoff = _Backoff(self.retry, self.address)
                        event = ScanEvent.from_pb(message)
                        since = event.seq + 1 if event.kind != "gap" else event.seq + event.missed
                        yield event
                return
            except GRPCError as error:
                raise from_grpc(error) from None
            except CONNECTION_ERRORS as error:
                await backoff.wait(error, "StreamScanEvents")

    async def documents(self, run: str | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Bluesky documents as ``(name, doc)`` pairs, live: every run from now on (``run``
        None: the start, descriptors and stream resources of runs already recording come
        first), or one run's (a uid, a name as ``runs()`` gives it, or a path) until its stop.
        Feed them to any Bluesky callback (``event_model.RunRouter``, ``LiveTable``, a
        ``TiledWriter``). After a dropped connection it carries on after the last document
        received, nothing repeated. A run that has ended: :meth:`run_documents`."""
        backoff = _Backoff(self.retry, self.address)
        method = self._documents.StreamDocuments
        since: int | None = None
        while True:
            self._check_open("StreamDocuments")
            request = documents_pb2.StreamDocumentsRequest(
                run=run or "", resume=since is not None, since=since or 0
            )
            try:
                async with method.open(metadata=self._metadata) as stream:
                    await stream.send_message(request, end=True)
                    while (message := await stream.recv_message()) is not None:
                        backoff = _Backoff(self.retry, self.address)
                        since = message.seq + 1
                        yield message.name, json.loads(message.json)
                return
            except GRPCError as error:
                raise from_grpc(error) from None
            except CONNECTION_ERRORS as error:
                await backoff.wait(error, "StreamDocuments")

    async def run_documents(self, run: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """A finished run's documents rebuilt from its file, ``(name, doc)`` from start to
        stop (the same start uid and descriptors as its live stream). ``run``: a uid, a name
        as ``runs()`` gives it, or a path."""
        method = self._documents.GetRunDocuments
        self._check_open("GetRunDocuments")
        request = documents_pb2.GetRunDocumentsRequest(run=run)
        try:
            async with method.open(metadata=self._metadata) as stream:
                await stream.send_message(request, end=True)
                while (message := await stream.recv_message()) is not None:
                    yield message.name, json.loads(message.json)
        except GRPCError as error:
            raise from_grpc(error) from None
        except CONNECTION_ERRORS as error:
            raise ConnectionLost(
                f"GetRunDocuments: the connection to {self.address} dropped: {error}"
                " (ask again: the documents are rebuilt from the file)"
            ) from error

    async def scan_table(self, scan_id: str) -> pa.Table:
        """The scan's table (positions and readings per point, units in the fields' metadata)
        as a ``pyarrow.Table``; ``.to_pandas()`` gives a DataFrame if pandas is installed.

        Error handling: ``ModuleNotFoundError`` naming the extra to install without pyarrow
        (the base client install leaves it out: ``pip install 'benchd[tables]'``)."""
        pa = _pyarrow()
        batches: list[Any] = []
        start = 0
        while True:
            request = scan_pb2.ScanTableRequest(id=scan_id, start=start)
            reply = await self._unary(self._scan.GetScanTable, request, lambda m: m)
            table = pa.ipc.open_stream(reply.arrow_ipc).read_all()
            batches.append(table)
            start += reply.rows
            if reply.rows == 0 or start >= reply.total:
                break
        return pa.concat_tables(batches) if len(batches) > 1 else batches[0]

    async def wait_scan(self, scan_id: str, *, poll: float = 0.2) -> ScanStatus:
        while True:
            status = await self.scan(scan_id)
            if status.finished:
                return status
            await asyncio.sleep(poll)

    # -- scripts: check, pause, resume ---------------------------------------------------------

    async def check_script(self, source: str) -> ScriptCheck:
        """Parse and lint ``source`` without storing it: syntax errors and warnings with their
        line and column (``ok`` is False if it would not run)."""
        request = control_pb2.CheckScriptRequest(source=source)
        return await self._unary(self._control.CheckScript, request, ScriptCheck.from_pb)

    async def pause_execution(self, execution_id: str) -> Execution:
        """Pause at a scan's next point or the script's next builtin call."""
        request = control_pb2.ExecutionRequest(id=execution_id)
        return await self._unary(self._control.PauseExecution, request, Execution.from_pb)

    async def resume_execution(self, execution_id: str) -> Execution:
        request = control_pb2.ExecutionRequest(id=execution_id)
        return await self._unary(self._control.ResumeExecution, request, Execution.from_pb)

    # -- camera preview (Preview service) ------------------------------------------------------

    def stream_preview(
        self,
        camera: str = "camera",
        *,
        max_fps: float = 25.0,
        max_width: int = 512,
        max_height: int = 512,
        reduction: str = "mean",
        timeout: float | None = None,
    ) -> AsyncIterator[PreviewFrame]:
        """Live frames reduced in the daemon to at most ``max_width`` x ``max_height`` pixels,
        at most ``max_fps`` a second: what a live view over a network needs, never the camera's
        full rate. ``reduction``: "mean" (binning; counts keep their scale), "decimate" (every
        n-th pixel) or "max" (a hot pixel stays visible). Latest-only, like ``stream_frames``;
        it only watches: start an acquisition or a run with frames for frames to flow.

        Error handling: ``ValueError`` for an unknown reduction; ``InvalidArgument`` for
        limits out of range (0.1-100 fps, 16-4096 pixels); ``DeadlineExceeded`` when no frame
        came for ``timeout`` seconds (None, the default: wait for ever, as a live view does).
        """
        if reduction not in PREVIEW_REDUCTIONS:
            raise ValueError(
                f"reduction {reduction!r} is not one of {', '.join(PREVIEW_REDUCTIONS)}"
            )
        request = preview_pb2.PreviewRequest(
            device=camera,
            max_fps=max_fps,
            max_width=max_width,
            max_height=max_height,
            reduction=PREVIEW_REDUCTIONS[reduction],
        )
        return self._subscribe(
            self._preview.StreamPreview,
            request,
            PreviewFrame.from_pb,
            timeout=timeout,
            silent=f"no frame from {camera}: frames flow while an acquisition runs"
            " (start_acquisition) or a run records frames",
        )


def _axes_plan(
    axes: list[tuple[str, float, float, int]],
    *,
    read: tuple[str, ...] | list[str],
    snake: bool,
    dwell: float,
    settle: float,
    frames: int,
    name: str,
    metadata: Mapping[str, object] | None,
) -> plan_pb2.Plan:
    """The older ``create_scan(axes, ...)`` form as a plan: one axis a line, two a grid."""
    options: dict[str, Any] = {
        "read": list(read),
        "dwell": dwell,
        "settle": settle,
        "frames": frames,
        "name": name,
        "metadata": metadata,
    }
    if len(axes) == 1:
        device, start, stop, points = axes[0]
        return plans.line(device, start, stop, points, **options)
    dims = [(d, a, b, n, snake and i > 0) for i, (d, a, b, n) in enumerate(axes)]
    return plans.grid(*dims, **options)
