"""The e-stop's priority path: the stop is broadcast as soon as its request is off the socket.

Why: grpclib runs each request as an asyncio task, and under trio-asyncio every asyncio
callback takes one turn of the trio scheduler. With 50 hostile clients keeping hundreds of
callbacks queued, an EmergencyStop waited 30-170 ms for its servicer's first step (measured
with ``benchmarks/edge.py --hostile``) — behind requests that were all going to be refused.

How: :class:`EdgeServer` (grpclib's ``Server``) hands each connection's request handler to a
:class:`_PriorityHandler`, which sees every request's headers the moment HTTP/2 parses them —
synchronously, inside the trio task reading that socket, before any asyncio task exists for
the request. For ``EmergencyStop`` from a client the tokens allow, it watches the request's
body as its DATA frames are added to the stream's buffer; once the message is complete and
within the limits, a trio task broadcasts the stop in the next scheduler pass, ahead of all
that asyncio has queued. The servicer runs later as it always did — reads and validates the
same request — and replies with the report of the stop already made: one request, one stop.
A request that is malformed, over a limit or not allowed is left to the servicer and the
guard, which refuse it as for any other method (nothing is stopped).

grpclib internals used (0.4, pinned): ``Server._protocol_factory`` (overridden to wrap the
handler) and the HTTP/2 stream's ``buffer`` (replaced, before any data, by a subclass that
also reports what is added). tests/actors/edge/test_limits.py fails loudly if they change.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from google.protobuf.message import DecodeError
from grpclib.exceptions import GRPCError
from grpclib.metadata import decode_metadata
from grpclib.protocol import AbstractHandler, Buffer, H2Protocol
from grpclib.protocol import Stream as H2Stream
from grpclib.server import Server

from benchd.v1 import estop_pb2 as pb
from runtime import EmergencyStopReport

from ._bridge import shutting_down
from ._wire import check_bytes
from .auth import LOCAL, Authenticator
from .errors import RequestRefused
from .limits import REASON_CHARS, RequestLimits

logger = logging.getLogger("actors.edge")

ESTOP_METHOD = "/benchd.v1.EmergencyStop/EmergencyStop"
#: The largest EmergencyStop message the priority path reads (a reason at its limit, 4 bytes a
#: character); a longer one is left to the servicer, which refuses it.
MESSAGE_BYTES = 4 * REASON_CHARS + 16

_DESCRIPTOR: Any = pb.EmergencyStopRequest.DESCRIPTOR
#: Broadcasts the stop: (client's reason, who) -> (the report, time.monotonic() of the broadcast).
Broadcast = Callable[[str, str], Awaitable[tuple[EmergencyStopReport, float]]]


@dataclass
class EarlyStop:
    """An e-stop broadcast from its request's bytes, for the servicer to report."""

    reason: str
    who: str
    report: asyncio.Future[tuple[EmergencyStopReport, float]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PriorityStops:
    """Starts e-stops from the HTTP/2 layer; the EmergencyStop servicer picks them up."""

    def __init__(
        self,
        auth: Authenticator,
        limits: RequestLimits,
        nursery: trio.Nursery,
        broadcast: Broadcast,
    ) -> None:
        self._auth = auth
        self._limits = limits
        self._nursery = nursery
        self._broadcast = broadcast
        self._started: weakref.WeakKeyDictionary[H2Stream, EarlyStop] = weakref.WeakKeyDictionary()

    def take(self, stream: H2Stream) -> EarlyStop | None:
        """The stop already started for this request, if the priority path started one."""
        return self._started.pop(stream, None)

    def watch(self, stream: H2Stream, headers: list[tuple[str, str]]) -> None:
        """Called as the request's headers are parsed: watch its body if it may stop."""
        try:
            metadata: Any = decode_metadata(headers)
            client = self._auth.client(metadata) if self._auth.enabled else LOCAL
        except GRPCError:
            return  # the guard answers UNAUTHENTICATED as for any request
        peer = stream.connection.get_peer().addr()
        who = f"{client.name} ({client.role.label}) from {peer[0] if peer else 'unknown'}"
        request = weakref.ref(stream)  # the stream owns the buffer that holds this: no cycle

        def complete(message: bytes) -> None:
            alive = request()
            if alive is not None:
                self._start(alive, message, who)

        watch = _Watch(complete)
        assert stream.id is not None  # the stream exists: its headers were just received
        stream.buffer = _WatchedBuffer(partial(stream.connection.ack, stream.id), watch.added)

    def _start(self, stream: H2Stream, message: bytes, who: str) -> None:
        try:  # the very checks the servicer's read makes: both accept it, or neither
            check_bytes(message, _DESCRIPTOR, self._limits)
            request = pb.EmergencyStopRequest.FromString(message)
            self._limits.check(request)
        except (DecodeError, RequestRefused):
            return  # the servicer reads the same bytes and refuses them
        stop = EarlyStop(request.reason, who)
        self._started[stream] = stop
        self._nursery.start_soon(self._run, stop)

    async def _run(self, stop: EarlyStop) -> None:
        try:
            result = await self._broadcast(stop.reason, stop.who)
        except BaseException as error:  # reported by the servicer, which waits for it
            if not stop.report.done():
                stop.report.set_exception(
                    error if isinstance(error, Exception) else shutting_down()
                )
            if not isinstance(error, Exception):
                raise  # cancelled: the edge is stopping
        else:
            if not stop.report.done():
                stop.report.set_result(result)


class _Watch:
    """Collects the first message of a request body; hands it on once, when complete."""

    def __init__(self, complete: Callable[[bytes], None]) -> None:
        self._complete = complete
        self._body = bytearray()
        self._done = False

    def added(self, data: bytes) -> None:
        if self._done:
            return
        self._body += data
        if len(self._body) < 5:
            return
        size = int.from_bytes(self._body[1:5], "big")
        if self._body[0] != 0 or size > MESSAGE_BYTES:
            self._done = True  # not ours to judge: the servicer refuses it
        elif len(self._body) >= 5 + size:
            self._done = True
            self._complete(bytes(self._body[5 : 5 + size]))


class _WatchedBuffer(Buffer):
    """grpclib's stream buffer, also handing each piece of data to a watcher."""

    def __init__(self, ack: Callable[[int], None], added: Callable[[bytes], None]) -> None:
        super().__init__(ack)
        self._added = added

    def add(self, data: bytes, ack_size: int) -> None:
        super().add(data, ack_size)
        self._added(data)


class _PriorityHandler(AbstractHandler):
    """grpclib's per-connection request handler, with e-stops seen at their headers."""

    def __init__(self, inner: AbstractHandler, stops: PriorityStops) -> None:
        self._inner = inner
        self._stops = stops

    def accept(self, stream: H2Stream, headers: Any, release_stream: Callable[[], Any]) -> None:
        for name, value in headers:
            if name == ":path":
                if value == ESTOP_METHOD:
                    self._stops.watch(stream, headers)
                break
        self._inner.accept(stream, headers, release_stream)

    def cancel(self, stream: H2Stream) -> None:
        self._inner.cancel(stream)

    def close(self) -> None:
        self._inner.close()


class EdgeServer(Server):
    """grpclib's Server, whose connections see e-stops at their headers (module docstring)."""

    def __init__(self, handlers: Any, *, stops: PriorityStops, **options: Any) -> None:
        super().__init__(handlers, **options)
        self._stops = stops
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        protocol.handler = _PriorityHandler(protocol.handler, self._stops)
        self._protocols.add(protocol)
        return protocol

    def close_connections(self) -> None:
        """Close every client connection still open (after ``close`` and ``wait_closed``).
        grpclib's ``close`` stops the listener and the requests but leaves the connections to
        their clients, and asyncio's server (before Python 3.12's ``close_clients``) does too:
        a client that keeps its channel would hold the socket past the edge's end."""
        for protocol in list(self._protocols):
            processor = getattr(protocol, "processor", None)
            if processor is not None:
                processor.close("the daemon is stopping")
