"""Emergency stop, end to end: from ``emergency_stop()`` to the stop bytes at every simulator.

    python benchmarks/estop.py [--quick] [--json]

The real drivers talk over pseudo-terminals to the simulators, which run in a *separate process*
(so their clock reading is not delayed by the daemon's own busy event loop) and report the
moment each stop command's bytes arrive (CLOCK_MONOTONIC, shared by both processes). Each sample
starts a long move on an ESP300 axis, optionally fills every device actor's mailbox with 10 000
messages, calls ``emergency_stop()`` and takes, per simulator, the arrival of its stop command
(ELL14 ``<addr>st`` for each of three mounts, ESP300 ``AB``, Mai Tai ``SHUT 0``); the sample is
the slowest device. Figures:

* estop_p99_ms: p99 with the backlog and a move in flight (goal <= 2 ms)
* estop_backlog_ratio: that p99 / p99 with a move in flight and empty mailboxes (goal <= 1.2)
* estop_written_p99_ms / estop_written_backlog_ratio: the same, but up to the moment the
  driver's ``write()`` of the stop bytes returned (the bytes are in the kernel, on their way to
  the wire): the daemon's own share, without the pty and the other process's scheduling.
* readings_per_s: 1830-C readings streamed over the pty (which ignores baud rate), against
  serial_limit_readings_per_s, what 9600 8N1 allows for the same bytes per reading.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import machine, p99, run_benchmark

from actors.capabilities import MoveAbsolute
from actors.instruments.transport import SerialTransport
from runtime import GetParameter, Ping, SetParameter
from runtime.config import parse_config
from simulators.ell14 import Ell14BusSimulator
from simulators.esp300 import Esp300Simulator
from simulators.maitai import MaiTaiSimulator
from simulators.newport1830c import Newport1830CSimulator
from supervisors.bench import Bench, open_bench

BACKLOG = 10_000
BENCH = """
[[device]]
id = "ell14"
driver = "thorlabs_ell14"
port = "{directory}/ell14"
options = {{ addresses = ["2", "3", "8"] }}

[[device]]
id = "esp300"
driver = "newport_esp300"
port = "{directory}/esp300"

[[device]]
id = "maitai"
driver = "spectra_physics_maitai"
port = "{directory}/maitai"
options = {{ shutter_lag = 0.05 }}

[[device]]
id = "power_meter"
driver = "newport_1830c"
port = "{directory}/power_meter"
"""
STOP_BYTES = {"ell14": (b"2st", b"3st", b"8st"), "esp300": (b"AB",), "maitai": (b"SHUT 0",)}
WRITTEN: dict[bytes, float] = {}  # stop command -> when its write returned


def record_stop_writes() -> None:
    """Instrument the transport (benchmark only): note when each stop command was written."""
    write = SerialTransport.write

    async def timed(self: SerialTransport, command: bytes, *, terminate: bool = True) -> None:
        await write(self, command, terminate=terminate)
        if command in STOP_BYTES.get(self.device, ()):
            WRITTEN[command] = time.perf_counter()

    SerialTransport.write = timed  # type: ignore[method-assign]


def serve_simulators(directory: str, report_fd: int) -> None:
    """The simulator process: serve the three instruments, write "device time" per stop."""

    async def main() -> None:
        maitai = MaiTaiSimulator(link=Path(directory) / "maitai")
        maitai.shutter_lag_s = 0.02
        simulators = {
            "esp300": Esp300Simulator(link=Path(directory) / "esp300"),
            "maitai": maitai,
            "power_meter": Newport1830CSimulator(link=Path(directory) / "power_meter"),
            "ell14": Ell14BusSimulator(link=Path(directory) / "ell14"),
        }
        for name, stops in STOP_BYTES.items():

            def report(arrived: float, command: bytes, stops: tuple[bytes, ...] = stops) -> None:
                if command in stops:  # written at once: the pipe is the measurement
                    os.write(report_fd, f"{command.decode()}|{arrived!r}\n".encode())

            simulators[name].on_command = report
        async with trio.open_nursery() as nursery:
            for simulator in simulators.values():
                await nursery.start(simulator.run)
            os.write(report_fd, b"ready\n")
            await trio.sleep_forever()

    trio.run(main)


class Arrivals:
    """Reads "device time" lines from the simulator process."""

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(fd)
        self._buffer = b""

    async def line(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(4096)
            if not chunk:
                raise RuntimeError("the simulator process died; see its traceback above")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def stop_times(self, after: float) -> dict[str, float]:
        times: dict[str, float] = {}
        expected = sum(len(stops) for stops in STOP_BYTES.values())
        while len(times) < expected:
            name, _, arrived = (await self.line()).partition("|")
            if float(arrived) >= after:
                times.setdefault(name, float(arrived))
        return times


@asynccontextmanager
async def move_in_flight(bench: Bench) -> AsyncIterator[None]:
    """Reset the latch, start a long ESP300 move, and yield while it is in flight (its MD?
    polls in the controller); the block's e-stop ends it."""
    system = bench.system
    axis = system.ref("esp300.axis1")
    await system.reset_emergency_stop("next sample")
    target = 40.0 if (await axis.ask(MoveAbsolute(0.0, wait=False))) < 20 else 0.0
    async with trio.open_nursery() as nursery:

        async def move() -> None:
            try:
                await axis.ask(MoveAbsolute(target), timeout=None)
            except Exception:  # interrupted by the e-stop, as intended
                return

        nursery.start_soon(move)
        await trio.sleep(0.1)
        yield


