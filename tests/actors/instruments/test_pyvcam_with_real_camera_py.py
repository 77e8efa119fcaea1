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
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import trio

pytest.importorskip("pyvcam")
const: Any = importlib.import_module("pyvcam.constants")

from actors.capabilities import (  # noqa: E402
    AcquisitionStatus,
    GetAcquisitionStatus,
    StartAcquisition,
    StopAcquisition,
)
from actors.instruments.prime_bsi import PrimeBsi  # noqa: E402
from actors.instruments.pyvcam_backend import (  # noqa: E402
    CameraUnavailable,
    PvcamSetupError,
    PyVcam,
    PyVcamBackend,
)
from runtime import ActorRef, GetParameter, SetParameter  # noqa: E402
from supervisors import ActorSpec, open_actor_system  # noqa: E402

#: Quirk modes of the fake library: what the lab camera and PVCAM were recorded doing.
QUIRKS = {
    "stall_on_parameter_read": "a parameter read (get_param, or set_param, which reads the"
    " parameter's availability and type first) while streaming stops the frame callbacks"
    " until the acquisition is aborted and started again",
    "left_acquiring": "an earlier process left the camera acquiring: until pl_exp_abort, the"
    " status stays EXPOSURE_IN_PROGRESS and no frame arrives",
    "zero_frames": "every 10th frame arrives all zero",
    "overwrite_refused": "pl_exp_start_cont with CIRC_OVERWRITE fails (error 185) at start",
    "pvcam_version_missing": "pl_pvcam_init fails with error 151 (no PVCAM_VERSION)",
}
#: PVCAM's own message texts (pl_error_message) as PyVCAM passes them on. The exact wording
#: of the real library is unconfirmed here; what matters is that it reaches the user.
TEXT_151 = "PVCAM installation corrupted (C0_PVCAM_CORRUPTED, 151)"
TEXT_185 = "Invalid configuration (C2_CONFIGURATION_INVALID, 185)"
TEXT_195 = "Camera is busy (C2_CAM_BUSY, 195)"
FRAME_TIMEOUT = (
    "Frame timeout. Verify the timeout exceeds the exposure time. If applicable, check external"
    " trigger source."
)


