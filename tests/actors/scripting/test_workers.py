"""Scripts in worker processes on the simulated bench: the pool, the memory and CPU caps, stop /
abort / e-stop ending the worker within 100 ms, a worker killed from outside, the output cap.

Real processes and a real clock: every wait is bounded and waits on state, not on time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
import pytest
import trio

from actors.edge.control import execution_message
from actors.scripting.engine import PARSE_STACK
from actors.scripting.pool import PoolStatistics
from actors.scripting.runner import (
    RUNNER_NAME,
    ExecutionState,
    ExecutionStatus,
    GetExecution,
    GetOutput,
    GetPoolStatistics,
    StartScript,
    StopExecution,
)
from actors.scripting.session import STOP_BOUND
from client._types import Execution
from runtime import ActorError, ActorRef, GetParameter
from runtime.config import ConfigError, ScriptingConfig, StorageConfig, parse_config
from supervisors.bench import Bench, open_bench, simulated_bench_config

from .test_runner import finished, resting_position, run, wait_state

BUSY = "x = 0\nfor i in range(1000000000):\n    x += 1\n"  # computes, allocates nothing
BOMB = 'x = "x" * 1000000000\n'
ROOT = Path(__file__).resolve().parents[3]


@asynccontextmanager
async def scripting_bench(tmp_path: Path, **scripting: int) -> AsyncIterator[Bench]:
    storage = StorageConfig(directory=tmp_path, ring_directory=tmp_path, min_free_mb=0)
    config = dataclasses.replace(
        simulated_bench_config(), storage=storage, scripting=ScriptingConfig(**scripting)
    )
    async with open_bench(config) as bench:
        yield bench


async def pool_when(
    runner: ActorRef, predicate: Callable[[PoolStatistics], bool]
) -> PoolStatistics:
    with trio.fail_after(30):
        while True:
            statistics: PoolStatistics = await runner.ask(GetPoolStatistics())
            if predicate(statistics):
                return statistics
            await trio.sleep(0.02)


async def started_worker(runner: ActorRef, source: str) -> tuple[str, psutil.Process]:
    """Start ``source``; its execution id and its worker, once the worker has the job."""
    started: ExecutionStatus = await runner.ask(StartScript(source=source))
    await wait_state(runner, started.id, lambda s: s.worker_pid != 0)
    status: ExecutionStatus = await runner.ask(GetExecution(started.id))
    return started.id, psutil.Process(status.worker_pid)


class LoopLag:
    """The event loop's worst lag: a task that sleeps 5 ms and measures how late it woke."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def sample(self) -> None:
        while True:
            began = trio.current_time()
            await trio.sleep(0.005)
            self.worst = max(self.worst, trio.current_time() - began - 0.005)


async def test_the_pool_starts_warm_and_refills(tmp_path: Path) -> None:
    async with scripting_bench(tmp_path) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        warm = await pool_when(runner, lambda s: s.ready >= 1)
        status = await run(runner, "log('hello')\n")
        assert status.state is ExecutionState.COMPLETED, status
        assert status.worker_pid in warm.ready_pids  # started before the script was submitted
        assert status.worker_end == "exited" and not psutil.pid_exists(status.worker_pid)
        refilled = await pool_when(
            runner, lambda s: s.ready >= 1 and status.worker_pid not in s.ready_pids
        )
        assert refilled.started == warm.started + 1 and refilled.failed_starts == 0


async def test_a_script_may_use_most_of_its_memory_cap(tmp_path: Path) -> None:
    # The worker runs scripts on a 512 MiB stack (deep nesting): that reservation is address
    # space on top of the cap, or a 300 MB string failed "memory limit" under a 1 GiB cap.
    async with scripting_bench(tmp_path) as bench:  # the default cap: 1 GiB
        runner = bench.system.ref(RUNNER_NAME)
        status = await run(runner, 'x = "x" * 300000000\nlog(len(x))\n')
        assert status.state is ExecutionState.COMPLETED, status.error


async def test_the_memory_bomb_ends_in_a_memory_limit_while_the_bench_answers(
    tmp_path: Path,
) -> None:
    async with scripting_bench(tmp_path) as bench:  # the default cap: 1 GiB
        runner = bench.system.ref(RUNNER_NAME)
        maitai = bench.system.ref("maitai")
        lag = LoopLag()
        slowest_ask = 0.0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lag.sample)
            started = await runner.ask(StartScript(source=BOMB))
            while not (status := await runner.ask(GetExecution(started.id))).state.finished:
                began = trio.current_time()
                with trio.fail_after(5):
                    await maitai.ask(GetParameter("wavelength"))
                slowest_ask = max(slowest_ask, trio.current_time() - began)
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert status.state is ExecutionState.ERROR, status
        assert status.error.startswith(
            "memory limit: the script needed more than its 1024 MiB ([scripting] memory_limit_mb)"
        )
        assert status.memory_limit_bytes == 1 << 30 and status.memory_peak_bytes > 0
        # The daemon computed on: in-process, this bomb stopped the event loop for 12-30 s.
        assert lag.worst < 0.5 and slowest_ask < 0.5, (lag.worst, slowest_ask)
        assert (await run(runner, "log(1)\n")).state is ExecutionState.COMPLETED  # replaced


