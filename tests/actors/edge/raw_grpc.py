"""A raw gRPC client over h2 on trio: sends any bytes as a request body, reads the status.

grpclib's client always frames a message correctly; these tests need the malformed ones — a
length prefix that lies, a compressed flag without a codec, bytes that are no protobuf — and
requests far over the cap, of which the server should read only the prefix.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio


@dataclass(frozen=True)
class RawReply:
    status: int | None  # grpc-status; None if the server never sent one
    message: str
    body: bytes  # the response's DATA (a reply message, with its prefix), if any
    reset: bool  # the server reset the stream (after its trailers, or instead of them)


def frame(message: bytes, *, compressed: bool = False, length: int | None = None) -> bytes:
    """A gRPC length-prefixed message; ``length`` overrides the declared length."""
    declared = len(message) if length is None else length
    return struct.pack(">?I", compressed, declared) + message


async def call(
    address: str,
    method: str,
    body: bytes,
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    headers_only: bool = False,
) -> RawReply:
    """One request: HEADERS, then ``body`` as DATA within the server's flow-control windows
    (end of stream after it); stops sending once the server answers. ``headers_only``: no
    DATA frame at all, just the end of the stream."""
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        connection.initiate_connection()
        connection.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
        connection.increment_flow_control_window(1 << 24)
        stream_id = connection.get_next_available_stream_id()
        connection.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", method),
                (":authority", address),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *metadata,
            ],
            end_stream=headers_only or not body,
        )
        await stream.send_all(connection.data_to_send())
        reply = _Reply()
        sent = len(body) if headers_only else 0  # an empty body ended with the headers
        while not reply.done:
            while sent < len(body) and not reply.done:
                room = min(
                    connection.local_flow_control_window(stream_id),
                    connection.max_outbound_frame_size,
                    len(body) - sent,
                )
                if room <= 0:
                    break
                chunk = body[sent : sent + room]
                sent += room
                connection.send_data(stream_id, chunk, end_stream=sent == len(body))
                await stream.send_all(connection.data_to_send())
            data = await stream.receive_some(65536)
            if not data:
                break
            try:
                events = connection.receive_data(data)
            except h2.exceptions.ProtocolError:
                break
            for event in events:
                reply.handle(connection, event, stream_id)
            await stream.send_all(connection.data_to_send())
        return RawReply(reply.status, reply.message, bytes(reply.body), reply.reset)


class _Reply:
    def __init__(self) -> None:
        self.status: int | None = None
        self.message = ""
        self.body = bytearray()
        self.reset = False
        self.done = False

    def handle(
        self, connection: h2.connection.H2Connection, event: h2.events.Event, stream_id: int
    ) -> None:
        if getattr(event, "stream_id", stream_id) not in (stream_id, 0):
            return  # another stream's (a raw call uses only one)
        if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            headers = dict(event.headers)  # type: ignore[arg-type]
            if "grpc-status" in headers:
                self.status = int(headers["grpc-status"])
                self.message = unquote(headers.get("grpc-message", ""))
        elif isinstance(event, h2.events.DataReceived):
            self.body += event.data
            connection.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.done = True
        elif isinstance(event, h2.events.StreamReset):
            self.reset = self.done = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.done = True
