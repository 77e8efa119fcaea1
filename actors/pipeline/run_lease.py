"""The bench's run slot, lent by the recorder to an owner that records the run itself.

Why: a bench records one run at a time, and clients ask one place about it (GetRunStatus,
StreamRunStatus, StopRun, ListRuns). The recorder stays that place; but the acquisition
executor composes its runs itself (``open_run`` on the pieces, a scan row straight into the
run for every point, the run's end and the plan's end in one task). So the recorder *lends*
its slot: ``ClaimRun`` checks and creates the run exactly as ``StartRun`` does (name, file,
disk, manifest) and replies with a :class:`RunLease` holding the pieces; the owner composes
them and hands the running :class:`~.run.Run` back with :meth:`RunLease.attach`. While the
lease is out the recorder refuses other runs, publishes the owner's run status as its own, and
keeps its controls over the run — StopRun, an e-stop, a new ``min_free_mb`` — exactly as for
the runs it records itself.

The lease is a handle shared by two actors on one trio thread, like a tap: the owner calls
:meth:`publish`, :meth:`attach` and :meth:`release`; the recorder calls :meth:`control` and
waits with :meth:`ended`. Nothing in it blocks.

Owner's protocol (``actors/acquisition/running.py`` follows it)::

    lease = await recorder.ask(ClaimRun(start, owner="plan p3"), timeout=None)  # shielded
    try:
        async with open_run(lease.pieces, flush_interval=lease.flush_interval,
                            publish=lease.publish) as run:
            lease.attach(run)
            ...  # record
    finally:
        lease.release()

Error handling: ``ClaimRun`` refuses as ``StartRun`` does (ValidationError, WrongState,
InsufficientResources); the owner must enter ``open_run`` right after the claim (it closes the
file with an end record whatever happens, also when it is cancelled on entry) and release the
lease in a ``finally``. If the recorder goes away, the leased run is stopped ("stopped").
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from .run import Run
from .run_setup import RunOptions, RunPieces
from .run_status import RunStatus

RELEASE_WAIT = 60.0  # s an owner may take after its run ended to let the slot go


class RunLease:
    """The run slot lent to ``owner`` (see the module docstring)."""

    def __init__(
        self,
        pieces: RunPieces,
        options: RunOptions,
        *,
        owner: str,
        publish: Callable[[RunStatus], None],
    ) -> None:
        self.pieces = pieces
        self.options = options
        self.owner = owner
        self.run: Run | None = None
        self.released = trio.Event()
        self._publish = publish
        self._pending: list[Callable[[Run], None]] = []  # controls before the run is attached
        self._changed = trio.Event()  # attached or released

    @property
    def name(self) -> str:
        return self.pieces.name

    @property
    def path(self) -> str:
        return str(self.pieces.writer.path)

    @property
    def flush_interval(self) -> float:
        return self.options.flush_interval

    @property
    def active(self) -> bool:
        """The slot is taken: released not yet, and the run (if attached) not ended."""
        if self.released.is_set():
            return False
        return self.run is None or not self.run.finished.is_set()

    # -- the owner's side ------------------------------------------------------------------

    def publish(self, status: RunStatus) -> None:
        """The run's status, as the recorder will report it (``open_run``'s ``publish``)."""
        self._publish(status)

    def attach(self, run: Run) -> None:
        """The running run: the recorder's controls reach it from now on (those that came
        before, a StopRun or an e-stop while the run was opening, are applied now)."""
        self.run = run
        pending, self._pending = self._pending, []
        for control in pending:
            control(run)
        self._wake()

    def release(self) -> None:
        """The owner is done with the slot (its run has ended, or never opened)."""
        self.released.set()
        self._pending.clear()
        self._wake()

    # -- the recorder's side ---------------------------------------------------------------

    def control(self, action: Callable[[Run], None]) -> None:
        """Apply ``action`` to the run now, or as soon as it is attached."""
        if self.run is not None:
            action(self.run)
        elif not self.released.is_set():
            self._pending.append(action)

    async def ended(self, *, release_wait: float = RELEASE_WAIT) -> None:
        """Wait until the run has ended (its file closed) and its owner has let the slot go
        — at most ``release_wait`` s after the run ended: once this returns, a new run can
        start (the owner's last steps, a plan putting its devices back, are done)."""
        while not self.released.is_set():
            if self.run is not None:
                await self.run.finished.wait()
                with trio.move_on_after(release_wait):
                    await self.released.wait()
                return
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


__all__ = ["RunLease"]
