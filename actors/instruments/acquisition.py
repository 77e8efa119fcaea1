"""The accounting of one camera acquisition: what arrived, what never did, what taps lost.

Kept apart from the actor so the arithmetic is plain and testable: frames are numbered by the
camera from 1, so a jump in the numbers is a loss before the actor saw the frame
(``missing``), while a lossless tap that could not take a frame is a loss after (``lost``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import trio

from ..capabilities import AcquisitionStatus

IDLE = AcquisitionStatus(False, None, 0, 0, 0, 0, 0.0, "")


@dataclass
class Acquisition:
    frames: int | None  # None: live mode
    software_triggered: bool  # SoftwareTrigger is accepted
    triggered: bool  # frames come only after triggers: waiting for one is not a failure
    lost_before: int  # the frame stream's lost count when this acquisition started
    acquired: int = 0
    missing: int = 0
    lost: int = 0
    last_frame_number: int = 0
    error: str = ""
    running: bool = True
    done: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)  # the helper's
    timestamps: deque[float] = field(default_factory=lambda: deque(maxlen=32))

    @property
    def complete(self) -> bool:
        """A sequence has reached its last frame number (live mode never completes)."""
        return self.frames is not None and self.last_frame_number >= self.frames

    def account(self, frame_number: int, timestamp: float, lost_total: int) -> range:
        """Count one delivered frame; the frame numbers skipped before it (empty if none)."""
        expected = self.last_frame_number + 1
        skipped = range(expected, frame_number) if frame_number > expected else range(0)
        self.missing += len(skipped)
        self.acquired += 1
        self.last_frame_number = max(self.last_frame_number, frame_number)
        self.lost = lost_total - self.lost_before
        self.timestamps.append(timestamp)
        return skipped

    def ended(self, error: str = "") -> None:
        if error and not self.error:
            self.error = error
        self.running = False
        self.done.set()

    @property
    def fps(self) -> float:
        """Delivered frames per second over the last 32, by the camera's timestamps."""
        stamps = self.timestamps
        if len(stamps) < 2 or stamps[-1] <= stamps[0]:
            return 0.0
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    def status(self) -> AcquisitionStatus:
        return AcquisitionStatus(
            running=self.running,
            frames_requested=self.frames,
            frames_acquired=self.acquired,
            frames_missing=self.missing,
            frames_lost=self.lost,
            last_frame_number=self.last_frame_number,
            fps=self.fps,
            error=self.error,
        )