async def one_sample(bench: Bench, arrivals: Arrivals, backlog: bool) -> tuple[float, float]:
    system = bench.system
    async with move_in_flight(bench):
        if backlog:
            for name in system.names():
                ref = system.ref(name)
                while ref.statistics().normal_depth < BACKLOG and ref.try_tell(Ping()):
                    pass
        WRITTEN.clear()
        sent = time.perf_counter()
        await system.emergency_stop("benchmark")
    times = await arrivals.stop_times(sent)
    return max(times.values()) - sent, max(WRITTEN.values()) - sent


async def wait_drained(bench: Bench) -> None:
    while any(s.normal_depth for s in bench.system.statistics()):  # noqa: ASYNC110 (polling stats)
        await trio.sleep(0.05)


async def readings_rate(bench: Bench, seconds: float) -> float:
    meter = bench.system.ref("power_meter")
    await meter.ask(SetParameter("poll_interval", 0.0))
    before = (await meter.ask(GetParameter("power"))).version
    await meter.ask(SetParameter("streaming", True))
    await trio.sleep(seconds)
    await meter.ask(SetParameter("streaming", False))
    after = (await meter.ask(GetParameter("power"))).version
    return (after - before) / seconds


async def measure(quick: bool, directory: str, read_fd: int) -> dict[str, object]:
    samples = 15 if quick else 100
    arrivals = Arrivals(read_fd)
    try:
        assert await arrivals.line() == "ready"
        config = parse_config(BENCH.format(directory=directory), "<benchmark bench>")
        async with open_bench(config) as bench:
            record_stop_writes()
            plain, loaded, plain_written, loaded_written = [], [], [], []
            for _ in range(samples):  # interleaved, so drift affects both alike
                arrived, written = await one_sample(bench, arrivals, backlog=False)
                plain.append(arrived)
                plain_written.append(written)
                await wait_drained(bench)
                arrived, written = await one_sample(bench, arrivals, backlog=True)
                loaded.append(arrived)
                loaded_written.append(written)
                await wait_drained(bench)
            await bench.system.reset_emergency_stop("done")
            rate = await readings_rate(bench, 1.0 if quick else 3.0)
    finally:
        await arrivals.aclose()
    # Per reading the driver sends "D?\n" and "Q?\n" and reads "+.1234E-5\n" and "144\n".
    bytes_per_reading = 3 + 10 + 3 + 4
    serial_limit = 9600 / 10 / bytes_per_reading  # 8N1: 10 bits a byte
    return {
        "estop_p99_ms": round(p99(loaded) * 1e3, 3),
        "estop_no_backlog_p99_ms": round(p99(plain) * 1e3, 3),
        "estop_backlog_ratio": round(p99(loaded) / p99(plain), 3),
        "estop_p50_ms": round(statistics.median(loaded) * 1e3, 3),
        "estop_written_p99_ms": round(p99(loaded_written) * 1e3, 3),
        "estop_written_no_backlog_p99_ms": round(p99(plain_written) * 1e3, 3),
        "estop_written_backlog_ratio": round(p99(loaded_written) / p99(plain_written), 3),
        "readings_per_s": round(rate, 1),
        "serial_limit_readings_per_s": round(serial_limit, 1),
        "bytes_per_reading": bytes_per_reading,
        "goals_met": {
            "estop_p99_ms<=2": p99(loaded) * 1e3 <= 2.0,
            "estop_backlog_ratio<=1.2": p99(loaded) / p99(plain) <= 1.2,
            "estop_written_p99_ms<=2": p99(loaded_written) * 1e3 <= 2.0,
            "estop_written_backlog_ratio<=1.2": p99(loaded_written) / p99(plain_written) <= 1.2,
        },
        "settings": {"samples_per_mode": samples, "backlog_per_actor": BACKLOG},
        "machine": machine(),
    }


def run(quick: bool) -> dict[str, object]:
    """Fork the simulator process before trio starts here, so it can run its own trio."""
    logging.basicConfig(level=logging.ERROR)  # e-stops log warnings by design; not here
    directory = tempfile.mkdtemp(prefix="benchd-estop-")
    read_fd, write_fd = os.pipe()
    process = multiprocessing.get_context("fork").Process(
        target=serve_simulators, args=(directory, write_fd), daemon=True
    )
    process.start()
    os.close(write_fd)
    try:
        return trio.run(measure, quick, directory, read_fd)
    finally:
        process.kill()
        process.join()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], run)
