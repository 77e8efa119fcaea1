"""The bench built from config: driver options checked, simulators wired, devices isolated."""

from __future__ import annotations

import pytest
import trio

from actors.capabilities import MoveAbsolute, Read
from runtime.config import ConfigError, parse_config
from supervisors.bench import build_tree, open_bench, simulated_bench_config


def bench_config(options: str, driver: str = "newport_esp300"):
    return parse_config(
        f"[[device]]\nid = 'dev'\ndriver = '{driver}'\nport = 'sim'\noptions = {{ {options} }}\n",
        "lab.toml",
    )


@pytest.mark.parametrize(
    ("options", "driver", "message"),
    [
        (
            "axes = [1, 4]",
            "newport_esp300",
            "lab.toml: device[0].options.axes: expected a list of distinct axis numbers",
        ),
        (
            "rtscts = 'yes'",
            "newport_esp300",
            "lab.toml: device[0].options.rtscts: expected bool, got str 'yes'",
        ),
        (
            "baud = 9600",
            "newport_esp300",
            "lab.toml: device[0].options.baud: unknown option for driver 'newport_esp300'; allowed: baudrate, rtscts",
        ),
        (
            "wavelength_limits = [900, 400]",
            "newport_1830c",
            "lab.toml: device[0].options.wavelength_limits: expected [low, high]",
        ),
        (
            "",
            "thorlabs_ell99",
            "lab.toml: device[0].driver: unknown driver 'thorlabs_ell99'; known: newport_1830c, newport_esp300, spectra_physics_maitai, thorlabs_ell14",
        ),
    ],
)
def test_driver_options_are_checked_before_anything_starts(options, driver, message):
    with pytest.raises(ConfigError) as caught:
        build_tree(bench_config(options, driver), {})
    assert str(caught.value).startswith(message)


def test_each_device_gets_its_own_supervisor():
    tree = build_tree(simulated_bench_config(), {})
    assert [c.name for c in tree.children] == [
        "ell14.supervisor",
        "esp300.supervisor",
        "maitai.supervisor",
        "power_meter.supervisor",
    ]
    esp300 = tree.children[1]
    assert [c.name for c in esp300.children] == [
        "esp300",
        "esp300.axis1",
        "esp300.axis2",
        "esp300.axis3",
    ]


async def test_a_device_that_loses_its_port_does_not_disturb_the_others(io_clock):
    async with open_bench() as bench:
        assert set(bench.device_states().values()) == {"ready"}
        bench.simulators["power_meter"].disconnect()
        meter = bench.system.ref("power_meter")
        with pytest.raises(Exception, match="power_meter"):
            await meter.ask(Read())
        await trio.sleep(1.0)
        assert bench.device_states()["power_meter"] == "degraded"
        axis = bench.system.ref("esp300.axis1")
        assert await axis.ask(MoveAbsolute(2.0), timeout=30) == pytest.approx(2.0)
        bench.simulators["power_meter"].reconnect()
        await trio.sleep(20.0)
        assert bench.device_states()["power_meter"] == "ready"
        assert (await meter.ask(Read())).units == "W"
