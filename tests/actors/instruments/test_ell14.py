"""Three ELL14 mounts on one bus against the simulator: calibration, concurrent moves, e-stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from actors.capabilities import Describe, GetPosition, Home, MoveAbsolute, MoveRelative
from actors.instruments.ell14 import Ell14Bus, Ell14Mount, serial_settings
from actors.instruments.serial_device import DeviceRefused
from runtime import (
    ActorError,
    EmergencyStopLatched,
    GetParameter,
    Interrupted,
    SetParameter,
    ValidationError,
)
from simulators.ell14 import PULSES_PER_TURN, Ell14BusSimulator
from supervisors import (
    ActorSpec,
    Backoff,
    Strategy,
    SupervisedSystem,
    SupervisorSpec,
)
from tests.actors.instruments.harness import running


def ell14_tree(port: str) -> SupervisorSpec:
    mounts = tuple(ActorSpec(f"ell14.{a}", lambda a=a: Ell14Mount("ell14", a)) for a in "238")
    return SupervisorSpec(
        "ell14.supervisor",
        (ActorSpec("ell14", lambda: Ell14Bus(serial_settings(port))), *mounts),
        strategy=Strategy.REST_FOR_ONE,
        max_restarts=10,
        backoff=Backoff(0.1, 0.5, jitter=0.0),
    )


@asynccontextmanager
async def bench(link: Path) -> AsyncIterator[tuple[Ell14BusSimulator, SupervisedSystem]]:
    simulator = Ell14BusSimulator(link=link)
    async with running(simulator, [ell14_tree(str(link))]) as system:
        yield simulator, system


async def test_calibration_comes_from_the_in_reply(io_clock, link):
    async with bench(link) as (simulator, system):
        info = await system.ref("ell14.3").ask(Describe())
        assert info.identity == "ELL14 serial 11400511 at address 3" and info.units == "deg"
        assert await system.ref("ell14.3").ask(MoveAbsolute(90.0)) == pytest.approx(90.0, abs=0.01)
        assert simulator.modules["3"].position == PULSES_PER_TURN // 4  # 398.222 pulses/deg


async def test_three_mounts_move_at_once_on_one_bus(io_clock, link):
    async with bench(link) as (simulator, system):
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for address, angle in (("2", 180.0), ("3", 270.0), ("8", 360.0)):
                nursery.start_soon(system.ref(f"ell14.{address}").ask, MoveAbsolute(angle))
        # 360 deg at 430 deg/s is 0.84 s; one after the other would take 1.88 s
        assert trio.current_time() - start < 1.2
        assert [simulator.modules[a].position for a in "238"] == [
            PULSES_PER_TURN // 2,
            PULSES_PER_TURN * 3 // 4,
            PULSES_PER_TURN,
        ]
        assert await system.ref("ell14.8").ask(MoveRelative(-90.0)) == pytest.approx(
            270.0, abs=0.01
        )


async def test_settings_and_refusals(io_clock, link):
    async with bench(link) as (simulator, system):
        mount = system.ref("ell14.2")
        assert (await mount.ask(SetParameter("velocity", 60))).value == 60
        assert simulator.modules["2"].velocity == 60
        await mount.ask(SetParameter("jog_step", 5.0))
        assert simulator.modules["2"].jog_step == round(5.0 * PULSES_PER_TURN / 360)
        with pytest.raises(ActorError) as caught:
            await mount.ask(MoveAbsolute(400.0))
        assert isinstance(caught.value.cause, ValidationError)
        with pytest.raises(ActorError, match="outside the allowed range 25 to 100"):
            await mount.ask(SetParameter("velocity", 10))


async def test_mechanical_timeout_is_accepted_like_real_units(io_clock, link):
    async with bench(link) as (simulator, system):
        simulator.mechanical_timeouts = 1
        assert await system.ref("ell14.2").ask(MoveAbsolute(45.0)) == pytest.approx(45.0, abs=0.01)


async def test_unsolicited_button_traffic_updates_the_mount(io_clock, link):
    async with bench(link) as (simulator, system):
        mount = system.ref("ell14.8")
        await simulator.send_unsolicited(b"8BS0D\r\n8BO00004600\r\n")  # front-panel jog
        await trio.sleep(0.1)
        await mount.ask(SetParameter("velocity", 50))  # its reply is not mistaken for either line
        assert (await mount.ask(GetParameter("position"))).value == pytest.approx(45.0, abs=0.01)
        assert (await mount.ask(GetParameter("status"))).value == "over-current"
        assert await mount.ask(GetPosition()) == pytest.approx(0.0)  # gp: the real position


async def test_emergency_stop_stops_every_module_mid_move(io_clock, link):
    async with bench(link) as (simulator, system):
        outcomes: list[BaseException] = []

        async def turn(address: str) -> None:
            try:
                await system.ref(f"ell14.{address}").ask(MoveRelative(300.0), timeout=None)
            except ActorError as exc:
                outcomes.append(exc)

        async with trio.open_nursery() as nursery:
            for address in "238":
                nursery.start_soon(turn, address)
            await trio.sleep(0.3)
            report = await system.emergency_stop("beam path obstructed")
        assert report.all_stopped
        assert len(outcomes) == 3 and all(isinstance(o.cause, Interrupted) for o in outcomes)
        assert all(b"%sst" % a.encode() in simulator.commands for a in "238")
        for address in "238":
            stopped = simulator.modules[address].position
            assert 0 < stopped < round(300 * PULSES_PER_TURN / 360)
        with pytest.raises(ActorError) as latched:
            await system.ref("ell14.2").ask(MoveAbsolute(10.0))
        assert isinstance(latched.value.cause, EmergencyStopLatched)


async def test_a_busy_module_refuses_clearly(io_clock, link):
    async with bench(link) as (simulator, system):
        simulator.modules["3"].moving = trio.CancelScope()  # stuck moving (from a button press)
        with pytest.raises(ActorError) as caught:
            await system.ref("ell14.3").ask(MoveAbsolute(10.0))
        assert isinstance(caught.value.root_cause, DeviceRefused)
        assert "busy (GS09)" in str(caught.value)


async def test_home_goes_to_the_home_offset(io_clock, link):
    async with bench(link) as (simulator, system):
        mount = system.ref("ell14.2")
        await mount.ask(MoveAbsolute(120.0))
        assert await mount.ask(Home()) == pytest.approx(0.0)
        assert b"2ho0" in simulator.commands and simulator.modules["2"].position == 0
