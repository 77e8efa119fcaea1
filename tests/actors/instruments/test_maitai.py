"""The Mai Tai driver against its simulator: verification of silent commands and the safety rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from actors.capabilities import Read
from actors.instruments.maitai import MaiTai, SafetyInterlock, serial_settings
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
)
from simulators.maitai import MaiTaiSimulator, short_form
from supervisors import ActorSpec, Backoff, SupervisedSystem
from tests.actors.instruments.harness import running


@asynccontextmanager
async def bench(
    link: Path, **options: object
) -> AsyncIterator[tuple[MaiTaiSimulator, ActorRef, SupervisedSystem]]:
    simulator = MaiTaiSimulator(link=link)
    spec = ActorSpec("maitai", lambda: MaiTai(serial_settings(str(link)), **options))  # type: ignore[arg-type]
    backoff = Backoff(0.1, 0.5, jitter=0.0)
    async with running(simulator, [spec], backoff=backoff, max_restarts=20) as system:
        yield simulator, system.ref("maitai"), system


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
        assert report.all_stopped
        assert not simulator.shutter_open and not simulator.emission
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
        assert not report.all_stopped
        (ack,) = report.acknowledgements
        assert "still reads open" in ack.error and "treat the beam as ON" in ack.error


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
