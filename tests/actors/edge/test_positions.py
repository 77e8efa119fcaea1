"""Reads during a move answer at once over gRPC: position, parameters, the device itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from benchd.v1 import hardware_pb2 as hw
from runtime.config import parse_config
from supervisors.bench import SIMULATED_BENCH

from .harness import Client, open_client

#: Generous for two busy cores; the move below takes about 4 s, and before the query lane every
#: one of these reads waited for its end.
PROMPT = 1.5


async def test_reads_answer_during_a_move(client: Client) -> None:
    hardware, device = client.hardware, hw.DeviceRequest(device="esp300.axis1")

    async def during_move() -> list[tuple[str, float, object]]:
        move = asyncio.ensure_future(
            hardware.MoveAbsolute(
                hw.MoveAbsoluteRequest(device="esp300.axis1", position=20.0, wait=True)
            )
        )
        answers: list[tuple[str, float, object]] = []
        while not move.done() and len(answers) < 12:
            for name, call in (
                ("position", lambda: hardware.GetPosition(device)),
                ("parameter", lambda: hardware.GetParameter(
                    hw.ParameterRequest(device="esp300.axis1", name="velocity"))),
                ("parameters", lambda: hardware.ListParameters(device)),
                ("device", lambda: hardware.GetDevice(device)),
            ):  # fmt: skip
                asked = time.monotonic()
                reply = await call()
                answers.append((name, time.monotonic() - asked, reply))
            await asyncio.sleep(0.3)
        assert not move.done(), "the move ended before the reads: the test proves nothing"
        reached = await move
        assert reached.position == 20.0
        return answers

    answers = await client.call(during_move)
    assert {name for name, _, _ in answers} == {"position", "parameter", "parameters", "device"}
    slow = [(name, round(seconds, 3)) for name, seconds, _ in answers if seconds > PROMPT]
    assert not slow, slow
    positions = [reply.position for name, _, reply in answers if name == "position"]
    assert all(0.0 <= p < 20.0 for p in positions), positions
    assert positions[-1] > positions[0]  # live: it moves between reads
    devices = [reply for name, _, reply in answers if name == "device"]
    assert all(d.driver == "newport_esp300_axis" and d.units == "mm" for d in devices)


async def test_a_synthetic_motor_answers_its_live_position(tmp_path: Path) -> None:
    text = (
        SIMULATED_BENCH
        + """
[[device]]
id = "stage"
driver = "synthetic_motor"
port = "sim"
options = { velocity = 5.0, limits = [0.0, 100.0] }
"""
    )
    async with open_client(tmp_path, config=parse_config(text, "<test>")) as client:
        hardware, device = client.hardware, hw.DeviceRequest(device="stage")

        async def during_move() -> list[float]:
            move = asyncio.ensure_future(
                hardware.MoveAbsolute(hw.MoveAbsoluteRequest(device="stage", position=10.0,
                                                             wait=True))
            )  # fmt: skip
            seen = []
            for _ in range(3):  # 10 mm at 5 mm/s: 2 s
                await asyncio.sleep(0.4)
                asked = time.monotonic()
                seen.append((await hardware.GetPosition(device)).position)
                assert time.monotonic() - asked < PROMPT
            assert not move.done()
            assert (await move).position == 10.0
            return seen

        seen = await client.call(during_move)
        assert 0.0 < seen[0] < seen[1] < seen[2] < 10.0, seen
