"""The recorder: the bench's one run slot — it starts and stops runs, one at a time, and
answers for the files they wrote.

A run is asked for by name (plus metadata, and optionally a number of frames or a duration);
the file name is made from the start time and that name, so two runs never collide and a name
can never escape the output directory. The recorder refuses rather than half-does: a run is
only started when the name is safe, the file does not exist, the disk has room and the camera
(if any) can say what its frames will look like.

Two ways to record, one slot: ``StartRun`` records a run in the recorder's own task;
``ClaimRun`` makes the same run (same checks, same file) and lends it to an owner that records
it itself — the acquisition executor, which composes each plan's run from its pieces (see
``run_lease.py``). Either way GetRunStatus, WatchRun, StopRun, ListRuns and the e-stop see the
bench's current run here, and a second run is refused while one records.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from runtime import (
    Actor,
    ActorError,
    ActorRef,
    BenchError,
    Hazardous,
    InsufficientResources,
    Message,
    Observable,
    Parameter,
    Request,
    Source,
    Subscription,
    ValidationError,
    WrongState,
)

from ..capabilities import (
    AcquisitionStatus,
    FrameGeometry,
    GetAcquisitionStatus,
    GetFrameGeometry,
)
from .audit_trail import AuditEntry, RecordAudit
from .crash_repair import Repair, repair_directory
from .disk_space import MB, DiskFull, FreeSpace, free_bytes
from .frame_source import SourceRefused
from .manifest import survey
from .nexus_file import DEFAULT_COMPRESSION, Compression, FrameLayout, ScanPlot, read_end_record
from .run import Run, open_run
from .run_lease import RunLease
from .run_setup import RunOptions, RunPieces, create_run
from .run_status import RunEnd, RunOutcome, RunState, RunStatus

logger = logging.getLogger(__name__)

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RUN_NAME_RULE = "1 to 64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
SUFFIX = ".nxs"
RECORDER_NAME = "recorder"  # the bench's recorder actor: the edge and scripts find it by name


@dataclass(frozen=True, slots=True)
class StartRun(Request[RunStatus], Hazardous):
    """Start recording. ``frames``: acquire that many camera frames, then end the run;
    ``duration``: end after that many seconds; neither: record until StopRun. Refused while
    the e-stop is latched (Hazardous), like moves and hazardous settings."""

    name: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    frames: int | None = None
    duration: float | None = None
    #: "none", "bitshuffle-lz4", or "" for the bench's default (``[storage] compression``).
    compression: str = ""
    record_frames: bool = True  # False: readings and parameters only, even with a camera
    #: A scan's table columns (``/entry/scan/<column>``), declared now because SWMR allows no
    #: new dataset once the run has started; rows arrive with RecordScanPoint.
    scan_columns: tuple[str, ...] = ()
    #: What records the run (a plan: its id, origin, description), for the manifest's
    #: ``run.recorded_by``; empty for a plain StartRun.
    recorded_by: Mapping[str, Any] = field(default_factory=dict)
    camera: str = ""  # whose frames the run records: "" the bench's (the recorder's) camera
    #: Units of scan columns the bench cannot tell itself (columns naming a device or a
    #: ``device.parameter`` get theirs); and the scan's default plot (None: inferred).
    scan_units: Mapping[str, str] = field(default_factory=dict)
    scan_plot: ScanPlot | None = None


@dataclass(frozen=True, slots=True)
class ClaimRun(Request[RunLease], Hazardous):
    """Take the bench's run slot for a run the asker records itself (``run_lease.py``): the
    same checks and the same file as ``start`` would get; the reply is the lease, holding the
    run's pieces. ``owner`` names the asker in refusals ("plan p3")."""

    start: StartRun
    owner: str


@dataclass(frozen=True, slots=True)
class StopRun(Request[RunStatus]):
    """End the current run. ``outcome``: how its end record names the end — STOPPED for a
    user's stop; None (an owner ending the run it started, a scan or script that is done):
    "stopped" if the run had a frame count or duration it has not reached, else as its data
    say (completed, or incomplete if frames are missing)."""

    reason: str = "stopped by user"
    outcome: RunOutcome | None = None


@dataclass(frozen=True, slots=True)
class RecordScanPoint(Request[int]):
    """One row of the current run's scan table: a value for each declared scan column (a
    column left out is NaN). Reply: the rows recorded so far."""

    values: Mapping[str, float]
    timestamp: float


@dataclass(frozen=True, slots=True)
class GetRunStatus(Request[RunStatus]):
    pass


