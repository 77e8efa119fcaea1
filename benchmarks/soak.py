"""Soak: the daemon's memory over a series of recorded runs with a preview client attached.

    python benchmarks/soak.py [--quick] [--json]

A real daemon (``python -m runtime`` on the simulated bench, full 2048x2048 frames) records 20
runs of 200 frames each (--quick: 5 runs of 40 frames), one after the other, while a client
process streams the camera's frames over gRPC (Hardware/StreamFrames, latest-only) the whole
time, as a GUI would. After each run the daemon's resident memory (VmRSS from /proc) is read
and the run's files are deleted (the disk is not what is measured).

* rss_growth_mb: RSS after the last run minus RSS after run 2 (goal <= 50 MB). Run 1 and 2 are
  the warm-up: the frame ring fills, h5py and the allocator reach their working set. A leak
  grows this with every run; the allocator's working set does not.
* rss_mb: the RSS after each run; frames_written and frames_lost (dropped + missing) of every
  run added up, and incomplete_runs; preview_frames: frames the client received. Lost frames
  are for the record, not a goal here: at the full-frame rate on a shared two-core machine the
  writer can fall behind (benchmarks/pipeline.py measures that on its own).

Before the fix (allocator memory kept after each run, see actors/pipeline/allocator.py) this
printed rss_growth_mb 193.5 on the machine in docs/performance.md.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from _report import machine, run_benchmark

from benchd.v1 import hardware_pb2, storage_pb2
from supervisors.bench import SIMULATED_BENCH

ROOT = Path(__file__).resolve().parent.parent
GOAL_MB = 50.0
MAX_MESSAGE = 64 * 1024 * 1024


def start_daemon(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = directory / "bench.toml"
    config.write_text(
        SIMULATED_BENCH
        + f"\n[edge]\nlisten = '127.0.0.1:0'\npresets_dir = '{directory / 'presets'}'\n"
        + f"\n[storage]\ndirectory = '{directory / 'runs'}'\nring_directory = '{directory}'\n"
        + "min_free_mb = 0\n"
    )
    log = directory / "daemon.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime", "--config", str(config)],
            cwd=ROOT,
            stderr=sink,
            stdout=subprocess.PIPE,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        address = _listening(directory)
        if address:
            return process, address
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the daemon did not start:\n{log.read_text()[-3000:]}")


def _listening(directory: Path) -> str:
    for line in (directory / "daemon.log").read_text().splitlines():
        if "benchd serving gRPC on " in line:
            return line.rsplit(" ", 1)[1]
    return ""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def unary(channel: grpc.Channel, path: str, request: Any, reply: Any) -> Any:
    method = channel.unary_unary(
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=reply.FromString,
    )
    return method(request, timeout=60)


class Preview(threading.Thread):
    """A GUI-like client: streams frames as fast as it takes them, reconnecting if the stream
    ends (it never should)."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.frames = 0
        self.stopping = threading.Event()
        self._call: Any = None

    def run(self) -> None:
        options = [("grpc.max_receive_message_length", MAX_MESSAGE)]
        with grpc.insecure_channel(self.address, options=options) as channel:
            stream = channel.unary_stream(
                "/benchd.v1.Hardware/StreamFrames",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=hardware_pb2.Frame.FromString,
            )
            while not self.stopping.is_set():
                self._call = stream(hardware_pb2.StreamFramesRequest(device="camera"))
                try:
                    for _frame in self._call:
                        self.frames += 1
                except grpc.RpcError:
                    time.sleep(0.2)

    def stop(self) -> None:
        self.stopping.set()
        if self._call is not None:
            self._call.cancel()


def record(channel: grpc.Channel, name: str, frames: int) -> storage_pb2.RunStatus:
    unary(
        channel,
        "/benchd.v1.Storage/StartRun",
        storage_pb2.StartRunRequest(name=name, frames=frames),
        storage_pb2.RunStatus,
    )
    while True:
        status = unary(
            channel,
            "/benchd.v1.Storage/GetRunStatus",
            storage_pb2.RunStatusRequest(),
            storage_pb2.RunStatus,
        )
        if status.state in (storage_pb2.RUN_STATE_COMPLETED, storage_pb2.RUN_STATE_FAILED):
            return status
        time.sleep(0.1)


def measure(quick: bool) -> dict[str, object]:
    runs, frames = (5, 40) if quick else (20, 200)
    with tempfile.TemporaryDirectory(prefix="benchd-soak-") as folder:
        directory = Path(folder)
        process, address = start_daemon(directory)
        preview = Preview(address)
        try:
            preview.start()
            rss: list[float] = []
            written = lost = 0
            incomplete = 0
            with grpc.insecure_channel(address) as channel:
                for number in range(1, runs + 1):
                    status = record(channel, f"soak-{number}", frames)
                    written += status.frames_written
                    lost += status.frames_dropped + status.frames_missing
                    incomplete += status.state != storage_pb2.RUN_STATE_COMPLETED
                    rss.append(round(rss_mb(process.pid), 1))
                    for path in (directory / "runs").glob(f"*_soak-{number}.*"):
                        path.unlink()
        finally:
            preview.stop()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            preview.join(timeout=10)
    growth = round(rss[-1] - rss[1], 1)
    return {
        "rss_growth_mb": growth,
        "rss_mb": rss,
        "runs": runs,
        "frames_per_run": frames,
        "frames_written": written,
        "frames_lost": lost,
        "preview_frames": preview.frames,
        "incomplete_runs": incomplete,
        "goals_met": {"rss_growth_mb<=50": growth <= GOAL_MB},
        "machine": machine(),
    }


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], measure)
