"""One run's Bluesky documents, composed with event-model from what its file holds.

Why one composer for live and replay: the documents a client streams while a run records and
those rebuilt later from its file (GetRunDocuments, the Tiled publisher) must say the same
thing. Both drive this class with the same inputs — the run's opening (:class:`RunOpened`),
what each flush made durable (:class:`RunCommitted`), its end record — and it makes the
documents with event-model's ``compose_run`` bundle, so every one is validated against the
schemas as it is made (a document that would not validate is a bug, raised here).

The streams of a run (data keys use ``_`` for ``.``, as client.bluesky does):

- ``primary`` — a plan's points, one event per point: where each axis arrived, each
  detector's reading, ``point``, ``frames`` / ``frame_index`` (where the point's frames are in
  the camera's stream), ``attempts``, ``suspended_s``.
- ``<camera>`` — the frames, one event per frame (``<camera>_frame_number``,
  ``<camera>_exposure_time``, the frame's timestamp) and the ``<camera>`` key itself external
  (``STREAM:``): one StreamResource pointing at the frames dataset in the run's HDF5 file, one
  StreamDatum per flush with the rows it made durable. Frames are never copied into documents.
- ``<device>`` — every reading of a Readable (``<device>``, ``<device>_flags``), in pages of
  up to :data:`PAGE_ROWS` rows per flush: the high-rate stream.
- ``<device>_parameters`` — a device's parameter changes during the run (sample and hold:
  each event carries every parameter of the device, the one that changed with its new time).
  The values at run start are in the start document's manifest and in each stream's
  ``configuration``; a device whose parameters never changed has no such stream.

The stop document's ``exit_status`` follows Bluesky's RunEngine: ``success`` when the run did
what it was asked (completed) or was stopped on request (stopped: like ``RE.stop()``, the data
up to then are good); ``abort`` when its plan was aborted (like ``RE.abort()``: the point in
flight was cut, the data before it are good); ``fail`` for every failure (incomplete,
e-stopped, disk full, write error, failed, crashed), with the outcome and the end record's
reason in ``reason``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from event_model import (
    ComposeDescriptorBundle,
    ComposeRunBundle,
    ComposeStreamResourceBundle,
    DocumentNames,
    compose_run,
    schema_validators,
)

from ..pipeline.nexus_file import ChannelKind, ChannelSpec, stored_values
from ..pipeline.run_feed import ChannelRows, FrameRows, RunCommitted, RunOpened

Document = tuple[str, dict[str, Any]]

PAGE_ROWS = 4096  # rows of one event page (bounds a document's size on the wire)
MIMETYPE = "application/x-hdf5"  # what bluesky's consolidators (Tiled) read

#: benchd plan kinds as Bluesky's plan names (relative forms prefixed ``rel_``).
PLAN_NAMES = {
    "count": "count",
    "line": "scan",
    "list": "list_scan",
    "grid": "grid_scan",
    "adaptive": "adaptive_scan",
    "tune": "tune_centroid",
}

#: exit_status per end-record status (see the module docstring).
SUCCESS = frozenset({"completed", "stopped"})

_INTEGER_COLUMNS = frozenset({"point", "frames", "frame_index", "attempts"})
_RESERVED = frozenset({"uid", "time", "plan_name", "plan_type", "plan_args", "hints", "motors"})
_RESERVED |= frozenset({"detectors", "num_points", "num_intervals", "benchd", "bench"})
_JSON_DTYPES = {"float": "number", "int": "integer", "bool": "boolean", "str": "string"}
_NUMPY_DTYPES = {"float": "<f8", "int": "<i8", "bool": "|b1", "str": "<U64"}


def data_key(name: str) -> str:
    """A Bluesky data key or stream name for a daemon name: ``.`` and ``/`` become ``_``."""
    return re.sub(r"[./]", "_", name)


def exit_status(end_record: Mapping[str, Any]) -> tuple[str, str]:
    """(exit_status, reason) of the stop document for an end record."""
    status = str(end_record.get("status", "failed"))
    reason = str(end_record.get("reason", ""))
    if status in SUCCESS:
        return "success", reason if status == "completed" else f"stopped: {reason}"
    if status == "aborted":
        return "abort", reason
    error = f" ({end_record['error']})" if end_record.get("error") else ""
    return "fail", f"{status}{error}: {reason}" if reason else f"{status}{error}"


@dataclass
class _Stream:
    bundle: ComposeDescriptorBundle
    keys: tuple[str, ...] = ()


@dataclass
class _DeviceParameters:
    """Sample and hold of one device's parameters."""

    specs: dict[str, ChannelSpec]  # data key -> channel
    values: dict[str, Any] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)  # rows seen per data key
    stream: _Stream | None = None


