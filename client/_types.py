"""What the client returns: small frozen dataclasses, translated from the protobuf replies.

Callers never handle protobuf messages: values are plain Python (``float``, ``int``, ``bool``,
``str``), enums are lower-case strings (``"ready"``, ``"user"``), absent optional fields are
``None``. ``dataclasses.asdict`` of any of them is JSON-ready (``benchctl --json`` uses it).

Error handling: none here; a field the daemon left unset gets its proto default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from benchd.v1 import (
    common_pb2,
    control_pb2,
    daemon_pb2,
    estop_pb2,
    hardware_pb2,
    health_pb2,
    preset_pb2,
    preview_pb2,
    scan_pb2,
    storage_pb2,
)

#: A parameter value as Python sees it (None: the daemon sent none, e.g. no desired value yet).
PlainValue = bool | int | float | str | None

_STATES = {
    common_pb2.DEVICE_STATE_READY: "ready",
    common_pb2.DEVICE_STATE_DEGRADED: "degraded",
    common_pb2.DEVICE_STATE_DOWN: "down",
}
_SOURCES = {
    common_pb2.SOURCE_DEFAULT: "default",
    common_pb2.SOURCE_USER: "user",
    common_pb2.SOURCE_SCRIPT: "script",
    common_pb2.SOURCE_HARDWARE: "hardware",
}


def to_value(value: bool | int | float | str) -> common_pb2.Value:
    """A Python value as a ``Value`` (the daemon coerces it to the parameter's dtype)."""
    if isinstance(value, bool):
        return common_pb2.Value(flag=value)
    if isinstance(value, int):
        return common_pb2.Value(integer=value)
    if isinstance(value, float):
        return common_pb2.Value(number=value)
    return common_pb2.Value(text=str(value))


def from_value(value: common_pb2.Value) -> PlainValue:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    result: PlainValue = getattr(value, kind)
    return result


@dataclass(frozen=True, slots=True)
class Failure:
    type: str
    message: str
    when: float  # Unix time


def _failure(message: common_pb2.Failure, present: bool) -> Failure | None:
    return Failure(message.type, message.message, message.when) if present else None


def _limits(message: common_pb2.Limits, present: bool) -> tuple[float, float] | None:
    return (message.low, message.high) if present else None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    name: str
    driver: str
    capabilities: tuple[str, ...]  # "Movable", "Readable", "Parameterized", ...
    identity: str
    units: str  # of the position (Movable) or the reading (Readable)
    state: str  # "ready", "degraded", "down"
    position_limits: tuple[float, float] | None
    restarts: int
    last_failure: Failure | None
    latched: str  # the e-stop reason while latched, "" otherwise
    operations: tuple[str, ...] = ()  # "home", "stop", "motor_on", "zero"
    # "device" (an instrument, an axis) or "service" (the recorder, a frame ring, the script
    # runner, the plans executor): ``AsyncBench.devices()`` and ``.services()`` list them apart
    kind: str = "device"

    @property
    def is_service(self) -> bool:
        return self.kind == "service"

    @classmethod
    def from_pb(cls, m: hardware_pb2.Device) -> DeviceInfo:
        return cls(
            name=m.name,
            driver=m.driver,
            capabilities=tuple(m.capabilities),
            identity=m.identity,
            units=m.units,
            state=_STATES.get(m.state, "unknown"),
            position_limits=_limits(m.position_limits, m.HasField("position_limits")),
            restarts=m.restarts,
            last_failure=_failure(m.last_failure, m.HasField("last_failure")),
            latched=m.latched,
            operations=tuple(m.operations),
            kind=m.kind or "device",  # a daemon older than the field lists devices only
        )


@dataclass(frozen=True, slots=True)
class ParameterInfo:
    device: str
    name: str
    dtype: str  # "float", "int", "bool", "str" or an enum's name
    units: str
    limits: tuple[float, float] | None
    choices: tuple[PlainValue, ...]
    read_only: bool
    hazardous: bool  # refused while the e-stop is latched
    description: str

    @classmethod
    def from_pb(cls, device: str, m: hardware_pb2.ParameterInfo) -> ParameterInfo:
        return cls(
            device=device,
            name=m.name,
            dtype=m.dtype,
            units=m.units,
            limits=_limits(m.limits, m.HasField("limits")),
            choices=tuple(from_value(c) for c in m.choices),
            read_only=m.read_only,
            hazardous=m.hazardous,
            description=m.description,
        )


@dataclass(frozen=True, slots=True)
class ParameterValue:
    device: str
    name: str
    value: PlainValue  # what the hardware holds
    desired: PlainValue  # what was last asked for
    units: str
    timestamp: float
    version: int
    source: str  # "default", "user", "script", "hardware"

    @classmethod
    def from_pb(cls, m: hardware_pb2.ParameterValue) -> ParameterValue:
        return cls(
            device=m.device,
            name=m.name,
            value=from_value(m.value),
            desired=from_value(m.desired) if m.HasField("desired") else None,
            units=m.units,
            timestamp=m.timestamp,
            version=m.version,
            source=_SOURCES.get(m.source, "unknown"),
        )


@dataclass(frozen=True, slots=True)
class Position:
    device: str
    position: float
    units: str
    timestamp: float

    @classmethod
    def from_pb(cls, m: hardware_pb2.Position) -> Position:
        return cls(m.device, m.position, m.units, m.timestamp)


@dataclass(frozen=True, slots=True)
class HomeProgress:
    """One step of a home search: the latest position known (NaN until the axis reports one;
    an ELL14 mount reports only the end), time elapsed; ``done`` on the last one."""

    device: str
    position: float
    units: str
    elapsed: float  # seconds since the search started
    done: bool
    timestamp: float

    @classmethod
    def from_pb(cls, m: hardware_pb2.HomeProgress) -> HomeProgress:
        return cls(m.device, m.position, m.units, m.elapsed_s, m.done, m.timestamp)


@dataclass(frozen=True, slots=True)
class MotorState:
    device: str
    motor_on: bool
    fault: str  # why it was off, as the controller said ("" if none)

    @classmethod
    def from_pb(cls, m: hardware_pb2.MotorState) -> MotorState:
        return cls(m.device, m.motor_on, m.fault)


@dataclass(frozen=True, slots=True)
class ZeroState:
    device: str
    zero: bool  # a dark offset is subtracted now

    @classmethod
    def from_pb(cls, m: hardware_pb2.ZeroState) -> ZeroState:
        return cls(m.device, m.zero)


@dataclass(frozen=True, slots=True)
class MoveResult:
    device: str
    position: float  # settled position when waited for, else where the move started
    settled: bool
    units: str

    @classmethod
    def from_pb(cls, m: hardware_pb2.MoveResponse) -> MoveResult:
        return cls(m.device, m.position, m.settled, m.units)


@dataclass(frozen=True, slots=True)
class Reading:
    device: str
    value: float
    units: str
    timestamp: float
    flags: tuple[str, ...]  # why the value may not be trustworthy; empty: valid

    @classmethod
    def from_pb(cls, m: hardware_pb2.Reading) -> Reading:
        return cls(m.device, m.value, m.units, m.timestamp, tuple(m.flags))


@dataclass(frozen=True, slots=True)
class SystemHealth:
    cpu_percent: float
    memory_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    disk_path: str
    disk_free_bytes: int
    disk_total_bytes: int
    uptime_s: float
    actors: int
    actors_ready: int
    run_state: str  # the recorder's: idle, recording, finishing, completed, failed
    writer_lag: int  # frames queued for the run writer now
    run_frames_dropped: int  # the current (or last) run
    run_frames_missing: int
    preview_frames_skipped: int  # latest-only taps (GUIs, streams, the ring): skipped, not lost
    publish: PublishHealth | None = None  # the Tiled publisher ([publish] tiled), if any
    document_updates_lost: int = 0  # run updates the live document stream missed
    estop: EmergencyStopLatch | None = None  # the e-stop latch (None from an older daemon)

    @classmethod
    def from_pb(cls, m: health_pb2.SystemHealth) -> SystemHealth:
        return cls(
            m.cpu_percent,
            m.memory_percent,
            m.memory_used_bytes,
            m.memory_total_bytes,
            m.disk_path,
            m.disk_free_bytes,
            m.disk_total_bytes,
            m.uptime_s,
            m.actors,
            m.actors_ready,
            m.run_state,
            m.writer_lag,
            m.run_frames_dropped,
            m.run_frames_missing,
            m.preview_frames_skipped,
            PublishHealth.from_pb(m.publish) if m.HasField("publish") else None,
            m.document_updates_lost,
            EmergencyStopLatch.from_pb(m.estop) if m.HasField("estop") else None,
        )


@dataclass(frozen=True, slots=True)
class PublishHealth:
    """The Tiled publisher: runs waiting (``backlog``), published, failed, and why not now."""

    server: str
    connected: bool
    backlog: int
    published: int
    failed_runs: int
    attempts_failed: int
    last_error: str
    last_published: float  # Unix time, 0 if none yet
    retry_in_s: float
    overflowed: int

    @classmethod
    def from_pb(cls, m: health_pb2.PublishHealth) -> PublishHealth:
        return cls(
            m.server,
            m.connected,
            m.backlog,
            m.published,
            m.failed_runs,
            m.attempts_failed,
            m.last_error,
            m.last_published,
            m.retry_in_s,
            m.overflowed,
        )


@dataclass(frozen=True, slots=True)
class ActorHealth:
    name: str
    state: str  # "ready", "degraded", "down"
    detail: str  # starting, running, stopping, restarting, down
    mailbox_depth: int
    mailbox_capacity: int
    handled: int
    failed: int
    refused: int
    restarts: int
    last_failure: Failure | None
    latched: str
    responsive: bool
    heartbeat_ms: float

    @classmethod
    def from_pb(cls, m: health_pb2.ActorHealth) -> ActorHealth:
        return cls(
            name=m.name,
            state=_STATES.get(m.state, "unknown"),
            detail=m.detail,
            mailbox_depth=m.mailbox_depth,
            mailbox_capacity=m.mailbox_capacity,
            handled=m.handled,
            failed=m.failed,
            refused=m.refused,
            restarts=m.restarts,
            last_failure=_failure(m.last_failure, m.HasField("last_failure")),
            latched=m.latched,
            responsive=m.responsive,
            heartbeat_ms=m.heartbeat_ms,
        )


@dataclass(frozen=True, slots=True)
class Health:
    """The machine and every actor (``Health.GetSystemHealth`` and ``Health.ListActors``)."""

    system: SystemHealth
    actors: tuple[ActorHealth, ...]

    @property
    def all_ready(self) -> bool:
        return all(a.state == "ready" for a in self.actors)


@dataclass(frozen=True, slots=True)
class PresetInfo:
    name: str
    description: str
    created: float  # Unix time
    devices: tuple[str, ...]
    parameters: int

    @classmethod
    def from_pb(cls, m: preset_pb2.PresetInfo) -> PresetInfo:
        return cls(m.name, m.description, m.created, tuple(m.devices), m.parameters)


@dataclass(frozen=True, slots=True)
class PresetEntry:
    device: str
    name: str
    value: PlainValue

    @classmethod
    def from_pb(cls, m: preset_pb2.PresetEntry) -> PresetEntry:
        return cls(m.device, m.name, from_value(m.value))


@dataclass(frozen=True, slots=True)
class Preset:
    info: PresetInfo
    entries: tuple[PresetEntry, ...]

    @classmethod
    def from_pb(cls, m: preset_pb2.PresetContents) -> Preset:
        return cls(PresetInfo.from_pb(m.info), tuple(PresetEntry.from_pb(e) for e in m.entries))


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    version: str
    uptime_s: float
    started_at: float
    bench: str
    devices: tuple[str, ...]
    features: tuple[str, ...]
    role: str  # the caller's role: "observer" or "operator"
    estop: EmergencyStopLatch | None = None  # the e-stop latch (None from an older daemon)

    @classmethod
    def from_pb(cls, m: daemon_pb2.DaemonInfoResponse) -> DaemonInfo:
        return cls(
            m.version,
            m.uptime_s,
            m.started_at,
            m.bench,
            tuple(m.devices),
            tuple(m.features),
            m.role,
            EmergencyStopLatch.from_pb(m.estop) if m.HasField("estop") else None,
        )


def _latch_since(m: common_pb2.EmergencyStopLatch | estop_pb2.EmergencyStopState) -> float | None:
    """The wire says 0 for "not latched"; a client reads None, never the epoch."""
    return m.since if m.latched and m.since > 0 else None


@dataclass(frozen=True, slots=True)
class EmergencyStopLatch:
    """The e-stop latch as Health and DaemonInfo report it: whom to ask and what to check."""

    latched: bool
    reason: str  # the newest stop's reason
    by: str  # who asked: "alice (operator) from 10.0.0.7", "script"
    since: float | None  # Unix time it was set; None when not latched
    actors: tuple[str, ...]  # the actors latched now
    summary: str  # "e-stop latched since 14:02:05 by alice ... (beam dump open)"

    @classmethod
    def from_pb(cls, m: common_pb2.EmergencyStopLatch) -> EmergencyStopLatch:
        return cls(m.latched, m.reason, m.by, _latch_since(m), tuple(m.actors), m.summary)


@dataclass(frozen=True, slots=True)
class EmergencyStopState:
    latched: bool
    latched_actors: tuple[str, ...]
    reason: str
    by: str = ""  # who asked for the newest stop
    since: float | None = None  # Unix time the latch was set; None when not latched
    summary: str = ""  # "e-stop latched since 14:02:05 by alice (operator) ... (reason)"

    @classmethod
    def from_pb(cls, m: estop_pb2.EmergencyStopState) -> EmergencyStopState:
        return cls(m.latched, tuple(m.latched_actors), m.reason, m.by, _latch_since(m), m.summary)


@dataclass(frozen=True, slots=True)
class StopAcknowledgement:
    actor: str
    ok: bool
    latency_ms: float
    error: str


@dataclass(frozen=True, slots=True)
class EmergencyStopResult:
    all_stopped: bool
    acknowledgements: tuple[StopAcknowledgement, ...]  # latency_ms: from the daemon's receipt
    received_at: float = 0.0  # Unix time the request reached the daemon (its clock)
    dispatch_ms: float = 0.0  # the daemon's wait from that receipt to the stop's broadcast
    round_trip_ms: float = 0.0  # measured here: from sending the request to the reply

    @classmethod
    def from_pb(cls, m: estop_pb2.EmergencyStopResponse) -> EmergencyStopResult:
        acks = tuple(
            StopAcknowledgement(a.actor, a.ok, a.latency_ms, a.error) for a in m.acknowledgements
        )
        return cls(m.all_stopped, acks, m.received_at, m.dispatch_ms)


@dataclass(frozen=True, slots=True)
class ResetResult:
    still_latched: tuple[str, ...]  # empty: every latch cleared

    @property
    def cleared(self) -> bool:
        return not self.still_latched


_EVENT_KINDS = {
    estop_pb2.EmergencyStopEvent.KIND_CURRENT: "current",
    estop_pb2.EmergencyStopEvent.KIND_STOPPED: "stopped",
    estop_pb2.EmergencyStopEvent.KIND_RESET: "reset",
}


@dataclass(frozen=True, slots=True)
class EmergencyStopEvent:
    kind: str  # "current" (the state when the stream opened), "stopped", "reset"
    reason: str
    timestamp: float
    latched: bool
    all_stopped: bool
    client: str  # who asked; "" for the daemon itself

    @classmethod
    def from_pb(cls, m: estop_pb2.EmergencyStopEvent) -> EmergencyStopEvent:
        kind = _EVENT_KINDS.get(m.kind, "unknown")
        return cls(kind, m.reason, m.timestamp, m.latched, m.all_stopped, m.client)


_ALERT_KINDS = {
    health_pb2.Alert.KIND_DISK_LOW: "disk_low",
    health_pb2.Alert.KIND_DEVICE_DEGRADED: "device_degraded",
    health_pb2.Alert.KIND_ACTOR_UNRESPONSIVE: "actor_unresponsive",
    health_pb2.Alert.KIND_MEMORY_HIGH: "memory_high",
    health_pb2.Alert.KIND_WRITER_LAG: "writer_lag",
    health_pb2.Alert.KIND_FRAMES_LOST: "frames_lost",
    health_pb2.Alert.KIND_ESTOP_LATCHED: "estop_latched",
}


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # disk_low, device_degraded, actor_unresponsive, memory_high, writer_lag,
    # frames_lost, estop_latched
    subject: str
    message: str
    active: bool  # False: the condition cleared
    timestamp: float

    @classmethod
    def from_pb(cls, m: health_pb2.Alert) -> Alert:
        return cls(_ALERT_KINDS.get(m.kind, "unknown"), m.subject, m.message, m.active, m.timestamp)


_RUN_STATES = {
    storage_pb2.RUN_STATE_IDLE: "idle",
    storage_pb2.RUN_STATE_RECORDING: "recording",
    storage_pb2.RUN_STATE_FINISHING: "finishing",
    storage_pb2.RUN_STATE_COMPLETED: "completed",
    storage_pb2.RUN_STATE_FAILED: "failed",
}


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A run's progress (``Storage.GetRunStatus``); ``end_record`` once it has ended."""

    name: str
    path: str
    state: str  # "idle", "recording", "finishing", "completed", "failed"
    started: float
    ended: float
    frames_expected: int
    frames_received: int
    frames_written: int
    frames_committed: int  # flushed: survives a crash
    frames_dropped: int  # the writer fell behind (never silent)
    frames_missing: int  # lost in the camera
    writer_lag: int
    readings_recorded: int
    readings_lost: int
    parameter_changes: int
    parameter_changes_skipped: int
    error: str
    end_record: dict[str, Any] = field(default_factory=dict)
    # once ended, the end record's status: completed, stopped, aborted, incomplete, e-stopped, disk
    # full, write error, failed, crashed ("" while recording)
    outcome: str = ""
    scan_points: int = 0

    @property
    def finished(self) -> bool:
        return self.state in ("completed", "failed")

    @property
    def lost_nothing(self) -> bool:
        """Every frame and reading that reached the daemon is in the file."""
        return self.state == "completed" and not (
            self.frames_dropped or self.frames_missing or self.readings_lost
        )

    @classmethod
    def from_pb(cls, m: storage_pb2.RunStatus) -> RunStatus:
        try:
            end_record = json.loads(m.end_record_json) if m.end_record_json else {}
        except ValueError:
            end_record = {"unparsed": m.end_record_json}
        return cls(
            name=m.name,
            path=m.path,
            state=_RUN_STATES.get(m.state, "unknown"),
            started=m.started,
            ended=m.ended,
            frames_expected=m.frames_expected,
            frames_received=m.frames_received,
            frames_written=m.frames_written,
            frames_committed=m.frames_committed,
            frames_dropped=m.frames_dropped,
            frames_missing=m.frames_missing,
            writer_lag=m.writer_lag,
            readings_recorded=m.readings_recorded,
            readings_lost=m.readings_lost,
            parameter_changes=m.parameter_changes,
            parameter_changes_skipped=m.parameter_changes_skipped,
            error=m.error,
            end_record=end_record if isinstance(end_record, dict) else {"value": end_record},
            outcome=m.outcome,
            scan_points=m.scan_points,
        )


@dataclass(frozen=True, slots=True)
class RunFile:
    name: str
    path: str
    size_bytes: int
    modified: float
    status: str  # the outcome: completed, stopped, incomplete, failed, ...; running (or crashed)
    frames_written: int
    readings_recorded: int = 0
    reason: str = ""  # the end record's reason
    error: str = ""  # a write error's errno name (ENOSPC, EIO, ...)

    @classmethod
    def from_pb(cls, m: storage_pb2.RunFile) -> RunFile:
        return cls(
            m.name,
            m.path,
            m.size_bytes,
            m.modified,
            m.status,
            m.frames_written,
            m.readings_recorded,
            m.reason,
            m.error,
        )


@dataclass(frozen=True, slots=True)
class AcquisitionStatus:
    device: str
    running: bool
    frames_requested: int  # 0: live
    frames_acquired: int
    frames_missing: int
    frames_lost: int
    last_frame_number: int
    fps: float
    error: str
    frames_zero: int = 0  # all-zero frames (a driver artefact): counted, never published
    stalls: int = 0  # stalls detected and restarted from
    warning: str = ""  # the latest trouble the acquisition ran through
    overwrite_fallback: bool = False  # live mode runs without circular overwrite

    @classmethod
    def from_pb(cls, m: hardware_pb2.AcquisitionStatus) -> AcquisitionStatus:
        return cls(
            m.device,
            m.running,
            m.frames_requested,
            m.frames_acquired,
            m.frames_missing,
            m.frames_lost,
            m.last_frame_number,
            m.fps,
            m.error,
            m.frames_zero,
            m.stalls,
            m.warning,
            m.overwrite_fallback,
        )


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One camera frame: ``pixels`` is a read-only uint16 array of shape (height, width)."""

    device: str
    frame_number: int
    timestamp: float
    exposure_ms: float
    bit_depth: int
    skipped: int  # frames this stream skipped so far (slow client or max_fps)
    pixels: npt.NDArray[np.uint16]

    @classmethod
    def from_pb(cls, m: hardware_pb2.Frame) -> Frame:
        if m.pixel_format != "uint16le":
            raise ValueError(
                f"unknown pixel format {m.pixel_format!r} (this client reads uint16le)"
            )
        pixels = np.frombuffer(m.data, dtype="<u2").reshape(m.height, m.width)
        return cls(
            m.device, m.frame_number, m.timestamp, m.exposure_ms, m.bit_depth, m.skipped, pixels
        )


_EXECUTION_STATES = {
    control_pb2.EXECUTION_STATE_PENDING: "pending",
    control_pb2.EXECUTION_STATE_RUNNING: "running",
    control_pb2.EXECUTION_STATE_COMPLETED: "completed",
    control_pb2.EXECUTION_STATE_ERROR: "error",
    control_pb2.EXECUTION_STATE_STOPPED: "stopped",
    control_pb2.EXECUTION_STATE_ABORTED: "aborted",
    control_pb2.EXECUTION_STATE_PAUSED: "paused",
}


@dataclass(frozen=True, slots=True)
class ScriptProblem:
    line: int
    column: int
    message: str
    severity: str  # error, warning, advice


@dataclass(frozen=True, slots=True)
class ScriptInfo:
    name: str
    size: int
    uploaded: float
    problems: tuple[ScriptProblem, ...]  # lint warnings

    @classmethod
    def from_pb(cls, m: control_pb2.ScriptInfo) -> ScriptInfo:
        problems = tuple(ScriptProblem(p.line, p.column, p.message, p.severity) for p in m.problems)
        return cls(m.name, m.size, m.uploaded, problems)


@dataclass(frozen=True, slots=True)
class Execution:
    """One run of a script in the daemon: it goes on whether or not a client watches."""

    id: str
    script: str
    state: str  # pending, running, completed, error, stopped, aborted
    submitted: float
    started: float
    ended: float
    progress: float
    line: int  # of the error (0: none)
    column: int
    error: str
    output_lines: int
    steps: int
    # The script's worker process: memory and CPU time next to their caps, how it ended.
    worker_pid: int = 0
    memory_rss_bytes: int = 0
    memory_peak_bytes: int = 0
    memory_limit_bytes: int = 0
    cpu_time_s: float = 0.0
    cpu_time_limit_s: float = 0.0
    worker_end: str = ""
    worker_stop_ms: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state in ("completed", "error", "stopped", "aborted")

    @classmethod
    def from_pb(cls, m: control_pb2.Execution) -> Execution:
        return cls(
            m.id,
            m.script,
            _EXECUTION_STATES.get(m.state, "unknown"),
            m.submitted,
            m.started,
            m.ended,
            m.progress,
            m.line,
            m.column,
            m.error,
            m.output_lines,
            m.steps,
            m.worker_pid,
            m.memory_rss_bytes,
            m.memory_peak_bytes,
            m.memory_limit_bytes,
            m.cpu_time_s,
            m.cpu_time_limit_s,
            m.worker_end,
            m.worker_stop_ms,
        )


_SCAN_STATES = {
    scan_pb2.SCAN_STATE_CREATED: "created",
    scan_pb2.SCAN_STATE_PENDING: "pending",
    scan_pb2.SCAN_STATE_RUNNING: "running",
    scan_pb2.SCAN_STATE_PAUSED: "paused",
    scan_pb2.SCAN_STATE_SUSPENDED: "suspended",
    scan_pb2.SCAN_STATE_COMPLETED: "completed",
    scan_pb2.SCAN_STATE_ERROR: "error",
    scan_pb2.SCAN_STATE_STOPPED: "stopped",
    scan_pb2.SCAN_STATE_ABORTED: "aborted",
}


def _json_object(text: str) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class ScanEstimate:
    """What the daemon expects a plan to take (``points`` None: bounded by a duration)."""

    points: int | None
    seconds: float
    frames: int
    bytes: int

    @classmethod
    def from_pb(cls, m: scan_pb2.ScanEstimate) -> ScanEstimate:
        return cls(None if m.open_ended else m.points, m.seconds, m.frames, m.bytes)


@dataclass(frozen=True, slots=True)
class PlanProblem:
    field: str  # where in the plan: "path.axes[1]", "read[0]"
    message: str  # names the device, the value and what is allowed
    device: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True, slots=True)
class PlanCheck:
    """``validate_plan``: every problem (empty: the plan can run now) and the estimate."""

    problems: list[PlanProblem]
    estimate: ScanEstimate | None

    @property
    def ok(self) -> bool:
        return not self.problems

    @classmethod
    def from_pb(cls, m: scan_pb2.PlanCheck) -> PlanCheck:
        return cls(
            [PlanProblem(p.field, p.message, p.device) for p in m.problems],
            ScanEstimate.from_pb(m.estimate) if m.HasField("estimate") else None,
        )


@dataclass(frozen=True, slots=True)
class Suspension:
    """One time a suspender held the scan (the point it interrupted was taken again)."""

    suspender: str
    point: int
    began: float
    ended: float
    seconds: float
    value: str


@dataclass(frozen=True, slots=True)
class ScanStatus:
    """A scan (a plan run by the daemon's executor), and where it has got to."""

    id: str
    state: str  # created, pending, running, paused, suspended, completed, error, stopped, aborted
    origin: str  # who started it: "client alice", "script x3"
    points_done: int
    points_total: int  # the most it takes; 0: bounded by a duration
    positions: dict[str, float]
    run_path: str
    error: str
    pause_requested: bool
    kind: str = ""  # count, line, list, grid, adaptive, tune
    suspended_by: str = ""
    suspensions: list[Suspension] = field(default_factory=list)
    estimate: ScanEstimate | None = None
    result: dict[str, Any] = field(default_factory=dict)  # a tune's peak
    created: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    events: int = 0

    @property
    def finished(self) -> bool:
        return self.state in ("completed", "error", "stopped", "aborted")

    @property
    def execution_id(self) -> str:
        """The script execution that ran it ("" for a scan from a client)."""
        return self.origin.removeprefix("script ") if self.origin.startswith("script ") else ""

    @classmethod
    def from_pb(cls, m: scan_pb2.ScanStatus) -> ScanStatus:
        return cls(
            m.id,
            _SCAN_STATES.get(m.state, "unknown"),
            m.origin,
            m.points_done,
            m.points_total,
            dict(m.positions),
            m.run_path,
            m.error,
            m.pause_requested,
            m.plan.WhichOneof("path") or "",
            m.suspended_by,
            [
                Suspension(s.suspender, s.point, s.began, s.ended, s.seconds, s.value)
                for s in m.suspensions
            ],
            ScanEstimate.from_pb(m.estimate) if m.HasField("estimate") else None,
            _json_object(m.result_json),
            m.created,
            m.started,
            m.ended,
            m.events,
        )


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """One event of a scan: ``kind`` is started, point, suspended, resumed, paused, ended or
    gap; the other fields are those of that kind (unset ones keep their defaults).

    * started: ``columns``, ``units``, ``run_path``, ``points_total``, ``plan`` (dict)
    * point: ``index``, ``positions``, ``readings``, ``flags``, ``frame_index`` (-1: no
      frames), ``frames``, ``started`` / ``time`` (Unix), ``attempts`` (> 1: repeated after a
      suspension)
    * suspended / resumed: ``suspender``, ``value``, ``index`` (the point taken again),
      ``seconds`` (how long it was held)
    * paused: ``paused``; ended: ``state``, ``reason``, ``points``, ``result``; gap:
      ``missed`` (events no longer kept: read the table)
    """

    scan_id: str
    seq: int
    time: float
    kind: str
    index: int = -1
    positions: dict[str, float] = field(default_factory=dict)
    readings: dict[str, float] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    frame_index: int = -1
    frames: int = 0
    started: float = 0.0
    attempts: int = 0
    columns: list[str] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    run_path: str = ""
    points_total: int = 0
    plan: dict[str, Any] = field(default_factory=dict)
    suspender: str = ""
    value: str = ""
    seconds: float = 0.0
    paused: bool = False
    state: str = ""
    reason: str = ""
    points: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    missed: int = 0

    @classmethod
    def from_pb(cls, m: scan_pb2.ScanEvent) -> ScanEvent:
        kind = m.WhichOneof("body") or "unknown"
        base: dict[str, Any] = {"scan_id": m.scan_id, "seq": m.seq, "time": m.time, "kind": kind}
        match kind:
            case "started":
                b = m.started
                extra: dict[str, Any] = {
                    "columns": list(b.columns),
                    "units": dict(b.units),
                    "run_path": b.run_path,
                    "points_total": b.points_total,
                    "plan": _json_object(b.plan_json),
                }
            case "point":
                p = m.point
                extra = {
                    "index": p.index,
                    "positions": dict(p.positions),
                    "readings": dict(p.readings),
                    "flags": dict(p.flags),
                    "frame_index": p.frame_index,
                    "frames": p.frames,
                    "started": p.started,
                    "attempts": p.attempts,
                }
                base["time"] = p.time
            case "suspended":
                extra = {
                    "suspender": m.suspended.suspender,
                    "value": m.suspended.value,
                    "index": m.suspended.point,
                }
            case "resumed":
                extra = {"suspender": m.resumed.suspender, "seconds": m.resumed.seconds}
            case "paused":
                extra = {"paused": m.paused.paused}
            case "ended":
                e = m.ended
                extra = {
                    "state": _SCAN_STATES.get(e.state, "unknown"),
                    "reason": e.reason,
                    "points": e.points,
                    "result": _json_object(e.result_json),
                }
            case "gap":
                extra = {"missed": m.gap.missed}
            case _:
                extra = {}
        return cls(**base, **extra)


_REDUCTIONS = {
    preview_pb2.PREVIEW_REDUCTION_MEAN: "mean",
    preview_pb2.PREVIEW_REDUCTION_DECIMATE: "decimate",
    preview_pb2.PREVIEW_REDUCTION_MAX: "max",
}
#: ``reduction`` names a preview accepts, and their proto values.
PREVIEW_REDUCTIONS = {name: value for value, name in _REDUCTIONS.items()}


@dataclass(frozen=True, slots=True, eq=False)
class PreviewFrame:
    """A camera frame reduced in the daemon for a live view (``Preview.StreamPreview``).

    ``pixels`` (uint16, read-only) has shape (height, width); each pixel covers ``factor`` x
    ``factor`` pixels of the full frame, whose region on the sensor is ``roi`` (x, y, width,
    height in unbinned pixels) at the camera's binning ``binning`` (x, y). ``source_min``,
    ``source_max`` and ``saturated`` are of the full frame, before the reduction.
    """

    device: str
    frame_number: int
    timestamp: float
    exposure_ms: float
    factor: int
    reduction: str  # "mean", "decimate", "max"
    roi: tuple[int, int, int, int]
    binning: tuple[int, int]
    source_shape: tuple[int, int]  # (height, width) of the full frame
    bit_depth: int
    source_min: int
    source_max: int
    saturated: int
    skipped: int  # camera frames this stream did not send (rate limit, slow reader)
    reduce_ms: float
    pixels: npt.NDArray[np.uint16]

    def sensor_rect(
        self, x: float, y: float, width: float, height: float
    ) -> tuple[float, float, float, float]:
        """A rectangle in preview pixels as (x, y, width, height) in unbinned sensor pixels."""
        scale_x, scale_y = self.factor * self.binning[0], self.factor * self.binning[1]
        return (self.roi[0] + x * scale_x, self.roi[1] + y * scale_y, width * scale_x,
                height * scale_y)  # fmt: skip

    @classmethod
    def from_pb(cls, m: preview_pb2.PreviewFrame) -> PreviewFrame:
        if m.pixel_format != "uint16le":
            raise ValueError(
                f"unknown pixel format {m.pixel_format!r} (this client reads uint16le)"
            )
        pixels = np.frombuffer(m.data, dtype="<u2").reshape(m.height, m.width)
        return cls(
            device=m.device,
            frame_number=m.frame_number,
            timestamp=m.timestamp,
            exposure_ms=m.exposure_ms,
            factor=m.factor,
            reduction=_REDUCTIONS.get(m.reduction, "unknown"),
            roi=(m.roi_x, m.roi_y, m.roi_width, m.roi_height),
            binning=(m.bin_x or 1, m.bin_y or 1),
            source_shape=(m.source_height, m.source_width),
            bit_depth=m.bit_depth,
            source_min=m.source_min,
            source_max=m.source_max,
            saturated=m.saturated,
            skipped=m.skipped,
            reduce_ms=m.reduce_ms,
            pixels=pixels,
        )


@dataclass(frozen=True, slots=True)
class ScriptCheck:
    """``Control.CheckScript``: ``ok`` when the script parses (warnings may remain)."""

    ok: bool
    problems: tuple[ScriptProblem, ...]

    @classmethod
    def from_pb(cls, m: control_pb2.CheckScriptResponse) -> ScriptCheck:
        problems = tuple(ScriptProblem(p.line, p.column, p.message, p.severity) for p in m.problems)
        return cls(m.ok, problems)
