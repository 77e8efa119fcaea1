"""benchd's actor kernel on trio: actors, two-lane mailboxes, refs, messages, parameters.

The layer everything else builds on; it imports nothing from ``supervisors``, ``actors`` or
any other package of the project (``python -m runtime``, the composition root, excepted).
"""

from ._requirements import require_daemon_extra

require_daemon_extra()  # the daemon's dependencies are an extra: name it if they are missing

# ruff: noqa: E402 (the check above comes first, so a missing extra is named, not a traceback)

from ._actor import Actor
from ._actor_loop import run_actor
from ._cell import ActorState, ActorStatistics, FailureRecord
from ._errors import (
    ActorError,
    ActorUnavailable,
    AskTimeout,
    BenchError,
    EmergencyStopLatched,
    InsufficientResources,
    Interrupted,
    NotFoundError,
    ReadbackMismatch,
    ReadOnlyError,
    ReplyTypeError,
    RequestError,
    SupervisorGaveUp,
    UnhandledMessage,
    ValidationError,
    WrongState,
    describe_failure,
)
from ._latch import Latch, latched_refusal, short_repr
from ._messages import (
    Abort,
    EmergencyStop,
    Hazardous,
    Message,
    Ping,
    PriorityMessage,
    Request,
    ResetEmergencyStop,
)
from ._observable import Observable, ObservableClosed, Sample, Source, Subscription
from ._parameter import Parameter, ParameterInfo, ParameterSnapshot
from ._parameter_tree import (
    GetParameter,
    ListParameters,
    ParameterTree,
    SetParameter,
    SnapshotParameters,
    WatchParameter,
)
from ._ref import DEFAULT_ASK_TIMEOUT, ActorRef
from ._reply import CallbackSlot
from ._system import ActorSystem, EmergencyStopReport, StopAcknowledgement

__all__ = [
    "DEFAULT_ASK_TIMEOUT",
    "Abort",
    "Actor",
    "ActorError",
    "ActorRef",
    "ActorState",
    "ActorStatistics",
    "ActorSystem",
    "ActorUnavailable",
    "AskTimeout",
    "BenchError",
    "CallbackSlot",
    "EmergencyStop",
    "EmergencyStopLatched",
    "EmergencyStopReport",
    "FailureRecord",
    "GetParameter",
    "Hazardous",
    "InsufficientResources",
    "Interrupted",
    "Latch",
    "ListParameters",
    "Message",
    "NotFoundError",
    "Observable",
    "ObservableClosed",
    "Parameter",
    "ParameterInfo",
    "ParameterSnapshot",
    "ParameterTree",
    "Ping",
    "PriorityMessage",
    "ReadOnlyError",
    "ReadbackMismatch",
    "ReplyTypeError",
    "Request",
    "RequestError",
    "ResetEmergencyStop",
    "Sample",
    "SetParameter",
    "SnapshotParameters",
    "Source",
    "StopAcknowledgement",
    "Subscription",
    "SupervisorGaveUp",
    "UnhandledMessage",
    "ValidationError",
    "WatchParameter",
    "WrongState",
    "describe_failure",
    "latched_refusal",
    "run_actor",
    "short_repr",
]
