"""Synthetic devices with no hardware behind them: a signal source (like ophyd's SynSignal), a
motor and a peak detector over a motor's position (like ophyd's SynAxis and SynGauss).

Why it is a driver: it exercises the whole readings path — taps, the recorder, Arrow, the
edge — at rates no serial instrument reaches (tens of thousands of readings a second), so the
pipeline's claims are measured, and a lab can add one to a config to test a setup end to end.
The value is a sine of ``period`` seconds plus a little deterministic jitter.
"""

from __future__ import annotations

import enum
import math
import random
import time

import trio

from runtime import (
    GetParameter,
    Message,
    NotFoundError,
    Parameter,
    ParameterSnapshot,
    ValidationError,
)

from ..capabilities import (
    Capability,
    DeviceActor,
    GetPosition,
    Home,
    MoveAbsolute,
    MoveRelative,
    NotSettled,
    Read,
    Reading,
    StopMotion,
    WaitSettled,
)

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


# -- synthetic motor and peak detector ------------------------------------------------------------
#
# Why they exist: plans, tune and adaptive scans, their tests and benchmarks need an axis and a
# detector whose answer is known in advance (a peak at a known centre) and that cost nothing
# but the actor hops, so a figure measures the acquisition layer and not a serial line. They
# are config drivers like any instrument (``driver = "synthetic_motor"`` / ``"synthetic_peak"``)
# so a lab can try a plan on a bench file before pointing it at real stages.


class SyntheticMotor(DeviceActor):
    """A Movable with travel limits, a velocity and a settle time, moving in trio time.

    The position is a function of time (a straight ramp at ``velocity``), so ``GetPosition``
    during a move answers at once with where the stage is, a ``wait=False`` move needs no task,
    and an abort or e-stop freezes the stage where it is. The travel limits are the limits of
    the ``position`` parameter, exactly as a real axis exposes the ones it reads from its
    controller; a move outside them is refused before anything moves.
    """

    driver = "synthetic_motor"
    capabilities = (Capability.MOVABLE, Capability.PARAMETERIZED)

    def __init__(
        self,
        *,
        limits: tuple[float, float] = (-100.0, 100.0),
        velocity: float = 0.0,
        settle: float = 0.0,
        units: str = "mm",
        initial: float = 0.0,
    ) -> None:
        low, high = limits
        if not low < high:
            raise ValueError(f"limits must be (low, high) with low < high, got {limits}")
        if not low <= initial <= high:
            raise ValueError(f"the initial position {initial} is outside the limits {limits}")
        self.units = units  # type: ignore[misc]  # per instance: a bench file chooses it
        add = self.parameters.add
        self.position = add(
            Parameter(
                "position",
                float,
                initial,
                units=units,
                limits=(low, high),
                read_only=True,
                description="where the stage is (the limits are its travel)",
            )
        )
        self.velocity = add(
            Parameter(
                "velocity",
                float,
                velocity,
                units=f"{units}/s",
                limits=(0.0, 1e9),
                description="speed of a move (0: moves are instantaneous)",
            )
        )
        self.settle = add(
            Parameter(
                "settle",
                float,
                settle,
                units="s",
                limits=(0.0, 3600.0),
                description="time after arriving before a move reports settled",
            )
        )
        self.identity = "synthetic motor"
        self._origin = initial  # the ramp: from _origin at _began to _target at _arrives
        self._target = initial
        self._began = 0.0
        self._arrives = 0.0  # trio time the ramp ends; settled at _arrives + settle

    # -- the ramp ------------------------------------------------------------------------------

    def _now(self) -> float:
        """Where the stage is at this instant (trio time)."""
        now = trio.current_time()
        if now >= self._arrives or self._arrives <= self._began:
            return self._target
        fraction = (now - self._began) / (self._arrives - self._began)
        return self._origin + (self._target - self._origin) * fraction

    def _start(self, target: float) -> float:
        low, high = self.position.limits or (-math.inf, math.inf)
        if not low <= target <= high:
            raise ValidationError(
                f"{self.name}: {target:g} {self.units} is outside the travel"
                f" {low:g} to {high:g} {self.units}"
            )
        here = self._now()
        velocity = self.velocity.value
        now = trio.current_time()
        self._origin, self._target, self._began = here, target, now
        self._arrives = now + (abs(target - here) / velocity if velocity > 0 else 0.0)
        return here

    def _freeze(self) -> float:
        """Stop where the stage is now."""
        here = self._now()
        self._origin = self._target = here
        self._arrives = self._began = trio.current_time()
        self.position.report(here)
        return here

    async def _settled(self) -> float:
        remaining = self._arrives - trio.current_time()
        if remaining > 0:
            await trio.sleep(remaining)
        if self.settle.value > 0:
            await trio.sleep(self.settle.value)
        self.position.report(self._target)
        return self._target

    # -- messages ------------------------------------------------------------------------------

    async def handle(self, message: Message) -> object:
        match message:
            case MoveAbsolute(position=target, wait=wait):
                return await self._move(target, wait)
            case MoveRelative(distance=distance, wait=wait):
                return await self._move(self._now() + distance, wait)
            case GetPosition():
                here = self._now()
                self.position.report(here)
                return here
            case WaitSettled(timeout=timeout):
                with trio.move_on_after(timeout):
                    return await self._settled()
                raise NotSettled(f"{self.name} is still moving after {timeout:g} s")
            case StopMotion():
                return self._freeze()
            case Home():
                low, high = self._travel()
                return await self._move(min(max(0.0, low), high), True)  # 0, or the nearest end
        return await super().handle(message)

    def _travel(self) -> tuple[float, float]:
        return self.position.limits or (-math.inf, math.inf)

    async def _move(self, target: float, wait: bool) -> float:
        here = self._start(target)
        if not wait:
            self.position.report(here)
            return here
        return await self._settled()

    async def on_abort(self, reason: str) -> None:
        self._freeze()

    async def on_emergency_stop(self, reason: str) -> None:
        self._freeze()


