"""Suspenders: conditions on a bench value that hold a plan until the bench is fit again.

A :class:`Suspender` is data (which signal, which condition, when it has recovered, how long to
let things settle), so it travels in a plan, in a bench file's defaults and in a run's manifest.
A signal is either a device's *readings* (``"power_meter"``) or one of its *parameters*
(``"maitai.shutter"``); the ``degraded`` condition watches a device's actor state instead.

:class:`SuspenderWatch` is the live side, run by the executor for one plan: one task per
suspender follows its signal (a parameter subscription, a latest-only tap on the readings, or
the actor's state) and keeps ``tripped`` current. The executor also feeds it every reading it
takes itself, synchronously, so a point whose own reading was bad is always noticed before the
point is accepted — no race between the tap and the point. While a reading suspender is tripped
its device is read every ``poll`` seconds, so recovery is seen even if nothing else reads it.

Hysteresis: ``below 1e-6`` with ``resume 2e-6`` trips under 1 µW and recovers only at 2 µW, so
a signal hovering at the threshold does not flap.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from runtime import (
    ActorError,
    ActorState,
    ActorSystem,
    BenchError,
    ObservableClosed,
    Subscription,
    WatchParameter,
)

from ..capabilities import Read, Reading
from ..pipeline.subscription import add_tap, remove_tap
from ..pipeline.taps import TapPolicy
from .problems import Problem, finite, quote

logger = logging.getLogger(__name__)

RETRY = 0.5  # s before following a signal again after its device went away
STATE_POLL = 0.1  # s between looks at a device's actor state (the degraded condition)
MAX_SIGNAL = 256


class Condition(enum.StrEnum):
    """When the plan is held (the signal's value ``below`` the threshold, …)."""

    BELOW = "below"
    ABOVE = "above"
    EQUALS = "equals"  # e.g. maitai.shutter equals false: the shutter is closed
    NOT_EQUALS = "not_equals"
    DEGRADED = "degraded"  # the device is restarting or down (no threshold)


Value = bool | int | float | str


@dataclass(frozen=True, slots=True)
class Suspender:
    signal: str  # "device" (its readings) or "device.parameter"
    condition: Condition
    threshold: Value = 0.0
    resume: float | None = None  # below/above: the level at which it has recovered
    settle: float = 0.0  # s after recovery before the plan goes on
    poll: float = 0.5  # s between reads of a Readable signal while tripped

    @property
    def label(self) -> str:
        if self.condition is Condition.DEGRADED:
            return f"{self.signal} degraded"
        text = f"{self.signal} {self.condition.value.replace('_', ' ')} {_show(self.threshold)}"
        if self.resume is not None:
            text += f" (resumes at {_show(self.resume)})"
        return text

    def trips(self, value: object, tripped: bool) -> bool:
        """Whether the plan is held with ``value`` now, given whether it was held before."""
        match self.condition:
            case Condition.BELOW | Condition.ABOVE:
                if not isinstance(value, int | float) or isinstance(value, bool):
                    return tripped
                number = float(value)
                if math.isnan(number):
                    return True  # no valid reading is not a reading to carry on with
                level = float(self.threshold)
                if tripped and self.resume is not None:
                    level = self.resume
                if self.condition is Condition.BELOW:
                    return number < level
                return number > level
            case Condition.EQUALS:
                return _same(value, self.threshold)
            case Condition.NOT_EQUALS:
                return not _same(value, self.threshold)
        return tripped

    def problems(self, where: str) -> list[Problem]:
        found: list[Problem] = []
        if not isinstance(self.signal, str) or not 0 < len(self.signal) <= MAX_SIGNAL:
            found.append(Problem(f"{where}.signal", f"{quote(self.signal)} is not a signal name"))
        if not isinstance(self.condition, Condition):
            allowed = ", ".join(c.value for c in Condition)
            found.append(
                Problem(f"{where}.condition", f"{quote(self.condition)}; one of {allowed}")
            )
            return found
        numeric = self.condition in (Condition.BELOW, Condition.ABOVE)
        if numeric and not finite(self.threshold):
            found.append(Problem(f"{where}.threshold", f"{quote(self.threshold)}: need a number"))
        if self.resume is not None:
            if not numeric or not finite(self.resume):
                found.append(
                    Problem(f"{where}.resume", "a finite number, and only for below / above")
                )
            elif finite(self.threshold) and (
                (self.condition is Condition.BELOW and self.resume < self.threshold)  # type: ignore[operator]
                or (self.condition is Condition.ABOVE and self.resume > self.threshold)  # type: ignore[operator]
            ):
                found.append(
                    Problem(
                        f"{where}.resume",
                        f"{self.resume:g} would resume before the"
                        f" threshold {_show(self.threshold)} recovers",
                    )
                )
        for name, value, high in (("settle", self.settle, 86400.0), ("poll", self.poll, 3600.0)):
            if not finite(value) or not 0 <= value <= high:
                found.append(Problem(f"{where}.{name}", f"{quote(value)}; 0 … {high:g} s"))
        if self.poll == 0:
            found.append(Problem(f"{where}.poll", "must be > 0 s"))
        return found

    def describe(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "condition": self.condition.value,
            "threshold": self.threshold,
            "resume": self.resume,
            "settle": self.settle,
            "poll": self.poll,
        }


def _same(value: object, threshold: object) -> bool:
    plain = getattr(value, "value", value)  # enums compare by value
    if isinstance(threshold, bool) or isinstance(plain, bool):
        return plain is threshold or plain == threshold
    return bool(plain == threshold)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class SignalKind(enum.StrEnum):
    READING = "reading"
    PARAMETER = "parameter"
    STATE = "state"


@dataclass(frozen=True, slots=True)
class Resolved:
    """A suspender with its signal resolved against the bench (by the validator)."""

    suspender: Suspender
    kind: SignalKind
    device: str
    parameter: str = ""  # for a parameter signal


@dataclass
class Trip:
    """One suspender's live state."""

    resolved: Resolved
    tripped: bool = False
    since: float = 0.0  # Unix time it tripped
    value: object = None
    crashed_at: int | None = None  # degraded: the device's restart count when a point saw it crash


@dataclass(frozen=True, slots=True)
class Suspension:
    """One time the plan was held, as recorded in the run and the events."""

    suspender: str  # the label
    point: int
    began: float  # Unix time
    ended: float
    value: str  # the value that tripped it

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended - self.began)

    def describe(self) -> dict[str, Any]:
        return {
            "suspender": self.suspender,
            "point": self.point,
            "began": self.began,
            "ended": self.ended,
            "seconds": self.seconds,
            "value": self.value,
        }


