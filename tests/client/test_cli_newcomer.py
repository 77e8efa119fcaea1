"""``benchctl`` as a newcomer uses it (issue 15): options anywhere, values with units, the
bench's words in messages, pause/resume/stop, watch, scripts by name, runs, recording what
the bench produces, and shell completion. Against ``python -m runtime`` (the package's daemon).
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, Daemon


def benchctl(daemon: Daemon, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """benchctl with the daemon's address from the environment, as a user sets it."""
    env = dict(os.environ, BENCHD_ADDRESS=daemon.address)
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return done.stdout


def test_global_options_go_anywhere_on_the_line(process_daemon: Daemon) -> None:
    before = json.loads(ok(benchctl(process_daemon, "--json", "position", "esp300.axis1")))
    after = json.loads(ok(benchctl(process_daemon, "position", "esp300.axis1", "--json")))
    assert before["device"] == after["device"] == "esp300.axis1"
    nested = json.loads(ok(benchctl(process_daemon, "presets", "list", "--json")))
    assert isinstance(nested, list)
    # --address after the command wins over the environment's
    done = benchctl(process_daemon, "info", "--address", "127.0.0.1:9", "--wait", "0")
    assert done.returncode == 8 and "cannot reach the daemon at 127.0.0.1:9" in done.stderr


def test_devices_and_services_are_listed_apart(process_daemon: Daemon) -> None:
    devices = {d["name"]: d for d in json.loads(ok(benchctl(process_daemon, "--json", "devices")))}
    services = {s["name"] for s in json.loads(ok(benchctl(process_daemon, "services", "--json")))}
    assert {"esp300.axis1", "power_meter", "camera"} <= set(devices)
    assert services == {"documents", "recorder", "camera.ring", "scripts", "plans"}
    assert not services & set(devices)
    assert all(d["kind"] == "device" for d in devices.values())
    text = ok(benchctl(process_daemon, "info"))
    assert "services: documents, recorder, camera.ring, scripts, plans" in text
    assert "features: " in text and "scans" in text and "preview" in text


def test_values_with_units_are_converted_to_the_parameter_or_axis_unit(
    process_daemon: Daemon,
) -> None:
    moved = json.loads(ok(benchctl(process_daemon, "--json", "move", "esp300.axis1", "1.25cm")))
    assert moved["position"] == pytest.approx(12.5, abs=1e-3) and moved["units"] == "mm"
    moved = json.loads(ok(benchctl(process_daemon, "--json", "move", "esp300.axis1", "-500um")))
    assert moved["position"] == pytest.approx(-0.5, abs=1e-3)
    moved = json.loads(
        ok(benchctl(process_daemon, "--json", "move", "esp300.axis1", "1mm", "--relative"))
    )
    assert moved["position"] == pytest.approx(0.5, abs=1e-3)
    assert ok(benchctl(process_daemon, "set", "maitai.wavelength", "800 nm")).strip() == (
        "maitai.wavelength = 800 nm"
    )
    assert ok(benchctl(process_daemon, "set", "maitai.wavelength", "0.92um")).strip() == (
        "maitai.wavelength = 920 nm"
    )
    try:
        out = ok(benchctl(process_daemon, "set", "camera.exposure", "0.02s"))
        assert out.strip() == "camera.exposure = 20 ms"
    finally:
        ok(benchctl(process_daemon, "set", "camera.exposure", "10ms"))
    # an int parameter takes whole numbers after the conversion
    assert ok(benchctl(process_daemon, "set", "power_meter.wavelength", "0.8um")).strip() == (
        "power_meter.wavelength = 800 nm"
    )
    # a text parameter takes its text, even if it looks like a number with a unit
    assert ok(benchctl(process_daemon, "set", "camera.binning", "2x2")).strip() == (
        "camera.binning = 2x2"
    )
    ok(benchctl(process_daemon, "set", "camera.binning", "1x1"))


def test_a_value_of_the_wrong_kind_is_refused_in_words(process_daemon: Daemon) -> None:
    done = benchctl(process_daemon, "set", "maitai.wavelength", "10 ms")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        "benchctl: maitai.wavelength: '10 ms' is a time, the parameter is in nm"
    )
    done = benchctl(process_daemon, "move", "esp300.axis1", "90deg")
    assert done.returncode == 2
    assert done.stderr.strip() == "benchctl: esp300.axis1: '90deg' is an angle, the axis is in mm"
    done = benchctl(process_daemon, "--json", "move", "ell14.2", "5mm")
    assert done.returncode == 2
    assert json.loads(done.stderr)["message"] == "ell14.2: '5mm' is a length, the axis is in deg"
    done = benchctl(process_daemon, "scan", "line", "esp300.axis1", "0", "5s", "3")
    assert done.returncode == 2 and "'5s' is a time, the axis is in mm" in done.stderr
    done = benchctl(process_daemon, "scan", "count", "3", "--dwell", "5mm")
    assert done.returncode == 2 and "'5mm' is a length, the option is in s" in done.stderr


