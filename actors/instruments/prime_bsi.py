"""Photometrics Prime BSI: the camera actor, over a backend (PyVCAM or the simulator).

The actor owns the settings (as Parameters whose limits and choices come from what the camera
enumerates at open) and the acquisition. Frames are published with
``self.stream("frames").publish(frame)`` — never waiting, so a slow consumer cannot slow the
camera — and every loss is counted where it happens: ``frames_missing`` for gaps in the
camera's own frame numbers (lost in the camera or its driver's buffer), ``frames_lost`` for
frames a lossless tap could not take.

Parameter representation: ``roi`` is one string ``"x,y,width,height"`` in unbinned sensor
pixels, ``binning`` one string ``"XxY"``. An ROI is one thing: as four separate parameters,
moving it to the sensor's edge (or re-applying it after a restart, in declaration order) would
pass through invalid intermediate regions. Readout port, speed and gain are integer indices
(the PVCAM/PyVCAM values) with choices from the enumerated table; names are in the
descriptions and the read-only ``readout`` parameter.

Crash policy: a backend failure during an acquisition ends the acquisition and is recorded in
its status (``error``), which survives for clients to read; the actor then calls ``finish``.
If the camera answers, the actor stays up (a readout hiccup must not erase the accounting of
the run). If ``finish`` fails too, the camera is gone: the actor crashes and its supervisor
reconnects. The temperature poll doubles as the idle link check: a camera that stops
answering crashes the actor the same way.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from runtime import Message, Parameter, RequestError, ValidationError

from ..capabilities import (
    AcquisitionStatus,
    Capability,
    DeviceActor,
    Frame,
    GetAcquisitionStatus,
    Roi,
    SoftwareTrigger,
    StartAcquisition,
    StopAcquisition,
    WaitAcquisition,
)
from .camera_backend import CameraBackend, CameraDescription, CameraState

logger = logging.getLogger(__name__)


class AcquisitionRunning(ValidationError):
    """A setting that takes effect only when an acquisition starts was changed during one."""


class AcquisitionRefused(RequestError):
    """A start, trigger or wait that makes no sense in the camera's present state."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What the actor asks of the camera, as one value (so every write is all-or-nothing)."""

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


@dataclass
class _Run:
    """The accounting of one acquisition."""

    frames: int | None
    software_triggered: bool
    triggered: bool  # frames come only after triggers: waiting for one is not a failure
    lost_before: int
    acquired: int = 0
    missing: int = 0
    lost: int = 0
    last_frame_number: int = 0
    error: str = ""
    running: bool = True
    done: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=32))

    @property
    def fps(self) -> float:
        if len(self.arrivals) < 2 or self.arrivals[-1] <= self.arrivals[0]:
            return 0.0
        return (len(self.arrivals) - 1) / (self.arrivals[-1] - self.arrivals[0])

    def status(self) -> AcquisitionStatus:
        return AcquisitionStatus(
            running=self.running,
            frames_requested=self.frames,
            frames_acquired=self.acquired,
            frames_missing=self.missing,
            frames_lost=self.lost,
            last_frame_number=self.last_frame_number,
            fps=self.fps,
            error=self.error,
        )


IDLE = AcquisitionStatus(False, None, 0, 0, 0, 0, 0.0, "")


