"""The benchmark scripts still run and print what docs/performance.md quotes (no timing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("script", "keys"),
    [
        (
            "mailbox.py",
            {
                "tell_ratio",
                "ask_ratio",
                "priority_latency_us_p99",
                "priority_backlog_ratio",
                "parameter_set_ratio",
            },
        ),
        (
            "estop.py",
            {"estop_p99_ms", "estop_backlog_ratio", "estop_written_p99_ms", "readings_per_s"},
        ),
        ("transport.py", {"fd_query_ratio", "fd_cancel_ms", "thread_cancel_ms"}),
        (
            "pipeline.py",
            {
                "writer_ratio",
                "full_rate_dropped",
                "readings_per_s",
                "readings_lost",
                "compressed_fps",
                "preview_fps",
            },
        ),
        (
            "edge.py",
            {
                "unary_ratio",
                "frames_ratio",
                "estop_rpc_p99_ms",
                "edge_calls_per_s",
                "hostile_estop_p99_ms",
                "hostile_estop_client_p99_ms",
                "hostile_frames_lost",
                "hostile_unanswered",
            },
        ),
        (
            "scripting.py",
            {
                "builtin_overhead_ratio",
                "scan_ratio",
                "builtin_us",
                "direct_us",
                "loop_lag_ms_p99",
                "loop_lag_bomb_ms_p99",
                "loop_lag_busy_ms_p99",
                "loop_lag_idle_ms_p99",
            },
        ),
        ("soak.py", {"rss_growth_mb", "rss_mb", "frames_written", "frames_lost"}),
        (
            "plans.py",
            {"plan_ratio", "bluesky_speedup", "plan_points_per_s", "bluesky_points_per_s"},
        ),
        ("edge.py", {"unary_ratio", "frames_ratio", "estop_rpc_p99_ms", "edge_calls_per_s"}),
        ("scripting.py", {"builtin_overhead_ratio", "scan_ratio", "builtin_us", "direct_us"}),
        ("preview.py", {"preview_fps", "recording_dropped", "full_frames_fps", "reduce_ms_p50"}),
    ],
)
def test_benchmark_quick_run_prints_one_json_object(script: str, keys: set[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert keys <= result.keys() and "machine" in result and "goals_met" in result
