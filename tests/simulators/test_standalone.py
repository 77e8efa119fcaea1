"""A person can run a simulator alone and poke it with a terminal program."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import serial

ROOT = Path(__file__).resolve().parent.parent.parent


def test_power_meter_simulator_runs_alone_and_answers(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    with subprocess.Popen(
        [sys.executable, "-m", "simulators.newport1830c"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()
            (path,) = re.findall(r" on (\S+); Ctrl-C to stop", banner)
            assert path.startswith(str(tmp_path))
            with serial.Serial(path, 9600, timeout=5) as port:
                port.write(b"W?\n")
                assert port.readline() == b"0800\n"
                port.write(b"D?\n")
                assert re.fullmatch(rb"[+-]\.\d{4}E-?\d+\n", port.readline())
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()


def test_a_simulator_runs_alone_with_a_quirk_mode(tmp_path: Path) -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "simulators.newport1830c", "--list-quirks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listing.returncode == 0 and listing.stdout.startswith("echo: echo on at power-up")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    with subprocess.Popen(
        [sys.executable, "-m", "simulators.newport1830c", "--quirk", "echo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()
            assert "(9600 8N1, LF); quirks: echo on " in banner
            (path,) = re.findall(r" on (\S+); Ctrl-C to stop", banner)
            with serial.Serial(path, 9600, timeout=5) as port:
                port.write(b"W?\n")
                assert port.readline() == b"W?\n"  # the echo first
                assert port.readline() == b"0800\n"
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()
