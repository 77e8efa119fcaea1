"""``benchctl`` on a newcomer's first day: what tripped one, each fixed and kept fixed.

A mistyped command or name gets a "did you mean"; a value the parameter cannot take is refused
in words; ``| head`` ends it quietly; Ctrl-C during a move, a scan or a recording stops it and
says where it stopped, piped or not; a piped watch says it is watching and prints its table on
Ctrl-C; a daemon that goes away mid-watch is said as such, with exit 8.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from client import Bench, ConnectionLost, RetryPolicy
from client._async import _Backoff

from .conftest import ROOT, Daemon, start_daemon
from .test_cli_newcomer import benchctl


def _start(daemon: Daemon | str, *args: str) -> subprocess.Popen[str]:
    """benchctl in the background, its output piped (a script's or a log's view)."""
    address = daemon if isinstance(daemon, str) else daemon.address
    return subprocess.Popen(
        [sys.executable, "-m", "client", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, BENCHD_ADDRESS=address),
    )


def _until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_closed_pipe_ends_benchctl_quietly(process_daemon: Daemon) -> None:
    """``benchctl devices | head -1``: the reader is gone before benchctl writes; it ends with
    141 (as a tool killed by SIGPIPE), no traceback, no JSON "UsageError: Broken pipe"."""
    for args in (["devices"], ["--json", "devices"], ["--json", "watch", "power_meter"],
                 ["watch", "power_meter", "--duration", "0.5"]):  # fmt: skip
        process = _start(process_daemon, *args)
        assert process.stdout is not None
        process.stdout.close()  # the reader went away (head has printed its lines)
        assert process.stderr is not None
        with process.stderr:
            errors = process.stderr.read()
        assert process.wait(timeout=30) == 141, (args, errors)
        assert "Broken pipe" not in errors and "Traceback" not in errors, (args, errors)


def test_typos_get_a_did_you_mean(process_daemon: Daemon) -> None:
    done = benchctl(process_daemon, "devics")
    assert done.returncode == 2 and "did you mean 'devices'?" in done.stderr
    done = benchctl(process_daemon, "scan", "lin", "esp300.axis1", "0", "1", "3")
    assert done.returncode == 2 and "did you mean 'line'?" in done.stderr
    done = benchctl(process_daemon, "move", "esp300.axs1", "1")
    assert done.returncode == 4 and "did you mean 'esp300.axis1'?" in done.stderr
    done = benchctl(process_daemon, "set", "maitai.wavelenght", "900")
    assert done.returncode == 4 and "did you mean 'wavelength'?" in done.stderr
    done = benchctl(process_daemon, "--json", "read", "powr_meter")
    error = json.loads(done.stderr)  # --json keeps the daemon's message as it is
    assert done.returncode == 4 and error["status"] == "NOT_FOUND"
    assert "did you mean" not in error["message"]
    done = benchctl(process_daemon, "runs", "show", "no-such-run")
    assert done.returncode == 4 and "no run named 'no-such-run'" in done.stderr  # not found


def test_a_value_the_parameter_cannot_take_is_refused_in_words(process_daemon: Daemon) -> None:
    done = benchctl(process_daemon, "set", "maitai.wavelength", "abc")
    assert done.returncode == 2, done.stderr
    assert "maitai.wavelength: 'abc' is not a number; give a number in nm" in done.stderr
    assert "expected float" not in done.stderr
    done = benchctl(process_daemon, "set", "maitai.shutter", "maybe")
    assert done.returncode == 2 and "maitai.shutter: 'maybe' is not true or false" in done.stderr
    assert ok_line(benchctl(process_daemon, "set", "camera.binning", "1x1")) == (
        "camera.binning = 1x1"
    )


def ok_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return done.stdout.strip()


def test_ctrl_c_stops_a_piped_move_and_says_where(process_daemon: Daemon) -> None:
    """Before: piped (no progress bar), Ctrl-C only cancelled the wait and the stage went on
    to its target. Now it stops, and the message says where."""
    with Bench.connect(process_daemon.address) as bench:
        axis = bench["esp300.axis1"]
        start = axis.move_to(0.0)
        process = _start(process_daemon, "move", "esp300.axis1", "45")
        _until(lambda: axis.position > start + 0.5, "the stage to move")
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)
        assert process.returncode == 130, errors
        assert "benchctl: interrupted: esp300.axis1 stopped at " in errors, errors
        rest = axis.wait_settled()
        assert rest < 40 and axis.position == rest  # stopped, not on its way to 45
        assert "Traceback" not in errors
        axis.move_to(0.0)


def test_ctrl_c_during_a_scan_says_where_it_stopped(process_daemon: Daemon) -> None:
    with Bench.connect(process_daemon.address) as bench:
        before = {s.id for s in bench.scans.list()}
        process = _start(process_daemon, "scan", "line", "esp300.axis1", "0", "3mm", "40",
                         "--read", "peak", "--name", "ctrl-c")  # fmt: skip

        def started() -> bool:
            return any(s.id not in before and s.points_done >= 1 for s in bench.scans.list())

        _until(started, "the scan's first point")
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 130, errors
        scan = next(s for s in bench.scans.list() if s.id not in before)
        assert scan.state == "stopped" and scan.points_done < 40
        assert f"interrupted: scan {scan.id} (line) stopped: {scan.points_done} of 40" in errors
        assert scan.run_path in errors and "Traceback" not in errors
        bench["esp300.axis1"].move_to(0.0)


def test_ctrl_c_during_a_recording_says_what_the_run_kept(process_daemon: Daemon) -> None:
    with Bench.connect(process_daemon.address) as bench:
        process = _start(process_daemon, "record", "ctrl-c-run", "--duration", "60",
                         "--readings-only")  # fmt: skip

        def recording() -> bool:
            status = bench.run_status()
            return status.name == "ctrl-c-run" and status.state == "recording"

        _until(recording, "the run to record")
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 130, errors
        status = bench.run_status()
        assert status.finished and status.outcome == "stopped"
        assert "interrupted: run 'ctrl-c-run' stopped: " in errors, errors
        assert status.path in errors and "Traceback" not in errors


def test_a_piped_watch_says_it_watches_and_prints_its_table_on_ctrl_c(
    process_daemon: Daemon,
) -> None:
    """``benchctl watch power_meter > log.txt``: before, nothing was said and Ctrl-C left the
    file empty."""
    process = _start(process_daemon, "watch", "power_meter", "esp300.axis1")
    assert process.stderr is not None
    note = process.stderr.readline()
    assert "watching 2 value(s); the table is printed on Ctrl-C" in note
    process.send_signal(signal.SIGINT)
    out, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    rows = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    assert rows == {"power_meter", "esp300.axis1"} and "Traceback" not in errors


def test_a_daemon_gone_mid_watch_is_said_in_words_with_exit_8(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "daemon")
    try:
        process = _start(daemon, "watch", "power_meter", "--wait", "0.3")
        assert process.stderr is not None
        assert "watching 1 value(s)" in process.stderr.readline()
    finally:
        daemon.stop()
    out, errors = process.communicate(timeout=30)
    assert process.returncode == 8, (out, errors)
    assert f"benchctl: lost the daemon at {daemon.address} during watch" in errors
    assert "lost the daemon" in out  # the row says it too, in words
    for python in ("Errno", "ConnectionRefusedError", "StreamValues", "Traceback"):
        assert python not in out + errors


def test_usage_errors_are_json_with_json(process_daemon: Daemon) -> None:
    """A script parsing stderr as JSON must not get argparse's usage text."""
    for args in (["--json", "devics"], ["move", "esp300.axis1", "--json"],
                 ["--json", "move", "esp300.axis1", "1", "--timeout", "soon"]):  # fmt: skip
        done = benchctl(process_daemon, *args)
        error = json.loads(done.stderr)
        assert done.returncode == 2 and error["error"] == "UsageError", args
    assert (
        "did you mean 'devices'?"
        in json.loads(benchctl(process_daemon, "--json", "devics").stderr)["message"]
    )


