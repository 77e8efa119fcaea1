"""The ESP300 controller and axis actors against the simulator, through the real transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from actors.capabilities import (
    Capability,
    Describe,
    GetPosition,
    Home,
    MotorOn,
    MoveAbsolute,
    MoveRelative,
    NotSettled,
    Operation,
    StopMotion,
    WaitSettled,
)
from actors.instruments.esp300 import (
    Command,
    Esp300,
    Esp300Axis,
    MotorOff,
    ReadErrors,
    serial_settings,
)
from actors.instruments.serial_device import DeviceRefused, NoReply
from runtime import (
    Abort,
    ActorError,
    EmergencyStopLatched,
    GetParameter,
    Interrupted,
    ListParameters,
    SetParameter,
    ValidationError,
)
from simulators.esp300 import Esp300Simulator
from supervisors import (
    ActorSpec,
    Backoff,
    Strategy,
    SupervisedSystem,
    SupervisorSpec,
)
from tests.actors.instruments.harness import running, until


def esp300_tree(port: str) -> SupervisorSpec:
    """Controller first, then its axes: rest_for_one restarts the axes with the controller."""
    axes = tuple(
        ActorSpec(f"esp300.axis{n}", lambda n=n: Esp300Axis("esp300", n), mailbox_capacity=20_000)
        for n in (1, 2, 3)
    )
    return SupervisorSpec(
        "esp300.supervisor",
        (ActorSpec("esp300", lambda: Esp300(serial_settings(port))), *axes),
        strategy=Strategy.REST_FOR_ONE,
        max_restarts=10,
        backoff=Backoff(initial=0.1, maximum=0.5, jitter=0.0),
    )


@asynccontextmanager
async def bench(
    link: Path, **simulator_options: object
) -> AsyncIterator[tuple[Esp300Simulator, SupervisedSystem]]:
    simulator = Esp300Simulator(link=link, **simulator_options)  # type: ignore[arg-type]
    async with running(simulator, [esp300_tree(str(link))]) as system:
        yield simulator, system


async def test_axes_describe_themselves_with_limits_from_the_controller(io_clock, link):
    async with bench(link) as (simulator, system):
        info = await system.ref("esp300.axis2").ask(Describe())
        assert info.capabilities == (Capability.MOVABLE, Capability.PARAMETERIZED)
        assert info.units == "mm" and info.identity == "ESP300 Version 3.04 07/27/01 axis 2"
        simulator.axes[1].right_limit = 50.0
        with pytest.raises(ActorError) as caught:
            await system.ref("esp300.axis1").ask(MoveAbsolute(60.0))
        assert isinstance(caught.value.cause, ValidationError)
        assert "60 mm is outside the travel -50 to 50 mm" in str(caught.value)
        assert not any(b"PA" in c for c in simulator.commands)  # refused before the wire


async def test_move_takes_the_profile_time_and_lands_on_target(io_clock, link):
    async with bench(link) as (simulator, system):
        axis = system.ref("esp300.axis1")
        start = trio.current_time()
        assert await axis.ask(MoveAbsolute(12.5)) == pytest.approx(12.5)
        # 5 mm/s cruise, 20 mm/s² ramps: 12.5 mm takes 12.5/5 + 5/20 = 2.75 s
        assert trio.current_time() - start == pytest.approx(2.75, abs=0.15)
        assert await axis.ask(MoveRelative(-2.5)) == pytest.approx(10.0)
        assert await axis.ask(GetPosition()) == pytest.approx(10.0)
        assert simulator.axes[1].position == pytest.approx(10.0)
        started = await axis.ask(MoveAbsolute(0.0, wait=False))
        assert started == pytest.approx(10.0, abs=0.5)  # replied at once, still moving
        assert await axis.ask(WaitSettled()) == pytest.approx(0.0)


async def test_wait_settled_running_out_of_time_is_a_refusal_not_a_crash(io_clock, link):
    async with bench(link) as (_, system):
        axis = system.ref("esp300.axis1")
        await axis.ask(MoveAbsolute(10.0, wait=False))
        with pytest.raises(ActorError) as caught:
            await axis.ask(WaitSettled(timeout=0.01))
        assert isinstance(caught.value.cause, NotSettled) and not caught.value.crashed
        assert "still moving after 0.01 s" in str(caught.value.cause)
        assert await axis.ask(WaitSettled()) == pytest.approx(10.0)
        assert axis.statistics().restarts == 0


async def test_three_axes_move_concurrently(io_clock, link):
    async with bench(link) as (simulator, system):
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for n, target in ((1, 5.0), (2, -5.0), (3, 5.0)):
                nursery.start_soon(system.ref(f"esp300.axis{n}").ask, MoveAbsolute(target))
        assert trio.current_time() - start < 1.6  # 1.25 s each, not 3.75 s in a row
        assert [simulator.axes[n].position for n in (1, 2, 3)] == [5.0, -5.0, 5.0]


async def test_parameters_are_written_and_read_back(io_clock, link):
    async with bench(link) as (simulator, system):
        axis = system.ref("esp300.axis2")
        snapshot = await axis.ask(SetParameter("velocity", 12.0))
        assert snapshot.value == 12.0 and simulator.axes[2].velocity == 12.0
        with pytest.raises(ActorError) as caught:  # allowed by us, refused by the stage
            await axis.ask(SetParameter("velocity", 30.0))
        assert isinstance(caught.value.root_cause, DeviceRefused)
        assert "refused 2VA30: error 210 MAXIMUM VELOCITY EXCEEDED" in str(caught.value)
        assert simulator.axes[2].velocity == 12.0


async def test_controller_errors_are_reported_with_their_text(io_clock, link):
    async with bench(link) as (simulator, system):
        simulator.axes[3].right_limit = 0.5  # changed behind our back: the controller refuses
        with pytest.raises(ActorError, match=r"refused 3PA1\.000000: error 306 POSITIVE SOFTWARE"):
            await system.ref("esp300.axis3").ask(MoveAbsolute(1.0))
        controller = system.ref("esp300")
        with pytest.raises(ActorError, match="refused 1XX: error 6 COMMAND DOES NOT EXIST"):
            await controller.ask(Command("1XX"))
        with pytest.raises(ActorError, match="refused 9PA1: error 9 AXIS NUMBER OUT OF RANGE"):
            await controller.ask(Command("9PA1"))


async def test_error_fifo_is_drained_in_order(io_clock, link):
    async with bench(link) as (simulator, system):
        simulator._error(9)
        simulator._error(107)
        errors = await system.ref("esp300").ask(ReadErrors())
        assert [(e.code, e.message) for e in errors] == [
            (9, "AXIS NUMBER OUT OF RANGE"),
            (107, "NEGATIVE SOFTWARE LIMIT DETECTED"),
        ]
        assert await system.ref("esp300").ask(ReadErrors()) == ()


async def test_stop_motion_decelerates(io_clock, link):
    async with bench(link) as (simulator, system):
        axis = system.ref("esp300.axis1")
        await axis.ask(MoveAbsolute(40.0, wait=False))
        await trio.sleep(2.0)
        stopped = await axis.ask(StopMotion())
        assert 5.0 < stopped < 15.0 and simulator.axes[1].position == pytest.approx(stopped)


async def test_emergency_stop_aborts_a_move_in_flight_despite_a_backlog(io_clock, link):
    async with bench(link) as (simulator, system):
        axis = system.ref("esp300.axis1")
        outcome: list[BaseException] = []

        async def long_move() -> None:
            try:
                await axis.ask(MoveAbsolute(45.0), timeout=None)
            except ActorError as exc:
                outcome.append(exc)

        stops: list[bytes] = []  # simulator.commands keeps only the last 10 000: the backlog's
        simulator.on_command = lambda _, command: (
            stops.append(command) if b"ST" in command else None
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_move)
            await trio.sleep(1.0)
            for _ in range(10_000):
                assert axis.try_tell(GetPosition())
            report = await system.emergency_stop("light curtain")
            assert report.all_stopped
        assert isinstance(outcome[0].cause, Interrupted)
        await until(lambda: simulator.aborts == 1 and b"1ST" in stops)
        halted = simulator.axes[1].position
        assert 0.0 < halted < 40.0  # stopped where it was, not at 45 mm
        await trio.sleep(1.0)
        assert simulator.axes[1].position == halted
        with pytest.raises(ActorError) as latched:
            await axis.ask(MoveAbsolute(1.0))
        assert isinstance(latched.value.cause, EmergencyStopLatched)
        assert await system.reset_emergency_stop("curtain clear") == ()
        assert await axis.ask(MoveAbsolute(1.0), timeout=60) == pytest.approx(1.0)


async def test_garbage_restarts_the_controller_and_its_axes(io_clock, link):
    async with bench(link) as (simulator, system):
        axis = system.ref("esp300.axis1")
        simulator.faults.garbage_replies = 1
        with pytest.raises(ActorError, match=r"esp300: expected a number to b'1TP\?'"):
            await axis.ask(GetPosition())
        await trio.sleep(1.0)
        assert await axis.ask(GetPosition()) == pytest.approx(0.0)
        assert system.ref("esp300").statistics().restarts == 1
        assert axis.statistics().restarts >= 1  # rest_for_one: the axes follow the controller


async def test_home_search_returns_to_zero_and_is_hazardous(io_clock, link):
    async with bench(link) as (simulator, system):
        axis = system.ref("esp300.axis2")
        await axis.ask(MoveAbsolute(3.0))
        assert await axis.ask(Home()) == pytest.approx(0.0)
        assert simulator.axes[2].homed and b"2OR0" in simulator.commands
        await system.emergency_stop("test")
        with pytest.raises(ActorError, match="latched"):
            await axis.ask(Home())


async def test_abort_stops_motion_without_latching(io_clock, link):
    async with bench(link) as (simulator, system):
        axis = system.ref("esp300.axis1")
        await axis.ask(MoveAbsolute(40.0, wait=False))
        await trio.sleep(1.0)
        await system.ref("esp300").ask(Abort("operator"))
        await until(lambda: simulator.aborts == 1)  # the bytes are written; the sim reads them
        assert not simulator.axes[1].moving(trio.current_time())
        assert await axis.ask(MoveAbsolute(1.0), timeout=60) == pytest.approx(1.0)  # no latch


# -- quirk modes of real units, motor power, travel limits --------------------------------------


@pytest.mark.parametrize("quirk", ["cr_only", "lf_only", "mixed_line_ends"])
async def test_replies_ending_in_cr_lf_cr_or_lf_are_all_accepted(io_clock, link, quirk):
    async with bench(link, quirks=(quirk,)) as (_, system):
        axis = system.ref("esp300.axis2")
        assert await axis.ask(MoveAbsolute(2.0)) == pytest.approx(2.0)
        assert await axis.ask(MoveRelative(-1.0)) == pytest.approx(1.0)
        assert (await axis.ask(SetParameter("velocity", 8.0))).value == 8.0
        with pytest.raises(ActorError, match="error 210 MAXIMUM VELOCITY EXCEEDED"):
            await axis.ask(SetParameter("velocity", 30.0))
        assert all(system.ref(n).statistics().restarts == 0 for n in ("esp300", "esp300.axis2"))


async def test_software_limits_are_the_position_limits_and_every_move_checks_them(io_clock, link):
    limits = {1: (-25.0, 30.0), 2: (0.0, 12.5)}
    async with bench(link, limits=limits) as (simulator, system):
        for number, (low, high) in limits.items():
            infos = {
                p.name: p for p in await system.ref(f"esp300.axis{number}").ask(ListParameters())
            }
            assert infos["position"].limits == (low, high)
        axis = system.ref("esp300.axis2")
        with pytest.raises(ActorError) as caught:
            await axis.ask(MoveAbsolute(13.0))
        assert isinstance(caught.value.cause, ValidationError)
        assert str(caught.value.cause) == (
            "esp300.axis2: 13 mm is outside the travel 0 to 12.5 mm"
            " (the controller's software limits SL/SR)"
        )
        await axis.ask(MoveAbsolute(10.0))
        with pytest.raises(ActorError) as caught:
            await axis.ask(MoveRelative(5.0))
        assert (
            "a move by 5 mm from 10 mm would end at 15 mm, which is outside the travel 0 to"
            " 12.5 mm" in str(caught.value)
        )
        assert not any(
            c.startswith((b"2PA1", b"2PR")) and c != b"2PA10.000000" for c in simulator.commands
        )
        assert simulator.axes[2].position == pytest.approx(10.0)


async def test_motor_off_at_power_up_is_reported_and_motor_on_is_an_operation(io_clock, link):
    async with bench(link, quirks=("motor_off",)) as (simulator, system):
        axis = system.ref("esp300.axis1")
        info = await axis.ask(Describe())
        assert info.operations == (Operation.HOME, Operation.STOP, Operation.MOTOR_ON)
        assert (await axis.ask(GetParameter("motor"))).value is False
        assert "power-up" in (await axis.ask(GetParameter("fault"))).value
        with pytest.raises(ActorError) as caught:
            await axis.ask(MoveAbsolute(1.0))
        assert isinstance(caught.value.cause, MotorOff)
        assert "cannot move: the motor is off" in str(caught.value)
        assert "switch it on with motor_on" in str(caught.value)
        with pytest.raises(ActorError, match="cannot home: the motor is off"):
            await axis.ask(Home())
        assert not any(b"PA" in c or b"OR" in c for c in simulator.commands)  # nothing moved
        assert await axis.ask(MotorOn()) is True
        assert simulator.axes[1].motor_on and b"1MO" in simulator.commands
        assert (await axis.ask(GetParameter("motor"))).value is True
        assert (await axis.ask(GetParameter("fault"))).value == ""
        assert await axis.ask(MoveAbsolute(1.0)) == pytest.approx(1.0)


async def test_a_motor_fault_mid_move_is_reported_with_the_controllers_text(io_clock, link):
    async with bench(link) as (simulator, system):
        axis = system.ref("esp300.axis1")
        simulator.fault_next_move(1, code=3)  # following error halfway
        with pytest.raises(ActorError) as caught:
            await axis.ask(MoveAbsolute(10.0))
        assert isinstance(caught.value.cause, MotorOff) and not caught.value.crashed
        message = str(caught.value)
        assert "motion stopped at" in message and "the motor went off" in message
        assert "103 FOLLOWING ERROR THRESHOLD EXCEEDED" in message
        assert 0.0 < simulator.axes[1].position < 10.0 and not simulator.axes[1].motor_on
        fault = (await axis.ask(GetParameter("fault"))).value
        assert fault == "103 FOLLOWING ERROR THRESHOLD EXCEEDED"
        with pytest.raises(ActorError, match=r"cannot move: the motor is off \(103 FOLLOWING"):
            await axis.ask(MoveAbsolute(1.0))
        await system.emergency_stop("operator")
        with pytest.raises(ActorError) as latched:  # hazardous: refused while latched
            await axis.ask(MotorOn())
        assert isinstance(latched.value.cause, EmergencyStopLatched)
        await axis.ask(StopMotion())  # stop is never refused
        await system.reset_emergency_stop("clear")
        assert await axis.ask(MotorOn()) is True
        assert await axis.ask(Home(), timeout=30) == pytest.approx(0.0)
        assert await system.ref("esp300").ask(ReadErrors()) == ()  # nothing left behind


async def test_a_late_reply_never_answers_a_later_question(io_clock, link):
    """TP? answers after 1.5 s (past the 1 s time-out): that request fails, the next one
    resyncs on VE? first, so the late position is read and dropped, not taken as MD?'s."""
    async with bench(link) as (simulator, system):
        axis = system.ref("esp300.axis1")
        await axis.ask(MoveAbsolute(1.0))

        def late_position(_: float, command: bytes) -> None:
            simulator.faults.reply_delay = 1.5 if command == b"1TP?" else 0.0
            if command != b"1TP?":
                simulator.on_command = None

        simulator.on_command = late_position
        with pytest.raises(ActorError) as caught:
            await axis.ask(GetPosition())
        assert isinstance(caught.value.root_cause, NoReply)
        assert not caught.value.crashed
        assert await axis.ask(GetPosition()) == pytest.approx(1.0)
        assert await axis.ask(MoveAbsolute(2.0)) == pytest.approx(2.0)
        assert all(system.ref(n).statistics().restarts == 0 for n in ("esp300", "esp300.axis1"))