async def test_an_emergency_stop_during_a_memory_bomb(tmp_path: Path) -> None:
    async with scripting_bench(tmp_path, memory_limit_mb=4096) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        execution, worker = await started_worker(runner, BOMB)
        with trio.fail_after(10):  # the worker grows by ~0.4 GB/s while it builds the string
            while worker.memory_info().rss < 100 << 20:
                await trio.sleep(0.01)
        with trio.fail_after(5):  # the Mai Tai confirms its shutter in ~1.2 s
            await bench.system.emergency_stop("bomb e-stop")
        status = await finished(runner, execution, 5)
        assert (status.state, status.error) == (
            ExecutionState.ABORTED,
            "emergency stop: bomb e-stop",
        )
        assert 0 < status.worker_stop_ms <= STOP_BOUND * 1000, status.worker_end
        assert not worker.is_running()
        assert not await bench.system.reset_emergency_stop("test over")


async def test_a_busy_loop_is_ended_by_the_cpu_time_cap(tmp_path: Path) -> None:
    async with scripting_bench(tmp_path, budget=1_000_000_000, cpu_time_limit_s=1) as bench:
        status = await run(bench.system.ref(RUNNER_NAME), BUSY, timeout=60)
    assert status.state is ExecutionState.ERROR, status
    assert status.error == (
        "CPU time limit: the script computed for more than 1 s ([scripting] cpu_time_limit_s)"
    )
    assert status.worker_end == "died: signal 24 (SIGXCPU)" and status.cpu_time_limit_s == 1


@pytest.mark.parametrize("how", ["stop", "abort", "e-stop"])
async def test_stop_abort_and_estop_end_the_worker_within_100_ms(tmp_path: Path, how: str) -> None:
    async with scripting_bench(tmp_path, budget=1_000_000_000) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        execution, worker = await started_worker(runner, BUSY)
        if how == "e-stop":
            await bench.system.emergency_stop("test e-stop")
        else:
            await runner.ask(StopExecution(execution, force=how == "abort", reason="enough"))
        status = await finished(runner, execution, 10)
        expected = ExecutionState.STOPPED if how == "stop" else ExecutionState.ABORTED
        assert status.state is expected, status
        assert 0 < status.worker_stop_ms <= STOP_BOUND * 1000, status.worker_end
        assert not worker.is_running()
        output: tuple[str, ...] = await runner.ask(GetOutput(execution))
        assert any("ms after the stop" in line for line in output)
        if how == "e-stop":
            assert not await bench.system.reset_emergency_stop("test over")


async def test_a_worker_that_does_not_answer_is_killed_within_100_ms(tmp_path: Path) -> None:
    async with scripting_bench(tmp_path, budget=1_000_000_000) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        execution, worker = await started_worker(runner, BUSY)
        worker.suspend()  # SIGSTOP: it reads no stop frame and SIGTERM waits; SIGKILL does not
        await runner.ask(StopExecution(execution, reason="stuck"))
        status = await finished(runner, execution, 10)
        assert (status.state, status.error) == (ExecutionState.STOPPED, "stuck")
        assert status.worker_end.startswith("killed "), status.worker_end
        assert 0 < status.worker_stop_ms <= STOP_BOUND * 1000
        assert not worker.is_running()


async def test_a_killed_worker_is_reported_and_its_move_aborted(tmp_path: Path) -> None:
    async with scripting_bench(tmp_path) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        axis = bench.system.ref("esp300.axis1")
        execution, worker = await started_worker(
            runner, "move('esp300.axis1', 45)\nlog('arrived')\n"
        )
        await trio.sleep(0.8)  # well into a 9 s move (the axis answers nothing else meanwhile)
        worker.kill()
        status = await finished(runner, execution, 10)
        assert (status.state, status.error) == (
            ExecutionState.ERROR,
            "worker died: signal 9 (SIGKILL)",
        )
        assert await resting_position(axis) < 40  # nothing waits for the move: it is aborted
        assert (await run(runner, "log(1)\n")).state is ExecutionState.COMPLETED


async def test_a_worker_that_dies_idle_is_replaced(tmp_path: Path) -> None:
    async with scripting_bench(tmp_path) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        warm = await pool_when(runner, lambda s: s.ready >= 1)
        os.kill(warm.ready_pids[0], signal.SIGKILL)
        replaced = await pool_when(runner, lambda s: s.died_idle == 1 and s.ready >= 1)
        assert replaced.ready_pids[0] != warm.ready_pids[0]
        assert (await run(runner, "log(1)\n")).state is ExecutionState.COMPLETED


