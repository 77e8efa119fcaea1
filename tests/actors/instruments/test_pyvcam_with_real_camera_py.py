"""The PyVCAM backend through PyVCAM's *real* ``camera.py``, over a fake ``pyvcam.pvc``.

``pip install PyVCAM`` works without PVCAM; only the ``pyvcam.pvc`` extension needs
``libpvcam.so.2``. So where the package is installed, a fake ``pvc`` module (PVCAM parameters
in a table, as ``pvcmodule.cpp`` exposes them) lets PyVCAM's own Python code run: its
``open()`` enumerates the port/speed/gain table, its setters validate and write. That checks
the backend's use of the real API. Skipped where PyVCAM is not installed (it is not a
dependency of benchd: wheels exist for x86_64 Linux and Windows only).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyvcam")
const: Any = importlib.import_module("pyvcam.constants")

from actors.instruments.pyvcam_backend import PyVcam, PyVcamBackend  # noqa: E402


class FakePvcam:
    """Prime BSI-like parameters; unknown ones raise AttributeError like pvcmodule does."""

    def __init__(self) -> None:
        c = const
        self.calls: list[str] = []
        self.port, self.speed, self.gain = 0, 0, 1
        self.mode = c.EXT_TRIG_INTERNAL | c.EXPOSE_OUT_FIRST_ROW
        self.values: dict[int, Any] = {
            c.PARAM_PMODE: c.PMODE_NORMAL,
            c.PARAM_SER_SIZE: 2048,
            c.PARAM_PAR_SIZE: 2048,
            c.PARAM_EXPOSE_OUT_MODE: c.EXPOSE_OUT_FIRST_ROW,
            c.PARAM_CLEAR_MODE: c.CLEAR_AUTO,
            c.PARAM_EXP_RES: c.EXP_RES_ONE_MILLISEC,
            c.PARAM_FAN_SPEED_SETPOINT: c.FAN_SPEED_HIGH,
            c.PARAM_CHIP_NAME: "GS2020",
            c.PARAM_HEAD_SER_NUM_ALPHA: "A19G204008",
            c.PARAM_TEMP: -1976,
            c.PARAM_TEMP_SETPOINT: -2000,
        }
        self.enums = {
            c.PARAM_READOUT_PORT: {"Sensitivity": 0, "Speed": 1},
            c.PARAM_EXPOSURE_MODE: {
                "Internal Trigger": c.EXT_TRIG_INTERNAL,
                "Edge Trigger": c.EXT_TRIG_EDGE_RISING,
                "Software Trigger Edge": c.EXT_TRIG_SOFTWARE_EDGE,
            },
            c.PARAM_EXPOSE_OUT_MODE: {"First Row": 0, "All Rows": 1},
            c.PARAM_CLEAR_MODE: {"Never": c.CLEAR_NEVER, "Auto": c.CLEAR_AUTO},
            c.PARAM_EXP_RES: {"One Millisecond": 0, "One Microsecond": 1},
            c.PARAM_FAN_SPEED_SETPOINT: {"High": 0, "Medium": 1, "Low": 2, "Off": 3},
            c.PARAM_BINNING_SER: {"1x1": 1, "2x2": 2, "4x4": 4},
            c.PARAM_BINNING_PAR: {"1x1": 1, "2x2": 2, "4x4": 4},
        }
        # port -> speeds -> (pixel time, {gain index: (name, bit depth)})
        self.table = {
            0: [(10, {1: ("HDR", 16), 2: ("CMS", 12)})],
            1: [(5, {1: ("Balanced", 11)})],
        }
        self.frame_count = 0

    # -- the pvc functions camera.py calls --------------------------------------------------

    def init_pvcam(self) -> None:
        self.calls.append("init_pvcam")

    def uninit_pvcam(self) -> None:
        self.calls.append("uninit_pvcam")

    def get_cam_total(self) -> int:
        return 1

    def get_cam_name(self, index: int) -> str:
        return "pvcamUSB_0"

    def open_camera(self, name: str) -> int:
        self.calls.append(f"open_camera({name})")
        return 7

    def close_camera(self, handle: int) -> None:
        self.calls.append("close_camera")

    def check_param(self, handle: int, param: int) -> bool:
        return param in self.values or param in self.enums or param in self._computed()

    def read_enum(self, handle: int, param: int) -> dict[str, int]:
        if param not in self.enums:
            raise AttributeError(f"parameter {param} is not available")
        return dict(self.enums[param])

    def _computed(self) -> dict[int, dict[int, Any]]:
        c = const
        pixel_time, gains = self.table[self.port][self.speed]
        return {
            c.PARAM_READOUT_PORT: {c.ATTR_CURRENT: self.port},
            c.PARAM_SPDTAB_INDEX: {
                c.ATTR_CURRENT: self.speed,
                c.ATTR_COUNT: len(self.table[self.port]),
            },
            c.PARAM_GAIN_INDEX: {
                c.ATTR_CURRENT: self.gain,
                c.ATTR_MIN: min(gains),
                c.ATTR_MAX: max(gains),
                c.ATTR_INCREMENT: 1,
            },
            c.PARAM_GAIN_NAME: {c.ATTR_CURRENT: gains[self.gain][0]},
            c.PARAM_BIT_DEPTH: {c.ATTR_CURRENT: gains[self.gain][1]},
            c.PARAM_PIX_TIME: {c.ATTR_CURRENT: pixel_time},
            c.PARAM_EXPOSURE_MODE: {c.ATTR_CURRENT: self.mode},
            c.PARAM_EXPOSURE_TIME: {c.ATTR_MIN: 1, c.ATTR_MAX: 10_000},
            c.PARAM_TEMP_SETPOINT: {
                c.ATTR_CURRENT: self.values[c.PARAM_TEMP_SETPOINT],
                c.ATTR_MIN: -2500,
                c.ATTR_MAX: 2500,
            },
            c.PARAM_ROI_COUNT: {c.ATTR_MAX: 15},
        }

    def get_param(self, handle: int, param: int, attr: int) -> Any:
        computed = self._computed()
        if param in computed and attr in computed[param]:
            return computed[param][attr]
        if param in self.values and attr == const.ATTR_CURRENT:
            return self.values[param]
        raise AttributeError(f"parameter {param} attribute {attr} is not available")

    def set_param(self, handle: int, param: int, value: Any) -> None:
        c = const
        self.calls.append(f"set_param({param}, {value})")
        if param == c.PARAM_READOUT_PORT:  # dependants reset: hence port -> speed -> gain
            self.port, self.speed = value, 0
            self.gain = min(self.table[self.port][0][1])
        elif param == c.PARAM_SPDTAB_INDEX:
            self.speed = value
            self.gain = min(self.table[self.port][self.speed][1])
        elif param == c.PARAM_GAIN_INDEX:
            self.gain = value
        elif param in self.values:
            self.values[param] = value
        else:
            raise AttributeError(f"parameter {param} is not available")

    def set_exp_modes(self, handle: int, mode: int) -> None:
        self.mode = mode

    def reset_frame_counter(self, handle: int) -> None:
        self.frame_count = 0

    def start_live(self, handle: int, rois: list[Any], exp: int, mode: int, *rest: Any) -> None:
        self.calls.append(f"start_live(exp={exp}, mode={mode}, buffer={rest[0]})")
        self.rois = rois

    def start_seq(self, handle: int, rois: list[Any], exp: int, mode: int, n: int) -> None:
        self.calls.append(f"start_seq(exp={exp}, frames={n})")
        self.rois = rois

    def get_frame(self, handle: int, rois: list[Any], typenum: int, timeout: int, oldest: bool):
        self.frame_count += 1
        arrays = [
            np.zeros(((r.p2 - r.p1 + 1) // r.pbin, (r.s2 - r.s1 + 1) // r.sbin), np.uint16)
            for r in rois
        ]
        return {"pixel_data": arrays}, 47.0, self.frame_count

    def abort(self, handle: int) -> None:
        self.calls.append("abort")

    def finish_seq(self, handle: int) -> None:
        self.calls.append("finish_seq")

    def sw_trigger(self, handle: int) -> None:
        self.calls.append("sw_trigger")


@pytest.fixture
def pyvcam(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakePvcam, PyVcam]]:
    fake = FakePvcam()
    module = ModuleType("pyvcam.pvc")
    for name in dir(fake):
        if not name.startswith("_"):
            setattr(module, name, getattr(fake, name))
    monkeypatch.setitem(sys.modules, "pyvcam.pvc", module)
    monkeypatch.delitem(sys.modules, "pyvcam.camera", raising=False)
    camera = importlib.import_module("pyvcam.camera")
    yield fake, PyVcam(module, camera.Camera, const)
    sys.modules.pop("pyvcam.camera", None)


async def test_the_backend_drives_pyvcams_own_camera_code(pyvcam):
    fake, lib = pyvcam
    backend = PyVcamBackend("pvcamUSB_0", load=lambda: lib)
    description = await backend.open()
    assert [(p.index, p.name) for p in description.ports] == [(0, "Sensitivity"), (1, "Speed")]
    gains = description.ports[0].speeds[0].gains
    assert [(g.index, g.name, g.bit_depth) for g in gains] == [(1, "HDR", 16), (2, "CMS", 12)]
    assert description.ports[0].speeds[0].name == "Speed_0"  # no PARAM_SPDTAB_NAME [obs]
    assert description.software_trigger_modes == ("Software Trigger Edge",)
    assert description.binnings == ((1, 1), (2, 2), (4, 4))
    assert description.exposure_limits_ms == (1.0, 10000.0)

    state = await backend.apply(
        exposure_ms=20.0,
        roi=(100, 200, 512, 256),
        binning=(2, 2),
        port=0,
        speed=0,
        gain=2,
        trigger_mode="Software Trigger Edge",
        clear_mode="Never",
        temperature_setpoint=-15.0,
        fan_speed="Low",
    )
    assert (state.roi, state.binning, state.gain, state.bit_depth) == (
        (100, 200, 512, 256),
        (2, 2),
        2,
        12,
    )
    assert (state.trigger_mode, state.clear_mode, state.fan_speed) == (
        "Software Trigger Edge",
        "Never",
        "Low",
    )
    assert state.temperature_setpoint == -15.0 and state.exposure_ms == 20.0
    assert await backend.read_temperature() == pytest.approx(-19.76)

    await backend.start(None)
    assert fake.calls[-1] == f"start_live(exp=20, mode={const.EXT_TRIG_SOFTWARE_EDGE}, buffer=16)"
    await backend.software_trigger()
    frame = await backend.next_frame(1.0)
    assert frame.frame_number == 1 and frame.pixels.shape == (128, 256)
    await backend.finish()
    assert fake.calls[-1] == "abort"  # PyVCAM's finish() of a live acquisition
    await backend.start(3)
    await backend.finish()
    assert fake.calls[-1] == "finish_seq"

    with pytest.raises(ValueError, match="only supports"):  # PyVCAM's own validation
        await backend.apply(
            exposure_ms=20.0,
            roi=(0, 0, 2048, 2048),
            binning=(3, 3),
            port=0,
            speed=0,
            gain=2,
            trigger_mode="Internal Trigger",
            clear_mode="Never",
            temperature_setpoint=-15.0,
            fan_speed="Low",
        )
    await backend.close()
    assert fake.calls[-2:] == ["close_camera", "uninit_pvcam"]
