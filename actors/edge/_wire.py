"""A request's protobuf fields checked against their limits as they come off the wire.

Why not decode first and check after: protobuf's decoder would receive, copy and validate a
3 000 000-character name before anyone could look at its length — milliseconds of event loop
per such request, all of it spent on bytes the daemon is about to refuse. The protobuf wire
format says each field's length before its bytes, so :func:`read_message` reads a message
field by field — tag, then length — and refuses a field whose declared length is over what its
limit allows *before reading its bytes* (it reads only the first few hundred, to quote them).
The client is answered at once and, its stream reset, stops sending. A field within its limit
is read whole; then the message is decoded as usual and ``limits.py`` checks it exactly (in
characters, nested fields included). No library offers this (protobuf has no API to look at a
field's length before decoding it), hence the ~100 lines here.

Work per request is bounded by the limits, not by the request's size: at most ``ITEMS`` (256)
occurrences of one field are scanned, each field's bytes at most its limit (4 bytes a
character, the most UTF-8 needs), a nested message at most what its own fields allow.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from grpclib.const import Status

from .errors import RequestRefused, quote, refused
from .limits import DEFAULT_CHARS, FIELD_CHARS, ITEMS, RequestLimits, items_limit

Read = Callable[[int], Awaitable[bytes]]

_STRING = FieldDescriptor.TYPE_STRING
_BYTES = FieldDescriptor.TYPE_BYTES
_MESSAGE = FieldDescriptor.TYPE_MESSAGE
_VARINT, _FIXED64, _DELIMITED, _FIXED32 = 0, 1, 2, 5
_QUOTE_BYTES = 400  # read of a refused field, for the error message's quote


async def read_message(
    read: Read, size: int, descriptor: Descriptor, limits: RequestLimits
) -> bytes:
    """The ``size`` bytes of one serialised ``descriptor`` message, read with ``read``.

    Error handling: RequestRefused (INVALID_ARGUMENT) for a field longer than its limit allows,
    a field repeated more than ``ITEMS`` times, or bytes that are not protobuf's wire format;
    what ``read`` raises when the stream ends early.
    """
    scan = _Scan(read, limits)
    await scan.message(descriptor, size, "")
    return b"".join(scan.pieces)


def check_bytes(data: bytes, descriptor: Descriptor, limits: RequestLimits) -> None:
    """The same scan over a message already in memory (a small body, read at once).

    Error handling: as :func:`read_message`.
    """
    position = 0

    async def read(size: int) -> bytes:
        nonlocal position
        piece = data[position : position + size]
        position += size
        return piece

    # Reading from memory never suspends, so the coroutine runs to its end in one step.
    scan = read_message(read, len(data), descriptor, limits)
    try:
        scan.send(None)
    except StopIteration:
        return
    scan.close()
    raise RuntimeError("the in-memory field scan suspended")  # cannot happen: read never waits


class _Scan:
    def __init__(self, read: Read, limits: RequestLimits) -> None:
        self._read = read
        self.limits = limits
        self.pieces: list[bytes] = []

    async def take(self, size: int) -> bytes:
        piece = await self._read(size) if size else b""
        self.pieces.append(piece)
        return piece

    async def varint(self, left: int) -> tuple[int, int]:
        """(value, bytes it took), reading no more than ``left`` bytes."""
        value = 0
        for index in range(min(10, left)):
            byte = (await self.take(1))[0]
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                return value, index + 1
        raise malformed("a varint longer than 10 bytes, or cut by the end of its message")

    async def message(self, descriptor: Descriptor, size: int, prefix: str) -> None:
        counts: dict[int, int] = {}
        left = size
        while left > 0:
            tag, used = await self.varint(left)
            left -= used
            number, wire = tag >> 3, tag & 7
            field = descriptor.fields_by_number.get(number)
            path = prefix + (field.name if field is not None else f"field {number}")
            counts[number] = count = counts.get(number, 0) + 1
            most = items_limit(field.name) if field is not None else ITEMS
            if count > most:
                raise refused(Status.INVALID_ARGUMENT, f"{path}: at most {most} entries, got more")
            if wire == _VARINT:
                left -= (await self.varint(left))[1]
            elif wire in (_FIXED64, _FIXED32):
                width = 8 if wire == _FIXED64 else 4
                if width > left:
                    raise malformed(f"{path} runs past the end of its message")
                left -= len(await self.take(width))
            elif wire == _DELIMITED:
                length, used = await self.varint(left)
                left -= used
                if length > left:
                    raise malformed(f"{path} is longer ({length} bytes) than its message")
                await self.delimited(field, length, f"{path}[{count - 1}]" if count > 1 else path)
                left -= length
            else:
                raise malformed(f"{path} has wire type {wire} (groups are not accepted)")

    async def delimited(self, field: FieldDescriptor | None, length: int, path: str) -> None:
        if field is not None and field.type == _MESSAGE:
            assert field.message_type is not None
            most = message_bytes(field.message_type, self.limits)
            if length > most:
                raise refused(
                    Status.INVALID_ARGUMENT,
                    f"{path}: a {field.message_type.name} of {length} bytes; at most {most}",
                )
            await self.message(field.message_type, length, path + ".")
            return
        most, what = field_bytes(field, self.limits)
        if length <= most:
            await self.take(length)
            return
        start = await self.take(min(length, _QUOTE_BYTES))
        text = start.decode("utf-8", "replace") if field is None or field.type == _STRING else start
        raise refused(
            Status.INVALID_ARGUMENT,
            f"{path}: {what}, got {quote(text, size=length, unit='bytes')}",
        )


def field_bytes(field: FieldDescriptor | None, limits: RequestLimits) -> tuple[int, str]:
    """The most bytes a length-delimited non-message field may take, and the limit in words."""
    if field is None:
        return DEFAULT_CHARS, f"an unknown field, at most {DEFAULT_CHARS} bytes"
    if field.type == _STRING:
        if field.name == "source":
            most = limits.max_script_bytes
            return most, f"a script may have at most {most} bytes ([edge] max_script_bytes)"
        chars = FIELD_CHARS.get(field.name, DEFAULT_CHARS)
        return 4 * chars, f"at most {chars} characters"
    if field.type == _BYTES:
        return DEFAULT_CHARS, f"at most {DEFAULT_CHARS} bytes"
    most = items_limit(field.name)
    return 10 * most, f"at most {most} entries"  # a packed repeated number


@functools.cache
def _message_bytes(descriptor: Descriptor, script_bytes: int, depth: int = 0) -> int:
    if depth > 8:
        return 0  # a recursive message type: nothing nests that deep in a request
    total = 0
    for field in descriptor.fields:
        if field.type == _MESSAGE:
            assert field.message_type is not None
            one = 10 + _message_bytes(field.message_type, script_bytes, depth + 1)
        elif field.type in (_STRING, _BYTES):
            one = 10 + field_bytes(field, RequestLimits(max_script_bytes=script_bytes))[0]
        else:
            one = 11
        total += one * (items_limit(field.name) if field.is_repeated else 1)
    return total


def message_bytes(descriptor: Descriptor, limits: RequestLimits) -> int:
    """The most bytes a nested ``descriptor`` message may take within the field limits."""
    return _message_bytes(descriptor, limits.max_script_bytes)


def malformed(what: str) -> RequestRefused:
    return refused(Status.INVALID_ARGUMENT, f"the request is not valid protobuf: {what}")
