"""The frames between the script runner and a script's worker process.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON: one object with a
``"type"``. JSON because it is in the standard library (the worker imports nothing else to
speak it), cannot name a Python type or run code when decoded (unlike pickle), and Starlark's
own values reach Python already as JSON-shaped data (starlark-pyo3 converts them with serde).

The runner treats everything a worker sends as hostile: the length is checked against
:data:`MAX_FRAME` before a byte of the body is read, the body must be one JSON object with a
string ``type``, and a frame that breaks either rule ends the worker. Big bodies are decoded
in a worker thread so a script cannot stall the event loop with them.

Worker -> runner: ``ready`` (pid), ``call`` (name, args, kwargs, steps), ``finished`` (steps),
``failed`` (kind: error | budget | interrupted | memory, line, column, message, steps).
Runner -> worker: ``run`` (source, variables, budget, builtins), ``result`` (value),
``error`` (kind: builtin | interrupted, message), ``stop`` (reason).

This module is imported by the worker before anything else: keep it to the standard library.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20  # bytes of one frame's body, either way
DECODE_IN_THREAD = 64 * 1024  # bodies above this are decoded off the event loop
EXIT_MEMORY = 86  # a worker's exit status when even its "failed" report found no memory


class ProtocolError(Exception):
    """A frame that is too big, not JSON, or not an object with a ``type``."""


def encode(
    message: dict[str, Any],
    limit: int = MAX_FRAME,
    default: Callable[[Any], Any] | None = None,
) -> bytes:
    """One frame. Error handling: ProtocolError if the body would exceed ``limit``;
    TypeError / ValueError for what JSON cannot hold (``default`` may convert it)."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=default).encode()
    if len(body) > limit:
        raise ProtocolError(f"a frame of {len(body)} bytes (at most {limit})")
    return HEADER.pack(len(body)) + body


def body_length(header: bytes, limit: int = MAX_FRAME) -> int:
    (length,) = HEADER.unpack(header)
    if length > limit:
        raise ProtocolError(f"a frame of {length} bytes announced (at most {limit})")
    return int(length)


def decode(body: bytes) -> dict[str, Any]:
    """The message in a frame's body. Error handling: ProtocolError, never anything else."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise ProtocolError(f"not JSON ({type(error).__name__})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("not a JSON object with a string 'type'")
    return message


# -- blocking I/O on file descriptors, for the worker ------------------------------------------


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 16))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> dict[str, Any] | None:
    """The next message on ``fd`` (blocking); None at the end of the stream."""
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    body = _read_exactly(fd, body_length(header))
    return None if body is None else decode(body)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_frame(fd: int, message: dict[str, Any]) -> None:
    write_all(fd, encode(message))
