"""What every serial instrument actor shares: its port's lifetime and its refusal error."""

from __future__ import annotations

import re

from ..capabilities import DeviceActor
from .transport import (
    DeviceRefused,
    Link,
    NoReply,
    ReplyForm,
    ReplyPolicy,
    ReplyTimeout,
    SerialSettings,
    SerialTransport,
)
from .visa_transport import VisaSettings, VisaTransport

LinkSettings = SerialSettings | VisaSettings

__all__ = ["DeviceRefused", "LinkSettings", "NoReply", "SerialDevice"]


class SerialDevice(DeviceActor):
    """A DeviceActor owning one link — a serial port, or a VISA resource (GPIB, TCPIP) for the
    instruments that have one: opened by :meth:`open_port` in ``on_start``, closed in
    ``on_stop`` whatever state the start reached. Both links frame, time out and fail alike."""

    settings: LinkSettings
    _transport: Link | None = None

    async def open_port(self, policy: ReplyPolicy | None = None) -> Link:
        """Open the link; ``policy`` says how this instrument's replies are told apart
        (:meth:`Link.exchange`)."""
        if isinstance(self.settings, VisaSettings):
            self._transport = await VisaTransport.open(self.name, self.settings)
        else:
            self._transport = await SerialTransport.open(self.name, self.settings)
        if policy is not None:
            self._transport.policy = policy
        return self._transport

    async def ask_line(self, query: bytes, form: ReplyForm) -> re.Match[bytes]:
        """One query whose reply is matched by ``form`` (:meth:`Link.exchange`). A first
        time-out refuses this request only (NoReply; the link resyncs before the next query);
        a second in a row crashes the actor: the link is gone, the supervisor reconnects."""
        try:
            return await self._port.exchange(query, form)
        except ReplyTimeout as exc:
            if self._port.consecutive_timeouts >= 2:
                raise
            raise NoReply(f"{exc}; the link resyncs before the next query") from None

    async def check_line(self, query: bytes, form: ReplyForm) -> re.Match[bytes]:
        """For ``check_link``: one missed reply is forgiven (asked again after a resync), a
        silent link raises ReplyTimeout so the keepalive restarts the actor."""
        try:
            return await self._port.exchange(query, form)
        except ReplyTimeout:
            return await self._port.exchange(query, form)

    async def on_stop(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    @property
    def _port(self) -> Link:
        if self._transport is None:
            raise RuntimeError(f"{self.name}: not connected")
        return self._transport
