"""The query lane: read-only requests answered while a normal handler is in flight."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import trio

from runtime import (
    Actor,
    ActorError,
    ActorSystem,
    ActorUnavailable,
    AskTimeout,
    GetParameter,
    Hazardous,
    Message,
    Parameter,
    PriorityMessage,
    Query,
    Request,
    RequestError,
    run_actor,
)


@dataclass(frozen=True, slots=True)
class Drive(Request[float], Hazardous):
    """Drive to ``target`` in ten steps of ``step`` seconds each."""

    target: float
    step: float = 1.0


@dataclass(frozen=True, slots=True)
class Where(Request[float], Query):
    pass


@dataclass(frozen=True, slots=True)
class Hold(Request[str], Query):
    """A query that waits until ``go`` is set (to fill the query lane)."""

    label: str


@dataclass(frozen=True, slots=True)
class BadQuery(Request[None], Query):
    error: Exception


class Refused(RequestError):
    pass


class Rover(Actor):
    def __init__(self, *, start_delay: float = 0.0) -> None:
        self.here = 0.0
        self.start_delay = start_delay
        self.go = trio.Event()
        self.answered: list[str] = []
        self.speed = self.parameters.add(Parameter("speed", float, 1.0, limits=(0.0, 10.0)))

    async def on_start(self) -> None:
        await trio.sleep(self.start_delay)

    async def handle(self, message: Message) -> object:
        match message:
            case Drive(target=target, step=step):
                start = self.here
                for i in range(1, 11):
                    await trio.sleep(step)
                    self.here = start + (target - start) * i / 10
                return self.here
            case Where():
                return self.here
            case Hold(label=label):
                await self.go.wait()
                self.answered.append(label)
                return label
            case BadQuery(error=error):
                raise error
        return await super().handle(message)


@pytest.fixture
async def rover() -> AsyncIterator[tuple[ActorSystem, Rover]]:
    system = ActorSystem()
    cell = system.cell("rover", capacity=4)
    actor = Rover()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell, actor, system)
        yield system, actor
        cell.request_stop()


async def _in_flight(system: ActorSystem, nursery: trio.Nursery, message: Drive) -> list[object]:
    """Start ``message`` in the background, half a step into its handler; its outcome (the
    reply, or the ActorError) lands in the returned list."""
    ref = system.ref("rover")
    result: list[object] = []

    async def drive() -> None:
        try:
            result.append(await ref.ask(message, timeout=None))
        except ActorError as error:
            result.append(error)

    nursery.start_soon(drive)
    await trio.sleep(0.5)
    assert ref.statistics().normal_depth == 0 and not result  # in flight
    return result


async def test_a_query_answers_at_once_during_a_long_handler(rover, autojump_clock):
    system, _ = rover
    ref = system.ref("rover")
    async with trio.open_nursery() as nursery:
        done = await _in_flight(system, nursery, Drive(100.0))
        for step in range(3):
            asked = trio.current_time()
            where = await ref.ask(Where(), timeout=0.1)
            assert trio.current_time() == asked  # not a tick of the clock: never queued behind
            assert where == pytest.approx(10.0 * step)  # live: the handler's progress so far
            snapshot = await ref.ask(GetParameter("speed"), timeout=0.1)
            assert snapshot.value == 1.0
            await trio.sleep(1.0)
        assert not done  # the drive is still in flight
    assert done == [100.0]
    stats = ref.statistics()
    assert stats.queries == 6 and stats.query_depth == 0


async def test_a_normal_request_still_waits_behind_the_handler(rover, autojump_clock):
    system, _ = rover
    ref = system.ref("rover")
    async with trio.open_nursery() as nursery:
        await _in_flight(system, nursery, Drive(10.0))
        with pytest.raises(AskTimeout):
            await ref.ask(Drive(0.0), timeout=1.0)  # queued behind the drive, then abandoned
    assert await ref.ask(Where()) == 10.0  # the abandoned drive never ran late


async def test_queries_are_answered_in_order_one_at_a_time(rover, autojump_clock):
    system, actor = rover
    ref = system.ref("rover")
    replies: list[str] = []

    async def hold(label: str) -> None:
        replies.append(await ref.ask(Hold(label)))

    async with trio.open_nursery() as nursery:
        for label in "abc":
            nursery.start_soon(hold, label)
            await trio.sleep(0.01)
        await trio.sleep(1.0)
        assert replies == [] and ref.statistics().query_depth == 2  # "a" is being answered
        actor.go.set()
    assert replies == ["a", "b", "c"] == actor.answered


async def test_the_query_lane_is_bounded_apart_from_the_normal_lane(rover, autojump_clock):
    system, actor = rover
    ref = system.ref("rover")
    outcomes: list[object] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ref.ask, Hold("busy"))
        await trio.sleep(0.1)  # being answered: it left the lane
        slots = [ref.try_ask(Hold(str(i)), outcomes.append) for i in range(5)]
        assert [slot is not None for slot in slots] == [True] * 4 + [False]  # capacity 4
        assert ref.statistics().refused == 1 and ref.statistics().normal_depth == 0
        assert await ref.ask(Drive(1.0, step=0.01)) == 1.0  # the normal lane is not blocked
        actor.go.set()
        await trio.sleep(0.1)
    assert len(outcomes) == 4


async def test_queries_are_never_refused_by_the_latch(rover, autojump_clock):
    system, _ = rover
    ref = system.ref("rover")
    await system.emergency_stop("test", by="tester")
    with pytest.raises(ActorError, match="refused: e-stop latched"):
        await ref.ask(Drive(5.0))
    assert await ref.ask(Where()) == 0.0
    assert (await ref.ask(GetParameter("speed"))).value == 1.0


async def test_a_refused_query_leaves_the_actor_running(rover, autojump_clock):
    system, _ = rover
    ref = system.ref("rover")
    with pytest.raises(ActorError) as caught:
        await ref.ask(BadQuery(Refused("not now")))
    assert not caught.value.crashed and isinstance(caught.value.cause, Refused)
    assert await ref.ask(Where()) == 0.0


async def test_a_query_that_fails_crashes_the_actor_and_tells_everyone_waiting(autojump_clock):
    system = ActorSystem()
    cell = system.cell("rover", capacity=4)
    ref = system.ref("rover")
    crashed: list[BaseException] = []
    drive: list[BaseException] = []

    async def run() -> None:
        try:
            await run_actor(cell, Rover(), system)
        except Exception as exc:
            crashed.append(exc)

    async def ask_drive() -> None:
        try:
            await ref.ask(Drive(10.0))
        except ActorUnavailable as exc:
            drive.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep(0.1)
        nursery.start_soon(ask_drive)
        await trio.sleep(0.5)
        with pytest.raises(ActorError) as caught:
            await ref.ask(BadQuery(KeyError("bug")))
        assert caught.value.crashed
    assert len(crashed) == 1 and isinstance(crashed[0], KeyError)
    assert len(drive) == 1 and "stopped while handling Drive" in str(drive[0])
    assert cell.last_failure is not None and cell.last_failure.type == "KeyError"


async def test_queries_wait_until_the_actor_is_ready(autojump_clock):
    system = ActorSystem()
    cell = system.cell("rover", capacity=4)
    ref = system.ref("rover")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_actor, cell, Rover(start_delay=5.0), system)
        await trio.sleep(0.1)
        asked = trio.current_time()
        assert await ref.ask(Where()) == 0.0
        assert trio.current_time() - asked == pytest.approx(4.9)  # after on_start, not during
        cell.request_stop()


async def test_a_stop_tells_the_asker_of_a_query_in_flight(autojump_clock):
    system = ActorSystem()
    cell = system.cell("rover", capacity=4)
    ref = system.ref("rover")
    failures: list[BaseException] = []

    async def ask() -> None:
        try:
            await ref.ask(Hold("never"), timeout=None)
        except ActorUnavailable as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell, Rover(), system)
        nursery.start_soon(ask)
        await trio.sleep(1.0)
        cell.request_stop()
    assert len(failures) == 1 and "stopped while handling Hold" in str(failures[0])


def test_a_query_cannot_move_or_overtake_an_emergency_stop():
    with pytest.raises(TypeError, match="cannot be Hazardous"):

        @dataclass(frozen=True, slots=True)
        class MoveQuery(Request[float], Query, Hazardous):
            pass

    with pytest.raises(TypeError, match="cannot be Hazardous or a PriorityMessage"):

        @dataclass(frozen=True, slots=True)
        class UrgentQuery(Request[float], Query, PriorityMessage):
            pass


async def test_a_query_during_an_emergency_stop_still_answers(rover, autojump_clock):
    system, _ = rover
    ref = system.ref("rover")
    async with trio.open_nursery() as nursery:
        done = await _in_flight(system, nursery, Drive(100.0))
        await trio.sleep(1.0)
        await system.emergency_stop("stop")
        assert await ref.ask(Where(), timeout=0.1) == pytest.approx(10.0)  # frozen where it was
    assert isinstance(done[0], ActorError) and "interrupted by EmergencyStop" in str(done[0])
