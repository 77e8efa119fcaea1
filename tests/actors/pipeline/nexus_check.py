"""Check a run file with NeXus's own validator (nexusformat's, against the NXDL base classes it
ships) and say what it found, each message with the path it is about.

Every group is validated on its own as well as the whole file: nexusformat's validator shares
one validator per class, so the messages of a group nested in a group of the same class (an
NXcollection in an NXcollection: /entry/readings/<device>/parameters) are lost when the file is
validated from the root only.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import h5py

#: What a benchd file may be warned about: its documented extensions to the base classes
#: (docs/pipeline.md, "The file"), and text-valued parameter logs (NXlog says NX_NUMBER).
ALLOWED_WARNINGS = {
    ("/entry/end_record", "This field is not defined in NXentry"),
    ("*/frame_number", "This field is not defined in NXdetector"),
    ("*/timestamp", "This field is not defined in NXdetector"),
    ("*/exposure_time", "This field is not defined in NXdetector"),
    ("*/reading/flags", "This field is not defined in NXlog"),
    ("*/value", "The field value is not a valid NX_NUMBER"),  # text parameters only: checked
}

_HEADER = re.compile(r"^(?:NX\w+|Field|Link): (/\S*)$")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.getMessage().strip()))


def nexus_messages(path: Path) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(errors, warnings) as (path, message) pairs."""
    from nexusformat.nexus import validate

    groups = ["/"]
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: groups.append(f"/{name}") if _is_group(item) else None)
    collect = _Collect()
    logger = validate.logger
    level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addHandler(collect)
    try:
        for group in groups:
            validate.validate_file(str(path), path=group)
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    errors: set[tuple[str, str]] = set()
    warnings: set[tuple[str, str]] = set()
    where = "/"
    for levelno, text in collect.records:
        header = _HEADER.match(text)
        if header:
            where = header.group(1)
        elif levelno == logging.ERROR:
            errors.add((where, text))
        elif levelno == logging.WARNING:
            warnings.add((where, text))
    return errors, warnings


def unexpected_warnings(warnings: set[tuple[str, str]]) -> set[tuple[str, str]]:
    def allowed(where: str, text: str) -> bool:
        for pattern, message in ALLOWED_WARNINGS:
            if text != message:
                continue
            if pattern == where or (pattern.startswith("*") and where.endswith(pattern[1:])):
                return True
        return False

    return {(w, t) for w, t in warnings if not allowed(w, t)}


def assert_valid_nexus(path: Path) -> set[tuple[str, str]]:
    """No error, no warning but the documented ones; the warnings."""
    errors, warnings = nexus_messages(path)
    assert not errors, sorted(errors)
    assert not unexpected_warnings(warnings), sorted(unexpected_warnings(warnings))
    return warnings


def _is_group(item: object) -> bool:
    return isinstance(item, h5py.Group)
