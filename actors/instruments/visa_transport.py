"""The same transport over VISA, for instruments on GPIB, USB-TMC or a TCPIP socket.

The ESP300 and the 1830-C also have GPIB ports, and labs use them. pyvisa (with pyvisa-py, or a
system VISA library chosen by ``backend``) is blocking, so every call runs in a worker thread;
framing, deadlines and error messages are the serial transport's (same exceptions, same
wording), so a driver does not know which link it is on.

Error handling and a limit to know: VISA cannot return a partial read, so a read runs to its
reply timeout in one call. If the caller is cancelled (an e-stop preempting a query), the read
is abandoned and finishes in its thread; the next operation on the link waits for it (at most
the reply timeout) — a GPIB bus cannot interleave a write with a pending read anyway. Keep
e-stop-critical instruments on serial where you can.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import pyvisa
import trio

from .transport import ConnectionLost, Link, ProtocolError, ReplyTimeout

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VisaSettings:
    resource: str  # e.g. "GPIB0::5::INSTR", "TCPIP::192.0.2.7::5025::SOCKET"
    backend: str = "@py"  # pyvisa-py; "" for the system VISA library
    write_terminator: bytes = b"\n"
    read_terminator: bytes = b"\n"
    reply_timeout: float = 1.0
    any_line_end: bool = False  # accept CR LF, CR or LF (GPIB's EOI ends the message anyway)

    @property
    def address(self) -> str:
        return self.resource


class VisaTransport(Link):
    """One open VISA resource."""

    def __init__(self, device: str, settings: VisaSettings, manager: Any, resource: Any) -> None:
        self.device = device
        self.settings = settings
        self._manager = manager
        self._resource = resource
        self._lock = threading.Lock()  # an abandoned read finishes before the next call starts
        self.bytes_written = 0
        self.bytes_read = 0
        self._init_matching()

    @classmethod
    async def open(cls, device: str, settings: VisaSettings) -> VisaTransport:
        def open_resource() -> tuple[Any, Any]:
            manager = pyvisa.ResourceManager(settings.backend)
            resource: Any = manager.open_resource(settings.resource)
            resource.write_termination = ""
            resource.read_termination = settings.read_terminator[-1:].decode("latin-1")
            return manager, resource

        try:
            manager, resource = await trio.to_thread.run_sync(open_resource)
        except (pyvisa.Error, OSError, ValueError) as exc:
            raise ConnectionLost(device, f"cannot open {settings.resource}: {exc}") from exc
        return cls(device, settings, manager, resource)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                self._resource.close()
                self._manager.close()

        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(close)

    async def write(self, command: bytes, *, terminate: bool = True) -> None:
        data = command + self.settings.write_terminator if terminate else command
        try:
            await self._call(self._resource.write_raw, data)
        except OSError as exc:
            raise ConnectionLost(self.device, f"write failed ({exc})", command=command) from exc
        self.bytes_written += len(data)

    async def read_until(
        self, terminator: bytes | None = None, *, command: bytes = b"", timeout: float | None = None
    ) -> bytes:
        end = terminator or self.settings.read_terminator
        seconds = self.settings.reply_timeout if timeout is None else timeout
        resource = self._resource

        def read() -> bytes:
            resource.timeout = None if math.isinf(seconds) else max(1, round(seconds * 1000))
            return bytes(resource.read_raw())

        try:
            data: bytes = await self._call(read)
        except pyvisa.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise ReplyTimeout(
                    self.device,
                    f"no complete reply within {seconds:g} s (waiting for {end!r})",
                    command=command,
                ) from exc
            raise ConnectionLost(self.device, f"read failed ({exc})", command=command) from exc
        self.bytes_read += len(data)
        if terminator is None and self.settings.any_line_end:
            return data.rstrip(b"\r\n")
        if not data.endswith(end):
            raise ProtocolError(
                self.device, f"reply does not end with {end!r}", command=command, received=data
            )
        return data[: -len(end)]

    async def read_exactly(
        self, count: int, *, command: bytes = b"", timeout: float | None = None
    ) -> bytes:
        seconds = self.settings.reply_timeout if timeout is None else timeout
        resource = self._resource

        def read() -> bytes:
            resource.timeout = max(1, round(seconds * 1000))
            return bytes(resource.read_bytes(count))

        data: bytes = await self._call(read)
        return data

    def drain(self, command: bytes = b"") -> bytes:
        """VISA links deliver whole messages; nothing stray is left between them."""
        return b""

    async def _call(self, function: Any, *args: Any) -> Any:
        def locked() -> Any:
            with self._lock:
                return function(*args)

        return await trio.to_thread.run_sync(locked, abandon_on_cancel=True)
