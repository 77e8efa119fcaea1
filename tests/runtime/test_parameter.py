"""Parameter: validate before writing, read back, publish the actual value; the tree."""

from __future__ import annotations

import enum

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from runtime import (
    ActorError,
    ActorSystem,
    EmergencyStopLatched,
    GetParameter,
    ListParameters,
    NotFoundError,
    Parameter,
    ParameterTree,
    ReadbackMismatch,
    ReadOnlyError,
    SetParameter,
    SnapshotParameters,
    Source,
    ValidationError,
    WatchParameter,
    run_actor,
)
from runtime._actor import Actor


class FakeHardware:
    """A device register with a write log; ``offset`` makes it read back wrong."""

    def __init__(self, value: float = 0.0, offset: float = 0.0) -> None:
        self.value = value
        self.offset = offset
        self.writes: list[object] = []

    async def write(self, value: float) -> None:
        await trio.lowlevel.checkpoint()
        self.writes.append(value)
        self.value = value + self.offset

    async def read(self) -> float:
        await trio.lowlevel.checkpoint()
        return self.value


def wavelength(hw: FakeHardware, **kwargs: object) -> Parameter[float]:
    return Parameter(
        "wavelength",
        float,
        800.0,
        units="nm",
        limits=(690.0, 1040.0),
        tolerance=0.5,
        write=hw.write,
        read=hw.read,
        **kwargs,  # type: ignore[arg-type]
    )


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_validation_accepts_exactly_the_allowed_range(value: float) -> None:
    hw = FakeHardware()
    param = wavelength(hw)
    if 690.0 <= value <= 1040.0:
        assert param.validate(value) == value
    else:
        with pytest.raises(ValidationError):
            param.validate(value)


@given(st.one_of(st.floats(), st.integers(), st.text(), st.booleans(), st.none()))
def test_refused_values_never_reach_the_hardware(value: object) -> None:
    hw = FakeHardware()
    param = wavelength(hw)

    async def attempt() -> None:
        try:
            await param.set(value)
        except ValidationError:
            assert hw.writes == []
        else:
            assert hw.writes == [float(value)]  # type: ignore[arg-type]

    trio.run(attempt)


async def test_errors_say_what_is_allowed():
    param = wavelength(FakeHardware())
    with pytest.raises(
        ValidationError, match=r"wavelength: 1200.0 nm is outside the allowed range 690 to 1040 nm"
    ):
        await param.set(1200.0)
    with pytest.raises(ValidationError, match="wavelength: expected float, got str '800'"):
        await param.set("800")
    with pytest.raises(ValidationError, match="expected float, got bool"):
        await param.set(True)
    with pytest.raises(ValidationError, match="not a finite number"):
        await param.set(float("nan"))


async def test_a_check_refuses_before_the_desired_value_changes_or_anything_is_written():
    writes: list[str] = []

    def fits(text: str) -> None:
        if len(text) > 3:
            raise ValidationError(f"name: {text!r} is longer than 3 characters")

    async def write(value: str) -> None:
        writes.append(value)

    param = Parameter("name", str, "abcdef", check=fits, write=write)  # initial: not checked
    await param.set("abc")
    with pytest.raises(ValidationError, match="longer than 3 characters"):
        await param.set("abcd")
    assert writes == ["abc"] and param.desired == "abc" and param.value == "abc"


async def test_write_then_read_back_publishes_the_actual_value():
    hw = FakeHardware()
    param = wavelength(hw)
    snapshot = await param.set(780, source=Source.SCRIPT)
    assert hw.writes == [780.0]
    assert (snapshot.value, snapshot.desired, snapshot.source) == (780.0, 780.0, Source.SCRIPT)
    assert snapshot.version == 1 and snapshot.units == "nm"


async def test_read_back_mismatch_is_an_error_and_the_actual_value_is_published():
    hw = FakeHardware(offset=2.0)  # the laser lands 2 nm off
    param = wavelength(hw)
    with pytest.raises(ReadbackMismatch, match=r"wrote 800\.0 but the hardware reads back 802\.0"):
        await param.set(800.0)
    assert param.value == 802.0 and param.desired == 800.0
    assert param.sample().source is Source.HARDWARE
    hw.offset = 0.3  # within tolerance
    await param.set(801.0)
    assert param.value == 801.3


