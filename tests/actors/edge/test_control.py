"""Control service over real loopback gRPC: upload, start, follow, stop; a script outlives
the client that started it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import trio
from grpclib.const import Status

from actors.pipeline.nexus_file import read_end_record
from benchd.v1 import control_pb2 as pb

from .harness import Client

DONE = (pb.EXECUTION_STATE_COMPLETED, pb.EXECUTION_STATE_ERROR, pb.EXECUTION_STATE_STOPPED,
        pb.EXECUTION_STATE_ABORTED)  # fmt: skip


async def wait_done(client: Client, execution: str, timeout: float = 30.0) -> pb.Execution:
    with trio.fail_after(timeout):
        while True:
            status: pb.Execution = await client.unary(
                client.control.GetExecution, pb.ExecutionRequest(id=execution)
            )
            if status.state in DONE:
                return status
            await trio.sleep(0.05)


async def follow(client: Client, execution: str) -> list[pb.ExecutionUpdate]:
    """Every update of StreamExecution until the server ends the stream."""

    async def read() -> list[pb.ExecutionUpdate]:
        async with client.control.StreamExecution.open() as stream:
            await stream.send_message(pb.ExecutionRequest(id=execution), end=True)
            return [update async for update in stream]

    return await client.call(read)


async def test_upload_start_follow_and_status(client: Client) -> None:
    bad = await client.unary(client.control.CheckScript, pb.CheckScriptRequest(source="if x\n"))
    assert not bad.ok and (bad.problems[0].line, bad.problems[0].column) == (1, 5)
    message = await client.fails(
        Status.INVALID_ARGUMENT,
        client.control.UploadScript,
        pb.UploadScriptRequest(name="bad", source="x = 1\ny = = 2\n"),
    )
    assert "line 2" in message
    source = "for i in range(params['n']):\n    log('step', i)\n    sleep(0.01)\nprogress(1)\n"
    info = await client.unary(
        client.control.UploadScript, pb.UploadScriptRequest(name="steps", source=source)
    )
    assert info.name == "steps" and info.size == len(source)
    listed = await client.unary(client.control.ListScripts, pb.ListScriptsRequest())
    assert [s.name for s in listed.scripts] == ["steps"]
    started = await client.unary(
        client.control.StartScript,
        pb.StartScriptRequest(name="steps", parameters_json=json.dumps({"n": 5})),
    )
    assert started.state == pb.EXECUTION_STATE_PENDING and json.loads(started.parameters_json) == {
        "n": 5
    }
    updates = await follow(client, started.id)
    lines = [line for u in updates for line in u.lines]
    assert [line.split(" ", 1)[1] for line in lines] == [f"step {i}" for i in range(5)]
    assert updates[-1].execution.state == pb.EXECUTION_STATE_COMPLETED
    final = await wait_done(client, started.id)
    assert final.state == pb.EXECUTION_STATE_COMPLETED and final.output_lines == 5
    listed_executions = await client.unary(
        client.control.ListExecutions, pb.ListExecutionsRequest()
    )
    assert [e.id for e in listed_executions.executions] == [started.id]
    failing = await client.unary(
        client.control.StartScript, pb.StartScriptRequest(source="x = 1\nmove('nope', 1)\n")
    )
    failed = await wait_done(client, failing.id)
    assert failed.state == pb.EXECUTION_STATE_ERROR and failed.line == 2
    assert "no device named 'nope'" in failed.error
    await client.fails(
        Status.NOT_FOUND, client.control.GetExecution, pb.ExecutionRequest(id="x999")
    )
    await client.fails(
        Status.FAILED_PRECONDITION, client.control.StopExecution,
        pb.StopExecutionRequest(id=failing.id),
    )  # fmt: skip


CLIENT_PROCESS = """
import asyncio, sys
from grpclib.client import Channel
from benchd.v1 import control_pb2 as pb
from benchd.v1.control_grpc import ControlStub

async def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    channel = Channel(host, int(port))
    started = await ControlStub(channel).StartScript(pb.StartScriptRequest(source=sys.argv[2]))
    print(started.id, flush=True)
    await asyncio.sleep(3600)  # killed long before

asyncio.run(main())
"""


async def test_a_scan_completes_after_its_client_process_is_killed(client: Client) -> None:
    source = "line_scan('esp300.axis3', 0, 1, 5, read=['power_meter'], dwell=0.2, name='killed')\n"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", CLIENT_PROCESS, client.address, source], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(20):
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(64)
        execution = line.decode().strip()
        running = await client.unary(client.control.GetExecution, pb.ExecutionRequest(id=execution))
        assert running.state in (pb.EXECUTION_STATE_PENDING, pb.EXECUTION_STATE_RUNNING)
    finally:
        process.kill()  # SIGKILL: no goodbye on the connection
        await process.wait()
    status = await wait_done(client, execution)
    assert status.state == pb.EXECUTION_STATE_COMPLETED, status.error
    (path,) = Path(client.bench.config.storage.directory).glob("*_killed.nxs")
    record = read_end_record(path)
    assert (record["status"], record["scan_points"]) == ("completed", 5)
    with h5py.File(path, "r") as f:
        assert list(f["entry/scan/point/value"]) == [0, 1, 2, 3, 4]


async def test_pause_and_resume_over_grpc(client: Client) -> None:
    source = "line_scan('esp300.axis2', 0, 0.6, 4, read='power_meter', dwell=0.05, name='pg')\n"
    started = await client.unary(client.control.StartScript, pb.StartScriptRequest(source=source))
    request = pb.ExecutionRequest(id=started.id)
    paused = await client.unary(client.control.PauseExecution, request)
    assert paused.pause_requested
    with trio.fail_after(10):
        while (await client.unary(client.control.GetExecution, request)).state != (
            pb.EXECUTION_STATE_PAUSED
        ):
            await trio.sleep(0.05)
    resumed = await client.unary(client.control.ResumeExecution, request)
    assert not resumed.pause_requested
    status = await wait_done(client, started.id)
    assert status.state == pb.EXECUTION_STATE_COMPLETED and status.points_done == 4, status
    assert status.points_total == 4 and status.run_path.endswith("_pg.nxs")
    assert set(status.positions) == {"esp300.axis2"}
    await client.fails(Status.FAILED_PRECONDITION, client.control.PauseExecution, request)
