"""Bench files: strict parsing with errors that name file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import ConfigError, load_config, parse_config

GOOD = """
[bench]
name = "lab"

[[device]]
id = "esp300"
driver = "newport_esp300"
port = "/dev/ttyUSB0"
options = { rtscts = true, axes = [1, 2] }

[[device]]
id = "power_meter"
driver = "newport_1830c"
port = "sim"
"""


def test_a_good_file_becomes_typed_objects(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.name == "lab" and config.source == str(path)
    esp300, meter = config.devices
    assert (esp300.id, esp300.driver, esp300.port, esp300.simulated) == (
        "esp300",
        "newport_esp300",
        "/dev/ttyUSB0",
        False,
    )
    assert esp300.options == {"rtscts": True, "axes": [1, 2]}
    assert meter.simulated and meter.key == "device[1]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[device]]\nid='a'\ndriver='x'\n", "lab.toml: device[0].port: missing (required)"),
        (
            "[[device]]\nid='a'\ndriver='x'\nport=3\n",
            "lab.toml: device[0].port: expected a string, got int 3",
        ),
        (
            "[[device]]\nid='a'\ndriver='x'\nport='p'\nbaudrte=9600\n",
            "lab.toml: device[0].baudrte: unknown key; allowed here: driver, id, options, port",
        ),
        ("[benchh]\n", "lab.toml: benchh: unknown key; allowed here: bench, device"),
        ("[bench]\nname='x'\n", "lab.toml: device: no devices"),
        (
            "[[device]]\nid='Meter 1'\ndriver='x'\nport='p'\n",
            "lab.toml: device[0].id: 'Meter 1' is not a valid id",
        ),
        (
            "[[device]]\nid='a'\ndriver='x'\nport='p'\n[[device]]\nid='a'\ndriver='y'\nport='q'\n",
            "lab.toml: device[1].id: duplicate id 'a' (also device[0])",
        ),
        ("[[device]\n", "lab.toml: not valid TOML"),
    ],
)
def test_errors_name_file_key_and_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "lab.toml")
    assert str(caught.value).startswith(message)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the file"):
        load_config(tmp_path / "nope.toml")
