"""What a run file records about the bench at run start: the manifest.

Why in every file: a data file must explain itself years later without the daemon's logs —
every parameter of every device (value, desired value, units, who set it), what each device is,
the bench config, the software versions and the user's run metadata. A device that cannot
answer is recorded as such (with the reason) rather than holding the run up or vanishing.
"""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import trio

from runtime import (
    ActorError,
    ActorSystem,
    BenchError,
    ListParameters,
    ParameterInfo,
    SnapshotParameters,
)

from ..capabilities import Capability, Describe, DeviceInfo

ASK_TIMEOUT = 2.0
VERSIONED = ("benchd", "trio", "numpy", "h5py", "hdf5plugin", "pyarrow", "pyserial", "pyvisa")


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One actor's state at run start, as far as it could tell."""

    name: str
    info: DeviceInfo | None
    parameters: tuple[ParameterInfo, ...]
    snapshot: Mapping[str, Mapping[str, Any]]
    error: str  # why the actor could not answer ("" if it did)

    @property
    def readable(self) -> bool:
        return self.info is not None and Capability.READABLE in self.info.capabilities


async def survey(system: ActorSystem, names: tuple[str, ...]) -> dict[str, DeviceRecord]:
    """Ask every actor for its description and parameters, all at once, each bounded."""
    records: dict[str, DeviceRecord] = {}

    async def one(name: str) -> None:
        ref = system.ref(name)
        info: DeviceInfo | None = None
        try:
            infos: tuple[ParameterInfo, ...] = await ref.ask(ListParameters(), timeout=ASK_TIMEOUT)
            snapshot = await ref.ask(SnapshotParameters(), timeout=ASK_TIMEOUT)
        except (BenchError, ActorError) as error:
            records[name] = DeviceRecord(name, None, (), {}, f"{type(error).__name__}: {error}")
            return
        try:
            info = await ref.ask(Describe(), timeout=ASK_TIMEOUT)
        except (BenchError, ActorError):
            info = None  # not a device (the recorder itself, a supervisor's helper)
        records[name] = DeviceRecord(name, info, infos, snapshot, "")

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(one, name)
    return {name: records[name] for name in names}


def software_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        import h5py  # noqa: PLC0415 (optional at this layer; the recorder has it)

        versions["hdf5"] = h5py.version.hdf5_version
    except ImportError:
        pass
    return versions


def build_manifest(
    *,
    run_name: str,
    metadata: Mapping[str, Any],
    devices: Mapping[str, DeviceRecord],
    config_text: str,
    config_source: str,
    start_time: float,
    options: Mapping[str, Any],
    recorded_by: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``recorded_by``: what recorded the run when it was not a plain StartRun (a plan: its
    id, origin and description), under ``run.recorded_by``."""
    # uid: the run's Bluesky start document's (actors/documents), kept with the file
    run: dict[str, Any] = {
        "name": run_name,
        "start_time": start_time,
        "options": dict(options),
        "uid": str(uuid.uuid4()),
    }
    if recorded_by:
        run["recorded_by"] = dict(recorded_by)
    return {
        "run": run,
        "metadata": dict(metadata),
        "devices": {
            name: {
                "info": asdict(record.info) if record.info else None,
                "parameters": {k: dict(v) for k, v in record.snapshot.items()},
                "parameter_info": [asdict(p) for p in record.parameters],
                "error": record.error,
            }
            for name, record in devices.items()
        },
        "config": {"source": config_source, "text": config_text},
        "software": software_versions(),
        "host": {"name": socket.gethostname(), "manifest_time": time.time()},
    }
