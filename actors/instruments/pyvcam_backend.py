"""The real camera backend: PVCAM through PyVCAM (``pip install PyVCAM``, v2.3.x API).

PyVCAM's Python package installs anywhere, but its ``pyvcam.pvc`` extension needs the
vendor's ``libpvcam.so.2`` (PVCAM SDK/runtime). Where either is missing, :meth:`open` raises
:class:`CameraUnavailable` saying what to install — it never pretends a camera is there.

Every PyVCAM call blocks (USB, driver), so each goes through ``trio.to_thread.run_sync``,
one at a time behind a lock (PyVCAM documents no thread safety). Threads are not abandoned on
cancellation: a call left running inside libpvcam could race the ``finish``/``close`` that
follows. Instead every call is short: frames are polled with ``poll_ms`` timeouts in a loop,
so a cancelled ``next_frame`` returns within one poll and a software trigger or temperature
read gets the lock between polls.

API mapping (reference: ../shared/reference/pvcam-prime-bsi.md): ``exp_time`` is an int in
``exp_res`` units; ROI via ``reset_rois``/``set_roi`` (there is no ``roi`` property), binning
via ``binning``; ``readout_port`` -> ``speed`` -> ``gain`` in that order; ``exp_mode``,
``clear_mode``, ``fan_speed`` by name; ``temp``/``temp_setpoint`` already in °C;
``start_live``/``start_seq`` with ``reset_frame_counter=True`` so frame numbers start at 1;
``poll_frame`` -> ``(frame_dict, fps, frame_count)``; ``finish``; ``sw_trigger``.
Frame numbers are PyVCAM's ``frame_count`` (frames the driver delivered); a frame its
16-frame queue overwrote shows as a gap. Timestamps are host time at poll (PVCAM metadata
timestamps would be better; metadata handling is not implemented).

What the lab camera taught (issue 13):

- No parameter is read while the camera streams — a background read stopped PVCAM's frame
  callbacks after 19 frames, and PyVCAM reads even to write (``set_param`` asks the
  parameter's availability and type first). :meth:`read_temperature` and :meth:`apply` refuse
  while streaming; the actor holds such work until the acquisition ends.
- :meth:`halt` aborts through ``pvc.abort`` (``pl_exp_abort(CCS_HALT)``) even when this
  process started nothing: PyVCAM's ``finish()`` is a no-op then, and a camera left acquiring
  by a crashed process stays in "exposure in progress" with 0 bytes.
- A frame timeout says what PVCAM reports (``check_frame_status``), so a stuck camera is
  recognisable in the error.
- Live mode without circular overwrite: PyVCAM 2.3 always sets up ``CIRC_OVERWRITE``, so the
  fallback when the camera refuses that at start (error 185) is back-to-back sequences of
  ``live_buffer_frames`` frames (a sequence buffer is never overwritten). The frame counter
  runs on across them; the re-arm between two costs some dead time, not numbered frames.
- PyVCAM's errors carry PVCAM's own message text (``pl_error_message``), but some of its
  calls replace it (``open()``: "Failed to open camera."); the backend puts it back from the
  chained cause. A failed ``init_pvcam`` — error 151, "installation corrupted", in practice a
  missing ``PVCAM_VERSION`` environment variable — is a :class:`PvcamSetupError` saying so.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import trio

T = TypeVar("T")
logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "install the PVCAM runtime/SDK from Teledyne Photometrics (it provides libpvcam.so.2 and"
    " the USB driver; the lab uses PVCAM 3.10.2.5 under /opt/pvcam), then `pip install"
    ' PyVCAM`; or use port = "sim" for the simulated camera'
)
MS_PER_EXP_RES = {0: 1.0, 1: 1e-3, 2: 1e3}  # EXP_RES_ONE_MILLISEC / _MICROSEC / _SEC
SOFTWARE_TRIGGER_VALUES = (2816, 3072)  # EXT_TRIG_SOFTWARE_FIRST, EXT_TRIG_SOFTWARE_EDGE
ROW_TIME_S = 1.0 / (47.0 * 2048)  # measured ~47 fps full frame at 10 ns/pixel [obs]
SETUP_HINT = (
    "PVCAM error 151 ('installation corrupted') at initialisation is, in practice, a missing"
    " PVCAM_VERSION environment variable: the lab's /etc/profile.d/pvcam.sh exports it (e.g."
    " PVCAM_VERSION=3.10.2.5), but a daemon not started from a login shell (systemd) does not"
    " read that file — set it in the daemon's environment (systemd: Environment=)"
)


class CameraUnavailable(RuntimeError):
    """PVCAM or PyVCAM is not installed here, so no real camera can be opened."""


class PvcamSetupError(CameraUnavailable):
    """PVCAM is installed but cannot initialise in this process: a configuration error of
    the machine (environment, driver), not a fault of the camera."""


class Streaming(RuntimeError):
    """A parameter read was asked for while the camera streams (it would stop the frames)."""


def library_text(exc: BaseException) -> str:
    """The error with PVCAM's own message: PyVCAM sometimes replaces it with its own words
    ("Failed to open camera.") and keeps PVCAM's text as the chained cause."""
    text = str(exc)
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text.rstrip('.')}: {cause}"
    return text


