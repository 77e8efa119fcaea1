"""The operations from the client library and from benchctl: home (with progress), stop,
motor on, zero."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from client import Bench, EmergencyStopLatched, HomeProgress, Unimplemented

from .conftest import ROOT, Daemon, serve_bench
from .test_cli import benchctl


async def test_the_sync_client_homes_stops_switches_motors_on_and_zeroes(tmp_path: Path) -> None:
    async with serve_bench(tmp_path) as (bench_, address):
        esp300 = bench_.simulators["esp300"]

        def scenario() -> None:
            with Bench.connect(address) as bench:
                axis = bench["esp300.axis1"]
                assert axis.info().operations == ("home", "stop", "motor_on")
                axis.move_to(2.0)
                steps: list[HomeProgress] = []
                assert axis.home(progress=steps.append) == pytest.approx(0.0, abs=1e-3)
                assert steps[-1].done and steps[-1].units == "mm"
                assert any(0.0 < s.position < 2.0 for s in steps[:-1])  # progress on the way
                assert bench["ell14.8"].home() == pytest.approx(0.0)
                assert axis.stop() == pytest.approx(0.0, abs=1e-3)
                esp300.axes[3].motor_on = False
                state = bench["esp300.axis3"].motor_on()
                assert state.motor_on and esp300.axes[3].motor_on
                meter = bench["power_meter"]
                assert meter.zero().zero and not meter.zero(False).zero
                with pytest.raises(Unimplemented, match="'power_meter' cannot home"):
                    meter.home()
                bench.emergency_stop("test")
                with pytest.raises(EmergencyStopLatched):
                    axis.home()
                with pytest.raises(EmergencyStopLatched):
                    bench["esp300.axis3"].motor_on()
                axis.stop()  # never refused
                bench.reset_emergency_stop("done")

        await trio.to_thread.run_sync(scenario)


def test_benchctl_home_motor_on_zero_stop(process_daemon: Daemon) -> None:
    done = benchctl(process_daemon, "move", "esp300.axis2", "1.0")
    assert done.returncode == 0, done.stderr
    done = benchctl(process_daemon, "home", "esp300.axis2")
    assert done.returncode == 0 and done.stdout.strip() == "esp300.axis2 homed at 0 mm", done.stderr
    homed = json.loads(benchctl(process_daemon, "--json", "home", "ell14.3").stdout)
    assert homed["device"] == "ell14.3" and homed["position"] == 0.0
    done = benchctl(process_daemon, "motor-on", "esp300.axis2")
    assert done.stdout.strip() == "esp300.axis2: motor on", done.stderr
    assert benchctl(process_daemon, "zero", "power_meter").stdout.strip() == "power_meter: zero on"
    done = benchctl(process_daemon, "--json", "zero", "power_meter", "--off")
    assert json.loads(done.stdout) == {"device": "power_meter", "zero": False}
    done = benchctl(process_daemon, "stop", "esp300.axis2")
    assert done.stdout.startswith("esp300.axis2 stopped at"), done.stderr
    done = benchctl(process_daemon, "home", "power_meter")
    assert done.returncode == 11  # unimplemented
    assert "'power_meter' cannot home; devices that can: ell14.2" in done.stderr


def test_benchctl_home_shows_progress_on_a_terminal(process_daemon: Daemon) -> None:
    assert benchctl(process_daemon, "move", "esp300.axis3", "5").returncode == 0
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "client", "--address", process_daemon.address, "home",
             "esp300.axis3"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=slave,
            env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
        )  # fmt: skip
        os.close(slave)
        slave = -1
        screen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's other side closed: benchctl ended
                break
            if not chunk:
                break
            screen += chunk
        stdout, _ = process.communicate(timeout=60)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert process.returncode == 0 and stdout.decode().strip() == "esp300.axis3 homed at 0 mm"
    assert b"esp300.axis3 homing" in screen  # the spinner line, with the position as it goes
    assert b" mm" in screen
