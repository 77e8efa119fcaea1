"""Serial I/O: trio on a non-blocking fd (what the transport does) vs a worker thread.

    python benchmarks/transport.py [--quick] [--json]

Both talk to the same simulator over a pseudo-terminal (which ignores baud rate, so this
measures the software, not the line): query round trips per second, and how long a query
waiting on a silent instrument takes to give way when cancelled (an e-stop preempting it).

* fd_query_ratio: FdStream round trips/s / worker-thread pyserial round trips/s
* fd_cancel_ms / thread_cancel_ms: time from cancelling a pending read to the port being free
  again (the thread variant must wait for pyserial's read timeout to release the port)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import serial
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import machine, run_benchmark

from actors.instruments.transport import SerialSettings, SerialTransport
from simulators.newport1830c import Newport1830CSimulator

READ_TIMEOUT = 0.5  # what a thread-based driver would set as its pyserial read timeout


async def fd_rate(port: str, n: int) -> float:
    async with await SerialTransport.open("bench", SerialSettings(port)) as link:
        start = time.perf_counter()
        for _ in range(n):
            await link.query(b"W?")
        return n / (time.perf_counter() - start)


async def thread_rate(port: str, n: int) -> float:
    device = serial.Serial(port, 9600, timeout=READ_TIMEOUT)

    def query() -> bytes:
        device.write(b"W?\n")
        return bytes(device.read_until(b"\n"))

    try:
        start = time.perf_counter()
        for _ in range(n):
            await trio.to_thread.run_sync(query)
        return n / (time.perf_counter() - start)
    finally:
        device.close()


async def fd_cancel(port: str) -> float:
    async with await SerialTransport.open("bench", SerialSettings(port)) as link:
        with trio.move_on_after(0.05):
            await link.query(b"X?")  # the meter is silent: this waits
        cancelled = time.perf_counter()
        await link.query(b"W?")  # the port is free at once
        return time.perf_counter() - cancelled


async def thread_cancel(port: str) -> float:
    device = serial.Serial(port, 9600, timeout=READ_TIMEOUT)
    lock = trio.Lock()  # one pyserial call at a time, as a thread-based driver must

    def query(command: bytes) -> bytes:
        device.write(command + b"\n")
        return bytes(device.read_until(b"\n"))

    async def locked(command: bytes) -> bytes:
        async with lock:
            return await trio.to_thread.run_sync(query, command, abandon_on_cancel=False)

    try:
        cancelled = 0.0
        async with trio.open_nursery() as nursery:

            async def pending() -> None:
                with trio.move_on_after(0.05):
                    await locked(b"X?")

            nursery.start_soon(pending)
            await trio.sleep(0.06)
            cancelled = time.perf_counter()
            await locked(b"W?")
        return time.perf_counter() - cancelled
    finally:
        device.close()


async def measure(quick: bool) -> dict[str, object]:
    rounds, n = (3, 300) if quick else (7, 2000)
    simulator = Newport1830CSimulator()
    ratios, fd_rates, thread_rates, fd_cancels, thread_cancels = [], [], [], [], []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(simulator.run)
        for _ in range(rounds):
            thread = await thread_rate(port, n)
            fd = await fd_rate(port, n)
            ratios.append(fd / thread)
            fd_rates.append(fd)
            thread_rates.append(thread)
            fd_cancels.append(await fd_cancel(port))
            thread_cancels.append(await thread_cancel(port))
        nursery.cancel_scope.cancel()
    return {
        "fd_query_ratio": round(statistics.median(ratios), 3),
        "fd_queries_per_s": round(statistics.median(fd_rates)),
        "thread_queries_per_s": round(statistics.median(thread_rates)),
        "fd_cancel_ms": round(statistics.median(fd_cancels) * 1e3, 3),
        "thread_cancel_ms": round(statistics.median(thread_cancels) * 1e3, 3),
        "goals_met": {  # the criteria the transport's design rests on
            "fd_query_ratio>=1": statistics.median(ratios) >= 1.0,
            "fd_cancel_ms<thread_cancel_ms": statistics.median(fd_cancels)
            < statistics.median(thread_cancels),
        },
        "settings": {"rounds": rounds, "queries": n, "thread_read_timeout_s": READ_TIMEOUT},
        "machine": machine(),
    }


if __name__ == "__main__":
    run_benchmark(__doc__.splitlines()[0], lambda quick: trio.run(measure, quick))
