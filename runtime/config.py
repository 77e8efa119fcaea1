"""The bench description: TOML (stdlib tomllib) into typed, validated objects.

Strict on purpose: an unknown key is an error (a typo like ``baudrte`` must not silently fall
back to a default on a real instrument), and every error names the file, the key path and the
reason — ``lab.toml: device[2].port: expected a string, got 3``.

This module knows the *shape* of a bench (devices with id, driver, port, options); what each
driver's options mean is checked by the bench builder (``supervisors/bench.py``), which reports
through the same ConfigError so the message format is the same everywhere.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import BenchError

DEVICE_ID = re.compile(r"^[a-z][a-z0-9_]*$")
BUILT_IN = "<built-in simulated bench>"


class ConfigError(BenchError):
    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    id: str
    driver: str
    port: str  # a serial device path, or "sim" for the built-in simulator
    options: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""  # where it was declared, for error messages ("device[1]")

    @property
    def simulated(self) -> bool:
        return self.port == "sim"


def default_runs_directory() -> Path:
    return Path.home() / "benchd-runs"


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where runs go and how they are written (the ``[storage]`` table; all keys optional)."""

    directory: Path = field(default_factory=default_runs_directory)
    min_free_mb: float = 1024.0  # refuse, or end, a run below this much free disk space
    flush_interval: float = 1.0  # seconds; the most a crash can lose
    frame_queue: int = 128  # frames the writer may fall behind before frames are dropped
    ring_slots: int = 16  # frames in each camera's shared-memory ring (0: no ring)
    ring_directory: Path | None = None  # default /dev/shm (or /tmp without it)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    source: str  # the file it came from, for error messages
    name: str
    devices: tuple[DeviceConfig, ...]
    storage: StorageConfig = field(default_factory=StorageConfig)
    text: str = ""  # the file as written: every run's manifest carries it

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, key, reason)


def load_config(path: Path | str) -> BenchConfig:
    """Read and validate a bench file. Raises ConfigError (never KeyError/TypeError)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file ({exc.strerror})") from exc
    return parse_config(text, source)


def parse_config(text: str, source: str) -> BenchConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML ({exc})") from exc
    _only(data, {"bench", "device", "storage"}, "", source)
    bench = data.get("bench", {})
    _expect(bench, dict, "bench", source, "a table")
    _only(bench, {"name"}, "bench", source)
    name = bench.get("name", Path(source).stem)
    _expect(name, str, "bench.name", source, "a string")
    raw_devices = data.get("device", [])
    _expect(raw_devices, list, "device", source, "an array of [[device]] tables")
    if not raw_devices:
        raise ConfigError(source, "device", "no devices: add at least one [[device]] table")
    devices: list[DeviceConfig] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(raw_devices):
        key = f"device[{index}]"
        _expect(raw, dict, key, source, "a table")
        _only(raw, {"id", "driver", "port", "options"}, key, source)
        for required in ("id", "driver", "port"):
            if required not in raw:
                raise ConfigError(source, f"{key}.{required}", "missing (required)")
            _expect(raw[required], str, f"{key}.{required}", source, "a string")
        device_id = raw["id"]
        if not DEVICE_ID.match(device_id):
            raise ConfigError(
                source,
                f"{key}.id",
                f"{device_id!r} is not a valid id (lower-case letters, digits, _; a letter first)",
            )
        if device_id in seen:
            raise ConfigError(
                source, f"{key}.id", f"duplicate id {device_id!r} (also {seen[device_id]})"
            )
        seen[device_id] = key
        options = raw.get("options", {})
        _expect(options, dict, f"{key}.options", source, "a table")
        devices.append(DeviceConfig(device_id, raw["driver"], raw["port"], options, key))
    storage = _storage(data.get("storage", {}), source)
    return BenchConfig(source, name, tuple(devices), storage, text)


_STORAGE_NUMBERS: dict[str, tuple[type, float, float]] = {
    "min_free_mb": (float, 0.0, 1e9),
    "flush_interval": (float, 0.05, 60.0),
    "frame_queue": (int, 2, 100_000),
    "ring_slots": (int, 0, 1024),
}


def _storage(table: object, source: str) -> StorageConfig:
    _expect(table, dict, "storage", source, "a table")
    assert isinstance(table, dict)
    _only(table, {"directory", "ring_directory", *_STORAGE_NUMBERS}, "storage", source)
    values: dict[str, Any] = {}
    base = Path(source).parent if source != BUILT_IN else Path.cwd()
    for key in ("directory", "ring_directory"):
        if key in table:
            _expect(table[key], str, f"storage.{key}", source, "a path (string)")
            path = Path(table[key]).expanduser()
            values[key] = path if path.is_absolute() else (base / path).resolve()
    for key, (kind, low, high) in _STORAGE_NUMBERS.items():
        if key not in table:
            continue
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        _expect(
            value, kind, f"storage.{key}", source, f"a{'n' if kind is int else ''} {kind.__name__}"
        )
        if not low <= value <= high:
            raise ConfigError(source, f"storage.{key}", f"{value} is outside {low:g}..{high:g}")
        values[key] = value
    return StorageConfig(**values)


def _only(table: Mapping[str, Any], allowed: set[str], key: str, source: str) -> None:
    for name in table:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            raise ConfigError(
                source, where, f"unknown key; allowed here: {', '.join(sorted(allowed))}"
            )


def _expect(value: object, kind: type, key: str, source: str, described: str) -> None:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(
            source, key, f"expected {described}, got {type(value).__name__} {value!r}"
        )
