"""docs/tutorial.md, run as written: a newcomer's first ten minutes stay true.

Every fenced block of the page is taken in order and nothing is skipped:

* ``sh install``: the install line. It is not re-run (a fresh venv takes minutes and the
  network; CI's fresh clone and venv install the project from its own files, and
  tests/client/test_client_install.py proves the client-only install): it is checked against
  pyproject instead: the extras it names exist, and it brings every module the page's Python
  imports.
* ``sh daemon``: run verbatim in a folder where ``.venv`` is this test's virtual environment,
  with ``HOME`` there (so runs go to its ``~/benchd-runs``) and ``BENCHD_LISTEN`` on a free
  loopback port; SIGINT at the end must stop it cleanly.
* ``sh``: each line runs verbatim in bash there, with ``BENCHD_ADDRESS`` naming the daemon; it
  must exit 0, or the code its ``# exit N`` comment says.
* ``python``: run verbatim with ``.venv/bin/python``.
* ``text``: what the block before it prints: each line must appear in that output; ``…``
  stands for any text (a path, a count, a time).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")

#: distribution -> module, where they differ
MODULE_OF = {"protobuf": "google", "pyserial": "serial", "starlark-pyo3": "starlark"}


@dataclass(frozen=True)
class Block:
    kind: str  # "sh", "sh install", "sh daemon", "python", "text"
    body: str


def blocks() -> list[Block]:
    return [Block(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(TUTORIAL.read_text())]


def expect(text: Block, output: str) -> None:
    """Each line of ``text`` in ``output``, "…" matching anything."""
    for line in text.body.splitlines():
        if not line.strip():
            continue
        pattern = ".*?".join(re.escape(part) for part in line.strip().split("…"))
        assert re.search(pattern, output), f"{line!r} not in the output:\n{output}"


def requirement_module(requirement: str) -> str:
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()
    return MODULE_OF.get(name, name.replace("-", "_"))


def check_install_line(line: str, python_blocks: list[str]) -> None:
    assert line.startswith("python3 -m venv .venv && .venv/bin/pip install -e "), line
    words = shlex.split(line.split("&&", 1)[1])
    target = next(w for w in words if w.startswith(".["))
    extras = target.removeprefix(".[").removesuffix("]").split(",")
    packages = [w for w in words[words.index(target) + 1 :] if not w.startswith("-")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    defined = project["optional-dependencies"]
    assert set(extras) <= set(defined), f"no such extra: {set(extras) - set(defined)}"
    installed = {requirement_module(r) for r in project["dependencies"]}
    for extra in extras:
        installed |= {requirement_module(r) for r in defined[extra]}
    installed |= {requirement_module(p) for p in packages} | {"client", "benchd"}
    for source in python_blocks:
        for node in ast.walk(ast.parse(source)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            for name in names:
                if name not in sys.stdlib_module_names:
                    assert name in installed, f"the page imports {name}; the install omits it"


def start_daemon(
    command: str, folder: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str, Path]:
    log = folder / "daemon.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=folder, env=env, stdout=sink, stderr=sink
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if "benchd serving gRPC on " in line:
                return process, line.rsplit(" ", 1)[1], log
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the daemon did not start:\n{log.read_text()}")


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    found = blocks()
    kinds = [b.kind for b in found]
    assert kinds.count("sh install") == 1 and kinds.count("sh daemon") == 1
    assert kinds.count("python") >= 1 and kinds.count("sh") >= 4
    check_install_line(
        next(b for b in found if b.kind == "sh install").body.strip(),
        [b.body for b in found if b.kind == "python"],
    )

    folder = tmp_path / "first-day"
    folder.mkdir()
    (folder / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BENCHD_", "PYTEST", "COV_"))
    }
    env.update(HOME=str(folder), BENCHD_LISTEN="127.0.0.1:0", COLUMNS="160")
    daemon_command = next(b for b in found if b.kind == "sh daemon").body.strip()
    daemon, address, log = start_daemon(daemon_command, folder, env)
    env["BENCHD_ADDRESS"] = address
    try:
        output = ""
        for index, block in enumerate(found):
            match block.kind:
                case "sh":
                    output = ""
                    for line in block.body.splitlines():
                        if not line.strip():
                            continue
                        wanted = EXIT.search(line)
                        done = subprocess.run(
                            ["bash", "-c", line], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=120,
                        )  # fmt: skip
                        code = int(wanted.group(1)) if wanted else 0
                        assert done.returncode == code, (line, done.stdout, done.stderr)
                        output += done.stdout + done.stderr
                case "python":
                    script = folder / f"step{index}.py"
                    script.write_text(block.body)
                    done = subprocess.run(
                        [str(folder / ".venv" / "bin" / "python"), script.name], cwd=folder,
                        env=env, capture_output=True, text=True, timeout=120,
                    )  # fmt: skip
                    assert done.returncode == 0, (done.stdout, done.stderr)
                    output = done.stdout + done.stderr
                case "text":
                    expect(block, output)
        plot = folder / "peak-scan.png"
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        runs = list((folder / "benchd-runs").glob("*.nxs"))
        assert {p.name.split("_", 1)[1] for p in runs} >= {"first-light.nxs", "peak-scan.nxs"}
    finally:
        daemon.send_signal(signal.SIGINT)  # step 8: Ctrl-C
        try:
            assert daemon.wait(timeout=60) == 0, log.read_text()
        finally:
            daemon.kill()
    text = log.read_text()
    assert text.rstrip().endswith("benchd stopped cleanly"), text
    assert "Traceback" not in text, text
