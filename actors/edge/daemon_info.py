"""DaemonInfo service: version, uptime, the bench's devices, what this daemon serves."""

from __future__ import annotations

from grpclib.server import Stream

from benchd.v1 import daemon_grpc
from benchd.v1 import daemon_pb2 as pb

from ._context import EdgeContext
from ._guard import receive
from .estop import latch_message

#: Services this edge serves (frames and storage come with the camera and pipeline work).
FEATURES = (
    "hardware",
    "estop",
    "health",
    "presets",
    "daemon_info",
    "grpc.health.v1",
    "reflection",
    "preview",
)


class DaemonInfoServicer(daemon_grpc.DaemonInfoBase):
    def __init__(self, context: EdgeContext) -> None:
        self.ctx = context

    async def GetDaemonInfo(
        self, stream: Stream[pb.DaemonInfoRequest, pb.DaemonInfoResponse]
    ) -> None:
        await receive(stream)
        client = self.ctx.client(stream)
        features = list(FEATURES)
        if self.ctx.auth.enabled:
            features.append("auth")
        if self.ctx.tls:
            features.append("tls")
        await stream.send_message(
            pb.DaemonInfoResponse(
                version=self.ctx.version,
                uptime_s=self.ctx.uptime(),
                started_at=self.ctx.started_at,
                bench=self.ctx.bench,
                devices=self.ctx.device_names(),
                features=features,
                role=client.role.label,
                estop=latch_message(self.ctx.system, self.ctx.edge_name),
            )
        )
