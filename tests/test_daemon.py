"""``python -m runtime`` as a user runs it: starts, logs its actors, stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


LISTEN = ("--listen", "127.0.0.1:0")  # any free port: 50051 may be taken on a shared machine


def start_daemon(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runtime", *LISTEN, *args],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float = 30.0) -> list[str]:
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never logged; got:\n{''.join(seen)}")


def test_runs_for_a_duration_then_exits_cleanly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "--duration", "0.5", *LISTEN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    log = done.stderr
    assert "bench 'simulated' from <built-in simulated bench>" in log
    assert "esp300.axis3: ready ESP300 Version 3.04 07/27/01 axis 3" in log
    assert "power_meter: ready Newport 1830-C" in log
    assert "camera: ready Photometrics Prime BSI GS2020" in log
    assert "benchd ready: 17 of 17 actors up" in log
    assert "gRPC edge listening on 127.0.0.1:" in log and "benchd serving gRPC on 127.0.0.1:" in log
    assert log.rstrip().endswith("benchd stopped cleanly")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_every_actor_and_exits_zero(signum: signal.Signals) -> None:
    with start_daemon() as process:
        try:
            wait_for_line(process, "benchd ready: 17 of 17 actors up")
            process.send_signal(signum)
            rest = wait_for_line(process, "benchd stopped cleanly")
            assert process.wait(timeout=30) == 0
        finally:
            process.kill()
    assert any(f"received {signum.name}: stopping" in line for line in rest)


def test_a_bad_config_names_file_key_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "lab.toml"
    config.write_text('[[device]]\nid = "meter"\ndriver = "newport_1830c"\nport = 3\n')
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{config}: device[0].port: expected a string, got int 3" in done.stderr


def test_bad_arguments_say_what_is_allowed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "--duration", "-1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--duration must be a positive number of seconds, got -1.0" in done.stderr


def test_listen_errors_exit_2_and_say_why(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for listen, message in [
            (
                f"127.0.0.1:{port}",
                f"edge.listen: cannot listen on 127.0.0.1:{port}: Address already in use",
            ),
            (
                "0.0.0.0:50052",
                "--listen: edge.tokens_file: listening on 0.0.0.0:50052 (not a loopback",
            ),
            ("nowhere", "--listen: 'nowhere' is not host:port"),
        ]:
            done = subprocess.run(
                [sys.executable, "-m", "runtime", "--listen", listen, "--duration", "5"],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 2 and message in done.stderr, done.stderr
