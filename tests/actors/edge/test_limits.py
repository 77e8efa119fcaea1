"""Bounded requests: the size cap, per-field limits, malformed bodies, bounded messages, and an
e-stop that hostile requests cannot delay (docs/edge.md, "Limits").

Malformed and oversized requests are written frame by frame (``raw_grpc.py``): grpclib's own
client cannot send them. Every refusal must be a proper status with a message of at most 2 KiB
that quotes at most 100 characters of what the client sent, logged in exactly one line.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote as percent_encode

import pytest
import trio
from grpclib.const import Status

from actors.edge.errors import MESSAGE_BYTES
from benchd.v1 import (
    common_pb2,
    control_pb2,
    estop_pb2,
    hardware_pb2,
    plan_pb2,
    preset_pb2,
    scan_pb2,
    storage_pb2,
)
from runtime.config import ConfigError, EdgeConfig, parse_config
from supervisors.bench import SIMULATED_BENCH

from .harness import Client, open_client
from .raw_grpc import RawReply, call, frame

#: One unary-request method of every service the edge serves (and grpclib's two).
EVERY_SERVICE = [
    "/benchd.v1.Hardware/GetDevice",
    "/benchd.v1.Storage/GetRunStatus",
    "/benchd.v1.EmergencyStop/EmergencyStop",
    "/benchd.v1.Health/GetSystemHealth",
    "/benchd.v1.Preset/GetPreset",
    "/benchd.v1.DaemonInfo/GetDaemonInfo",
    "/benchd.v1.Control/CheckScript",
    "/benchd.v1.Scan/GetScan",
    "/grpc.health.v1.Health/Check",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]
#: What a malformed body is, and the words its refusal must say.
MALFORMED = {
    "length prefix longer than the body": (frame(b"\x0a\x02ab", length=100), "declares 100"),
    "body cut inside the prefix": (b"\x00\x00\x00", "inside its 5-byte message prefix"),
    "compressed flag, no codec": (frame(b"", compressed=True), "marked compressed"),
    "compressed flag 2": (b"\x02\x00\x00\x00\x00", "compressed flag 2"),
    "not protobuf": (frame(b"\xff" * 12), "not valid protobuf"),
}


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("refused ")]


def assert_bounded(reply: RawReply) -> None:
    assert reply.status is not None
    assert len(percent_encode(reply.message, safe=" ")) <= MESSAGE_BYTES


@pytest.mark.parametrize("kind", list(MALFORMED))
async def test_malformed_bodies_get_invalid_argument_and_one_log_line_on_every_service(
    client: Client, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    body, words = MALFORMED[kind]
    caplog.set_level(logging.INFO)
    for number, method in enumerate(EVERY_SERVICE, start=1):
        reply = await call(client.address, method, body)
        assert reply.status == Status.INVALID_ARGUMENT.value, (method, reply)
        assert words in reply.message, (method, reply.message)
        assert_bounded(reply)
        assert len(refusals(caplog)) == number, method  # exactly one line for each
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
    assert not client.bench.system.latched  # a malformed EmergencyStop stops nothing


async def test_a_request_without_a_message_is_refused_on_every_service(client: Client) -> None:
    for method in EVERY_SERVICE[:-1]:  # the reflection stream may legitimately send nothing
        reply = await call(client.address, method, b"")
        assert reply.status == Status.INVALID_ARGUMENT.value, (method, reply)
        assert reply.message == "no request message was sent"


async def test_400000_and_3000000_character_names_are_refused_at_once(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's case: such a name cost 17-20 s of event loop (hpack's Huffman encoder is
    quadratic in the quoted error); now it is refused from its length, before it is read."""
    caplog.set_level(logging.INFO)
    for length in (400_000, 3_000_000):
        body = frame(hardware_pb2.DeviceRequest(device="x" * length).SerializeToString())
        with trio.fail_after(20):  # generous: it takes milliseconds
            reply = await call(client.address, "/benchd.v1.Hardware/GetDevice", body)
        assert reply.status == Status.INVALID_ARGUMENT.value
        assert reply.message == (
            f"device: at most 128 characters, got '{'x' * 100}'… ({length} bytes)"
        )
        assert_bounded(reply)
    assert len(refusals(caplog)) == 2


