"""The blocking client against a real edge: happy paths, typed errors, streams, restarts."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np
import pytest
import trio

from client import (
    Bench,
    ConnectionLost,
    EmergencyStopLatched,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RetryPolicy,
    RunStatus,
    Unauthenticated,
)

from .conftest import OBSERVER, OPERATOR, serve_bench, start_daemon, tokens_file

T = TypeVar("T")


async def in_thread(function: Callable[[], T]) -> T:
    """Run a blocking client scenario off the trio thread, as a script would."""
    return await trio.to_thread.run_sync(function)


async def test_devices_motion_parameters_estop_health_presets(daemon: str) -> None:
    def scenario() -> None:
        with Bench.connect(daemon) as bench:
            devices = bench.devices
            assert {"esp300.axis1", "maitai", "power_meter"} <= set(devices)
            axis = bench["esp300.axis1"]
            assert axis.move_to(1.5) == pytest.approx(1.5, abs=1e-3)
            assert axis.move_by(-0.5) == pytest.approx(1.0, abs=1e-3)
            assert axis.position == pytest.approx(1.0, abs=1e-3)
            assert axis.info().units == "mm"
            reading = bench["power_meter"].read()
            assert reading.units == "W" and reading.device == "power_meter"

            assert bench.parameters["maitai.wavelength"] == 800.0
            bench.parameters["maitai.wavelength"] = 920
            assert bench.parameters["maitai.wavelength"] == 920.0
            record = bench.parameters.get("maitai.wavelength")
            assert record.source == "user" and record.units == "nm"
            with bench["power_meter"].watch_parameters("wavelength") as changes:
                assert next(changes).name == "wavelength"
                bench.parameters.set("power_meter.wavelength", 633)
                assert next(changes).value == 633

            stopped = bench.emergency_stop("test")
            assert stopped.all_stopped and stopped.acknowledgements
            state = bench.emergency_stop_state()
            assert state.latched and "test" in state.reason
            assert bench.reset_emergency_stop().cleared
            assert not bench.emergency_stop_state().latched

            health = bench.health()
            assert health.all_ready and health.system.actors == health.system.actors_ready
            info = bench.info()
            assert info.bench == "simulated" and info.role == "operator"

            saved = bench.presets.save("night", description="d", devices=["maitai"])
            assert saved.parameters >= 1
            assert [p.name for p in bench.presets.list()] == ["night"]
            bench.parameters["maitai.wavelength"] = 700
            applied = bench.presets.load("night")
            assert any(e.name == "wavelength" and e.value == 920.0 for e in applied)
            assert bench.parameters["maitai.wavelength"] == 920.0
            bench.presets.delete("night")
            assert bench.presets.list() == []
            # results are frozen dataclasses, JSON-ready
            assert dataclasses.asdict(info)["bench"] == "simulated"
        with pytest.raises(ConnectionLost, match="closed"):
            bench.info()

    await in_thread(scenario)


async def test_record_a_run_and_watch_frames(daemon: str) -> None:
    def scenario() -> None:
        with Bench.connect(daemon) as bench:
            bench.parameters["camera.roi"] = "0,0,256,128"  # small frames: a quick test
            camera = bench["camera"]
            camera.start_acquisition()  # live
            try:
                with bench.frames("camera", max_fps=50) as frames:
                    arrays = [next(frames) for _ in range(3)]
            finally:
                assert not camera.stop_acquisition().running
            assert all(a.dtype == np.uint16 and a.shape == (128, 256) for a in arrays)
            assert arrays[-1].max() > 0

            updates: list[RunStatus] = []
            final = bench.record(
                "client-run",
                frames=20,
                metadata={"sample": "quartz", "n": 3},
                progress=updates.append,
            )
            assert final.state == "completed" and final.lost_nothing, final
            assert final.frames_written == 20 and final.end_record["status"] == "completed"
            assert updates[0].state == "recording" and updates[-1] == final
            runs = bench.runs()
            assert [(r.status, r.frames_written) for r in runs] == [("completed", 20)]
            with h5py.File(final.path, "r") as f:
                assert f["entry/data/data"].shape == (20, 128, 256)
                manifest = json.loads(f["entry/manifest/json"][()])
            assert manifest["metadata"] == {"sample": "quartz", "n": 3}
            with pytest.raises(InvalidArgument, match="1 to 64 characters"):
                bench.record("a/b", frames=1)

    await in_thread(scenario)


async def test_errors_are_typed_and_carry_the_daemon_message(daemon: str) -> None:
    def scenario() -> None:
        with Bench.connect(daemon) as bench:
            with pytest.raises(InvalidArgument) as bad:
                bench.parameters["maitai.wavelength"] = 5000
            assert "outside the allowed range 690 to 1040 nm" in str(bad.value)
            assert bad.value.status is not None and bad.value.status.name == "INVALID_ARGUMENT"
            with pytest.raises(NotFound, match="no device named 'stage'; devices: ell14"):
                bench["stage"].move_to(1.0)
            with pytest.raises(KeyError, match=r"DEVICE\.PARAMETER"):
                bench.parameters["wavelength"]
            bench.emergency_stop("latched for the test")
            try:
                with pytest.raises(EmergencyStopLatched) as latched:
                    bench["esp300.axis1"].move_to(2.0)
                assert "latched for the test" in latched.value.message
                assert "reset the emergency stop first" in latched.value.message
            finally:
                bench.reset_emergency_stop()

    await in_thread(scenario)


async def test_roles_and_tokens(tmp_path: Path) -> None:
    async with serve_bench(tmp_path, tokens=tokens_file(tmp_path)) as (_, address):

        def scenario() -> None:
            with pytest.raises(Unauthenticated, match="authorization: Bearer <token>"):
                Bench.connect(address)
            with Bench.connect(address, token=OBSERVER) as bench:
                assert bench.info().role == "observer"
                assert bench.parameters["maitai.wavelength"] == 800.0
                with pytest.raises(PermissionDenied) as denied:
                    bench.parameters["maitai.wavelength"] = 900
                assert str(denied.value) == (
                    "SetParameter needs the operator role; 'gui' is an observer"
                    " (read and stream, and stop)"
                )
            with Bench.connect(address, token=OPERATOR) as bench:
                assert bench.parameters.set("maitai.wavelength", 900).value == 900.0

        await in_thread(scenario)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_with_a_token_from_python_and_benchctl(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await trio.run_process(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_stdout=True, capture_stderr=True,
    )  # fmt: skip
    tokens = tokens_file(tmp_path)
    async with serve_bench(tmp_path, tokens=tokens, tls=(cert, key)) as (_, address):

        def scenario() -> None:
            with Bench.connect(address, token=OPERATOR, tls=cert) as bench:
                assert "tls" in bench.info().features
            with pytest.raises(ConnectionLost):  # plain HTTP/2 to a TLS port
                Bench.connect(address, token=OPERATOR, retry=RetryPolicy(budget=0.2))

        await in_thread(scenario)
        token = tmp_path / "token"
        token.write_text(OBSERVER + "\n")
        done = await trio.run_process(
            [sys.executable, "-m", "client", "--address", address, "--tls", str(cert),
             "--token-file", str(token), "--json", "info"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["role"] == "observer"
        done = await trio.run_process(
            [sys.executable, "-m", "client", "--address", address, "--tls", str(cert),
             "--token-file", str(token), "set", "maitai.wavelength", "900"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
        assert done.returncode == 7
        assert b"SetParameter needs the operator role; 'gui' is an observer" in done.stderr


async def test_nobody_there_is_connection_lost_within_the_budget() -> None:
    with trio.socket.socket() as probe:  # a port nobody listens on
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def scenario() -> float:
        started = time.monotonic()
        with pytest.raises(ConnectionLost, match=rf"127.0.0.1:{port} for 0\.[0-3] s"):  # tried
            Bench.connect(f"127.0.0.1:{port}", retry=RetryPolicy(budget=0.3))
        return time.monotonic() - started

    assert await in_thread(scenario) < 2.0


def test_calls_and_streams_survive_a_daemon_restart(tmp_path: Path) -> None:
    """The daemon process stops and comes back on the same port: a call made while it is
    down waits for it (retries with backoff), and an open stream re-subscribes."""
    daemon = start_daemon(tmp_path)
    bench = Bench.connect(daemon.address)
    try:
        stream = bench["power_meter"].watch_parameters("wavelength")
        assert next(stream).name == "wavelength"
        daemon.stop()
        results: dict[str, Any] = {}

        def call(key: str, function: Callable[[], Any]) -> threading.Thread:
            def run() -> None:
                try:
                    results[key] = function()
                except BaseException as error:  # reported by the assertions below
                    results[key] = error

            thread = threading.Thread(target=run)
            thread.start()
            return thread

        threads = [call("info", bench.info), call("streamed", lambda: next(stream))]
        time.sleep(0.3)  # both retry against a closed port
        assert not results
        again = start_daemon(tmp_path, listen=daemon.address)
        try:
            for thread in threads:
                thread.join(timeout=20)
            assert results["info"].bench == "simulated", results
            assert results["streamed"].name == "wavelength", results
            bench.parameters["power_meter.wavelength"] = 700
            assert next(stream).value == 700
            assert bench["esp300.axis1"].move_to(0.25) == pytest.approx(0.25, abs=1e-3)
        finally:
            bench.close()
            again.stop()
    finally:
        bench.close()
        if daemon.process.poll() is None:
            daemon.process.kill()
