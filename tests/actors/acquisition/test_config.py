"""Bench-default suspenders in the bench file: typed, checked, errors with file, key, reason;
the synthetic drivers' options checked the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.acquisition import Condition, Suspender
from runtime.config import ConfigError, parse_config
from supervisors.bench import bench_suspenders, build_tree

from .conftest import synthetic_config

GOOD = """
[[acquisition.suspender]]
signal = "peak"
condition = "below"
threshold = 5
resume = 8.0
settle = 2

[[acquisition.suspender]]
signal = "sine.amplitude"
condition = "equals"
threshold = false
"""


def test_bench_suspenders_are_read_into_suspenders(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, GOOD)
    assert bench_suspenders(config) == (
        Suspender("peak", Condition.BELOW, 5, 8.0, 2.0),
        Suspender("sine.amplitude", Condition.EQUALS, False),
    )


@pytest.mark.parametrize(
    ("extra", "key", "reason"),
    [
        ('[[acquisition.suspender]]\nsignal = "peak"\ncondition = "under"\n',
         "acquisition.suspender[0].condition", "'under' is not one of below, above"),
        ('[[acquisition.suspender]]\nsignal = "peak"\n',
         "acquisition.suspender[0].condition", "missing (required)"),
        ('[[acquisition.suspender]]\nsignal = "laser"\ncondition = "degraded"\n',
         "acquisition.suspender[0].signal", "'laser' names no device of this bench"),
        ('[[acquisition.suspender]]\nsignal = "peak"\ncondition = "below"\nthreshold = "x"\n',
         "acquisition.suspender[0].threshold", "need a number"),
        ('[[acquisition.suspender]]\nsignal = "peak"\ncondition = "below"\nsettle = -1\n',
         "acquisition.suspender[0].settle", "0 … 86400 s"),
        ('[[acquisition.suspender]]\nsignal = "peak"\ncondition = "below"\ncolour = 1\n',
         "acquisition.suspender[0].colour", "unknown key"),
        ("[acquisition]\nsuspenders = 1\n", "acquisition.suspenders", "unknown key"),
        ('[[acquisition.suspender]]\nsignal = "' + "s" * 100_000 + '"\ncondition = "below"\n',
         "acquisition.suspender[0].signal", "characters) is not a signal name"),
        ('[[acquisition.suspender]]\nsignal = "peak"\ncondition = "' + "c" * 100_000 + '"\n',
         "acquisition.suspender[0].condition", "… (100000 characters) is not one of"),
    ],
)  # fmt: skip
def test_a_bad_suspender_names_file_key_and_reason(
    tmp_path: Path, extra: str, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config = synthetic_config(tmp_path, extra)
        bench_suspenders(config)
    error = caught.value
    assert (error.source, error.key) == ("synthetic.toml", key)
    assert reason in error.reason and len(str(error)) < 400


@pytest.mark.parametrize(
    ("options", "key", "reason"),
    [
        ('driver = "synthetic_motor"\noptions = { limits = [2, 1] }',
         "device[0].options.limits", "low < high"),
        ('driver = "synthetic_motor"\noptions = { limits = [0, 1], initial = 5 }',
         "device[0].options.initial", "inside the limits 0 to 1"),
        ('driver = "synthetic_peak"\noptions = { motor = "nowhere" }',
         "device[0].options.motor", "'nowhere' is not a device of this bench"),
        ('driver = "synthetic_peak"\noptions = { motor = "m", shape = "square" }',
         "device[0].options.shape", "one of ['gaussian', 'lorentzian']"),
        ('driver = "synthetic_peak"\noptions = {}', "device[0].options.motor", "missing"),
    ],
)  # fmt: skip
def test_the_synthetic_drivers_check_their_options(options: str, key: str, reason: str) -> None:
    text = f'[[device]]\nid = "a"\nport = "sim"\n{options}\n'
    text += '[[device]]\nid = "m"\nport = "sim"\ndriver = "synthetic_motor"\n'
    config = parse_config(text, "lab.toml")
    with pytest.raises(ConfigError) as caught:
        build_tree(config, {})
    assert caught.value.key == key and reason in caught.value.reason
