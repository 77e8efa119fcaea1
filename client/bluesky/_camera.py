"""The camera as an ophyd-async StandardDetector whose frames stay in the daemon's run file.

The daemon writes every frame of a run into its NeXus/HDF5 file (``/entry/instrument/<camera>
/data``, one chunk per frame, SWMR). A RunEngine must never copy frames into documents, so the
detector emits a StreamResource pointing at that file and dataset, and per event a StreamDatum
with the frame indices in it — the ophyd-async idiom of an areaDetector HDF5 writer, with the
daemon's recorder as the writer:

- **stage / prepare**: if no daemon run records, the detector starts one (frames from any
  acquisition go into it until it is stopped) and stops it at ``unstage``; if one is recording
  (a user's), its frames go there and it is left running. ``prepare(TriggerInfo)`` sets the
  exposure (``livetime``) and the number of frames per acquisition.
- **trigger / kickoff**: ``StartStream`` for that many frames; done once the daemon reports the
  frames *committed* to the file (flushed: readable by anyone, surviving a crash). The run
  status arrives at each flush, so a trigger takes up to the recorder's ``flush_interval``
  (1 s by default, a parameter of the ``recorder`` device).
- **collect_asset_docs**: StreamResource once, then StreamDatum ranges in file rows. Frames
  the camera produced for nobody (an acquisition interrupted by a RunEngine pause) are never
  referenced: each acquisition's frames are located by the file's frame count when it started.

Error handling: an e-stop fails a trigger at once with EmergencyStopped; a run that ends
while the detector uses it, or frames that never reach the file within the timeout, fail the
trigger with a message saying which; the camera in live mode is refused with how to fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ophyd_async.core import (
    DetectorAcquireLogic,
    DetectorDataLogic,
    DetectorTriggerLogic,
    SignalR,
    StandardDetector,
    StreamableDataProvider,
    TriggerInfo,
    WatchableAsyncStatus,
    WatcherUpdate,
)

from .._errors import FailedPrecondition
from .._types import AcquisitionStatus, DeviceInfo, ParameterInfo
from ._devices import BenchDevice
from ._frames import FileLink, FramesProvider, Segment, frame_shape
from ._session import Session

#: How long a started acquisition may take to reach the file beyond its exposures.
FILE_MARGIN_S = 30.0


class _Shared:
    """What the three logics of one camera share."""

    def __init__(self, session: Session, camera: str, address: str) -> None:
        self.session = session
        self.camera = camera
        self.address = address
        self.frames = 1  # per acquisition, from prepare
        self.exposure_s = 0.0
        self.provider: FramesProvider | None = None


class BenchTriggerLogic(DetectorTriggerLogic):
    """Internal triggering only: the daemon's camera free-runs a sequence of N frames."""

    def __init__(self, shared: _Shared, exposure: SignalR[Any] | None) -> None:
        self.shared = shared
        self.exposure = exposure

    def config_sigs(self) -> set[SignalR[Any]]:
        return set()  # every writable parameter is in the configuration already

    async def prepare_internal(self, num: int, livetime: float, deadtime: float) -> None:
        if deadtime:
            raise ValueError(
                f"{self.shared.camera}: the camera runs its frames back to back; a deadtime of"
                f" {deadtime:g} s cannot be set (use 0)"
            )
        if livetime:
            await self.shared.session.bench.set(self.shared.camera, "exposure", livetime * 1e3)
        exposure = await self.shared.session.bench.get(self.shared.camera, "exposure")
        if isinstance(exposure.value, int | float):
            self.shared.exposure_s = float(exposure.value) / 1e3
        self.shared.frames = num or 1

    async def default_trigger_info(self) -> TriggerInfo:
        exposure = await self.shared.session.bench.get(self.shared.camera, "exposure")
        value = exposure.value if isinstance(exposure.value, int | float) else 0.0
        return TriggerInfo(livetime=float(value) / 1e3)


