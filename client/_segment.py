"""Sending a request as one TCP segment, so that an e-stop reaches the daemon whole.

Why: grpclib writes a request's HEADERS frame and its DATA frame in two writes. On a busy
machine the client can be descheduled between them, or the daemon can read the first a loop
turn before the second, and the daemon cannot stop anything before the message is whole: the
hostile-load benchmark measured that gap as nearly all of the e-stop's tail (p99 40 ms, of
which headers -> body 20-30 ms). With ``TCP_CORK`` (Linux) the kernel holds the frames until
the request is written, and they leave in one segment that the daemon reads in one go.

Best effort: where there is no ``TCP_CORK`` (macOS, Windows), or grpclib's internals differ
(0.4: ``Channel.__connect__``, ``Connection._transport``), the request goes as before. The
channel's other requests wait the microseconds the request takes to write.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

CORK: int | None = getattr(socket, "TCP_CORK", None)


@contextlib.asynccontextmanager
async def one_segment(channel: Any) -> AsyncIterator[None]:
    """Within the block, what is written on ``channel``'s connection leaves together at its
    end. Connects the channel first (connection errors propagate, as the call's would)."""
    sock = await _socket(channel)
    if sock is None or CORK is None:
        yield
        return
    sock.setsockopt(socket.IPPROTO_TCP, CORK, 1)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, CORK, 0)  # sends what is held, now


async def _socket(channel: Any) -> Any:
    """The channel's TCP socket (connecting it if need be); None where it cannot be reached."""
    if CORK is None:
        return None
    connect = getattr(channel, "__connect__", None)
    if connect is None:
        return None
    protocol = await connect()
    try:
        transport = protocol.connection._transport
    except AttributeError:
        return None
    sock = transport.get_extra_info("socket")
    return sock if hasattr(sock, "setsockopt") else None
