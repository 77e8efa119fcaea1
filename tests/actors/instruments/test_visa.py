"""The VISA link: the 1830-C driver unchanged, over a VISA TCPIP socket resource (pyvisa-py)
served by the same simulator, as a LAN-GPIB gateway would reach the meter."""

from __future__ import annotations

import pytest
import trio

from actors.capabilities import Read
from actors.instruments.newport1830c import Newport1830C
from actors.instruments.transport import ConnectionLost, ReplyTimeout
from actors.instruments.visa_transport import VisaSettings, VisaTransport
from runtime import ActorError, SetParameter
from runtime.config import parse_config
from simulators.newport1830c import Newport1830CSimulator
from supervisors import ActorSpec, open_actor_system
from supervisors.bench import build_tree


def visa(port: int, **kw: object) -> VisaSettings:
    return VisaSettings(f"TCPIP::127.0.0.1::{port}::SOCKET", **kw)  # type: ignore[arg-type]


async def test_the_power_meter_driver_runs_unchanged_over_visa():
    simulator = Newport1830CSimulator(power_w=4e-6)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(simulator.run_tcp)
        spec = ActorSpec("meter", lambda: Newport1830C(visa(port)))
        async with open_actor_system([spec]) as system:
            meter = system.ref("meter")
            assert (await meter.ask(SetParameter("wavelength", 1064))).value == 1064
            await trio.sleep(0.3)  # auto-range settles
            reading = await meter.ask(Read())
            assert reading.value == pytest.approx(4e-6, rel=0.02)
            assert b"W1064" in simulator.commands
            with pytest.raises(ActorError, match="outside the allowed range"):
                await meter.ask(SetParameter("wavelength", 5000))
        nursery.cancel_scope.cancel()


async def test_visa_errors_read_like_serial_ones():
    simulator = Newport1830CSimulator()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(simulator.run_tcp)
        async with await VisaTransport.open("meter", visa(port, reply_timeout=0.2)) as link:
            assert await link.query(b"W?") == b"0800"
            with pytest.raises(
                ReplyTimeout, match=r"meter: no complete reply within 0\.2 s .* to b'X\?'"
            ):
                await link.query(b"X?")  # the meter is silent for unknown commands
        nursery.cancel_scope.cancel()
    # pyvisa-py connects lazily: nobody listening shows on first use, still as ConnectionLost
    async with await VisaTransport.open("meter", visa(1)) as nowhere:
        with pytest.raises(ConnectionLost, match=r"meter: write failed .*refused.* to b'W\?'"):
            await nowhere.query(b"W?")


def test_a_visa_port_in_the_bench_file_selects_the_visa_link():
    config = parse_config(
        '[[device]]\nid = "esp300"\ndriver = "newport_esp300"\nport = "visa:GPIB0::1::INSTR"\n',
        "lab.toml",
    )
    controller = build_tree(config, {}).children[0].children[0]
    actor = controller.factory()
    assert isinstance(actor.settings, VisaSettings)
    assert (
        actor.settings.resource == "GPIB0::1::INSTR" and actor.settings.read_terminator == b"\r\n"
    )
