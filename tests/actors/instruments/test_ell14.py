"""Three ELL14 mounts on one bus against the simulator: calibration, concurrent moves, e-stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from actors.capabilities import (
    Describe,
    GetPosition,
    Home,
    MoveAbsolute,
    MoveRelative,
    Operation,
    StopMotion,
)
from actors.instruments.ell14 import (
    Ell14Bus,
    Ell14Mount,
    MoveFailed,
    ReplyGarbled,
    parse_frame,
    serial_settings,
    split_line,
)
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
from tests.actors.instruments.harness import running, until


def ell14_tree(port: str, *, discover: bool = False, **mount_options: object) -> SupervisorSpec:
    mounts = tuple(
        ActorSpec(f"ell14.{a}", lambda a=a: Ell14Mount("ell14", a, **mount_options))  # type: ignore[arg-type]
        for a in "238"
    )
    bus = ActorSpec(
        "ell14",
        lambda: Ell14Bus(serial_settings(port), discover=discover, addresses=("2", "3", "8")),
    )
    return SupervisorSpec(
        "ell14.supervisor",
        (bus, *mounts),
        strategy=Strategy.REST_FOR_ONE,
        max_restarts=10,
        backoff=Backoff(0.1, 0.5, jitter=0.0),
    )


@asynccontextmanager
async def bench(
    link: Path,
    *,
    quirks: tuple[str, ...] = (),
    addresses: tuple[str, ...] = ("2", "3", "8"),
    models: dict[str, int] | None = None,
    lost_replies: tuple[str, ...] = (),
    **tree_options: object,
) -> AsyncIterator[tuple[Ell14BusSimulator, SupervisedSystem]]:
    simulator = Ell14BusSimulator(link=link, quirks=quirks, addresses=addresses, models=models)
    for address in lost_replies:  # the module's first reply never makes it onto the bus
        simulator.replace_next_reply(address, b"")
    async with running(simulator, [ell14_tree(str(link), **tree_options)]) as system:  # type: ignore[arg-type]
        yield simulator, system


def restarts(system: SupervisedSystem) -> int:
    return sum(
        system.ref(n).statistics().restarts for n in ("ell14", "ell14.2", "ell14.3", "ell14.8")
    )


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


async def test_a_non_zero_status_after_a_move_is_a_failure_by_default(io_clock, link):
    async with bench(link) as (simulator, system):
        simulator.mechanical_timeouts = 1  # real units sometimes end a move with GS02
        mount = system.ref("ell14.2")
        with pytest.raises(ActorError) as caught:
            await mount.ask(MoveAbsolute(45.0))
        assert isinstance(caught.value.cause, MoveFailed) and not caught.value.crashed
        assert str(caught.value.cause) == (
            "ell14.2: ma00004600 failed: mechanical time-out (GS02); position re-read: 45 deg"
            " (tolerate_status = [2] would accept it)"
        )
        assert (await mount.ask(GetParameter("status"))).value == "mechanical time-out"
        assert (await mount.ask(GetParameter("position"))).value == pytest.approx(45.0, abs=0.01)


async def test_a_bench_can_tolerate_listed_status_codes(io_clock, link):
    async with bench(link, tolerate_status=(2,)) as (simulator, system):
        simulator.mechanical_timeouts = 1
        assert await system.ref("ell14.2").ask(MoveAbsolute(45.0)) == pytest.approx(45.0, abs=0.01)
        simulator.modules["3"].moving = trio.CancelScope()  # busy (GS09) is still a failure
        with pytest.raises(ActorError, match="busy"):
            await system.ref("ell14.3").ask(MoveAbsolute(10.0))


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
        # the st bytes are written; wait until the simulator has read them (real time, pty)
        await until(lambda: all(b"%sst" % a.encode() in simulator.commands for a in "238"))
        await until(lambda: all(simulator.modules[a].moving is None for a in "238"))
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
        assert isinstance(caught.value.root_cause, DeviceRefused) and not caught.value.crashed
        assert "busy (GS09)" in str(caught.value)
        assert "position re-read: unknown (ell14.3: gp answered busy (GS09))" in str(caught.value)


async def test_home_goes_to_the_home_offset(io_clock, link):
    async with bench(link) as (simulator, system):
        mount = system.ref("ell14.2")
        await mount.ask(MoveAbsolute(120.0))
        assert await mount.ask(Home()) == pytest.approx(0.0)
        assert b"2ho0" in simulator.commands and simulator.modules["2"].position == 0


# -- a noisy bus: every reply checked by form ----------------------------------------------------


def test_frames_are_checked_by_address_code_and_exact_length():
    assert parse_frame(b"2PO00004600").data == b"00004600"
    assert parse_frame(b"2POF") is None and parse_frame(b"3PO") is None
    assert parse_frame(b"2PO000046000") is None  # one digit too many
    assert parse_frame(b"GPO00004600") is None  # not an address
    assert parse_frame(b"2XY00004600") is None  # not a reply code
    noise, frame = split_line(b"\x00\xfe3PO00012PO00004600")
    assert noise == b"\x00\xfe3PO0001" and frame is not None and frame.raw == b"2PO00004600"
    assert split_line(b"3PO") == (b"3PO", None)


async def test_noise_before_the_first_frame_after_power_up(io_clock, link):
    async with bench(link, quirks=("power_up_noise",)) as (_, system):
        info = await system.ref("ell14.2").ask(Describe())
        assert info.identity.startswith("ELL14 serial")
        assert (await system.ref("ell14").ask(GetParameter("protocol_errors"))).value == 1
        assert restarts(system) == 0


@pytest.mark.parametrize("raw", [b"2POF\r\n", b"2PO\r\n", b"2PO0000460\r\n", b"2PO0000XYZ1\r\n"])
async def test_a_bad_frame_is_a_protocol_error_never_a_mis_decode(io_clock, link, caplog, raw):
    async with bench(link) as (simulator, system):
        mount = system.ref("ell14.2")
        await mount.ask(MoveAbsolute(90.0))
        simulator.replace_next_reply("2", raw)
        assert await mount.ask(GetPosition()) == pytest.approx(90.0, abs=0.01)  # asked again
        assert "protocol error: " + repr(raw.rstrip(b"\r\n")) in caplog.text
        for _ in range(3):
            simulator.replace_next_reply("2", raw)
        with pytest.raises(ActorError) as caught:  # garbled every time: the request fails
            await mount.ask(GetPosition())
        assert isinstance(caught.value.cause, ReplyGarbled) and not caught.value.crashed
        assert repr(raw.rstrip(b"\r\n")) in str(caught.value)
        assert (await mount.ask(GetParameter("position"))).value == pytest.approx(90.0, abs=0.01)
        assert await mount.ask(GetPosition()) == pytest.approx(90.0, abs=0.01)
        assert restarts(system) == 0  # never a crash loop


async def test_a_cut_frame_run_into_another_units_reply_is_credited_to_nobody_else(io_clock, link):
    async with bench(link) as (simulator, system):
        await system.ref("ell14.3").ask(MoveAbsolute(90.0))
        simulator.replace_next_reply("3", b"3PO0001" + b"2PO00004600\r\n")
        assert await system.ref("ell14.3").ask(GetPosition()) == pytest.approx(90.0, abs=0.01)
        # 2's frame went to mount 2 only, as a stale reply: never 3's, never applied
        assert (await system.ref("ell14.2").ask(GetParameter("position"))).value == 0.0
        assert (await system.ref("ell14").ask(GetParameter("protocol_errors"))).value == 1
        # a move whose completion is cut short: resynchronised, the failure names the bytes
        simulator.replace_next_reply("3", b"3PO0000" + b"8GS00\r\n")
        with pytest.raises(ActorError) as caught:
            await system.ref("ell14.3").ask(MoveAbsolute(180.0))
        assert isinstance(caught.value.cause, MoveFailed)
        assert str(caught.value.cause) == (
            "ell14.3: ma00011800: the reply was garbled: b'3PO0000' (PO carries 8 hex digits,"
            " got 4); resynchronised: status ok, position 180 deg"
        )
        assert restarts(system) == 0


async def test_a_reply_from_another_address_is_never_taken(io_clock, link):
    async with bench(link) as (simulator, system):
        await system.ref("ell14.3").ask(MoveAbsolute(90.0))
        simulator.replace_next_reply("3", b"2PO0000B400\r\n")  # 3's answer, 2's address
        assert await system.ref("ell14.3").ask(GetPosition(), timeout=30) == pytest.approx(90.0)
        assert (await system.ref("ell14.2").ask(GetParameter("position"))).value == 0.0
        assert restarts(system) == 0


@pytest.mark.parametrize("quirks", [(), ("busy_silent",)])
async def test_noise_during_a_move_does_not_end_it(io_clock, link, quirks):
    """Bytes claiming mount 2's address arrive mid-move: the mount asks gs, learns it is
    still moving (GS09, or silence from a unit that ignores queries) and waits on."""
    async with bench(link, quirks=quirks) as (simulator, system):
        async with trio.open_nursery() as nursery:

            async def noise() -> None:
                await trio.sleep(0.3)
                await simulator.send_unsolicited(b"2PO12\r\n")

            nursery.start_soon(noise)
            assert await system.ref("ell14.2").ask(
                MoveAbsolute(350.0), timeout=30
            ) == pytest.approx(350.0, abs=0.01)
        assert b"2gs" in simulator.commands and restarts(system) == 0


async def test_a_noisy_bus_never_gives_a_wrong_value_or_a_crash(io_clock, link):
    async with bench(link, quirks=("noisy_bus",)) as (simulator, system):
        failures = 0
        for step in range(12):
            address = "238"[step % 3]
            mount = system.ref(f"ell14.{address}")
            target = 10.0 * (step + 1)
            try:
                reached = await mount.ask(MoveAbsolute(target), timeout=60)
                assert reached == pytest.approx(target, abs=0.01)
            except ActorError as error:
                assert isinstance(error.cause, (MoveFailed, ReplyGarbled)), error
                assert not error.crashed
                failures += 1
            try:
                where = await mount.ask(GetPosition(), timeout=60)
            except ActorError as error:
                assert isinstance(error.cause, ReplyGarbled), error
                continue
            expected = simulator.modules[address].position / (PULSES_PER_TURN / 360)
            assert where == pytest.approx(expected, abs=0.01)  # never a mis-decode
        assert restarts(system) == 0
        assert (await system.ref("ell14").ask(GetParameter("protocol_errors"))).value > 0


async def test_discovery_reports_the_units_found(io_clock, link, caplog):
    caplog.set_level("INFO", logger="actors.instruments.ell14")
    async with bench(link, addresses=("2", "3", "8", "5"), models={"5": 17}, discover=True) as (
        simulator,
        system,
    ):
        modules = (await system.ref("ell14").ask(GetParameter("modules"))).value
        assert modules == (
            "2: ELL14 serial 11400510; 3: ELL14 serial 11400511;"
            " 5: ELL17 serial 11400513; 8: ELL14 serial 11400512"
        )
        info = await system.ref("ell14").ask(Describe())
        assert info.identity.endswith(modules)
        assert "unit(s) at 5 are not in the bench's addresses: 5: ELL17" in caplog.text
        assert [c for c in simulator.commands if c.endswith(b"in")][:16] == [
            b"%cin" % a for a in b"0123456789ABCDEF"
        ]


async def test_discovery_names_configured_addresses_that_do_not_answer(io_clock, link, caplog):
    async with bench(link, addresses=("2", "3"), discover=True) as (_, system):
        assert "configured address(es) 8 did not answer 'in'" in caplog.text
        assert system.ref("ell14.2").statistics().state.name == "RUNNING"


async def test_discovery_asks_a_configured_address_again_before_calling_it_missing(
    io_clock, link, caplog
):
    async with bench(link, lost_replies=("3",), discover=True) as (simulator, system):
        modules = (await system.ref("ell14").ask(GetParameter("modules"))).value
        assert modules.split("; ")[1] == "3: ELL14 serial 11400511"  # in address order
        asked = [c for c in simulator.commands if c.endswith(b"in")]
        assert asked[:17] == [b"%cin" % a for a in b"0123456789ABCDEF"] + [b"3in"]
        assert "did not answer" not in caplog.text


async def test_home_and_stop_are_operations_of_a_mount(io_clock, link):
    async with bench(link) as (simulator, system):
        mount = system.ref("ell14.8")
        assert (await mount.ask(Describe())).operations == (Operation.HOME, Operation.STOP)
        await mount.ask(MoveAbsolute(120.0))
        assert await mount.ask(Home()) == pytest.approx(0.0)
        assert await mount.ask(StopMotion()) == pytest.approx(0.0)  # at rest: harmless
        assert simulator.commands.count(b"8st") == 1


async def test_get_position_answers_at_once_during_a_move(io_clock, link):
    """A moving module answers no query (GS09), so the mount answers GetPosition from the
    move's estimate at once, between start and target, never waiting for the move."""
    async with bench(link) as (simulator, system):
        mount = system.ref("ell14.2")
        await mount.ask(SetParameter("velocity", 25))  # 350 deg at 107.5 deg/s: ~3.3 s
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mount.ask, MoveAbsolute(350.0))
            await until(lambda: simulator.modules["2"].moving is not None)
            seen = []
            for _ in range(3):
                asked = trio.current_time()
                seen.append(await mount.ask(GetPosition(), timeout=5.0))
                assert trio.current_time() - asked < 0.5  # nothing on the wire: at once
                await trio.sleep(0.5)
            assert simulator.modules["2"].moving is not None  # still moving
        assert 0.0 <= seen[0] < seen[1] < seen[2] < 350.0
        sent = list(simulator.commands)
        since_move = sent[max(i for i, c in enumerate(sent) if c.startswith(b"2ma")) :]
        assert b"2gp" not in since_move  # nothing asked of the moving module
        assert await mount.ask(GetPosition()) == pytest.approx(350.0, abs=0.01)  # read again


