"""What every serial instrument actor shares: its port's lifetime and its refusal error."""

from __future__ import annotations

from runtime import RequestError

from ..capabilities import DeviceActor
from .transport import Link, SerialSettings, SerialTransport
from .visa_transport import VisaSettings, VisaTransport

LinkSettings = SerialSettings | VisaSettings


class DeviceRefused(RequestError):
    """The instrument flagged a command as bad (status byte, error queue): it did not apply."""


class SerialDevice(DeviceActor):
    """A DeviceActor owning one link — a serial port, or a VISA resource (GPIB, TCPIP) for the
    instruments that have one: opened by :meth:`open_port` in ``on_start``, closed in
    ``on_stop`` whatever state the start reached. Both links frame, time out and fail alike."""

    settings: LinkSettings
    _transport: Link | None = None

    async def open_port(self) -> Link:
        if isinstance(self.settings, VisaSettings):
            self._transport = await VisaTransport.open(self.name, self.settings)
        else:
            self._transport = await SerialTransport.open(self.name, self.settings)
        return self._transport

    async def on_stop(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    @property
    def _port(self) -> Link:
        if self._transport is None:
            raise RuntimeError(f"{self.name}: not connected")
        return self._transport
