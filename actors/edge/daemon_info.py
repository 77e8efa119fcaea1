"""DaemonInfo service: version, uptime, the bench's devices, what this daemon serves."""

from __future__ import annotations

from grpclib.server import Stream

from benchd.v1 import daemon_grpc
from benchd.v1 import daemon_pb2 as pb

from ._context import EdgeContext
from ._guard import receive

#: What this edge serves, one name per service or capability a client can rely on
#: (tests/actors/edge/test_daemon_info_features.py checks every servicer has its name here).
FEATURES = (
    "hardware",  # Hardware: devices, parameters, motion, readings
    "operations",  # Hardware: home, stop, motor on, zero (Device.operations)
    "frames",  # Hardware: camera acquisitions and StreamFrames
    "estop",  # EmergencyStop: stop, latch, reset, events
    "health",  # Health: the machine, every actor, alerts
    "presets",  # Preset: named parameter snapshots
    "daemon_info",  # DaemonInfo: this
    "runs",  # Storage: runs (NeXus files with manifest and end record), ListRuns
    "ring",  # Storage: the camera's shared-memory frame ring (GetRingInfo), tap statistics
    "scripts",  # Control: Starlark scripts in the daemon (upload, check, start, pause, stop)
    "scans",  # Scan: scans run by the plans executor (create, pause, resume, stop, events, table)
    "plans",  # Scan: plans as data (count, line, list, grid, adaptive, tune), ValidatePlan
    "preview",  # Preview: frames reduced in the daemon for a live view
    "bluesky",  # what client.bluesky needs: StopRun.complete, scan documents' data in runs
    "limits",  # every request bounded (sizes, rates, streams): docs/edge.md
    "grpc.health.v1",
    "reflection",
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
            )
        )
