"""Python client of the benchd daemon: blocking (:class:`Bench`), asyncio (:class:`AsyncBench`)
and trio (``client.trio_bench``), with typed results and errors; ``benchctl`` is its CLI.

It imports only the generated ``benchd.v1`` code, grpclib and protobuf (never the daemon), so it
installs and runs on any machine that can reach the daemon. See docs/client.md.

``client.trio_bench`` is a separate import on purpose: it imports trio-asyncio, which installs
an asyncio event-loop policy of its own, and plain asyncio users should not get that.
"""

from ._async import DEFAULT_PORT, AsyncBench, RetryPolicy, parse_address
from ._errors import (
    Aborted,
    AlreadyExists,
    BenchError,
    ConnectionLost,
    DeadlineExceeded,
    EmergencyStopLatched,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from ._sync import Bench, Device, Parameters, Presets, Subscription
from ._types import (
    ActorHealth,
    Alert,
    DaemonInfo,
    DeviceInfo,
    EmergencyStopEvent,
    EmergencyStopResult,
    EmergencyStopState,
    Failure,
    Health,
    MoveResult,
    ParameterInfo,
    ParameterValue,
    Position,
    Preset,
    PresetEntry,
    PresetInfo,
    Reading,
    ResetResult,
    StopAcknowledgement,
    SystemHealth,
)

__all__ = [
    "DEFAULT_PORT",
    "Aborted",
    "ActorHealth",
    "Alert",
    "AlreadyExists",
    "AsyncBench",
    "Bench",
    "BenchError",
    "ConnectionLost",
    "DaemonInfo",
    "DeadlineExceeded",
    "Device",
    "DeviceInfo",
    "EmergencyStopEvent",
    "EmergencyStopLatched",
    "EmergencyStopResult",
    "EmergencyStopState",
    "FailedPrecondition",
    "Failure",
    "Health",
    "InternalError",
    "InvalidArgument",
    "MoveResult",
    "NotFound",
    "ParameterInfo",
    "ParameterValue",
    "Parameters",
    "PermissionDenied",
    "Position",
    "Preset",
    "PresetEntry",
    "PresetInfo",
    "Presets",
    "Reading",
    "ResetResult",
    "RetryPolicy",
    "StopAcknowledgement",
    "Subscription",
    "SystemHealth",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "parse_address",
]