def test_the_library_takes_values_with_units_as_benchctl_does(process_daemon: Daemon) -> None:
    """Before: ``axis.move_to("12.5 mm")`` raised ``TypeError: must be real number, not str``."""
    with Bench.connect(process_daemon.address) as bench:
        axis = bench["esp300.axis1"]
        assert axis.move_to("1.25 cm") == 12.5
        assert axis.move_by("-500um") == 12.0
        assert bench.parameters.set("maitai.wavelength", "0.92 um").value == 920
        assert bench.parameters.set("camera.binning", "1x1").value == "1x1"  # text: as typed
        with pytest.raises(ValueError, match=r"'12\.5 kg' is a mass, the axis is in mm"):
            axis.move_to("12.5 kg")
        assert axis.position == 12.0  # refused before anything was sent
        bench.parameters["maitai.wavelength"] = 800
        axis.move_to(0)


def test_the_daemons_grpc_words_are_said_as_benchctl_commands(process_daemon: Daemon) -> None:
    """Before: "esp300.axis1: MoveAbsolute is refused: …", "stop it (StopRun, or StopScan
    p13)": names a benchctl user never typed."""
    done = benchctl(process_daemon, "set", "maitai.wavelength", "800", "nm")
    assert done.returncode == 2
    assert "unrecognized arguments: nm (a value with a unit is one word, 12.5nm" in done.stderr
    ok_line(benchctl(process_daemon, "estop"))
    try:
        done = benchctl(process_daemon, "move", "esp300.axis1", "1")
        assert done.returncode == 5 and "esp300.axis1: refused: e-stop latched" in done.stderr
        assert "MoveAbsolute" not in done.stderr
        assert done.stderr.rstrip().endswith("reset the emergency stop first (benchctl reset)")
    finally:
        ok_line(benchctl(process_daemon, "reset"))
    ok_line(benchctl(process_daemon, "record", "busy", "--no-wait", "--readings-only"))
    try:
        done = benchctl(process_daemon, "record", "second", "--duration", "1")
        assert done.returncode == 5, done.stderr
        assert "(benchctl stop-run, or benchctl stop p" in done.stderr, done.stderr
    finally:
        ok_line(benchctl(process_daemon, "stop-run"))
    done = benchctl(process_daemon, "script", "run", "no/such/file.star")
    assert done.returncode == 4 and "no script file 'no/such/file.star'" in done.stderr


