"""A run in the daemon as users run it: SIGTERM closes it with an end record; SIGKILL leaves a
file with every frame flushed before the kill, which the next start repairs; a client that
goes away does not disturb its run; a file that may not grow (EFBIG) ends the run with a
write error and the daemon goes on. In every case GetRunStatus, ListRuns and the file agree."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import grpc
import h5py
import pytest

from actors.pipeline.nexus_file import read_end_record, reserve_path
from benchd.v1 import common_pb2, hardware_pb2, storage_pb2
from supervisors.bench import SIMULATED_BENCH

ROOT = Path(__file__).resolve().parent.parent
#: ``python -m runtime`` with a file size limit (CPython ignores SIGXFSZ, so a write past the
#: limit fails with EFBIG instead of killing the process).
LIMITED = (
    "import resource, runpy; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}));"
    " runpy.run_module('runtime', run_name='__main__', alter_sys=True)"
)
FINAL = (storage_pb2.RUN_STATE_COMPLETED, storage_pb2.RUN_STATE_FAILED)


def start(
    directory: Path, *, storage: str = "", file_size_limit: int | None = None
) -> tuple[subprocess.Popen[bytes], str, Path]:
    config = directory / "bench.toml"
    config.write_text(
        SIMULATED_BENCH
        + f"\n[edge]\nlisten = '127.0.0.1:0'\npresets_dir = '{directory / 'presets'}'\n"
        + f"\n[storage]\ndirectory = '{directory / 'runs'}'\nring_directory = '{directory}'\n"
        + "min_free_mb = 0\nflush_interval = 0.2\n"
        + storage
    )
    log = directory / "daemon.log"
    offset = log.stat().st_size if log.exists() else 0
    command = [sys.executable, "-m", "runtime", "--config", str(config)]
    if file_size_limit is not None:  # no file may grow past it (EFBIG): set in the daemon
        command[1:3] = ["-c", LIMITED.format(limit=file_size_limit)]
    with log.open("a") as sink:
        process = subprocess.Popen(command, cwd=ROOT, stderr=sink, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text()[offset:].splitlines():
            if "benchd serving gRPC on " in line:
                return process, line.rsplit(" ", 1)[1], log
        if process.poll() is not None:
            break
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


def run_status(channel: grpc.Channel) -> storage_pb2.RunStatus:
    return call(
        channel,
        "/benchd.v1.Storage/GetRunStatus",
        storage_pb2.RunStatusRequest(),
        storage_pb2.RunStatus,
    )


def list_runs(channel: grpc.Channel) -> list[storage_pb2.RunFile]:
    reply = call(
        channel,
        "/benchd.v1.Storage/ListRuns",
        storage_pb2.ListRunsRequest(),
        storage_pb2.ListRunsResponse,
    )
    return list(reply.runs)


def small_roi(channel: grpc.Channel, roi: str = "0,0,512,256") -> None:
    call(
        channel,
        "/benchd.v1.Hardware/SetParameter",
        hardware_pb2.SetParameterRequest(
            device="camera", name="roi", value=common_pb2.Value(text=roi)
        ),
        hardware_pb2.ParameterValue,
    )


def start_long_run(address: str) -> storage_pb2.RunStatus:
    with grpc.insecure_channel(address) as channel:
        # 16 KiB frames: the recorder refuses a run its disk cannot hold (60 000 frames of
        # 256 KiB would be 15 GiB), and this one only has to outlast the test
        small_roi(channel, "0,0,128,64")
        status = call(
            channel,
            "/benchd.v1.Storage/StartRun",
            storage_pb2.StartRunRequest(name="long", frames=60_000),
            storage_pb2.RunStatus,
        )
        deadline = time.monotonic() + 20
        while status.frames_committed < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
            status = run_status(channel)
    assert status.frames_committed >= 20, status
    return status


def wait_final(channel: grpc.Channel) -> storage_pb2.RunStatus:
    deadline = time.monotonic() + 30
    while (status := run_status(channel)).state not in FINAL:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


def one_truth(channel: grpc.Channel, status: storage_pb2.RunStatus) -> dict[str, Any]:
    """GetRunStatus, ListRuns and the file's end record say the same; the record."""
    record = read_end_record(Path(status.path))
    (listed,) = [r for r in list_runs(channel) if r.path == status.path]
    assert status.outcome == record["status"] == listed.status
    assert json.loads(status.end_record_json) == record
    assert status.frames_written == listed.frames_written == record["frames_written"]
    assert status.readings_recorded == listed.readings_recorded == record["readings_recorded"]
    with h5py.File(status.path, "r") as f:  # any reader: no SWMR, no h5clear
        assert f["entry/data/data"].shape[0] == record["frames_written"]
    return record


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_daemon_closes_the_run_with_an_end_record(tmp_path: Path, signum: int) -> None:
    process, address, log = start(tmp_path)
    try:
        status = start_long_run(address)
    finally:
        process.send_signal(signum)
        assert process.wait(timeout=60) == 0, log.read_text()
    record = read_end_record(Path(status.path))
    assert (record["status"], record["reason"]) == (  # a recording is a plan: its executor's
        "stopped",
        "the plan executor stopped (daemon shutdown)",
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


#: A client that starts a run, says so, and waits to be killed (SIGKILL: no goodbye).
CLIENT = textwrap.dedent(
    """
    import sys, time, grpc
    from benchd.v1 import storage_pb2
    with grpc.insecure_channel(sys.argv[1]) as channel:
        start = channel.unary_unary(
            "/benchd.v1.Storage/StartRun",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=storage_pb2.RunStatus.FromString,
        )
        start(storage_pb2.StartRunRequest(name="orphan", frames=150), timeout=20)
        print("started", flush=True)
        time.sleep(60)
    """
)


def test_sigkill_mid_run_then_the_next_start_repairs_the_run(tmp_path: Path) -> None:
    process, address, log = start(tmp_path)
    try:
        before = start_long_run(address)
    finally:
        process.kill()
        process.wait(timeout=30)
    path = Path(before.path)
    assert read_end_record(path) == {"status": "running"}  # it never ended...
    with pytest.raises(OSError, match="h5clear"):
        h5py.File(path, "r")  # ...and a reader without SWMR cannot open it
    process, address, log = start(tmp_path)
    try:
        with grpc.insecure_channel(address) as channel:
            status = run_status(channel)
            record = one_truth(channel, status)
            assert status.state == storage_pb2.RUN_STATE_FAILED and status.outcome == "crashed"
            assert (status.name, status.path) == ("long", before.path)
            # Every frame flushed before the kill (committed at the last status) survived.
            assert record["frames_written"] >= before.frames_committed
            with h5py.File(path, "r") as f:
                numbers = list(f["entry/instrument/camera/frame_number"])
            assert numbers == list(range(1, record["frames_written"] + 1))
            assert not reserve_path(path).exists()
            assert "repaired a run left open by a crash" in log.read_text()

            # A client that starts a run and dies: the run goes on and completes.
            small_roi(channel)
            with subprocess.Popen(
                [sys.executable, "-c", CLIENT, address], cwd=ROOT, stdout=subprocess.PIPE
            ) as client:
                try:
                    assert client.stdout is not None and client.stdout.readline() == b"started\n"
                finally:
                    client.kill()  # closes its connection without a goodbye
            orphan = wait_final(channel)
            assert orphan.name == "orphan"
            record = one_truth(channel, orphan)
            assert (orphan.outcome, record["frames_written"]) == ("completed", 150)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()


def test_a_file_that_may_not_grow_ends_the_run_with_a_write_error_and_the_daemon_goes_on(
    tmp_path: Path,
) -> None:
    limit = 3 * 1024 * 1024
    process, address, log = start(tmp_path, storage="ring_slots = 0\n", file_size_limit=limit)
    try:
        with grpc.insecure_channel(address) as channel:
            small_roi(channel)  # 256 KiB frames: the limit is reached after about a dozen
            call(
                channel,
                "/benchd.v1.Storage/StartRun",
                storage_pb2.StartRunRequest(name="big", frames=1000),
                storage_pb2.RunStatus,
            )
            failed = wait_final(channel)
            record = one_truth(channel, failed)
            assert (failed.state, failed.outcome) == (storage_pb2.RUN_STATE_FAILED, "write error")
            assert record["error"] == "EFBIG" and "File too large" in failed.error
            assert 0 < record["frames_written"] < 20
            assert (
                record["frames_received"] == record["frames_written"] + record["frames_discarded"]
            )
            # The daemon goes on: the next run (small enough) records and completes.
            call(
                channel,
                "/benchd.v1.Storage/StartRun",
                storage_pb2.StartRunRequest(name="small", frames=3),
                storage_pb2.RunStatus,
            )
            again = wait_final(channel)
            assert one_truth(channel, again)["status"] == "completed"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
    assert read_end_record(Path(failed.path))["status"] == "write error"  # still, after exit
    with h5py.File(failed.path, "r") as f:
        assert f["entry/instrument/camera/frame_number"].shape[0] == record["frames_written"]