class PrimeBsi(DeviceActor):
    driver = "photometrics_prime_bsi"
    capabilities = (
        Capability.EXPOSURE_CONTROL,
        Capability.TRIGGERABLE,
        Capability.FRAME_PRODUCER,
        Capability.PARAMETERIZED,
    )
    units = "ms"  # of the exposure
    stream_names = ("frames",)

    description: CameraDescription
    settings: Settings  # what the actor asked for
    state: CameraState  # what the camera reported back

    def __init__(
        self,
        backend: CameraBackend,
        *,
        temperature_poll: float = 5.0,
        frame_timeout: float = 2.0,
    ) -> None:
        self.backend = backend
        self.temperature_poll = temperature_poll
        self.frame_timeout = frame_timeout  # s beyond the exposure before a frame is overdue
        self._run: _Run | None = None
        self._opened = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._opened = True  # from here on, on_stop closes (also after a failed open)
        self.description = description = await self.backend.open()
        self.identity = f"Photometrics Prime BSI {description.chip_name} #{description.serial}"
        self.settings = _defaults(description)
        self.state = await self._apply(self.settings)
        self._add_parameters(description)
        self.temperature.report(await self.backend.read_temperature())
        self.nursery.start_soon(self._poll_temperature)
        logger.info("%s: %s open", self.name, self.identity)

    async def on_stop(self) -> None:
        await self._finish("the actor stopped")
        if self._opened:
            await self.backend.close()

    async def on_emergency_stop(self, reason: str) -> None:
        await self._finish(f"emergency stop: {reason}")

    async def on_abort(self, reason: str) -> None:
        await self._finish(f"aborted: {reason}")

    async def check_link(self) -> None:
        self.temperature.report(await self.backend.read_temperature())

    # -- parameters ------------------------------------------------------------------------------

    def _add_parameters(self, d: CameraDescription) -> None:
        add = self.parameters.add
        s = self.settings
        idle = self._refuse_while_acquiring
        self.exposure = add(
            Parameter(
                "exposure",
                float,
                self.state.exposure_ms,
                units="ms",
                limits=d.exposure_limits_ms,
                tolerance=d.exposure_resolution_ms / 2 + 1e-9,
                description=f"exposure time, in steps of {d.exposure_resolution_ms:g} ms",
                check=idle,
                write=lambda v: self._write(exposure_ms=v),
                read=self._read(lambda st: st.exposure_ms),
            )
        )
        width, height = d.sensor_size
        self.roi = add(
            Parameter(
                "roi",
                str,
                _format_roi(s.roi),
                units="px",
                description=f"'x,y,width,height' in unbinned pixels inside {width}x{height}",
                check=self._check_roi,
                write=lambda v: self._write(roi=_parse_roi(v)),
                read=self._read(lambda st: _format_roi(st.roi)),
            )
        )
        binnings = None if d.binnings is None else tuple(f"{x}x{y}" for x, y in d.binnings)
        self.binning = add(
            Parameter(
                "binning",
                str,
                "1x1",
                choices=binnings,
                description="'XxY' pixels summed per output pixel",
                check=self._check_binning,
                write=lambda v: self._write(binning=_parse_binning(v)),
                read=self._read(lambda st: f"{st.binning[0]}x{st.binning[1]}"),
            )
        )
        self.port = add(
            Parameter(
                "readout_port",
                int,
                s.port,
                choices=[p.index for p in d.ports],
                description="; ".join(f"{p.index}: {p.name}" for p in d.ports)
                + " (a new port resets speed and gain to what it offers)",
                check=idle,
                write=self._write_port,
                read=self._read(lambda st: st.port),
            )
        )
        self.speed = add(
            Parameter(
                "readout_speed",
                int,
                s.speed,
                choices=self._speeds(s.port),
                description="speed index of the readout port (see readout)",
                check=idle,
                write=self._write_speed,
                read=self._read(lambda st: st.speed),
            )
        )
        self.gain = add(
            Parameter(
                "readout_gain",
                int,
                s.gain,
                choices=self._gains(s.port, s.speed),
                description="gain index of the port and speed; sets the bit depth (see readout)",
                check=idle,
                write=lambda v: self._write(gain=v),
                read=self._read(lambda st: st.gain),
            )
        )
        self.trigger_mode = add(
            Parameter(
                "trigger_mode",
                str,
                s.trigger_mode,
                choices=list(d.trigger_modes),
                description="exposure mode; software triggers work in: "
                + ", ".join(d.software_trigger_modes),
                check=idle,
                write=lambda v: self._write(trigger_mode=v),
                read=self._read(lambda st: st.trigger_mode),
            )
        )
        self.clear_mode = add(
            Parameter(
                "clear_mode",
                str,
                s.clear_mode,
                choices=list(d.clear_modes),
                description="sensor clearing; sCMOS: Auto or Never",
                check=idle,
                write=lambda v: self._write(clear_mode=v),
                read=self._read(lambda st: st.clear_mode),
            )
        )
        self.temperature_setpoint = add(
            Parameter(
                "temperature_setpoint",
                float,
                s.temperature_setpoint,
                units="°C",
                limits=d.temperature_setpoint_limits,
                tolerance=0.01,
                write=lambda v: self._write(temperature_setpoint=v),
                read=self._read(lambda st: st.temperature_setpoint),
            )
        )
        self.fan_speed = add(
            Parameter(
                "fan_speed",
                str,
                s.fan_speed,
                choices=list(d.fan_speeds) or [""],
                write=lambda v: self._write(fan_speed=v),
                read=self._read(lambda st: st.fan_speed),
            )
        )
        self.temperature = add(
            Parameter(
                "temperature",
                float,
                math.nan,
                units="°C",
                read_only=True,
                allow_nan=True,
                description=f"sensor temperature, polled every {self.temperature_poll:g} s",
            )
        )
        self.bit_depth = add(
            Parameter("bit_depth", int, self.state.bit_depth, units="bit", read_only=True)
        )
        self.readout = add(Parameter("readout", str, self._readout_name(), read_only=True))

    def _refuse_while_acquiring(self, value: object) -> None:
        if self._run is not None and self._run.running:
            raise AcquisitionRunning(
                f"{self.name}: acquisition settings take effect when an acquisition starts;"
                f" stop the running acquisition first (refused {value!r})"
            )

    def _check_roi(self, text: str) -> None:
        self._refuse_while_acquiring(text)
        x, y, width, height = _parse_roi(text)
        columns, rows = self.description.sensor_size
        if width < 1 or height < 1 or x < 0 or y < 0:
            raise ValidationError(f"roi: {text!r}: x and y must be >= 0 and width and height >= 1")
        if x + width > columns or y + height > rows:
            raise ValidationError(
                f"roi: {text!r} extends beyond the {columns}x{rows} sensor: needs"
                f" x + width <= {columns} and y + height <= {rows}"
            )
        bin_x, bin_y = self.settings.binning
        if width < bin_x or height < bin_y:
            raise ValidationError(
                f"roi: {text!r} is smaller than one {bin_x}x{bin_y} bin; make it larger or"
                " reduce the binning first"
            )

    def _check_binning(self, text: str) -> None:
        self._refuse_while_acquiring(text)
        bin_x, bin_y = _parse_binning(text)
        if bin_x < 1 or bin_y < 1:
            raise ValidationError(f"binning: {text!r}: both factors must be >= 1")
        _, _, width, height = self.settings.roi
        if width < bin_x or height < bin_y:
            raise ValidationError(
                f"binning: {text!r} is larger than the {width}x{height} roi; enlarge the roi first"
            )

    def _speeds(self, port: int) -> list[int]:
        return [s.index for s in self._port(port).speeds]

    def _gains(self, port: int, speed: int) -> list[int]:
        return [g.index for g in self._speed(port, speed).gains]

    def _port(self, index: int) -> Any:
        return next(p for p in self.description.ports if p.index == index)

    def _speed(self, port: int, index: int) -> Any:
        return next(s for s in self._port(port).speeds if s.index == index)

    def _readout_name(self) -> str:
        st = self.state
        port, speed = self._port(st.port), self._speed(st.port, st.speed)
        gain = next(g for g in speed.gains if g.index == st.gain)
        return (
            f"{port.name} / {speed.name} ({speed.pixel_time_ns} ns/px) / {gain.name}"
            f" ({gain.bit_depth}-bit)"
        )

    async def _write_port(self, port: int) -> None:
        """A port offers its own speeds and gains: keep the present ones if it has them,
        else take its first (as PVCAM requires: port, then speed, then gain)."""
        speeds = self._speeds(port)
        speed = self.settings.speed if self.settings.speed in speeds else speeds[0]
        gains = self._gains(port, speed)
        gain = self.settings.gain if self.settings.gain in gains else gains[0]
        await self._write(port=port, speed=speed, gain=gain)

    async def _write_speed(self, speed: int) -> None:
        gains = self._gains(self.settings.port, speed)
        gain = self.settings.gain if self.settings.gain in gains else gains[0]
        await self._write(speed=speed, gain=gain)

    async def _write(self, **changes: Any) -> None:
        settings = replace(self.settings, **changes)
        self.state = await self._apply(settings)
        self.settings = settings
        self.speed.choices = tuple(self._speeds(self.state.port))
        self.gain.choices = tuple(self._gains(self.state.port, self.state.speed))
        for parameter, value in ((self.speed, self.state.speed), (self.gain, self.state.gain)):
            if parameter.value != value:
                parameter.report(value)
        self.bit_depth.report(self.state.bit_depth)
        self.readout.report(self._readout_name())

    def _read(self, pick: Any) -> Any:
        async def read() -> Any:
            await trio.lowlevel.checkpoint()
            return pick(self.state)

        return read

    async def _apply(self, s: Settings) -> CameraState:
        try:
            return await self.backend.apply(
                exposure_ms=s.exposure_ms,
                roi=s.roi,
                binning=s.binning,
                port=s.port,
                speed=s.speed,
                gain=s.gain,
                trigger_mode=s.trigger_mode,
                clear_mode=s.clear_mode,
                temperature_setpoint=s.temperature_setpoint,
                fan_speed=s.fan_speed,
            )
        except ValueError as exc:  # validated here first; the camera refusing is still a refusal
            raise ValidationError(f"{self.name}: the camera refused the settings: {exc}") from exc

    # -- messages --------------------------------------------------------------------------------

    async def handle(self, message: Message) -> object:
        match message:
            case StartAcquisition(frames=frames):
                return await self._start(frames)
            case StopAcquisition():
                await self._finish("")
                return self._status()
            case GetAcquisitionStatus():
                return self._status()
            case WaitAcquisition(timeout=timeout):
                return await self._wait(timeout)
            case SoftwareTrigger():
                await self._software_trigger()
                return None
        return await super().handle(message)

    def _status(self) -> AcquisitionStatus:
        return IDLE if self._run is None else self._run.status()

    async def _start(self, frames: int | None) -> AcquisitionStatus:
        if self._run is not None and self._run.running:
            raise AcquisitionRefused(
                f"{self.name}: an acquisition is running already; stop it first"
            )
        if frames is not None and not 1 <= frames <= 65535:
            raise ValidationError(f"{self.name}: a sequence has 1 to 65535 frames, not {frames}")
        mode = self.settings.trigger_mode
        run = _Run(
            frames=frames,
            software_triggered=mode in self.description.software_trigger_modes,
            triggered=not _is_internal(mode),
            lost_before=self.stream("frames").lost,
        )
        try:
            await self.backend.start(frames)
        except ValueError as exc:
            raise ValidationError(f"{self.name}: the camera refused to start: {exc}") from exc
        self._run = run
        self.nursery.start_soon(self._acquire, run)
        logger.info("%s: acquisition of %s frames started", self.name, frames or "live")
        return run.status()

    async def _acquire(self, run: _Run) -> None:
        """The helper task: frames from the backend to the taps, until done or stopped."""
        registry = self.stream("frames")
        bin_x, bin_y = self.state.binning
        roi = Roi(*self.state.roi, bin_x=bin_x, bin_y=bin_y)
        timeout = self.state.exposure_ms / 1e3 + self.frame_timeout
        with run.scope:
            try:
                while run.frames is None or run.last_frame_number < run.frames:
                    try:
                        raw = await self.backend.next_frame(timeout)
                    except TimeoutError:
                        if run.triggered:
                            continue  # waiting for a trigger is not a failure
                        raise
                    self._account(run, raw.frame_number)
                    pixels = raw.pixels
                    if pixels.shape != roi.shape:
                        raise RuntimeError(
                            f"frame {raw.frame_number} has shape {pixels.shape}, expected"
                            f" {roi.shape} for {roi}"
                        )
                    pixels.flags.writeable = False
                    frame = Frame(
                        raw.frame_number,
                        raw.timestamp,
                        self.state.exposure_ms,
                        roi,
                        self.state.bit_depth,
                        pixels,
                    )
                    registry.publish(frame)
                    run.lost = registry.lost - run.lost_before
                    run.arrivals.append(raw.timestamp)
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"
                logger.error("%s: acquisition failed: %s", self.name, run.error)
        if run.running:  # it ended by itself (completed or failed), nobody stopped it
            await self._end(run)

    def _account(self, run: _Run, number: int) -> None:
        expected = run.last_frame_number + 1
        if number > expected:
            gap = number - expected
            run.missing += gap
            which = f"{expected}" if gap == 1 else f"{expected}-{number - 1}"
            logger.warning(
                "%s: frame(s) %s never arrived (%d missing in this acquisition)",
                self.name,
                which,
                run.missing,
            )
        elif number < expected:
            logger.error(
                "%s: frame number went back from %d to %d", self.name, expected - 1, number
            )
        run.acquired += 1
        run.last_frame_number = max(run.last_frame_number, number)

    async def _end(self, run: _Run) -> None:
        """Finish the camera's side; a camera that cannot even finish crashes the actor.

        The run counts as running until ``finish`` returns, so a StartAcquisition handled
        meanwhile is refused instead of being ended by this finish."""
        try:
            with trio.CancelScope(shield=True):
                await self.backend.finish()
        finally:
            run.running = False
            run.done.set()
        logger.info(
            "%s: acquisition ended: %d frames, %d missing, %d lost%s",
            self.name,
            run.acquired,
            run.missing,
            run.lost,
            f" ({run.error})" if run.error else "",
        )

    async def _finish(self, why: str) -> None:
        """Stop the acquisition, if any runs; used by StopAcquisition and the safe state."""
        run = self._run
        if run is None or not run.running:
            return
        run.scope.cancel()
        run.running = False
        run.done.set()
        if why:
            run.error = why
        await self.backend.finish()

    async def _wait(self, timeout: float) -> AcquisitionStatus:
        run = self._run
        if run is None or not run.running:
            return self._status()
        if run.frames is None and math.isinf(timeout):
            raise AcquisitionRefused(
                f"{self.name}: live mode runs until stopped; give WaitAcquisition a timeout"
            )
        with trio.move_on_after(timeout):
            await run.done.wait()
            return run.status()
        raise AcquisitionRefused(
            f"{self.name}: the acquisition was still running after {timeout:g} s"
            f" ({run.acquired} frames so far)"
        )

    async def _software_trigger(self) -> None:
        run = self._run
        if run is None or not run.running:
            raise AcquisitionRefused(f"{self.name}: no acquisition is running to trigger")
        if not run.software_triggered:
            modes = ", ".join(self.description.software_trigger_modes)
            raise AcquisitionRefused(
                f"{self.name}: trigger_mode is {self.settings.trigger_mode!r}; software"
                f" triggers need one of: {modes}"
            )
        await self.backend.software_trigger()

    async def _poll_temperature(self) -> None:
        while True:
            await trio.sleep(self.temperature_poll)
            self.temperature.report(await self.backend.read_temperature())


