"""Supervision trees: restart actors by policy, escalate when restarts do not help.

Built on the kernel in ``runtime``; ``open_actor_system`` is the embedding entry point.
"""

from ._specs import ActorSpec, Backoff, ChildSpec, Restart, Strategy, SupervisorSpec
from ._supervisor import ChildStatistics, Supervisor, SupervisorStatistics
from ._system import SupervisedSystem, open_actor_system

__all__ = [
    "ActorSpec",
    "Backoff",
    "ChildSpec",
    "ChildStatistics",
    "Restart",
    "Strategy",
    "SupervisedSystem",
    "Supervisor",
    "SupervisorSpec",
    "SupervisorStatistics",
    "open_actor_system",
]
