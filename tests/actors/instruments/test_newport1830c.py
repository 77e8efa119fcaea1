"""The Newport 1830-C driver against its simulator, through the real serial transport."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from actors.capabilities import Capability, Describe, Operation, Read, Zero
from actors.instruments.newport1830c import Filter, Newport1830C, serial_settings
from actors.instruments.serial_device import DeviceRefused, NoReply
from runtime import (
    ActorError,
    ActorRef,
    ActorState,
    GetParameter,
    SetParameter,
    ValidationError,
    WatchParameter,
)
from simulators.newport1830c import Newport1830CSimulator, format_watts
from supervisors import ActorSpec, Backoff, SupervisedSystem
from tests.actors.instruments.harness import running


@asynccontextmanager
async def bench(
    link: Path, simulator: Newport1830CSimulator | None = None, quirks: tuple[str, ...] = ()
) -> AsyncIterator[tuple[Newport1830CSimulator, ActorRef, SupervisedSystem]]:
    simulator = simulator or Newport1830CSimulator(link=link, quirks=quirks)
    spec = ActorSpec("power_meter", lambda: Newport1830C(serial_settings(str(link))))
    backoff = Backoff(initial=0.2, maximum=1.0, jitter=0.0)
    async with running(simulator, [spec], max_restarts=100, backoff=backoff) as system:
        yield simulator, system.ref("power_meter"), system


async def settled_read(meter: ActorRef) -> object:
    """A reading once auto-range has settled (the meter is busy ~0.2 s after a power step)."""
    reading = await meter.ask(Read())
    if "busy" in reading.flags:
        await trio.sleep(0.3)
        reading = await meter.ask(Read())
    return reading


def test_readings_are_formatted_like_the_meter():
    assert format_watts(7.5e-10) == "+.7500E-9"
    assert format_watts(1.23e-6) == "+.1230E-5"
    assert format_watts(-2e-3) == "-.2000E-2"
    assert format_watts(9.99996e-7) == "+.1000E-5"
    for value in (7.5e-10, 1.23e-6, 3.3e-2):
        assert float(format_watts(value)) == pytest.approx(value, rel=1e-4)


async def test_describe_and_read_in_watts(io_clock, link):
    async with bench(link) as (simulator, meter, _):
        info = await meter.ask(Describe())
        assert info.driver == "newport_1830c" and Capability.READABLE in info.capabilities
        assert info.identity == "Newport 1830-C" and info.units == "W"
        simulator.power_w = 2.5e-6
        reading = await settled_read(meter)
        assert reading.value == pytest.approx(2.5e-6, rel=0.01)
        assert reading.units == "W" and reading.valid
        assert (await meter.ask(GetParameter("power"))).value == reading.value
        assert b"U1" in simulator.commands  # watts forced at start


async def test_settings_are_written_verified_and_refused_before_the_wire(io_clock, link):
    async with bench(link) as (simulator, meter, _):
        snapshot = await meter.ask(SetParameter("wavelength", 1064))
        assert (snapshot.value, simulator.wavelength) == (1064, 1064)
        assert b"W1064" in simulator.commands
        await meter.ask(SetParameter("attenuator", True))
        await meter.ask(SetParameter("filter", "slow"))
        await meter.ask(SetParameter("range", 3))
        assert (simulator.attenuator, simulator.filter, simulator.range) == (1, 1, 3)
        before = list(simulator.commands)
        with pytest.raises(ActorError) as caught:
            await meter.ask(SetParameter("wavelength", 1500))
        assert isinstance(caught.value.cause, ValidationError)
        assert "wavelength: 1500 nm is outside the allowed range 300 to 1100 nm" in str(
            caught.value
        )
        with pytest.raises(ActorError, match="not one of 'slow', 'medium', 'fast'"):
            await meter.ask(SetParameter("filter", "turbo"))
        assert list(simulator.commands) == before  # nothing refused reached the meter


async def test_a_silent_refusal_by_the_meter_becomes_an_error(io_clock, link):
    async with bench(link) as (simulator, meter, _):
        simulator.wavelength_limits = (400, 1000)  # a detector with a narrower calibration
        with pytest.raises(ActorError) as caught:
            await meter.ask(SetParameter("wavelength", 1050))
        assert isinstance(caught.value.cause, DeviceRefused)
        assert "power_meter refused W1050: parameter error" in str(caught.value)
        assert (await settled_read(meter)).valid  # still connected and working
        assert simulator.status & 0b11 == 0  # the driver cleared the error bits
        assert simulator.wavelength == 800


async def test_over_range_and_saturation_are_flagged_not_hidden(io_clock, link):
    async with bench(link) as (simulator, meter, _):
        await meter.ask(SetParameter("range", 1))  # 2 nW full scale
        simulator.power_w = 5e-6
        reading = await meter.ask(Read())
        assert reading.flags == ("over_range",) and not reading.valid
        simulator.power_w = 0.5  # far above the bare detector's limit
        reading = await meter.ask(Read())
        assert "saturated" in reading.flags
        await meter.ask(SetParameter("range", 0))
        simulator.power_w = 1e-7
        await meter.ask(Read())
        assert "busy" in (await meter.ask(Read())).flags  # re-ranging after a big step


async def test_streaming_publishes_every_reading(io_clock, link):
    async with bench(link) as (simulator, meter, _):
        simulator.power_w = 3e-6
        watch = await meter.ask(WatchParameter("power"))
        await meter.ask(SetParameter("poll_interval", 0.1))
        await meter.ask(SetParameter("streaming", True))
        seen = []
        async for sample in watch:
            if not math.isnan(sample.value):
                seen.append(sample.value)
            if len(seen) == 5:
                break
        await meter.ask(SetParameter("streaming", False))
        assert all(v == pytest.approx(3e-6, rel=0.02) for v in seen)
        # Client requests interleave with the polls through the same mailbox.
        assert (await settled_read(meter)).valid


async def test_a_garbled_reply_crashes_the_actor_which_reconnects(io_clock, link):
    async with bench(link) as (simulator, meter, system):
        simulator.faults.garbage_replies = 1
        with pytest.raises(ActorError) as caught:
            await meter.ask(Read())
        assert caught.value.crashed
        assert "power_meter: expected a power reading (a number) to b'D?'" in str(caught.value)
        assert (await settled_read(meter)).valid  # restarted, reconnected, reading again
        assert meter.statistics().restarts == 1
        assert system.supervision().children[0].last_failure.message.startswith("power_meter:")


async def test_a_lost_reply_fails_one_read_and_the_link_resyncs(io_clock, link):
    async with bench(link) as (simulator, meter, _):
        simulator.faults.drop_replies = 1
        with pytest.raises(ActorError) as caught:
            await meter.ask(Read())
        assert isinstance(caught.value.cause, NoReply) and not caught.value.crashed
        assert "no complete reply" in str(caught.value) and "b'D?'" in str(caught.value)
        assert (await settled_read(meter)).valid
        assert meter.statistics().restarts == 0
        assert b"W?" in list(simulator.commands)[-6:]  # resynced on W? before asking again


async def test_a_silent_meter_still_restarts(io_clock, link):
    async with bench(link) as (simulator, meter, _):
        simulator.faults.silent = True
        with pytest.raises(ActorError):
            await meter.ask(Read())
        with pytest.raises(ActorError) as caught:  # the resync is not answered either
            await meter.ask(Read())
        assert caught.value.crashed and "no answer to the resync query" in str(caught.value)
        simulator.faults.silent = False
        assert (await settled_read(meter)).valid
        assert meter.statistics().restarts >= 1


async def test_pulled_cable_restarts_with_backoff_and_reapplies_settings(io_clock, link):
    async with bench(link) as (simulator, meter, _):
        await meter.ask(SetParameter("wavelength", 1064))
        await meter.ask(SetParameter("filter", "medium"))
        await meter.ask(SetParameter("keepalive", 0.5))
        simulator.disconnect()
        await trio.sleep(6.0)  # noticed by the keepalive although nobody asked anything
        state = meter.statistics().state
        assert state in (ActorState.RESTARTING, ActorState.STARTING)  # reported while down
        assert meter.statistics().restarts >= 1
        simulator.reconnect()  # the meter was power-cycled: factory settings
        await trio.sleep(2.0)
        assert meter.statistics().state is ActorState.RUNNING
        assert (simulator.wavelength, simulator.filter) == (1064, 2)  # re-applied
        snapshot = await meter.ask(GetParameter("wavelength"))
        assert (snapshot.value, snapshot.desired) == (1064, 1064)


async def test_something_else_on_the_port_is_refused(io_clock, link):
    class NotAMeter(Newport1830CSimulator):
        async def respond(self, command: bytes) -> bytes | None:
            await trio.lowlevel.checkpoint()
            return b"ESP300 Version 3.04"

    async with bench(link, NotAMeter(link=link)) as (_, meter, system):
        await trio.sleep(0.5)
        failure = system.supervision().children[0].last_failure
        assert failure is not None
        assert "does not answer like a Newport 1830-C to b'Z?'" in failure.message
        assert "ESP300 Version" in failure.message
        assert meter.statistics().state is not ActorState.RUNNING


# -- quirk modes of real units -------------------------------------------------------------------


@pytest.mark.parametrize(
    "quirks",
    [("echo",), ("echo", "ignores_e0"), ("echo", "ignores_e0", "partial_echo"), ("slow_replies",)],
)
async def test_echo_on_at_power_up_is_read_past(io_clock, link, quirks):
    """The command text comes back before each reply (whole or cut short); E0 is sent on
    connect, and a unit that ignores it still works. Only a numeric line is a reading."""
    async with bench(link, quirks=quirks) as (simulator, meter, _):
        assert b"E0" in simulator.commands
        assert simulator.echo == ("ignores_e0" in quirks)
        simulator.power_w = 2.5e-6
        for _ in range(3):
            reading = await settled_read(meter)
            assert reading.value == pytest.approx(2.5e-6, rel=0.01)
        snapshot = await meter.ask(SetParameter("wavelength", 1064))
        assert snapshot.value == 1064 and simulator.wavelength == 1064
        await meter.ask(SetParameter("filter", "medium"))
        assert (await meter.ask(GetParameter("filter"))).value == "medium"
        simulator.wavelength_limits = (400, 1000)
        with pytest.raises(ActorError, match="refused W1050: parameter error"):
            await meter.ask(SetParameter("wavelength", 1050))
        assert meter.statistics().restarts == 0  # no restart loop


async def test_zero_is_an_operation_of_the_meter(io_clock, link):
    async with bench(link, quirks=("echo", "ignores_e0")) as (simulator, meter, _):
        info = await meter.ask(Describe())
        assert info.operations == (Operation.ZERO,)
        simulator.power_w = 1.0e-9  # the dark level, detector covered
        assert await meter.ask(Zero()) is True
        assert simulator.zero == 1 and simulator.background == pytest.approx(1.0e-9)
        assert (await meter.ask(GetParameter("zero"))).value is True
        simulator.power_w = 5.0e-9
        reading = await settled_read(meter)
        assert reading.value == pytest.approx(4.0e-9, rel=0.02)  # the dark offset subtracted
        assert await meter.ask(Zero(enable=False)) is False
        assert simulator.zero == 0 and (await meter.ask(GetParameter("zero"))).value is False
        assert (await settled_read(meter)).value == pytest.approx(5.0e-9, rel=0.02)


async def test_units_changed_on_the_front_panel_never_read_as_watts(io_clock, link, caplog):
    """Someone presses dBm on the meter (or it powers up in dB): D? then answers -30.00, which
    is not -30 W. A reading without an exponent makes the driver check U?, force watts back
    and read again."""
    async with bench(link) as (simulator, meter, _):
        simulator.power_w = 1e-6
        simulator.units = 3  # dBm, from the front panel
        reading = await settled_read(meter)
        assert reading.value == pytest.approx(1e-6, rel=0.02)
        assert simulator.units == 1
        assert "units were 3, not watts" in caplog.text
        assert meter.statistics().restarts == 0


async def test_zero_padded_settings_are_understood(io_clock, link):
    async with bench(link, quirks=("padded_settings",)) as (simulator, meter, _):
        await meter.ask(SetParameter("filter", "slow"))
        assert (await meter.ask(GetParameter("filter"))).value in ("slow", Filter.SLOW)
        assert simulator.filter == 1
        await meter.ask(SetParameter("attenuator", True))
        assert (await meter.ask(GetParameter("attenuator"))).value is True
        reading = await settled_read(meter)
        assert reading.valid and (await meter.ask(GetParameter("present_range"))).value > 0
        assert meter.statistics().restarts == 0


async def test_a_saturated_reading_in_words_is_flagged_not_a_crash(io_clock, link):
    async with bench(link, quirks=("saturation_text",)) as (simulator, meter, _):
        simulator.power_w = 0.5  # far above the bare detector's limit
        reading = await meter.ask(Read())
        assert math.isnan(reading.value) and "saturated" in reading.flags and not reading.valid
        simulator.power_w = 1e-6
        assert (await settled_read(meter)).value == pytest.approx(1e-6, rel=0.02)
        assert meter.statistics().restarts == 0
