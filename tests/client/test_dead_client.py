"""Client processes that die mid-stream (SIGKILL) during a run leave the daemon, every actor
and the run fine: the run records every frame and reading."""

from __future__ import annotations

import signal
import subprocess
import sys
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


def test_killing_a_streaming_client_leaves_the_daemon_and_actors_fine(
    process_daemon: Daemon,
) -> None:
    with Bench.connect(process_daemon.address) as bench:
        bench.parameters["camera.roi"] = "0,0,256,128"
        before = {a.name: a for a in bench.health().actors}
        run = bench.record("watched", frames=150, wait=False)  # ~1.5 s at 100 fps
        assert run.state == "recording"
        clients = [
            subprocess.Popen(
                [sys.executable, "-c", STREAMING_CLIENT, process_daemon.address],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            for client in clients:
                seen: set[str] = set()
                assert client.stdout is not None
                while len(seen) < 5:
                    line = client.stdout.readline()
                    assert line, "the streaming client ended early"
                    seen.add(line.split()[0])
            # the bench is busy serving them: change things they are watching
            bench.parameters["maitai.wavelength"] = 810
            moving = bench["esp300.axis1"]
            moving.start_move_to(3.0)
            for client in clients:
                client.send_signal(signal.SIGKILL)
                assert client.wait(timeout=10) == -signal.SIGKILL
        finally:
            for client in clients:
                if client.poll() is None:
                    client.kill()
                    client.wait()
                if client.stdout is not None:
                    client.stdout.close()

        assert abs(moving.wait_settled() - 3.0) < 1e-3
        final = bench.run_status()
        while not final.finished:
            time.sleep(0.1)
            final = bench.run_status()
        assert final.path == run.path and final.lost_nothing, final
        assert final.frames_written == 150 and final.readings_recorded > 0
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
