"""Preset service: save / list / get / load / delete; validation on load names the parameter."""

from __future__ import annotations

import json
from pathlib import Path

from grpclib.const import Status

from benchd.v1 import common_pb2, daemon_pb2
from benchd.v1 import hardware_pb2 as hw
from benchd.v1 import preset_pb2 as pb

from .harness import Client


async def set_wavelength(client: Client, value: float) -> None:
    await client.unary(
        client.hardware.SetParameter,
        hw.SetParameterRequest(
            device="maitai", name="wavelength", value=common_pb2.Value(number=value)
        ),
    )


async def wavelength(client: Client) -> float:
    reply = await client.unary(
        client.hardware.GetParameter, hw.ParameterRequest(device="maitai", name="wavelength")
    )
    return float(reply.value.number)


async def test_save_list_get_load_delete(client: Client, tmp_path: Path) -> None:
    presets = client.preset
    await set_wavelength(client, 910.0)
    saved = await client.unary(
        presets.SavePreset,
        pb.SavePresetRequest(name="two-photon", description="910 nm", devices=["maitai"]),
    )
    assert saved.devices == ["maitai"] and saved.parameters >= 1
    stored = json.loads((tmp_path / "presets" / "two-photon.json").read_text())
    assert stored["values"]["maitai"]["wavelength"] == 910.0
    assert "shutter" not in stored["values"]["maitai"]  # hazardous: never in a preset
    assert not list((tmp_path / "presets").glob("*.tmp"))

    listing = await client.unary(presets.ListPresets, pb.ListPresetsRequest())
    assert [p.name for p in listing.presets] == ["two-photon"]
    contents = await client.unary(presets.GetPreset, pb.PresetRequest(name="two-photon"))
    assert any(e.name == "wavelength" and e.value.number == 910.0 for e in contents.entries)

    await set_wavelength(client, 750.0)
    loaded = await client.unary(presets.LoadPreset, pb.LoadPresetRequest(name="two-photon"))
    assert any(e.name == "wavelength" for e in loaded.applied)
    assert await wavelength(client) == 910.0

    again = pb.SavePresetRequest(name="two-photon", devices=["maitai"])
    assert "overwrite" in await client.fails(Status.ALREADY_EXISTS, presets.SavePreset, again)
    again.overwrite = True
    await client.unary(presets.SavePreset, again)

    await client.unary(presets.DeletePreset, pb.PresetRequest(name="two-photon"))
    message = await client.fails(
        Status.NOT_FOUND, presets.LoadPreset, pb.LoadPresetRequest(name="two-photon")
    )
    assert "no preset named 'two-photon'; presets: none" in message
    bad_name = pb.SavePresetRequest(name="../etc/passwd")
    assert "not allowed" in await client.fails(
        Status.INVALID_ARGUMENT, presets.SavePreset, bad_name
    )


async def test_a_value_that_no_longer_validates_is_named_and_nothing_is_applied(
    client: Client, tmp_path: Path
) -> None:
    await client.unary(client.preset.SavePreset, pb.SavePresetRequest(name="all"))
    path = tmp_path / "presets" / "all.json"
    stored = json.loads(path.read_text())
    assert {"maitai", "esp300.axis1", "power_meter"} <= set(stored["values"])
    stored["values"]["maitai"]["wavelength"] = 1500.0
    stored["values"]["power_meter"]["wavelength"] = 500
    path.write_text(json.dumps(stored))
    await set_wavelength(client, 700.0)
    message = await client.fails(
        Status.INVALID_ARGUMENT, client.preset.LoadPreset, pb.LoadPresetRequest(name="all")
    )
    assert "preset 'all' no longer validates at maitai.wavelength" in message
    assert "outside the allowed range 690 to 1040" in message and "nothing was applied" in message
    assert await wavelength(client) == 700.0
    path.write_text("{not json")
    assert "cannot be read" in await client.fails(
        Status.INVALID_ARGUMENT, client.preset.LoadPreset, pb.LoadPresetRequest(name="all")
    )


async def test_daemon_info(client: Client) -> None:
    info = await client.unary(client.daemon.GetDaemonInfo, daemon_pb2.DaemonInfoRequest())
    assert info.version == "0.1.0" and info.bench == "simulated" and info.uptime_s > 0
    assert "esp300.axis1" in info.devices and "edge" not in info.devices
    assert {"hardware", "estop", "health", "presets", "grpc.health.v1"} <= set(info.features)
    assert "auth" not in info.features and info.role == "operator"