async def test_a_request_over_the_cap_is_refused_from_its_length_prefix(client: Client) -> None:
    """8 MB declared, 64 KiB sent: the edge reads the 5-byte prefix and answers."""
    body = frame(b"\x0a" + b"x" * 65536, length=8_000_000)
    with trio.fail_after(20):
        reply = await call(client.address, "/benchd.v1.Hardware/GetDevice", body)
    assert reply.status == Status.RESOURCE_EXHAUSTED.value
    assert reply.message == (
        "the request message is 8000000 bytes; GetDevice accepts at most 4194304 bytes"
        " ([edge] max_request_bytes)"
    )


async def test_the_caps_come_from_the_config(tmp_path: Path) -> None:
    edge = EdgeConfig(
        port=0,
        presets_dir=tmp_path,
        disk_path=tmp_path,
        max_request_bytes=65536,
        max_script_bytes=2048,
    )
    async with open_client(tmp_path, edge=edge) as client:
        big = frame(hardware_pb2.DeviceRequest(device="x" * 70000).SerializeToString())
        reply = await call(client.address, "/benchd.v1.Hardware/GetDevice", big)
        assert reply.status == Status.RESOURCE_EXHAUSTED.value
        assert "at most 65536 bytes ([edge] max_request_bytes)" in reply.message
        check = "/benchd.v1.Control/CheckScript"
        script = control_pb2.CheckScriptRequest(source="x = 1\n" * 20000).SerializeToString()
        reply = await call(client.address, check, frame(script))
        assert reply.status == Status.RESOURCE_EXHAUSTED.value
        assert (
            "CheckScript accepts at most" in reply.message and "max_script_bytes" in reply.message
        )
        script = control_pb2.CheckScriptRequest(source="x = 1\n" * 500).SerializeToString()
        reply = await call(client.address, check, frame(script))
        assert reply.status == Status.INVALID_ARGUMENT.value
        assert reply.message.startswith(
            "source: a script may have at most 2048 bytes ([edge] max_script_bytes)"
        )
        fine = control_pb2.CheckScriptRequest(source="x = 1\n" * 100)
        assert (await client.unary(client.control.CheckScript, fine)).ok


FIELD_CASES: list[tuple[str, Any, str]] = [
    (
        "Hardware/GetParameter",
        hardware_pb2.ParameterRequest(device="maitai", name="n" * 129),
        "name: at most 128 characters, got 'nnnn",
    ),
    (
        "Hardware/StreamParameters",
        hardware_pb2.StreamParametersRequest(device="maitai", names=["wavelength"] * 257),
        "names: at most 256 entries",
    ),
    (
        "Hardware/SetParameter",
        hardware_pb2.SetParameterRequest(
            device="maitai", name="wavelength", value=common_pb2.Value(text="t" * 300)
        ),
        "value.text: at most 256 characters",
    ),
    (
        "EmergencyStop/ResetEmergencyStop",
        estop_pb2.ResetEmergencyStopRequest(reason="r" * 1001),
        "reason: at most 1000 characters",
    ),
    (
        "Storage/StartRun",
        storage_pb2.StartRunRequest(name="run", metadata={f"k{i}": "v" for i in range(300)}),
        "metadata: at most 256 entries",
    ),
    (
        "Storage/StartRun",
        storage_pb2.StartRunRequest(name="run", metadata={"k" * 200: "v"}),
        "metadata: keys have at most 128 characters",
    ),
    (
        "Storage/StartRun",
        storage_pb2.StartRunRequest(name="run", metadata_json=" " * 70000),
        "metadata_json: at most 65536 characters",
    ),
    (
        "Storage/StartRun",
        storage_pb2.StartRunRequest(name="run", metadata_json="[" * 40 + "]" * 40),
        "metadata_json is nested more than 32 levels deep",
    ),
    (
        "Scan/CreateScan",
        scan_pb2.CreateScanRequest(
            plan=plan_pb2.Plan(
                grid=plan_pb2.GridPath(
                    axes=[plan_pb2.GridAxis(axis="ell14.2"), plan_pb2.GridAxis(axis="é" * 200)]
                )
            )
        ),
        "plan.grid.axes[1].axis: at most 128 characters, got '\\xe9\\xe9",
    ),
    (
        "Control/StartScript",
        control_pb2.StartScriptRequest(name="s" * 129),
        "name: at most 128 characters",
    ),
    (
        "Preset/SavePreset",
        preset_pb2.SavePresetRequest(name="night", description="d" * 1001),
        "description: at most 1000 characters",
    ),
    (
        "Preset/LoadPreset",
        preset_pb2.LoadPresetRequest(name="night", devices=["maitai"] * 257),
        "devices: at most 256 entries",
    ),
    (
        "DaemonInfo/GetDaemonInfo",
        b"\xfa\x06\x88\x27" + b"z" * 5000,  # field 111, which this daemon does not know
        "field 111: an unknown field, at most 4096 bytes, got 'zzzz",
    ),
    (
        "Health/ListActors",
        b"\x08\x01" * 300,  # field 1, 300 times
        "field 1: at most 256 entries",
    ),
]