@dataclass(frozen=True, slots=True)
class PyVcam:
    """The three pieces of PyVCAM the backend uses (a fake in tests)."""

    pvc: Any  # pyvcam.pvc: init_pvcam / uninit_pvcam
    camera: Any  # pyvcam.camera.Camera
    constants: Any  # pyvcam.constants


def load_pyvcam() -> PyVcam:
    try:
        constants = importlib.import_module("pyvcam.constants")
        pvc = importlib.import_module("pyvcam.pvc")
        camera = importlib.import_module("pyvcam.camera").Camera
    except ImportError as exc:
        raise CameraUnavailable(
            f"PVCAM / PyVCAM is not installed on this machine ({exc}); {INSTALL_HINT}"
        ) from exc
    return PyVcam(pvc, camera, constants)


@dataclass(frozen=True, slots=True)
class _Gain:
    index: int
    name: str
    bit_depth: int


@dataclass(frozen=True, slots=True)
class _Speed:
    index: int
    name: str
    pixel_time_ns: int
    gains: tuple[_Gain, ...]


@dataclass(frozen=True, slots=True)
class _Port:
    index: int
    name: str
    speeds: tuple[_Speed, ...]


@dataclass(frozen=True, slots=True)
class _Description:
    sensor_size: tuple[int, int]
    chip_name: str
    serial: str
    ports: tuple[_Port, ...]
    trigger_modes: tuple[str, ...]
    software_trigger_modes: tuple[str, ...]
    clear_modes: tuple[str, ...]
    fan_speeds: tuple[str, ...]
    exposure_limits_ms: tuple[float, float]
    exposure_resolution_ms: float
    temperature_setpoint_limits: tuple[float, float]
    binnings: tuple[tuple[int, int], ...] | None


@dataclass(frozen=True, slots=True)
class _State:
    exposure_ms: float
    roi: tuple[int, int, int, int]
    binning: tuple[int, int]
    port: int
    speed: int
    gain: int
    trigger_mode: str
    clear_mode: str
    temperature_setpoint: float
    fan_speed: str
    bit_depth: int
    readout_ms: float


@dataclass(frozen=True, slots=True)
class _Frame:
    pixels: npt.NDArray[np.uint16]
    frame_number: int
    timestamp: float


_initialised = 0  # PVCAM is initialised once per process; counted across open cameras


