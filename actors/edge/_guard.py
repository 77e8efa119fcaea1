"""The edge's one guard around every RPC handler: bounded reads, bounded answers, one log line.

:class:`RequestGuard` wraps the handlers of every service the edge serves (benchd's own and
grpclib's ``grpc.health.v1`` and reflection services) through grpclib's servable protocol
(``__mapping__``). Each call's stream becomes a :class:`BoundedStream`, whose ``recv_message``

* reads the 5-byte gRPC prefix first and refuses, before reading a byte of the body: a
  compressed message (no ``grpc-encoding`` is accepted), a flag other than 0/1, and a length
  over the method's cap (``limits.py``) — RESOURCE_EXHAUSTED, the status gRPC itself uses;
* checks the body's fields against their limits as they come off the wire (``_wire.py``): a
  body over :data:`SMALL_BODY` bytes is read field by field, so a field over its limit is
  refused before its bytes are read; a smaller one is read at once and scanned in memory;
* lets at most :data:`LARGE_BODIES` bodies over :data:`LARGE_BODY` bytes be read at a time
  (the others wait, and HTTP/2 flow control holds their clients: see docs/edge.md, "Limits");
* refuses a body cut short, or one that is not the method's protobuf message, with
  INVALID_ARGUMENT; then checks the decoded message's fields exactly (``limits.py``).

Before the handler runs, the guard checks the caller's token and role (``auth.py``: the same
check for every service, before a byte of the body is read). Then, whatever the handler raises,
the status message is bounded (``errors.bounded``); an unexpected exception becomes INTERNAL
(logged once with its traceback, as before), never grpclib's UNKNOWN. A request that changes the
bench leaves one audit record (``audit.py``) with who, what and how it ended — refused ones
too. Each refusal of a request for what it *is* (``RequestRefused``) is logged in one line
without a traceback — at most :data:`LOG_BURST` lines per :data:`LOG_PERIOD`
seconds, then one line saying how many more were refused, so a flood cannot fill the disk.

Why a subclass of grpclib's server ``Stream``: grpclib (0.4, pinned) has no message-size limit
(vmagamedov/grpclib#195) and reads a body of whatever length the prefix claims. The subclass is
swapped in as each call starts, so the stream stays grpclib's own object — its trailers, its
bookkeeping — and only how a message is read changes, through the HTTP/2 stream grpclib keeps
on it (``_stream``: ``recv_data`` and ``created``). With ``_priority.py``'s two, these are the
grpclib internals the edge uses; tests/actors/edge/test_limits.py fails loudly if they move.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from google.protobuf.message import DecodeError
from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Stream

from ._wire import check_bytes, read_message
from .audit import (
    AUDITED,
    AuditEntry,
    AuditTrail,
    arguments_of,
    peer_text,
    result_text,
    short_method,
    target_of,
)
from .auth import Authenticator, Client
from .errors import RequestRefused, bounded, grpc_error, refused
from .limits import RequestLimits, too_large

logger = logging.getLogger("actors.edge")

#: A body up to this many bytes is read at once and its fields scanned in memory; a larger one is
#: read field by field, so a field over its limit is refused before its bytes are read.
SMALL_BODY = 16 * 1024
#: A body over this many bytes waits for one of the LARGE_BODIES reading slots.
LARGE_BODY = 256 * 1024
LARGE_BODIES = 2
LOG_BURST = 20
LOG_PERIOD = 10.0

_Func = Callable[[Any], Awaitable[None]]


class BoundedStream(Stream[Any, Any]):
    """grpclib's server stream, reading each request message within the guard's limits."""

    guard: RequestGuard
    method: str
    unary_request: bool  # the method takes exactly one request message
    received: int  # request messages read so far
    audited: bool  # the call leaves an audit record: its first request and reply are kept
    request: Any  # the first request message (audited calls), None before it is read
    reply: Any  # the first reply message (audited calls: a new scan's or script's id)

    @property
    def h2_stream(self) -> Any:
        """The HTTP/2 stream under this call (grpclib's ``protocol.Stream``)."""
        return self._stream

    @property
    def arrived(self) -> float:
        """``time.monotonic()`` when the request's HEADERS frame was parsed off the socket
        (grpclib creates the HTTP/2 stream there), before any task existed for it."""
        created = self._stream.created
        return created if created is not None else time.monotonic()

    async def recv_message(self) -> Any:
        """The next request message, or None once the client has ended its stream.

        Error handling: RequestRefused — RESOURCE_EXHAUSTED for a message over the cap,
        INVALID_ARGUMENT for a malformed prefix or body, or a field over its limit.
        """
        head = await self._read(5, 0)
        if not head:
            if self.unary_request and not self.received:
                raise refused(Status.INVALID_ARGUMENT, "no request message was sent")
            return None
        flag, size = head[0], int.from_bytes(head[1:5], "big")
        if flag == 1:
            raise refused(
                Status.INVALID_ARGUMENT,
                "the request message is marked compressed; this server accepts only"
                " uncompressed messages (send no grpc-encoding, compressed flag 0)",
            )
        if flag != 0:
            raise refused(
                Status.INVALID_ARGUMENT,
                f"the request's 5-byte message prefix is malformed: compressed flag {flag},"
                " expected 0",
            )
        limits = self.guard.limits
        if size > limits.message_bytes(self.method):
            raise too_large(self.method, size, limits)
        descriptor = self._recv_type.DESCRIPTOR
        if size <= SMALL_BODY:  # read at once, then scanned in memory: no await per field
            body = await self._read(size, size)
            check_bytes(body, descriptor, limits)
        else:

            async def read(count: int) -> bytes:
                return await self._read(count, size)

            if size > LARGE_BODY:
                async with self.guard.large_bodies:
                    body = await read_message(read, size, descriptor, limits)
            else:
                body = await read_message(read, size, descriptor, limits)
        try:
            message = self._codec.decode(body, self._recv_type)
        except DecodeError as exc:
            raise refused(
                Status.INVALID_ARGUMENT,
                f"the request is not a valid {self._recv_type.__name__} message ({size} bytes):"
                f" {exc}",
            ) from None
        limits.check(message)
        if self.audited and not self.received:
            self.request = message
        self.received += 1
        return message

    async def send_message(self, message: Any, **kwargs: Any) -> None:
        if self.audited and self.reply is None:
            self.reply = message
        await super().send_message(message, **kwargs)

    async def _read(self, size: int, declared: int) -> bytes:
        """``size`` bytes of the request; b"" at its clean end (no more messages).

        ``declared``: the length of the message being read (0: reading its prefix)."""
        try:
            data = await self._stream.recv_data(size)
        except AssertionError:  # grpclib's Buffer: the stream ended before ``size`` bytes
            data = None
        if data is None or (len(data) < size and (data or declared)):
            raise refused(
                Status.INVALID_ARGUMENT,
                f"the request ended inside its message: its prefix declares {declared} bytes"
                if declared
                else "the request ended inside its 5-byte message prefix",
            )
        return data


async def receive(stream: Stream[Any, Any]) -> Any:
    """The request message of a unary-request RPC; INVALID_ARGUMENT if none was sent.

    Under the guard the stream reads within the limits; a stream that is not guarded (a test
    over grpclib's ChannelFor) still gets INVALID_ARGUMENT for a body that does not decode.
    """
    try:
        request = await stream.recv_message()
    except DecodeError as exc:
        raise refused(
            Status.INVALID_ARGUMENT, f"the request is not a valid message: {exc}"
        ) from None
    if request is None:
        raise refused(Status.INVALID_ARGUMENT, "no request message was sent")
    return request


class RequestGuard:
    """Wraps every service's handlers; one per server (the limits and the slots it shares)."""

    def __init__(
        self,
        limits: RequestLimits,
        *,
        auth: Authenticator | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.limits = limits
        self.auth = auth
        self.audit = audit
        self.large_bodies = asyncio.Semaphore(LARGE_BODIES)
        self.refusals = 0  # requests refused for what they are (statistics, tests)
        self._log_limit = LogLimit()

    def wrap(self, services: Iterable[Any]) -> list[Any]:
        return [_Guarded(service, self) for service in services]

    def handler(self, method: str, handler: Handler) -> _Func:
        func, unary = handler.func, not handler.cardinality.client_streaming
        audited = self.audit is not None and method in AUDITED

        async def guarded(stream: Stream[Any, Any]) -> None:
            stream.__class__ = BoundedStream  # same object, same state: only reads change
            assert isinstance(stream, BoundedStream)
            stream.guard, stream.method, stream.unary_request = self, method, unary
            stream.received, stream.audited = 0, audited
            stream.request = stream.reply = None
            started = time.monotonic()
            result = "ok"
            try:
                if self.auth is not None:
                    self.auth.authorize(method, stream.metadata)  # type: ignore[arg-type]
                await func(stream)
            except RequestRefused as error:
                self.refusals += 1
                self._log(method, stream, error)
                result = result_text(error.status.name, error.message or "")
                raise
            except GRPCError as error:
                message = error.message or ""
                text = bounded(message)
                result = result_text(error.status.name, text)
                if text is not message:
                    raise GRPCError(error.status, text, error.details) from None
                raise
            except TimeoutError:
                result = "DEADLINE_EXCEEDED: the client's deadline passed"
                raise  # grpclib answers it
            except StreamTerminatedError:
                result = "CANCELLED: the client went away"
                raise
            except Exception as exc:
                status = grpc_error(exc)
                result = result_text(status.status.name, status.message or "")
                raise status from exc
            except BaseException:  # asyncio's CancelledError: the call was cancelled
                result = "CANCELLED: the call was cancelled"
                raise
            finally:
                if audited:
                    self._audit(stream, started, result)

        return guarded

    def _audit(self, stream: BoundedStream, started: float, result: str) -> None:
        """One audit record for the call that just ended (refused, failed or not)."""
        assert self.audit is not None
        finished = time.monotonic()
        client = self._who(stream)
        target = target_of(stream.request, stream.reply)
        self.audit.record(
            AuditEntry(
                when=time.time() - (finished - stream.arrived),
                who=client.name if client else "",
                role=client.role.label if client else "",
                peer=peer_text(stream.peer.addr() if stream.peer is not None else None),
                method=short_method(stream.method),
                target=target,
                arguments=arguments_of(stream.request, target),
                result=result,
                duration_ms=(finished - started) * 1e3,
            )
        )

    def _who(self, stream: BoundedStream) -> Client | None:
        if self.auth is None:
            return None
        try:
            return self.auth.client(stream.metadata)  # type: ignore[arg-type]
        except GRPCError:
            return None  # no or an unknown token: the record says "unknown"

    def _log(self, method: str, stream: Stream[Any, Any], error: GRPCError) -> None:
        log, suppressed, since = self._log_limit.take(time.monotonic())
        if suppressed:
            logger.warning(
                "%d more requests were refused in the last %.0f s (not logged one by one)",
                suppressed,
                since,
            )
        if not log:
            return
        peer = stream.peer.addr() if stream.peer is not None else None
        logger.warning(
            "refused %s from %s: %s: %s",
            method,
            f"{peer[0]}:{peer[1]}" if peer else "unknown",
            error.status.name,
            error.message,
        )


class LogLimit:
    """At most ``burst`` lines per ``period`` seconds; then how many were left out."""

    def __init__(self, burst: int = LOG_BURST, period: float = LOG_PERIOD) -> None:
        self.burst = burst
        self.period = period
        self._since = -period
        self._lines = 0
        self._suppressed = 0

    def take(self, now: float) -> tuple[bool, int, float]:
        """(log this one?, lines left out of the period that just ended, its length)."""
        suppressed, since = 0, 0.0
        if now - self._since >= self.period:
            suppressed, since = self._suppressed, now - self._since
            self._since, self._lines, self._suppressed = now, 0, 0
        if self._lines >= self.burst:
            self._suppressed += 1
            return False, suppressed, since
        self._lines += 1
        return True, suppressed, since


class _Guarded:
    """A servable (grpclib's ``__mapping__`` protocol) whose handlers go through the guard."""

    def __init__(self, service: Any, guard: RequestGuard) -> None:
        self._service = service
        self._guard = guard

    def __mapping__(self) -> dict[str, Handler]:
        return {
            method: Handler(
                self._guard.handler(method, handler),
                handler.cardinality,
                handler.request_type,
                handler.reply_type,
            )
            for method, handler in self._service.__mapping__().items()
        }
