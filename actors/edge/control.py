"""Control service: upload, check, start, stop and follow Starlark scripts and scans.

Everything goes to the script runner actor (``actors/scripting/runner.py``). An execution lives
in the daemon, not in the call that started it: a client that disconnects (or is killed) leaves
its script running, and any client can follow or stop it by id.
"""

from __future__ import annotations

from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from benchd.v1 import control_grpc
from benchd.v1 import control_pb2 as pb
from runtime import Subscription

from ..pipeline.nexus_file import to_json
from ..scripting.engine import ScriptProblem
from ..scripting.runner import (
    RUNNER_NAME,
    CheckScript,
    ExecutionState,
    ExecutionStatus,
    GetExecution,
    GetOutput,
    ListExecutions,
    ListScripts,
    PauseExecution,
    ResumeExecution,
    ScriptInfo,
    StartScript,
    StopExecution,
    UploadScript,
    WatchExecution,
)
from ._context import EdgeContext
from ._convert import json_object
from ._guard import receive

STATES = {
    ExecutionState.PENDING: pb.EXECUTION_STATE_PENDING,
    ExecutionState.RUNNING: pb.EXECUTION_STATE_RUNNING,
    ExecutionState.COMPLETED: pb.EXECUTION_STATE_COMPLETED,
    ExecutionState.ERROR: pb.EXECUTION_STATE_ERROR,
    ExecutionState.STOPPED: pb.EXECUTION_STATE_STOPPED,
    ExecutionState.ABORTED: pb.EXECUTION_STATE_ABORTED,
    ExecutionState.PAUSED: pb.EXECUTION_STATE_PAUSED,
}
STREAM_CAPACITY = 64


def problem_message(problem: ScriptProblem) -> pb.ScriptProblem:
    return pb.ScriptProblem(
        line=problem.line,
        column=problem.column,
        message=problem.message,
        severity=problem.severity,
    )


def script_message(info: ScriptInfo) -> pb.ScriptInfo:
    return pb.ScriptInfo(
        name=info.name,
        size=info.size,
        uploaded=info.uploaded,
        problems=[problem_message(p) for p in info.problems],
    )


def execution_message(status: ExecutionStatus) -> pb.Execution:
    return pb.Execution(
        id=status.id,
        script=status.script,
        state=STATES[status.state],
        submitted=status.submitted,
        started=status.started,
        ended=status.ended,
        progress=status.progress,
        line=status.line,
        column=status.column,
        error=status.error,
        output_lines=status.output_lines,
        steps=status.steps,
        parameters_json=to_json(status.parameters),
        pause_requested=status.pause_requested,
        points_done=status.points_done,
        points_total=status.points_total,
        positions=dict(status.positions),
        run_path=status.run_path,
        worker_pid=status.worker_pid,
        memory_rss_bytes=status.memory_rss_bytes,
        memory_peak_bytes=status.memory_peak_bytes,
        memory_limit_bytes=status.memory_limit_bytes,
        cpu_time_s=status.cpu_time_s,
        cpu_time_limit_s=status.cpu_time_limit_s,
        worker_end=status.worker_end,
        worker_stop_ms=status.worker_stop_ms,
    )


def parameters(text: str) -> dict[str, Any]:
    return json_object(text, "parameters_json", '{"points": 11}')