class PeakShape(enum.StrEnum):
    GAUSSIAN = "gaussian"
    LORENTZIAN = "lorentzian"


def peak_value(
    shape: PeakShape, x: float, *, centre: float, width: float, amplitude: float, background: float
) -> float:
    """The noiseless signal at ``x``; ``width`` is the full width at half maximum for both
    shapes, so a tune's answer is comparable whichever shape a bench file picks."""
    offset = (x - centre) / width
    if shape is PeakShape.GAUSSIAN:
        profile = math.exp(-4.0 * math.log(2.0) * offset * offset)
    else:
        profile = 1.0 / (1.0 + 4.0 * offset * offset)
    return background + amplitude * profile


class SyntheticPeak(DeviceActor):
    """A Readable whose value is a peak over a motor's position (ophyd's SynGauss, improved:
    gaussian or lorentzian, a background, seeded noise, every setting a Parameter).

    Each ``Read`` asks the motor for its ``position`` parameter (answered by the kernel, no
    hardware), so the reading follows whatever Movable the bench file names — a synthetic motor
    or a real ESP300 axis — and is sequenced after the move that the asker waited for.
    """

    driver = "synthetic_peak"
    capabilities = (Capability.READABLE, Capability.PARAMETERIZED)
    stream_names = ("readings",)

    def __init__(
        self,
        *,
        motor: str,
        shape: PeakShape = PeakShape.GAUSSIAN,
        centre: float = 0.0,
        width: float = 1.0,
        amplitude: float = 1.0,
        background: float = 0.0,
        noise: float = 0.0,
        seed: int = 0,
        units: str = "V",
    ) -> None:
        self.motor = motor
        self.units = units  # type: ignore[misc]  # per instance: a bench file chooses it
        add = self.parameters.add
        self.shape = add(Parameter("shape", PeakShape, shape, description="the peak's profile"))
        self.centre = add(Parameter("centre", float, centre, description="in the motor's units"))
        self.width = add(
            Parameter(
                "width", float, width, limits=(1e-12, 1e12), description="full width at half max"
            )
        )
        self.amplitude = add(Parameter("amplitude", float, amplitude, units=units))
        self.background = add(Parameter("background", float, background, units=units))
        self.noise = add(
            Parameter(
                "noise",
                float,
                noise,
                units=units,
                limits=(0.0, 1e12),
                description="standard deviation of the gaussian noise added to each reading",
            )
        )
        self.value = add(
            Parameter(
                "value", float, math.nan, units=units, read_only=True, allow_nan=True,
                description="last reading",
            )
        )  # fmt: skip
        self.identity = f"synthetic {shape.value} peak over {motor}"
        self._random = random.Random(seed)

    async def handle(self, message: Message) -> object:
        if isinstance(message, Read):
            return await self._read()
        return await super().handle(message)

    async def _read(self) -> Reading:
        try:
            snapshot: ParameterSnapshot = await self.system.ref(self.motor).ask(
                GetParameter("position"), timeout=5.0
            )
        except NotFoundError:
            raise NotFoundError(
                f"{self.name}: its motor {self.motor!r} is not on this bench"
            ) from None
        x = float(snapshot.value)
        value = peak_value(
            self.shape.value,
            x,
            centre=self.centre.value,
            width=self.width.value,
            amplitude=self.amplitude.value,
            background=self.background.value,
        )
        if self.noise.value > 0:
            value += self._random.gauss(0.0, self.noise.value)
        reading = Reading(value, self.units, time.time())
        self.value.report(value)
        self.stream("readings").publish(reading)
        return reading
