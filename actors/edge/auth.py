"""Who may call what: bearer tokens mapped to roles, checked before any servicer runs.

Roles: an **observer** reads and streams; an **operator** may also set parameters, move,
load/save/delete presets and reset the emergency stop. Stopping (EmergencyStop, StopMotion)
makes the bench safer, so it is open to every authenticated client. The standard
``grpc.health.v1`` check is open to all (it says SERVING or not, nothing else).

Tokens come from the file named by ``[edge] tokens_file`` (TOML)::

    [[client]]
    name = "lab-gui"
    role = "operator"        # or "observer"
    token = "a long random string, at least 16 characters"

Without a tokens file every client is an operator named "local" — allowed only while the edge
listens on a loopback address, where a client already has an account on this machine. Listening
on any other address without a tokens file is a configuration error.

Error handling: a missing or malformed ``authorization: Bearer <token>`` header is
UNAUTHENTICATED; a known token whose role is too low is PERMISSION_DENIED; both messages say
what is needed. A bad tokens file raises ConfigError naming the file, the key and the reason.
"""

from __future__ import annotations

import enum
import hmac
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from grpclib.const import Status
from grpclib.events import RecvRequest
from grpclib.exceptions import GRPCError

from runtime.config import ConfigError, EdgeConfig

logger = logging.getLogger("actors.edge.auth")

MIN_TOKEN_LENGTH = 16


class Role(enum.IntEnum):
    OBSERVER = 1
    OPERATOR = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    role: Role


LOCAL = Client("local", Role.OPERATOR)

#: Methods open to every authenticated client (they stop things).
STOP_METHODS = frozenset(
    {
        "/benchd.v1.EmergencyStop/EmergencyStop",
        "/benchd.v1.Hardware/StopMotion",
    }
)
#: Methods that change the bench: operators only.
OPERATOR_METHODS = frozenset(
    {
        "/benchd.v1.Hardware/SetParameter",
        "/benchd.v1.Hardware/MoveAbsolute",
        "/benchd.v1.Hardware/MoveRelative",
        "/benchd.v1.EmergencyStop/ResetEmergencyStop",
        "/benchd.v1.Preset/SavePreset",
        "/benchd.v1.Preset/LoadPreset",
        "/benchd.v1.Preset/DeletePreset",
        "/benchd.v1.Hardware/StartStream",
        "/benchd.v1.Hardware/StopStream",
        "/benchd.v1.Hardware/SoftwareTrigger",
        "/benchd.v1.Storage/StartRun",
        "/benchd.v1.Storage/StopRun",
        "/benchd.v1.Control/UploadScript",
        "/benchd.v1.Control/StartScript",
        "/benchd.v1.Control/StopExecution",
        "/benchd.v1.Control/PauseExecution",
        "/benchd.v1.Control/ResumeExecution",
        "/benchd.v1.Scan/CreateScan",
        "/benchd.v1.Scan/StartScan",
        "/benchd.v1.Scan/PauseScan",
        "/benchd.v1.Scan/ResumeScan",
        "/benchd.v1.Scan/StopScan",
        "/benchd.v1.Scan/AbortScan",
        "/benchd.v1.Hardware/Home",
        "/benchd.v1.Hardware/MotorOn",
        "/benchd.v1.Hardware/Zero",
        # ValidatePlan, GetScan, ListScans, StreamScan, StreamScanEvents, GetScanTable: observers
        # Documents.StreamDocuments, Documents.GetRunDocuments: observers (they read)
    }
)
#: Methods that need no token at all.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


def required_role(method: str) -> Role | None:
    """The lowest role allowed to call ``method``; None: any authenticated client."""
    if method in STOP_METHODS:
        return None
    if method in OPERATOR_METHODS:
        return Role.OPERATOR
    return Role.OBSERVER


class Authenticator:
    """Maps a request's metadata to a :class:`Client` and checks its role for the method."""

    def __init__(self, tokens: Mapping[str, Client] | None) -> None:
        self._tokens = dict(tokens) if tokens is not None else None

    @property
    def enabled(self) -> bool:
        return self._tokens is not None

    @classmethod
    def from_config(cls, config: EdgeConfig) -> Authenticator:
        """Load the tokens file, or allow everyone on loopback; ConfigError otherwise."""
        if config.tokens_file is None:
            if not config.loopback:
                raise ConfigError(
                    config.source,
                    "edge.tokens_file",
                    f"listening on {config.listen} (not a loopback address) needs a tokens"
                    " file: without one every client would be an operator",
                )
            return cls(None)
        return cls(load_tokens(config.tokens_file))

    def client(self, metadata: Mapping[str, str] | None) -> Client:
        """Who sent the request (UNAUTHENTICATED if nobody we know)."""
        if self._tokens is None:
            return LOCAL
        header = (metadata or {}).get("authorization")
        scheme, _, token = (header or "").partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            raise GRPCError(
                Status.UNAUTHENTICATED,
                "this daemon needs a token: send metadata 'authorization: Bearer <token>'",
            )
        token = token.strip()
        for known, client in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return client
        raise GRPCError(Status.UNAUTHENTICATED, "unknown token; ask the daemon's administrator")

    def authorize(self, method: str, metadata: Mapping[str, str] | None) -> Client | None:
        """The client if it may call ``method``; raises UNAUTHENTICATED / PERMISSION_DENIED."""
        if method in OPEN_METHODS:
            return None
        client = self.client(metadata)
        needed = required_role(method)
        if needed is not None and client.role < needed:
            raise GRPCError(
                Status.PERMISSION_DENIED,
                f"{method.rsplit('/', 1)[-1]} needs the {needed.label} role;"
                f" {client.name!r} is an {client.role.label} (read and stream, and stop)",
            )
        return client

    async def on_request(self, event: RecvRequest) -> None:
        """grpclib ``RecvRequest`` listener: runs before the servicer, refuses what it must."""
        self.authorize(event.method_name, event.metadata)  # type: ignore[arg-type]


def load_tokens(path: Path) -> dict[str, Client]:
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the tokens file ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML ({exc})") from exc
    if set(data) - {"client"}:
        raise ConfigError(source, sorted(set(data) - {"client"})[0], "unknown key; allowed: client")
    clients = data.get("client", [])
    if not isinstance(clients, list) or not clients:
        raise ConfigError(source, "client", "expected one or more [[client]] tables")
    tokens: dict[str, Client] = {}
    names: set[str] = set()
    for index, entry in enumerate(clients):
        key = f"client[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(source, key, "expected a table")
        for extra in set(entry) - {"name", "role", "token"}:
            raise ConfigError(source, f"{key}.{extra}", "unknown key; allowed: name, role, token")
        for field in ("name", "role", "token"):
            if not isinstance(entry.get(field), str):
                raise ConfigError(source, f"{key}.{field}", "missing or not a string (required)")
        name, role, token = entry["name"], entry["role"], entry["token"]
        if role not in ("observer", "operator"):
            raise ConfigError(source, f"{key}.role", f"{role!r} is not observer or operator")
        if len(token) < MIN_TOKEN_LENGTH or token != token.strip():
            raise ConfigError(
                source,
                f"{key}.token",
                f"too short or padded: at least {MIN_TOKEN_LENGTH} characters, no spaces",
            )
        if token in tokens or name in names:
            raise ConfigError(source, key, f"duplicate name or token (client {name!r})")
        tokens[token] = Client(name, Role[role.upper()])
        names.add(name)
    if path.stat().st_mode & 0o077:
        logger.warning("%s is readable by other users; chmod 600 it", source)
    return tokens
