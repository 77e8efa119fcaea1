"""Daemon logs: one JSON object per line (with structured extras), or text lines."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from runtime.logs import JsonFormatter


def test_json_lines_carry_message_level_logger_and_extras():
    record = logging.makeLogRecord(
        {
            "name": "benchd.audit",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "alice moved %s",
            "args": ("esp300.axis1",),
            "audit": {"who": "alice", "role": "operator", "result": "ok"},
        }
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "alice moved esp300.axis1"
    assert entry["level"] == "INFO" and entry["logger"] == "benchd.audit"
    assert entry["audit"] == {"who": "alice", "role": "operator", "result": "ok"}
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_json_log_keeps_a_traceback_inside_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]


def test_daemon_logs_json_with_log_format_json(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "--log-format", "json", "--config", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and all(json.loads(line)["level"] for line in lines)
