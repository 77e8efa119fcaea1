"""The GUI's live view while a run records: preview rate against the run's losses.

    python benchmarks/preview.py [--quick] [--json]

A daemon (``python -m runtime``, the simulated bench: the Prime BSI simulator at its full-frame
16-bit rate, ~47 fps of 2048 x 2048) records a run of N frames to disk while

* **preview**: the real GUI (``gui.window.MainWindow``, Qt offscreen, in this process) shows the
  daemon's preview stream (512 x 512, mean of 4 x 4, at most 30 fps, the GUI's defaults):
  ``preview_fps`` is the frames the live view *drew* per second, ``recording_dropped`` the
  frames the run received and did not write (goal: >= 20 fps with 0 dropped), and
  ``recording_missing`` those the simulated camera never delivered (it computes its frames on
  the same CPU and misses its frame clock on a busy machine, viewers or not: compare with the
  run alone);
* **baselines, same run of the script**: the same run with no viewer at all
  (``recording_alone_dropped``: what the machine itself allows), and with a client pulling the
  full frames (``StreamFrames``, what a GUI would do without the preview path):
  ``full_frames_fps``, its MB/s against ``preview_mb_per_s``, and that run's losses.

``load_average`` is the machine's 1-minute load before and after: on a shared 2-core machine the
simulated camera (which computes its 8 MiB frames) and the writer compete with everything else,
and a loaded machine loses frames with or without a viewer — compare the three runs.

``reduce_ms_p50`` / ``_p99`` is the daemon's time to reduce one frame (in a worker thread, as
reported in each preview frame). Run files go to memory (/dev/shm) and each is deleted when its
run has ended, as for pipeline.py's writer figures: on this VM's shared disk the kernel's
writeback alone loses frames at 400 MB/s whatever the viewers do, which buries what is compared
here (the viewers' cost to the run). ``BENCHD_PREVIEW_ON_DISK=1`` puts them on disk instead.
``outcomes`` is how each run's end record ended ("incomplete" when frames were dropped).

``BENCHD_PREVIEW_EXPOSURE_MS`` sets the camera's exposure (default 10 ms: shorter than the
readout, so the sensor's full-frame rate, ~47 fps, 400 MB/s). A longer exposure lowers the
rate (40 ms: 25 fps, 200 MB/s) to one the machine sustains with no viewer at all: then the
recording's losses with the GUI watching say what the viewer costs, not what the machine lacks.
``camera_fps`` is the rate the exposure gives, ``recording_fps`` the one the run recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import machine, p99, run_benchmark
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from client import AsyncBench, Bench, PreviewFrame, RunStatus
from gui import theme
from gui.connection import Connection
from gui.window import MainWindow
from supervisors.bench import SIMULATED_BENCH

ROOT = Path(__file__).resolve().parent.parent
EXPOSURE_MS = 10.0  # shorter than the readout: the frame rate is the sensor's
FULL_FRAME_FPS = 47.0  # the simulated Prime BSI's readout-limited rate at 2048 x 2048


def start_daemon(directory: Path, runs: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = directory / "bench.toml"
    config.write_text(
        SIMULATED_BENCH + f"\n[edge]\npresets_dir = '{directory / 'presets'}'\n"
        f"disk_path = '{runs}'\n[storage]\ndirectory = '{runs}'\n"
        f"ring_directory = '{directory}'\nmin_free_mb = 0\n"
    )
    log = directory / "daemon.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime", "--config", str(config), "--listen", "127.0.0.1:0"],
            cwd=ROOT, stderr=sink, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if "benchd serving gRPC on " in line:
                return process, line.rsplit(" ", 1)[1]
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the daemon did not start:\n{log.read_text()}")


def record(bench: Bench, name: str, frames: int, done: threading.Event) -> list[RunStatus]:
    """A run of ``frames`` frames, waited for in a thread; ``done`` is set when it ends (its
    file deleted: three runs of 8 MiB frames would not all fit in memory)."""
    result: list[RunStatus] = []

    def run() -> None:
        try:
            status = bench.record(name, frames=frames)
            result.append(status)
            Path(status.path).unlink(missing_ok=True)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return result


def preview_during_a_run(address: str, bench: Bench, frames: int) -> dict[str, Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # read by QApplication()
    app = QApplication.instance() or QApplication([])
    theme.apply(app)  # type: ignore[arg-type]
    connection = Connection(address)
    window = MainWindow(connection, live=False)
    window.show()
    connection.start()
    drawn: list[tuple[float, PreviewFrame]] = []
    window.camera.frame_shown.connect(lambda f: drawn.append((time.perf_counter(), f)))
    done = threading.Event()
    runs: list[list[RunStatus]] = []

    def tick() -> None:
        if not runs and connection.connected_now and window.camera.camera:
            runs.append(record(bench, "preview-bench", frames, done))  # the preview is open
        if done.is_set():
            app.quit()  # type: ignore[union-attr]

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(50)
    started = time.perf_counter()
    app.exec()  # type: ignore[union-attr]
    timer.stop()
    window.close()
    status = runs[0][0]  # the run's thread has put it there before setting ``done``
    times = [t for t, _ in drawn]
    span = (times[-1] - times[0]) if len(times) > 1 else float("nan")
    reduce_ms = [f.reduce_ms for _, f in drawn]
    sizes = [f.pixels.nbytes for _, f in drawn]
    return {
        "fps": (len(times) - 1) / span if len(times) > 1 else 0.0,
        "drawn": len(drawn),
        "mb_per_s": sum(sizes[1:]) / span / 1e6 if len(times) > 1 else 0.0,
        "reduce_ms": reduce_ms,
        "status": status,
        "seconds": time.perf_counter() - started,
    }


def full_frames_during_a_run(address: str, bench: Bench, frames: int) -> dict[str, Any]:
    """The baseline: a client pulling full frames (StreamFrames) while the same run records."""
    done = threading.Event()
    received: list[tuple[float, int]] = []
    subscribed = threading.Event()

    async def pull() -> None:
        async with await AsyncBench.connect(address) as client:

            async def consume() -> None:
                async for frame in client.stream_frames("camera"):
                    received.append((time.perf_counter(), frame.pixels.nbytes))

            task = asyncio.create_task(consume())
            subscribed.set()
            await asyncio.to_thread(done.wait)
            task.cancel()  # cancelling the task, never a pending anext(): that ends the stream
            with contextlib.suppress(asyncio.CancelledError):
                await task

    puller = threading.Thread(target=lambda: asyncio.run(pull()), daemon=True)
    puller.start()
    subscribed.wait(30)
    time.sleep(0.5)  # the stream is open before the run starts
    result = record(bench, "full-frames-bench", frames, done)
    done.wait()
    puller.join(timeout=30)
    times = [t for t, _ in received]
    span = (times[-1] - times[0]) if len(times) > 1 else float("nan")
    return {
        "fps": (len(times) - 1) / span if len(times) > 1 else 0.0,
        "mb_per_s": sum(n for _, n in received[1:]) / span / 1e6 if len(times) > 1 else 0.0,
        "status": result[0],
    }


def dropped(status: RunStatus) -> int:
    """Frames the run received and did not write (the writer fell behind): the pipeline's loss."""
    return status.frames_dropped


