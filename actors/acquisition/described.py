"""A plan from its description: the inverse of :meth:`Plan.describe`.

Scripts hold plans as dicts (Starlark has no Python objects), the run's manifest keeps the
description, and a plan crosses a process boundary as one; this turns such a dict back into a
:class:`Plan`, strictly: an unknown key, a value of the wrong type or a missing one is a
:class:`~.problems.PlanRejected` naming the key and what is allowed. Numbers are left to the
plan's own checks and the validator, which report every problem at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .plans import (
    MAX_AXES,
    MAX_POINTS,
    Adaptive,
    Count,
    Grid,
    GridAxis,
    Line,
    ListScan,
    Plan,
    PlanPath,
    Setting,
    Span,
    Tune,
    TuneMethod,
)
from .problems import PlanRejected, Problem, quote
from .suspenders import Condition, Suspender

COMMON = {
    "kind",
    "read",
    "frames",
    "camera",
    "settle",
    "dwell",
    "name",
    "metadata",
    "parameters",
    "suspenders",
    "bench_suspenders",
    "monitor",
    "live",
    "compression",
    "columns",
}
PATH_KEYS: dict[str, set[str]] = {
    "count": {"num", "interval", "duration"},
    "line": {"axes", "points", "relative"},
    "list": {"axes", "relative"},
    "grid": {"axes", "relative"},
    "adaptive": {
        "axis",
        "start",
        "stop",
        "detector",
        "target_delta",
        "min_step",
        "max_step",
        "max_points",
        "relative",
    },
    "tune": {"axis", "start", "stop", "points", "detector", "method", "relative", "move"},
}
SUSPENDER_KEYS = {"signal", "condition", "threshold", "resume", "settle", "poll"}


class _Reader:
    """Reads one mapping, collecting problems instead of stopping at the first."""

    def __init__(self, data: Mapping[str, Any], where: str, problems: list[Problem]) -> None:
        self.data = data
        self.where = where
        self.problems = problems

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            name = (
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            )
            self.problems.append(Problem(self._key(key), f"{quote(value)}: expected {name}"))
            return default
        return value

    def need(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in self.data:
            self.problems.append(Problem(self._key(key), "missing (required)"))
            return default
        return self.get(key, kind, default)

    def items(
        self, key: str, convert: Callable[[Any, str], Any], limit: int, required: bool = True
    ) -> tuple[Any, ...]:
        if key not in self.data:
            if required:
                self.problems.append(Problem(self._key(key), "missing (required)"))
            return ()
        value = self.data[key]
        if isinstance(value, str) or not isinstance(value, Sequence):
            self.problems.append(Problem(self._key(key), f"{quote(value)}: expected a list"))
            return ()
        if len(value) > limit:
            self.problems.append(Problem(self._key(key), f"at most {limit} entries"))
            return ()
        found = [convert(item, f"{self._key(key)}[{i}]") for i, item in enumerate(value)]
        return tuple(f for f in found if f is not None)

    def only(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                shown = key if isinstance(key, str) and len(key) <= 40 else quote(key)
                self.problems.append(
                    Problem(
                        self._key(str(shown)), f"unknown key; allowed: {', '.join(sorted(allowed))}"
                    )
                )


def plan_from_description(data: Mapping[str, Any]) -> Plan:
    """The plan a description (``Plan.describe()``'s form) stands for; PlanRejected if it
    cannot be one."""
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        raise PlanRejected((Problem("", f"a plan is a dict, got {type(data).__name__}"),))
    kind = data.get("kind")
    if kind not in PATH_KEYS:
        raise PlanRejected((Problem("kind", f"{quote(kind)}; one of {', '.join(PATH_KEYS)}"),))
    reader = _Reader(data, "", problems)
    reader.only(COMMON | PATH_KEYS[kind])
    path = _path(kind, reader)
    metadata = data.get("metadata", {})
    if not isinstance(metadata, Mapping):
        problems.append(Problem("metadata", "must be a dict"))
        metadata = {}
    try:
        metadata_json = json.dumps(dict(metadata))
    except (TypeError, ValueError) as error:
        problems.append(Problem("metadata", f"cannot be JSON: {error}"))
        metadata_json = "{}"
    given = data.get("read", ())
    if isinstance(given, str):
        read: tuple[str, ...] = (given,)
    else:
        read = tuple(reader.items("read", _string, 64, required=False))
    parameters = reader.get("parameters", dict, {})
    plan = Plan(
        path,  # type: ignore[arg-type]
        read=read,
        frames=reader.get("frames", int, 0),
        camera=reader.get("camera", str, ""),
        settle=reader.get("settle", float, 0.0),
        dwell=reader.get("dwell", float, 0.0),
        name=reader.get("name", str, ""),
        metadata_json=metadata_json,
        parameters=tuple(Setting(str(k), v) for k, v in list(parameters.items())[:64]),
        suspenders=reader.items("suspenders", lambda d, w: _suspender(d, w, problems), 16, False),
        bench_suspenders=reader.get("bench_suspenders", bool, True),
        monitor=reader.get("monitor", bool, False),
        live=reader.get("live", bool, False),
        compression=reader.get("compression", str, ""),
    )
    if problems:
        raise PlanRejected(tuple(problems))
    return plan


def _string(value: Any, where: str) -> str:
    return value if isinstance(value, str) else str(value)


def _path(kind: str, r: _Reader) -> PlanPath | None:
    problems = r.problems
    match kind:
        case "count":
            return Count(
                r.get("num", int, 1), r.get("interval", float, 0.0), r.get("duration", float, 0.0)
            )
        case "line":
            spans = r.items("axes", lambda d, w: _span(d, w, problems), MAX_AXES)
            return Line(spans, r.need("points", int, 0), r.get("relative", bool, False))
        case "list":
            pairs = r.items("axes", lambda d, w: _positions(d, w, problems), MAX_AXES)
            return ListScan(
                tuple(p[0] for p in pairs),
                tuple(p[1] for p in pairs),
                r.get("relative", bool, False),
            )
        case "grid":
            dims = r.items("axes", lambda d, w: _grid_axis(d, w, problems), MAX_AXES)
            return Grid(dims, r.get("relative", bool, False))
        case "adaptive":
            return Adaptive(
                r.need("axis", str, ""),
                r.need("start", float, 0.0),
                r.need("stop", float, 0.0),
                r.need("detector", str, ""),
                r.need("target_delta", float, 0.0),
                r.need("min_step", float, 0.0),
                r.need("max_step", float, 0.0),
                r.get("max_points", int, 0),
                r.get("relative", bool, False),
            )
    method = r.get("method", str, "centroid")
    if method not in {m.value for m in TuneMethod}:
        allowed = ", ".join(m.value for m in TuneMethod)
        problems.append(Problem("method", f"{quote(method)}; one of {allowed}"))
        method = "centroid"
    return Tune(
        r.need("axis", str, ""),
        r.need("start", float, 0.0),
        r.need("stop", float, 0.0),
        r.need("points", int, 0),
        r.need("detector", str, ""),
        TuneMethod(method),
        r.get("relative", bool, False),
        r.get("move", bool, True),
    )


def _mapping(value: Any, where: str, problems: list[Problem]) -> Mapping[str, Any] | None:
    if not isinstance(value, Mapping):
        problems.append(Problem(where, f"{quote(value)}: expected a dict"))
        return None
    return value


def _span(value: Any, where: str, problems: list[Problem]) -> Span | None:
    data = _mapping(value, where, problems)
    if data is None:
        return None
    r = _Reader(data, where, problems)
    r.only({"axis", "start", "stop"})
    return Span(r.need("axis", str, ""), r.need("start", float, 0.0), r.need("stop", float, 0.0))


def _grid_axis(value: Any, where: str, problems: list[Problem]) -> GridAxis | None:
    data = _mapping(value, where, problems)
    if data is None:
        return None
    r = _Reader(data, where, problems)
    r.only({"axis", "start", "stop", "points", "snake"})
    return GridAxis(
        r.need("axis", str, ""),
        r.need("start", float, 0.0),
        r.need("stop", float, 0.0),
        r.need("points", int, 0),
        r.get("snake", bool, False),
    )


def _positions(
    value: Any, where: str, problems: list[Problem]
) -> tuple[str, tuple[float, ...]] | None:
    data = _mapping(value, where, problems)
    if data is None:
        return None
    r = _Reader(data, where, problems)
    r.only({"axis", "positions"})
    numbers = r.items("positions", lambda v, w: v, MAX_POINTS)
    return r.need("axis", str, ""), tuple(numbers)


def _suspender(value: Any, where: str, problems: list[Problem]) -> Suspender | None:
    data = _mapping(value, where, problems)
    if data is None:
        return None
    r = _Reader(data, where, problems)
    r.only(SUSPENDER_KEYS)
    condition = r.need("condition", str, "below")
    if condition not in {c.value for c in Condition}:
        allowed = ", ".join(c.value for c in Condition)
        problems.append(Problem(f"{where}.condition", f"{quote(condition)}; one of {allowed}"))
        return None
    resume = data.get("resume")
    return Suspender(
        r.need("signal", str, ""),
        Condition(condition),
        r.get("threshold", (bool, int, float, str), 0.0),
        float(resume) if isinstance(resume, int | float) and not isinstance(resume, bool) else None,
        r.get("settle", float, 0.0),
        r.get("poll", float, 0.5),
    )
