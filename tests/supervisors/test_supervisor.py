"""Supervision: strategies, restart types, intensity and escalation, backoff, shutdown order."""

from __future__ import annotations

import random

import pytest
import trio

from runtime import ActorError, ActorState, ActorUnavailable, EmergencyStop, Ping, SupervisorGaveUp
from supervisors import (
    ActorSpec,
    Backoff,
    Restart,
    Strategy,
    SupervisorSpec,
    open_actor_system,
)
from tests.actors_for_tests import Echo, Fail, Journal, Move, Stage

NO_BACKOFF = Backoff(initial=0.0, maximum=0.0, jitter=0.0)


def stages(journal: Journal, *names: str, restart: Restart = Restart.PERMANENT, **kwargs: object):
    return [
        ActorSpec(name, lambda: Stage(journal, **kwargs), restart=restart)  # type: ignore[arg-type]
        for name in names
    ]


async def crash(system, name: str) -> None:
    with pytest.raises(ActorError) as caught:
        await system.ref(name).ask(Fail(RuntimeError(f"{name} lost its encoder")))
    assert caught.value.crashed


async def settle() -> None:
    await trio.sleep(1.0)  # let the supervisor run its backoff and restarts (virtual time)


def starts(journal: Journal) -> list[str]:
    return [e.split()[1] for e in journal.events if e.startswith("start ")]


async def test_children_start_in_order_and_stop_in_reverse(autojump_clock):
    journal = Journal()
    async with open_actor_system(stages(journal, "a", "b", "c", start_delay=0.5)) as system:
        assert journal.events == ["start a", "start b", "start c"]
        assert [s.state for s in system.statistics()] == [ActorState.RUNNING] * 3
    assert journal.events[3:] == ["stop c", "stop b", "stop a"]
    assert all(s.state is ActorState.DOWN for s in system.statistics())


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        (Strategy.ONE_FOR_ONE, ["b"]),
        (Strategy.ONE_FOR_ALL, ["a", "b", "c"]),
        (Strategy.REST_FOR_ONE, ["b", "c"]),
    ],
)
async def test_strategies_restart_the_right_children(strategy, restarted, autojump_clock):
    journal = Journal()
    async with open_actor_system(
        stages(journal, "a", "b", "c"), strategy=strategy, backoff=NO_BACKOFF
    ) as system:
        journal.events.clear()
        await crash(system, "b")
        await settle()
        assert starts(journal) == restarted
        stopped = [e.split()[1] for e in journal.events if e.startswith("stop ")]
        # The crashed child stopped first, then its affected siblings in reverse order.
        assert stopped == ["b", *(n for n in reversed(restarted) if n != "b")]
        for name in ("a", "b", "c"):
            assert await system.ref(name).ask(Echo("ok")) == f"{name}: ok"
        tree = system.supervision()
        assert {c.name: c.restarts for c in tree.children} == {
            n: int(n in restarted) for n in "abc"
        }
        b = next(c for c in tree.children if c.name == "b")
        assert (
            b.last_failure.type == "RuntimeError" and "lost its encoder" in b.last_failure.message
        )


async def test_restart_types(autojump_clock):
    journal = Journal()
    specs = [
        *stages(journal, "permanent", restart=Restart.PERMANENT),
        *stages(journal, "transient", restart=Restart.TRANSIENT),
        *stages(journal, "temporary", restart=Restart.TEMPORARY),
    ]
    async with open_actor_system(specs, backoff=NO_BACKOFF, max_restarts=10) as system:
        for name in ("permanent", "transient", "temporary"):
            await crash(system, name)
        await settle()
        assert system.ref("permanent").statistics().state is ActorState.RUNNING
        assert system.ref("transient").statistics().state is ActorState.RUNNING
        temporary = system.ref("temporary")
        assert temporary.statistics().state is ActorState.DOWN
        with pytest.raises(ActorUnavailable, match="'temporary' is down: crashed; temporary"):
            await temporary.ask(Ping())
        # A normal exit: a transient child stays down, a permanent one comes back.
        journal.events.clear()
        for name in ("permanent", "transient"):
            system.ref(name)._cell.request_stop()
        await settle()
        assert starts(journal) == ["permanent"]
        assert system.ref("transient").statistics().state is ActorState.DOWN


async def test_temporary_sibling_is_not_restarted_by_one_for_all(autojump_clock):
    journal = Journal()
    specs = [*stages(journal, "a"), *stages(journal, "helper", restart=Restart.TEMPORARY)]
    async with open_actor_system(
        specs, strategy=Strategy.ONE_FOR_ALL, backoff=NO_BACKOFF
    ) as system:
        journal.events.clear()
        await crash(system, "a")
        await settle()
        assert starts(journal) == ["a"]
        assert system.ref("helper").statistics().state is ActorState.DOWN