async def test_read_only_choices_and_enums():
    class Port(enum.Enum):
        SENSITIVITY = "sensitivity"
        SPEED = "speed"

    temperature = Parameter("temperature", float, -20.0, units="C", read_only=True)
    with pytest.raises(ReadOnlyError, match="temperature is read-only"):
        await temperature.set(-25.0)
    port = Parameter("readout.port", Port, Port.SPEED)
    assert (await port.set("sensitivity")).value == "sensitivity"
    assert port.value is Port.SENSITIVITY
    with pytest.raises(ValidationError, match="'fast' is not one of 'sensitivity', 'speed'"):
        await port.set("fast")
    mode = Parameter("mode", str, "hdr16", choices=("hdr16", "cms12"))
    with pytest.raises(ValidationError, match="not one of 'hdr16', 'cms12'"):
        await mode.set("hdr18")
    assert port.info().choices == ("sensitivity", "speed")


async def test_refresh_and_report_are_hardware_sourced():
    hw = FakeHardware(value=850.0)
    param = wavelength(hw)
    assert (await param.refresh()).value == 850.0
    assert param.report(851.0).source is Source.HARDWARE
    assert param.desired == 800.0  # what the user wants is untouched by what the device says


def test_tree_lists_snapshots_and_names_missing_parameters():
    tree = ParameterTree()
    tree.add(wavelength(FakeHardware()))
    tree.add(Parameter("shutter", bool, False, hazardous=True))
    assert list(tree) == ["wavelength", "shutter"]
    infos = tree.infos()
    assert infos[0].limits == (690.0, 1040.0) and infos[0].units == "nm"
    assert infos[1].dtype == "bool" and infos[1].hazardous
    snap = tree.snapshot()
    assert snap["wavelength"]["value"] == 800.0 and snap["shutter"]["source"] == "default"
    with pytest.raises(
        NotFoundError, match="no parameter 'power'; parameters: wavelength, shutter"
    ):
        tree["power"]
    with pytest.raises(ValueError, match="duplicate"):
        tree.add(Parameter("shutter", bool, True))


class Laser(Actor):
    def __init__(self, hw: FakeHardware) -> None:
        self.parameters.add(wavelength(hw))
        # Opening is hazardous, closing never is (as on the Mai Tai).
        self.parameters.add(Parameter("shutter", bool, False, hazardous=lambda open_: open_))


async def test_every_actor_answers_parameter_requests(autojump_clock):
    system = ActorSystem()
    cell = system.cell("maitai", capacity=8)
    ref = system.ref("maitai")
    hw = FakeHardware()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell, Laser(hw), system)
        names = [info.name for info in await ref.ask(ListParameters())]
        assert names == ["wavelength", "shutter"]
        assert (await ref.ask(SetParameter("wavelength", 920.0))).value == 920.0
        assert (await ref.ask(GetParameter("wavelength"))).value == 920.0
        assert (await ref.ask(SnapshotParameters()))["wavelength"]["desired"] == 920.0
        with pytest.raises(ActorError, match="outside the allowed range") as caught:
            await ref.ask(SetParameter("wavelength", 2000.0))
        assert isinstance(caught.value.cause, ValidationError) and hw.writes == [920.0]
        subscription = await ref.ask(WatchParameter("wavelength"))
        first = await subscription.__anext__()
        assert first.value == 920.0
        await system.emergency_stop("interlock", by="alice")
        with pytest.raises(ActorError) as latched:
            await ref.ask(SetParameter("shutter", True))
        assert isinstance(latched.value.cause, EmergencyStopLatched)
        # Every other setting waits for the reset too (nothing changes behind a stopped
        # bench); the refusal says since when, by whom and why.
        with pytest.raises(ActorError, match=r"since \d\d:\d\d:\d\d by alice \(interlock\)"):
            await ref.ask(SetParameter("wavelength", 930.0))
        assert (await ref.ask(GetParameter("wavelength"))).desired == 920.0
        # A step toward the safe state is always allowed: an operator can close the shutter.
        assert (await ref.ask(SetParameter("shutter", False))).value is False
        cell.request_stop()
    with pytest.raises(StopAsyncIteration):  # the instance is gone: its subscriptions end
        while True:
            await subscription.__anext__()