@dataclass(frozen=True, slots=True)
class WatchRun(Request[Subscription]):  # type: ignore[type-arg]
    """Reply: a latest-value subscription to RunStatus (progress about once a second)."""


@dataclass(frozen=True, slots=True)
class RunFile:
    """A run file as its end record describes it (the same record the run's final status
    was made from)."""

    name: str
    path: str
    size_bytes: int
    modified: float
    status: str  # the end record's status (a RunOutcome); "running" while it records
    frames_written: int
    readings_recorded: int = 0
    reason: str = ""
    error: str = ""  # a write error's errno name


@dataclass(frozen=True, slots=True)
class ListRuns(Request[tuple[RunFile, ...]]):
    pass


#: How deeply a run's metadata may nest: the manifest is JSON, and json recurses (a script's
#: metadata 900 lists deep crashed the recorder with RecursionError).
MAX_METADATA_DEPTH = 32


def _deeper_than(value: object, limit: int) -> bool:
    """Whether dicts and lists nest in ``value`` more than ``limit`` deep (no recursion)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_run_name(name: str) -> str:
    if not RUN_NAME.fullmatch(name):
        raise ValidationError(f"run name {name!r} is not allowed; use {RUN_NAME_RULE}")
    return name


def run_name_of(path: Path) -> str:
    """The run's name from its file name (``<YYYYmmdd-HHMMSS>_<name>.nxs``)."""
    stem = path.name.removesuffix(SUFFIX)
    stamp, _, name = stem.partition("_")
    return name if name and len(stamp) == 15 else stem


