"""How a run stands and how it ended: one truth for RunStatus, ListRuns and the end record.

Why one module: a run's outcome used to be decided twice — once for the status clients poll,
once for the file's end record — and the two disagreed (a run that got fewer frames than it
asked for said COMPLETED to clients and "incomplete" in its file). Now the end of a run is a
single :class:`RunEnd` value; the end record is its ``to_record()``, the final
:class:`RunStatus` is built from that record (:meth:`RunStatus.from_end_record`), and ListRuns and a
restarted daemon read the same record back with :meth:`RunEnd.from_record`.

Adding a counter: add a field to :class:`RunCounts` (and to :class:`RunStatus` if clients
should see it live). The end record, the final status and the repair of crashed runs pick it
up from the dataclass fields. The camera's own accounting (whatever numbers its
``AcquisitionStatus`` carries, now or after a driver adds some) goes into the end record's
``camera`` object as it is.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class RunState(enum.StrEnum):
    """Where a run is in its life. The two final states are coarse on purpose (clients of the
    first API version know only these): the :class:`RunOutcome` says how it ended."""

    IDLE = "idle"
    RECORDING = "recording"
    FINISHING = "finishing"
    COMPLETED = "completed"  # ended as planned or as asked: outcome completed or stopped
    FAILED = "failed"  # ended short of its plan: the outcome and the error say why


class RunOutcome(enum.StrEnum):
    """How a run ended: the end record's ``status``."""

    RUNNING = "running"  # not ended (in the file while recording; left there by a crash)
    COMPLETED = "completed"  # did what it was asked: all its frames, its duration, its scan
    STOPPED = "stopped"  # stopped on request (StopRun, daemon shutdown) before its own end
    #: its plan was aborted (AbortScan, a script's abort): the point in flight was cut; what
    #: is in the file is good (Bluesky's exit_status "abort")
    ABORTED = "aborted"
    INCOMPLETE = "incomplete"  # ended by itself with frames missing (camera gaps or failure)
    ESTOPPED = "e-stopped"  # an emergency stop happened during the run
    DISK_FULL = "disk full"  # free space fell below min_free_mb: ended before a write
    WRITE_ERROR = "write error"  # the file refused a write (ENOSPC, EFBIG, EIO...): see error
    FAILED = "failed"  # anything else ended it (the camera refused, its geometry changed)
    CRASHED = "crashed"  # the daemon died with the run open; repaired at the next start

    @property
    def ok(self) -> bool:
        return self in (RunOutcome.COMPLETED, RunOutcome.STOPPED, RunOutcome.ABORTED)

    @property
    def state(self) -> RunState:
        if self is RunOutcome.RUNNING:
            return RunState.RECORDING
        return RunState.COMPLETED if self.ok else RunState.FAILED


#: What older files (before outcomes had their own names) wrote as their status.
_LEGACY = {"failed": RunOutcome.FAILED}


@dataclass(frozen=True, slots=True)
class RunCounts:
    """Every frame and reading of a run, accounted for (see docs/pipeline.md)."""

    frames_expected: int = 0  # asked for, or (live) the span of frame numbers seen
    frames_received: int = 0  # taken from the camera's tap
    frames_written: int = 0  # in the file
    frames_dropped: int = 0  # the tap overflowed: the writer fell behind
    frames_missing: int = 0  # gaps in the camera's own frame numbers
    frames_discarded: int = 0  # taken or queued but not written: the file or disk refused
    readings_recorded: int = 0
    readings_lost: int = 0  # a Readable's tap overflowed
    readings_discarded: int = 0  # taken but not written: the file refused
    parameter_changes: int = 0
    parameter_changes_skipped: int = 0  # came faster than they could be observed
    parameter_changes_discarded: int = 0  # (and scan rows) taken, not written: file refused
    scan_points: int = 0
    audit_entries: int = 0  # mutating requests in the file's audit trail
    audit_dropped: int = 0  # came while the run's audit queue was full, or the file refused

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunCounts:
        known = {}
        for f in fields(cls):
            value = values.get(f.name, 0)
            known[f.name] = int(value) if isinstance(value, int | float) else 0
        return cls(**known)


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How one run ended: written as the file's end record, and the source of its final
    status."""

    outcome: RunOutcome
    reason: str
    counts: RunCounts
    start_time: float
    end_time: float
    error: str = ""  # for a write error: the errno name (ENOSPC, EFBIG, EIO, ...)
    camera: Mapping[str, float] = field(default_factory=dict)  # the camera's own accounting
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. when a crash was repaired

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "status": self.outcome.value,
            "reason": self.reason,
            "start_time": self.start_time,
            "end_time": self.end_time,
        }
        if self.error:
            record["error"] = self.error
        record.update(self.counts.as_dict())
        if self.camera:
            record["camera"] = dict(self.camera)
        record.update(self.extra)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RunEnd:
        """Read an end record back (a file's, or ListRuns'); tolerant of older files."""
        status = str(record.get("status", RunOutcome.RUNNING.value))
        try:
            outcome = RunOutcome(status)
        except ValueError:
            outcome = _LEGACY.get(status, RunOutcome.FAILED)
        camera = record.get("camera")
        known = {"status", "reason", "start_time", "end_time", "error", "camera"}
        known.update(f.name for f in fields(RunCounts))
        return cls(
            outcome=outcome,
            reason=str(record.get("reason", "")),
            counts=RunCounts.from_mapping(record),
            start_time=_number(record.get("start_time")),
            end_time=_number(record.get("end_time")),
            error=str(record.get("error", "")),
            camera=dict(camera) if isinstance(camera, Mapping) else {},
            extra={k: v for k, v in record.items() if k not in known},
        )


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A run's progress; published about once a second and at every state change."""

    name: str = ""
    path: str = ""
    state: RunState = RunState.IDLE
    started: float = 0.0
    ended: float = 0.0
    frames_expected: int = 0
    frames_received: int = 0
    frames_written: int = 0
    frames_committed: int = 0  # flushed: survives a crash
    frames_dropped: int = 0
    frames_missing: int = 0
    frames_discarded: int = 0
    writer_lag: int = 0  # frames waiting in the writer's tap right now
    readings_recorded: int = 0
    readings_lost: int = 0
    readings_discarded: int = 0
    parameter_changes: int = 0
    parameter_changes_skipped: int = 0
    parameter_changes_discarded: int = 0
    scan_points: int = 0
    audit_entries: int = 0
    audit_dropped: int = 0
    error: str = ""  # why the run ended short of its plan ("" while recording, or if it did not)
    end_record: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = ""  # the end record's status once ended ("" while recording)

    @property
    def active(self) -> bool:
        return self.state in (RunState.RECORDING, RunState.FINISHING)

    def counting(self, counts: RunCounts, **live: Any) -> RunStatus:
        """This status with new counts (and live figures: frames_committed, writer_lag)."""
        changes: dict[str, Any] = {**counts.as_dict(), **live}
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_end_record(cls, name: str, path: str, record: Mapping[str, Any]) -> RunStatus:
        """The final status of a run, made from its end record and nothing else."""
        end = RunEnd.from_record(record)
        return cls(
            name=name,
            path=path,
            state=end.outcome.state,
            started=end.start_time,
            ended=end.end_time,
            error="" if end.outcome.ok else end.reason,
            end_record=dict(record),
            outcome=end.outcome.value,
        ).counting(end.counts, frames_committed=end.counts.frames_written)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
