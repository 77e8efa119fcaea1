"""The blocking client for notebooks and scripts: :class:`Bench`.

Threading model: a ``Bench`` owns one daemon thread running a private asyncio event loop, and
an :class:`AsyncBench` living on it. Every blocking method hands a coroutine to that loop
(``asyncio.run_coroutine_threadsafe``) and waits for its result, so the caller's thread never
runs asyncio and a notebook's own loop (Jupyter's) is never touched. Calls from several
threads are fine: the loop serialises them. Ctrl-C (KeyboardInterrupt) while waiting cancels
the RPC on the loop, which cancels it on the daemon. ``close()`` (or leaving ``with``) closes
open streams and the channel, stops the loop and joins the thread.

Error handling: the ``BenchError`` subclasses of the async client, raised in the caller's
thread; a call on a closed ``Bench`` raises ``ConnectionLost``.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from typing import Any, Self, TypeVar

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from benchd.v1 import plan_pb2

from ._async import (
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_TIMEOUT,
    TLS,
    AsyncBench,
    RetryPolicy,
)
from ._errors import BenchError, ConnectionLost
from ._types import (
    AcquisitionStatus,
    Alert,
    DaemonInfo,
    DeviceInfo,
    EmergencyStopEvent,
    EmergencyStopResult,
    EmergencyStopState,
    Execution,
    Frame,
    Health,
    HomeProgress,
    MotorState,
    MoveResult,
    ParameterInfo,
    ParameterValue,
    PlainValue,
    PlanCheck,
    Position,
    Preset,
    PresetEntry,
    PresetInfo,
    PreviewFrame,
    Reading,
    ResetResult,
    RunFile,
    RunStatus,
    ScanEvent,
    ScanStatus,
    ScriptCheck,
    ScriptInfo,
    ZeroState,
)

T = TypeVar("T")


class _LoopThread:
    """An asyncio loop on a daemon thread; ``run`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        # A plain selector loop, never the policy's: once trio-asyncio is imported (the daemon,
        # trio code in the same process) its policy would hand out a trio-bound loop.
        self.loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop()
        self._thread = threading.Thread(target=self._main, name="benchd-client", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        self.loop.run_forever()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if not self.running:
            coroutine.close()
            raise ConnectionLost("this Bench is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a blocking Bench call from its own loop thread would deadlock")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()  # cancels the RPC on the daemon too
            raise
        except concurrent.futures.CancelledError:
            raise ConnectionLost("the call was cancelled because the Bench was closed") from None

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class Subscription(Iterator[T]):
    """A blocking iterator over one of the daemon's streams (re-subscribes after a dropped
    connection); ``close()`` it, or use ``with``, to end the stream early."""

    def __init__(self, runner: _LoopThread, stream: AsyncIterator[T]) -> None:
        self._runner = runner
        self._stream = stream
        self._closed = False

    def __next__(self) -> T:
        if self._closed:
            raise StopIteration
        try:
            return self._runner.run(self._next())
        except StopAsyncIteration:
            self._closed = True
            raise StopIteration from None

    async def _next(self) -> T:
        return await anext(self._stream)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None and self._runner.running:
            self._runner.run(aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Device:
    """One device by name. No call is made until you use it; an unknown name then raises
    ``NotFound`` naming the devices there are."""

    def __init__(self, bench: Bench, name: str) -> None:
        self._bench = bench
        self.name = name

    def __repr__(self) -> str:
        return f"<Device {self.name!r}>"

    def info(self) -> DeviceInfo:
        return self._bench._run(self._bench._async.device(self.name))

    def move_to(self, position: float | str, *, timeout: float | None = None) -> float:
        """Move to ``position`` (device units, or ``"12.5 mm"``), wait until settled, return
        where it is. Ctrl-C while waiting stops the stage."""
        return self._moving(self._bench._async.move_to(self.name, position, timeout=timeout))

    def move_by(self, distance: float | str, *, timeout: float | None = None) -> float:
        """Move by ``distance``, wait until settled, return where it is. Ctrl-C stops it."""
        return self._moving(self._bench._async.move_by(self.name, distance, timeout=timeout))

    def _moving(self, move: Coroutine[Any, Any, MoveResult]) -> float:
        try:
            return self._bench._run(move).position
        except KeyboardInterrupt:
            with contextlib.suppress(BenchError):
                self.stop()
            raise

    def start_move_to(self, position: float | str) -> None:
        """Start a move and return at once (``wait_settled()`` or ``stop()`` it later)."""
        self._bench._run(self._bench._async.move_to(self.name, position, wait=False))

    def wait_settled(self, *, timeout: float | None = None) -> float:
        return self._bench._run(
            self._bench._async.wait_settled(self.name, timeout=timeout)
        ).position

    @property
    def position(self) -> float:
        return self._bench._run(self._bench._async.position(self.name)).position

    def stop(self) -> float:
        """Abort a move in flight; returns where the axis rests."""
        return self._bench._run(self._bench._async.stop(self.name)).position

    def home(
        self,
        *,
        timeout: float | None = None,
        progress: Callable[[HomeProgress], None] | None = None,
    ) -> float:
        """Run the home search, wait, return where it is homed. ``progress`` sees each step
        (position, time elapsed). Ctrl-C while waiting stops the axis."""
        coroutine = self._bench._async.home(self.name, timeout=timeout, progress=progress)
        try:
            return self._bench._run(coroutine).position
        except KeyboardInterrupt:
            with contextlib.suppress(BenchError):
                self.stop()
            raise

    def motor_on(self) -> MotorState:
        """Switch the motor on after a fault or power-up; home afterwards."""
        return self._bench._run(self._bench._async.motor_on(self.name))

    def zero(self, enable: bool = True) -> ZeroState:
        """Power meter: store the present reading as the dark offset (``enable=False``: stop
        subtracting it)."""
        return self._bench._run(self._bench._async.zero(self.name, enable))

    def read(self) -> Reading:
        """One reading (Readable devices: the power meter, the laser's output power)."""
        return self._bench._run(self._bench._async.read(self.name))

    def parameters(self) -> list[ParameterInfo]:
        return self._bench._run(self._bench._async.parameters(self.name))

    def watch_position(
        self, interval: float = 0.1, *, timeout: float | None = None
    ) -> Subscription[Position]:
        """The position every ``interval`` s (``timeout``: DeadlineExceeded if none came)."""
        stream = self._bench._async.stream_position(self.name, interval, timeout=timeout)
        return self._bench._subscribe(stream)

    def watch_values(
        self, interval: float = 0.1, *, timeout: float | None = None
    ) -> Subscription[Reading]:
        """A reading every ``interval`` s (``timeout``: DeadlineExceeded if none came)."""
        stream = self._bench._async.stream_values(self.name, interval, timeout=timeout)
        return self._bench._subscribe(stream)

    def watch_parameters(self, *names: str) -> Subscription[ParameterValue]:
        """Current values, then every change, of ``names`` (all parameters if none)."""
        return self._bench._subscribe(self._bench._async.stream_parameters(self.name, names))

    def start_acquisition(self, frames: int = 0) -> AcquisitionStatus:
        """Camera: acquire ``frames`` frames, or live (0) until ``stop_acquisition()``."""
        return self._bench._run(self._bench._async.start_acquisition(self.name, frames))

    def stop_acquisition(self) -> AcquisitionStatus:
        return self._bench._run(self._bench._async.stop_acquisition(self.name))

    def acquisition(self) -> AcquisitionStatus:
        return self._bench._run(self._bench._async.acquisition(self.name))

    def trigger(self) -> AcquisitionStatus:
        return self._bench._run(self._bench._async.trigger(self.name))


def split_parameter(key: str) -> tuple[str, str]:
    """``"maitai.wavelength"`` -> ("maitai", "wavelength"); ``"esp300.axis1.velocity"`` ->
    ("esp300.axis1", "velocity"): the parameter is after the last dot."""
    device, dot, name = key.rpartition(".")
    if not dot or not device or not name:
        raise KeyError(f"{key!r}: expected DEVICE.PARAMETER, e.g. 'maitai.wavelength'")
    return device, name


class Parameters:
    """``bench.parameters["maitai.wavelength"]`` reads a value; assigning sets it."""

    def __init__(self, bench: Bench) -> None:
        self._bench = bench

    def __getitem__(self, key: str) -> PlainValue:
        return self.get(key).value

    def __setitem__(self, key: str, value: bool | int | float | str) -> None:
        self.set(key, value)

    def get(self, key: str) -> ParameterValue:
        """The full record: value, desired value, units, source, version, timestamp."""
        return self._bench._run(self._bench._async.get(*split_parameter(key)))

    def set(self, key: str, value: bool | int | float | str) -> ParameterValue:
        """Set and return what the hardware now holds (``InvalidArgument`` names the limits)."""
        return self._bench._run(self._bench._async.set(*split_parameter(key), value))

    def list(self, device: str) -> list[ParameterInfo]:
        return self._bench._run(self._bench._async.parameters(device))


class Scripts:
    """``bench.scripts``: Starlark scripts and scans that run in the daemon (docs/scripting.md).

    An execution belongs to the daemon: close the laptop, reconnect later, and ask for it by id.
    """

    def __init__(self, bench: Bench) -> None:
        self._bench = bench

    def upload(self, name: str, source: str) -> ScriptInfo:
        return self._bench._run(self._bench._async.upload_script(name, source))

    def list(self) -> builtins.list[ScriptInfo]:
        return self._bench._run(self._bench._async.scripts())

    def start(
        self, name: str = "", *, source: str = "", params: Mapping[str, object] | None = None
    ) -> Execution:
        """Queue an execution and return at once (its id is what to keep)."""
        return self._bench._run(self._bench._async.start_script(name, source=source, params=params))

    def run(
        self, name: str = "", *, source: str = "", params: Mapping[str, object] | None = None
    ) -> Execution:
        """Start an execution and wait until it has ended. Ctrl-C stops waiting, not the
        script (stop it with :meth:`stop`)."""
        execution = self.start(name, source=source, params=params)
        return self.wait(execution.id)

    def wait(self, execution_id: str) -> Execution:
        return self._bench._run(self._bench._async.wait_execution(execution_id))

    def status(self, execution_id: str) -> Execution:
        return self._bench._run(self._bench._async.execution(execution_id))

    def executions(self) -> builtins.list[Execution]:
        return self._bench._run(self._bench._async.executions())

    def stop(self, execution_id: str, *, force: bool = False, reason: str = "") -> Execution:
        return self._bench._run(
            self._bench._async.stop_execution(execution_id, force=force, reason=reason)
        )

    def output(self, execution_id: str, start: int = 0) -> builtins.list[str]:
        return self._bench._run(self._bench._async.output(execution_id, start))

    def check(self, source: str) -> ScriptCheck:
        """Parse and lint without storing: ``ok`` and the problems with line and column."""
        return self._bench._run(self._bench._async.check_script(source))

    def pause(self, execution_id: str) -> Execution:
        return self._bench._run(self._bench._async.pause_execution(execution_id))

    def resume(self, execution_id: str) -> Execution:
        return self._bench._run(self._bench._async.resume_execution(execution_id))


class Scans:
    """``bench.scans``: plans (``client.plans``) run by the daemon's executor; each scan is a
    run in the daemon that outlives the client (keep its id)."""

    def __init__(self, bench: Bench) -> None:
        self._bench = bench

    def validate(self, plan: plan_pb2.Plan) -> PlanCheck:
        """Every problem with ``plan`` on the bench as it is now (nothing stored or moved)."""
        return self._bench._run(self._bench._async.validate_plan(plan))

    def create(
        self,
        plan: plan_pb2.Plan | builtins.list[tuple[str, float, float, int]],
        *,
        start: bool = False,
        read: tuple[str, ...] | builtins.list[str] = (),
        snake: bool = False,
        dwell: float = 0.0,
        settle: float = 0.0,
        frames: int = 0,
        name: str = "",
        metadata: Mapping[str, object] | None = None,
    ) -> ScanStatus:
        return self._bench._run(
            self._bench._async.create_scan(
                plan,
                start=start,
                read=read,
                snake=snake,
                dwell=dwell,
                settle=settle,
                frames=frames,
                name=name,
                metadata=metadata,
            )
        )

    def run(
        self, plan: plan_pb2.Plan, *, progress: Callable[[ScanStatus], object] | None = None
    ) -> ScanStatus:
        """Create, start and wait for a scan (Ctrl-C leaves it running: ``stop`` ends it)."""
        return self._bench._run(self._bench._async.run_scan(plan, progress=progress))

    def start(self, scan_id: str) -> ScanStatus:
        return self._bench._run(self._bench._async.start_scan(scan_id))

    def pause(self, scan_id: str) -> ScanStatus:
        return self._bench._run(self._bench._async.pause_scan(scan_id))

    def resume(self, scan_id: str) -> ScanStatus:
        return self._bench._run(self._bench._async.resume_scan(scan_id))

    def stop(self, scan_id: str, *, force: bool = False, reason: str = "") -> ScanStatus:
        return self._bench._run(self._bench._async.stop_scan(scan_id, force=force, reason=reason))

    def status(self, scan_id: str) -> ScanStatus:
        return self._bench._run(self._bench._async.scan(scan_id))

    def wait(self, scan_id: str) -> ScanStatus:
        return self._bench._run(self._bench._async.wait_scan(scan_id))

    def list(self) -> builtins.list[ScanStatus]:
        return self._bench._run(self._bench._async.scans())

    def events(self, scan_id: str, since: int = 0) -> Subscription[ScanEvent]:
        """An iterator of the scan's events from ``since`` on, ending with the scan."""
        return self._bench._subscribe(self._bench._async.scan_events(scan_id, since))

    def table(self, scan_id: str) -> Any:
        """The scan's table as a ``pyarrow.Table`` (``.to_pandas()`` with pandas installed)."""
        return self._bench._run(self._bench._async.scan_table(scan_id))


class Presets:
    """``bench.presets``: list, get, save, load and delete named parameter snapshots."""

    def __init__(self, bench: Bench) -> None:
        self._bench = bench

    def list(self) -> list[PresetInfo]:
        return self._bench._run(self._bench._async.presets())

    def get(self, name: str) -> Preset:
        return self._bench._run(self._bench._async.preset(name))

    def save(
        self,
        name: str,
        *,
        description: str = "",
        devices: builtins.list[str] | tuple[str, ...] = (),
        overwrite: bool = False,
    ) -> PresetInfo:
        return self._bench._run(
            self._bench._async.save_preset(
                name, description=description, devices=devices, overwrite=overwrite
            )
        )

    def load(
        self, name: str, *, devices: builtins.list[str] | tuple[str, ...] = ()
    ) -> builtins.list[PresetEntry]:
        return self._bench._run(self._bench._async.load_preset(name, devices=devices))

    def delete(self, name: str) -> None:
        self._bench._run(self._bench._async.delete_preset(name))


class Bench:
    """A blocking connection to a benchd daemon.

    ``bench = Bench.connect("127.0.0.1:50051", token=None)``; use ``with`` or ``close()``.
    """

    def __init__(self, runner: _LoopThread, bench: AsyncBench) -> None:
        self._runner = runner
        self._async = bench
        self._subscriptions: weakref.WeakSet[Subscription[Any]] = weakref.WeakSet()
        self.parameters = Parameters(self)
        self.presets = Presets(self)
        self.scripts = Scripts(self)
        self.scans = Scans(self)

    @classmethod
    def connect(
        cls,
        address: str | None = None,
        *,
        token: str | None = None,
        tls: TLS = None,
        retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Bench:
        """Connect and check the daemon answers (see ``AsyncBench.connect``); ``address``
        defaults to ``$BENCHD_ADDRESS``, else 127.0.0.1:50051, ``token`` to ``$BENCHD_TOKEN``."""
        runner = _LoopThread()
        try:
            bench = runner.run(
                AsyncBench.connect(address, token=token, tls=tls, retry=retry, timeout=timeout)
            )
        except BaseException:
            runner.stop()
            raise
        return cls(runner, bench)

    @property
    def address(self) -> str:
        return self._async.address

    def close(self) -> None:
        """End open streams, close the connection, stop the client's thread. Idempotent."""
        if not self._runner.running:
            return
        for subscription in list(self._subscriptions):
            subscription.close()
        self._runner.run(self._async.close())
        self._runner.run(self._runner.loop.shutdown_asyncgens())
        self._runner.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coroutine)

    def _subscribe(self, stream: AsyncIterator[T]) -> Subscription[T]:
        subscription = Subscription(self._runner, stream)
        self._subscriptions.add(subscription)
        return subscription

    # -- devices ----------------------------------------------------------------------------

    @property
    def devices(self) -> Mapping[str, Device]:
        """Every device now (one ``ListDevices`` call), name -> :class:`Device`; the daemon's
        own services (recorder, frame ring, scripts, plans) are :attr:`services`."""
        return {d.name: Device(self, d.name) for d in self.device_info()}

    @property
    def services(self) -> Mapping[str, Device]:
        """The daemon's services now (recorder, each camera's ``.ring``, scripts, plans):
        their parameters and state through the same :class:`Device` proxy."""
        return {d.name: Device(self, d.name) for d in self.service_info()}

    def device_info(self) -> list[DeviceInfo]:
        return self._run(self._async.devices())

    def service_info(self) -> list[DeviceInfo]:
        return self._run(self._async.services())

    def __getitem__(self, name: str) -> Device:
        return Device(self, name)

    def watch_parameters(self, device: str, *names: str) -> Subscription[ParameterValue]:
        return self._subscribe(self._async.stream_parameters(device, names))

    # -- emergency stop ---------------------------------------------------------------------

    def emergency_stop(self, reason: str = "") -> EmergencyStopResult:
        return self._run(self._async.emergency_stop(reason))

    def reset_emergency_stop(self, reason: str = "") -> ResetResult:
        return self._run(self._async.reset_emergency_stop(reason))

    def emergency_stop_state(self) -> EmergencyStopState:
        return self._run(self._async.emergency_stop_state())

    def watch_emergency_stop(self) -> Subscription[EmergencyStopEvent]:
        return self._subscribe(self._async.stream_emergency_stop_events())

    def watch_alerts(self) -> Subscription[Alert]:
        """Alerts active now, then each one raised or cleared (disk low, device degraded, ...)."""
        return self._subscribe(self._async.stream_alerts())

    # -- health, daemon ---------------------------------------------------------------------

    def health(self) -> Health:
        return self._run(self._async.health())

    def info(self) -> DaemonInfo:
        return self._run(self._async.info())

    # -- camera frames, runs ---------------------------------------------------------------

    def frames(
        self,
        camera: str = "camera",
        *,
        max_fps: float = 0.0,
        timeout: float | None = DEFAULT_FRAME_TIMEOUT,
    ) -> Subscription[npt.NDArray[np.uint16]]:
        """Camera frames as uint16 arrays of shape (height, width), latest-only: a slow reader
        skips frames, never slows the camera or a run. Frames flow while an acquisition runs
        (``bench[camera].start_acquisition()``) or a run records frames; none for ``timeout``
        seconds (10 by default; None: wait for ever) raises ``DeadlineExceeded`` saying so."""
        return self._subscribe(self._async.frames(camera, max_fps=max_fps, timeout=timeout))

    def preview(
        self,
        camera: str = "camera",
        *,
        max_fps: float = 25.0,
        max_width: int = 512,
        max_height: int = 512,
        reduction: str = "mean",
        timeout: float | None = None,
    ) -> Subscription[PreviewFrame]:
        """Live frames reduced in the daemon for a live view (see ``AsyncBench.stream_preview``):
        at most ``max_width`` x ``max_height`` pixels, ``max_fps`` a second, latest-only."""
        stream = self._async.stream_preview(
            camera, max_fps=max_fps, max_width=max_width, max_height=max_height,
            reduction=reduction, timeout=timeout,
        )  # fmt: skip
        return self._subscribe(stream)

    def frame_stream(
        self,
        camera: str = "camera",
        *,
        max_fps: float = 0.0,
        timeout: float | None = DEFAULT_FRAME_TIMEOUT,
    ) -> Subscription[Frame]:
        """As :meth:`frames`, with each frame's number, timestamp, exposure and skip count."""
        stream = self._async.stream_frames(camera, max_fps=max_fps, timeout=timeout)
        return self._subscribe(stream)

    def record(
        self,
        name: str,
        *,
        frames: int = 0,
        duration: float = 0.0,
        metadata: Mapping[str, object] | None = None,
        compression: str = "",
        readings_only: bool = False,
        wait: bool = True,
        progress: bool | Callable[[RunStatus], object] = False,
    ) -> RunStatus:
        """Record a run and (with ``wait``) return its final status (see ``AsyncBench.record``).

        ``progress=True`` shows a progress bar on stderr; a callable is called with each
        status (on the client's thread: keep it short). Ctrl-C while waiting stops the run.
        """
        options: dict[str, Any] = {
            "frames": frames,
            "duration": duration,
            "metadata": metadata,
            "compression": compression,
            "readings_only": readings_only,
            "wait": wait,
        }
        if progress is True and wait:
            with RunProgress(name, frames, duration) as bar:
                return self._record(name, options, bar.update)
        callback = progress if callable(progress) else None
        return self._record(name, options, callback)

    def _record(
        self,
        name: str,
        options: dict[str, Any],
        progress: Callable[[RunStatus], object] | None,
    ) -> RunStatus:
        try:
            return self._run(self._async.record(name, progress=progress, **options))
        except KeyboardInterrupt:
            self._run(self._async.stop_run("interrupted by the client (Ctrl-C)"))
            raise

    def stop_run(self, reason: str = "", *, complete: bool = False) -> RunStatus:
        return self._run(self._async.stop_run(reason, complete=complete))

    def run_status(self) -> RunStatus:
        return self._run(self._async.run_status())

    def runs(self) -> list[RunFile]:
        """The run files in the daemon's storage directory."""
        return self._run(self._async.runs())

    def documents(self, run: str | None = None) -> Subscription[tuple[str, dict[str, Any]]]:
        """Live Bluesky documents as ``(name, doc)`` pairs: every run from now on, or one
        run's until its stop (see :meth:`AsyncBench.documents`). A RunEngine-style callback
        source::

            router = event_model.RunRouter([factory])
            for name, doc in bench.documents():
                router(name, doc)
        """
        return self._subscribe(self._async.documents(run))

    def run_documents(self, run: str) -> Subscription[tuple[str, dict[str, Any]]]:
        """A finished run's documents rebuilt from its file, start to stop."""
        return self._subscribe(self._async.run_documents(run))


class RunProgress:
    """A rich progress bar (stderr) over a run's frames, or its duration, or its readings."""

    def __init__(self, name: str, frames: int, duration: float) -> None:
        self._frames = frames
        self._duration = duration
        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn(f"run {name}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,  # no bar (nor blank lines) in logs and pipes
        )
        total = frames or duration or None
        self._task = self._progress.add_task("run", total=total, detail="starting")

    def update(self, status: RunStatus) -> None:
        if self._frames:
            done: float = status.frames_written
            detail = f"{status.frames_written}/{self._frames} frames"
        elif self._duration:
            done = min(time.time() - status.started, self._duration) if status.started else 0.0
            detail = f"{status.frames_written} frames, {status.readings_recorded} readings"
        else:
            done = 0.0
            detail = f"{status.frames_written} frames, {status.readings_recorded} readings"
        if status.frames_dropped:
            detail += f", {status.frames_dropped} dropped"
        self._progress.update(self._task, completed=done, detail=f"{detail} ({status.state})")

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()
