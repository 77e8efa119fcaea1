"""The accounting of one camera acquisition: what arrived, what never did, what taps lost.

Kept apart from the actor so the arithmetic is plain and testable: frames are numbered by the
camera from 1, so a jump in the numbers is a loss before the actor saw the frame
(``missing``), while a lossless tap that could not take a frame is a loss after (``lost``).

An acquisition may span several camera *segments*: after a stall the actor restarts the
camera, whose counter starts again at 1. The acquisition's numbering continues instead
(``offset``), skipping the frame slots that passed in silence, so frame numbers stay
proportional to time and ``acquired + missing + zero == last_frame_number`` always holds.
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
    zero: int = 0  # all-zero frames: counted, never published
    stalls: int = 0
    last_frame_number: int = 0  # in the acquisition's numbering
    last_delivered: int = 0  # the number of the last frame the camera delivered
    error: str = ""
    warning: str = ""
    overwrite_fallback: bool = False
    running: bool = True
    offset: int = 0  # added to the camera's frame numbers (its counter restarts after a stall)
    segment_frames: int | None = None  # frames the camera's current segment was asked for
    segment_last: int = 0  # the camera's last frame number in the current segment
    used: int = 0  # frames of the request the camera's earlier segments numbered
    restarts_without_frame: int = 0
    last_frame_at: float = 0.0  # trio time of the last frame (or start); the actor's to set
    done: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)  # the helper's
    timestamps: deque[float] = field(default_factory=lambda: deque(maxlen=32))

    def __post_init__(self) -> None:
        self.segment_frames = self.frames

    @property
    def complete(self) -> bool:
        """A sequence's camera segment has reached its last frame number (live mode never
        completes)."""
        return self.segment_frames is not None and self.segment_last >= self.segment_frames

    def number(self, camera_number: int) -> int:
        """The acquisition's number for a frame the camera numbered ``camera_number``."""
        return self.offset + camera_number

    def account(
        self, camera_number: int, timestamp: float, lost_total: int, *, zero: bool = False
    ) -> range:
        """Count one frame the camera delivered (``zero``: all-zero, not published); the
        acquisition's frame numbers skipped before it (empty if none)."""
        number = self.number(camera_number)
        expected = self.last_frame_number + 1
        skipped = range(expected, number) if number > expected else range(0)
        self.missing += len(skipped)
        if zero:
            self.zero += 1
        else:
            self.acquired += 1
        self.last_frame_number = max(self.last_frame_number, number)
        self.last_delivered = number
        self.segment_last = max(self.segment_last, camera_number)
        self.lost = lost_total - self.lost_before
        self.timestamps.append(timestamp)
        self.restarts_without_frame = 0
        return skipped

    def restarted(self, gap: int) -> int | None:
        """The camera is restarted after a stall: ``gap`` frame slots passed in silence and
        count as missing; the new segment's frames are numbered after them. Returns how many
        frames to ask the camera for: what the request still needs (None: live mode)."""
        self.stalls += 1
        self.restarts_without_frame += 1
        self.missing += gap
        self.last_frame_number += gap
        self.offset = self.last_frame_number
        if self.frames is not None:
            self.used += self.segment_last
            self.segment_frames = self.frames - self.used
        self.segment_last = 0
        return self.segment_frames

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
            frames_zero=self.zero,
            stalls=self.stalls,
            warning=self.warning,
            overwrite_fallback=self.overwrite_fallback,
        )
