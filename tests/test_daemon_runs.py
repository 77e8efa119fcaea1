"""A run in the daemon as users run it: SIGTERM closes it with an end record, SIGKILL leaves a
readable file with every frame flushed before the kill."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import h5py
import pytest

from actors.pipeline.nexus_file import read_end_record
from benchd.v1 import common_pb2, hardware_pb2, storage_pb2
from supervisors.bench import SIMULATED_BENCH

ROOT = Path(__file__).resolve().parent.parent


def start(directory: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    config = directory / "bench.toml"
    config.write_text(
        SIMULATED_BENCH
        + f"\n[edge]\nlisten = '127.0.0.1:0'\npresets_dir = '{directory / 'presets'}'\n"
        + f"\n[storage]\ndirectory = '{directory / 'runs'}'\nring_directory = '{directory}'\n"
        + "min_free_mb = 0\nflush_interval = 0.2\n"
    )
    log = directory / "daemon.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime", "--config", str(config)],
            cwd=ROOT,
            stderr=sink,
            stdout=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "benchd serving gRPC on " in line:
                return process, line.rsplit(" ", 1)[1], log
        time.sleep(0.05)
    process.kill()
    raise AssertionError(log.read_text())


def call(channel: grpc.Channel, path: str, request: Any, reply: Any) -> Any:
    method = channel.unary_unary(
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=reply.FromString,
    )
    return method(request, timeout=20)


def start_long_run(address: str) -> storage_pb2.RunStatus:
    with grpc.insecure_channel(address) as channel:
        call(
            channel,
            "/benchd.v1.Hardware/SetParameter",
            hardware_pb2.SetParameterRequest(
                device="camera", name="roi", value=common_pb2.Value(text="0,0,512,256")
            ),
            hardware_pb2.ParameterValue,
        )
        status = call(
            channel,
            "/benchd.v1.Storage/StartRun",
            storage_pb2.StartRunRequest(name="long", frames=60_000),
            storage_pb2.RunStatus,
        )
        deadline = time.monotonic() + 20
        while status.frames_committed < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
            status = call(
                channel,
                "/benchd.v1.Storage/GetRunStatus",
                storage_pb2.RunStatusRequest(),
                storage_pb2.RunStatus,
            )
    assert status.frames_committed >= 20, status
    return status


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_daemon_closes_the_run_with_an_end_record(tmp_path: Path, signum: int) -> None:
    process, address, log = start(tmp_path)
    try:
        status = start_long_run(address)
    finally:
        process.send_signal(signum)
        assert process.wait(timeout=60) == 0, log.read_text()
    record = read_end_record(Path(status.path))
    assert (
        record["status"] == "incomplete"
        and record["reason"] == "the recorder stopped (daemon shutdown)"
    )
    assert record["frames_dropped"] == 0 and record["frames_missing"] == 0
    assert record["frames_received"] == record["frames_written"]  # none lost in the shutdown
    with h5py.File(status.path, "r") as f:
        assert (
            f["entry/data/data"].shape[0] == record["frames_written"] > status.frames_committed - 1
        )
        numbers = list(f["entry/instrument/camera/frame_number"])
    assert numbers == list(range(1, len(numbers) + 1))
    assert log.read_text().rstrip().endswith("benchd stopped cleanly")


def test_sigkill_mid_run_leaves_a_readable_file_with_every_flushed_frame(tmp_path: Path) -> None:
    process, address, _log = start(tmp_path)
    try:
        status = start_long_run(address)
    finally:
        process.kill()
        process.wait(timeout=30)
    with h5py.File(status.path, "r", swmr=True) as f:
        numbers = list(f["entry/instrument/camera/frame_number"])
        assert len(numbers) >= status.frames_committed  # at least what was flushed when asked
        assert numbers == list(range(1, len(numbers) + 1))
        assert f["entry/data/data"].shape[0] >= len(numbers)
        assert json.loads(f["entry/manifest/json"][()])["run"]["name"] == "long"
    assert read_end_record(Path(status.path)) == {"status": "running"}  # it never ended