def test_an_unreachable_daemon_is_said_with_the_time_really_tried() -> None:
    """Before: "could not reach the daemon … for 2 s" from a retry that had given up after
    1.55 s (the budget, not the time spent; benchctl said "tried for 5 s" after 3.2 s)."""

    async def give_up() -> tuple[float, str]:
        backoff = _Backoff(RetryPolicy(budget=2.0), "127.0.0.1:9")
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ConnectionLost) as lost:
            while True:
                await backoff.wait(ConnectionRefusedError(111, "refused"), "GetDaemonInfo")
        return loop.time() - start, str(lost.value)

    took, message = asyncio.run(give_up())
    tried = re.search(r"could not reach the daemon at 127\.0\.0\.1:9 for ([\d.]+) s", message)
    assert tried, message
    assert float(tried.group(1)) == pytest.approx(took, abs=0.1) and took < 2.0


def test_benchctl_alone_shows_what_it_can_do_and_options_get_a_did_you_mean() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "client", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    alone = run()  # before: "error: the following arguments are required: COMMAND"
    assert alone.returncode == 2 and "record a run and wait for it" in alone.stderr
    assert "required: COMMAND" not in alone.stderr
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("benchctl ")
    typo = run("get", "maitai.wavelength", "--jsn")
    assert typo.returncode == 2 and "unrecognized arguments: --jsn; did you mean --json?" in (
        typo.stderr
    )


def test_runs_show_names_the_scan_of_a_scan_and_none_for_a_record(process_daemon: Daemon) -> None:
    """Before: a plain ``record`` showed "scan 1 points" (the record's own count plan)."""
    ok_line(benchctl(process_daemon, "record", "shown-rec", "--frames", "2"))
    text = ok_line(benchctl(process_daemon, "runs", "show", "shown-rec"))
    assert "  scan " not in text and "outcome   completed" in text
    scan = json.loads(ok_line(benchctl(process_daemon, "--json", "scan", "line", "esp300.axis1",
                                       "0", "0.2", "3", "--read", "peak", "--name", "shown-scan")))  # fmt: skip
    text = ok_line(benchctl(process_daemon, "runs", "show", "shown-scan"))
    assert f"  scan      {scan['id']} (line, client local): 3 of 3 points" in text, text
    ok_line(benchctl(process_daemon, "move", "esp300.axis1", "0"))


def test_option_mistakes_are_said_in_benchctl_words(process_daemon: Daemon) -> None:
    """Before: "frames= needs record_frames=True", "Value out of range: -3", "call StopMotion
    to stop it, or WaitSettled", "[Errno 2] No such file or directory" (which file?)."""
    done = benchctl(process_daemon, "record", "x", "--frames", "3", "--readings-only")
    assert done.returncode == 2 and "--frames and --readings-only contradict" in done.stderr
    done = benchctl(process_daemon, "record", "x", "--frames", "-3")
    assert done.returncode == 2 and "argument --frames: -3: a count cannot be negative" in (
        done.stderr
    )
    done = benchctl(process_daemon, "move", "esp300.axis1", "30", "--timeout", "0.05")
    try:
        assert done.returncode == 9, done.stderr
        assert done.stderr.rstrip().endswith(
            "the move goes on: 'benchctl stop esp300.axis1' stops it"
        ), done.stderr
        assert "StopMotion" not in done.stderr and "MoveAbsolute(" not in done.stderr
    finally:
        ok_line(benchctl(process_daemon, "stop", "esp300.axis1"))
        ok_line(benchctl(process_daemon, "move", "esp300.axis1", "0"))
    done = benchctl(process_daemon, "--tls", "/no/such.crt", "devices")
    assert done.returncode == 2 and "--tls /no/such.crt: no such file or directory" in done.stderr
    done = benchctl(process_daemon, "--token-file", "/no/such.token", "devices")
    assert done.returncode == 2
    assert "--token-file /no/such.token: no such file or directory" in done.stderr