class FakePvcam:
    """Prime BSI-like parameters; unknown ones raise AttributeError like pvcmodule does."""

    def __init__(self, *quirks: str) -> None:
        c = const
        assert set(quirks) <= set(QUIRKS), quirks
        self.quirks = set(quirks)
        self.streaming = False  # between a start and abort / finish_seq
        self.frozen = "left_acquiring" in self.quirks  # no frame until pl_exp_abort
        self.reads_while_streaming = 0
        self.busy = False  # another process holds the camera
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
        if "pvcam_version_missing" in self.quirks:
            raise RuntimeError(TEXT_151)

    def _read(self) -> None:
        if self.streaming:
            self.reads_while_streaming += 1
            if "stall_on_parameter_read" in self.quirks:
                self.frozen = True

    def uninit_pvcam(self) -> None:
        self.calls.append("uninit_pvcam")

    def get_cam_total(self) -> int:
        return 1

    def get_cam_name(self, index: int) -> str:
        return "pvcamUSB_0"

    def open_camera(self, name: str) -> int:
        self.calls.append(f"open_camera({name})")
        if self.busy:
            raise RuntimeError(TEXT_195)
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
        self._read()
        computed = self._computed()
        if param in computed and attr in computed[param]:
            return computed[param][attr]
        if param in self.values and attr == const.ATTR_CURRENT:
            return self.values[param]
        raise AttributeError(f"parameter {param} attribute {attr} is not available")

    def set_param(self, handle: int, param: int, value: Any) -> None:
        c = const
        self._read()  # pvcmodule asks ATTR_AVAIL and ATTR_TYPE before it writes
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
        if "overwrite_refused" in self.quirks:  # set up fine; pl_exp_start_cont refuses
            raise RuntimeError(TEXT_185)
        self.streaming = True

    def start_seq(self, handle: int, rois: list[Any], exp: int, mode: int, n: int) -> None:
        self.calls.append(f"start_seq(exp={exp}, frames={n})")
        self.rois = rois
        self.streaming = True

    def get_frame(self, handle: int, rois: list[Any], typenum: int, timeout: int, oldest: bool):
        if self.frozen or not self.streaming:
            time.sleep(min(timeout, 20) / 1e3)  # the real one waits the whole timeout
            raise RuntimeError(FRAME_TIMEOUT)
        time.sleep(0.002)  # a frame every ~2 ms, so a test does not spin a core
        self.frame_count += 1
        zero = "zero_frames" in self.quirks and self.frame_count % 10 == 0
        arrays = [
            np.full(
                ((r.p2 - r.p1 + 1) // r.pbin, (r.s2 - r.s1 + 1) // r.sbin),
                0 if zero else 100,  # the sensor's bias
                np.uint16,
            )
            for r in rois
        ]
        return {"pixel_data": arrays}, 47.0, self.frame_count

    def check_frame_status(self, handle: int) -> str:
        return "EXPOSURE_IN_PROGRESS" if self.frozen else "FRAME_AVAILABLE"

    def abort(self, handle: int) -> None:
        self.calls.append("abort")  # pl_exp_abort(CCS_HALT): whoever started it
        self.streaming = self.frozen = False

    def finish_seq(self, handle: int) -> None:
        self.calls.append("finish_seq")
        self.streaming = self.frozen = False

    def sw_trigger(self, handle: int) -> None:
        self.calls.append("sw_trigger")


@pytest.fixture
def quirks() -> tuple[str, ...]:
    return ()


@pytest.fixture
def pyvcam(
    monkeypatch: pytest.MonkeyPatch, quirks: tuple[str, ...]
) -> Iterator[tuple[FakePvcam, PyVcam]]:
    fake = FakePvcam(*quirks)
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


# -- what the lab camera taught (issue 13), through PyVCAM's own camera.py ----------------------


@pytest.mark.parametrize("quirks", [("pvcam_version_missing",)])
async def test_pvcam_error_151_at_init_is_a_setup_error_with_the_pvcam_version_hint(
    pyvcam, monkeypatch: pytest.MonkeyPatch
):
    fake, lib = pyvcam
    monkeypatch.delenv("PVCAM_VERSION", raising=False)
    backend = PyVcamBackend("pvcamUSB_0", load=lambda: lib)
    with pytest.raises(PvcamSetupError) as caught:
        await backend.open()
    message = str(caught.value)
    assert TEXT_151 in message  # the library's own words
    assert "missing PVCAM_VERSION environment variable" in message
    assert "PVCAM_VERSION is not set in this process's environment" in message
    assert isinstance(caught.value, CameraUnavailable)  # the device shows as degraded
    fake.quirks.clear()  # the environment fixed: the next attempt initialises afresh
    monkeypatch.setenv("PVCAM_VERSION", "3.10.2.5")
    await backend.open()
    await backend.close()
    assert fake.calls.count("init_pvcam") == 2 and fake.calls[-1] == "uninit_pvcam"


async def test_pvcam_errors_carry_the_librarys_text(pyvcam):
    fake, lib = pyvcam
    fake.busy = True
    backend = PyVcamBackend("pvcamUSB_0", load=lambda: lib)
    with pytest.raises(RuntimeError) as caught:
        await backend.open()
    assert str(caught.value) == f"Failed to open camera: {TEXT_195}"  # PyVCAM's + PVCAM's


@pytest.mark.parametrize("quirks", [("left_acquiring",)])
async def test_a_camera_left_acquiring_needs_the_halt_and_a_stuck_one_says_so(pyvcam):
    fake, lib = pyvcam
    backend = PyVcamBackend("pvcamUSB_0", load=lambda: lib, poll_ms=10)
    await backend.open()
    await backend.start(3)  # without a halt first: PVCAM waits for data that never comes
    with pytest.raises(TimeoutError, match=r"PVCAM status EXPOSURE_IN_PROGRESS"):
        await backend.next_frame(0.1)
    await backend.halt()  # pl_exp_abort(CCS_HALT), though PyVCAM had started nothing
    assert "abort" in fake.calls
    await backend.start(3)
    assert (await backend.next_frame(1.0)).frame_number == 1
    await backend.close()


def actor_over_pyvcam(lib: PyVcam, **options: Any) -> ActorSpec:
    backend = PyVcamBackend("pvcamUSB_0", load=lambda: lib, poll_ms=10)
    return ActorSpec("camera", lambda: PrimeBsi(backend, **options))


async def frames_at_least(cam: ActorRef, count: int) -> AcquisitionStatus:
    with trio.fail_after(20):
        while True:
            status: AcquisitionStatus = await cam.ask(GetAcquisitionStatus())
            if status.frames_acquired >= count or not status.running:
                return status
            await trio.sleep(0.02)


@pytest.mark.parametrize("quirks", [("stall_on_parameter_read", "left_acquiring", "zero_frames")])
async def test_the_actor_over_pyvcam_never_reads_while_streaming(pyvcam):
    """Real clock (PyVCAM calls run in threads): the temperature poll runs every 20 ms, yet
    nothing reaches PVCAM while the camera streams; a set-point change waits for the end."""
    fake, lib = pyvcam
    spec = actor_over_pyvcam(lib, temperature_poll=0.02, frame_timeout=0.5)
    async with open_actor_system([spec]) as system:
        cam = system.ref("camera")
        await cam.ask(SetParameter("roi", "0,0,64,32"))
        await cam.ask(StartAcquisition())
        await frames_at_least(cam, 20)
        await cam.ask(SetParameter("temperature_setpoint", -10.0))
        status = await frames_at_least(cam, 60)
        assert fake.reads_while_streaming == 0
        assert status.running and status.stalls == 0 and not status.error
        assert status.frames_zero >= 5 and status.frames_missing == 0
        setpoint = f"set_param({const.PARAM_TEMP_SETPOINT}, -1000)"
        assert setpoint not in fake.calls
        stopped = await cam.ask(StopAcquisition())
        assert fake.calls.index(setpoint) > len(fake.calls) - 1 - fake.calls[::-1].index("abort")
        assert stopped.frames_acquired + stopped.frames_zero == stopped.last_frame_number
        assert (await cam.ask(GetParameter("temperature_age_s"))).value == 0.0


@pytest.mark.parametrize("quirks", [("overwrite_refused",)])
async def test_the_actor_over_pyvcam_falls_back_to_no_overwrite(pyvcam):
    fake, lib = pyvcam
    async with open_actor_system([actor_over_pyvcam(lib)]) as system:
        cam = system.ref("camera")
        await cam.ask(SetParameter("roi", "0,0,64,32"))
        status = await cam.ask(StartAcquisition())
        assert status.overwrite_fallback and TEXT_185 in status.warning
        status = await frames_at_least(cam, 40)  # across two re-armed sequences
        assert status.frames_missing == 0 and status.last_frame_number >= 40
        assert fake.calls.count("start_seq(exp=10, frames=16)") >= 3
        await cam.ask(StopAcquisition())
