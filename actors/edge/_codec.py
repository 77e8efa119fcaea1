"""The edge's protobuf codec, which also passes through messages encoded ahead of time.

Why: a full camera frame is 8 MiB. Building a ``Frame`` message copies the pixels into it and
serialising copies them again — ~7 ms a frame on the event loop here, where e-stops are
handled too. :func:`encode_frame` writes the same wire format with one copy: the small fields
through protobuf, then field ``data`` by hand (tag, length, the pixel buffer). Protobuf readers
accept fields in any order, so every client decodes it as an ordinary ``Frame``.
"""

from __future__ import annotations

from typing import Any

from grpclib.encoding.proto import ProtoCodec

from benchd.v1 import hardware_pb2 as pb

from ..capabilities import Frame

DATA_TAG = b"\x4a"  # field 9 (Frame.data), wire type 2 (length-delimited)


class Encoded:
    """Bytes that are already a serialised message of the RPC's reply type."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class EdgeCodec(ProtoCodec):
    def encode(self, message: Any, message_type: Any) -> bytes:
        if isinstance(message, Encoded):
            return message.data
        return super().encode(message, message_type)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_frame(device: str, frame: Frame, skipped: int) -> Encoded:
    """A ``Frame`` message: row-major little-endian uint16 pixels, one copy of them."""
    height, width = frame.pixels.shape
    head = pb.Frame(
        device=device,
        frame_number=frame.frame_number,
        timestamp=frame.timestamp,
        exposure_ms=frame.exposure_ms,
        width=width,
        height=height,
        pixel_format="uint16le",
        bit_depth=frame.bit_depth,
        skipped=skipped,
    ).SerializeToString()
    pixels = frame.pixels.astype("<u2", copy=False)
    if not pixels.flags.c_contiguous:
        pixels = pixels.copy()
    view = memoryview(pixels.data).cast("B")
    return Encoded(b"".join((head, DATA_TAG, _varint(view.nbytes), view)))