async def test_the_output_log_is_capped(tmp_path: Path) -> None:
    async with scripting_bench(tmp_path, output_lines=5, output_kib=2) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        status = await run(runner, "log('x' * 5000)\nfor i in range(100):\n    log(i)\n")
        output: tuple[str, ...] = await runner.ask(GetOutput(status.id))
        assert status.state is ExecutionState.COMPLETED and len(output) == 6
        assert output[0].endswith("… (5000 characters)") and len(output[0]) < 1100
        assert output[-1].startswith("(output truncated: at most 5 lines and 2 KiB")
        wide = await run(runner, "for i in range(100):\n    log('y' * 900)\n")
        output = await runner.ask(GetOutput(wide.id))
        assert len(output) == 3 and output[-1].startswith("(output truncated")  # 2 KiB


async def test_builtin_arguments_are_checked_against_the_signature(tmp_path: Path) -> None:
    async with scripting_bench(tmp_path) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        missing = await run(runner, "x = 1\nmove('esp300.axis1')\n")
        assert (missing.state, missing.line) == (ExecutionState.ERROR, 2)
        assert "move(): missing a required argument: 'position'" in missing.error
        unknown = await run(runner, "line_scan('esp300.axis1', 0, 1, 2, colour='red')\n")
        assert "unexpected keyword argument 'colour'" in unknown.error and unknown.line == 1
        function = await run(runner, "def f():\n    pass\nlog(f)\n")
        assert function.state is ExecutionState.ERROR and function.line == 3
        with pytest.raises(ActorError, match="JSON"):
            await runner.ask(StartScript(source="log(1)\n", parameters={"x": math.nan}))


async def test_the_status_shows_the_worker_next_to_its_caps(tmp_path: Path) -> None:
    async with scripting_bench(tmp_path, memory_limit_mb=512, cpu_time_limit_s=30) as bench:
        status = await run(bench.system.ref(RUNNER_NAME), "log(1)\n")
    message = execution_message(status)
    assert message.memory_limit_bytes == 512 << 20 and message.cpu_time_limit_s == 30
    assert message.memory_peak_bytes >= message.memory_rss_bytes > 0  # sampled at least once
    assert message.worker_pid == status.worker_pid and message.worker_end == "exited"
    client = Execution.from_pb(message)
    assert (client.memory_limit_bytes, client.worker_end) == (512 << 20, "exited")


def test_the_worker_imports_only_starlark_and_its_codec() -> None:
    probe = (
        "import sys, actors.scripting.worker\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('actors', 'runtime', 'supervisors', 'trio', 'psutil', 'numpy', 'h5py'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"import json\n{probe}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout) == [
        "actors",
        "actors.scripting",
        "actors.scripting.engine",
        "actors.scripting.protocol",
        "actors.scripting.worker",
    ]


def test_the_scripting_limits_are_configurable() -> None:
    bench = '[bench]\nname = "t"\n[[device]]\nid = "m"\ndriver = "newport_1830c"\nport = "sim"\n'
    table = (
        "[scripting]\nmemory_limit_mb = 256\ncpu_time_limit_s = 30\noutput_lines = 50\n"
        "output_kib = 64\npool_size = 2\n"
    )
    config = parse_config(bench + table, "lab.toml").scripting
    assert config == ScriptingConfig(
        memory_limit_mb=256, cpu_time_limit_s=30, output_lines=50, output_kib=64, pool_size=2
    )
    assert parse_config(bench, "lab.toml").scripting == ScriptingConfig(
        budget=10_000, memory_limit_mb=1024, cpu_time_limit_s=600, pool_size=1
    )
    for line, message in [
        ("memory_limit_mb = 8", "lab.toml: scripting.memory_limit_mb: 8 is outside 64..1048576"),
        ("pool_size = 9", "lab.toml: scripting.pool_size: 9 is outside 0..8"),
        ("cpu_time_limit_s = 1.5", "expected an int, got float 1.5"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(bench + f"[scripting]\n{line}\n", "lab.toml")
        assert message in str(caught.value)


async def test_closing_the_bench_ends_the_running_and_the_idle_workers(tmp_path: Path) -> None:
    async with scripting_bench(tmp_path, budget=1_000_000_000, pool_size=2) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        _, busy = await started_worker(runner, BUSY)
        idle = await pool_when(runner, lambda s: s.ready == 2)
    assert not busy.is_running()
    assert not any(psutil.pid_exists(pid) for pid in idle.ready_pids)


async def test_a_worker_is_capped_before_it_gets_its_job(tmp_path: Path) -> None:
    async with scripting_bench(
        tmp_path, budget=1_000_000_000, memory_limit_mb=300, cpu_time_limit_s=20
    ) as bench:
        runner = bench.system.ref(RUNNER_NAME)
        execution, worker = await started_worker(runner, BUSY)
        space = (300 << 20) + PARSE_STACK  # the cap, plus the parse stack's reservation
        assert worker.rlimit(psutil.RLIMIT_AS) == (space, space)
        assert worker.rlimit(psutil.RLIMIT_CORE) == (0, 0)
        soft, hard = worker.rlimit(psutil.RLIMIT_CPU)
        assert 20 <= soft <= 25 and hard == soft + 1  # counted from the job's start
        assert worker.nice() == 10
        await runner.ask(StopExecution(execution, force=True))
        await finished(runner, execution)