def _defaults(d: CameraDescription) -> Settings:
    """Full frame, 1x1, the first readout mode, internal trigger: a known state at start."""
    low, high = d.exposure_limits_ms
    port = d.ports[0]
    speed = port.speeds[0]
    setpoint_low, setpoint_high = d.temperature_setpoint_limits
    return Settings(
        exposure_ms=min(max(10.0, low), high),
        roi=(0, 0, *d.sensor_size),
        binning=(1, 1),
        port=port.index,
        speed=speed.index,
        gain=speed.gains[0].index,
        trigger_mode=_prefer(d.trigger_modes, "Internal Trigger"),
        clear_mode=_prefer(d.clear_modes, "Auto"),
        temperature_setpoint=min(max(-20.0, setpoint_low), setpoint_high),
        fan_speed=_prefer(d.fan_speeds, "High") if d.fan_speeds else "",
    )


def _is_internal(mode: str) -> bool:
    """PVCAM's internally timed modes ("Internal Trigger"; legacy "Timed", "Variable Timed");
    every other mode waits for a trigger (edge, level, first, software)."""
    return "internal" in mode.lower() or "timed" in mode.lower()


def _prefer(choices: Any, preferred: str) -> str:
    return preferred if preferred in choices else str(choices[0])


def _format_roi(roi: tuple[int, int, int, int]) -> str:
    return ",".join(str(v) for v in roi)


def _parse_roi(text: str) -> tuple[int, int, int, int]:
    parts = text.replace(" ", "").split(",")
    try:
        x, y, width, height = (int(p) for p in parts)
    except ValueError:
        raise ValidationError(
            f"roi: {text!r} is not 'x,y,width,height' (four integers, unbinned pixels)"
        ) from None
    return x, y, width, height


def _parse_binning(text: str) -> tuple[int, int]:
    try:
        x, y = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ValidationError(f"binning: {text!r} is not 'XxY', e.g. '2x2'") from None
    return x, y
