"""The latch says why, by whom and since when; one e-stop is one log line; sets wait for reset."""

from __future__ import annotations

import logging
import time

import pytest
import trio

from runtime import (
    Actor,
    ActorError,
    ActorSystem,
    EmergencyStopLatched,
    Parameter,
    SetParameter,
    run_actor,
    short_repr,
)


class Stage(Actor):
    def __init__(self) -> None:
        self.parameters.add(Parameter("speed", float, 1.0, limits=(0.0, 10.0)))


async def test_latch_records_who_why_and_since_when(autojump_clock, caplog):
    system = ActorSystem()
    cells = [system.cell(name, capacity=4) for name in ("a", "b", "c")]
    caplog.set_level(logging.DEBUG)
    async with trio.open_nursery() as nursery:
        for cell in cells:
            await nursery.start(run_actor, cell, Stage(), system)
        before = time.time()
        report = await system.emergency_stop("beam dump open", by="alice")
        assert report.all_stopped
        latch = system.latch
        assert latch is not None and latch.by == "alice" and latch.reason == "beam dump open"
        assert before <= latch.since <= time.time()
        stats = system.ref("b").statistics()
        assert stats.latch == cells[1].latch and stats.latched == "beam dump open"

        with pytest.raises(ActorError) as refused:
            await system.ref("a").ask(SetParameter("speed", 2.0))
        assert isinstance(refused.value.cause, EmergencyStopLatched)
        message = str(refused.value.cause)
        assert "by alice (beam dump open)" in message and "reset the emergency stop" in message
        assert time.strftime("%H:%M", time.localtime(latch.since)) in message

        assert await system.reset_emergency_stop("checked") == ()
        assert system.latch is None
        assert (await system.ref("a").ask(SetParameter("speed", 2.0))).value == 2.0
        for cell in cells:
            cell.request_stop()

    estop_lines = [r for r in caplog.records if r.name == "runtime.estop"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(estop_lines) == 1 and warnings == estop_lines, [r.getMessage() for r in warnings]
    assert "by alice (beam dump open): 3/3 actors stopped" in estop_lines[0].getMessage()


def test_short_repr_never_quotes_a_huge_value_whole():
    text = short_repr("x" * 400_000)
    assert len(text) < 100 and "400000 characters" in text
    assert short_repr(12.5) == "12.5"
