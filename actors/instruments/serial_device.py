"""What every serial instrument actor shares: its port's lifetime and its refusal error."""

from __future__ import annotations

from runtime import RequestError

from ..capabilities import DeviceActor
from .transport import SerialSettings, SerialTransport


class DeviceRefused(RequestError):
    """The instrument flagged a command as bad (status byte, error queue): it did not apply."""


class SerialDevice(DeviceActor):
    """A DeviceActor owning one serial port: opened by :meth:`open_port` in ``on_start``,
    closed in ``on_stop`` whatever state the start reached."""

    settings: SerialSettings
    _transport: SerialTransport | None = None

    async def open_port(self) -> SerialTransport:
        self._transport = await SerialTransport.open(self.name, self.settings)
        return self._transport

    async def on_stop(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    @property
    def _port(self) -> SerialTransport:
        if self._transport is None:
            raise RuntimeError(f"{self.name}: not connected")
        return self._transport
