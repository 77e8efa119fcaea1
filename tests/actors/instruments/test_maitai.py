"""The Mai Tai driver against its simulator: verification of silent commands and the safety rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from actors.capabilities import Read
from actors.instruments.maitai import MaiTai, SafetyInterlock, serial_settings
from actors.instruments.serial_device import DeviceRefused, NoReply
from runtime import (
    ActorError,
    ActorRef,
    EmergencyStopLatched,
    GetParameter,
    ListParameters,
    ReadbackMismatch,
    SetParameter,
    Source,
    ValidationError,
    WatchParameter,
)
from simulators.maitai import MaiTaiSimulator, short_form
from supervisors import ActorSpec, Backoff, SupervisedSystem
from tests.actors.instruments.harness import running


@asynccontextmanager
async def bench(
    link: Path,
    quirks: tuple[str, ...] = (),
    identity: str | None = None,
    **options: object,
) -> AsyncIterator[tuple[MaiTaiSimulator, ActorRef, SupervisedSystem]]:
    simulator = MaiTaiSimulator(link=link, quirks=quirks)
    if identity is not None:
        simulator.identity = identity
    spec = ActorSpec("maitai", lambda: MaiTai(serial_settings(str(link)), **options))  # type: ignore[arg-type]
    backoff = Backoff(0.1, 0.5, jitter=0.0)
    async with running(simulator, [spec], backoff=backoff, max_restarts=20) as system:
        yield simulator, system.ref("maitai"), system


async def safe_state(laser: ActorRef, prefix: str) -> str:
    """The e-stop's second moment: wait until ``safe_state`` starts with ``prefix``."""
    watch = await laser.ask(WatchParameter("safe_state"))
    async for sample in watch:
        if sample.value.startswith(prefix):
            return str(sample.value)
    raise AssertionError("safe_state stream ended")


def test_scpi_short_forms():
    assert short_form("SHUTTER") == "SHUT"
    assert short_form("wavelength:min?") == "WAV:MIN?"
    assert short_form("READ:PCTWarmedup?") == "READ:PCTW?"
    assert short_form("READ:PLASER:DIODE1:CURRENT?") == "READ:PLAS:DIOD1:CURR?"
    assert short_form("*idn?") == "*IDN?" and short_form("on") == "ON"


async def test_limits_come_from_the_laser(io_clock, link):
    async with bench(link) as (simulator, laser, _):
        infos = {info.name: info for info in await laser.ask(ListParameters())}
        assert infos["wavelength"].limits == (690.0, 1040.0)
        with pytest.raises(ActorError) as caught:
            await laser.ask(SetParameter("wavelength", 1100.0))
        assert isinstance(caught.value.cause, ValidationError)
        assert "1100.0 nm is outside the allowed range 690 to 1040 nm" in str(caught.value)
        snapshot = await laser.ask(SetParameter("wavelength", 920.0))
        assert snapshot.value == 920.0 and simulator.setpoint == 920.0
        await trio.sleep(3.0)  # slewing at 50 nm/s
        assert (await laser.ask(Read())) is not None
        assert (await laser.ask(GetParameter("actual_wavelength"))).value == 920.0


async def test_emission_needs_the_shutter_confirmed_closed(io_clock, link):
    async with bench(link) as (simulator, laser, _):
        await laser.ask(SetParameter("shutter", True))  # verified through the ~1 s lag
        assert simulator.shutter_open
        with pytest.raises(ActorError) as caught:
            await laser.ask(SetParameter("emission", True))
        assert isinstance(caught.value.cause, SafetyInterlock)
        assert "shutter is open (SHUT? = 1); close it first" in str(caught.value)
        assert not simulator.emission
        await laser.ask(SetParameter("shutter", False))
        snapshot = await laser.ask(SetParameter("emission", True))
        assert snapshot.value is True and simulator.emission
        reading = await laser.ask(Read())
        assert reading.value == pytest.approx(3.0) and reading.units == "W"


