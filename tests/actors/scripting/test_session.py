"""The runner's end of a worker, against fake workers that misbehave on purpose.

Each fake is a few lines of Python run as the worker process, so the session's defences
(bounded frames, a strict protocol, the diagnosis of a death) meet a real pipe and a real exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import trio

from actors.scripting.builtins import BuiltinError
from actors.scripting.pool import Worker
from actors.scripting.protocol import (
    MAX_FRAME,
    ProtocolError,
    body_length,
    decode,
    encode,
)
from actors.scripting.session import Ending, Limits, Outcome, WorkerSession

PRELUDE = (
    "import os, sys, json, struct, signal, time\n"
    "out = sys.stdout.buffer\n"
    "def send(m):\n"
    "    b = json.dumps(m).encode(); out.write(struct.pack('>I', len(b)) + b); out.flush()\n"
)
JOB = {"type": "run", "source": "", "variables": {}, "budget": 10, "builtins": []}


async def run_fake(
    code: str,
    dispatch: Any = None,
    on_lost: Any = None,
    limits: Limits | None = None,
) -> Outcome:
    async def refuse(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise BuiltinError(f"{name} refused")

    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", PRELUDE + code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    session = WorkerSession(
        Worker(process), limits or Limits(), dispatch or refuse, on_lost=on_lost
    )
    with trio.fail_after(20):
        outcome = await session.run(JOB)
    assert process.returncode is not None  # never left running
    return outcome


def test_frames_are_bounded_and_must_be_json_objects() -> None:
    assert decode(encode({"type": "x", "v": [1, 2.5, None]})[4:]) == {
        "type": "x",
        "v": [1, 2.5, None],
    }
    with pytest.raises(ProtocolError, match="at most"):
        encode({"type": "x", "v": "y" * MAX_FRAME})
    with pytest.raises(ProtocolError, match="announced"):
        body_length((MAX_FRAME + 1).to_bytes(4, "big"))
    for body in (b"not json", b"[1, 2]", b'{"no": "type"}', b"\xff\xfe", b"[" * 100_000):
        with pytest.raises(ProtocolError):
            decode(body)


async def test_an_oversized_frame_ends_the_worker_before_its_body_is_read() -> None:
    outcome = await run_fake(
        "out.write(struct.pack('>I', 100 << 20)); out.flush(); time.sleep(60)\n"
    )
    assert outcome.ending is Ending.PROTOCOL and outcome.problem is not None
    assert "broke the protocol" in outcome.problem.message
    assert f"at most {MAX_FRAME}" in outcome.problem.message
    assert outcome.worker_end == "killed"


async def test_garbage_and_unknown_messages_end_the_worker() -> None:
    garbage = await run_fake(
        "out.write(struct.pack('>I', 5) + b'{{{{{'); out.flush(); time.sleep(60)\n"
    )
    assert garbage.ending is Ending.PROTOCOL
    unknown = await run_fake("send({'type': 'format_disk'}); time.sleep(60)\n")
    assert unknown.ending is Ending.PROTOCOL and "unexpected" in str(unknown.problem)
    shapeless = await run_fake("send({'type': 'call', 'name': 3}); time.sleep(60)\n")
    assert shapeless.ending is Ending.PROTOCOL


async def test_a_second_call_while_one_is_in_flight_is_refused_and_the_first_cut() -> None:
    lost: list[str] = []
    cancelled = trio.Event()

    async def slow(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async def on_lost(reason: str) -> None:
        lost.append(reason)

    outcome = await run_fake(
        "send({'type': 'call', 'name': 'sleep', 'args': [1], 'kwargs': {}})\n"
        "send({'type': 'call', 'name': 'sleep', 'args': [1], 'kwargs': {}})\n"
        "time.sleep(60)\n",
        dispatch=slow,
        on_lost=on_lost,
    )
    assert outcome.ending is Ending.PROTOCOL and "in flight" in str(outcome.problem)
    assert cancelled.is_set() and len(lost) == 1 and "protocol" in lost[0]


async def test_a_builtins_refusal_and_result_go_back_to_the_worker() -> None:
    async def dispatch(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name == "bad":
            raise BuiltinError("no such thing")
        return {"echo": [name, *args], "kw": kwargs}

    # The fake reports what it was answered as its "failed" message.
    code = (
        "inbox = sys.stdin.buffer\n"
        "def receive():\n"
        "    n = struct.unpack('>I', inbox.read(4))[0]; return json.loads(inbox.read(n))\n"
        "receive()\n"  # the job
        "send({'type': 'call', 'name': 'ok', 'args': [1, 'a'], 'kwargs': {'k': True}})\n"
        "first = receive()\n"
        "send({'type': 'call', 'name': 'bad', 'args': [], 'kwargs': {}, 'steps': 7})\n"
        "second = receive()\n"
        "send({'type': 'failed', 'kind': 'error', 'line': 3, 'column': 1,\n"
        "      'message': json.dumps([first, second]), 'steps': 9})\n"
    )
    outcome = await run_fake(code, dispatch=dispatch)
    assert outcome.ending is Ending.ERROR and outcome.steps == 9 and outcome.problem is not None
    assert outcome.problem.line == 3 and outcome.worker_end == "exited"
    first, second = json.loads(outcome.problem.message)
    assert first == {"type": "result", "value": {"echo": ["ok", 1, "a"], "kw": {"k": True}}}
    assert second == {"type": "error", "kind": "builtin", "message": "no such thing"}


async def test_deaths_are_diagnosed() -> None:
    status = await run_fake("sys.stderr.write('it went wrong\\n'); sys.exit(3)\n")
    assert status.ending is Ending.DIED
    assert str(status.problem).endswith("worker exited with status 3: it went wrong")
    killed = await run_fake("os.kill(os.getpid(), signal.SIGKILL)\n")
    assert killed.ending is Ending.DIED
    assert "worker died: signal 9 (SIGKILL)" in str(killed.problem)
    assert killed.worker_end == "died: signal 9 (SIGKILL)"
    memory = await run_fake(
        "sys.stderr.write('memory allocation of 8000000000 bytes failed\\n'); os.abort()\n",
        limits=Limits(memory_bytes=256 << 20),
    )
    assert memory.ending is Ending.MEMORY
    assert "memory limit: the script needed more than its 256 MiB" in str(memory.problem)
    cpu = await run_fake("os.kill(os.getpid(), signal.SIGXCPU)\n", limits=Limits(cpu_seconds=7))
    assert cpu.ending is Ending.CPU
    assert "CPU time limit: the script computed for more than 7 s" in str(cpu.problem)
