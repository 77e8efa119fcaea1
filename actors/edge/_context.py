"""What every servicer shares: the actor system, the bridge, auth, and device look-ups.

Device look-ups happen on the asyncio side before anything is handed to trio, so a request for
an unknown or degraded device is answered at once without touching any actor.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import outcome
import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from runtime import (
    ActorError,
    ActorRef,
    ActorState,
    ActorSystem,
    AskTimeout,
    BenchError,
    ListParameters,
    NotFoundError,
    Request,
    UnhandledMessage,
)
from runtime.config import EdgeConfig

from ..acquisition.executor import EXECUTOR_NAME
from ..capabilities import Capability, Describe, DeviceInfo
from ..documents.actor import DOCUMENTS_NAME, PUBLISHER_NAME
from ..pipeline.recorder import RECORDER_NAME
from ..scripting.runner import RUNNER_NAME
from ._bridge import Bridge, clamp_timeout
from ._convert import state_label
from .audit import AuditTrail
from .auth import LOCAL, Authenticator, Client
from .errors import grpc_error, invalid, quote

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0  # an ask without a wait: parameter reads and writes, positions
DEFAULT_WAIT = 60.0  # a move or settle with wait and no timeout given
#: The bench's own services by name (supervisors/bench.py's pipeline): the recorder, the script
#: runner, the plans executor, the documents actor and the Tiled publisher. Frame rings are
#: "<camera>.ring".
SERVICE_NAMES = frozenset(
    {RECORDER_NAME, RUNNER_NAME, EXECUTOR_NAME, DOCUMENTS_NAME, PUBLISHER_NAME}
)


class EventLog(Generic[T]):
    """Events kept in order (the last ``capacity``) for any number of followers."""

    def __init__(self, capacity: int = 1000) -> None:
        self._events: collections.deque[tuple[int, T]] = collections.deque(maxlen=capacity)
        self._next = 0
        self._changed = trio.Event()

    @property
    def next_index(self) -> int:
        return self._next

    def append(self, event: T) -> None:
        self._events.append((self._next, event))
        self._next += 1
        self._changed.set()
        self._changed = trio.Event()

    async def follow(self, since: int) -> AsyncIterator[T]:
        """Every event from index ``since`` on, waiting for new ones (trio side)."""
        while True:
            changed = self._changed
            for index, event in list(self._events):
                if index >= since:
                    since = index + 1
                    yield event
            if self._next <= since:
                await changed.wait()


class Timeouts:
    """Times out the hot path's pending requests with one periodic sweep for all of them.

    A per-request asyncio timer (``call_later``) costs two extra passes of the trio-asyncio
    loop (one to file the timer, one when the cancelled timer comes due seconds later); a dict
    entry costs nothing measurable. Resolution: ``period`` seconds.
    """

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self._pending: dict[int, tuple[float, Callable[[], None]]] = {}
        self._next = 0

    def add(self, seconds: float, expire: Callable[[], None]) -> int:
        key = self._next
        self._next += 1
        self._pending[key] = (time.monotonic() + seconds, expire)
        return key

    def remove(self, key: int) -> None:
        self._pending.pop(key, None)

    async def run(self) -> None:
        while True:
            await trio.sleep(self.period)
            now = time.monotonic()
            for key, (deadline, expire) in list(self._pending.items()):
                if deadline <= now:
                    del self._pending[key]
                    expire()


@dataclass
class DeviceCache:
    """What a device said about itself, per instance (refreshed after each restart)."""

    restarts: int
    info: DeviceInfo
    position_limits: tuple[float, float] | None


@dataclass
class EdgeContext:
    system: ActorSystem
    bridge: Bridge
    auth: Authenticator
    config: EdgeConfig
    bench: str
    version: str
    edge_name: str
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    tls: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: One record per mutating request; ``audit.add_sink`` feeds the entries elsewhere.
    audit: AuditTrail = field(default_factory=AuditTrail)
    _devices: dict[str, DeviceCache] = field(default_factory=dict)
    # actors that answered Describe as unhandled: the daemon's own services, not instruments
    _services: set[str] = field(default_factory=set)

    # -- who is asking --------------------------------------------------------------------------

    def client(self, stream: Stream[Any, Any]) -> Client:
        if not self.auth.enabled:
            return LOCAL
        return self.auth.client(stream.metadata)  # type: ignore[arg-type]

    # -- devices --------------------------------------------------------------------------------

    def device_names(self) -> list[str]:
        return [name for name in self.system.names() if name != self.edge_name]

    def ref(self, name: str, *, ready: bool = True) -> ActorRef:
        """The device's ref; NOT_FOUND / UNAVAILABLE (degraded or down) answered here."""
        if not name:
            raise invalid(f"device is required; devices: {', '.join(self.device_names())}")
        if name == self.edge_name:
            raise GRPCError(Status.NOT_FOUND, f"{quote(name)} is the gRPC edge, not a device")
        try:
            ref = self.system.ref(name)
        except NotFoundError as exc:
            devices = [n for n in self.device_names() if self.kind(n) == "device"]
            services = [n for n in self.device_names() if self.kind(n) == "service"]
            raise GRPCError(
                Status.NOT_FOUND,
                f"no device named {quote(name)}; devices: {', '.join(devices) or 'none'}"
                f" (services: {', '.join(services) or 'none'})",
            ) from exc
        if ready and ref.state is not ActorState.RUNNING:
            stats = ref.statistics()
            if stats.state is not ActorState.RUNNING:
                why = f"; last failure: {stats.last_failure}" if stats.last_failure else ""
                raise GRPCError(
                    Status.UNAVAILABLE,
                    f"device {name!r} is {state_label(stats.state)} ({stats.state}){why};"
                    " it takes requests again once it is ready",
                )
        return ref

    def cached(self, ref: ActorRef) -> DeviceCache | None:
        """What :meth:`describe` found for this instance of the device, if it ran already."""
        cached = self._devices.get(ref.name)
        if cached is not None and cached.restarts == ref.statistics().restarts:
            return cached
        return None

    async def describe(self, ref: ActorRef) -> DeviceCache | None:
        """Describe + position limits, cached per instance (trio side); None if it cannot."""
        restarts = ref.statistics().restarts
        cached = self._devices.get(ref.name)
        if cached is not None and cached.restarts == restarts:
            return cached
        try:
            info = await ref.ask(Describe(), timeout=2.0)
            infos = await ref.ask(ListParameters(), timeout=2.0)
        except ActorError as exc:
            if isinstance(exc.cause, UnhandledMessage):
                self._services.add(ref.name)
            return None
        except BenchError:
            return None
        limits = next((p.limits for p in infos if p.name == "position"), None)
        cached = self._devices[ref.name] = DeviceCache(restarts, info, limits)
        return cached

    def kind(self, name: str) -> str:
        """Device or service: "service" for the daemon's own actors (the recorder, a frame
        ring, the script runner, the plans executor, any actor that is no instrument: it does
        not answer Describe), else "device". Known by name even while a service is down, so a
        list never flips."""
        if name in SERVICE_NAMES or name.endswith(".ring") or name in self._services:
            return "service"
        return "device"

    async def capable(self, capability: Capability) -> list[str]:
        """The ready devices that have ``capability`` (trio side)."""
        names = []
        for name in self.device_names():
            ref = self.system.ref(name)
            if ref.statistics().state is ActorState.RUNNING:
                cached = await self.describe(ref)
                if cached is not None and capability in cached.info.capabilities:
                    names.append(name)
        return names

    # -- asking -----------------------------------------------------------------------------------

    async def request(
        self,
        stream: Stream[Any, Any],
        ref: ActorRef,
        message: Request[T],
        *,
        timeout: float = 0.0,
        default: float = DEFAULT_TIMEOUT,
    ) -> T:
        """Ask one actor from asyncio: the hot path, with no trio task per request.

        ``try_ask`` puts the request straight into the actor's mailbox; the actor's reply
        resolves an asyncio Future on this same thread. The timeout (the request's, never past
        the client's deadline) is kept by :class:`Timeouts`; giving up abandons the request, so
        one still queued is never run later. Kernel errors become statuses.
        """
        remaining = stream.deadline.time_remaining() if stream.deadline else None
        seconds = clamp_timeout(timeout, remaining, default)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def resolve(result: outcome.Outcome[Any]) -> None:
            if future.done():
                return
            if isinstance(result, outcome.Error):
                future.set_exception(result.error)
            elif isinstance(result, outcome.Value):
                future.set_result(result.value)

        def expire() -> None:
            if not future.done():
                future.set_exception(AskTimeout(ref.name, message, seconds))

        try:
            slot = ref.try_ask(message, resolve)
        except BenchError as exc:
            raise grpc_error(exc) from exc
        if slot is None:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"device {ref.name!r} has a full mailbox ({ref.statistics().normal_capacity}"
                " requests queued); retry later",
            )
        timer = self.timeouts.add(seconds, expire)
        try:
            return await future
        except Exception as exc:
            raise grpc_error(exc) from exc
        finally:
            self.timeouts.remove(timer)
            if not slot.filled:
                slot.abandon()

    async def ask(
        self,
        stream: Stream[Any, Any],
        work: Callable[[float], Any],
        *,
        timeout: float = 0.0,
        default: float = DEFAULT_TIMEOUT,
    ) -> Any:
        """Run ``work(timeout)`` on the trio side; kernel errors become statuses."""
        remaining = stream.deadline.time_remaining() if stream.deadline else None
        seconds = clamp_timeout(timeout, remaining, default)
        try:
            return await self.bridge.call(lambda: work(seconds))
        except GRPCError:
            raise
        except Exception as exc:
            raise grpc_error(exc) from exc

    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic
