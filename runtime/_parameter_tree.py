"""Every actor's parameters, and the kernel messages that reach them.

Every actor answers ListParameters / GetParameter / SetParameter / SnapshotParameters /
WatchParameter through its mailbox without writing a handler: the gRPC edge, scripts and presets
all talk to any device the same way, and every write goes through the same validation,
e-stop latch and read-back path. The reads are queries (``Query``): they answer from the values
held in memory, at once, even while a long handler (a move, a warm-up) is in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ._brief import brief
from ._errors import NotFoundError, RequestError
from ._latch import Latch, latched_refusal, short_repr
from ._messages import KernelRequest, Query, Request
from ._observable import Source, Subscription
from ._parameter import Parameter, ParameterInfo, ParameterSnapshot

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ListParameters(Request[tuple], KernelRequest, Query):  # type: ignore[type-arg]
    """Reply: tuple[ParameterInfo, ...] in declaration order."""


@dataclass(frozen=True, slots=True)
class GetParameter(Request[ParameterSnapshot], KernelRequest, Query):
    name: str


@dataclass(frozen=True, slots=True)
class SetParameter(Request[ParameterSnapshot], KernelRequest):
    name: str
    value: Any
    source: Source = Source.USER


@dataclass(frozen=True, slots=True)
class SnapshotParameters(Request[dict], KernelRequest, Query):  # type: ignore[type-arg]
    """Reply: {name: plain dict of the snapshot}, ready for a manifest or a preset file."""


@dataclass(frozen=True, slots=True)
class WatchParameter(Request[Subscription], KernelRequest, Query):  # type: ignore[type-arg]
    """Reply: a latest-value subscription; it ends when the actor instance stops."""

    name: str


ParameterRequest = (
    ListParameters | GetParameter | SetParameter | SnapshotParameters | WatchParameter
)
PARAMETER_REQUESTS = (
    ListParameters,
    GetParameter,
    SetParameter,
    SnapshotParameters,
    WatchParameter,
)

DesiredValues = dict[str, tuple[Any, Source]]


class ParameterTree(Mapping[str, Parameter[Any]]):
    """An ordered, named collection of an actor's parameters (the ``Parameterized`` part).

    Names may be dotted (``readout.port``) to group related settings; the tree itself is flat.
    """

    def __init__(self) -> None:
        self._parameters: dict[str, Parameter[Any]] = {}

    def add(self, parameter: Parameter[Any]) -> Parameter[Any]:
        if parameter.name in self._parameters:
            raise ValueError(f"duplicate parameter name {parameter.name!r}")
        self._parameters[parameter.name] = parameter
        return parameter

    def __getitem__(self, name: str) -> Parameter[Any]:
        try:
            return self._parameters[name]
        except KeyError:
            known = ", ".join(self._parameters) or "none"
            raise NotFoundError(f"no parameter {name!r}; parameters: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._parameters

    def get(self, name: str, default: Any = None) -> Any:
        return self._parameters.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __len__(self) -> int:
        return len(self._parameters)

    def infos(self) -> tuple[ParameterInfo, ...]:
        return tuple(p.info() for p in self._parameters.values())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(p.snapshot()) for name, p in self._parameters.items()}

    def close(self) -> None:
        for parameter in self._parameters.values():
            parameter.close()

    # -- restart support ----------------------------------------------------------------------

    def desired_values(self) -> DesiredValues:
        """Values a user or script asked for, to be re-applied by the next instance."""
        return {
            name: (p.desired, p.desired_source)
            for name, p in self._parameters.items()
            if not p.read_only and p.desired_source in (Source.USER, Source.SCRIPT)
        }

    async def restore(self, desired: DesiredValues, *, owner: str) -> None:
        """Write saved desired values back and verify them by read-back.

        Hazardous parameters (emission, motion) are never restored automatically: after a
        crash a person decides whether the laser comes back on. A value that no longer
        validates or reads back differently is logged and skipped, so one bad setting cannot
        crash-loop the device; a transport error propagates (the restart failed).
        """
        for name, (value, source) in desired.items():
            parameter = self._parameters.get(name)
            if parameter is None or parameter.hazardous:
                continue
            try:
                await parameter.set(value, source=source)
            except RequestError as exc:
                logger.warning("%s: could not restore %s=%r: %s", owner, name, value, exc)
            else:
                logger.info("%s: restored %s=%r", owner, name, value)

    # -- kernel messages ----------------------------------------------------------------------

    async def answer(
        self, request: ParameterRequest, *, latched: Latch | None, owner: str = ""
    ) -> object:
        match request:
            case ListParameters():
                return self.infos()
            case GetParameter(name=name):
                return self[name].snapshot()
            case SetParameter(name=name, value=value, source=source):
                parameter = self[name]
                # While latched only a step toward the safe state (closing a shutter, emission
                # off) is written: a setting changed behind a stopped bench surprises whoever
                # resets it.
                if latched is not None and not parameter.makes_safe(parameter.validate(value)):
                    where = f"{owner}.{name}" if owner else name  # which device's shutter
                    raise latched_refusal(f"{where}={short_repr(value)}", latched)
                return await parameter.set(value, source=source)
            case SnapshotParameters():
                return self.snapshot()
            case WatchParameter(name=name):
                return self[name].subscribe()
        raise TypeError(f"not a parameter request: {brief(request)}")
