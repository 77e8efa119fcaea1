"""What a run records by default: the camera's frames for the run's length and every reading
source streaming, on a daemon that does not see to it itself.

A daemon whose ``StartRun`` is a count plan (feature ``runs.every_source`` in ``info()``)
starts the camera for a run's ``duration`` and has every reading source stream while the run
lasts. An older daemon records only what flows: a run with a ``duration`` and no ``frames``
got no frame, and the power meter, which streams only when told to, gave no reading. Against
such a daemon, :class:`RunSources` does it from the client while ``record`` waits for the run:
before the run, it switches ``streaming`` on for every Readable device that has it off; once
the run has started, it starts the camera (live) if the run is to have frames for its length;
when the run has ended (or the wait is cancelled), it stops what it started and switches off
what it switched on, leaving the bench as it found it.

Error handling: a source that cannot be started is skipped, and :attr:`problems` says which
and why (the run goes on with what it has); restoring never raises.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._errors import BenchError

if TYPE_CHECKING:
    from ._async import AsyncBench

#: The DaemonInfo feature of a daemon that records every source by itself.
EVERY_SOURCE = "runs.every_source"
STREAMING = "streaming"


@dataclass
class RunSources:
    bench: AsyncBench
    frames: int
    readings_only: bool
    streamed: list[str] = field(default_factory=list)  # devices whose streaming we switched on
    camera: str = ""  # the camera we started ("" if none)
    problems: list[str] = field(default_factory=list)

    @classmethod
    async def needed(cls, bench: AsyncBench, *, frames: int, readings_only: bool) -> RunSources:
        """The sources to look after; nothing to do on a daemon with ``runs.every_source``."""
        sources = cls(bench, frames, readings_only)
        info = await bench.info()
        if EVERY_SOURCE in info.features:
            sources.readings_only = True  # the daemon starts the camera itself
            sources.frames = -1  # and streams the readings: nothing for us
        return sources

    @property
    def active(self) -> bool:
        return self.frames >= 0

    async def before_run(self) -> None:
        """Switch streaming on for every Readable device that has it off."""
        if not self.active:
            return
        for device in await self.bench.devices():
            if "Readable" not in device.capabilities or device.state != "ready":
                continue
            try:
                infos = await self.bench.parameters(device.name)
                streaming = next((p for p in infos if p.name == STREAMING), None)
                if streaming is None or streaming.read_only or streaming.dtype != "bool":
                    continue
                if (await self.bench.get(device.name, STREAMING)).value is False:
                    await self.bench.set(device.name, STREAMING, True)
                    self.streamed.append(device.name)
            except BenchError as error:
                self.problems.append(f"{device.name}: readings not streamed ({error.message})")

    async def run_started(self) -> None:
        """A run with frames for its length (no frame count): start the first camera live."""
        if not self.active or self.frames > 0 or self.readings_only:
            return
        cameras = [d for d in await self.bench.devices() if "FrameProducer" in d.capabilities]
        if not cameras or cameras[0].state != "ready":
            return
        camera = cameras[0].name
        try:
            if (await self.bench.acquisition(camera)).running:
                return  # someone's acquisition feeds the run already: leave it alone
            await self.bench.start_acquisition(camera, 0)
            self.camera = camera
        except BenchError as error:
            self.problems.append(f"{camera}: no frames ({error.message})")

    async def restore(self) -> None:
        """Stop the camera we started and switch off the streaming we switched on."""
        if self.camera:
            with contextlib.suppress(BenchError):
                await self.bench.stop_acquisition(self.camera)
            self.camera = ""
        for device in self.streamed:
            with contextlib.suppress(BenchError):
                await self.bench.set(device, STREAMING, False)
        self.streamed.clear()