def missing(status: RunStatus) -> int:
    """Frames the camera never delivered (the simulated sensor, computed on this CPU, fell
    behind its frame clock), or that never reached the run."""
    return max(status.frames_missing, status.frames_expected - status.frames_written
               - status.frames_dropped)  # fmt: skip


def measure(quick: bool) -> dict[str, object]:
    exposure_ms = float(os.environ.get("BENCHD_PREVIEW_EXPOSURE_MS", EXPOSURE_MS))
    camera_fps = min(FULL_FRAME_FPS, 1000.0 / exposure_ms)
    frames = round((3 if quick else 30) * camera_fps)  # ~3 s / 30 s of the camera's rate
    directory = Path(tempfile.mkdtemp(prefix="benchd-preview-"))
    on_disk = os.environ.get("BENCHD_PREVIEW_ON_DISK") == "1"
    runs = directory / "runs" if on_disk else Path(tempfile.mkdtemp(prefix="benchd-preview-",
                                                                     dir="/dev/shm"))  # fmt: skip
    process, address = start_daemon(directory, runs)
    load_before = os.getloadavg()[0]
    try:
        with Bench.connect(address) as bench:
            bench.parameters["camera.exposure"] = exposure_ms
            finished = threading.Event()
            alone_result = record(bench, "alone-bench", frames, finished)
            finished.wait()
            alone = alone_result[0]
            preview = preview_during_a_run(address, bench, frames)
            baseline = full_frames_during_a_run(address, bench, frames)
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(runs, ignore_errors=True)
    status: RunStatus = preview["status"]
    base_status: RunStatus = baseline["status"]
    reduce_ms = preview["reduce_ms"] or [float("nan")]
    result: dict[str, object] = {
        "preview_fps": round(preview["fps"], 1),
        "recording_dropped": dropped(status),
        "recording_missing": missing(status),
        "recording_frames": status.frames_written,
        "recording_fps": round(status.frames_written / max(1e-9, status.ended - status.started), 1),
        "preview_mb_per_s": round(preview["mb_per_s"], 1),
        "reduce_ms_p50": round(statistics.median(reduce_ms), 2),
        "reduce_ms_p99": round(p99(reduce_ms), 2),
        "full_frames_fps": round(baseline["fps"], 1),
        "full_frames_mb_per_s": round(baseline["mb_per_s"], 1),
        "full_frames_recording_dropped": dropped(base_status),
        "full_frames_recording_missing": missing(base_status),
        "recording_alone_dropped": dropped(alone),
        # how each run ended (its end record): alone, with the GUI, with a full-frame client
        "outcomes": [alone.outcome, status.outcome, base_status.outcome],
        "recording_alone_missing": missing(alone),
        "frames_per_run": frames,
        "exposure_ms": exposure_ms,
        "camera_fps": round(camera_fps, 1),
        "camera_mb_per_s": round(camera_fps * 2048 * 2048 * 2 / 1e6),
        "runs_on": "disk" if on_disk else "memory",
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    result["goals_met"] = {
        "preview_fps>=20": preview["fps"] >= 20,
        "recording_dropped==0": dropped(status) == 0 and status.state == "completed",
    }
    result["machine"] = machine()
    return result


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], measure)
