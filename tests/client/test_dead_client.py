"""Client processes that die mid-stream (SIGKILL) during a run leave the daemon, every actor
and the run fine: the run records every frame and reading."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time

from client import Bench

from .conftest import ROOT, Daemon

#: A client streaming as fast as the daemon serves: parameters, readings and positions.
STREAMING_CLIENT = """
import asyncio, sys
from client import AsyncBench

async def main():
    async with await AsyncBench.connect(sys.argv[1]) as bench:
        async def parameters():
            async for value in bench.stream_parameters("maitai"):
                print("parameter", value.name, flush=True)
        async def readings():
            async for reading in bench.stream_values("power_meter", interval=0.01):
                print("reading", reading.value, flush=True)
        async def positions():
            async for where in bench.stream_position("esp300.axis1", interval=0.01):
                print("position", where.position, flush=True)
        async def frames():
            async for frame in bench.stream_frames("camera"):
                print("frame", frame.frame_number, flush=True)
        async def runs():
            async for status in bench.stream_run_status():
                print("run", status.frames_written, flush=True)
        await asyncio.gather(parameters(), readings(), positions(), frames(), runs())

asyncio.run(main())
"""


class StreamingClient:
    """A streaming client process whose output lines a thread collects, so the test waits on
    what the client has seen (with a bounded wait and a clear message), never on a read that
    blocks for ever."""

    def __init__(self, address: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", STREAMING_CLIENT, address],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.seen: set[str] = set()
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put("")  # end of output

    def wait_for(self, kinds: set[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not kinds <= self.seen:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"in {timeout:g} s the client streamed only {sorted(self.seen)}"
                ) from None
            assert line, f"the streaming client ended early, having seen {sorted(self.seen)}"
            self.seen.add(line.split()[0])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def test_killing_a_streaming_client_leaves_the_daemon_and_actors_fine(
    process_daemon: Daemon,
) -> None:
    with Bench.connect(process_daemon.address) as bench:
        bench.parameters["camera.roi"] = "0,0,256,128"
        before = {a.name: a for a in bench.health().actors}
        clients = [StreamingClient(process_daemon.address) for _ in range(2)]
        try:
            # Every client streams before the run starts (however slowly it started on a busy
            # machine), so each is mid-stream, frames included, while the run records.
            for client in clients:
                client.wait_for({"parameter", "reading", "position", "run"})
            run = bench.record("watched", frames=300, wait=False)  # ~3 s at 100 fps
            assert run.state == "recording"
            for client in clients:
                client.wait_for({"frame"})
            # the bench is busy serving them: change things they are watching
            bench.parameters["maitai.wavelength"] = 810
            moving = bench["esp300.axis1"]
            moving.start_move_to(3.0)
            for client in clients:
                client.process.send_signal(signal.SIGKILL)
                assert client.process.wait(timeout=10) == -signal.SIGKILL
        finally:
            for client in clients:
                client.close()

        assert abs(moving.wait_settled() - 3.0) < 1e-3
        final = bench.run_status()
        deadline = time.monotonic() + 60
        while not final.finished and time.monotonic() < deadline:
            time.sleep(0.1)
            final = bench.run_status()
        assert final.path == run.path and final.lost_nothing, final
        assert final.frames_written == 300 and final.readings_recorded > 0
        bench.parameters["maitai.wavelength"] = 820
        assert bench.parameters["maitai.wavelength"] == 820.0
        with bench["power_meter"].watch_values(interval=0.01) as readings:
            assert next(readings).units == "W"
        time.sleep(0.3)  # a heartbeat round after the streams were torn down
        health = bench.health()
        assert health.all_ready
        for actor in health.actors:
            assert actor.responsive, actor
            assert actor.restarts == before[actor.name].restarts, actor
            assert actor.last_failure == before[actor.name].last_failure, actor  # no crash
            assert actor.mailbox_depth == 0, actor
    assert "Traceback" not in process_daemon.log.read_text()
