"""The synthetic motor and peak detector as the acquisition tests and benchmark rely on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from actors.capabilities import GetPosition, MoveAbsolute, Read, StopMotion, WaitSettled
from actors.instruments.synthetic import PeakShape, peak_value
from runtime import ActorError, ListParameters, SetParameter
from supervisors.bench import open_bench

from .conftest import synthetic_config


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)  # no run, no worker thread


async def test_the_motor_ramps_answers_during_a_move_and_refuses_its_travel(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_bench(synthetic_config(tmp_path)) as bench:
        motor = bench.system.ref("x")
        await motor.ask(SetParameter("velocity", 2.0))
        began = trio.current_time()
        assert await motor.ask(MoveAbsolute(4.0, wait=False)) == 0.0
        await trio.sleep(1.0)
        assert await motor.ask(GetPosition()) == pytest.approx(2.0)  # halfway, at once
        assert await motor.ask(WaitSettled()) == 4.0
        assert trio.current_time() - began == pytest.approx(2.0)
        await motor.ask(MoveAbsolute(0.0, wait=False))
        await trio.sleep(0.5)
        assert await motor.ask(StopMotion()) == pytest.approx(3.0)
        await trio.sleep(5)
        assert await motor.ask(GetPosition()) == pytest.approx(3.0)  # stopped there
        with pytest.raises(ActorError, match=r"x: 11 mm is outside the travel -10 to 10 mm"):
            await motor.ask(MoveAbsolute(11.0))
        infos = {p.name: p for p in await motor.ask(ListParameters())}
        assert infos["position"].limits == (-10.0, 10.0)  # the travel, as drivers expose it


async def test_the_peak_follows_its_motor(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_bench(synthetic_config(tmp_path)) as bench:
        peak, motor = bench.system.ref("peak"), bench.system.ref("x")
        await peak.ask(SetParameter("noise", 0.0))
        for x in (-3.0, 1.25, 2.0):
            await motor.ask(MoveAbsolute(x))
            reading = await peak.ask(Read())
            expected = peak_value(
                PeakShape.GAUSSIAN, x, centre=1.25, width=1.5, amplitude=100, background=5
            )
            assert reading.value == pytest.approx(expected) and reading.units == "V"
        assert reading.value < 105 and (await peak.ask(Read())).value == reading.value
        assert peak_value(PeakShape.LORENTZIAN, 0.5, centre=0, width=1, amplitude=2,
                          background=0) == pytest.approx(1.0)  # fmt: skip
