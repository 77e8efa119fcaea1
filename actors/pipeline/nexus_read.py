"""Reading a run file back: its end record, manifest, layout, channels, scan table and audit
trail — by the bench's names, wherever the layout put them.

Why helpers rather than paths: group names are NeXus names (``esp300.axis1`` is stored as
``esp300_axis1``, see :mod:`.nexus_names`), and the layout has changed before; every reader in
the daemon (ListRuns, the crash repair, the event-model documents) and outside it goes through
these, so a file keeps being read the same way. Each call opens the file read-only in SWMR mode,
so it works on a run still being recorded (it sees what was flushed) and on a closed one alike.
Files written before ``layout_json`` existed (dotted group names) are read by walking them.

Error handling: OSError if the file cannot be opened; KeyError naming what is not in the file.
Frames compressed with bitshuffle-LZ4 need ``import hdf5plugin`` in a reader that reads pixels
(these helpers read no pixels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from .audit_trail import AuditEntry

END_RECORD = "/entry/end_record"
MANIFEST = "/entry/manifest/json"
METADATA = "/entry/manifest/metadata_json"
LAYOUT = "/entry/manifest/layout_json"
AUDIT = "/entry/audit"
AUDIT_COLUMNS = ("time", "who", "role", "what", "result")


@dataclass(frozen=True, slots=True)
class Column:
    """One recorded series: Unix times, values (text as ``str``), the value's units, and a
    reading's quality flags ("" for none; empty for parameters and scan columns)."""

    name: str
    times: npt.NDArray[np.float64]
    values: npt.NDArray[Any]
    units: str
    flags: tuple[str, ...] = ()


def read_end_record(path: Path) -> dict[str, Any]:
    """The end record of a run file (``{"status": "running"}`` if the run never ended)."""
    with h5py.File(path, "r", swmr=True) as file:
        raw = bytes(file[END_RECORD][()]).rstrip(b" ")
    result: dict[str, Any] = json.loads(raw)
    return result


def read_manifest(path: Path) -> dict[str, Any]:
    """Everything the run recorded about the bench at its start (docs/pipeline.md)."""
    with h5py.File(path, "r", swmr=True) as file:
        result: dict[str, Any] = json.loads(file[MANIFEST][()])
    return result


def read_metadata(path: Path) -> dict[str, Any]:
    """The user's run metadata."""
    with h5py.File(path, "r", swmr=True) as file:
        result: dict[str, Any] = json.loads(file[METADATA][()])
    return result


def read_layout(path: Path) -> dict[str, Any]:
    """Where everything is, by the bench's names::

    {"detector": "/entry/instrument/camera",          # absent without frames
     "devices": {"esp300.axis1": "/entry/instrument/esp300_axis1", ...},
     "readings": {"power_meter": "/entry/readings/power_meter/reading", ...},
     "parameters": {"maitai": {"wavelength": "/entry/readings/maitai/parameters/..."}},
     "scan": {"esp300.axis1": "/entry/scan/esp300_axis1", ...},
     "audit": "/entry/audit",
     "default_plot": "/entry/data"}                    # None: nothing to plot
    """
    with h5py.File(path, "r", swmr=True) as file:
        return file_layout(file)


def file_layout(file: h5py.File) -> dict[str, Any]:
    """:func:`read_layout` of a file already open."""
    if LAYOUT in file:
        result: dict[str, Any] = json.loads(file[LAYOUT][()])
        return result
    return _walk(file)


def _walk(file: h5py.File) -> dict[str, Any]:
    """The layout of a file written before layout_json (its group names are the bench's)."""
    entry = file["entry"]
    layout: dict[str, Any] = {"devices": {}, "readings": {}, "parameters": {}, "scan": {}}
    for name, group in entry.get("instrument", {}).items():
        layout["devices"][name] = group.name
        if _text(group.attrs.get("NX_class", "")) == "NXdetector":
            layout["detector"] = group.name
    for name, group in entry.get("readings", {}).items():
        if "reading" in group:
            layout["readings"][name] = group["reading"].name
        for parameter, log in group.get("parameters", {}).items():
            layout["parameters"].setdefault(name, {})[parameter] = log.name
    for name, group in entry.get("scan", {}).items():
        layout["scan"][name] = group.name
    layout["audit"] = AUDIT if AUDIT in file else None
    default = _text(entry.attrs.get("default", ""))
    layout["default_plot"] = f"/entry/{default}" if default and default in entry else None
    return layout


def frames_path(path: Path) -> str | None:
    """The HDF5 path of the frames (``data[n, y, x]``), None if the run has none."""
    layout = read_layout(path)
    detector = layout.get("detector")
    return f"{detector}/data" if detector else None


def read_channel(path: Path, device: str, parameter: str | None = None) -> Column:
    """A device's readings, or (``parameter``) one parameter's changes."""
    with h5py.File(path, "r", swmr=True) as file:
        layout = file_layout(file)
        if parameter is None:
            where = layout["readings"].get(device)
            what = f"readings of {device!r}"
        else:
            where = layout["parameters"].get(device, {}).get(parameter)
            what = f"changes of {device}.{parameter}"
        if where is None:
            raise KeyError(f"{path.name} has no {what}")
        return _column(file[where], parameter or device)


def read_scan_table(path: Path) -> dict[str, Column]:
    """A scan's table: every column by its declared name, in order (empty without a scan)."""
    with h5py.File(path, "r", swmr=True) as file:
        layout = file_layout(file)
        return {name: _column(file[where], name) for name, where in layout["scan"].items()}


def read_audit(path: Path) -> list[AuditEntry]:
    """The audit trail: every mutating request made while the run recorded (empty in files
    written before the audit trail existed)."""
    with h5py.File(path, "r", swmr=True) as file:
        if AUDIT not in file:
            return []
        group = file[AUDIT]
        columns = {name: group[name][:] for name in AUDIT_COLUMNS}
    rows = min(len(values) for values in columns.values())
    return [
        AuditEntry(
            time=float(columns["time"][i]),
            who=_text(columns["who"][i]),
            role=_text(columns["role"][i]),
            what=_text(columns["what"][i]),
            result=_text(columns["result"][i]),
        )
        for i in range(rows)
    ]


def _column(group: h5py.Group, name: str) -> Column:
    times = group["time"][:]
    values = group["value"][:]
    rows = min(len(times), len(values))  # a run being written may be between two appends
    if values.dtype.kind == "S":
        values = np.array([_text(v) for v in values[:rows]], dtype=object)
    flags: tuple[str, ...] = ()
    if "flags" in group:
        flags = tuple(_text(f) for f in group["flags"][:rows])
    units = _text(group["value"].attrs.get("units", ""))
    return Column(name, times[:rows], values[:rows], units, flags)


def _text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode(errors="replace")
    return str(value)
