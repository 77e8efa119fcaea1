"""ListDevices says which actors are instruments and which are the daemon's own services, and
DaemonInfo's features name every service the edge serves."""

from __future__ import annotations

import importlib
import pkgutil

import benchd.v1
from actors.edge.daemon_info import FEATURES
from benchd.v1 import daemon_pb2
from benchd.v1 import hardware_pb2 as pb

from .harness import Client

#: Each gRPC service of benchd.v1 and the feature a client checks for it.
SERVICE_FEATURES = {
    "benchd.v1.Hardware": "hardware",
    "benchd.v1.EmergencyStop": "estop",
    "benchd.v1.Health": "health",
    "benchd.v1.Preset": "presets",
    "benchd.v1.DaemonInfo": "daemon_info",
    "benchd.v1.Storage": "runs",
    "benchd.v1.Control": "scripts",
    "benchd.v1.Scan": "scans",
    "benchd.v1.Preview": "preview",
}


def proto_services() -> set[str]:
    """Every service declared in proto/benchd/v1 (from the generated descriptors)."""
    found = set()
    for module in pkgutil.iter_modules(benchd.v1.__path__):
        if module.name.endswith("_pb2"):
            descriptor = importlib.import_module(f"benchd.v1.{module.name}").DESCRIPTOR
            found |= {s.full_name for s in descriptor.services_by_name.values()}
    return found


def test_every_proto_service_has_a_feature() -> None:
    assert proto_services() == set(SERVICE_FEATURES), "a new service needs its feature"
    assert set(SERVICE_FEATURES.values()) <= set(FEATURES)
    assert len(set(FEATURES)) == len(FEATURES)


async def test_devices_and_services_are_told_apart(client: Client) -> None:
    reply = await client.unary(client.hardware.ListDevices, pb.ListDevicesRequest())
    kinds = {d.name: d.kind for d in reply.devices}
    services = {name for name, kind in kinds.items() if kind == "service"}
    assert services == {"recorder", "scripts", "plans", "camera.ring"}
    devices = {name for name, kind in kinds.items() if kind == "device"}
    assert {"esp300", "esp300.axis1", "ell14.2", "maitai", "power_meter", "camera"} <= devices
    assert devices | services == set(kinds)  # nothing without a kind
    one = await client.unary(client.hardware.GetDevice, pb.DeviceRequest(device="recorder"))
    assert one.kind == "service"


async def test_info_lists_every_feature(client: Client) -> None:
    info = await client.unary(client.daemon.GetDaemonInfo, daemon_pb2.DaemonInfoRequest())
    assert set(FEATURES) <= set(info.features)
    assert {"scans", "plans", "preview", "bluesky", "operations", "limits"} <= set(info.features)