async def test_a_ref_stays_valid_and_queued_messages_survive_a_restart(autojump_clock):
    journal = Journal()
    async with open_actor_system(
        stages(journal, "a"), backoff=Backoff(initial=2.0, maximum=2.0, jitter=0.0)
    ) as system:
        ref = system.ref("a")
        await crash(system, "a")
        await trio.testing.wait_all_tasks_blocked()
        assert ref.statistics().state is ActorState.RESTARTING
        start = trio.current_time()
        assert await ref.ask(Echo("after restart")) == "a: after restart"  # waits out the backoff
        assert trio.current_time() - start == pytest.approx(2.0, abs=0.01)
        assert ref.statistics().restarts == 1


async def test_a_child_that_fails_to_start_is_retried(autojump_clock):
    journal = Journal()
    async with open_actor_system(
        stages(journal, "esp300", fail_start=2), backoff=NO_BACKOFF
    ) as system:
        assert await system.ref("esp300").ask(Echo("up")) == "esp300: up"
        assert starts(journal) == ["esp300"] * 3
        assert (
            system.supervision().children[0].last_failure.message == "esp300: serial port vanished"
        )


async def test_intensity_exceeded_escalates_to_the_parent(autojump_clock):
    journal = Journal()
    device = SupervisorSpec(
        "ell14",
        tuple(stages(journal, "ell14.mount2", fail_start=99)),
        max_restarts=2,
        period=10.0,
        backoff=NO_BACKOFF,
        restart=Restart.TEMPORARY,
    )
    async with open_actor_system([device, *stages(journal, "esp300")]) as system:
        await settle()
        assert starts(journal).count("ell14.mount2") == 3  # first start + 2 restarts, then up
        tree = system.supervision()
        ell14 = tree.children[0]
        assert ell14.kind == "supervisor" and ell14.state == "down"
        assert ell14.last_failure.type == "runtime._errors.SupervisorGaveUp"
        assert "'ell14' gave up after 2 restarts within 10 s" in ell14.last_failure.message
        assert "serial port vanished" in ell14.last_failure.message
        # The escalation took the subtree down, not its sibling.
        with pytest.raises(ActorUnavailable, match="gave up"):
            await system.ref("ell14.mount2").ask(Ping())
        assert await system.ref("esp300").ask(Echo("fine")) == "esp300: fine"


async def test_root_giving_up_raises_out_of_the_system(autojump_clock):
    journal = Journal()
    with pytest.raises(SupervisorGaveUp, match="'root' gave up after 1 restarts"):
        async with open_actor_system(
            stages(journal, "a"), max_restarts=1, backoff=NO_BACKOFF
        ) as system:
            await crash(system, "a")
            await settle()
            await crash(system, "a")
            await trio.sleep_forever()


async def test_restarts_outside_the_period_do_not_count(autojump_clock):
    journal = Journal()
    async with open_actor_system(
        stages(journal, "a"), max_restarts=1, period=5.0, backoff=NO_BACKOFF
    ) as system:
        for _ in range(4):
            await crash(system, "a")
            await trio.sleep(6.0)
        assert system.ref("a").statistics().restarts == 4


def test_backoff_grows_exponentially_and_is_bounded():
    backoff = Backoff(initial=0.1, maximum=2.0, multiplier=2.0, jitter=0.2)
    rng = random.Random(7)
    for attempt, base in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.6)]:
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert max(delays) - min(delays) > base * 0.2  # jitter really spreads them
    assert all(backoff.delay(n, rng) <= 2.0 for n in range(5, 60))
    with pytest.raises(ValueError):
        Backoff(initial=3.0, maximum=1.0)


async def test_backoff_delays_restarts_in_virtual_time(autojump_clock):
    journal = Journal()
    backoff = Backoff(initial=1.0, maximum=3.0, multiplier=2.0, jitter=0.0)
    async with open_actor_system(
        stages(journal, "a"), backoff=backoff, max_restarts=10, period=100.0
    ) as system:
        ref = system.ref("a")
        gaps = []
        for _ in range(4):
            await crash(system, "a")
            crashed_at = trio.current_time()
            await ref.ask(Ping())
            gaps.append(trio.current_time() - crashed_at)
        assert gaps == pytest.approx([1.0, 2.0, 3.0, 3.0], abs=0.01)


