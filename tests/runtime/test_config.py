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
        ("[benchh]\n", "lab.toml: benchh: unknown key; allowed here: acquisition, bench, device"),
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


DEVICE = "[[device]]\nid='a'\ndriver='x'\nport='p'\n"


def test_the_edge_table(tmp_path: Path) -> None:
    assert parse_config(DEVICE, "lab.toml").edge.listen == "127.0.0.1:50051"
    path = tmp_path / "lab.toml"
    path.write_text(
        DEVICE + "[edge]\nlisten = '0.0.0.0:6000'\ntokens_file = 'tokens.toml'\n"
        "tls_cert = 'c.pem'\ntls_key = 'k.pem'\ndisk_free_min_gb = 2\n"
    )
    edge = load_config(path).edge
    assert (edge.host, edge.port, edge.loopback) == ("0.0.0.0", 6000, False)
    assert edge.tokens_file == tmp_path / "tokens.toml" and edge.tls_key == tmp_path / "k.pem"
    assert edge.disk_free_min_gb == 2.0
    v6 = parse_config(DEVICE + "[edge]\nlisten = '[::1]:7000'\n", "lab.toml").edge
    assert (v6.host, v6.port, v6.loopback, v6.listen) == ("::1", 7000, True, "[::1]:7000")


@pytest.mark.parametrize(
    ("edge", "message"),
    [
        ("listen = 'localhost'", "lab.toml: edge.listen: 'localhost' is not host:port"),
        ("listen = 'h:99999'", "lab.toml: edge.listen: 'h:99999' is not host:port"),
        ("listen = 5", "lab.toml: edge.listen: expected a string host:port, got int 5"),
        ("port = 5", "lab.toml: edge.port: unknown key; allowed here: disk_free_min_gb,"),
        ("tls_cert = 'c.pem'", "lab.toml: edge.tls_key: missing: edge.tls_cert needs it too"),
        ("disk_free_min_gb = -1", "lab.toml: edge.disk_free_min_gb: must be >= 0"),
    ],
)
def test_edge_errors_name_file_key_and_reason(edge: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"{DEVICE}[edge]\n{edge}\n", "lab.toml")
    assert str(caught.value).startswith(message)


def test_the_storage_table(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(GOOD + "\n[storage]\ndirectory = 'runs'\nmin_free_mb = 500\nring_slots = 0\n")
    storage = load_config(path).storage
    assert storage.directory == tmp_path / "runs"  # relative to the file
    assert (storage.min_free_mb, storage.ring_slots, storage.frame_queue) == (500.0, 0, 128)
    assert load_config(path).text == path.read_text()  # the manifest carries it
    assert storage.allowed_directories == ()  # the recorder then allows the directory and below
    path.write_text(GOOD + "\n[storage]\nallowed_directories = ['/data', 'scratch']\n")
    allowed = load_config(path).storage.allowed_directories
    assert allowed == (Path("/data"), tmp_path / "scratch")


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("directory = 3", "lab.toml: storage.directory: expected a path (string), got int 3"),
        ("flush_interval = 0.0", "lab.toml: storage.flush_interval: 0.0 is outside 0.05..60"),
        ("frame_queue = 1.5", "lab.toml: storage.frame_queue: expected an int, got float 1.5"),
        ("ring = 4", "lab.toml: storage.ring: unknown key; allowed here: allowed_directories,"),
        (
            "allowed_directories = '/data'",
            "lab.toml: storage.allowed_directories: a list of 1 to 32 paths (strings) is needed",
        ),
        (
            "allowed_directories = ['/data', 5]",
            "lab.toml: storage.allowed_directories[1]: expected a path (string), got int 5",
        ),
    ],
)
def test_storage_errors_name_file_key_and_reason(storage: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(GOOD + f"\n[storage]\n{storage}\n", "lab.toml")
    assert str(caught.value).startswith(message)


def test_the_scripting_table() -> None:
    assert parse_config(GOOD, "lab.toml").scripting.budget == 10_000
    assert parse_config(GOOD + "\n[scripting]\nbudget = 500\n", "lab.toml").scripting.budget == 500
    for table, message in [
        ("budget = 0", "lab.toml: scripting.budget: 0 is outside 1..1000000000"),
        ("budget = 'x'", "lab.toml: scripting.budget: expected an int, got str 'x'"),
        ("steps = 4", "lab.toml: scripting.steps: unknown key; allowed here: budget"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(GOOD + f"\n[scripting]\n{table}\n", "lab.toml")
        assert str(caught.value).startswith(message)


HUGE = "x" * 100_000
DEVICE = '[[device]]\nid = "pm"\ndriver = "newport_1830c"\nport = "sim"\n'


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        # a huge value or key is quoted as its start and its length, never whole
        (DEVICE + f'[storage]\ndirectory = ["{HUGE}"]\n', "storage.directory", "expected a path"),
        (DEVICE + f"[storage]\n{HUGE} = 1\n", "storage.xxxxxxxx", "unknown key"),
        (DEVICE.replace('"pm"', f'"p{HUGE}"'), "device[0].id", "1 to 64 lower-case letters"),
        (f'[bench]\nname = "{HUGE}"\n' + DEVICE, "bench.name", "1 to 64 letters"),
        # a bench name names the camera's ring file: no path in it
        ('[bench]\nname = "../../etc/x"\n' + DEVICE, "bench.name", "is not allowed"),
        # a NUL cannot be in a path: a config error now, not a crash at first use
        (DEVICE.replace('"sim"', '"/dev/tty\\u0000"'), "device[0].port", "NUL"),
        (DEVICE + '[edge]\npresets_dir = "/var/\\u0000x"\n', "edge.presets_dir", "NUL"),
        (DEVICE + '[storage]\ndirectory = "/data\\u0000"\n', "storage.directory", "NUL"),
    ],
    ids=["value", "key", "device-id", "bench-name", "bench-path", "port", "presets", "runs"],
)
def test_hostile_values_get_a_bounded_error_with_file_key_and_reason(
    text: str, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "/etc/benchd/lab.toml")
    error = caught.value
    assert error.source == "/etc/benchd/lab.toml"
    assert error.key.startswith(key), error.key
    assert reason in error.reason, error.reason
    assert len(str(error)) < 400, str(error)[:400]