def run_file_name(name: str, start: float) -> str:
    """``20261125-081500_<name>.nxs``: sorts by time, and a name can never leave the folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(start))
    return f"{stamp}_{name}{SUFFIX}"


async def wait_run(recorder: ActorRef) -> RunStatus:
    """The final status of the current run, once it has ended (at once if none is active).

    Built on WatchRun rather than a request the recorder would sit on, so the recorder keeps
    answering StopRun and status requests while anyone waits."""
    subscription: Subscription[RunStatus] = await recorder.ask(WatchRun())
    async for sample in subscription:
        if not sample.value.active:
            return sample.value
    return await recorder.ask(GetRunStatus())


class RecorderActor(Actor):
    stop_timeout = 60.0  # finishing a run writes what its taps still hold

    def __init__(
        self,
        directory: Path,
        *,
        camera: str | None = None,
        config_text: str = "",
        config_source: str = "",
        min_free_mb: float = 1024.0,
        flush_interval: float = 1.0,
        frame_queue: int = 128,
        free_space: FreeSpace = free_bytes,
        compression: str = DEFAULT_COMPRESSION.value,
        allowed_directories: Sequence[Path] = (),
    ) -> None:
        #: where ``directory`` may be set (each and below); empty: the first directory and below
        self.allowed_directories = tuple(
            Path(os.path.normpath(p)) for p in (allowed_directories or (directory,))
        )
        self.camera = camera
        self.compression = Compression(compression)  # a run's frames unless it says otherwise
        self.free_space = free_space  # how free disk space is read (tests fill a "disk")
        self.config_text = config_text
        self.config_source = config_source
        add = self.parameters.add
        self.directory = add(
            Parameter(
                "directory",
                str,
                str(directory),
                description="where run files are written (an absolute path under one of the"
                " config's [storage] allowed_directories)",
                check=self._check_directory,
            )
        )
        self.min_free_mb = add(
            Parameter(
                "min_free_mb",
                float,
                min_free_mb,
                units="MiB",
                limits=(0.0, 1e9),
                description="refuse, or end, a run when the disk has less free space",
                write=self._apply_min_free,
            )
        )
        self.flush_interval = add(
            Parameter(
                "flush_interval",
                float,
                flush_interval,
                units="s",
                limits=(0.05, 60.0),
                description="how often a run is flushed (the most a crash can lose)",
            )
        )
        self.frame_queue = add(
            Parameter(
                "frame_queue",
                int,
                frame_queue,
                limits=(2, 100_000),
                description="frames the writer may fall behind before frames are dropped",
            )
        )
        self._status: Observable[RunStatus] = Observable(RunStatus())
        self._run: Run | None = None  # a run the recorder records itself
        self._lease: RunLease | None = None  # the slot lent to an owner (ClaimRun)
        self._repaired: set[Path] = set()  # directories whose crashed runs were repaired

    async def _apply_min_free(self, value: float) -> None:
        margin = int(value * MB)
        self._control(lambda run: run.set_min_free(margin))  # a running run checks it now

    def _busy(self) -> str | None:
        """Why the slot is taken ("run 'x' is recording (plan p3)"), None if it is free."""
        if self._run is not None and not self._run.finished.is_set():
            return f"run {self._run.name!r} is recording"
        lease = self._lease
        if lease is not None and lease.active:
            return f"run {lease.name!r} is recording ({lease.owner})"
        return None

    def _control(self, action: Callable[[Run], None]) -> bool:
        """Apply ``action`` to the current run, the recorder's own or a lent one; False if
        no run is recording."""
        if self._run is not None and not self._run.finished.is_set():
            action(self._run)
            return True
        lease = self._lease
        if lease is not None and lease.active:
            lease.control(action)
            return True
        return False

    def _check_directory(self, value: str) -> None:
        """Absolute and, once ``..`` is taken out, under an allowed directory: a client moves
        runs between the places the lab's config allows, never to /etc or /proc."""
        shown = repr(value[:100]) + (f"… ({len(value)} characters)" if len(value) > 100 else "")
        if "\0" in value or not Path(value).is_absolute():
            raise ValidationError(f"directory must be an absolute path, got {shown}")
        path = Path(os.path.normpath(value))
        if not any(path.is_relative_to(root) for root in self.allowed_directories):
            roots = ", ".join(str(r) for r in self.allowed_directories[:8])
            raise ValidationError(
                f"directory {shown} is outside where run files may go: {roots} and below"
                " (the config's [storage] allowed_directories)"
            )

    # -- messages ------------------------------------------------------------------------------

    async def handle(self, message: Message) -> object:
        match message:
            case StartRun():
                return await self._start(message)
            case ClaimRun(start=start, owner=owner):
                return await self._claim(start, owner)
            case StopRun(reason=reason, outcome=outcome):
                return await self._stop(reason, outcome)
            case RecordScanPoint(values=values, timestamp=timestamp):
                return self._record_scan_point(values, timestamp)
            case RecordAudit(entry=entry):
                self._record_audit(entry)
                return None
            case GetRunStatus():
                return self._status.value
            case WatchRun():
                return self._status.subscribe()
            case ListRuns():
                await self._repair(Path(self.directory.value))
                return await trio.to_thread.run_sync(self._list_runs)
        return await super().handle(message)

    async def _start(self, request: StartRun) -> RunStatus:
        pieces, options = await self._create(request)
        try:
            run: Run = await self.nursery.start(self._record, pieces, options)
        except SourceRefused as refusal:  # the file got its end record; the caller the reason
            raise WrongState(
                f"{refusal}; {pieces.writer.path.name} was closed with a failed end record"
            ) from None
        self._run = run
        self._lease = None
        logger.info("run %s recording to %s", options.name, pieces.writer.path)
        return run.status

    async def _claim(self, request: StartRun, owner: str) -> RunLease:
        pieces, options = await self._create(request)
        lease = RunLease(
            pieces, options, owner=owner, publish=lambda status: self._publish_lent(lease, status)
        )
        self._lease = lease
        self._run = None
        logger.info("run %s lent to %s, recording to %s", options.name, owner, lease.path)
        return lease

    def _publish_lent(self, lease: RunLease, status: RunStatus) -> None:
        if self._lease is lease and not self._status.closed:
            self._publish(status)

    async def _create(self, request: StartRun) -> tuple[RunPieces, RunOptions]:
        """The run's checks and its file: what StartRun and ClaimRun share."""
        busy = self._busy()
        if busy is not None:
            raise WrongState(f"{busy}; stop it (StopRun) before starting another")
        options = self._options(request)
        await self._repair(options.directory)
        try:
            options.directory.mkdir(parents=True, exist_ok=True)
            free = self.free_space(options.directory)
        except OSError as error:
            raise ValidationError(
                f"the run directory {options.directory} cannot be used ({error.strerror});"
                " set the recorder's directory parameter to a writable folder"
            ) from error
        if free < options.min_free_bytes:
            raise InsufficientResources(
                f"disk space low: {free // MB} MiB free in {options.directory}; a run needs at"
                f" least {options.min_free_bytes // MB} MiB (parameter min_free_mb)"
            )
        start = time.time()
        path = options.directory / run_file_name(options.name, start)
        if path.exists():
            raise ValidationError(f"{path} exists already; runs never overwrite a file")
        layout = await self._frame_layout(options)
        await self._check_camera_idle(options)
        names = tuple(n for n in self.system.names() if n != self.name)
        devices = await survey(self.system, names)
        try:
            pieces = await create_run(
                self.system,
                options,
                path=path,
                start_time=start,
                devices=devices,
                layout=layout,
                config_text=self.config_text,
                config_source=self.config_source,
                free_space=self.free_space,
            )
        except FileExistsError:
            raise ValidationError(f"{path} exists already; runs never overwrite a file") from None
        except DiskFull as error:
            raise InsufficientResources(str(error)) from error
        except OSError as error:
            raise InsufficientResources(f"cannot create {path}: {error}") from error
        return pieces, options

    async def _record(
        self,
        pieces: RunPieces,
        options: RunOptions,
        *,
        task_status: trio.TaskStatus[Run] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The run's task: it lives in the recorder's nursery, so it outlives StartRun."""
        async with open_run(
            pieces,
            flush_interval=options.flush_interval,
            duration=options.duration,
            publish=self._publish,
            cancel_reason="the recorder stopped (daemon shutdown)",
        ) as run:
            task_status.started(run)
            await run.finished.wait()

    def _record_scan_point(self, values: Mapping[str, float], timestamp: float) -> int:
        run = self._run
        if run is None or run.finished.is_set():
            lease = self._lease
            if lease is not None and lease.active:
                raise WrongState(
                    f"run {lease.name!r} is recorded by {lease.owner}; its points come from it"
                )
            raise WrongState("no run is recording")
        return run.add_scan_point(values, timestamp)

    def _record_audit(self, entry: AuditEntry) -> None:
        """An audit entry for the run recording now, the recorder's own or a lent one (none
        recording: nothing to do)."""
        if isinstance(entry, AuditEntry):

            def record(run: Run) -> None:
                run.record_audit(entry)

            self._control(record)

    def _options(self, request: StartRun) -> RunOptions:
        name = check_run_name(request.name)
        columns = request.scan_columns
        if len(set(columns)) != len(columns) or not all(
            isinstance(c, str) and c and "/" not in c for c in columns
        ):
            raise ValidationError(f"scan columns must be distinct names without '/': {columns}")
        if not all(isinstance(k, str) for k in request.metadata):
            raise ValidationError("run metadata keys must be strings")
        if _deeper_than(request.metadata, MAX_METADATA_DEPTH):
            raise ValidationError(
                f"run metadata is nested more than {MAX_METADATA_DEPTH} levels deep"
            )
        if not all(isinstance(k, str) for k in request.recorded_by):
            raise ValidationError("recorded_by keys must be strings")
        try:
            compression = Compression(request.compression or self.compression)
        except ValueError:
            allowed = ", ".join(c.value for c in Compression)
            raise ValidationError(
                f"compression {request.compression!r} is not known; allowed: {allowed}"
            ) from None
        if not isinstance(request.camera, str) or len(request.camera) > 256:
            raise ValidationError("camera must be a device name")
        camera = (request.camera or self.camera) if request.record_frames else None
        if request.frames is not None:
            if camera is None:
                raise ValidationError(
                    "frames= needs a camera, and this bench has none"
                    if self.camera is None
                    else "frames= needs record_frames=True"
                )
            if not 1 <= request.frames <= 100_000_000:
                raise ValidationError(f"frames must be 1..100000000, got {request.frames}")
        if request.duration is not None and not 0 < request.duration <= 30 * 86400:
            raise ValidationError(
                f"duration must be > 0 s and at most 30 days, got {request.duration}"
            )
        return RunOptions(
            name=name,
            directory=Path(self.directory.value),
            metadata=dict(request.metadata),
            camera=camera,
            frames=request.frames,
            duration=request.duration,
            compression=compression,
            frame_queue=self.frame_queue.value,
            min_free_bytes=int(self.min_free_mb.value * MB),
            flush_interval=self.flush_interval.value,
            scan_columns=tuple(columns),
            recorded_by=dict(request.recorded_by),
            scan_units=dict(request.scan_units),
            scan_plot=request.scan_plot,
        )

    async def _frame_layout(self, options: RunOptions) -> FrameLayout | None:
        if options.camera is None:
            return None
        try:
            geometry: FrameGeometry = await self.system.ref(options.camera).ask(
                GetFrameGeometry(), timeout=5.0
            )
        except (BenchError, ActorError) as error:
            raise WrongState(
                f"camera {options.camera!r} cannot say what its frames look like ({error});"
                " record without frames (record_frames=False) or wait until it is ready"
            ) from error
        return FrameLayout(options.camera, geometry.roi.shape, options.compression)

    async def _check_camera_idle(self, options: RunOptions) -> None:
        """A run that acquires its own frames needs the camera free (not in live view)."""
        if options.camera is None or not options.frames:
            return
        try:
            status: AcquisitionStatus = await self.system.ref(options.camera).ask(
                GetAcquisitionStatus(), timeout=5.0
            )
        except (BenchError, ActorError) as error:
            raise WrongState(f"camera {options.camera!r} cannot be asked ({error})") from error
        if status.running:
            raise WrongState(
                f"camera {options.camera!r} is acquiring already ({status.frames_acquired}"
                " frames so far); stop it (StopStream / StopAcquisition) to record a sequence,"
                " or start the run without frames= to record what it produces"
            )

    async def _stop(self, reason: str, outcome: RunOutcome | None) -> RunStatus:
        """Stop the current run, the recorder's own or a lent one (its owner sees its run
        end and ends with it), and reply with its final status once the file is closed."""
        run = self._run
        if run is not None and not run.finished.is_set():
            run.stop(reason, outcome)
            await run.finished.wait()
            return run.status
        lease = self._lease
        if lease is None or not lease.active:
            raise WrongState("no run is recording")
        lease.control(lambda leased: leased.stop(reason, outcome))
        await lease.ended()
        return lease.run.status if lease.run is not None else self._status.value

    def _publish(self, status: RunStatus) -> None:
        self._status.set(status, Source.HARDWARE)

    def _list_runs(self) -> tuple[RunFile, ...]:
        directory = Path(self.directory.value)
        files = []
        try:
            paths = sorted(directory.glob(f"*{SUFFIX}"))
        except OSError as error:
            raise ValidationError(f"cannot list {directory}: {error.strerror}") from error
        for path in paths:
            try:  # listing never fails the recorder: an odd entry says what is wrong with it
                if not path.is_file():
                    continue
                stat = path.stat()
                end = RunEnd.from_record(read_end_record(path))
            except (OSError, RuntimeError, ValueError, KeyError, TypeError) as error:
                files.append(RunFile(path.stem, str(path), 0, 0.0, f"unreadable: {error}", 0))
                continue
            files.append(
                RunFile(
                    path.stem,
                    str(path),
                    stat.st_size,
                    stat.st_mtime,
                    end.outcome.value,
                    end.counts.frames_written,
                    end.counts.readings_recorded,
                    end.reason,
                    end.error,
                )
            )
        return tuple(files)

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_start(self) -> None:
        """Repair the runs a crash left open before taking new ones (see crash_repair.py);
        the newest repaired run is then what GetRunStatus reports."""
        await self._repair(Path(self.directory.value))

    async def _repair(self, directory: Path) -> None:
        """Repair ``directory``'s crashed runs, once per directory (the directory parameter
        may point elsewhere later: StartRun and ListRuns repair that one first)."""
        if directory in self._repaired:
            return
        self._repaired.add(directory)
        repairs: list[Repair] = await trio.to_thread.run_sync(repair_directory, directory)
        crashed = [(r, r.end) for r in repairs if r.end is not None]
        if crashed and self._busy() is None:
            repair, end = crashed[-1]
            self._publish(
                RunStatus.from_end_record(
                    run_name_of(repair.path), str(repair.path), end.to_record()
                )
            )

    async def on_emergency_stop(self, reason: str) -> None:
        """Keep recording: the readings around an incident are the ones people want. The
        camera stops its own acquisition; the run's outcome will be "e-stopped". (A lent run's
        owner decides whether it goes on: a plan that moves things is aborted, a recording
        goes on.)"""
        busy = self._busy()
        if busy is not None and self._control(lambda run: run.emergency_stop(reason)):
            logger.warning("%s through the e-stop (%s)", busy, reason)

    async def on_stop(self) -> None:
        """A lent run ends with the recorder that lent it (its owner normally ends first)."""
        lease = self._lease
        if lease is not None and lease.active:
            lease.control(lambda run: run.stop("the recorder stopped", RunOutcome.STOPPED))
            with trio.move_on_after(self.stop_timeout - 5.0):
                await lease.ended()

    def release(self) -> None:
        super().release()
        lease = self._lease
        if lease is not None and lease.active:  # crashed: the run never outlives its recorder
            lease.control(lambda run: run.stop("the recorder stopped", RunOutcome.STOPPED))
        self._status.close()


__all__ = [
    "RECORDER_NAME",
    "ClaimRun",
    "GetRunStatus",
    "ListRuns",
    "RecordAudit",
    "RecordScanPoint",
    "RecorderActor",
    "RunFile",
    "RunLease",
    "RunOutcome",
    "RunState",
    "RunStatus",
    "StartRun",
    "StopRun",
    "WatchRun",
    "check_run_name",
    "run_file_name",
    "wait_run",
]
