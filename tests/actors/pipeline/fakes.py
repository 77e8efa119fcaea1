"""A minimal FrameProducer for the recorder tests: frames on a timer, numbered from 1.

The real camera (actors/instruments/prime_bsi.py) is tested on its own and with the
recorder in the bench tests; this one keeps the recorder's tests small and its timing exact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import trio

from actors.capabilities import (
    AcquisitionStatus,
    Capability,
    DeviceActor,
    Frame,
    FrameGeometry,
    GetAcquisitionStatus,
    GetFrameGeometry,
    Roi,
    StartAcquisition,
    StopAcquisition,
)
from runtime import Message, Parameter, Request


@dataclass(frozen=True, slots=True)
class Crash(Request[None]):
    """Make the camera actor crash (its supervisor restarts a fresh instance)."""


class FakeCamera(DeviceActor):
    driver = "fake_camera"
    capabilities = (Capability.FRAME_PRODUCER, Capability.PARAMETERIZED)
    stream_names = ("frames",)

    def __init__(
        self,
        *,
        shape: tuple[int, int] = (64, 48),
        interval: float = 0.002,
        skip: frozenset[int] | set[int] = frozenset(),
    ) -> None:
        self.shape = shape
        self.exposure = self.parameters.add(Parameter("exposure", float, 2.0, units="ms"))
        self.interval = interval
        self._scope: trio.CancelScope | None = None
        self._requested: int | None = None
        self._acquired = 0
        self._running = False
        self.skip = skip  # frame numbers the "camera" loses (a gap to detect)

    async def handle(self, message: Message) -> object:
        match message:
            case GetFrameGeometry():
                return FrameGeometry(Roi(0, 0, self.shape[1], self.shape[0]), 16)
            case StartAcquisition(frames=frames):
                self._requested, self._acquired, self._running = frames, 0, True
                self._scope = trio.CancelScope()
                self.nursery.start_soon(self._acquire, self._scope)
                return self._status()
            case StopAcquisition():
                if self._scope is not None:
                    self._scope.cancel()
                self._running = False
                return self._status()
            case GetAcquisitionStatus():
                return self._status()
            case Crash():
                raise RuntimeError("the camera's driver failed (test)")
        return await super().handle(message)

    async def on_emergency_stop(self, reason: str) -> None:
        """Like the real camera: an e-stop ends the acquisition."""
        if self._scope is not None:
            self._scope.cancel()
        self._running = False

    def _status(self) -> AcquisitionStatus:
        return AcquisitionStatus(
            self._running,
            self._requested,
            self._acquired,
            len(self.skip),
            0,
            self._acquired,
            0.0,
            "",
        )

    async def _acquire(self, scope: trio.CancelScope) -> None:
        with scope:
            number = 0
            while self._requested is None or number < self._requested:
                await trio.sleep(self.interval)
                number += 1
                if number in self.skip:
                    continue
                pixels = np.full(self.shape, number % 4096, dtype=np.uint16)
                pixels.flags.writeable = False
                roi = Roi(0, 0, self.shape[1], self.shape[0])
                self.stream("frames").publish(Frame(number, time.time(), 2.0, roi, 16, pixels))
                self._acquired += 1
        self._running = False
