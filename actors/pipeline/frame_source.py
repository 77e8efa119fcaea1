"""A run's frames: a lossless tap on the camera, followed across camera restarts, counted.

Why a piece of its own: whoever records frames — the recorder's run, the acquisition
executor — needs the same things: a tap taken before the first frame, the camera's sequence
started (or not: live mode records what the camera produces anyway), the tap followed to the
new camera instance after a restart without counting a drop twice, the end of the camera's
sequence noticed, and every frame accounted for (received, dropped by the tap, missing in the
camera's own numbering).

Error handling: :class:`SourceRefused` when the tap cannot be taken or the camera refuses to
start (the reason is the camera's); a camera that goes away mid-run is followed, not fatal.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import trio

from runtime import ActorError, ActorSystem, BenchError

from ..capabilities import (
    AcquisitionStatus,
    Frame,
    GetAcquisitionStatus,
    StartAcquisition,
    StopAcquisition,
)
from .subscription import add_tap, remove_tap
from .taps import TapClosed, TapPolicy, TapReader

logger = logging.getLogger(__name__)

CAMERA_POLL = 0.2  # how often the end of a sequence is looked for
RETAP_DELAY = 0.5  # between attempts to tap a restarting camera


class SourceRefused(Exception):
    """A source could not be attached or started; the message says why."""


@dataclass
class FrameCount:
    """Frame numbers seen, per segment (a camera restart starts a new count at 1)."""

    received: int = 0
    span: int = 0
    _first: int = -1
    _last: int = -1

    def see(self, number: int) -> None:
        self.received += 1
        if self._last < 0 or number <= self._last:  # first frame, or the camera restarted
            if self._last >= 0:
                self.span += self._last - self._first + 1
            self._first = number
        self._last = number

    @property
    def total_span(self) -> int:
        current = self._last - self._first + 1 if self._last >= 0 else 0
        return self.span + current


class FrameSource:
    """Frames of one camera for one run. ``acquire``: start a sequence of that many frames
    (and stop it at the end); None: record what the camera produces (live view, a scan's
    triggered frames)."""

    def __init__(
        self, system: ActorSystem, camera: str, *, tap: str, capacity: int, acquire: int | None
    ) -> None:
        self.system = system
        self.camera = camera
        self.tap_name = tap
        self.capacity = capacity
        self.acquire = acquire
        self.count = FrameCount()
        self.asked = 0  # frames the owner asked the camera for itself (see expect)
        #: Frames the owner plans to take in all (a recording's ``frames=N``): expected from
        #: the run's start, as ``acquire`` would be, though the owner starts the sequences.
        self.planned = 0
        self.camera_done = trio.Event()  # the sequence this source started has ended
        self.camera_accounting: dict[str, float] = {}  # the camera's own numbers at the end
        self._tap: TapReader[Frame] | None = None
        self._lost_tap: TapReader[Frame] | None = None  # closed by a camera restart
        self._dropped_before = 0  # drops of earlier taps (camera restarts)
        self._started = False

    # -- attaching -------------------------------------------------------------------------

    async def attach(self) -> None:
        """Take the tap before any frame of the run is acquired."""
        try:
            self._tap = await self._take_tap()
        except (BenchError, ActorError) as error:
            raise SourceRefused(f"cannot tap camera {self.camera!r}: {_cause(error)}") from error

    async def _take_tap(self) -> TapReader[Frame]:
        reader: TapReader[Frame] = await add_tap(
            self.system.ref(self.camera),
            "frames",
            self.tap_name,
            TapPolicy.LOSSLESS,
            capacity=self.capacity,
        )
        return reader

    async def start(self) -> None:
        """Start the camera's sequence (if this source acquires)."""
        if self._started or not self.acquire:
            return
        try:
            await self.system.ref(self.camera).ask(StartAcquisition(self.acquire))
        except (BenchError, ActorError) as error:
            raise SourceRefused(f"could not start the camera: {_cause(error)}") from error
        self._started = True

    async def watch_camera(self) -> None:
        """Set :attr:`camera_done` when the sequence this source started ends (completed,
        stopped, failed, the camera gone). Polls the status rather than asking the camera to
        hold a reply, which would block its mailbox."""
        if not self._started:
            await trio.sleep_forever()
        camera = self.system.ref(self.camera)
        while True:
            await trio.sleep(CAMERA_POLL)
            try:
                status: AcquisitionStatus = await camera.ask(GetAcquisitionStatus())
            except (BenchError, ActorError) as error:
                logger.warning("%s: lost the camera: %s", self.tap_name, error)
                break
            if not status.running:
                if status.error:
                    logger.warning("%s: the camera ended early: %s", self.tap_name, status.error)
                break
        self.camera_done.set()

    # -- frames ------------------------------------------------------------------------------

    def take(self, most: int) -> list[Frame]:
        """Up to ``most`` queued frames, without waiting."""
        if self._tap is None:
            return []
        frames = self._tap.receive_batch(most)
        for frame in frames:
            self.count.see(frame.frame_number)
        return frames

    async def receive(self) -> Frame | None:
        """The next frame; None if the camera restarted (call again: the new instance is
        tapped) — or, with no frames to come, waits until cancelled."""
        if self._lost_tap is not None and self._lost_tap is self._tap:
            await self._retap()
            return None
        tap = self._tap
        if tap is None or self.camera_done.is_set():
            await trio.sleep_forever()
        assert tap is not None
        try:
            frame = await tap.receive()
        except TapClosed:
            self._dropped_before += tap.statistics().dropped  # counted once
            self._lost_tap = tap
            return None
        self.count.see(frame.frame_number)
        return frame

    async def _retap(self) -> None:
        """Tap the new camera instance (the old tap's drops were counted when it closed).
        Interrupted (the flush timer), it tries again at the next call."""
        while True:
            try:
                self._tap = await self._take_tap()
                self._lost_tap = None
                return
            except (BenchError, ActorError):
                await trio.sleep(RETAP_DELAY)

    def expect(self, frames: int) -> None:
        """Frames the run's owner asked the camera for itself (a plan's points take their own
        frames while this source, with ``acquire`` None, records them). The run then expects
        at least that many: a sequence that ended short says so ("incomplete") instead of
        looking complete because no frame number was skipped."""
        self.asked += max(0, frames)

    def complete(self) -> bool:
        """Every frame asked for arrived (or was dropped), or the sequence ended and the tap
        is empty."""
        if self.acquire and self.count.received + self.dropped >= self.acquire:
            return True
        return self.camera_done.is_set() and not self.pending

    @property
    def dropped(self) -> int:
        tap = self._tap
        current = tap.statistics().dropped if tap is not None and tap is not self._lost_tap else 0
        return self._dropped_before + current

    @property
    def pending(self) -> int:
        """Frames waiting in the tap (the writer's lag)."""
        tap = self._tap
        return tap.statistics().pending if tap is not None else 0

    @property
    def expected(self) -> int:
        """Frames asked for; live, the span of frame numbers seen — and never fewer than the
        frames the camera offered the tap (drops after the last frame received are in no
        span, yet they were frames of the run)."""
        offered = self.count.received + self.dropped
        return self.acquire or max(self.asked, self.planned, self.count.total_span, offered)

    @property
    def missing(self) -> int:
        return max(0, self.count.total_span - self.count.received - self.dropped)

    # -- the end -----------------------------------------------------------------------------

    async def release(self) -> None:
        """Stop the sequence this source started, then detach the tap: nothing new arrives,
        what is queued stays to be drained (or counted as discarded)."""
        camera = self.system.ref(self.camera)
        status: Any = None
        if self._started:
            try:
                status = await camera.ask(StopAcquisition(), timeout=5.0)
            except (BenchError, ActorError) as error:
                logger.warning("%s: could not stop the camera: %s", self.tap_name, error)
        if not isinstance(status, AcquisitionStatus):
            try:
                status = await camera.ask(GetAcquisitionStatus(), timeout=2.0)
            except (BenchError, ActorError):
                status = None
        if isinstance(status, AcquisitionStatus):
            self.camera_accounting = _numbers(status)
        # Detach first (the producer forgets a detached tap at its next publish, so nothing
        # new arrives even if the RemoveTap below cannot get through).
        if self._tap is not None:
            self._tap.detach()
            await remove_tap(camera, "frames", self.tap_name)

    def discard_rest(self) -> int:
        """Count and drop what the tap still holds (the file cannot take it)."""
        return len(self.take(10**9))


def _numbers(status: AcquisitionStatus) -> dict[str, float]:
    """The camera's accounting as it reports it — every counter it has, so counters a driver
    adds (all-zero frames, stall gaps...) reach the end record without a change here."""
    numbers: dict[str, float] = {}
    for key, value in asdict(status).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        numbers[key] = value
    return numbers


def _cause(error: BaseException) -> str:
    return str(getattr(error, "cause", None) or error)