async def test_get_position_answers_at_once_during_a_move(io_clock, link):
    """GetPosition is a query: it never waits behind the move in the axis's mailbox, and it
    reads the controller (which answers TP? while the axis moves) for the live position."""
    async with bench(link) as (simulator, system):
        axis = system.ref("esp300.axis1")
        start = await axis.ask(GetPosition())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(axis.ask, MoveAbsolute(20.0))  # 20 mm at 5 mm/s: ~4.25 s
            await until(lambda: simulator.axes[1].moving(trio.current_time()))
            seen = []
            for _ in range(3):
                asked = trio.current_time()
                seen.append(await axis.ask(GetPosition(), timeout=5.0))
                # generous for a loaded machine, far below the move's 4 s
                assert trio.current_time() - asked < 1.0
                await trio.sleep(0.5)
            assert axis.statistics().normal_depth == 0  # the move is still the one in flight
        assert start < seen[0] < seen[1] < seen[2] < 20.0  # live, between start and target
        assert await axis.ask(GetPosition()) == pytest.approx(20.0)


async def test_another_axis_fault_in_the_error_fifo_is_not_blamed_on_this_command(io_clock, link):
    """The FIFO is shared: axis 2's following error (queued while it moved on its own) is
    popped by the TB? after axis 1's next command. That command did nothing wrong: it goes
    through, and the error is kept for axis 2, which reports it as its fault."""
    async with bench(link) as (simulator, system):
        axis1, axis2 = system.ref("esp300.axis1"), system.ref("esp300.axis2")
        simulator.fault_next_move(2, code=3)  # following error halfway
        await axis2.ask(MoveAbsolute(10.0, wait=False))
        await trio.sleep(2.0)  # past the fault (2.25 s move, halfway ~1.1 s)
        assert await axis1.ask(MoveAbsolute(1.0)) == pytest.approx(1.0)
        assert simulator.axes[1].position == pytest.approx(1.0)
        with pytest.raises(ActorError, match=r"the motor is off \(203 FOLLOWING ERROR"):
            await axis2.ask(MoveAbsolute(1.0))
        assert (await axis2.ask(GetParameter("fault"))).value == (
            "203 FOLLOWING ERROR THRESHOLD EXCEEDED"
        )