class ControlServicer(control_grpc.ControlBase):
    def __init__(self, context: EdgeContext) -> None:
        self.ctx = context

    def _runner(self) -> Any:
        return self.ctx.ref(RUNNER_NAME)

    async def CheckScript(
        self, stream: Stream[pb.CheckScriptRequest, pb.CheckScriptResponse]
    ) -> None:
        request = await receive(stream)
        problems = await self.ctx.request(stream, self._runner(), CheckScript(request.source))
        await stream.send_message(
            pb.CheckScriptResponse(
                ok=not any(p.severity == "error" for p in problems),
                problems=[problem_message(p) for p in problems],
            )
        )

    async def UploadScript(self, stream: Stream[pb.UploadScriptRequest, pb.ScriptInfo]) -> None:
        request = await receive(stream)
        message = UploadScript(request.name, request.source)
        info = await self.ctx.request(stream, self._runner(), message)
        await stream.send_message(script_message(info))

    async def ListScripts(
        self, stream: Stream[pb.ListScriptsRequest, pb.ListScriptsResponse]
    ) -> None:
        await receive(stream)
        scripts = await self.ctx.request(stream, self._runner(), ListScripts())
        await stream.send_message(
            pb.ListScriptsResponse(scripts=[script_message(s) for s in scripts])
        )

    async def StartScript(self, stream: Stream[pb.StartScriptRequest, pb.Execution]) -> None:
        request = await receive(stream)
        message = StartScript(request.name, request.source, parameters(request.parameters_json))
        status = await self.ctx.request(stream, self._runner(), message)
        await stream.send_message(execution_message(status))

    async def StopExecution(self, stream: Stream[pb.StopExecutionRequest, pb.Execution]) -> None:
        request = await receive(stream)
        reason = request.reason or f"stopped by {self.ctx.client(stream).name}"
        message = StopExecution(request.id, force=request.force, reason=reason)
        status = await self.ctx.request(stream, self._runner(), message, default=30.0)
        await stream.send_message(execution_message(status))

    async def PauseExecution(self, stream: Stream[pb.ExecutionRequest, pb.Execution]) -> None:
        request = await receive(stream)
        status = await self.ctx.request(stream, self._runner(), PauseExecution(request.id))
        await stream.send_message(execution_message(status))

    async def ResumeExecution(self, stream: Stream[pb.ExecutionRequest, pb.Execution]) -> None:
        request = await receive(stream)
        status = await self.ctx.request(stream, self._runner(), ResumeExecution(request.id))
        await stream.send_message(execution_message(status))

    async def GetExecution(self, stream: Stream[pb.ExecutionRequest, pb.Execution]) -> None:
        request = await receive(stream)
        status = await self.ctx.request(stream, self._runner(), GetExecution(request.id))
        await stream.send_message(execution_message(status))

    async def ListExecutions(
        self, stream: Stream[pb.ListExecutionsRequest, pb.ListExecutionsResponse]
    ) -> None:
        await receive(stream)
        executions = await self.ctx.request(stream, self._runner(), ListExecutions())
        await stream.send_message(
            pb.ListExecutionsResponse(executions=[execution_message(e) for e in executions])
        )

    async def GetOutput(self, stream: Stream[pb.OutputRequest, pb.OutputResponse]) -> None:
        request = await receive(stream)
        lines = await self.ctx.request(stream, self._runner(), GetOutput(request.id, request.start))
        await stream.send_message(pb.OutputResponse(lines=list(lines)))

    async def StreamExecution(
        self, stream: Stream[pb.ExecutionRequest, pb.ExecutionUpdate]
    ) -> None:
        request = await receive(stream)
        runner = self._runner()
        # Unknown ids fail here, with NOT_FOUND, before the stream starts.
        await self.ctx.request(stream, runner, GetExecution(request.id))

        async def produce(push: Any) -> None:
            subscription: Subscription[ExecutionStatus] = await runner.ask(
                WatchExecution(request.id)
            )
            sent = 0
            async for sample in subscription:
                status = sample.value
                lines: tuple[str, ...] = ()
                if status.output_lines > sent:
                    lines = await runner.ask(GetOutput(request.id, sent))
                push(pb.ExecutionUpdate(
                    execution=execution_message(status), first_line=sent, lines=list(lines)
                ))  # fmt: skip
                sent += len(lines)
                if status.state.finished:
                    return
            raise GRPCError(Status.UNAVAILABLE, "the script runner restarted; stream again")

        async for item in self.ctx.bridge.stream(produce, capacity=STREAM_CAPACITY):
            await stream.send_message(item)
