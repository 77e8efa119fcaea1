"""The edge actor: the gRPC server of the daemon, living inside the actor tree.

It opens a trio-asyncio loop and runs grpclib's asyncio Server inside it, so trio stays the top
level: the edge is started, supervised, restarted and stopped like any other actor, and tested
under pytest-trio. Servicers (one module per proto service) hand work to trio through the
:class:`~._bridge.Bridge`; a :class:`~.health.HealthMonitor` task keeps heartbeats, alerts and
the grpc.health.v1 status current.

Error handling: a bad tokens file or TLS key is a ConfigError at start (the daemon checks it
before anything starts, see :func:`check_edge_config`); a port already in use fails ``on_start``
(OSError) and the supervisor retries. No request can crash the edge or a device: every servicer
error becomes a status (``errors.py``), and grpclib answers anything unexpected with INTERNAL.
"""

from __future__ import annotations

import importlib.metadata
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import trio
import trio_asyncio
from grpclib.config import Configuration
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection

from runtime import Actor, Message, Request
from runtime.config import ConfigError, EdgeConfig

from ._bridge import Bridge
from ._codec import EdgeCodec
from ._context import EdgeContext, EventLog
from ._guard import RequestGuard
from ._preset_store import PresetStore
from ._priority import EdgeServer, PriorityStops
from .audit import run_file_sink
from .auth import Authenticator
from .control import ControlServicer
from .daemon_info import DaemonInfoServicer
from .documents import DocumentsServicer
from .estop import EmergencyStopServicer, StopEvent
from .frames import CameraHardwareServicer
from .health import HealthMonitor, HealthServicer, HealthState
from .limits import RequestLimits
from .preset import PresetServicer
from .preview import PreviewServicer
from .scan import ScanServicer
from .storage import StorageServicer

logger = logging.getLogger("actors.edge")

EDGE_NAME = "edge"
#: The HTTP/2 flow-control windows the edge advertises: how much a client may send before the
#: edge has read it (per stream, and per connection). They bound what a client can make the
#: daemon buffer and parse ahead of the guard's checks, while a legitimate large request
#: (a script) still flows, acknowledged as it is read. They do not limit what the edge sends:
#: frames flow within the *client's* windows (docs/edge.md, "Frames").
WINDOW = 64 * 1024


@dataclass(frozen=True, slots=True)
class EdgeAddress(Request[str]):
    """Reply: ``host:port`` the edge listens on (the real port when configured with 0)."""


def check_edge_config(config: EdgeConfig) -> tuple[Authenticator, ssl.SSLContext | None]:
    """The authenticator and TLS context for ``config``; ConfigError naming what is wrong."""
    authenticator = Authenticator.from_config(config)
    if config.tls_cert is None or config.tls_key is None:
        return authenticator, None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            str(config.tls_cert), "edge.tls_cert", f"cannot load the certificate and key: {exc}"
        ) from exc
    context.set_alpn_protocols(["h2"])
    return authenticator, context


def probe_listen(config: EdgeConfig) -> None:
    """ConfigError now, with the reason, if the edge could not listen where it is told to
    (the daemon calls it before starting anything; the edge itself would only crash-loop)."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    try:
        _listen(config.host, config.port, family).close()
    except OSError as exc:
        raise ConfigError(
            config.source, "edge.listen", f"cannot listen on {config.listen}: {exc.strerror or exc}"
        ) from exc


def _listen(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """A listening TCP socket, bound before the server starts so the real port is known.

    ``proto=IPPROTO_TCP`` matters: asyncio sets TCP_NODELAY only on sockets that say they are
    TCP, and without it every unary call waits ~40 ms for a delayed ACK (Nagle).
    """
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except BaseException:
        listener.close()
        raise
    return listener


def _version() -> str:
    try:
        return importlib.metadata.version("benchd")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Edge(Actor):
    """Serves the gRPC API of the actor system it runs in."""

    stop_timeout = 5.0

    def __init__(
        self,
        config: EdgeConfig,
        *,
        bench: str = "",
        health_period: float = 2.0,
        ping_timeout: float = 1.0,
    ) -> None:
        self.config = config
        self.bench = bench
        self.health_period = health_period
        self.ping_timeout = ping_timeout
        self.address = ""

    async def on_start(self) -> None:
        self.address = await self.nursery.start(self._serve)

    async def handle(self, message: Message) -> Any:
        if isinstance(message, EdgeAddress):
            return self.address
        return await super().handle(message)

    async def _serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        authenticator, tls = check_edge_config(self.config)
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        listener = _listen(self.config.host, self.config.port, family)
        host, port = listener.getsockname()[:2]
        address = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        try:
            async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
                bridge = Bridge()
                await nursery.start(bridge.run)
                context = EdgeContext(
                    system=self.system,
                    bridge=bridge,
                    auth=authenticator,
                    config=self.config,
                    bench=self.bench,
                    version=_version(),
                    edge_name=self.name,
                    tls=tls is not None,
                )
                health = HealthState()
                serving = ServiceStatus()
                estop = EmergencyStopServicer(context, EventLog[StopEvent]())
                services: list[Any] = [
                    CameraHardwareServicer(context),
                    estop,
                    HealthServicer(context, health),
                    PresetServicer(context, PresetStore(self.config.presets_dir)),
                    DaemonInfoServicer(context),
                    StorageServicer(context),
                    ControlServicer(context),
                    ScanServicer(context),
                    PreviewServicer(context),
                    DocumentsServicer(context),
                ]
                services.append(Health({service: [serving] for service in services}))
                services = ServerReflection.extend(services)
                limits = RequestLimits.from_config(self.config)
                context.audit.add_sink(run_file_sink(self.system))  # /entry/audit of a run
                guard = RequestGuard(limits, auth=authenticator, audit=context.audit)
                services = guard.wrap(services)
                stops = PriorityStops(authenticator, limits, nursery, estop.broadcast)
                estop.priority = stops

                async def start() -> EdgeServer:
                    server = EdgeServer(
                        services,
                        stops=stops,
                        codec=EdgeCodec(),
                        config=Configuration(
                            http2_connection_window_size=WINDOW, http2_stream_window_size=WINDOW
                        ),
                    )
                    await server.start(sock=listener, ssl=tls)  # the guard checks tokens
                    return server

                server = await trio_asyncio.aio_as_trio(start)()
                monitor = HealthMonitor(
                    context,
                    health,
                    serving.set,
                    period=self.health_period,
                    ping_timeout=self.ping_timeout,
                )
                nursery.start_soon(monitor.run)
                nursery.start_soon(context.timeouts.run)
                nursery.start_soon(estop.watch)
                logger.info(
                    "gRPC edge listening on %s (auth: %s; TLS: %s)",
                    address,
                    f"tokens from {self.config.tokens_file}"
                    if authenticator.enabled
                    else "none, loopback only: every local client is an operator",
                    "on" if tls else "off",
                )
                task_status.started(address)
                try:
                    await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(self.stop_timeout / 2):
                        server.close()
                        await trio_asyncio.aio_as_trio(server.wait_closed)()
                        server.close_connections()
                    nursery.cancel_scope.cancel()
        finally:
            listener.close()  # the server closed it already, unless it never started
