"""Presets on disk: one JSON file per preset, written atomically.

A write goes to a temporary file in the same directory, is flushed and fsync'ed, then renamed
over the target (atomic on POSIX) and the directory is fsync'ed, so a crash or a full disk leaves
either the old preset or the new one, never half a file.

File format (``<name>.json``)::

    {"format": 1, "name": "...", "description": "...", "created": 1700000000.0,
     "bench": "simulated", "values": {"maitai": {"wavelength": 800.0}, ...}}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime import InsufficientResources, NotFoundError, ValidationError

from ..atomic_file import atomic_write, fsync_directory

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FORMAT = 1
#: Presets kept: each save of a new name adds a file, and ListPresets reads them all.
MAX_PRESETS = 1000


@dataclass(frozen=True, slots=True)
class StoredPreset:
    name: str
    description: str
    created: float
    bench: str
    values: dict[str, dict[str, Any]]  # device -> parameter -> plain value

    @property
    def parameter_count(self) -> int:
        return sum(len(v) for v in self.values.values())


class PresetExists(ValidationError):
    """Saving over an existing preset without ``overwrite``."""


class PresetStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory.expanduser()

    def _path(self, name: str) -> Path:
        if not NAME.match(name) or name.endswith(".tmp"):
            raise ValidationError(
                f"preset name {name!r} is not allowed: 1 to 64 letters, digits, '.', '_', '-',"
                " starting with a letter or digit"
            )
        return self.directory / f"{name}.json"

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json") if NAME.match(p.stem))

    def load(self, name: str) -> StoredPreset:
        path = self._path(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise NotFoundError(f"no preset named {name!r}; presets: {known}") from None
        except (OSError, ValueError) as exc:
            raise ValidationError(f"preset {name!r} cannot be read ({path}): {exc}") from exc
        try:
            values = data["values"]
            if data.get("format") != FORMAT or not isinstance(values, dict):
                raise TypeError("unknown format")
            return StoredPreset(
                name=name,
                description=str(data.get("description", "")),
                created=float(data.get("created", 0.0)),
                bench=str(data.get("bench", "")),
                values={str(d): dict(v) for d, v in values.items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValidationError(f"preset {name!r} ({path}) is not a preset file: {exc}") from exc

    def save(self, preset: StoredPreset, *, overwrite: bool) -> None:
        path = self._path(preset.name)
        if path.exists() and not overwrite:
            raise PresetExists(
                f"preset {preset.name!r} exists; set overwrite to replace it, or pick another name"
            )
        if not path.exists() and len(names := self.names()) >= MAX_PRESETS:
            raise InsufficientResources(
                f"{len(names)} presets are saved (at most {MAX_PRESETS}); delete one"
                " (DeletePreset) or save over an existing name with overwrite"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {
                "format": FORMAT,
                "name": preset.name,
                "description": preset.description,
                "created": preset.created,
                "bench": preset.bench,
                "values": preset.values,
            },
            indent=2,
            sort_keys=True,
        )
        atomic_write(path, text)

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise NotFoundError(f"no preset named {name!r}; presets: {known}") from None
        fsync_directory(self.directory)