class PyVcamBackend:
    """One PVCAM camera by name (``pvcamUSB_0``; ``Camera.get_available_camera_names()``)."""

    def __init__(
        self,
        camera_name: str,
        *,
        load: Callable[[], PyVcam] = load_pyvcam,
        poll_ms: int = 50,
        live_buffer_frames: int = 16,
    ) -> None:
        self.camera_name = camera_name
        self._load = load
        self._poll_ms = poll_ms
        self._live_buffer_frames = live_buffer_frames
        self._lib: PyVcam | None = None
        self._cam: Any = None
        self._lock = trio.Lock()
        self._unit_ms = 1.0
        self._state: _State | None = None  # as last read back
        self._streaming = False  # from start to finish/halt: no parameter is read
        self._chunks: int | None = None  # live mode without overwrite: frames taken so far
        self._chunk_end = 0  # ... and the frame count that ends the current sequence

    async def _call(self, function: Callable[[], T]) -> T:
        async with self._lock:
            try:
                return await trio.to_thread.run_sync(function)
            except RuntimeError as exc:
                if type(exc) is not RuntimeError or exc.__cause__ is None:
                    raise
                raise RuntimeError(library_text(exc)) from exc

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> _Description:
        if self._cam is not None:
            raise RuntimeError(f"camera {self.camera_name!r} is open already")
        self._lib = self._load()
        return await self._call(self._open)

    def _open(self) -> _Description:
        global _initialised  # noqa: PLW0603 - one PVCAM library per process
        lib = self._lib
        assert lib is not None
        if _initialised == 0:
            try:
                lib.pvc.init_pvcam()
            except RuntimeError as exc:
                raise PvcamSetupError(_setup_message(exc)) from exc
        _initialised += 1
        try:
            names = list(lib.camera.get_available_camera_names())
            if self.camera_name not in names:
                raise RuntimeError(
                    f"no PVCAM camera named {self.camera_name!r}; cameras found:"
                    f" {', '.join(names) or 'none'}"
                )
            cam = lib.camera.select_camera(self.camera_name)
            cam.open()  # RuntimeError("Failed to open camera.") when busy (error 195)
        except BaseException:
            self._release_library()
            raise
        self._cam = cam
        return self._describe(lib, cam)

    def _describe(self, lib: PyVcam, cam: Any) -> _Description:
        const = lib.constants
        self._unit_ms = MS_PER_EXP_RES.get(int(cam.exp_res), 1.0)
        exposure = (
            cam.get_param(const.PARAM_EXPOSURE_TIME, const.ATTR_MIN) * self._unit_ms,
            cam.get_param(const.PARAM_EXPOSURE_TIME, const.ATTR_MAX) * self._unit_ms,
        )
        setpoint = (
            cam.get_param(const.PARAM_TEMP_SETPOINT, const.ATTR_MIN) / 100.0,
            cam.get_param(const.PARAM_TEMP_SETPOINT, const.ATTR_MAX) / 100.0,
        )
        exp_modes = dict(cam.exp_modes)
        binnings = cam.binnings
        return _Description(
            sensor_size=tuple(cam.sensor_size),
            chip_name=str(cam.chip_name),
            serial=str(cam.serial_no),
            ports=_ports(cam.port_speed_gain_table),
            trigger_modes=tuple(exp_modes),
            software_trigger_modes=tuple(
                name for name, value in exp_modes.items() if value in SOFTWARE_TRIGGER_VALUES
            ),
            clear_modes=tuple(dict(cam.clear_modes)),
            fan_speeds=tuple(dict(cam.fan_speeds)),
            exposure_limits_ms=exposure,
            exposure_resolution_ms=self._unit_ms,
            temperature_setpoint_limits=setpoint,
            binnings=None if binnings is None else tuple(tuple(b) for b in binnings),
        )

    async def close(self) -> None:
        if self._cam is None:
            return
        await self._call(self._close)

    def _close(self) -> None:
        cam, self._cam, self._state = self._cam, None, None
        self._streaming = False
        try:
            cam.finish()
            cam.close()
        finally:
            self._release_library()

    def _release_library(self) -> None:
        global _initialised  # noqa: PLW0603
        _initialised -= 1
        if _initialised == 0 and self._lib is not None:
            self._lib.pvc.uninit_pvcam()

    # -- settings ------------------------------------------------------------------------------

    async def apply(
        self,
        *,
        exposure_ms: float,
        roi: tuple[int, int, int, int],
        binning: tuple[int, int],
        port: int,
        speed: int,
        gain: int,
        trigger_mode: str,
        clear_mode: str,
        temperature_setpoint: float,
        fan_speed: str,
    ) -> _State:
        if self._streaming:
            raise ValueError(
                "settings are not written while the camera streams (PyVCAM reads parameters"
                " to write them, which stops the frames); finish the acquisition first"
            )

        def write() -> _State:
            """Only what changed (all of it the first time): a camera opened once keeps the
            rest."""
            cam, last = self._open_camera(), self._state
            exposure = round(exposure_ms / self._unit_ms)
            if last is None or exposure != round(last.exposure_ms / self._unit_ms):
                cam.exp_time = exposure
            if last is None or (roi, binning) != (last.roi, last.binning):
                cam.reset_rois()
                cam.binning = (1, 1)  # set_roi clips to the current binning; bin afterwards
                cam.set_roi(*roi)
                cam.binning = binning
            if last is None or (port, speed, gain) != (last.port, last.speed, last.gain):
                cam.readout_port = port  # PVCAM's order: port, then speed, then gain
                cam.speed = speed
                cam.gain = gain
            if last is None or trigger_mode != last.trigger_mode:
                cam.exp_mode = trigger_mode
            if last is None or clear_mode != last.clear_mode:
                cam.clear_mode = clear_mode
            if last is None or temperature_setpoint != last.temperature_setpoint:
                cam.temp_setpoint = temperature_setpoint
            if dict(cam.fan_speeds) and (last is None or fan_speed != last.fan_speed):
                cam.fan_speed = fan_speed
            self._state = self._read_state(cam)
            return self._state

        try:
            return await self._call(write)
        except BaseException:
            self._state = None  # partly written: the next apply writes everything
            raise

    def _read_state(self, cam: Any) -> _State:
        region = cam.rois[0]
        fans = dict(cam.fan_speeds)
        return _State(
            exposure_ms=cam.exp_time * self._unit_ms,
            roi=(region.s1, region.p1, region.s2 - region.s1 + 1, region.p2 - region.p1 + 1),
            binning=tuple(cam.binning),
            port=int(cam.readout_port),
            speed=int(cam.speed),
            gain=int(cam.gain),
            trigger_mode=_name(dict(cam.exp_modes), int(cam.exp_mode)),
            clear_mode=_name(dict(cam.clear_modes), int(cam.clear_mode)),
            temperature_setpoint=float(cam.temp_setpoint),
            fan_speed=_name(fans, int(cam.fan_speed)) if fans else "",
            bit_depth=int(cam.bit_depth),
            readout_ms=self._readout_ms(cam, region.p2 - region.p1 + 1),
        )

    @staticmethod
    def _readout_ms(cam: Any, rows: int) -> float:
        """PARAM_READOUT_TIME (µs in PVCAM 3.x: unconfirmed), or an estimate from the rows
        read at the measured full-frame rate where the camera lacks it."""
        try:
            return float(cam.readout_time) / 1e3
        except AttributeError:
            pass
        try:
            pixel_time_ns = int(cam.pix_time)
        except AttributeError:
            pixel_time_ns = 10
        return rows * ROW_TIME_S * 1e3 * pixel_time_ns / 10

    # -- acquisition ---------------------------------------------------------------------------

    async def start(self, frames: int | None, *, overwrite: bool = True) -> None:
        def start() -> None:
            cam = self._open_camera()
            self._chunks = None
            if frames is None and overwrite:
                cam.start_live(
                    buffer_frame_count=self._live_buffer_frames, reset_frame_counter=True
                )
            elif frames is None:  # no-overwrite live mode: back-to-back sequences
                self._chunks, self._chunk_end = 0, self._live_buffer_frames
                cam.start_seq(num_frames=self._live_buffer_frames, reset_frame_counter=True)
            else:
                cam.start_seq(num_frames=frames, reset_frame_counter=True)

        self._streaming = True
        try:
            await self._call(start)
        except BaseException:
            self._streaming = False
            raise

    async def halt(self) -> None:
        def halt() -> None:
            cam = self._open_camera()
            cam.finish()  # PyVCAM's own bookkeeping (a no-op if it started nothing)
            try:
                self._lib_pvc().abort(cam.handle)  # pl_exp_abort(CCS_HALT), whoever started
            except RuntimeError as exc:  # it also unregisters the frame callback, which
                logger.debug("%s: abort on an idle camera: %s", self.camera_name, exc)

        await self._call(halt)
        self._streaming = False
        self._chunks = None

    def _lib_pvc(self) -> Any:
        assert self._lib is not None
        return self._lib.pvc

    async def next_frame(self, timeout: float) -> _Frame:
        deadline = trio.current_time() + timeout
        while True:
            poll_ms = max(1, min(self._poll_ms, math.ceil((deadline - trio.current_time()) * 1e3)))
            try:
                frame, _fps, count = await self._call(partial(self._poll, poll_ms))
            except RuntimeError as exc:
                if "Frame timeout" not in str(exc):
                    raise
                if trio.current_time() >= deadline:
                    status = await self._call(self._frame_status)
                    raise TimeoutError(
                        f"no frame within {timeout:g} s (PVCAM status {status}): {exc}"
                    ) from exc
                continue
            pixels = frame["pixel_data"]
            if isinstance(pixels, list):
                raise RuntimeError("multi-ROI frames are not supported; set one ROI")
            if self._chunks is not None:
                await self._next_chunk(int(count))
            return _Frame(np.asarray(pixels, dtype=np.uint16), int(count), time.time())

    async def _next_chunk(self, count: int) -> None:
        """No-overwrite live mode: at the last frame of a sequence, arm the next one (the
        frame counter runs on)."""
        if count < self._chunk_end:
            return

        def rearm() -> None:
            cam = self._open_camera()
            cam.finish()
            cam.start_seq(num_frames=self._live_buffer_frames, reset_frame_counter=False)

        self._chunk_end = count + self._live_buffer_frames
        await self._call(rearm)

    def _frame_status(self) -> str:
        """What PVCAM says about the acquisition (for the error of an overdue frame)."""
        try:
            return str(self._open_camera().check_frame_status())
        except (RuntimeError, ValueError) as exc:
            return f"unknown ({exc})"

    def _poll(self, timeout_ms: int) -> tuple[dict[str, Any], float, int]:
        result: tuple[dict[str, Any], float, int] = self._open_camera().poll_frame(
            timeout_ms=timeout_ms
        )
        return result

    async def software_trigger(self) -> None:
        await self._call(lambda: self._open_camera().sw_trigger())

    async def finish(self) -> None:
        if self._cam is not None:
            await self._call(lambda: self._open_camera().finish())
        self._streaming = False
        self._chunks = None

    async def read_temperature(self) -> float:
        if self._streaming:
            raise Streaming(
                "the temperature is not read while the camera streams (a parameter read"
                " stops PVCAM's frame callbacks); read it between acquisitions"
            )
        return await self._call(lambda: float(self._open_camera().temp))

    def _open_camera(self) -> Any:
        if self._cam is None:
            raise RuntimeError(f"camera {self.camera_name!r} is not open")
        return self._cam