async def test_per_field_limits_are_checked_before_any_work(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for method, request, words in FIELD_CASES:
        body = request if isinstance(request, bytes) else request.SerializeToString()
        reply = await call(client.address, f"/benchd.v1.{method}", frame(body))
        assert reply.status == Status.INVALID_ARGUMENT.value, (method, reply)
        assert reply.message.startswith(words), (method, reply.message)
        assert_bounded(reply)
    status = await client.unary(client.storage.GetRunStatus, storage_pb2.RunStatusRequest())
    assert status.state != storage_pb2.RUN_STATE_RECORDING  # no StartRun did any work
    assert not client.bench.system.latched
    assert len(refusals(caplog)) == len(FIELD_CASES) - 1  # the nesting is the servicer's own


async def test_a_list_scan_may_carry_more_positions_than_other_repeated_fields(
    client: Client,
) -> None:
    """256 entries bound a repeated field, but a list scan's positions are its data: 2000 of
    them pass the guard and reach the plan validator (which checks them against the travel)."""
    positions = [float(i % 40) for i in range(2000)]
    plan = plan_pb2.Plan(
        list=plan_pb2.ListPath(
            axes=[plan_pb2.AxisPositions(axis="esp300.axis1", positions=positions)]
        ),
        read=["power_meter"],
    )
    check = await client.unary(client.scan.ValidatePlan, plan)
    assert list(check.problems) == [] and check.estimate.points == 2000
    too_many = plan_pb2.Plan(
        list=plan_pb2.ListPath(
            axes=[plan_pb2.AxisPositions(axis="esp300.axis1", positions=[0.0] * 100_001)]
        )
    )
    reply = await call(
        client.address, "/benchd.v1.Scan/ValidatePlan", frame(too_many.SerializeToString())
    )
    assert reply.status == Status.INVALID_ARGUMENT.value
    assert "positions: at most 100000 entries" in reply.message


async def test_an_estop_is_broadcast_on_arrival_however_busy_the_edge_is(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Clients hammering the edge with huge, malformed and over-cap requests do not delay an
    e-stop: the priority path broadcasts it from its bytes (``_priority.py``), ahead of the
    requests queued before it. Bounds are generous (2 busy cores); typical is < 1 ms."""
    caplog.set_level(logging.INFO)
    name = hardware_pb2.DeviceRequest
    bodies = [
        ("/benchd.v1.Hardware/GetDevice", frame(name(device="x" * 400_000).SerializeToString())),
        ("/benchd.v1.Hardware/GetDevice", frame(name(device="y" * 3_000_000).SerializeToString())),
        ("/benchd.v1.Hardware/GetDevice", frame(b"\x0a" + b"x" * 65536, length=64 << 20)),
        ("/benchd.v1.Hardware/ListDevices", frame(b"")),
        ("/benchd.v1.Health/ListActors", frame(b"", compressed=True)),
    ]
    answered = 0

    async def hammer(index: int) -> None:
        nonlocal answered
        while True:
            method, body = bodies[index % len(bodies)]
            index += 1
            reply = await call(client.address, method, body)
            assert reply.status is not None
            answered += 1

    async with trio.open_nursery() as nursery:
        for index in range(12):
            nursery.start_soon(hammer, index)
        while answered < 50:
            await trio.sleep(0.01)
        for _ in range(3):
            sent = time.time()
            report = await client.unary(
                client.estop.EmergencyStop, estop_pb2.EmergencyStopRequest(reason="hammered")
            )
            assert report.all_stopped
            assert sent - 1.0 <= report.received_at <= time.time()
            assert 0 <= report.dispatch_ms < 2000  # typically well under 1 ms
            assert all(a.latency_ms >= report.dispatch_ms for a in report.acknowledgements)
            await client.bench.system.reset_emergency_stop("next")
        nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records if "e-stop over gRPC" in r.getMessage()]
    assert len(lines) == 3 and all("(priority path)" in line for line in lines)
    assert "emergency stop by local (operator) from 127.0.0.1 (hammered)" in caplog.text


async def test_the_priority_path_stops_only_authenticated_clients(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        '[[client]]\nname = "viewer"\nrole = "observer"\ntoken = "observer-token-0123456789"\n'
    )
    tokens.chmod(0o600)
    edge = EdgeConfig(port=0, tokens_file=tokens, presets_dir=tmp_path, disk_path=tmp_path)
    async with open_client(tmp_path, edge=edge) as client:
        body = frame(estop_pb2.EmergencyStopRequest(reason="no token").SerializeToString())
        method = "/benchd.v1.EmergencyStop/EmergencyStop"
        reply = await call(client.address, method, body)
        assert reply.status == Status.UNAUTHENTICATED.value
        wrong = (("authorization", "Bearer not-a-known-token-at-all"),)
        reply = await call(client.address, method, body, metadata=wrong)
        assert reply.status == Status.UNAUTHENTICATED.value
        assert not client.bench.system.latched
        observer = (("authorization", "Bearer observer-token-0123456789"),)
        body = frame(estop_pb2.EmergencyStopRequest(reason="seen smoke").SerializeToString())
        reply = await call(client.address, method, body, metadata=observer)
        assert reply.status == Status.OK.value
        assert client.bench.system.latched
        latch = client.bench.system.ref("maitai").statistics().latch
        assert latch is not None and latch.reason == "seen smoke"
        assert latch.by.startswith("viewer (observer)")


async def test_an_estop_the_guard_refuses_stops_nothing(client: Client) -> None:
    """The priority path and the servicer judge a request alike: an e-stop over a limit —
    its reason too long, or given 300 times (protobuf would keep the last) — is refused, and
    nothing stops."""
    too_long = estop_pb2.EmergencyStopRequest(reason="r" * 1001).SerializeToString()
    for body in (too_long, b"\x0a\x01x" * 300):
        reply = await call(client.address, "/benchd.v1.EmergencyStop/EmergencyStop", frame(body))
        assert reply.status == Status.INVALID_ARGUMENT.value, reply
    assert not client.bench.system.latched


def test_edge_request_caps_are_validated_with_file_key_and_reason() -> None:
    base = SIMULATED_BENCH + "\n[edge]\n"
    edge = parse_config(base + "max_request_bytes = 1048576\nmax_script_bytes = 4096\n", "l.toml")
    assert (edge.edge.max_request_bytes, edge.edge.max_script_bytes) == (1048576, 4096)
    defaults = parse_config(SIMULATED_BENCH, "l.toml").edge
    assert (defaults.max_request_bytes, defaults.max_script_bytes) == (4 << 20, 256 << 10)
    for line, message in [
        (
            "max_request_bytes = '4MB'",
            "l.toml: edge.max_request_bytes: expected an int (bytes), got str '4MB'",
        ),
        (
            "max_request_bytes = 1000",
            "l.toml: edge.max_request_bytes: 1000 is outside 65536..67108864 bytes"
            " (default 4194304)",
        ),
        (
            "max_script_bytes = 0",
            "l.toml: edge.max_script_bytes: 0 is outside 1024..16777216 bytes (default 262144)",
        ),
        (
            "max_script_bytes = true",
            "l.toml: edge.max_script_bytes: expected an int (bytes), got bool True",
        ),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(base + line + "\n", "l.toml")
        assert str(caught.value) == message
