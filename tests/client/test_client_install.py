"""The client installs and runs with the base dependencies only; the daemon is an extra.

A subprocess gets a ``sitecustomize`` that blocks every module of the ``daemon`` extra (a meta
path finder refusing them, as if they were not installed), then imports the client, runs
``benchctl`` and starts ``python -m runtime``, which must exit naming the extra. pyproject's
lists are checked against what ``client/`` imports, so a new import cannot slip in unnoticed.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from runtime._requirements import DAEMON_MODULES, INSTALL

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: distribution name -> the module it installs (where they differ)
MODULE_OF = {
    "protobuf": "google",
    "pyserial": "serial",
    "starlark-pyo3": "starlark",
    "trio-asyncio": "trio_asyncio",
    "pyvisa-py": "pyvisa_py",
}
#: client modules that are optional extras and import their extra's modules
OPTIONAL = {"client/trio_bench.py": "trio", "client/bluesky": "bluesky"}

BLOCKER = f"""
import importlib.abc, sys

BLOCKED = {DAEMON_MODULES!r}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
"""


def distribution(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def module(requirement: str) -> str:
    name = distribution(requirement)
    return MODULE_OF.get(name, name.replace("-", "_"))


@pytest.fixture
def blocked_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    env.pop("BENCHD_ADDRESS", None)
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_client_imports_and_runs_without_the_daemon_extra(
    blocked_env: dict[str, str],
) -> None:
    probe = "import sys, trio\n"  # must fail: proves the blocker works
    assert "blocked" in run(blocked_env, "-c", probe).stderr
    code = (
        "import client, client._cli, client.plans\n"
        "from client import Bench, AsyncBench, plans\n"
        "plans.line('esp300.axis1', 0, 5, 11, read=['power_meter'])\n"
        "client._cli.build_parser()\n"
        "import sys\n"
        f"loaded = sorted(m for m in {DAEMON_MODULES!r} if m in sys.modules)\n"
        "print('daemon modules loaded:', loaded)\n"
    )
    done = run(blocked_env, "-c", code)
    assert done.returncode == 0, done.stderr
    assert "daemon modules loaded: []" in done.stdout
    help_text = run(blocked_env, "-m", "client", "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "watch" in help_text.stdout and "scan" in help_text.stdout
    # a real command: no daemon there, a plain message (no traceback), exit 8
    unreachable = run(
        blocked_env, "-m", "client", "--address", "127.0.0.1:9", "--wait", "0", "info"
    )
    assert unreachable.returncode == 8, unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    assert "cannot reach the daemon at 127.0.0.1:9" in unreachable.stderr


def test_scan_tables_name_their_extra_without_pyarrow(blocked_env: dict[str, str]) -> None:
    code = (
        "from client._async import _pyarrow\n"
        "try:\n"
        "    _pyarrow()\n"
        "except ModuleNotFoundError as error:\n"
        "    print(error)\n"
    )
    done = run(blocked_env, "-c", code)
    assert "pip install 'benchd[tables]'" in done.stdout, done.stderr


def test_the_daemon_without_its_extra_says_what_to_install(blocked_env: dict[str, str]) -> None:
    done = run(blocked_env, "-m", "runtime", "--duration", "0.1")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert INSTALL in done.stderr and "trio" in done.stderr
    # imported by a program (not run as the daemon): a ModuleNotFoundError with the same advice
    imported = run(blocked_env, "-c", "import runtime")
    assert imported.returncode == 1
    assert "ModuleNotFoundError" in imported.stderr and INSTALL in imported.stderr


def test_pyproject_base_is_the_client_and_the_daemon_an_extra() -> None:
    project = PYPROJECT["project"]
    base = {module(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    daemon = {module(r) for r in extras["daemon"]}
    assert base.isdisjoint(DAEMON_MODULES), base & set(DAEMON_MODULES)
    assert set(DAEMON_MODULES) <= daemon
    assert "benchd[daemon]" in extras["test"]  # the tests run the daemon
    # what client/ imports at module level is in the base (optional modules: their extra)
    allowed = base | {"client", "benchd"}
    for path in sorted((ROOT / "client").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        extra = next((e for prefix, e in OPTIONAL.items() if relative.startswith(prefix)), None)
        permitted = allowed | ({module(r) for r in extras[extra]} if extra else set())
        for name in top_level_imports(path):
            if name in sys.stdlib_module_names or name.startswith("_"):
                continue
            assert name in permitted, f"{relative} imports {name}, not a dependency of it"


def top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions: those are lazy, optional)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        nodes = [node]
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks are not imported at run time
            continue
        for item in nodes:
            if isinstance(item, ast.Import):
                names |= {a.name.split(".")[0] for a in item.names}
            elif isinstance(item, ast.ImportFrom) and item.level == 0 and item.module:
                names.add(item.module.split(".")[0])
    return names
