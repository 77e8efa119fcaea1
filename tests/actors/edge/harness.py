"""A running simulated bench with the edge actor, and a grpclib client over real loopback TCP.

The client runs on the test's own trio-asyncio loop; ``call`` runs one asyncio coroutine from
the trio test. Every RPC goes through a real socket, HTTP/2 and the edge's servicers.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio_asyncio
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from actors.edge import EDGE_NAME, Edge, EdgeAddress
from benchd.v1 import (
    control_grpc,
    daemon_grpc,
    estop_grpc,
    hardware_grpc,
    health_grpc,
    preset_grpc,
    scan_grpc,
    storage_grpc,
)
from runtime.config import BenchConfig, EdgeConfig, StorageConfig
from supervisors import ActorSpec
from supervisors.bench import Bench, open_bench, simulated_bench_config

T = TypeVar("T")


@dataclass
class Client:
    bench: Bench
    address: str
    channel: Channel
    hardware: hardware_grpc.HardwareStub
    estop: estop_grpc.EmergencyStopStub
    health: health_grpc.HealthStub
    preset: preset_grpc.PresetStub
    daemon: daemon_grpc.DaemonInfoStub
    storage: storage_grpc.StorageStub
    control: control_grpc.ControlStub
    scan: scan_grpc.ScanStub

    async def call(self, coroutine: Callable[[], Awaitable[T]]) -> T:
        return await trio_asyncio.aio_as_trio(coroutine)()  # type: ignore[no-any-return]

    async def unary(self, method: Any, request: Any, **kwargs: Any) -> Any:
        return await self.call(lambda: method(request, **kwargs))

    async def fails(self, status: Status, method: Any, request: Any, **kwargs: Any) -> str:
        """The error message of a call that must fail with ``status``."""
        try:
            reply = await self.unary(method, request, **kwargs)
        except GRPCError as error:
            assert error.status is status, (error.status, error.message)
            assert error.message
            return error.message
        raise AssertionError(f"expected {status}, got a reply: {reply}")

    async def stream(
        self,
        method: Any,
        request: Any,
        count: int,
        *,
        between: Callable[[], Awaitable[Any]] | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """The first ``count`` messages of a server stream (``between`` runs after the first)."""

        async def read() -> list[Any]:
            received = []
            async with method.open(**kwargs) as stream:
                await stream.send_message(request, end=True)
                while len(received) < count:
                    message = await stream.recv_message()
                    if message is None:
                        break
                    received.append(message)
                    if len(received) == 1 and between is not None:
                        await between()
                await stream.cancel()
            return received

        return await self.call(read)


@contextlib.asynccontextmanager
async def open_client(
    tmp_path: Path,
    *,
    config: BenchConfig | None = None,
    edge: EdgeConfig | None = None,
    metadata: Sequence[tuple[str, str]] = (),
    health_period: float = 0.2,
    ping_timeout: float = 1.0,
) -> AsyncIterator[Client]:
    edge = edge or EdgeConfig(port=0, presets_dir=tmp_path / "presets", disk_path=tmp_path)
    if config is None:  # runs and the camera's ring go to the test's own folder
        storage = StorageConfig(directory=tmp_path / "runs", ring_directory=tmp_path, min_free_mb=0)
        config = dataclasses.replace(simulated_bench_config(), storage=storage)
    spec = ActorSpec(
        EDGE_NAME,
        lambda: Edge(
            edge, bench="simulated", health_period=health_period, ping_timeout=ping_timeout
        ),
    )
    async with open_bench(config, services=[spec]) as bench:
        address = await bench.system.ref(EDGE_NAME).ask(EdgeAddress())
        host, port = address.rsplit(":", 1)
        async with trio_asyncio.open_loop():

            async def connect() -> Channel:
                return Channel(host, int(port))

            channel = await trio_asyncio.aio_as_trio(connect)()
            try:
                yield Client(
                    bench,
                    address,
                    channel,
                    hardware_grpc.HardwareStub(channel),
                    estop_grpc.EmergencyStopStub(channel),
                    health_grpc.HealthStub(channel),
                    preset_grpc.PresetStub(channel),
                    daemon_grpc.DaemonInfoStub(channel),
                    storage_grpc.StorageStub(channel),
                    control_grpc.ControlStub(channel),
                    scan_grpc.ScanStub(channel),
                )
            finally:
                channel.close()
