"""A run's accounting: what ended it, noted as it happens, and the one RunEnd made of it.

Why a piece of its own: the outcome of a run is decided here and nowhere else. The pieces
report facts — a stop was asked for (with or without an outcome), an e-stop happened, a write
failed, the disk filled — and :meth:`RunAccounting.end` turns them, with the pieces' counts,
into the :class:`RunEnd` that becomes the end record and the final status.

Precedence when several facts are true: a failure (the first one wins: write error, disk full,
failed) > an e-stop during the run > a stop > frames missing (incomplete) > completed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from .audit_trail import AuditTrail
from .disk_space import DiskFull
from .frame_source import FrameSource, SourceRefused
from .parameter_watch import ParameterWatch
from .reading_source import ReadingSource
from .run_status import RunCounts, RunEnd, RunOutcome
from .run_writer import FrameShapeChanged, RunWriter, WriteFailed
from .scan_table import ScanTable


class RunAccounting:
    def __init__(self, *, has_end: bool) -> None:
        """``has_end``: the run ends by itself (a frame count or a duration); a stop before
        that end is "stopped", while an open-ended run stopped by its owner is complete."""
        self.has_end = has_end
        self.started = time.time()
        self._failure: tuple[RunOutcome, str, str] | None = None
        self._estop: str | None = None
        self._stop: tuple[str, RunOutcome | None] | None = None
        self._end_reason: str | None = None

    # -- facts -------------------------------------------------------------------------------

    def stop_requested(self, reason: str, outcome: RunOutcome | None = None) -> None:
        """A stop (the first one counts). ``outcome`` None: STOPPED if the run had an end of
        its own it has not reached, else whatever its data say (completed or incomplete)."""
        if self._stop is None:
            self._stop = (reason, outcome)

    def reached_end(self, reason: str) -> None:
        """The run ended by itself: its frames are in, its duration is over."""
        if self._end_reason is None:
            self._end_reason = reason

    def emergency_stop(self, reason: str) -> None:
        if self._estop is None:
            self._estop = f"emergency stop: {reason}"

    def failed(self, error: BaseException) -> None:
        """What ended the run early; the first failure is the one the end record names."""
        if self._failure is not None:
            return
        match error:
            case WriteFailed():
                self._failure = (RunOutcome.WRITE_ERROR, str(error), error.error)
            case DiskFull():
                self._failure = (RunOutcome.DISK_FULL, str(error), "")
            case FrameShapeChanged() | SourceRefused():
                self._failure = (RunOutcome.FAILED, str(error), "")
            case _:
                text = f"internal error: {type(error).__name__}: {error}"
                self._failure = (RunOutcome.FAILED, text, "")

    @property
    def ending(self) -> bool:
        """Something ended the run (a failure or a stop): stop recording."""
        return self._failure is not None or self._stop is not None

    @property
    def failure(self) -> str | None:
        return self._failure[1] if self._failure else None

    # -- the end -----------------------------------------------------------------------------

    @staticmethod
    def counts(
        *,
        writer: RunWriter,
        frames: FrameSource | None = None,
        readings: ReadingSource | None = None,
        parameters: ParameterWatch | None = None,
        scan: ScanTable | None = None,
        audit: AuditTrail | None = None,
    ) -> RunCounts:
        """Every piece's numbers, as they stand."""
        return RunCounts(
            frames_expected=frames.expected if frames else 0,
            frames_received=frames.count.received if frames else 0,
            frames_written=writer.frames_written,
            frames_dropped=frames.dropped if frames else 0,
            frames_missing=frames.missing if frames else 0,
            frames_discarded=writer.frames_discarded,
            readings_recorded=writer.readings_written,
            readings_lost=readings.lost if readings else 0,
            readings_discarded=writer.readings_discarded,
            parameter_changes=parameters.changes if parameters else 0,
            parameter_changes_skipped=parameters.skipped if parameters else 0,
            parameter_changes_discarded=writer.changes_discarded,
            scan_points=scan.points if scan else 0,
            audit_entries=writer.audit_written,
            audit_dropped=(audit.dropped if audit else 0) + writer.audit_discarded,
        )

    def end(
        self, counts: RunCounts, end_time: float, camera: Mapping[str, float] | None = None
    ) -> RunEnd:
        outcome, reason, error = self._decide(counts)
        return RunEnd(
            outcome=outcome,
            reason=reason,
            counts=counts,
            start_time=self.started,
            end_time=end_time,
            error=error,
            camera=dict(camera or {}),
        )

    def _decide(self, counts: RunCounts) -> tuple[RunOutcome, str, str]:
        if self._failure is not None:
            return self._failure
        stop_reason, stop_outcome = self._stop or ("", None)
        if self._estop is not None:
            if stop_reason and self._estop in stop_reason:  # the owner stopped for the e-stop
                return RunOutcome.ESTOPPED, stop_reason, ""
            then = f"; then {stop_reason}" if stop_reason else ""
            return RunOutcome.ESTOPPED, self._estop + then, ""
        if self._stop is not None:
            if stop_outcome is not None:
                return stop_outcome, stop_reason, ""
            if self.has_end and self._end_reason is None:
                return RunOutcome.STOPPED, stop_reason, ""
        reason = stop_reason or self._end_reason or "finished"
        if counts.frames_written < counts.frames_expected:
            short = counts.frames_expected - counts.frames_written
            return (
                RunOutcome.INCOMPLETE,
                f"{reason}: {short} of {counts.frames_expected} frames are not in the file",
                "",
            )
        return RunOutcome.COMPLETED, reason, ""
