"""Device options of issue 13 in bench files: ELL14 addresses (no default), discovery and
tolerated status codes, the Mai Tai's e-stop window, and simulator quirk modes."""

from __future__ import annotations

import pytest

from runtime import GetParameter, SetParameter
from runtime.config import ConfigError, parse_config
from supervisors.bench import build_tree, open_bench


def config(driver: str, options: str, port: str = "sim"):
    return parse_config(
        f"[[device]]\nid = 'dev'\ndriver = '{driver}'\nport = '{port}'\n"
        f"options = {{ {options} }}\n",
        "lab.toml",
    )


@pytest.mark.parametrize(
    ("driver", "options", "port", "message"),
    [
        (
            "thorlabs_ell14",
            "move_timeout = 10",
            "sim",
            "lab.toml: device[0].options.addresses: required: the modules' one-digit hex"
            ' addresses, e.g. addresses = ["2", "3", "8"] (there is no default address;'
            " discover = true reports the units on the bus)",
        ),
        (
            "thorlabs_ell14",
            "addresses = ['2'], tolerate_status = [0]",
            "sim",
            "lab.toml: device[0].options.tolerate_status: expected a list of status codes 1-13"
            " to accept after a move (1 communication time-out, 2 mechanical time-out",
        ),
        (
            "thorlabs_ell14",
            "addresses = ['2'], discover = 'yes'",
            "sim",
            "lab.toml: device[0].options.discover: expected bool, got str 'yes'",
        ),
        (
            "spectra_physics_maitai",
            "shutter_lag = 2.0, estop_confirm_window = 1.5",
            "sim",
            "lab.toml: device[0].options.estop_confirm_window: 1.5 s leaves no time to read the"
            " shutter after its lag (2 s)",
        ),
        (
            "spectra_physics_maitai",
            "quirks = ['echo']",
            "/dev/ttyUSB0",
            'lab.toml: device[0].options.quirks: quirk modes are a simulator\'s: only for port = "sim"',
        ),
        (
            "newport_1830c",
            "quirks = ['echoes']",
            "sim",
            "lab.toml: device[0].options.quirks: unknown quirk 'echoes' for newport_1830c;"
            " quirks: echo, ignores_e0, padded_settings, partial_echo, saturation_text, slow_replies",
        ),
        (
            "newport_esp300",
            "quirks = 'cr_only'",
            "sim",
            "lab.toml: device[0].options.quirks: expected a list of quirk names; quirks: cr_only,",
        ),
    ],
)
def test_bad_device_options_name_file_key_and_reason(driver, options, port, message):
    with pytest.raises(ConfigError) as caught:
        build_tree(config(driver, options, port), {})
    assert str(caught.value).startswith(message), str(caught.value)


async def test_a_simulated_bench_with_quirks_discovery_and_tolerance(tmp_path):
    text = (
        "[[device]]\nid = 'ell14'\ndriver = 'thorlabs_ell14'\nport = 'sim'\n"
        "options = { addresses = ['2', '3'], discover = true, tolerate_status = [2],"
        " quirks = ['power_up_noise'] }\n"
        "[[device]]\nid = 'maitai'\ndriver = 'spectra_physics_maitai'\nport = 'sim'\n"
        "options = { quirks = ['echo', 'ok_after_set'], estop_confirm_window = 6.0 }\n"
        "[[device]]\nid = 'meter'\ndriver = 'newport_1830c'\nport = 'sim'\n"
        "options = { quirks = ['echo', 'ignores_e0'] }\n"
        "[[device]]\nid = 'esp'\ndriver = 'newport_esp300'\nport = 'sim'\n"
        "options = { axes = [1], quirks = ['mixed_line_ends'] }\n"
        f"[storage]\ndirectory = '{tmp_path}'\nring_directory = '{tmp_path}'\nmin_free_mb = 0\n"
    )
    async with open_bench(parse_config(text, "lab.toml")) as bench:
        assert bench.simulators["maitai"].quirks == {"echo", "ok_after_set"}
        assert bench.simulators["esp"].quirks == {"mixed_line_ends"}
        system = bench.system
        modules = (await system.ref("ell14").ask(GetParameter("modules"))).value
        assert modules == (
            "2: ELL14 serial 11400510; 3: ELL14 serial 11400511; 8: ELL14 serial 11400512"
        )
        assert (await system.ref("ell14").ask(GetParameter("protocol_errors"))).value == 1
        snapshot = await system.ref("maitai").ask(SetParameter("wavelength", 850.0))
        assert snapshot.value == 850.0
        await system.ref("meter").ask(SetParameter("wavelength", 1064))
        assert (await system.ref("esp.axis1").ask(GetParameter("position"))).value == 0.0
        assert all(s.restarts == 0 for s in system.statistics())
