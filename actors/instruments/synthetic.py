"""A synthetic signal source: a Readable with no hardware behind it (like ophyd's SynSignal).

Why it is a driver: it exercises the whole readings path — taps, the recorder, Arrow, the
edge — at rates no serial instrument reaches (tens of thousands of readings a second), so the
pipeline's claims are measured, and a lab can add one to a config to test a setup end to end.
The value is a sine of ``period`` seconds plus a little deterministic jitter.
"""

from __future__ import annotations

import math
import time

import trio

from runtime import Message, Parameter

from ..capabilities import Capability, DeviceActor, Read, Reading

TICK = 0.01  # readings are generated in bursts of rate * TICK


class SyntheticReadable(DeviceActor):
    driver = "synthetic_signal"
    capabilities = (Capability.READABLE, Capability.PARAMETERIZED)
    units = "V"
    stream_names = ("readings",)

    def __init__(self, *, rate: float = 0.0, amplitude: float = 1.0, period: float = 1.0) -> None:
        add = self.parameters.add
        self.rate = add(
            Parameter(
                "rate",
                float,
                rate,
                units="Hz",
                limits=(0.0, 1_000_000.0),
                description="readings published per second to taps (0: only on Read)",
            )
        )
        self.amplitude = add(Parameter("amplitude", float, amplitude, units="V"))
        self.period = add(Parameter("period", float, period, units="s", limits=(1e-6, 1e6)))
        self.value = add(
            Parameter("value", float, 0.0, units="V", read_only=True, description="last value")
        )
        self.published = 0
        self.identity = "synthetic sine source"

    async def on_start(self) -> None:
        self.nursery.start_soon(self._generate)

    def _reading(self, now: float) -> Reading:
        phase = 2 * math.pi * now / self.period.value
        jitter = 1e-3 * math.sin(self.published * 12.9898)
        return Reading(self.amplitude.value * math.sin(phase) + jitter, "V", now)

    async def _generate(self) -> None:
        """Publish ``rate`` readings a second, in bursts, keeping the long-run rate exact."""
        owed, last = 0.0, trio.current_time()
        while True:
            if self.rate.value <= 0:
                await self.rate.observable.wait_for(lambda r: r > 0)
                owed, last = 0.0, trio.current_time()
            await trio.sleep(TICK)
            now = trio.current_time()
            owed += self.rate.value * (now - last)
            last = now
            burst = int(owed)
            owed -= burst
            if not burst:
                continue
            registry = self.stream("readings")
            wall = time.time()
            for index in range(burst):
                registry.publish(self._reading(wall - (burst - 1 - index) / self.rate.value))
                self.published += 1
            self.value.report(self._reading(wall).value)

    async def handle(self, message: Message) -> object:
        if isinstance(message, Read):
            reading = self._reading(time.time())
            self.published += 1
            self.value.report(reading.value)
            self.stream("readings").publish(reading)
            return reading
        return await super().handle(message)