async def test_a_shutter_that_did_not_close_keeps_emission_refused(io_clock, link):
    async with bench(link) as (simulator, laser, _):
        await laser.ask(SetParameter("shutter", True))
        simulator.local_mode = True  # the next close will be ignored by the laser...
        with pytest.raises(ActorError):
            await laser.ask(SetParameter("shutter", False))
        simulator.local_mode = False
        with pytest.raises(ActorError, match="emission refused: the shutter is open"):
            await laser.ask(SetParameter("emission", True))  # ...so emission stays refused
        assert not simulator.emission
        await laser.ask(SetParameter("shutter", False))  # confirmed closed after its lag
        await laser.ask(SetParameter("emission", True))
        assert simulator.emission


async def test_a_shutter_that_does_not_follow_is_a_readback_mismatch(io_clock, link):
    async with bench(link) as (simulator, laser, _):
        simulator.local_mode = True  # front panel in LOCAL: commands accepted, ignored
        with pytest.raises(ActorError) as caught:
            await laser.ask(SetParameter("shutter", True))
        assert isinstance(caught.value.cause, ReadbackMismatch)
        assert "shutter: wrote True but the hardware reads back False" in str(caught.value)
        snapshot = await laser.ask(GetParameter("shutter"))
        assert (snapshot.value, snapshot.desired, snapshot.source) == (False, True, Source.HARDWARE)


async def test_emergency_stop_closes_the_shutter_and_latches(io_clock, link):
    async with bench(link, off_on_estop=True) as (simulator, laser, system):
        await laser.ask(SetParameter("emission", True))
        await laser.ask(SetParameter("shutter", True))
        report = await system.emergency_stop("door interlock")
        assert report.all_stopped  # acknowledged once SHUT 0 is on the wire...
        assert "confirmed: the shutter reads closed" in await safe_state(laser, "confirmed")
        assert not simulator.shutter_open and not simulator.emission  # ...confirmed after
        with pytest.raises(ActorError) as caught:
            await laser.ask(SetParameter("shutter", True))
        assert isinstance(caught.value.cause, EmergencyStopLatched)
        await laser.ask(SetParameter("shutter", False))  # making it safer is always allowed
        await laser.ask(SetParameter("emission", False))


async def test_an_emergency_stop_that_cannot_close_the_shutter_fails_loudly(io_clock, link):
    async with bench(link) as (simulator, laser, system):
        await laser.ask(SetParameter("shutter", True))
        simulator.local_mode = True
        report = await system.emergency_stop("door interlock")
        assert report.all_stopped  # the stop bytes went out; the read-back is the second moment
        while laser.statistics().last_failure is None:  # the actor crashes: degraded, loudly
            await trio.sleep(0.1)
        failure = laser.statistics().last_failure
        assert "still reads open 5 s after SHUT 0" in failure.message
        assert "treat the beam as ON" in failure.message
        # restarted while latched, it sends SHUT 0 again at once; the laser obeys now
        simulator.local_mode = False
        assert "confirmed" in await safe_state(laser, "confirmed")
        assert not simulator.shutter_open
        assert laser.statistics().latched == "door interlock"


async def test_emission_and_shutter_are_not_restored_after_a_restart(io_clock, link):
    async with bench(link) as (simulator, laser, _):
        await laser.ask(SetParameter("wavelength", 850.0))
        await laser.ask(SetParameter("emission", True))
        simulator.disconnect()
        await trio.sleep(1.0)
        simulator.reconnect()  # power-cycled: emission off, shutter closed, 800 nm
        await trio.sleep(8.0)
        assert simulator.setpoint == 850.0  # a harmless setting is re-applied
        assert not simulator.emission  # emission waits for a person
        assert (await laser.ask(GetParameter("emission"))).value is False


# -- quirk modes of real units -------------------------------------------------------------------


async def test_echoes_and_ok_lines_after_sets_are_drained(io_clock, link):
    """A set leaves its echo and an OK behind; they are never read as the next answer."""
    async with bench(link, quirks=("echo", "ok_after_set")) as (simulator, laser, _):
        await laser.ask(SetParameter("wavelength", 850.0))
        await laser.ask(SetParameter("shutter", True))
        await laser.ask(SetParameter("shutter", False))
        snapshot = await laser.ask(SetParameter("emission", True))  # *STB? read back, not "OK"
        assert snapshot.value is True and simulator.emission
        reading = await laser.ask(Read())
        assert reading.value == pytest.approx(3.0)
        assert (await laser.ask(GetParameter("wavelength"))).value == 850.0
        await laser.ask(SetParameter("emission", False))
        assert not simulator.emission and laser.statistics().restarts == 0