class BenchAcquireLogic(DetectorAcquireLogic):
    def __init__(self, shared: _Shared) -> None:
        self.shared = shared

    async def start_acquiring(self) -> None:
        shared = self.shared
        provider = shared.provider
        if provider is None:
            raise RuntimeError(f"{shared.camera}: prepare the detector before acquiring")
        last = await self._idle(refuse_live=True)
        if provider.segments and last.frames_acquired < provider.segments[-1].count:
            # the previous acquisition was stopped early (a pause): only its frames are rows
            provider.segments[-1].count = last.frames_acquired
        await self._wait_file_settled(provider)
        provider.segments.append(Segment(provider.committed_rows(), shared.frames))
        provider.update()
        await shared.session.guard(
            shared.session.bench.start_acquisition(shared.camera, shared.frames),
            what=f"an acquisition of {shared.camera}",
        )

    async def _wait_file_settled(self, provider: FramesProvider) -> None:
        """Rows are located by the file's frame count: it must hold every frame taken so far
        (a frame of an acquisition a pause interrupted may still be on its way)."""
        link = provider.link
        deadline = time.monotonic() + FILE_MARGIN_S
        ends = [s.start + s.count for s in provider.segments]
        while not (link.settled and link.status.frames_committed >= max(ends, default=0)):
            if time.monotonic() > deadline:
                raise FailedPrecondition(
                    f"{self.shared.camera}: the daemon's run file did not catch up with the"
                    f" camera within {FILE_MARGIN_S:g} s ({link.status.frames_committed}"
                    f" frames committed of {link.status.frames_received} taken)"
                )
            await link.wait_change(1.0)

    async def wait_for_idle(self) -> None:
        await self._idle(refuse_live=False)

    async def _idle(self, *, refuse_live: bool) -> AcquisitionStatus:
        """The camera's status once its acquisition has ended (refused: live mode)."""
        bench, camera = self.shared.session.bench, self.shared.camera
        deadline = time.monotonic() + FILE_MARGIN_S + self.shared.frames * self.shared.exposure_s
        while (status := await bench.acquisition(camera)).running:
            if refuse_live and status.frames_requested == 0:
                raise FailedPrecondition(
                    f"{camera} is acquiring live; stop it (bench['{camera}'].stop_acquisition())"
                    " before a plan uses it as a detector"
                )
            if time.monotonic() > deadline:
                raise FailedPrecondition(f"{camera} is still acquiring: {status}")
            await asyncio.sleep(0.02)
        if status.error:
            raise FailedPrecondition(f"{camera}: the acquisition failed: {status.error}")
        return status

    async def ensure_stopped(self) -> None:
        bench, camera = self.shared.session.bench, self.shared.camera
        if (await bench.acquisition(camera)).running:
            await bench.stop_acquisition(camera)


class BenchDataLogic(DetectorDataLogic):
    """The daemon's run file as the detector's file writer."""

    def __init__(self, shared: _Shared) -> None:
        self.shared = shared
        self.link: FileLink | None = None
        self.relay: asyncio.Task[None] | None = None

    async def prepare_unbounded(self, datakey_name: str) -> StreamableDataProvider:
        shared = self.shared
        bench = shared.session.bench
        roi, binning = await asyncio.gather(
            bench.get(shared.camera, "roi"), bench.get(shared.camera, "binning")
        )
        shape = frame_shape(str(roi.value), str(binning.value))
        status = await bench.run_status()
        owned = status.state != "recording"
        if owned:  # file names have a 1 s timestamp: a unique name never collides
            name = f"bluesky-{uuid.uuid4().hex[:8]}"
            metadata = {"started_by": "client.bluesky", "detector": shared.camera}
            status = await bench.start_run(name, metadata=metadata)
        link = FileLink(shared.session, status.path, owned, status)
        link.follower = asyncio.get_running_loop().create_task(link.follow())
        self.link = link
        host = shared.address.rsplit(":", 1)[0].strip("[]")
        host = "localhost" if host in ("127.0.0.1", "::1", "localhost") else host
        provider = FramesProvider(
            link,
            datakey_name,
            f"file://{host}{status.path}",
            f"/entry/instrument/{_nexus_name(shared.camera)}/data",
            shape,
        )
        shared.provider = provider
        self.relay = asyncio.get_running_loop().create_task(self._relay(link, provider))
        return provider

    @staticmethod
    async def _relay(link: FileLink, provider: FramesProvider) -> None:
        while not link.ended:
            changed = link.changed
            await changed.wait()
            provider.update()

    async def stop(self) -> None:
        link, self.link = self.link, None
        relay, self.relay = self.relay, None
        self.shared.provider = None
        if relay is not None:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        if link is not None:
            await link.close()

    def get_hinted_fields(self, datakey_name: str) -> Sequence[str]:
        return []  # frames are no column of a live table