def _ports(table: dict[str, Any]) -> tuple[_Port, ...]:
    """PyVCAM's port_speed_gain_table -> the backend's readout tree, in index order."""
    ports = []
    for port_name, port in table.items():
        speeds = []
        for speed_name, speed in port.items():
            if not isinstance(speed, dict):
                continue  # 'port_value'
            gains = tuple(
                _Gain(int(g["gain_index"]), gain_name, int(g["bit_depth"]))
                for gain_name, g in speed.items()
                if isinstance(g, dict)
            )
            speeds.append(
                _Speed(int(speed["speed_index"]), speed_name, int(speed["pixel_time"]), gains)
            )
        ports.append(_Port(int(port["port_value"]), port_name, tuple(speeds)))
    return tuple(sorted(ports, key=lambda p: p.index))


def _name(enum: dict[str, int], value: int) -> str:
    """The name of an enum value; exposure modes read back OR-ed with the expose-out mode
    (low byte), so an extended trigger mode is also looked up without it."""
    for name, known in enum.items():
        if known == value:
            return name
    for name, known in enum.items():
        if known == value & ~0xFF:
            return name
    raise RuntimeError(f"camera reports value {value}, not among {enum}")


def _setup_message(exc: RuntimeError) -> str:
    version = os.environ.get("PVCAM_VERSION")
    present = (
        f"PVCAM_VERSION={version} is set here, so check it matches the installed PVCAM"
        if version
        else "PVCAM_VERSION is not set in this process's environment"
    )
    return f"PVCAM failed to initialise: {exc or 'no message'}. {SETUP_HINT}; {present}"
