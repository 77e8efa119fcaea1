"""Bearer tokens and roles; TLS; what happens without a tokens file."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest
import trio
import trio_asyncio
from grpclib.client import Channel
from grpclib.const import Status

from actors.edge import Authenticator, check_edge_config
from benchd.v1 import common_pb2, daemon_grpc, daemon_pb2, plan_pb2, scan_pb2
from benchd.v1 import estop_pb2 as estop
from benchd.v1 import hardware_pb2 as hw
from runtime.config import ConfigError, EdgeConfig

from .harness import open_client

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


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_roles(tmp_path: Path) -> None:
    edge = EdgeConfig(port=0, tokens_file=tokens_file(tmp_path), presets_dir=tmp_path)
    async with open_client(tmp_path, edge=edge) as client:
        get = hw.ParameterRequest(device="maitai", name="wavelength")
        message = await client.fails(Status.UNAUTHENTICATED, client.hardware.GetParameter, get)
        assert "authorization: Bearer <token>" in message
        await client.fails(
            Status.UNAUTHENTICATED,
            client.hardware.GetParameter,
            get,
            metadata=bearer("not-a-known-token-at-all"),
        )
        observer = bearer(OBSERVER)
        await client.unary(client.hardware.GetParameter, get, metadata=observer)
        change = hw.SetParameterRequest(
            device="maitai", name="wavelength", value=common_pb2.Value(number=900.0)
        )
        message = await client.fails(
            Status.PERMISSION_DENIED, client.hardware.SetParameter, change, metadata=observer
        )
        assert message == (
            "SetParameter needs the operator role; 'gui' is an observer (read and stream, and stop)"
        )
        info = await client.unary(
            client.daemon.GetDaemonInfo, daemon_pb2.DaemonInfoRequest(), metadata=observer
        )
        assert info.role == "observer" and "auth" in info.features
        stop = await client.unary(
            client.estop.EmergencyStop, estop.EmergencyStopRequest(reason="x"), metadata=observer
        )
        assert stop.all_stopped
        await client.fails(
            Status.PERMISSION_DENIED,
            client.estop.ResetEmergencyStop,
            estop.ResetEmergencyStopRequest(),
            metadata=observer,
        )
        operator = bearer(OPERATOR)
        await client.unary(
            client.estop.ResetEmergencyStop, estop.ResetEmergencyStopRequest(), metadata=operator
        )
        done = await client.unary(client.hardware.SetParameter, change, metadata=operator)
        assert done.value.number == 900.0
        listed = scan_pb2.ListScansRequest()  # the Scan service: observers watch, operators act
        await client.unary(client.scan.ListScans, listed, metadata=observer)
        count = plan_pb2.Plan(count=plan_pb2.CountPath(num=1))
        checked = await client.unary(client.scan.ValidatePlan, count, metadata=observer)
        assert list(checked.problems) == []  # observers may check a plan, not run it
        create = scan_pb2.CreateScanRequest()
        for method in (client.scan.CreateScan, client.scan.StartScan, client.scan.PauseScan,
                       client.scan.StopScan, client.scan.AbortScan):  # fmt: skip
            request = create if method is client.scan.CreateScan else scan_pb2.ScanRequest()
            if method in (client.scan.StopScan, client.scan.AbortScan):
                request = scan_pb2.StopScanRequest()
            await client.fails(Status.PERMISSION_DENIED, method, request, metadata=observer)


def test_open_access_only_on_loopback(tmp_path: Path) -> None:
    assert not Authenticator.from_config(EdgeConfig()).enabled
    with pytest.raises(ConfigError, match=r"edge\.tokens_file: listening on 0\.0\.0\.0:50051"):
        Authenticator.from_config(EdgeConfig(host="0.0.0.0"))
    assert Authenticator.from_config(
        EdgeConfig(host="0.0.0.0", tokens_file=tokens_file(tmp_path))
    ).enabled


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "client: expected one or more [[client]] tables"),
        ('[[client]]\nname = "a"\nrole = "admin"\ntoken = "0123456789abcdefgh"\n',
         "client[0].role: 'admin' is not observer or operator"),
        ('[[client]]\nname = "a"\nrole = "observer"\ntoken = "short"\n',
         "client[0].token: too short"),
        ('[[client]]\nname = "a"\nrole = "observer"\n', "client[0].token: missing"),
        ('[[client]]\nname = "a"\nrole = "observer"\ntoken = "0123456789abcdefgh"\nx = 1\n',
         "client[0].x: unknown key"),
    ],
)  # fmt: skip
def test_a_bad_tokens_file_names_file_key_and_reason(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Authenticator.from_config(EdgeConfig(tokens_file=path))
    assert str(caught.value).startswith(f"{path}: ") and error in str(caught.value)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await trio.run_process(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_stdout=True, capture_stderr=True,
    )  # fmt: skip
    edge = EdgeConfig(port=0, tls_cert=cert, tls_key=key, presets_dir=tmp_path)
    async with open_client(tmp_path, edge=edge) as client:
        host, port = client.address.rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(cert))
        context.set_alpn_protocols(["h2"])

        async def info() -> daemon_pb2.DaemonInfoResponse:
            channel = Channel(host, int(port), ssl=context)
            try:
                stub = daemon_grpc.DaemonInfoStub(channel)
                return await stub.GetDaemonInfo(daemon_pb2.DaemonInfoRequest())
            finally:
                channel.close()

        reply = await trio_asyncio.aio_as_trio(info)()
        assert "tls" in reply.features
    with pytest.raises(ConfigError, match=r"edge\.tls_cert: cannot load"):
        check_edge_config(EdgeConfig(tls_cert=key, tls_key=key))