async def test_this_commands_error_is_found_behind_another_axis_error(io_clock, link):
    """Axis 2's fault sits first in the FIFO; axis 1's own refusal comes after it and is the
    one reported to axis 1 (never left behind for a later command to trip over)."""
    async with bench(link) as (simulator, system):
        axis1, axis2 = system.ref("esp300.axis1"), system.ref("esp300.axis2")
        simulator.fault_next_move(2, code=3)
        await axis2.ask(MoveAbsolute(10.0, wait=False))
        await trio.sleep(2.0)
        with pytest.raises(ActorError) as caught:  # allowed by us, refused by the stage
            await axis1.ask(SetParameter("velocity", 30.0))
        assert "refused 1VA30: error 110 MAXIMUM VELOCITY EXCEEDED" in str(caught.value)
        assert "203" not in str(caught.value)
        await axis1.ask(SetParameter("velocity", 4.0))  # nothing left behind to refuse it
        assert simulator.axes[1].velocity == 4.0


async def test_travel_limits_are_read_again_after_a_home_and_motor_on(io_clock, link):
    """SL/SR can change while the daemon runs (front panel, another program, a new stage
    after a power cycle): a home search and motor_on read them again."""
    async with bench(link, limits={1: (-10.0, 10.0)}) as (simulator, system):
        axis = system.ref("esp300.axis1")
        simulator.axes[1].left_limit, simulator.axes[1].right_limit = -20.0, 20.0
        await axis.ask(Home(), timeout=30)
        infos = {p.name: p for p in await axis.ask(ListParameters())}
        assert infos["position"].limits == (-20.0, 20.0)
        assert await axis.ask(MoveAbsolute(15.0)) == pytest.approx(15.0)
        simulator.axes[1].right_limit = 16.0
        await axis.ask(MotorOn())
        with pytest.raises(ActorError, match=r"outside the travel -20 to 16 mm"):
            await axis.ask(MoveAbsolute(18.0))