async def test_graceful_stop_waits_for_the_handler_then_forced_stop_cancels(autojump_clock):
    journal = Journal()
    specs = [
        ActorSpec("polite", lambda: Stage(journal), shutdown_timeout=5.0),
        ActorSpec("stuck", lambda: Stage(journal), shutdown_timeout=2.0),
    ]
    outcomes: dict[str, object] = {}

    async def ask(system, name: str, request: object) -> None:
        try:
            outcomes[name] = await system.ref(name).ask(request, timeout=None)
        except ActorError as exc:
            outcomes[name] = exc
        except ActorUnavailable as exc:
            outcomes[name] = exc

    async with trio.open_nursery() as nursery, open_actor_system(specs) as system:
        nursery.start_soon(ask, system, "polite", Move(7.0, settle=3.0))
        nursery.start_soon(ask, system, "stuck", Move(8.0, settle=60.0))
        await trio.testing.wait_all_tasks_blocked()
        leaving = trio.current_time()
    # "stuck" (stopped first) is cancelled after its 2 s; "polite" finishes its 3 s move.
    assert trio.current_time() - leaving == pytest.approx(3.0, abs=0.1)
    assert outcomes["polite"] == 7.0
    assert journal.events[-2:] == ["arrived polite 7", "stop polite"]
    assert "stop stuck" in journal.events and "arrived stuck 8" not in journal.events
    assert isinstance(outcomes["stuck"], ActorUnavailable)
    assert "stopped while handling Move(target=8.0" in str(outcomes["stuck"])


async def test_shutdown_fails_queued_asks_instead_of_leaving_them_hanging(autojump_clock):
    journal = Journal()
    errors: list[BaseException] = []
    async with (
        trio.open_nursery() as nursery,
        open_actor_system(stages(journal, "a")) as system,
    ):
        ref = system.ref("a")

        async def ask(target: float) -> None:
            try:
                await ref.ask(Move(target, settle=1.0), timeout=None)
            except ActorUnavailable as exc:
                errors.append(exc)

        for target in (1.0, 2.0, 3.0):
            nursery.start_soon(ask, target)
        await trio.testing.wait_all_tasks_blocked()
    assert len(errors) == 2 and all("'a' is down: stopped" in str(e) for e in errors)


async def test_estop_latch_survives_a_crash_and_restart(autojump_clock):
    journal = Journal()
    async with open_actor_system(stages(journal, "a"), backoff=NO_BACKOFF) as system:
        await system.emergency_stop("interlock tripped")
        await crash(system, "a")
        await settle()
        with pytest.raises(ActorError, match="latched"):
            await system.ref("a").ask(Move(1.0, settle=0.1))
        assert await system.reset_emergency_stop() == ()
        assert await system.ref("a").ask(Move(1.0, settle=0.1)) == 1.0


async def test_estop_reaches_every_actor_in_the_tree(autojump_clock):
    journal = Journal()
    tree = [
        SupervisorSpec("ell14", tuple(stages(journal, "m2", "m3", "m8"))),
        *stages(journal, "esp300", "maitai"),
    ]
    async with open_actor_system(tree) as system:
        report = await system.emergency_stop("panic button")
        assert report.all_stopped
        assert sorted(a.actor for a in report.acknowledgements) == sorted(
            ["m2", "m3", "m8", "esp300", "maitai"]
        )
        assert sum(e.startswith("estop") for e in journal.events) == 5
        # Sent on the priority lane directly: no ask went through a normal queue.
        assert all(s.latched == "panic button" for s in system.statistics())
        await system.ref("m2").ask(EmergencyStop("again"))


async def test_restored_parameters_after_restart(autojump_clock):
    journal = Journal()
    from runtime import GetParameter, SetParameter, Source

    async with open_actor_system(stages(journal, "a"), backoff=NO_BACKOFF) as system:
        ref = system.ref("a")
        await ref.ask(SetParameter("velocity", 42.0, Source.SCRIPT))
        await crash(system, "a")
        await settle()
        snapshot = await ref.ask(GetParameter("velocity"))
        assert (snapshot.value, snapshot.desired, snapshot.source) == (42.0, 42.0, Source.SCRIPT)


def test_duplicate_names_are_refused():
    journal = Journal()
    with pytest.raises(ValueError, match="two children named 'a'"):
        SupervisorSpec("root", tuple(stages(journal, "a", "a")))
    nested = SupervisorSpec("a", tuple(stages(journal, "x")))
    with pytest.raises(ValueError, match="names must be unique in the whole tree"):

        async def main() -> None:
            async with open_actor_system([nested, *stages(journal, "x")]):
                pass

        trio.run(main)


async def test_stopping_during_a_backoff_does_not_wait_it_out(autojump_clock):
    journal = Journal()
    slow = Backoff(initial=5.0, maximum=5.0, jitter=0.0)
    async with open_actor_system(stages(journal, "a", "b"), backoff=slow) as system:
        await crash(system, "a")
        await trio.testing.wait_all_tasks_blocked()
        leaving = trio.current_time()
    assert trio.current_time() - leaving < 0.01
    assert journal.events.count("start a") == 1  # the pending restart was abandoned
    assert all(s.state is ActorState.DOWN for s in system.statistics())