class BenchCamera(StandardDetector, BenchDevice):
    """The daemon's camera as a step- and fly-scannable detector (see the module doc); its
    writable parameters (exposure, roi, binning, ...) are the configuration."""

    def __init__(
        self,
        session: Session,
        info: DeviceInfo,
        parameters: Sequence[ParameterInfo],
        address: str,
        name: str = "",
    ) -> None:
        self._init_bench(info)
        self._session = session
        self._staged_at: int | None = None
        self._paused = asyncio.Event()
        config = self._add_parameters(session, parameters, address, ())
        shared = _Shared(session, info.name, address)
        self._shared = shared
        self.add_detector_logics(
            BenchTriggerLogic(shared, self._parameters.get("exposure")),
            BenchAcquireLogic(shared),
            BenchDataLogic(shared),
        )
        self.add_config_signals(*config)
        super().__init__(name=name)

    @property
    def run_path(self) -> str | None:
        """The daemon run file the frames go to while staged and prepared."""
        provider = self._shared.provider
        return provider.link.path if provider is not None else None

    @WatchableAsyncStatus.wrap
    async def trigger(self) -> AsyncIterator[WatcherUpdate[int]]:
        """StandardDetector's trigger, failed at once by an e-stop (the camera stops)."""
        async for update in self._guarded(super().trigger(), "a trigger"):
            yield update

    @WatchableAsyncStatus.wrap
    async def complete(self) -> AsyncIterator[WatcherUpdate[int]]:
        async for update in self._guarded(super().complete(), "a fly scan"):
            yield update

    async def _guarded(
        self, inner: WatchableAsyncStatus[int], what: str
    ) -> AsyncIterator[WatcherUpdate[int]]:
        updates: asyncio.Queue[WatcherUpdate[int]] = asyncio.Queue()

        def forward(  # noqa: PLR0917 (the Watcher protocol's signature)
            current: int | None = None,
            initial: int | None = None,
            target: int | None = None,
            name: str | None = None,
            unit: str | None = None,
            precision: int | None = None,
            fraction: float | None = None,
            time_elapsed: float | None = None,
            time_remaining: float | None = None,
        ) -> None:
            update = WatcherUpdate(
                current=current or 0,
                initial=initial or 0,
                target=target or 0,
                name=name,
                unit=unit,
                precision=precision,
                fraction=fraction,
                time_elapsed=time_elapsed,
                time_remaining=time_remaining,
            )
            updates.put_nowait(update)

        inner.watch(forward)
        done = asyncio.ensure_future(
            self._session.guard(inner, what=f"{what} of {self.bench_name}", since=self._staged_at)
        )
        paused = asyncio.ensure_future(self._paused.wait())
        try:
            while not done.done():
                waiting = asyncio.ensure_future(updates.get())
                await asyncio.wait([done, waiting, paused], return_when=asyncio.FIRST_COMPLETED)
                if waiting.done():
                    yield waiting.result()
                else:
                    waiting.cancel()
                if paused.done() and not done.done():
                    return  # a RunEngine pause: it redoes this point on resume
            done.result()
        finally:
            paused.cancel()
            if not done.done():
                done.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await done

    def stage(self) -> Any:
        self._staged_at = self._session.stops
        self._paused = asyncio.Event()  # a pause that ended in an abort is over
        return super().stage()

    def unstage(self) -> Any:
        self._staged_at = None
        return super().unstage()

    async def pause(self) -> None:
        """A RunEngine pause stops this detector's acquisition and ends the trigger in flight
        without error (the RunEngine redoes the point on resume); a camera the detector is
        not using is left alone."""
        shared = self._shared
        if shared.provider is None:
            return
        self._paused.set()
        status = await shared.session.bench.acquisition(shared.camera)
        if status.running and status.frames_requested:
            await shared.session.bench.stop_acquisition(shared.camera)

    async def resume(self) -> None:
        """The next trigger starts a new acquisition."""
        self._paused = asyncio.Event()


def _nexus_name(name: str) -> str:
    """The camera's group name in the run file: the daemon's NeXus naming rule
    (actors/pipeline/nexus_names.py; the detector is named first, so it never gets a suffix).
    Repeated here because the client installs without the daemon."""
    text = re.sub(r"[^A-Za-z0-9_]", "_", name) or "_"
    return f"_{text}" if text[0].isdigit() else text
