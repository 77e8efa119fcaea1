"""Using the client from trio: :func:`open_trio_bench` (trio-asyncio underneath).

``from client.trio_bench import open_trio_bench``.

grpclib speaks asyncio; trio-asyncio runs an asyncio loop inside the trio run, so the same
:class:`AsyncBench` serves trio code without a thread::

    async with open_trio_bench("127.0.0.1:50051") as bench:
        moved = await bench.call(bench.client.move_to, "esp300.axis1", 12.5)
        async with bench.iterate(bench.client.stream_parameters("maitai")) as values:
            async for value in values:
                ...

``bench.call(f, *args)`` runs one coroutine function of the AsyncBench on the asyncio side and
returns its result to trio (``trio_asyncio.aio_as_trio``); ``bench.iterate(stream)`` does the
same for a stream, item by item, and ends it when its block is left. Cancelling the trio side
(a cancel scope, a deadline) cancels the RPC.

Error handling: the BenchError subclasses, raised in trio; leaving the block closes the channel
and the asyncio loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import trio
import trio_asyncio

from ._async import DEFAULT_TIMEOUT, TLS, AsyncBench, RetryPolicy

T = TypeVar("T")
P = ParamSpec("P")


class TrioBench:
    """An :class:`AsyncBench` (``.client``) and the two adapters trio code needs."""

    def __init__(self, client: AsyncBench) -> None:
        self.client = client

    async def call(
        self, function: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        result: T = await trio_asyncio.aio_as_trio(function)(*args, **kwargs)
        return result

    @asynccontextmanager
    async def iterate(self, stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
        """``async with bench.iterate(stream) as values: async for value in values: ...``;
        leaving the block ends the stream on the daemon (breaking out early is fine)."""

        async def values() -> AsyncGenerator[T, None]:
            while True:
                try:
                    value: T = await trio_asyncio.aio_as_trio(stream.__anext__)()
                except StopAsyncIteration:
                    return
                yield value

        iterator = values()
        try:
            yield iterator
        finally:
            await iterator.aclose()
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await trio_asyncio.aio_as_trio(aclose)()


@asynccontextmanager
async def open_trio_bench(
    address: str | None = None,
    *,
    token: str | None = None,
    tls: TLS = None,
    retry: RetryPolicy | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AsyncIterator[TrioBench]:
    """Open an asyncio loop in this trio run, connect, and yield a :class:`TrioBench`."""
    options: dict[str, Any] = {"token": token, "tls": tls, "retry": retry, "timeout": timeout}
    async with trio_asyncio.open_loop():
        client = await trio_asyncio.aio_as_trio(AsyncBench.connect)(address, **options)
        try:
            yield TrioBench(client)
        finally:
            await trio_asyncio.aio_as_trio(client.close)()
