"""The gRPC edge: an actor serving ``proto/benchd/v1`` with grpclib on a trio-asyncio loop.

One servicer module per service (``hardware``, ``estop``, ``health``, ``preset``,
``daemon_info``; frames and storage will join them), one module mapping kernel errors to
statuses (``errors``), one for tokens and roles (``auth``). See docs/edge.md.
"""

from ._actor import EDGE_NAME, Edge, EdgeAddress, check_edge_config, probe_listen
from .auth import Authenticator, Client, Role
from .errors import grpc_error, status_of

__all__ = [
    "EDGE_NAME",
    "Authenticator",
    "Client",
    "Edge",
    "EdgeAddress",
    "Role",
    "check_edge_config",
    "grpc_error",
    "probe_listen",
    "status_of",
]
