"""The PyVCAM backend: its clear error without PVCAM, and its mapping onto PyVCAM's Camera.

The fake below imitates the PyVCAM 2.3.2 ``Camera`` API the backend uses (names and
behaviour read from ``pyvcam/camera.py``); it checks the backend's calls, not the SDK.
"""

from __future__ import annotations

import importlib
import time
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
import trio

from actors.instruments.pyvcam_backend import CameraUnavailable, PyVcam, PyVcamBackend, Streaming

PARAM_EXPOSURE_TIME, PARAM_TEMP_SETPOINT, ATTR_MIN, ATTR_MAX = 101, 102, 1, 2
CONSTANTS = SimpleNamespace(
    PARAM_EXPOSURE_TIME=PARAM_EXPOSURE_TIME,
    PARAM_TEMP_SETPOINT=PARAM_TEMP_SETPOINT,
    ATTR_MIN=ATTR_MIN,
    ATTR_MAX=ATTR_MAX,
)


class Roi:
    def __init__(self, s1: int, s2: int, p1: int, p2: int) -> None:
        self.s1, self.s2, self.p1, self.p2 = s1, s2, p1, p2


ENUMS = {"exp_mode": "exp_modes", "clear_mode": "clear_modes", "fan_speed": "fan_speeds"}
LOGGED = {"exp_time", "binning", "readout_port", "speed", "gain", "temp_setpoint", *ENUMS}


class FakeCamera:
    """Records what the backend does, in order."""

    log: ClassVar[list[str]] = []
    names: ClassVar[list[str]] = ["pvcamUSB_0"]

    def __init__(self, name: str) -> None:
        self.name = name
        self.exp_res = 0  # milliseconds
        self.exp_time = 10
        self.sensor_size = (2048, 2048)
        self.chip_name = "GS2020"
        self.serial_no = "A19G204008"
        self.binnings = [(1, 1), (2, 2)]
        self.exp_modes = {"Internal Trigger": 1792, "Software Trigger Edge": 3072}
        self.clear_modes = {"Never": 0, "Auto": 7}
        self.fan_speeds = {"High": 0, "Off": 3}
        self.port_speed_gain_table = {
            "Sensitivity": {
                "port_value": 0,
                "Speed_0": {
                    "speed_index": 0,
                    "pixel_time": 10,
                    "gain_range": [1, 2],
                    "HDR": {"gain_index": 1, "bit_depth": 16},
                    "CMS": {"gain_index": 2, "bit_depth": 12},
                },
            }
        }
        self.rois = [Roi(0, 2047, 0, 2047)]
        self.binning = (1, 1)
        self.readout_port, self.speed, self.gain = 0, 0, 1
        self.exp_mode, self.clear_mode, self.fan_speed = 1792 | 2, 7, 0  # mode | expose-out
        self.temp_setpoint = -20.0
        self.temp = -19.76
        self.handle = 7
        self.frames: list[int] = []

    def __setattr__(self, name: str, value: Any) -> None:
        """After __init__: log the settings written; enum setters take names (PyVCAM)."""
        if "frames" in self.__dict__ and name in LOGGED:
            self.log.append(f"{name}={value}")
            if name in ENUMS and isinstance(value, str):
                value = getattr(self, ENUMS[name])[value]
            if name == "exp_mode":
                value |= 2  # reads back OR-ed with the expose-out mode ("Any Row")
        object.__setattr__(self, name, value)

    @staticmethod
    def get_available_camera_names() -> list[str]:
        return FakeCamera.names

    @classmethod
    def select_camera(cls, name: str) -> FakeCamera:
        return cls(name)

    def open(self) -> None:
        self.log.append("open")

    def close(self) -> None:
        self.log.append("close")

    def get_param(self, param: int, attr: int) -> int:
        return {
            (PARAM_EXPOSURE_TIME, ATTR_MIN): 1,
            (PARAM_EXPOSURE_TIME, ATTR_MAX): 10000,
            (PARAM_TEMP_SETPOINT, ATTR_MIN): -2500,
            (PARAM_TEMP_SETPOINT, ATTR_MAX): 2500,
        }[(param, attr)]

    @property
    def bit_depth(self) -> int:
        return 16 if self.gain == 1 else 12

    def reset_rois(self) -> None:
        self.log.append("reset_rois")
        self.rois = [Roi(0, 2047, 0, 2047)]

    def set_roi(self, s1: int, p1: int, w: int, h: int) -> None:
        self.log.append(f"set_roi{(s1, p1, w, h)}")
        self.rois = [Roi(s1, s1 + w - 1, p1, p1 + h - 1)]

    def start_live(self, buffer_frame_count: int, reset_frame_counter: bool) -> None:
        self.log.append(f"start_live({buffer_frame_count}, {reset_frame_counter})")

    def start_seq(self, num_frames: int, reset_frame_counter: bool) -> None:
        self.log.append(f"start_seq({num_frames}, {reset_frame_counter})")

    def poll_frame(self, timeout_ms: int) -> tuple[dict[str, Any], float, int]:
        if not self.frames:
            time.sleep(timeout_ms / 1e3)  # PyVCAM waits this long, then gives up
            raise RuntimeError(
                "Frame timeout. Verify the timeout exceeds the exposure time. If applicable,"
                " check external trigger source."
            )
        count = self.frames.pop(0)
        return {"pixel_data": np.full((4, 8), count, np.uint16)}, 47.0, count

    def check_frame_status(self) -> str:
        return "EXPOSURE_IN_PROGRESS"

    def sw_trigger(self) -> None:
        self.log.append("sw_trigger")

    def finish(self) -> None:
        self.log.append("finish")


