"""One recording run: the pieces composed — sources in, the writer out, accounting at the end.

A run is made of small parts, each with one job (see docs/pipeline.md, "Composing a run"):

- :class:`~.frame_source.FrameSource`: the camera's frames (lossless tap, restarts followed);
- :class:`~.reading_source.ReadingSource`: every Readable's readings;
- :class:`~.parameter_watch.ParameterWatch`: every parameter change;
- :class:`~.scan_table.ScanTable`: a scan's rows, one per point;
- :class:`~.audit_trail.AuditTrail`: the mutating requests made while it records;
- :class:`~.run_writer.RunWriter`: the NeXus file and the Arrow stream, with a free-space
  check before every write;
- :class:`~.accounting.RunAccounting`: what ended the run, and the one :class:`RunEnd` that
  the end record and the final status are both made of.

:func:`open_run` composes them: it attaches the sources, starts the camera's sequence if one
was asked for, records until the run ends by itself (frames done, duration over), is stopped,
or fails — flushing every ``flush_interval`` (the most a crash can lose) — and then finishes
the file. Recording problems never raise out of a run: they end it, and its end record and
status say how.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import trio

from runtime import ValidationError, WrongState

from .accounting import RunAccounting
from .allocator import release_free_memory
from .audit_trail import AuditEntry
from .disk_space import MB, DiskFull
from .frame_source import FrameSource, SourceRefused
from .run_setup import RunOptions, RunPieces, channel_kind
from .run_status import RunEnd, RunOutcome, RunState, RunStatus
from .run_writer import FrameShapeChanged, WriteFailed

logger = logging.getLogger(__name__)

FRAME_BATCH = 16  # frames written in one worker-thread call

#: What ends a run with a known cause; anything else is a bug and is logged with its trace.
EXPECTED = (WriteFailed, DiskFull, FrameShapeChanged, SourceRefused)


class Run:
    """A run in progress. Made by :func:`open_run`; its owner may stop it, note an e-stop, add
    scan points, and read its status."""

    def __init__(
        self,
        pieces: RunPieces,
        *,
        flush_interval: float,
        duration: float | None,
        publish: Callable[[RunStatus], None],
        cancel_reason: str,
    ) -> None:
        self.pieces = pieces
        self.writer = pieces.writer
        self.frames = pieces.frames
        self.flush_interval = flush_interval
        self.duration = duration
        self.accounting = RunAccounting(
            has_end=bool(duration) or bool(self.frames is not None and self.frames.acquire)
        )
        self._publish = publish
        self._cancel_reason = cancel_reason
        self.status = RunStatus(
            name=pieces.name,
            path=str(self.writer.path),
            state=RunState.RECORDING,
            started=self.accounting.started,
            frames_expected=self.frames.expected if self.frames else 0,
        )
        self.end: RunEnd | None = None
        self.finished = trio.Event()  # the file is closed and the final status published
        self._wake = trio.CancelScope()

    # -- the owner's controls ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.pieces.name

    def stop(self, reason: str, outcome: RunOutcome | None = None) -> None:
        """End the run: what is queued is written, then the end record. ``outcome`` None:
        "stopped" if the run had a frame count or duration it has not reached, else as its
        data say (completed, or incomplete with frames missing)."""
        self.accounting.stop_requested(reason, outcome)
        self._wake.cancel()

    def emergency_stop(self, reason: str) -> None:
        """Note an e-stop. The run keeps recording (the readings around an incident are the
        ones people want); its outcome will be "e-stopped"."""
        self.accounting.emergency_stop(reason)

    def fail(self, reason: str) -> None:
        """End the run as failed (its owner hit an error it cannot record around)."""
        self.accounting.failed(SourceRefused(reason))
        self._wake.cancel()

    def add_scan_point(self, values: Mapping[str, float], timestamp: float) -> int:
        """One row of the scan table (written with the next flush); the rows so far.

        Error handling: WrongState once the run is finishing (its last rows are being
        written: a later row would be lost), ValidationError for undeclared columns."""
        if self.status.state is not RunState.RECORDING:
            raise WrongState(f"run {self.name!r} has ended; the point was not recorded")
        if self.pieces.scan is None:
            raise ValidationError(f"run {self.name!r} has no scan table (no scan columns)")
        return self.pieces.scan.add(values, timestamp)

    def record_audit(self, entry: AuditEntry) -> bool:
        """Queue an audit entry for the file (written with the next flush); False if it was
        dropped (the run is finishing, has no audit trail, or its queue is full: counted in
        ``audit_dropped`` unless the run had already ended). Never waits."""
        audit = self.pieces.audit
        if audit is None or self.status.state is not RunState.RECORDING:
            return False
        return audit.add(entry)

    def set_min_free(self, min_free_bytes: int) -> None:
        self.writer.guard.min_free_bytes = min_free_bytes

    async def wait(self) -> RunStatus:
        await self.finished.wait()
        return self.status

    # -- starting ------------------------------------------------------------------------------

    async def _attach(self) -> None:
        """Take every tap before the first frame is acquired, then start the camera."""
        if self.pieces.readings is not None:
            await self.pieces.readings.attach()
        if self.frames is not None:
            await self.frames.attach()
            await self.frames.start()

    # -- recording -----------------------------------------------------------------------------

    async def _run(self) -> None:
        ended = False
        try:
            async with trio.open_nursery() as nursery:
                if self.pieces.parameters is not None:
                    nursery.start_soon(self.pieces.parameters.run)
                if self.frames is not None:
                    nursery.start_soon(self._watch_camera, self.frames)
                try:
                    if not self.accounting.ending:
                        await self._record()
                except EXPECTED as error:
                    self.accounting.failed(error)
                except Exception as error:  # a bug must end the run, never its owner
                    logger.exception("run %s failed", self.name)
                    self.accounting.failed(error)
                nursery.cancel_scope.cancel()
            ended = True
        finally:
            if not ended:  # cancelled from outside: the owner is going away
                self.accounting.stop_requested(self._cancel_reason, RunOutcome.STOPPED)
            try:
                with trio.CancelScope(shield=True):
                    await self._finish()
            finally:
                self.finished.set()  # whatever happened, nobody waits for ever

    async def _watch_camera(self, frames: FrameSource) -> None:
        await frames.watch_camera()
        self._wake.cancel()

    async def _record(self) -> None:
        flush_at = trio.current_time() + self.flush_interval
        deadline = trio.current_time() + self.duration if self.duration else math.inf
        frames = self.frames
        while True:
            if self.accounting.ending:
                return
            batch = frames.take(FRAME_BATCH) if frames is not None else []
            if batch:
                await self.writer.write_frames(batch)
            elif frames is not None and frames.complete():
                everything = frames.acquire and frames.count.received >= frames.acquire
                self.accounting.reached_end(
                    "all frames recorded" if everything else "the camera ended its sequence"
                )
                return
            now = trio.current_time()
            if now >= deadline:
                self.accounting.reached_end("duration reached")
                return
            if now >= flush_at:
                await self._flush()
                flush_at = now + self.flush_interval
            if not batch:
                await self._wait_for_frames(min(flush_at, deadline))

    async def _wait_for_frames(self, until: float) -> None:
        self._wake = trio.CancelScope(deadline=until)
        if self.accounting.ending:
            return
        frame = None
        with self._wake:
            if self.frames is None:
                await trio.sleep_forever()
            else:
                frame = await self.frames.receive()
        if frame is not None:
            await self.writer.write_frames([frame])

    async def _flush(self) -> None:
        readings = self.pieces.readings
        if readings is not None:
            await readings.follow_restarts()
        await self._write_rows(check_space=True)
        committed = await self.writer.flush()
        self._progress(frames_committed=committed)

    async def _write_rows(self, *, check_space: bool) -> None:
        readings = self.pieces.readings.take() if self.pieces.readings else {}
        rows = self.pieces.parameters.take() if self.pieces.parameters else []
        if self.pieces.scan is not None:
            rows.extend(self.pieces.scan.take())
        audit = self.pieces.audit.take() if self.pieces.audit else []
        await self.writer.write_rows(readings, rows, audit=audit, check_space=check_space)

    def _progress(self, **changes: object) -> None:
        counts = RunAccounting.counts(
            writer=self.writer,
            frames=self.frames,
            readings=self.pieces.readings,
            parameters=self.pieces.parameters,
            scan=self.pieces.scan,
            audit=self.pieces.audit,
        )
        live = {
            "frames_committed": self.writer.frames_committed,
            "writer_lag": self.frames.pending if self.frames else 0,
            **changes,
        }
        self.status = self.status.counting(counts, **live)
        self._publish(self.status)

    # -- the end -------------------------------------------------------------------------------

    async def _finish(self) -> None:
        self._progress(state=RunState.FINISHING)
        if self.frames is not None:
            await self.frames.release()
        if self.pieces.readings is not None:
            await self.pieces.readings.release()
        end_time = time.time()
        await self._drain()
        counts = RunAccounting.counts(
            writer=self.writer,
            frames=self.frames,
            readings=self.pieces.readings,
            parameters=self.pieces.parameters,
            scan=self.pieces.scan,
            audit=self.pieces.audit,
        )
        camera = self.frames.camera_accounting if self.frames else {}
        end = self.accounting.end(counts, end_time, camera)
        record = end.to_record()
        try:
            record = await self.writer.finish(record, end_time)
            if "sealed" in record:
                logger.warning(
                    "%s: %s; the end record was written in place and the file sealed",
                    self.writer.path,
                    record["sealed"],
                )
        except OSError as error:
            logger.error("%s: the end record could not be written: %s", self.writer.path, error)
            record = {**record, "end_record_written": False}
        await trio.to_thread.run_sync(release_free_memory)
        self.end = end
        self.status = RunStatus.from_end_record(self.name, str(self.writer.path), record)
        self._publish(self.status)
        level = logging.INFO if end.outcome.ok else logging.WARNING
        logger.log(level, "run %s ended: %s", self.name, record)

    async def _drain(self) -> None:
        """Write what the taps still hold — unless the file cannot take it (a write failed,
        the disk is full), in which case what is left is counted as discarded, never just
        forgotten."""
        frames = self.frames
        while frames is not None and not self.accounting.failure:
            batch = frames.take(FRAME_BATCH)
            if not batch:
                break
            try:
                await self.writer.write_frames(batch)
            except EXPECTED as error:
                self.accounting.failed(error)
        if frames is not None:
            self.writer.frames_discarded += frames.discard_rest()
        try:  # the last readings: small, so written even on a full disk (the ballast's job)
            await self._write_rows(check_space=False)
        except EXPECTED as error:
            self.accounting.failed(error)


@asynccontextmanager
async def open_run(
    pieces: RunPieces,
    *,
    flush_interval: float = 1.0,
    duration: float | None = None,
    publish: Callable[[RunStatus], None] = lambda status: None,
    cancel_reason: str = "the run's owner was cancelled",
) -> AsyncIterator[Run]:
    """Record a run from ``pieces`` for as long as the block runs (or less).

    On entry the sources are attached and the camera's sequence (if ``pieces.frames``
    acquires) is started; the block then runs while the run records in the background. The
    run ends by itself (frames done, ``duration`` over), on ``run.stop(...)``, or when the
    block ends: normally (outcome as its data say), with an exception (failed; re-raised), or
    cancelled (stopped, ``cancel_reason``). Leaving the block waits until the file is closed;
    ``run.status`` is then the final status, ``run.end`` the end record's source.

    Error handling: SourceRefused on entry if a source cannot be attached or the camera
    refuses to start — the file is then closed with a "failed" end record first.
    """
    run = Run(
        pieces,
        flush_interval=flush_interval,
        duration=duration,
        publish=publish,
        cancel_reason=cancel_reason,
    )
    try:
        await run._attach()
    except SourceRefused as refusal:
        run.accounting.failed(refusal)
        with trio.CancelScope(shield=True):
            await run._finish()
        run.finished.set()
        raise
    except BaseException:
        run.accounting.stop_requested(cancel_reason, RunOutcome.STOPPED)
        with trio.CancelScope(shield=True):
            await run._finish()
        run.finished.set()
        raise
    run._publish(run.status)
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run._run)
        try:
            yield run
        except Exception as error:  # re-raised below, outside the nursery: as it came
            failure = error
            run.fail(f"{type(error).__name__}: {error}")
            with trio.CancelScope(shield=True):
                await run.finished.wait()
        except BaseException:
            with trio.CancelScope(shield=True):
                run.stop(cancel_reason, RunOutcome.STOPPED)
                await run.finished.wait()
            raise
        if not run.finished.is_set():
            run.stop("finished")
            await run.finished.wait()
    if failure is not None:
        raise failure


__all__ = [
    "FRAME_BATCH",
    "MB",
    "Run",
    "RunEnd",
    "RunOptions",
    "RunOutcome",
    "RunPieces",
    "RunState",
    "RunStatus",
    "channel_kind",
    "open_run",
]
