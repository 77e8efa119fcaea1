"""``benchctl`` as a user runs it, against ``python -m runtime`` (one daemon for the module)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Daemon


def benchctl(
    daemon: Daemon, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", "--address", daemon.address, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("benchctl")
    assert script.exists(), "pip install -e . makes the benchctl console script"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "Exit codes" in done.stdout


def test_devices_get_set_move_read_info_as_json(process_daemon: Daemon) -> None:
    done = benchctl(process_daemon, "--json", "devices")
    assert done.returncode == 0, done.stderr
    devices = {d["name"]: d for d in json.loads(done.stdout)}
    assert devices["esp300.axis1"]["units"] == "mm" and devices["maitai"]["state"] == "ready"

    done = benchctl(process_daemon, "--json", "set", "maitai.wavelength", "850")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["value"] == 850.0
    done = benchctl(process_daemon, "get", "maitai.wavelength")
    assert done.stdout.strip() == "maitai.wavelength = 850 nm"

    done = benchctl(process_daemon, "move", "esp300.axis1", "1.5")
    assert done.returncode == 0 and done.stdout.strip() == "esp300.axis1 at 1.5 mm", done.stderr
    done = benchctl(process_daemon, "--json", "move", "esp300.axis1", "-0.5", "--relative")
    assert json.loads(done.stdout)["position"] == pytest.approx(1.0, abs=1e-3)

    assert benchctl(process_daemon, "read", "power_meter").stdout.startswith("power_meter: ")
    info = json.loads(benchctl(process_daemon, "--json", "info").stdout)
    assert info["bench"] == "simulated" and info["role"] == "operator"
    health = json.loads(benchctl(process_daemon, "--json", "health").stdout)
    assert all(a["state"] == "ready" for a in health["actors"])


def test_estop_refuses_moves_until_reset(process_daemon: Daemon) -> None:
    done = benchctl(process_daemon, "estop", "cli test")
    assert done.returncode == 0 and "EMERGENCY STOP latched" in done.stdout
    try:
        done = benchctl(process_daemon, "move", "esp300.axis1", "2")
        assert done.returncode == 5
        assert done.stderr.startswith("benchctl: esp300.axis1: refused: e-stop")  # no class name
        assert "(cli test)" in done.stderr and "reset the emergency stop first" in done.stderr
    finally:
        done = benchctl(process_daemon, "reset")
    assert done.returncode == 0 and done.stdout.strip() == "emergency stop reset"
    assert benchctl(process_daemon, "move", "esp300.axis1", "0").returncode == 0


def test_errors_print_the_daemon_message_and_exit_with_their_code(
    process_daemon: Daemon, tmp_path: Path
) -> None:
    done = benchctl(process_daemon, "set", "maitai.wavelength", "5000")
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.strip() == (
        "benchctl: wavelength: 5000 nm is outside the allowed range 690 to 1040 nm"
    )
    done = benchctl(process_daemon, "--json", "get", "stage.position")
    assert done.returncode == 4
    error = json.loads(done.stderr)
    assert error["error"] == "NotFound" and error["status"] == "NOT_FOUND"
    assert error["message"].startswith("no device named 'stage'; devices: ell14")
    done = benchctl(process_daemon, "get", "wavelength")
    assert done.returncode == 2 and "DEVICE.PARAMETER" in done.stderr
    done = benchctl(process_daemon, "move", "power_meter", "1")
    assert done.returncode == 11 and "it is not Movable" in done.stderr

    with socket.socket() as probe:  # nobody listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "client", "--address", f"127.0.0.1:{port}", "--wait", "0.2",
         "devices"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 8 and "cannot reach the daemon at 127.0.0.1:" in done.stderr
    assert "connection refused" in done.stderr and "Traceback" not in done.stderr


def test_presets_and_environment_defaults(process_daemon: Daemon) -> None:
    env = {"BENCHD_ADDRESS": process_daemon.address, "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "client", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip

    done = run("presets", "save", "cli", "--device", "maitai", "--description", "from the CLI")
    assert done.returncode == 0 and done.stdout.startswith("saved 'cli': "), done.stderr
    assert run("presets", "save", "cli").returncode == 6
    names = [p["name"] for p in json.loads(run("--json", "presets").stdout)]
    assert "cli" in names
    assert run("presets", "load", "cli").returncode == 0
    assert run("presets", "delete", "cli").returncode == 0
    assert run("presets", "show", "cli").returncode == 4


def test_record_a_run(process_daemon: Daemon) -> None:
    assert benchctl(process_daemon, "set", "camera.roi", "0,0,256,128").returncode == 0
    done = benchctl(
        process_daemon, "--json", "record", "cli-run", "--frames", "10", "--metadata", "who=cli"
    )
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["state"] == "completed" and status["frames_written"] == 10
    assert status["frames_dropped"] == 0 and status["frames_missing"] == 0
    done = benchctl(process_daemon, "runs")
    assert done.returncode == 0 and "cli-run" in done.stdout
    done = benchctl(process_daemon, "record", "bad/name")
    assert done.returncode == 3 and "1 to 64 characters" in done.stderr
