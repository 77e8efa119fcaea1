"""The actor kernel: ask/tell, errors, preemption, e-stop latch, statistics, lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import trio

from runtime import (
    Abort,
    Actor,
    ActorError,
    ActorSystem,
    ActorUnavailable,
    AskTimeout,
    EmergencyStop,
    EmergencyStopLatched,
    Interrupted,
    Ping,
    ReplyTypeError,
    ResetEmergencyStop,
    UnhandledMessage,
    ValidationError,
    run_actor,
)
from tests.actors_for_tests import Echo, Fail, Journal, Move, Note, Refusing, Stage, WrongReply

Runner = Callable[..., object]


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
async def stage(journal: Journal) -> AsyncIterator[tuple[ActorSystem, trio.Nursery]]:
    """One Stage actor named "stage" running under a bare nursery (no supervisor)."""
    system = ActorSystem()
    cell = system.cell("stage", capacity=16)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell, Stage(journal), system)
        yield system, nursery
        cell.request_stop()


async def test_ask_returns_the_typed_reply(stage, autojump_clock):
    system, _ = stage
    ref = system.ref("stage")
    assert await ref.ask(Echo("hi")) == "stage: hi"
    assert await ref.ask(Move(12.5, settle=1.0)) == 12.5
    assert await ref.ask(Ping()) == "pong"
    stats = ref.statistics()
    assert stats.handled == 3 and stats.failed == 0
    assert stats.last_handler_seconds == pytest.approx(0.0, abs=1e-3)
    assert stats.max_handler_seconds == pytest.approx(1.0, abs=1e-3)


async def test_tell_is_handled_in_order(stage, journal, autojump_clock):
    system, _ = stage
    ref = system.ref("stage")
    for i in range(5):
        await ref.tell(Note(str(i)))
    await ref.ask(Ping())
    assert journal.notes == ["0", "1", "2", "3", "4"]


async def test_request_error_reaches_the_asker_and_the_actor_carries_on(stage, autojump_clock):
    system, _ = stage
    ref = system.ref("stage")
    with pytest.raises(ActorError) as caught:
        await ref.ask(Move(999.0))
    err = caught.value
    assert isinstance(err.cause, ValidationError) and err.__cause__ is err.cause
    assert not err.crashed
    assert "'stage'" in str(err) and "Move(target=999.0" in str(err)
    assert "ValidationError" in str(err) and "outside -360 to 360" in str(err)
    with pytest.raises(ActorError) as refused:
        await ref.ask(Fail(Refusing("no light")))
    assert refused.value.error_type.endswith("Refusing")
    assert await ref.ask(Echo("still here")) == "stage: still here"
    assert ref.statistics().failed == 2


async def test_unhandled_message_is_refused_with_its_type(stage, autojump_clock):
    system, _ = stage

    from dataclasses import dataclass

    from runtime import Request

    @dataclass(frozen=True, slots=True)
    class Unknown(Request[None]):
        pass

    with pytest.raises(ActorError) as caught:
        await system.ref("stage").ask(Unknown())
    assert isinstance(caught.value.cause, UnhandledMessage)
    assert "does not handle Unknown" in str(caught.value)


async def test_a_bug_reaches_the_asker_then_crashes_the_actor(journal, autojump_clock):
    system = ActorSystem()
    cell = system.cell("stage", capacity=4)
    ref = system.ref("stage")
    # run_actor re-raises the original crash (here through the test's nursery)
    with pytest.RaisesGroup(KeyError):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_actor, cell, Stage(journal), system)
            with pytest.raises(ActorError) as caught:
                await ref.ask(Fail(KeyError("axis 4")))
            assert caught.value.crashed and caught.value.error_type == "KeyError"
            await trio.sleep_forever()
    assert journal.events[-1] == "stop stage"  # on_stop ran on the crash path
    assert cell.statistics().last_failure.type == "KeyError"


async def test_wrong_reply_type_is_a_crash_with_a_clear_message(journal, autojump_clock):
    system = ActorSystem()
    cell = system.cell("stage", capacity=4)
    with pytest.RaisesGroup(pytest.RaisesExc(ReplyTypeError, match="answered WrongReply with str")):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_actor, cell, Stage(journal), system)
            with pytest.raises(ActorError):
                await system.ref("stage").ask(WrongReply())
            await trio.sleep_forever()


async def test_ask_timeout_and_the_late_request_never_runs(stage, journal, autojump_clock):
    system, _ = stage
    ref = system.ref("stage")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ref.ask, Move(10.0, settle=5.0))  # keeps the actor busy for 5 s
        await trio.sleep(0.1)
        start = trio.current_time()
        with pytest.raises(
            AskTimeout, match=r"'stage' did not reply to Move\(target=20.0.*within 1 s"
        ):
            await ref.ask(Move(20.0, settle=1.0), timeout=1.0)
        assert trio.current_time() - start == pytest.approx(1.0)
    await ref.ask(Ping())
    assert "move stage 20" not in journal.events  # dropped when reached, not executed late
    assert ref.statistics().expired == 1


async def test_tell_waits_when_the_lane_is_full_and_try_tell_refuses(journal, autojump_clock):
    system = ActorSystem()
    cell = system.cell("stage", capacity=2)
    ref = system.ref("stage")
    # Not running yet: the lane fills up.
    await ref.tell(Note("a"))
    assert ref.try_tell(Note("b"))
    assert not ref.try_tell(Note("c"))
    assert ref.statistics().refused == 1
    with trio.move_on_after(1.0) as blocked:
        await ref.tell(Note("d"))
    assert blocked.cancelled_caught  # backpressure: tell waited for room
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell, Stage(journal), system)
        await ref.tell(Note("e"))  # room now
        await ref.ask(Ping())
        cell.request_stop()
    assert journal.notes == ["a", "b", "e"]


async def test_priority_overtakes_a_10000_message_backlog_and_cancels_the_handler(
    journal, autojump_clock
):
    system = ActorSystem()
    cell = system.cell("stage", capacity=20_000)
    ref = system.ref("stage")
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell, Stage(journal), system)
        mover = trio.Event()
        outcome: list[BaseException] = []

        async def move() -> None:
            try:
                await ref.ask(Move(90.0, settle=10.0), timeout=None)
            except ActorError as exc:
                outcome.append(exc)
            mover.set()

        nursery.start_soon(move)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(10_000):
            assert ref.try_tell(Note(str(i)))
        assert ref.statistics().normal_depth == 10_000
        start = trio.current_time()
        await ref.ask(Abort("operator pressed abort"))
        assert trio.current_time() - start < 0.001  # not after the 10 s settle
        assert "arrived stage 90" not in journal.events
        await mover.wait()
        assert isinstance(outcome[0].cause, Interrupted)
        assert "interrupted by Abort" in str(outcome[0])
        await ref.ask(Ping(), timeout=None)
        assert len(journal.notes) == 10_000  # the backlog is still handled, in order
        assert journal.notes[:3] == ["0", "1", "2"]
        # The abort was handled ahead of all 10 000 messages queued before it.
        assert journal.events.index("abort stage operator pressed abort") < journal.events.index(
            "note 0"
        )
        assert ref.statistics().preempted == 1
        assert cell.latched is None  # Abort does not latch
        cell.request_stop()


async def test_emergency_stop_latches_hazardous_commands_until_reset(
    stage, journal, autojump_clock
):
    system, _ = stage
    ref = system.ref("stage")
    report = await system.emergency_stop("beam block removed")
    assert report.all_stopped and report.acknowledgements[0].actor == "stage"
    assert "estop stage beam block removed" in journal.events
    with pytest.raises(ActorError) as caught:
        await ref.ask(Move(5.0, settle=0.1))
    assert isinstance(caught.value.cause, EmergencyStopLatched)
    assert "beam block removed" in str(caught.value) and "reset the emergency stop" in str(
        caught.value
    )
    assert await ref.ask(Echo("queries still work")) == "stage: queries still work"
    assert ref.statistics().latched == "beam block removed"
    assert await system.reset_emergency_stop("checked") == ()
    assert await ref.ask(Move(5.0, settle=0.1)) == 5.0


async def test_emergency_stop_latches_at_delivery_so_queued_moves_are_refused(
    journal, autojump_clock
):
    system = ActorSystem()
    cell = system.cell("stage", capacity=8)
    ref = system.ref("stage")
    results: list[object] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell, Stage(journal), system)

        async def move(target: float) -> None:
            try:
                results.append(await ref.ask(Move(target, settle=1.0)))
            except ActorError as exc:
                results.append(type(exc.cause).__name__)

        for target in (1.0, 2.0, 3.0):
            nursery.start_soon(move, target)
        await trio.testing.wait_all_tasks_blocked()
        await ref.ask(EmergencyStop("interlock"))
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(results) == ["EmergencyStopLatched", "EmergencyStopLatched", "Interrupted"]
        # The queued reset clears the latch only after everything queued before it.
        await ref.ask(ResetEmergencyStop("all clear"))
        assert cell.latched is None
        cell.request_stop()


async def test_shielded_stop_action_runs_to_completion_even_when_cancelled(autojump_clock):
    finished = []

    class SlowShutter(Actor):
        async def on_emergency_stop(self, reason: str) -> None:
            await trio.sleep(0.5)  # the shutter takes its time; nothing may cut it short
            finished.append(reason)

    system = ActorSystem()
    cell = system.cell("laser", capacity=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell, SlowShutter(), system)
        system.ref("laser").try_tell(EmergencyStop("door opened"))
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()  # the whole daemon is going away
    assert finished == ["door opened"]


async def test_on_stop_runs_and_asks_fail_when_the_actor_is_cancelled_mid_handler(
    journal, autojump_clock
):
    system = ActorSystem()
    cell = system.cell("stage", capacity=4)
    ref = system.ref("stage")
    errors: list[BaseException] = []

    async def move() -> None:
        try:
            await ref.ask(Move(1.0, settle=100.0), timeout=None)
        except ActorUnavailable as exc:
            errors.append(exc)

    async with trio.open_nursery() as outer:
        outer.start_soon(move)
        with trio.move_on_after(1.0):
            await run_actor(cell, Stage(journal), system)
    assert journal.events[-1] == "stop stage"
    assert errors and "stopped while handling Move" in str(errors[0])


async def test_closed_mailbox_fails_pending_and_new_messages(autojump_clock):
    system = ActorSystem()
    cell = system.cell("gone", capacity=4)
    ref = system.ref("gone")
    failures: list[BaseException] = []

    async def ask() -> None:
        try:
            await ref.ask(Ping())
        except ActorUnavailable as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        cell.mailbox.close("unplugged")
    assert "'gone' is down: unplugged" in str(failures[0])
    with pytest.raises(ActorUnavailable):
        await ref.tell(Note("x"))
    report = await system.emergency_stop("test", timeout=0.5)
    assert not report.all_stopped and "down" in report.acknowledgements[0].error
    assert cell.latched == "test"  # latched even while down


async def test_helper_task_crash_crashes_the_actor(autojump_clock):
    class Poller(Actor):
        async def on_start(self) -> None:
            self.nursery.start_soon(self.poll)

        async def poll(self) -> None:
            await trio.sleep(1.0)
            raise ConnectionError("no reply to poll")

    system = ActorSystem()
    cell = system.cell("poller", capacity=4)
    with pytest.raises(ConnectionError, match="no reply to poll"):
        await run_actor(cell, Poller(), system)
    assert cell.statistics().last_failure.type == "ConnectionError"


async def test_ref_unknown_name_lists_known_actors():
    system = ActorSystem()
    system.cell("esp300.axis1", capacity=1)
    with pytest.raises(LookupError, match=r"no actor named 'axis9'; actors: esp300\.axis1"):
        system.ref("axis9")


async def test_a_cancelled_caller_still_delivers_its_emergency_stop(stage, journal, autojump_clock):
    system, _ = stage
    with trio.CancelScope() as scope:
        scope.cancel()
        await system.ref("stage").tell(EmergencyStop("caller going away"))
    await system.ref("stage").ask(Ping())
    assert "estop stage caller going away" in journal.events


async def test_emergency_stop_of_unknown_actor_names_the_known_ones(stage):
    system, _ = stage
    with pytest.raises(LookupError, match="no actor named 'esp300'; actors: stage"):
        await system.emergency_stop("x", only=["esp300"])


async def test_try_ask_calls_back_with_the_outcome_and_an_abandoned_request_never_runs(
    stage, journal, autojump_clock
):
    system, _ = stage
    ref = system.ref("stage")
    outcomes: list[object] = []
    slot = ref.try_ask(Move(3.0, settle=0.5), outcomes.append)
    assert slot is not None
    await ref.ask(Ping())  # handled after the move
    assert [o.unwrap() for o in outcomes] == [3.0]  # type: ignore[attr-defined]
    echo = ref.try_ask(Echo("hi"), outcomes.append)
    await ref.ask(Ping())
    assert echo is not None and outcomes[-1].unwrap() == "stage: hi"  # type: ignore[attr-defined]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ref.ask, Move(10.0, settle=5.0))  # keeps the actor busy
        await trio.sleep(0.1)
        late = ref.try_ask(Move(20.0, settle=1.0), outcomes.append)
        assert late is not None
        late.abandon()  # the asker gave up (its own timeout)
    await ref.ask(Ping())
    assert "move stage 20" not in journal.events and len(outcomes) == 2
    assert ref.state == "running" and ref.statistics().expired == 1
