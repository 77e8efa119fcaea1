"""Regressions for defects a review of the kernel found (each failed before its fix)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio

from runtime import (
    Actor,
    ActorError,
    ActorState,
    Hazardous,
    Message,
    PriorityMessage,
    Request,
    RequestError,
)
from supervisors import ActorSpec, Backoff, Strategy, SupervisorSpec, open_actor_system


@dataclass(frozen=True, slots=True)
class Move(Request[float], Hazardous):
    settle: float = 1.0


@dataclass(frozen=True, slots=True)
class Block(Request[None]):
    seconds: float


@dataclass(frozen=True, slots=True)
class Boom(Request[None]):
    pass


@dataclass(frozen=True, slots=True)
class Status(Request[str], PriorityMessage):
    pass


@dataclass(frozen=True, slots=True)
class Refuse(Request[None], PriorityMessage):
    pass


class Dev(Actor):
    """Records its hooks in a class-level log (shared by every instance a factory builds)."""

    log: list[str]
    starts: int = 0
    hang_on_restart = False

    async def on_start(self) -> None:
        type(self).starts += 1
        if type(self).hang_on_restart and type(self).starts > 1:
            await trio.sleep(1000)

    async def handle(self, message: Message) -> object:
        match message:
            case Move(settle=settle):
                self.log.append("move-start")
                await trio.sleep(settle)
                self.log.append("move-done")
                return 1.0
            case Block(seconds=seconds):
                await trio.sleep(seconds)
                return None
            case Boom():
                raise RuntimeError("boom")
            case Status():
                return "ok"
            case Refuse():
                raise RequestError("no")
        return await super().handle(message)

    async def on_emergency_stop(self, reason: str) -> None:
        self.log.append("on_emergency_stop")

    async def on_stop(self) -> None:
        self.log.append("on_stop")


def fresh(**attributes: object) -> type[Dev]:
    return type("D", (Dev,), {"log": [], "starts": 0, **attributes})


async def swallow(function, *args) -> None:
    try:
        await function(*args)
    except Exception:
        return


async def test_a_reset_sent_before_a_second_estop_does_not_clear_it(autojump_clock):
    device = fresh()
    async with open_actor_system([ActorSpec("d", device)]) as system:
        ref = system.ref("d")
        await system.emergency_stop("first")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(swallow, ref.ask, Block(5.0))  # a backlog ahead of the reset
            await trio.sleep(0.1)
            still_latched: list[tuple[str, ...]] = []

            async def reset() -> None:
                still_latched.append(await system.reset_emergency_stop("operator"))

            nursery.start_soon(reset)
            await trio.sleep(0.1)
            assert (await system.emergency_stop("second")).all_stopped
        assert ref.statistics().latched == "second"
        assert still_latched == [("d",)]  # the reset says it did not clear
        with pytest.raises(ActorError, match="latched"):
            await ref.ask(Move(0.1))


def test_a_priority_message_cannot_be_hazardous():
    with pytest.raises(TypeError, match="a PriorityMessage cannot be Hazardous"):

        @dataclass(frozen=True, slots=True)
        class Fire(PriorityMessage, Hazardous):
            pass


async def test_custom_priority_requests_reply_and_refuse_like_normal_ones(autojump_clock):
    device = fresh()
    async with open_actor_system([ActorSpec("d", device)], backoff=Backoff(1, 1)) as system:
        ref = system.ref("d")
        assert await ref.ask(Status()) == "ok"
        with pytest.raises(ActorError) as caught:
            await ref.ask(Refuse())
        assert not caught.value.crashed
        await trio.sleep(0.5)
        assert ref.statistics().state is ActorState.RUNNING and ref.statistics().restarts == 0


async def test_an_estop_during_a_graceful_stop_still_reaches_the_hardware(autojump_clock):
    device = fresh()
    report = None
    async with (
        trio.open_nursery() as nursery,
        open_actor_system([ActorSpec("d", device, shutdown_timeout=30)]) as system,
    ):
        nursery.start_soon(swallow, system.ref("d").ask, Move(10.0))
        await trio.sleep(0.1)

        async def estop_later() -> None:
            nonlocal report
            await trio.sleep(1.0)
            report = await system.emergency_stop("hazard during shutdown")

        nursery.start_soon(estop_later)
    assert device.log.index("on_emergency_stop") < device.log.index("on_stop")
    assert report is not None and report.all_stopped


async def test_siblings_show_restarting_during_the_backoff(autojump_clock):
    a, b = fresh(), fresh()
    async with open_actor_system(
        [ActorSpec("a", a), ActorSpec("b", b)],
        strategy=Strategy.ONE_FOR_ALL,
        backoff=Backoff(5.0, 5.0, jitter=0),
    ) as system:
        with pytest.raises(ActorError):
            await system.ref("a").ask(Boom())
        await trio.sleep(1.0)
        assert system.ref("a").statistics().state is ActorState.RESTARTING
        assert system.ref("b").statistics().state is ActorState.RESTARTING


async def test_a_stop_interrupts_a_restart_stuck_in_on_start(autojump_clock):
    device = fresh(hang_on_restart=True)
    async with open_actor_system(
        [ActorSpec("d", device, shutdown_timeout=1)], backoff=Backoff(0.1, 0.1)
    ) as system:
        with pytest.raises(ActorError):
            await system.ref("d").ask(Boom())
        await trio.sleep(1)
        leaving = trio.current_time()
    assert trio.current_time() - leaving < 1.5
    assert system.ref("d").statistics().state is ActorState.DOWN


class Helperful(Actor):
    """A helper whose cleanup fails when it is cancelled (closing a port raises)."""

    async def on_start(self) -> None:
        self.nursery.start_soon(self.poller)

    async def poller(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise OSError("port close failed")

    async def handle(self, message: Message) -> object:
        if isinstance(message, Block):
            await trio.sleep(message.seconds)
            return None
        if isinstance(message, Boom):
            raise RuntimeError("boom")
        return await super().handle(message)


async def test_a_failure_during_a_forced_stop_stays_inside_its_supervisor(autojump_clock):
    tree = SupervisorSpec(
        "devs",
        (ActorSpec("h", Helperful, shutdown_timeout=1), ActorSpec("sib", Helperful)),
        strategy=Strategy.ONE_FOR_ALL,
        backoff=Backoff(0.1, 0.1),
    )
    async with open_actor_system([tree, ActorSpec("other", fresh())]) as system:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(swallow, system.ref("h").ask, Block(100))
            await trio.sleep(0.1)
            with pytest.raises(ActorError):
                await system.ref("sib").ask(Boom())  # one_for_all: h is stopped by force
            await trio.sleep(5)
        devs = system.supervision().children[0]
        assert devs.restarts == 0 and devs.last_failure is None  # the supervisor itself is fine
        assert system.ref("h").statistics().state is ActorState.RUNNING


async def test_a_nested_supervisor_restarted_by_its_parent_keeps_queued_asks(autojump_clock):
    a, b = fresh(), fresh()
    inner = SupervisorSpec("inner", (ActorSpec("a", a),))
    async with open_actor_system(
        [inner, ActorSpec("b", b)],
        strategy=Strategy.ONE_FOR_ALL,
        backoff=Backoff(1.0, 1.0, jitter=0),
    ) as system:
        results: list[object] = []

        async def ask(message: Request[None]) -> None:
            try:
                results.append(await system.ref("a").ask(message, timeout=None))
            except Exception as exc:
                results.append(type(exc).__name__)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, Block(0.5))
            await trio.sleep(0.01)
            nursery.start_soon(ask, Block(0))  # queued behind the first
            await trio.sleep(0.01)
            with pytest.raises(ActorError):
                await system.ref("b").ask(Boom())
        assert results == [None, None]