def fake_pyvcam() -> PyVcam:
    pvc = SimpleNamespace(
        init_pvcam=lambda: FakeCamera.log.append("init_pvcam"),
        uninit_pvcam=lambda: FakeCamera.log.append("uninit_pvcam"),
        abort=lambda handle: FakeCamera.log.append(f"abort({handle})"),
    )
    return PyVcam(pvc, FakeCamera, CONSTANTS)


@pytest.fixture(autouse=True)
def fresh_log() -> None:
    FakeCamera.log = []


def pvcam_installed() -> bool:
    try:
        importlib.import_module("pyvcam.pvc")
    except ImportError:
        return False
    return True


@pytest.mark.skipif(pvcam_installed(), reason="PVCAM and PyVCAM are installed here")
async def test_without_pvcam_opening_says_what_to_install():
    backend = PyVcamBackend("pvcamUSB_0")
    with pytest.raises(CameraUnavailable) as caught:
        await backend.open()
    message = str(caught.value)
    assert "PVCAM / PyVCAM is not installed" in message
    assert "pip install PyVCAM" in message and 'port = "sim"' in message
    await backend.close()  # nothing was opened: closing is harmless


async def test_open_describes_the_camera_from_what_pyvcam_enumerates():
    backend = PyVcamBackend("pvcamUSB_0", load=fake_pyvcam)
    description = await backend.open()
    assert FakeCamera.log == ["init_pvcam", "open"]
    assert description.sensor_size == (2048, 2048) and description.serial == "A19G204008"
    (port,) = description.ports
    (speed,) = port.speeds
    assert (port.name, speed.pixel_time_ns) == ("Sensitivity", 10)
    assert [(g.index, g.name, g.bit_depth) for g in speed.gains] == [
        (1, "HDR", 16),
        (2, "CMS", 12),
    ]
    assert description.software_trigger_modes == ("Software Trigger Edge",)
    assert description.exposure_limits_ms == (1.0, 10000.0)
    assert description.temperature_setpoint_limits == (-25.0, 25.0)
    assert description.binnings == ((1, 1), (2, 2))
    await backend.close()
    assert FakeCamera.log[-3:] == ["finish", "close", "uninit_pvcam"]


async def test_an_unknown_camera_name_lists_the_cameras_found():
    backend = PyVcamBackend("pvcamUSB_7", load=fake_pyvcam)
    with pytest.raises(RuntimeError, match=r"no PVCAM camera named 'pvcamUSB_7'.*pvcamUSB_0"):
        await backend.open()
    assert FakeCamera.log == ["init_pvcam", "uninit_pvcam"]


async def test_settings_are_written_in_pvcam_order_and_read_back():
    backend = PyVcamBackend("pvcamUSB_0", load=fake_pyvcam)
    await backend.open()
    FakeCamera.log.clear()
    state = await backend.apply(
        exposure_ms=20.0,
        roi=(10, 20, 100, 50),
        binning=(2, 2),
        port=0,
        speed=0,
        gain=2,
        trigger_mode="Software Trigger Edge",
        clear_mode="Auto",
        temperature_setpoint=-20.0,
        fan_speed="High",
    )
    assert FakeCamera.log == [
        "exp_time=20",
        "reset_rois",
        "binning=(1, 1)",
        "set_roi(10, 20, 100, 50)",
        "binning=(2, 2)",
        "readout_port=0",
        "speed=0",
        "gain=2",
        "exp_mode=Software Trigger Edge",
        "clear_mode=Auto",
        "temp_setpoint=-20.0",
        "fan_speed=High",
    ]
    assert (state.exposure_ms, state.roi, state.binning) == (20.0, (10, 20, 100, 50), (2, 2))
    assert (state.gain, state.bit_depth, state.trigger_mode) == (2, 12, "Software Trigger Edge")
    FakeCamera.log.clear()
    state = await backend.apply(  # during an acquisition only the cooling may change
        exposure_ms=20.0,
        roi=(10, 20, 100, 50),
        binning=(2, 2),
        port=0,
        speed=0,
        gain=2,
        trigger_mode="Software Trigger Edge",
        clear_mode="Auto",
        temperature_setpoint=-15.0,
        fan_speed="High",
    )
    assert FakeCamera.log == ["temp_setpoint=-15.0"] and state.temperature_setpoint == -15.0
    await backend.close()


async def test_frames_are_polled_with_bounded_timeouts():
    backend = PyVcamBackend("pvcamUSB_0", load=fake_pyvcam, poll_ms=20)
    await backend.open()
    cam: Any = backend._cam
    await backend.start(None)
    assert FakeCamera.log[-1] == "start_live(16, True)"
    cam.frames = [1, 2]
    frame = await backend.next_frame(1.0)
    assert frame.frame_number == 1 and frame.pixels.shape == (4, 8)
    await backend.next_frame(1.0)
    with pytest.raises(TimeoutError, match=r"no frame within 0\.1 s"):
        await backend.next_frame(0.1)
    await backend.software_trigger()
    with pytest.raises(Streaming, match="not read while the camera streams"):
        await backend.read_temperature()  # it would stop the frame callbacks
    await backend.finish()
    assert await backend.read_temperature() == pytest.approx(-19.76)
    await backend.start(5)
    assert FakeCamera.log[-1] == "start_seq(5, True)"
    started = time.monotonic()
    with trio.move_on_after(0.05):  # cancelling a wait returns within one poll
        await backend.next_frame(10.0)
    assert time.monotonic() - started < 0.5
    await backend.close()
