"""The actor that keeps a camera's newest frames in a shared-memory ring for other processes.

It takes a *latest-only* tap, so a ring write that is ever slow skips frames rather than slowing
the camera; the ring is a window on recent frames, not the record (the run writer's lossless
tap is). The file lives as long as the actor: it is created in ``on_start`` and removed in
``on_stop``; a reader notices a new ring with ``RingBufferReader.stale()`` (another epoch).
A ring that cannot be made (too little shared memory) fails the start with a message saying
so: the actor shows as degraded and retries, the rest of the daemon carries on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import trio

from runtime import Actor, Message, Request

from ..capabilities import Frame
from .ring_buffer import (
    HEADER_SIZE,
    SLOT_HEADER_SIZE,
    VERSION,
    RingBufferError,
    RingBufferWriter,
    default_directory,
)
from .subscription import follow_stream
from .taps import TapPolicy

logger = logging.getLogger(__name__)

FULL_FRAME_BYTES = 2048 * 2048 * 2


@dataclass(frozen=True, slots=True)
class RingInfo:
    """Everything a reader needs to find and check the ring (the layout is in ring_buffer.py)."""

    path: str
    version: int
    capacity: int
    slot_size: int
    header_size: int
    slot_header_size: int
    write_seq: int
    epoch: int
    frames_written: int
    frames_skipped: int  # too big for a slot (a larger-than-configured frame), counted


@dataclass(frozen=True, slots=True)
class GetRingInfo(Request[RingInfo]):
    pass


class FrameRing(Actor):
    def __init__(
        self,
        camera: str,
        *,
        path: Path | None = None,
        capacity: int = 16,
        max_frame_bytes: int = FULL_FRAME_BYTES,
    ) -> None:
        self.camera = camera
        self.path = path
        self.capacity = capacity
        self.max_frame_bytes = max_frame_bytes
        self._writer: RingBufferWriter | None = None
        self._skipped = 0

    async def on_start(self) -> None:
        path = self.path or default_directory() / f"benchd-{self.camera}.ring"
        self._writer = RingBufferWriter(path, self.capacity, self.max_frame_bytes)
        self.nursery.start_soon(self._follow)
        logger.info("%s: %d-slot frame ring at %s", self.name, self.capacity, path)

    async def _follow(self) -> None:
        camera = self.system.ref(self.camera)
        await follow_stream(camera, "frames", self.name, TapPolicy.LATEST, self._store)

    async def _store(self, frame: Frame) -> None:
        assert self._writer is not None
        try:
            self._writer.write(
                frame.pixels,
                frame_number=frame.frame_number,
                timestamp=frame.timestamp,
                exposure_ms=frame.exposure_ms,
                bit_depth=frame.bit_depth,
            )
        except RingBufferError as error:
            self._skipped += 1
            if self._skipped == 1:
                logger.error("%s: frame %d not stored: %s", self.name, frame.frame_number, error)
        await trio.lowlevel.checkpoint()

    async def handle(self, message: Message) -> object:
        if isinstance(message, GetRingInfo):
            writer = self._writer
            assert writer is not None
            return RingInfo(
                path=str(writer.path),
                version=VERSION,
                capacity=writer.capacity,
                slot_size=writer.slot_size,
                header_size=HEADER_SIZE,
                slot_header_size=SLOT_HEADER_SIZE,
                write_seq=writer.write_seq,
                epoch=writer.epoch,
                frames_written=writer.write_seq,
                frames_skipped=self._skipped,
            )
        return await super().handle(message)

    async def on_stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