def test_messages_speak_the_bench_and_json_keeps_the_status(process_daemon: Daemon) -> None:
    done = benchctl(process_daemon, "move", "esp300.axis1", "6cm")
    assert done.returncode == 3
    assert done.stderr.startswith("benchctl: esp300.axis1: 60 mm is outside the travel")
    assert "INVALID_ARGUMENT" not in done.stderr
    done = benchctl(process_daemon, "move", "esp300.axis1", "6cm", "--json")
    error = json.loads(done.stderr)
    assert error["status"] == "INVALID_ARGUMENT" and error["error"] == "InvalidArgument"
    assert error["message"].startswith("esp300.axis1: 60 mm is outside the travel")


def test_scan_with_units_pause_resume_and_stop_what_runs(process_daemon: Daemon) -> None:
    out = ok(benchctl(process_daemon, "scan", "line", "esp300.axis1", "0", "2mm", "5", "--read",
                      "peak", "--dwell", "10ms"))  # fmt: skip
    assert out.startswith("scan p") and "(line) completed: 5 of 5 points in " in out
    assert ".nxs" in out
    done = benchctl(process_daemon, "pause")
    assert done.returncode == 5 and "nothing to pause: no scan or script is running" in done.stderr

    started = json.loads(ok(benchctl(process_daemon, "--json", "scan", "line", "esp300.axis1",
                                     "0", "3mm", "200", "--dwell", "50ms", "--no-wait")))  # fmt: skip
    scan = started["id"]
    paused = json.loads(ok(benchctl(process_daemon, "pause", "--json")))
    assert paused["id"] == scan and paused["pause_requested"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = json.loads(ok(benchctl(process_daemon, "--json", "scan", "status", scan)))
        if state["state"] == "paused":
            break
        time.sleep(0.1)
    assert state["state"] == "paused"
    assert "running" in ok(benchctl(process_daemon, "resume")) or True  # resumed (or queued)
    stopped = json.loads(ok(benchctl(process_daemon, "stop", scan, "--json")))
    assert stopped["id"] == scan
    final = json.loads(ok(benchctl(process_daemon, "--json", "scan", "status", scan)))
    deadline = time.monotonic() + 30
    while final["state"] not in ("stopped", "completed") and time.monotonic() < deadline:
        time.sleep(0.1)
        final = json.loads(ok(benchctl(process_daemon, "--json", "scan", "status", scan)))
    assert final["state"] == "stopped"
    # stop DEVICE: a stage's move, as before
    assert ok(benchctl(process_daemon, "stop", "esp300.axis1")).startswith("esp300.axis1 stopped")


def test_a_stored_script_runs_by_name_with_params(process_daemon: Daemon, tmp_path: Path) -> None:
    script = tmp_path / "greet.star"
    script.write_text('print("hello", params.get("who", "nobody"), params.get("n", 0) + 1)\n')
    ok(benchctl(process_daemon, "script", "upload", "greet", str(script)))
    assert "greet" in ok(benchctl(process_daemon, "script", "stored"))
    out = ok(benchctl(process_daemon, "script", "run", "greet", "--param", "who=alice",
                      "--param", "n=41"))  # fmt: skip
    assert "hello alice 42" in out and "(greet) completed" in out
    done = benchctl(process_daemon, "script", "run", "no-such-script")
    assert done.returncode == 4, done.stderr


def test_record_by_duration_records_frames_and_readings_and_runs_shows_it(
    process_daemon: Daemon,
) -> None:
    ok(benchctl(process_daemon, "set", "camera.roi", "0,0,128,128"))
    exposure = ok(benchctl(process_daemon, "--json", "get", "camera.exposure"))
    # ~25 fps: the simulated camera's 16-frame live buffer then covers ~0.6 s of a busy
    # machine keeping the daemon from fetching (a small ROI at full rate missed frames)
    ok(benchctl(process_daemon, "set", "camera.exposure", "40ms"))
    try:
        status = json.loads(ok(benchctl(process_daemon, "--json", "record", "newcomer",
                                        "--duration", "1.5")))  # fmt: skip
    finally:
        ok(benchctl(process_daemon, "set", "camera.roi", "0,0,2048,2048"))
        ok(benchctl(process_daemon, "set", "camera.exposure", str(json.loads(exposure)["value"])))
    assert status["state"] == "completed"
    assert status["frames_written"] > 0 and status["frames_dropped"] == 0
    assert status["readings_recorded"] > 0
    # the bench is left as it was: the power meter not streaming, the camera idle
    assert ok(benchctl(process_daemon, "get", "power_meter.streaming")).strip().endswith("False")
    runs = json.loads(ok(benchctl(process_daemon, "runs", "--json")))
    run = next(r for r in runs if r["path"] == status["path"])
    assert run["status"] == "completed" and run["frames_written"] == status["frames_written"]
    text = ok(benchctl(process_daemon, "runs", "show", "newcomer"))
    assert f"path      {status['path']}" in text and "outcome   completed" in text
    assert f"frames    {status['frames_written']} written" in text
    shown = json.loads(ok(benchctl(process_daemon, "runs", "show", status["path"], "--json")))
    assert shown["run"]["path"] == status["path"]
    done = benchctl(process_daemon, "runs", "show", "never-recorded")
    assert done.returncode == 4 and "no run named 'never-recorded'" in done.stderr  # not found


def test_watch_prints_values_and_json_lines(process_daemon: Daemon) -> None:
    out = ok(benchctl(process_daemon, "watch", "esp300.axis1", "power_meter", "maitai.wavelength",
                      "--duration", "0.8"))  # fmt: skip
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert set(lines) == {"esp300.axis1", "power_meter", "maitai.wavelength"}
    assert " mm " in lines["esp300.axis1"] and " nm " in lines["maitai.wavelength"]
    out = ok(benchctl(process_daemon, "--json", "watch", "esp300.axis1", "--duration", "0.6",
                      "--interval", "100ms"))  # fmt: skip
    updates = [json.loads(line) for line in out.splitlines()]
    assert len(updates) >= 2 and {u["name"] for u in updates} == {"esp300.axis1"}
    done = benchctl(process_daemon, "watch", "nope")
    assert done.returncode == 4 and "no device named 'nope'" in done.stderr


def test_watch_refreshes_in_place_and_ctrl_c_ends_it_cleanly(process_daemon: Daemon) -> None:
    """On a terminal (a pseudo-terminal here): rich.live redraws the table in place; SIGINT
    (Ctrl-C) ends it with status 0 and no traceback."""
    leader, follower = pty.openpty()
    env = dict(os.environ, BENCHD_ADDRESS=process_daemon.address, COLUMNS="120", TERM="xterm")
    process = subprocess.Popen(
        [sys.executable, "-m", "client", "watch", "esp300.axis1", "--interval", "50ms"],
        cwd=ROOT, stdin=follower, stdout=follower, stderr=follower, env=env,
    )  # fmt: skip
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while seen.count(b"esp300.axis1") < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                seen += os.read(leader, 65536)
        assert seen.count(b"esp300.axis1") >= 3, seen  # redrawn, not printed once
        assert b"\x1b[" in seen  # cursor movement: in place
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        while True:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        assert b"Traceback" not in seen and b"interrupted" not in seen
    finally:
        process.kill()
        os.close(leader)


def test_bash_completes_commands_options_and_device_names(process_daemon: Daemon) -> None:
    script = Path(sys.executable).with_name("benchctl")
    hook = ok(benchctl(process_daemon, "completion", "bash"))
    assert "complete" in hook and "benchctl" in hook
    driver = (
        'source <("$BENCHCTL" completion bash)\n'
        "complete_line() {\n"
        '  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; COMP_TYPE=9\n'
        '  read -ra COMP_WORDS <<< "$COMP_LINE"\n'
        '  [[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")\n'
        "  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        "  COMPREPLY=()\n"
        '  _python_argcomplete benchctl "${COMP_WORDS[COMP_CWORD]}"\n'
        '  echo "$1 => ${COMPREPLY[*]}"\n'
        "}\n"
        'complete_line "benchctl mo"\n'
        'complete_line "benchctl move esp"\n'
        'complete_line "benchctl watch pow"\n'
        'complete_line "benchctl get maitai.wave"\n'
        'complete_line "benchctl devices --js"\n'
    )
    env = dict(
        os.environ,
        BENCHD_ADDRESS=process_daemon.address,
        BENCHCTL=str(script),
        PATH=f"{script.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    done = subprocess.run(
        ["bash", "-c", driver], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    answers = dict(line.split(" => ", 1) for line in done.stdout.splitlines())
    assert set(answers["benchctl mo"].split()) == {"move", "motor-on"}
    assert set(answers["benchctl move esp"].split()) == {
        "esp300.axis1", "esp300.axis2", "esp300.axis3"
    }  # fmt: skip
    assert answers["benchctl watch pow"].strip() == "power_meter"
    assert answers["benchctl get maitai.wave"].strip() == "maitai.wavelength"
    assert answers["benchctl devices --js"].strip() == "--json"


def test_devices_show_why_a_device_is_degraded() -> None:
    """The daemon's reason for a failed device (its port, the OS's words) is in the table."""
    from rich.console import Console

    from client._cli import _devices_table
    from client._types import DeviceInfo, Failure

    meter = DeviceInfo(
        name="power_meter",
        driver="newport_1830c",
        capabilities=(),
        identity="",
        units="",
        state="degraded",
        position_limits=None,
        restarts=3,
        last_failure=Failure(
            "SerialError", "/dev/ttyUSB9: [Errno 2] No such file or directory", 0.0
        ),
        latched="",
    )
    console = Console(width=200, record=True)
    console.print(_devices_table([meter]))
    assert "degraded: /dev/ttyUSB9: [Errno 2] No such file or directory" in console.export_text()
