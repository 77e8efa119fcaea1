"""A simulated bench with the gRPC edge on loopback, in this trio run, for the client tests.

The client under test runs where users run it: the blocking ``Bench`` in a worker thread
(``trio.to_thread``) with its own asyncio loop thread, the trio adapter on this trio run. Every
call crosses a real socket, HTTP/2 and the edge's servicers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.edge import EDGE_NAME, Edge, EdgeAddress
from runtime.config import EdgeConfig, StorageConfig
from supervisors import ActorSpec
from supervisors.bench import SIMULATED_BENCH, Bench, open_bench, simulated_bench_config

OPERATOR = "operator-token-0123456789"
OBSERVER = "observer-token-0123456789"


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(
        f'[[client]]\nname = "gui"\nrole = "observer"\ntoken = "{OBSERVER}"\n'
        f'[[client]]\nname = "alice"\nrole = "operator"\ntoken = "{OPERATOR}"\n'
    )
    path.chmod(0o600)
    return path


@contextlib.asynccontextmanager
async def serve_bench(
    tmp_path: Path,
    *,
    port: int = 0,
    tokens: Path | None = None,
    tls: tuple[Path, Path] | None = None,
) -> AsyncIterator[tuple[Bench, str]]:
    """The simulated bench and its edge; yields (bench, "127.0.0.1:port")."""
    cert, key = tls or (None, None)
    edge = EdgeConfig(
        port=port,
        presets_dir=tmp_path / "presets",
        disk_path=tmp_path,
        tokens_file=tokens,
        tls_cert=cert,
        tls_key=key,
    )
    spec = ActorSpec(EDGE_NAME, lambda: Edge(edge, bench="simulated", health_period=0.2))
    # runs and the camera's ring go to the test's own folder
    storage = StorageConfig(directory=tmp_path / "runs", ring_directory=tmp_path, min_free_mb=0)
    config = dataclasses.replace(simulated_bench_config(), storage=storage)
    async with open_bench(config, services=[spec]) as bench:
        address = await bench.system.ref(EDGE_NAME).ask(EdgeAddress())
        yield bench, address


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[str]:
    async with serve_bench(tmp_path) as (_, address):
        yield address


ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Daemon:
    """``python -m runtime`` on the simulated bench, as users start it."""

    directory: Path
    process: subprocess.Popen[bytes]
    address: str
    log: Path

    def stop(self) -> str:
        """SIGTERM; it must exit 0, cleanly. Returns its log."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0, self.log.read_text()
        text = self.log.read_text()
        assert text.rstrip().endswith("benchd stopped cleanly"), text
        return text


def start_daemon(
    directory: Path,
    listen: str = "127.0.0.1:0",
    *,
    tokens: Path | None = None,
    extra: str = "",
    env: dict[str, str] | None = None,
    bench: str = SIMULATED_BENCH,
) -> Daemon:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "bench.toml"
    config.write_text(
        bench + f"\n[edge]\npresets_dir = '{directory / 'presets'}'\n"
        f"disk_path = '{directory}'\n"
        + (f"tokens_file = '{tokens}'\n" if tokens is not None else "")
        + f"[storage]\ndirectory = '{directory / 'runs'}'\nring_directory = '{directory}'\n"
        "min_free_mb = 0\n" + extra
    )
    log = directory / f"daemon-{time.monotonic_ns()}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime", "--config", str(config), "--listen", listen,
             "--duration", "300"],
            cwd=ROOT,
            stderr=sink,
            stdout=subprocess.DEVNULL,
            env=None if env is None else {**os.environ, **env},
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if "benchd serving gRPC on " in line:
                return Daemon(directory, process, line.rsplit(" ", 1)[1], log)
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the daemon did not start:\n{log.read_text()}")


@pytest.fixture(scope="package")
def process_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path_factory.mktemp("daemon"))
    try:
        yield daemon
    finally:
        if daemon.process.poll() is None:
            text = daemon.stop()
            assert "Traceback" not in text, text