async def test_an_error_in_the_block_stops_the_tree_gracefully_before_it_propagates(
    autojump_clock,
):
    journal = Journal()
    with pytest.raises(RuntimeError, match="the script failed"):
        async with open_actor_system(stages(journal, "a", "b")) as system:
            system.ref("a").try_tell(Move(90.0, settle=2.0))
            await trio.sleep(0.5)
            raise RuntimeError("the script failed")
    events = journal.events
    assert "arrived a 90" in events  # the move in flight finished: no cancellation mid-move
    assert events.index("stop b") < events.index("stop a")  # reverse start order


async def test_rest_for_one_does_not_start_dependents_of_a_child_that_failed_to_start(
    autojump_clock,
):
    """An axis whose controller cannot open its port is not started (it would only wait out a
    time-out asking the controller); it shows why it waits, and starts with the controller."""
    journal = Journal()
    controller = ActorSpec("esp300", lambda: Stage(journal, fail_start=2))
    axes = [ActorSpec(f"esp300.axis{n}", lambda: Stage(journal)) for n in (1, 2)]
    tree = SupervisorSpec(
        "esp300.supervisor",
        (controller, *axes),
        strategy=Strategy.REST_FOR_ONE,
        max_restarts=10,
        backoff=Backoff(initial=5.0, maximum=5.0, jitter=0.0),
    )
    async with open_actor_system([tree]) as system:
        assert trio.current_time() == 0.0  # nothing waited on a time-out
        assert starts(journal) == ["esp300"]
        axis = system.ref("esp300.axis1").statistics()
        assert axis.state is ActorState.RESTARTING
        assert axis.last_failure is not None and axis.last_failure.type == "NotStarted"
        assert "waiting for esp300, which failed to start" in axis.last_failure.message
        assert "serial port vanished" in axis.last_failure.message
        await trio.sleep(11.0)  # two backoffs: the controller starts on its third attempt
        assert starts(journal) == ["esp300"] * 3 + ["esp300.axis1", "esp300.axis2"]
        assert await system.ref("esp300.axis2").ask(Echo("up")) == "esp300.axis2: up"


async def test_a_child_slow_to_start_holds_its_siblings_at_most_its_start_timeout(autojump_clock):
    journal = Journal()
    slow = ActorSpec("camera", lambda: Stage(journal, start_delay=30.0), start_timeout=2.0)
    fast = ActorSpec("stage", lambda: Stage(journal))
    async with open_actor_system([slow, fast]) as system:
        assert trio.current_time() == pytest.approx(2.0)
        assert system.ref("camera").state is ActorState.STARTING  # degraded, still starting
        assert await system.ref("stage").ask(Echo("up")) == "stage: up"
        assert await system.ref("camera").ask(Echo("up"), timeout=60.0) == "camera: up"
        assert trio.current_time() == pytest.approx(30.0)
    assert journal.events[-2:] == ["stop stage", "stop camera"]


async def test_stopping_while_a_child_is_still_starting_does_not_wait_for_it(autojump_clock):
    journal = Journal()
    slow = ActorSpec(
        "camera", lambda: Stage(journal, start_delay=1000.0), start_timeout=1.0, shutdown_timeout=2
    )
    async with open_actor_system([slow]) as system:
        assert system.ref("camera").state is ActorState.STARTING
    assert trio.current_time() < 10.0
    assert system.ref("camera").state is ActorState.DOWN


def test_a_start_timeout_must_be_positive():
    with pytest.raises(ValueError, match="start_timeout"):
        ActorSpec("a", lambda: Stage(Journal()), start_timeout=0.0)
    with pytest.raises(ValueError, match="start_timeout"):
        SupervisorSpec("s", (), start_timeout=-1.0)


async def test_a_failure_that_repeats_is_logged_the_1st_10th_100th_time(autojump_clock, caplog):
    journal = Journal()
    spec = ActorSpec("esp300", lambda: Stage(journal, fail_start=25))
    with caplog.at_level("DEBUG", logger="supervisors"):
        async with open_actor_system([spec], max_restarts=100, backoff=NO_BACKOFF) as system:
            assert await system.ref("esp300").ask(Echo("up"), timeout=60.0) == "esp300: up"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2 and "the same failure 10 times in a row" in errors[1]
    assert sum("crashed again" in r.getMessage() for r in caplog.records) == 23
    assert any("is running again" in r.getMessage() for r in caplog.records)
