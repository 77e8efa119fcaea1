"""An e-stop request leaves in one TCP segment: the socket is corked while it is written."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from client import _segment
from client._segment import one_segment

pytestmark = pytest.mark.skipif(_segment.CORK is None, reason="TCP_CORK is Linux's")


def _corked(sock: socket.socket) -> int:
    assert _segment.CORK is not None
    return sock.getsockopt(socket.IPPROTO_TCP, _segment.CORK)


class _Channel:
    """What one_segment reaches of grpclib's Channel: ``__connect__`` -> the protocol, whose
    connection's transport has the socket."""

    def __init__(self, sock: Any) -> None:
        transport = SimpleNamespace(get_extra_info=lambda name: sock if name == "socket" else None)
        self._protocol = SimpleNamespace(connection=SimpleNamespace(_transport=transport))

    async def __connect__(self) -> Any:
        return self._protocol


def test_the_socket_is_corked_while_the_request_is_written_and_uncorked_after() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as sock:
        channel = _Channel(sock)

        async def send(fail: bool) -> list[int]:
            seen = [_corked(sock)]
            async with one_segment(channel):
                seen.append(_corked(sock))
                if fail:
                    raise RuntimeError("the write failed")
            seen.append(_corked(sock))
            return seen

        assert asyncio.run(send(fail=False)) == [0, 1, 0]
        with pytest.raises(RuntimeError):
            asyncio.run(send(fail=True))
        assert _corked(sock) == 0  # uncorked however the block ended


def test_a_channel_without_those_internals_sends_as_before() -> None:
    async def send() -> bool:
        async with one_segment(object()):  # no __connect__: nothing to cork
            return True

    assert asyncio.run(send())