async def test_a_position_query_never_reads_a_reply_meant_for_another_exchange(io_clock, link):
    """Queries run beside the handler in flight; the mount's exchanges are serialised, so a
    burst of GetPosition queries racing settings gets every reply right."""
    async with bench(link) as (_, system):
        mount = system.ref("ell14.3")
        await mount.ask(MoveAbsolute(45.0))
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(mount.ask, GetPosition())
            for velocity in (40, 60, 80, 100):
                assert (await mount.ask(SetParameter("velocity", velocity))).value == velocity
        for _ in range(5):
            assert await mount.ask(GetPosition()) == pytest.approx(45.0, abs=0.01)
        assert restarts(system) == 0


async def test_one_module_gone_from_the_bus_does_not_restart_the_other_mounts(io_clock):
    """Module 2 is unplugged (or powered off) on the shared bus: its mount fails and retries,
    but mounts 3 and 8 are not restarted with it (a restart would cut a move in flight)."""
    from runtime.config import parse_config
    from supervisors.bench import open_bench

    config = parse_config(
        '[[device]]\nid = "ell14"\ndriver = "thorlabs_ell14"\nport = "sim"\n'
        'options = { addresses = ["2", "3", "8"] }\n',
        "lab.toml",
    )
    async with open_bench(config) as bench:
        simulator = bench.simulators["ell14"]
        assert isinstance(simulator, Ell14BusSimulator)
        mount3 = bench.system.ref("ell14.3")
        gone = simulator.modules.pop("2")
        await trio.sleep(30.0)  # mount 2's keepalive finds it silent: it restarts, and retries
        assert bench.device_states()["ell14.2"] == "degraded"
        assert bench.device_states()["ell14.3"] == "ready"
        assert await mount3.ask(MoveAbsolute(90.0), timeout=30) == pytest.approx(90.0, abs=0.01)
        assert mount3.statistics().restarts == 0
        assert bench.system.ref("ell14.8").statistics().restarts == 0
        simulator.modules["2"] = gone  # plugged back in
        await trio.sleep(30.0)
        assert bench.device_states()["ell14.2"] == "ready"