async def test_emission_waits_for_warm_up_and_says_so(io_clock, link, caplog):
    caplog.set_level("INFO", logger="actors.instruments.maitai")
    async with bench(link, quirks=("cold_start",)) as (simulator, laser, _):
        statuses: list[str] = []
        watch = await laser.ask(WatchParameter("status"))  # a GUI subscribed beforehand

        async def watch_status() -> None:
            async for sample in watch:
                statuses.append(sample.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_status)
            started = trio.current_time()
            snapshot = await laser.ask(SetParameter("emission", True), timeout=60)
            nursery.cancel_scope.cancel()
        assert snapshot.value is True and simulator.emission
        assert trio.current_time() - started >= 5.0  # warm-up takes 10 s from power-up
        assert any(s.startswith("waiting for warm-up: ") for s in statuses), statuses
        assert statuses[-1] == "emission on"
        assert (await laser.ask(GetParameter("warmup"))).value == 100.0
        assert "emission waits for warm-up" in caplog.text
        on = [c for c in simulator.commands if c == b"ON"]
        assert len(on) == 1  # never sent during warm-up (the laser would flag EXE_ERR)


async def test_emission_gives_up_after_the_warm_up_timeout(io_clock, link):
    async with bench(link, quirks=("cold_start",), warmup_timeout=2.0) as (simulator, laser, _):
        with pytest.raises(ActorError) as caught:
            await laser.ask(SetParameter("emission", True), timeout=60)
        assert isinstance(caught.value.cause, SafetyInterlock)
        assert "emission refused: warm-up at" in str(caught.value)
        assert not simulator.emission and b"ON" not in simulator.commands


async def test_the_estop_confirmation_allows_slow_replies(io_clock, link):
    """After a wavelength change replies take ~2 s: the read-back window allows for it."""
    async with bench(link, quirks=("slow_replies",)) as (simulator, laser, system):
        await laser.ask(SetParameter("shutter", True), timeout=30)
        await laser.ask(SetParameter("wavelength", 900.0), timeout=30)  # slow for 5 s now
        start = trio.current_time()
        report = await system.emergency_stop("beam block removed")  # the default 2 s window
        assert report.all_stopped and trio.current_time() - start < 0.5
        confirmed = await safe_state(laser, "confirmed")
        assert trio.current_time() - start >= 3.0  # 1.2 s lag + a 2 s reply: past 2 s
        assert "after SHUT 0 (beam block removed)" in confirmed
        assert not simulator.shutter_open and laser.statistics().restarts == 0


async def test_a_late_reply_is_discarded_and_the_next_query_gets_its_own_answer(io_clock, link):
    """*STB? answers "1" after 4 s (past the 3 s time-out); the next question is SHUT?,
    whose answer is also 0 or 1. Believing the late "1" would say the shutter is open."""
    async with bench(link) as (simulator, laser, _):
        await laser.ask(SetParameter("emission", True))
        await laser.ask(SetParameter("wavelength", 1000.0))  # tuning: not mode-locked, STB = 1

        def late_status(_: float, command: bytes) -> None:
            if command == b"*STB?":
                simulator.late_next = 1
                simulator.on_command = None

        simulator.on_command = late_status
        with pytest.raises(ActorError) as caught:
            await laser.ask(SetParameter("emission", True), timeout=30)  # read back by *STB?
        assert isinstance(caught.value.cause, NoReply) and not caught.value.crashed
        assert "no complete reply of the expected form (a status byte" in str(caught.value)
        snapshot = await laser.ask(SetParameter("emission", True), timeout=30)  # SHUT? first
        assert snapshot.value is True
        assert laser.statistics().restarts == 0
        assert b"*IDN?" in list(simulator.commands)[-8:]  # it resynced before asking


