"""A real Tiled server on loopback for the publisher's tests (``tiled serve config``: a SQLite
catalog in the test's folder, so it survives a restart, configured as docs/facility.md's
``tiled.yml``: bluesky-tiled-plugins' JSON-seq exporter registered, so ``run.documents()``
works), and a reader in another process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

API_KEY = "tiledtestkey0123456789abcdef"
TILED = Path(sys.executable).parent / "tiled"
READER = Path(__file__).with_name("tiled_reader.py")


# The facility configuration of docs/facility.md, on SQLite and DuckDB (JSON strings quote paths).
CONFIG = """
authentication:
  single_user_api_key: "{key}"
trees:
  - path: /
    tree: catalog
    args:
      uri: "sqlite:///{catalog}"
      init_if_not_exists: true
      writable_storage:
        - "{data}"
        - "duckdb:///{tables}"
      readable_storage:
        - "{readable}"
media_types:
  BlueskyRun:
    application/json-seq: "bluesky_tiled_plugins.exporters:json_seq_exporter"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TiledServer:
    """``tiled serve config`` in a subprocess; readable storage: ``readable`` (the runs)."""

    def __init__(self, directory: Path, readable: Path) -> None:
        self.directory = directory
        self.readable = readable
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "tiled.log"

    def start(self, timeout: float = 60.0, *, wait: bool = True) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "data").mkdir(exist_ok=True)
        config = self.directory / "tiled.yml"
        config.write_text(
            CONFIG.format(
                key=API_KEY,
                catalog=self.directory / "catalog.db",
                data=self.directory / "data",
                tables=self.directory / "tables.duckdb",
                readable=self.readable,
            )
        )
        command = [
            str(TILED), "serve", "config", str(config),
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        with self.log.open("a") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"tiled serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise AssertionError(f"tiled serve did not answer:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


def read_from_another_process(url: str, *queries: dict[str, Any]) -> list[dict[str, Any]]:
    """Run tiled_reader.py (the Tiled client, as any machine would): one answer per query."""
    result = subprocess.run(
        [sys.executable, str(READER), url, API_KEY, json.dumps(list(queries))],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    answers: list[dict[str, Any]] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return answers
