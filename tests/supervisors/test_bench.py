"""The bench built from config: driver options checked, simulators wired, devices isolated."""

from __future__ import annotations

import pytest
import trio

from actors.capabilities import (
    GetAcquisitionStatus,
    MoveAbsolute,
    Read,
    StartAcquisition,
    WaitAcquisition,
)
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
            "binnings = [1, 0]",
            "photometrics_prime_bsi",
            "lab.toml: device[0].options.binnings: expected distinct binning factors >= 1",
        ),
        (
            "buffer = 16",
            "photometrics_prime_bsi",
            "lab.toml: device[0].options.buffer: unknown option for driver 'photometrics_prime_bsi'; allowed: temperature_poll, frame_timeout, stall_restarts, binnings, quirks",
        ),
        (
            "",
            "thorlabs_ell99",
            "lab.toml: device[0].driver: unknown driver 'thorlabs_ell99'; known: newport_1830c, newport_esp300, photometrics_prime_bsi, spectra_physics_maitai, synthetic_motor, synthetic_peak, synthetic_signal, thorlabs_ell14",
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
        "camera.supervisor",
        "peak.supervisor",
        "pipeline.supervisor",
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


def test_a_real_camera_is_named_by_its_pvcam_name_and_takes_no_simulator_options():
    config = parse_config(
        "[[device]]\nid = 'camera'\ndriver = 'photometrics_prime_bsi'\nport = 'pvcamUSB_0'\n"
        "options = { binnings = [1, 2] }\n",
        "lab.toml",
    )
    with pytest.raises(ConfigError, match=r"options\.binnings: unknown option"):
        build_tree(config, {})


async def test_the_simulated_bench_has_a_ready_camera_that_takes_frames(io_clock):
    async with open_bench() as bench:
        assert bench.device_states()["camera"] == "ready"
        assert "camera" not in bench.simulators  # simulated in-process, not on a pty
        camera = bench.system.ref("camera")
        status = await camera.ask(StartAcquisition(frames=5))
        assert status.running
        status = await camera.ask(WaitAcquisition(timeout=10.0))
        assert (status.frames_acquired, status.frames_missing, status.error) == (5, 0, "")
        await camera.ask(StartAcquisition())
        report = await bench.system.emergency_stop("test")
        assert report.all_stopped
        assert not (await camera.ask(GetAcquisitionStatus())).running