async def test_late_replies_as_a_standing_quirk_never_desynchronise(io_clock, link):
    """Every 10th query is answered after 4 s: that request fails (NoReply), nothing else
    does, and no answer is ever taken for another query's (a wrong value or form)."""
    async with bench(link, quirks=("late_replies",)) as (simulator, laser, _):
        refused = 0

        async def attempt(request: object) -> object:
            nonlocal refused
            try:
                return await laser.ask(request, timeout=30)  # type: ignore[arg-type]
            except ActorError as error:
                assert isinstance(error.cause, NoReply), error
                refused += 1
                return None

        for nm in (810.0, 820.0, 830.0, 840.0, 850.0, 860.0):
            snapshot = await attempt(SetParameter("wavelength", nm))
            assert snapshot is None or snapshot.value == nm
            reading = await attempt(Read())
            assert reading is None or reading.value == 0.0  # emission off: 0 W
        assert refused >= 1 and laser.statistics().restarts == 0
        assert simulator.setpoint == 860.0


async def test_an_error_reply_is_an_error_with_its_text(io_clock, link):
    async with bench(link, quirks=("error_replies",)) as (simulator, laser, _):
        simulator.maximum_nm = 900.0  # the laser's tuning range shrank since start-up
        with pytest.raises(ActorError) as caught:
            await laser.ask(SetParameter("wavelength", 950.0))
        assert isinstance(caught.value.cause, DeviceRefused)
        assert "refused WAV 950" in str(caught.value)
        assert "Error: EXE_ERR wavelength out of range" in str(caught.value)
        await laser.ask(SetParameter("wavelength", 880.0))  # the next exchange is clean
        assert laser.statistics().restarts == 0


async def test_without_error_replies_the_queue_says_why(io_clock, link):
    async with bench(link) as (simulator, laser, _):
        simulator.maximum_nm = 900.0
        with pytest.raises(
            ActorError, match=r"refused WAV 950: 2: EXE_ERR wavelength out of range"
        ):
            await laser.ask(SetParameter("wavelength", 950.0))


def test_quirk_names_are_checked():
    with pytest.raises(ValueError, match="maitai simulator has no quirk 'echos'; quirks: "):
        MaiTaiSimulator(quirks=("echos",))


async def test_emission_is_never_read_as_off_while_the_laser_reports_output_power(io_clock, link):
    """The lab's laser answered *STB? = 8 (bit 0 clear) while emitting 3 W: on that firmware
    bit 0 is not emission. A restart while it lases must not report emission off."""
    async with bench(link, quirks=("lab_status_byte",)) as (simulator, laser, _):
        assert (await laser.ask(GetParameter("emission"))).value is False
        snapshot = await laser.ask(SetParameter("emission", True))  # read back: 3 W out
        assert snapshot.value is True and simulator.emission
        simulator.disconnect()
        await trio.sleep(0.5)
        simulator.reconnect(power_cycled=False)  # a cable, not the laser: it goes on lasing
        await trio.sleep(5.0)
        assert simulator.emission and laser.statistics().restarts >= 1
        assert (await laser.ask(GetParameter("emission"))).value is True
        await laser.ask(SetParameter("emission", False))
        assert not simulator.emission


async def test_an_error_queue_without_a_colon_is_understood(io_clock, link):
    """SYST:ERR?'s format is unconfirmed: '0 NO ERROR' is no error, '2 EXE_ERR ...' a refusal."""
    async with bench(link, quirks=("spaced_error_queue",)) as (simulator, laser, _):
        await laser.ask(SetParameter("wavelength", 850.0))
        assert simulator.setpoint == 850.0
        simulator.maximum_nm = 900.0
        with pytest.raises(
            ActorError, match=r"refused WAV 950: 2: EXE_ERR wavelength out of range"
        ):
            await laser.ask(SetParameter("wavelength", 950.0))
        assert laser.statistics().restarts == 0


@pytest.mark.parametrize(
    "identity",
    [
        "Spectra-Physics, MaiTai, xxx, 0453-8620A/5.10/J40-4420H",  # the manual's example
        "Spectra Physics,MaiTai HP,3227/51054/40856,0245-2.00.34",  # a model suffix
    ],
)
async def test_identities_of_other_units_are_accepted(io_clock, link, identity):
    async with bench(link, identity=identity) as (_, laser, _system):
        assert (await laser.ask(GetParameter("wavelength"))).value == 800.0
        assert laser.statistics().restarts == 0
