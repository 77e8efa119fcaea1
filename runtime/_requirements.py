"""The daemon's own dependencies are the ``daemon`` extra: say so when they are missing.

``pip install benchd`` installs the client (``client``, ``benchctl``) only, so a laptop that
drives a bench never pulls h5py, pyarrow, starlark or the serial and VISA libraries. Importing
the kernel without them would fail on whichever import came first with a bare
``ModuleNotFoundError``; this check names every missing module and the command that installs
them. ``python -m runtime`` (and the ``benchd`` script) then exits with status 2 and that
message alone, no traceback; an ``import runtime`` in a program raises it as a
``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib.util
import os
import sys

#: The modules of the ``daemon`` extra (pyproject.toml), as imported.
DAEMON_MODULES = (
    "trio",
    "outcome",
    "serial",
    "pyvisa",
    "h5py",
    "hdf5plugin",
    "pyarrow",
    "starlark",
    "trio_asyncio",
    "psutil",
)
INSTALL = "pip install 'benchd[daemon]'"


def missing_modules() -> list[str]:
    """The daemon's modules that cannot be imported here."""
    absent = []
    for name in DAEMON_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            absent.append(name)
    return absent


def _started_as_daemon() -> bool:
    """``python -m runtime`` (argv[0] is "-m" while the package is imported) or ``benchd``."""
    program = sys.argv[0] if sys.argv else ""
    return program == "-m" or os.path.basename(program) in ("benchd", "benchd.exe")


def require_daemon_extra() -> None:
    absent = missing_modules()
    if not absent:
        return
    message = (
        f"the benchd daemon needs {', '.join(absent)}, not installed here (a plain"
        f" 'pip install benchd' is the client only): {INSTALL}"
    )
    if _started_as_daemon():
        print(f"benchd: {message}", file=sys.stderr)
        raise SystemExit(2)
    raise ModuleNotFoundError(message, name=absent[0])