class RunComposer:
    """The documents of one run, in the order they are made."""

    def __init__(self, opened: RunOpened, *, origin: str, bench: str = "") -> None:
        self.opened = opened
        self.origin = origin.rstrip("/")
        self.bench = bench
        self.manifest = opened.manifest
        self.devices: Mapping[str, Any] = opened.manifest.get("devices") or {}
        self.metadata: Mapping[str, Any] = opened.manifest.get("metadata") or {}
        scan = self.metadata.get("scan")
        self.scan: Mapping[str, Any] = scan if isinstance(scan, Mapping) else {}
        self.specs = {spec.key: spec for spec in opened.channels}
        self.run: ComposeRunBundle | None = None
        self._streams: dict[str, _Stream] = {}
        self._names: set[str] = set()
        self._scan_rows: dict[str, list[tuple[float, Any]]] = {}
        self._parameters: dict[str, _DeviceParameters] = {}
        self._frames: tuple[_Stream, ComposeStreamResourceBundle] | None = None
        self.closed = False
        self.lost = 0

    # -- start --------------------------------------------------------------------------------

    def start(self) -> list[Document]:
        """The start document."""
        self.run = compose_run(
            uid=self.opened.uid, time=self.opened.start_time, metadata=self._start_metadata()
        )
        return [("start", dict(self.run.start_doc))]

    def _start_metadata(self) -> dict[str, Any]:
        scan = self.scan
        kind = str(scan.get("kind", ""))
        axes = self._axes()
        detectors = [data_key(d) for d in scan.get("read", ()) if isinstance(d, str)]
        if self.opened.layout is not None:
            detectors.append(data_key(self.opened.layout.detector))
        metadata: dict[str, Any] = {}
        for key, value in self.metadata.items():  # the user's metadata, as Bluesky users search
            name = data_key(str(key))
            if name not in _RESERVED and key != "scan":
                metadata[name] = bluesky_keys(value)
        if kind:
            base = PLAN_NAMES.get(kind, kind)
            plan_name = f"rel_{base}" if scan.get("relative") and kind != "count" else base
            metadata["plan_args"] = {k: v for k, v in scan.items() if k != "columns"}
        else:
            given = self.metadata.get("plan_name")
            plan_name = given if isinstance(given, str) and given else "record"
        metadata.update(
            plan_name=plan_name,
            plan_type="benchd",
            detectors=detectors,
            motors=[data_key(a) for a in axes],
            hints={"dimensions": self._dimensions(kind, axes)},
            bench=self.bench,
            benchd={
                "run_name": self.opened.name,
                "path": self.opened.path,
                "origin": self.origin,
                "manifest": bluesky_keys(self.manifest),
            },
        )
        scan_id = self.metadata.get("scan_id")
        if not isinstance(scan_id, int) or isinstance(scan_id, bool):
            number = _plan_number(self.manifest)
            if number:  # plan ids are never reused (acquisition/history.py): p7 is scan 7
                metadata["scan_id"] = number
        estimate = self.metadata.get("estimate")
        if isinstance(estimate, Mapping) and isinstance(estimate.get("points"), int):
            metadata["num_points"] = estimate["points"]
            metadata["num_intervals"] = max(0, estimate["points"] - 1)
        return _valid_start(metadata, self.opened.uid, self.opened.start_time)

    def _axes(self) -> list[str]:
        axes = self.scan.get("axes")
        if isinstance(axes, list):
            return [str(a["axis"]) for a in axes if isinstance(a, Mapping) and "axis" in a]
        axis = self.scan.get("axis")
        return [str(axis)] if isinstance(axis, str) and axis else []

    def _dimensions(self, kind: str, axes: Sequence[str]) -> list[Any]:
        if not axes:
            return [[["time"], "primary"]]
        if kind == "grid":
            return [[[data_key(a)], "primary"] for a in axes]
        return [[[data_key(a) for a in axes], "primary"]]

    # -- what a flush made durable ------------------------------------------------------------

    def commit(self, committed: RunCommitted) -> list[Document]:
        self.lost = max(self.lost, committed.lost)
        documents: list[Document] = []
        scan_rows = [c for c in committed.channels if c.spec.kind is ChannelKind.SCAN]
        parameter_rows = [c for c in committed.channels if c.spec.kind is ChannelKind.PARAMETER]
        for rows in committed.channels:
            if rows.spec.kind is ChannelKind.READING and rows.times:
                documents += self._readings(rows)
        if scan_rows:
            documents += self._points(scan_rows)
        if parameter_rows:
            documents += self._parameter_changes(parameter_rows)
        if committed.frames is not None and committed.frames.numbers:
            documents += self._frame_rows(committed.frames)
        return documents

    def _descriptor(
        self,
        name: str,
        keys: Mapping[str, dict[str, Any]],
        *,
        devices: Iterable[str] = (),
        hints: Mapping[str, Any] | None = None,
        time: float,
    ) -> tuple[_Stream, list[Document]]:
        assert self.run is not None
        stream_name = name
        while stream_name in self._names:
            stream_name = f"{stream_name}_"
        self._names.add(stream_name)
        object_keys: dict[str, list[str]] = {}
        for device in devices:
            prefix = data_key(device)
            object_keys[prefix] = [k for k in keys if k == prefix or k.startswith(f"{prefix}_")]
        bundle = self.run.compose_descriptor(
            name=stream_name,
            data_keys=dict(keys),
            configuration=self._configuration(devices),
            object_keys=object_keys,
            hints=dict(hints or {}),
            time=time,
            uid=f"{self.opened.uid}/descriptor/{stream_name}",
        )
        stream = _Stream(bundle, tuple(keys))
        return stream, [("descriptor", dict(bundle.descriptor_doc))]

    def _configuration(self, devices: Iterable[str]) -> dict[str, Any]:
        """Each device's parameters at run start (from the manifest), Bluesky's
        ``read_configuration`` form."""
        configuration: dict[str, Any] = {}
        for device in devices:
            record = self.devices.get(device) or {}
            snapshot = record.get("parameters") or {}
            infos = {p.get("name"): p for p in record.get("parameter_info") or ()}
            data: dict[str, Any] = {}
            stamps: dict[str, float] = {}
            described: dict[str, Any] = {}
            for name, value in snapshot.items():
                info = infos.get(name) or {}
                dtype = str(info.get("dtype", "str"))
                dtype = dtype if dtype in _JSON_DTYPES else "str"
                key = data_key(f"{device}_{name}")
                data[key] = _plain(value.get("value") if isinstance(value, Mapping) else value)
                stamps[key] = float(value.get("timestamp") or 0.0)
                described[key] = self._key(dtype, info.get("units"), f"{device}/{name}", info)
            if data:
                configuration[data_key(device)] = {
                    "data": data,
                    "timestamps": stamps,
                    "data_keys": described,
                }
        return configuration

    def _key(
        self,
        dtype: str,
        units: object,
        source: str,
        info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A data key: dtype, shape, units, source, limits and choices."""
        key: dict[str, Any] = {
            "dtype": _JSON_DTYPES.get(dtype, "string"),
            "dtype_numpy": _NUMPY_DTYPES.get(dtype, "<U64"),
            "shape": [],
            "source": f"{self.origin}/{source}",
        }
        if units:
            key["units"] = str(units)
        limits = (info or {}).get("limits")
        if isinstance(limits, list | tuple) and len(limits) == 2:
            low, high = (_limit(v) for v in limits)
            key["limits"] = {
                "control": {"low": low, "high": high},
                "display": {"low": low, "high": high},
            }
        choices = (info or {}).get("choices")
        if isinstance(choices, list | tuple) and choices:
            key["choices"] = [str(c) for c in choices]
        return key

    def _parameter_info(self, device: str, name: str) -> Mapping[str, Any]:
        record = self.devices.get(device) or {}
        for info in record.get("parameter_info") or ():
            if info.get("name") == name:
                return dict(info)
        return {}

    # readings ------------------------------------------------------------------------------

    def _readings(self, rows: ChannelRows) -> list[Document]:
        device = rows.spec.device
        key = data_key(device)
        documents: list[Document] = []
        stream = self._streams.get(rows.spec.key)
        if stream is None:
            keys = {
                key: self._key("float", rows.spec.units, device),
                f"{key}_flags": self._key("str", None, device),
            }
            stream, documents = self._descriptor(
                key, keys, devices=[device], hints={key: {"fields": [key]}}, time=rows.times[0]
            )
            self._streams[rows.spec.key] = stream
        flags = rows.flags or ("",) * len(rows.times)
        for start in range(0, len(rows.times), PAGE_ROWS):
            times = list(rows.times[start : start + PAGE_ROWS])
            data = {
                key: list(rows.values[start : start + PAGE_ROWS]),
                f"{key}_flags": list(flags[start : start + PAGE_ROWS]),
            }
            documents.append(self._page(stream, data, times))
        return documents

    def _page(self, stream: _Stream, data: dict[str, list[Any]], times: list[float]) -> Document:
        page = stream.bundle.compose_event_page(
            data=data,
            timestamps={k: times for k in data},
            time=times,
        )
        return "event_page", dict(page)

    # a plan's points -----------------------------------------------------------------------

    def _points(self, columns: Sequence[ChannelRows]) -> list[Document]:
        for rows in columns:
            self._scan_rows.setdefault(rows.spec.name, []).extend(
                zip(rows.times, rows.values, strict=True)
            )
        names = [n for n in self._scan_columns() if n in self._scan_rows]
        ready = min((len(self._scan_rows[n]) for n in names), default=0)
        if not ready:
            return []
        documents: list[Document] = []
        stream = self._streams.get("scan")
        if stream is None:
            stream, documents = self._primary(names, self._scan_rows[names[0]][0][0])
            self._streams["scan"] = stream
        for start in range(0, ready, PAGE_ROWS):
            stop = min(ready, start + PAGE_ROWS)
            times = [t for t, _ in self._scan_rows[names[0]][start:stop]]
            data = {
                data_key(n): [_column_value(n, v) for _, v in self._scan_rows[n][start:stop]]
                for n in names
            }
            documents.append(self._page(stream, data, times))
        for n in names:
            del self._scan_rows[n][:ready]
        return documents

    def _scan_columns(self) -> list[str]:
        columns = self.scan.get("columns")
        if isinstance(columns, list) and columns:
            return [str(c) for c in columns]
        return sorted({s.name for s in self.specs.values() if s.kind is ChannelKind.SCAN})

    def _primary(self, names: Sequence[str], time: float) -> tuple[_Stream, list[Document]]:
        axes = self._axes()
        detectors = [str(d) for d in self.scan.get("read", ()) if isinstance(d, str)]
        detector = self.scan.get("detector")
        if isinstance(detector, str) and detector and detector not in detectors:
            detectors.append(detector)
        keys: dict[str, dict[str, Any]] = {}
        devices: list[str] = []
        for name in names:
            if name in axes:
                keys[data_key(name)] = self._axis_key(name)
                devices.append(self._device_of(name))
            elif name in detectors:
                record = self.devices.get(name) or {}
                units = (record.get("info") or {}).get("units")
                keys[data_key(name)] = self._key("float", units, name)
                devices.append(name)
            else:
                dtype = "int" if name in _INTEGER_COLUMNS else "float"
                units = "s" if name == "suspended_s" else None
                keys[data_key(name)] = self._key(dtype, units, f"plans/{name}")
        hints = {data_key(d): {"fields": [data_key(d)]} for d in detectors if d in names}
        for axis in axes:
            hints.setdefault(data_key(axis), {"fields": [data_key(axis)]})
        return self._descriptor(
            "primary", keys, devices=dict.fromkeys(devices), hints=hints, time=time
        )

    def _device_of(self, axis: str) -> str:
        """The device an axis belongs to: itself (a Movable) or the device of a parameter."""
        if axis in self.devices:
            return axis
        return axis.rsplit(".", 1)[0]

    def _axis_key(self, axis: str) -> dict[str, Any]:
        if axis in self.devices:  # a Movable: its travel is its position parameter's limits
            info = self._parameter_info(axis, "position")
            units = (self.devices[axis].get("info") or {}).get("units") or info.get("units")
            return self._key("float", units, axis, info)
        device, _, parameter = axis.rpartition(".")
        info = self._parameter_info(device, parameter)
        return self._key("float", info.get("units"), f"{device}/{parameter}", info)

    # parameter changes ---------------------------------------------------------------------

    def _parameter_changes(self, columns: Sequence[ChannelRows]) -> list[Document]:
        documents: list[Document] = []
        changes: list[tuple[float, str, str, Any]] = []  # time, device, key, value
        for rows in columns:
            device = rows.spec.device
            key = data_key(f"{device}_{rows.spec.name}")
            held = self._parameters.setdefault(device, _DeviceParameters({}))
            held.specs[key] = rows.spec
            for index, (when, value) in enumerate(zip(rows.times, rows.values, strict=True)):
                if rows.first + index == 0 or key not in held.values:
                    held.values[key], held.times[key] = value, when  # the value at run start
                else:
                    changes.append((when, device, key, value))
        changes.sort(key=lambda change: change[0])
        pages: dict[str, list[tuple[float, dict[str, Any], dict[str, float]]]] = {}
        for when, device, key, value in changes:
            held = self._parameters[device]
            held.values[key], held.times[key] = value, when
            if held.stream is None:
                documents += self._parameter_stream(device, held, when)
            pages.setdefault(device, []).append((when, dict(held.values), dict(held.times)))
        for device, events in pages.items():
            stream = self._parameters[device].stream
            assert stream is not None
            for start in range(0, len(events), PAGE_ROWS):
                chunk = events[start : start + PAGE_ROWS]
                page = stream.bundle.compose_event_page(
                    data={k: [e[1][k] for e in chunk] for k in stream.keys},
                    timestamps={k: [e[2][k] for e in chunk] for k in stream.keys},
                    time=[e[0] for e in chunk],
                )
                documents.append(("event_page", dict(page)))
        return documents

    def _parameter_stream(
        self, device: str, held: _DeviceParameters, when: float
    ) -> list[Document]:
        """The stream of a device's parameters, made at its first change. Parameters the run
        watches but has seen no value of yet start from the manifest's value at run start."""
        snapshot = (self.devices.get(device) or {}).get("parameters") or {}
        for spec in self.specs.values():
            if spec.device != device or spec.kind is not ChannelKind.PARAMETER:
                continue
            key = data_key(f"{device}_{spec.name}")
            held.specs.setdefault(key, spec)
            if key not in held.values:
                start = snapshot.get(spec.name) or {}
                held.values[key] = stored_values(spec.dtype, [start.get("value")])[0]
                held.times[key] = float(start.get("timestamp") or self.opened.start_time)
        keys = {
            key: self._key(
                spec.dtype,
                spec.units,
                f"{device}/{spec.name}",
                self._parameter_info(device, spec.name),
            )
            for key, spec in sorted(held.specs.items())
        }
        stream, documents = self._descriptor(
            data_key(f"{device}_parameters"), keys, devices=[device], time=when
        )
        held.stream = stream
        return documents

    # frames --------------------------------------------------------------------------------

    def _frame_rows(self, frames: FrameRows) -> list[Document]:
        layout = self.opened.layout
        assert layout is not None and self.run is not None
        camera = data_key(layout.detector)
        documents: list[Document] = []
        if self._frames is None:
            rows, columns = layout.shape
            keys = {
                camera: {
                    **self._key("int", "counts", layout.detector),
                    "dtype": "array",
                    "dtype_numpy": "<u2",
                    "shape": [1, rows, columns],
                    "external": "STREAM:",
                },
                f"{camera}_frame_number": self._key("int", None, layout.detector),
                f"{camera}_exposure_time": self._key("float", "ms", layout.detector),
            }
            stream, documents = self._descriptor(
                camera,
                keys,
                devices=[layout.detector],
                hints={camera: {"fields": [camera]}},
                time=frames.timestamps[0],
            )
            assert self.run.compose_stream_resource is not None
            resource = self.run.compose_stream_resource(
                mimetype=MIMETYPE,
                uri=f"file://localhost{self.opened.path}",
                data_key=camera,
                parameters={
                    "dataset": self.opened.frames_dataset,
                    "chunk_shape": [1, rows, columns],
                    "swmr": True,
                },
                uid=f"{self.opened.uid}/{camera}",
            )
            documents.append(("stream_resource", dict(resource.stream_resource_doc)))
            self._frames = (stream, resource)
        stream, resource = self._frames
        count = len(frames.numbers)
        for start in range(0, count, PAGE_ROWS):
            stop = min(count, start + PAGE_ROWS)
            times = list(frames.timestamps[start:stop])
            counters = stream.bundle.compose_event_page.event_counters
            first_seq = counters[stream.bundle.descriptor_doc["name"]]
            data: dict[str, list[Any]] = {
                f"{camera}_frame_number": list(frames.numbers[start:stop]),
                f"{camera}_exposure_time": list(frames.exposures[start:stop]),
            }
            documents.append(self._page(stream, data, times))
            datum = resource.compose_stream_datum(
                indices={"start": frames.first + start, "stop": frames.first + stop},
                seq_nums={"start": first_seq, "stop": first_seq + stop - start},
                descriptor=stream.bundle.descriptor_doc,
            )
            documents.append(("stream_datum", dict(datum)))
        return documents

    # -- stop ---------------------------------------------------------------------------------

    def stop(self, end_record: Mapping[str, Any], *, lost: int = 0) -> list[Document]:
        """The stop document, from the end record (the file's one truth about the end)."""
        assert self.run is not None
        self.closed = True
        status, reason = exit_status(end_record)
        lost = max(lost, self.lost)
        if lost:
            reason += (
                f"; live documents incomplete ({lost} update(s) of this run were not delivered:"
                " GetRunDocuments rebuilds them whole from the file)"
            )
        end_time = end_record.get("end_time")
        stop = self.run.compose_stop(
            exit_status=status,  # type: ignore[arg-type]
            reason=reason,
            uid=f"{self.opened.uid}/stop",
            time=float(end_time) if isinstance(end_time, int | float) else None,
        )
        document = dict(stop)
        document["benchd"] = {"end_record": dict(end_record), "outcome": end_record.get("status")}
        schema_validators[DocumentNames.stop].validate(document)
        return [("stop", document)]


def bluesky_keys(value: Any) -> Any:
    """``value`` with every mapping key a start document accepts: event-model's schema
    refuses ``.`` and ``/`` in keys at any depth (device ``esp300.axis1`` becomes
    ``esp300_axis1``, as in data keys); tuples become lists."""
    if isinstance(value, Mapping):
        return {data_key(str(k)): bluesky_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [bluesky_keys(v) for v in value]
    return value


def _plan_number(manifest: Mapping[str, Any]) -> int:
    """7 for a run recorded by plan ``p7``; 0 if no plan recorded it."""
    run = manifest.get("run")
    recorded_by = run.get("recorded_by") if isinstance(run, Mapping) else None
    plan_id = recorded_by.get("plan_id") if isinstance(recorded_by, Mapping) else None
    if isinstance(plan_id, str) and plan_id[:1] == "p" and plan_id[1:].isdigit():
        return int(plan_id[1:][:18])
    return 0


def _valid_start(metadata: dict[str, Any], uid: str, time: float) -> dict[str, Any]:
    """The start metadata without the user's keys the start schema refuses (a ``scan_id``
    that is not an integer, a ``sample`` that is a number…): they stay in
    ``benchd.manifest.metadata``, where every user key is kept as given."""
    validator = schema_validators[DocumentNames.start]
    for _ in range(len(metadata) + 1):
        errors = list(validator.iter_errors({"uid": uid, "time": time, **metadata}))
        if not errors:
            return metadata
        bad = {str(e.absolute_path[0]) for e in errors if e.absolute_path}
        bad -= {"plan_name", "plan_type", "detectors", "motors", "hints", "benchd", "bench"}
        if not bad:
            break
        for key in bad:
            metadata.pop(key, None)
    validator.validate({"uid": uid, "time": time, **metadata})  # a bug of ours: raise it
    return metadata


def _limit(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _column_value(name: str, value: Any) -> Any:
    if name in _INTEGER_COLUMNS and isinstance(value, float) and math.isfinite(value):
        return int(value)
    return value