@dataclass
class SuspenderWatch:
    """The live state of a plan's suspenders (see the module docstring)."""

    system: ActorSystem
    resolved: tuple[Resolved, ...]
    tap_name: str
    on_change: Callable[[], None] = lambda: None  # the executor's wake-up
    trips: list[Trip] = field(default_factory=list)
    count: int = 0  # times any suspender tripped: a point that saw it change is repeated
    _changed: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.trips = [Trip(r) for r in self.resolved]

    # -- the executor's side ----------------------------------------------------------------

    def tripped(self) -> list[Trip]:
        return [t for t in self.trips if t.tripped]

    def observe(self, device: str, value: float) -> None:
        """A reading the executor took itself (synchronous: no race with the tap)."""
        for trip in self.trips:
            if trip.resolved.kind is SignalKind.READING and trip.resolved.device == device:
                self._update(trip, value)

    def failed(self, devices: list[str] | None) -> bool:
        """A point failed because these devices' actors crashed under it (None: something
        else failed too). If a ``degraded`` suspender watches each of them, it trips now —
        its state poll would see the restart a moment later — and True says the point is to
        be taken again once the devices are back; otherwise the failure is the plan's."""
        if not devices:
            return False
        watched = {t.resolved.device: t for t in self.trips if t.resolved.kind is SignalKind.STATE}
        if not all(device in watched for device in devices):
            return False
        for device in devices:
            trip = watched[device]
            trip.value = "crashed"
            trip.crashed_at = self.system.ref(device).statistics().restarts
            if not trip.tripped:
                trip.tripped = True
                trip.since = time.time()
                self.count += 1
                logger.warning("plan suspended by %s (its actor crashed)", device)
        self._signal()
        return True

    async def changed(self) -> None:
        await self._changed.wait()

    # -- following the signals ----------------------------------------------------------------

    def _update(self, trip: Trip, value: object) -> None:
        trip.value = value
        now = trip.resolved.suspender.trips(value, trip.tripped)
        if now and not trip.tripped:
            trip.since = time.time()
            self.count += 1
            logger.warning("plan suspended by %s (value %s)", trip.resolved.suspender.label, value)
        if now != trip.tripped:
            trip.tripped = now
            self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        self.on_change()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow every signal until cancelled; ``started`` once each has its first value."""
        async with trio.open_nursery() as nursery:
            for index, trip in enumerate(self.trips):
                await nursery.start(self._follow, trip, f"{self.tap_name}:{index}")
            task_status.started()

    async def _follow(
        self, trip: Trip, tap: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        kind = trip.resolved.kind
        if kind is SignalKind.STATE:
            await self._follow_state(trip, task_status)
        elif kind is SignalKind.PARAMETER:
            await self._follow_parameter(trip, task_status)
        else:
            await self._follow_readings(trip, tap, task_status)

    async def _follow_state(self, trip: Trip, task_status: trio.TaskStatus[None]) -> None:
        ref = self.system.ref(trip.resolved.device)
        started = False
        while True:
            statistics = ref.statistics()
            state = statistics.state
            if trip.crashed_at is not None and statistics.restarts > trip.crashed_at:
                trip.crashed_at = None  # a new instance since the crash a point saw
            # Until the crashed instance's successor has started, the device is degraded even
            # if the poll still sees the old instance "running" (the crash is that fresh).
            degraded = state is not ActorState.RUNNING or trip.crashed_at is not None
            if degraded != trip.tripped:
                trip.value = str(state)
                if degraded:
                    trip.since = time.time()
                    self.count += 1
                trip.tripped = degraded
                self._signal()
            if not started:
                task_status.started()
                started = True
            await trio.sleep(STATE_POLL)

    async def _follow_parameter(self, trip: Trip, task_status: trio.TaskStatus[None]) -> None:
        ref = self.system.ref(trip.resolved.device)
        started = False
        while True:
            try:
                subscription: Subscription[Any] = await ref.ask(
                    WatchParameter(trip.resolved.parameter), timeout=5.0
                )
                async for sample in subscription:
                    self._update(trip, sample.value)
                    if not started:
                        task_status.started()
                        started = True
            except (BenchError, ActorError, ObservableClosed) as error:
                logger.debug("suspender %s: %s", trip.resolved.suspender.label, error)
            if not started:
                task_status.started()  # the device is away: keep trying in the background
                started = True
            await trio.sleep(RETRY)

    async def _follow_readings(
        self, trip: Trip, tap: str, task_status: trio.TaskStatus[None]
    ) -> None:
        ref = self.system.ref(trip.resolved.device)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._poll_while_tripped, trip)
            started = False
            try:
                while True:
                    try:
                        reader = await add_tap(ref, "readings", tap, TapPolicy.LATEST)
                    except (BenchError, ActorError) as error:
                        logger.debug("suspender %s: %s", trip.resolved.suspender.label, error)
                        reader = None
                    if not started:
                        task_status.started()
                        started = True
                    if reader is not None:
                        try:
                            async for reading in reader:
                                self._update(trip, _value(reading))
                        finally:
                            reader.close()
                    await trio.sleep(RETRY)
            finally:
                with trio.CancelScope(shield=True):
                    await remove_tap(ref, "readings", tap)

    async def _poll_while_tripped(self, trip: Trip) -> None:
        """Read the device every ``poll`` s while held, so recovery shows without a reader."""
        ref = self.system.ref(trip.resolved.device)
        poll = trip.resolved.suspender.poll
        while True:
            while not trip.tripped:
                await self._changed.wait()
            await trio.sleep(poll)
            if trip.tripped:
                with contextlib.suppress(BenchError, ActorError):
                    reading: Reading = await ref.ask(Read(), timeout=max(5.0, poll))
                    self._update(trip, _value(reading))


def _value(reading: Reading) -> float:
    return reading.value  # flagged readings count as they are: a saturated meter is a value


def resolve_signal(
    suspender: Suspender,
    where: str,
    devices: Mapping[str, Any],
    readable: Callable[[str], bool],
    parameters: Callable[[str], tuple[str, ...] | None],
) -> tuple[Resolved | None, list[Problem]]:
    """Match a suspender's signal to the bench: a device's readings, a device's parameter, or
    (degraded) any device. The longest device name that prefixes the signal wins (device names
    have dots)."""
    signal = suspender.signal
    if suspender.condition is Condition.DEGRADED:
        if signal in devices:
            return Resolved(suspender, SignalKind.STATE, signal), []
        return None, [Problem(f"{where}.signal", f"no device named {quote(signal)}", signal)]
    if signal in devices:
        if readable(signal):
            return Resolved(suspender, SignalKind.READING, signal), []
        return None, [
            Problem(
                f"{where}.signal",
                f"{signal} is not Readable; name one of its parameters"
                f" ({signal}.<parameter>) instead",
                signal,
            )
        ]
    for device in sorted(devices, key=len, reverse=True):
        if signal.startswith(f"{device}.") and len(signal) > len(device) + 1:
            name = signal[len(device) + 1 :]
            known = parameters(device) or ()
            if name in known:
                return Resolved(suspender, SignalKind.PARAMETER, device, name), []
            return None, [
                Problem(
                    f"{where}.signal",
                    f"{device} has no parameter {quote(name)};"
                    f" parameters: {', '.join(known) or 'none'}",
                    device,
                )
            ]
    return None, [
        Problem(
            f"{where}.signal",
            f"{quote(signal)} names no device of this bench; devices: {', '.join(sorted(devices))}",
        )
    ]
