"""Photometrics Prime BSI: the camera actor, over a backend (PyVCAM or the simulator).

The actor owns the settings (Parameters whose limits and choices come from what the camera
enumerates at open; rules in ``camera_settings.py``) and the acquisition (accounting in
``acquisition.py``). Frames are published with ``self.stream("frames").publish(frame)`` —
never waiting, so a slow consumer cannot slow the camera — and every loss is counted where
it happens: ``frames_missing`` for gaps in the camera's frame numbers (lost in the camera or
its driver's buffer), ``frames_lost`` for frames a lossless tap could not take.

What the lab camera taught (issue 13), each reproduced by a quirk mode of the simulator:

- PVCAM's parameters are never read while the camera streams (a background poll stopped the
  frame callbacks after 19 frames): the temperature is read between acquisitions and served
  cached, with its age (``temperature_age_s``); a set-point or fan change during an
  acquisition is held and written when it ends.
- Every start is preceded by a halt, so an acquisition a crashed process left running cannot
  leave the camera in "exposure in progress" with no data.
- A stall (no frame within exposure + readout + ``frame_timeout``) is logged, counted
  (``stalls``) and the camera restarted; the frame slots that passed in silence count as
  missing and the numbering continues after them. Restarts that bring no frame end the
  acquisition with an error after ``stall_restarts``: nothing waits for ever.
- An all-zero frame is a driver artefact: counted (``frames_zero``), never published.
- Live mode whose circular overwrite the camera refuses at start (PVCAM error 185) runs
  without overwrite, and says so (``overwrite_fallback``, ``warning``, the log).

Crash policy: a backend failure during an acquisition ends the acquisition and is recorded in
its status (``error``), which survives for clients to read; the actor then calls ``finish``.
If the camera answers, the actor stays up (a readout hiccup must not erase the accounting of
the run). If ``finish`` fails too, the camera is gone: the actor crashes and its supervisor
reopens it and re-applies the desired settings. The temperature poll doubles as the idle link
check: a camera that stops answering crashes the actor the same way (while it streams, the
frames are the link check).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import numpy as np
import trio

from runtime import Message, Parameter, RequestError, ValidationError

from ..capabilities import (
    AcquisitionStatus,
    Capability,
    DeviceActor,
    Frame,
    FrameGeometry,
    GetAcquisitionStatus,
    GetFrameGeometry,
    Roi,
    SoftwareTrigger,
    StartAcquisition,
    StopAcquisition,
    WaitAcquisition,
)
from . import camera_settings as rules
from .acquisition import IDLE, Acquisition
from .camera_backend import CameraBackend, CameraDescription, CameraState, RawFrame
from .camera_settings import Settings

logger = logging.getLogger(__name__)


class AcquisitionRunning(ValidationError):
    """A setting that takes effect only when an acquisition starts was changed during one."""


class AcquisitionRefused(RequestError):
    """A start, trigger or wait that makes no sense in the camera's present state."""


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
        stall_restarts: int = 3,
    ) -> None:
        self.backend = backend
        self.temperature_poll = temperature_poll
        # The stall margin: s beyond exposure + readout before a frame is overdue (real
        # single-frame times run 10-160 ms over the exposure).
        self.frame_timeout = frame_timeout
        self.stall_restarts = stall_restarts  # restarts in a row without a frame, then fail
        self._run: Acquisition | None = None
        self._opened = False
        self._streaming = False  # from the start until finish returns: PVCAM is not read
        self._temperature_at = math.nan  # trio time of the last temperature read
        self._deferred: dict[str, Any] = {}  # settings held until the acquisition ends
        self._idle = trio.Lock()  # held to read or write the camera between acquisitions

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._opened = True  # from here on, on_stop closes (also after a failed open)
        self.description = d = await self.backend.open()
        self.identity = f"Photometrics Prime BSI {d.chip_name} #{d.serial}"
        self.settings = rules.defaults(d)
        self.state = await self._apply(self.settings)
        self._add_parameters(d)
        await self._read_temperature()
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
        if not self._streaming:  # while streaming, frames are the link check (stalls)
            await self._read_temperature()

    async def _poll_temperature(self) -> None:
        while True:
            await trio.sleep(self.temperature_poll)
            await self._between_acquisitions()

    async def _between_acquisitions(self) -> None:
        """Read the temperature and write held settings — only while the camera does not
        stream; while it does, publish how old the cached temperature is."""
        async with self._idle:  # a start waits until this is done
            if self._streaming:
                self._report_temperature_age()
                return
            await self._read_temperature()
            if not self._deferred:
                return
            changes, self._deferred = self._deferred, {}
            logger.info("%s: writing the settings held during the acquisition", self.name)
            try:
                await self._write(**changes)
            except ValidationError as exc:  # what the camera holds is published instead
                logger.error("%s: %s", self.name, exc)
                self.temperature_setpoint.report(self.state.temperature_setpoint)
                self.fan_speed.report(self.state.fan_speed)

    async def _read_temperature(self) -> None:
        self.temperature.report(await self.backend.read_temperature())
        self._temperature_at = trio.current_time()
        self._report_temperature_age()

    def _report_temperature_age(self) -> None:
        age = trio.current_time() - self._temperature_at
        self.temperature_age.report(round(age, 3) if math.isfinite(age) else math.nan)

    # -- parameters ------------------------------------------------------------------------------

    def _add_parameters(self, d: CameraDescription) -> None:
        s, st = self.settings, self.state
        self.exposure = self._setting(
            "exposure",
            float,
            st.exposure_ms,
            "exposure_ms",
            units="ms",
            limits=d.exposure_limits_ms,
            tolerance=d.exposure_resolution_ms / 2 + 1e-9,
            description=f"exposure time, in steps of {d.exposure_resolution_ms:g} ms",
        )
        width, height = d.sensor_size
        self.roi = self._setting(
            "roi",
            str,
            rules.format_roi(s.roi),
            "roi",
            to_camera=rules.parse_roi,
            from_camera=rules.format_roi,
            check=lambda v: rules.check_roi(v, d.sensor_size, self.settings.binning),
            units="px",
            description=f"'x,y,width,height' in unbinned pixels inside {width}x{height}",
        )
        self.binning = self._setting(
            "binning",
            str,
            "1x1",
            "binning",
            to_camera=rules.parse_binning,
            from_camera=lambda b: f"{b[0]}x{b[1]}",
            check=lambda v: rules.check_binning(v, self.settings.roi),
            choices=None if d.binnings is None else [f"{x}x{y}" for x, y in d.binnings],
            description="'XxY' pixels summed into one",
        )
        self.port = self._setting(
            "readout_port",
            int,
            s.port,
            "port",
            write=lambda p: self._write_readout(*rules.readout_for_port(d, self.settings, p)),
            choices=[p.index for p in d.ports],
            description="; ".join(f"{p.index}: {p.name}" for p in d.ports)
            + " (a new port keeps speed and gain if it has them, else takes its first)",
        )
        self.speed = self._setting(
            "readout_speed",
            int,
            s.speed,
            "speed",
            write=lambda v: self._write_readout(
                *rules.readout_for_speed(d, self.settings, self.settings.port, v)
            ),
            choices=rules.speeds(d, s.port),
            description="speed index of the readout port (names: see readout)",
        )
        self.gain = self._setting(
            "readout_gain",
            int,
            s.gain,
            "gain",
            choices=rules.gains(d, s.port, s.speed),
            description="gain index of the port and speed; sets the bit depth",
        )
        self.trigger_mode = self._setting(
            "trigger_mode",
            str,
            s.trigger_mode,
            "trigger_mode",
            choices=list(d.trigger_modes),
            description="software triggers work in: " + ", ".join(d.software_trigger_modes),
        )
        self.clear_mode = self._setting(
            "clear_mode",
            str,
            s.clear_mode,
            "clear_mode",
            choices=list(d.clear_modes),
            description="sensor clearing; for sCMOS: Auto or Never",
        )
        self.temperature_setpoint = self._setting(
            "temperature_setpoint",
            float,
            s.temperature_setpoint,
            "temperature_setpoint",
            during_acquisition=True,
            units="°C",
            limits=d.temperature_setpoint_limits,
            tolerance=0.01,
        )
        self.fan_speed = self._setting(
            "fan_speed",
            str,
            s.fan_speed,
            "fan_speed",
            during_acquisition=True,
            choices=list(d.fan_speeds) or [""],
        )
        add = self.parameters.add
        self.temperature = add(
            Parameter(
                "temperature",
                float,
                math.nan,
                units="°C",
                read_only=True,
                allow_nan=True,
                description=f"sensor temperature, read every {self.temperature_poll:g} s"
                " between acquisitions (never while streaming: then this is the last value"
                " read; see temperature_age_s and the sample's timestamp)",
            )
        )
        self.temperature_age = add(
            Parameter(
                "temperature_age_s",
                float,
                math.nan,
                units="s",
                read_only=True,
                allow_nan=True,
                description="how old the temperature value was when last published (it grows"
                " during an acquisition; refreshed every temperature poll)",
            )
        )
        self.bit_depth = add(Parameter("bit_depth", int, st.bit_depth, units="bit", read_only=True))
        self.readout = add(Parameter("readout", str, rules.readout_name(d, st), read_only=True))

    def _setting(
        self,
        name: str,
        dtype: type[Any],
        initial: Any,
        field: str,
        *,
        to_camera: Callable[[Any], Any] = lambda v: v,
        from_camera: Callable[[Any], Any] = lambda v: v,
        check: Callable[[Any], None] | None = None,
        write: Callable[[Any], Awaitable[None]] | None = None,
        during_acquisition: bool = False,
        **options: Any,
    ) -> Parameter[Any]:
        """A camera setting: written as a change of ``field`` of the settings, read back from
        what the camera reported; refused during an acquisition unless it may change then."""

        def checked(value: Any) -> None:
            if not during_acquisition:
                self._refuse_while_acquiring(value)
            if check is not None:
                check(value)

        async def read() -> Any:
            await trio.lowlevel.checkpoint()
            if field in self._deferred:  # what the camera will hold when the acquisition ends
                return from_camera(self._deferred[field])
            return from_camera(getattr(self.state, field))

        async def written(value: Any) -> None:
            if self._streaming:  # PVCAM is not touched while it streams: write it afterwards
                self._deferred[field] = to_camera(value)
                logger.info("%s: %s=%r is held until the acquisition ends", self.name, name, value)
                return
            self._deferred.pop(field, None)
            await (write or (lambda v: self._write(**{field: to_camera(v)})))(value)

        return self.parameters.add(
            Parameter(name, dtype, initial, check=checked, write=written, read=read, **options)
        )

    def _refuse_while_acquiring(self, value: object) -> None:
        if self._run is not None and self._run.running:
            raise AcquisitionRunning(
                f"{self.name}: acquisition settings take effect when an acquisition starts;"
                f" stop the running acquisition first (refused {value!r})"
            )

    async def _write_readout(self, port: int, speed: int, gain: int) -> None:
        await self._write(port=port, speed=speed, gain=gain)

    async def _write(self, **changes: Any) -> None:
        settings = replace(self.settings, **changes)
        self.state = await self._apply(settings)
        self.settings = settings
        d, st = self.description, self.state
        self.speed.choices = tuple(rules.speeds(d, st.port))
        self.gain.choices = tuple(rules.gains(d, st.port, st.speed))
        for parameter, value in ((self.speed, st.speed), (self.gain, st.gain)):
            if parameter.value != value:  # changed along with the port or speed
                parameter.report(value)
        self.bit_depth.report(st.bit_depth)
        self.readout.report(rules.readout_name(d, st))

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
                await self._finish("", read_after=True)
                return self._status()
            case GetAcquisitionStatus():
                return self._status()
            case GetFrameGeometry():
                st = self.state
                roi = Roi(*st.roi, bin_x=st.binning[0], bin_y=st.binning[1])
                return FrameGeometry(roi, st.bit_depth)
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
            raise AcquisitionRefused(f"{self.name}: an acquisition is running already; stop it")
        if frames is not None and not 1 <= frames <= 65535:
            raise ValidationError(f"{self.name}: a sequence has 1 to 65535 frames, not {frames}")
        mode = self.settings.trigger_mode
        run = Acquisition(
            frames=frames,
            software_triggered=mode in self.description.software_trigger_modes,
            triggered=not rules.is_internal(mode),
            lost_before=self.stream("frames").lost,
        )
        try:
            await self._start_camera(run, frames)
        except ValueError as exc:
            raise ValidationError(f"{self.name}: the camera refused to start: {exc}") from exc
        self._run = run
        self.nursery.start_soon(self._acquire, run)
        logger.info("%s: acquisition of %s frames started", self.name, frames or "live")
        return run.status()

    async def _start_camera(self, run: Acquisition, frames: int | None) -> None:
        """Halt, then start. Live mode whose circular overwrite the camera refuses at start
        (PVCAM error 185 — it shows at start, not at setup) runs without overwrite."""
        async with self._idle:
            await self._read_temperature()  # the last read before streaming
            self._streaming = True
        try:
            await self.backend.halt()  # a camera left acquiring would never deliver a frame
            if frames is not None or run.overwrite_fallback:
                await self.backend.start(frames, overwrite=not run.overwrite_fallback)
            else:
                try:
                    await self.backend.start(None, overwrite=True)
                except RuntimeError as refused:
                    await self.backend.halt()
                    try:
                        await self.backend.start(None, overwrite=False)
                    except RuntimeError as exc:
                        raise RuntimeError(
                            f"live mode failed to start with circular overwrite ({refused})"
                            f" and without ({exc})"
                        ) from exc
                    run.overwrite_fallback = True
                    run.warning = (
                        f"the camera refused live mode with circular overwrite at start"
                        f" ({refused}); running without overwrite: frames that find the"
                        " buffer full are lost (and counted missing) instead of the oldest"
                    )
                    logger.warning("%s: %s", self.name, run.warning)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._stopped_streaming()
            raise
        run.last_frame_at = trio.current_time()

    async def _stopped_streaming(self) -> None:
        """Finish the camera's side; the camera may be read again afterwards."""
        try:
            await self.backend.finish()
        finally:
            self._streaming = False

    def _stall_bound(self, st: CameraState) -> float:
        """Seconds without a frame that make a stall: exposure + readout + the margin."""
        return (st.exposure_ms + st.readout_ms) / 1e3 + self.frame_timeout

    async def _acquire(self, run: Acquisition) -> None:
        """The helper task: frames from the backend to the taps, until done or stopped."""
        st = self.state
        roi = Roi(*st.roi, bin_x=st.binning[0], bin_y=st.binning[1])
        bound = self._stall_bound(st)
        with run.scope:
            try:
                while not run.complete:
                    try:
                        raw = await self.backend.next_frame(bound)
                    except TimeoutError as exc:
                        if run.triggered:
                            continue  # waiting for a trigger is not a failure
                        await self._restart_after_stall(run, st, bound, exc)
                        continue
                    self._deliver(run, raw, roi, st)
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"
                logger.error("%s: acquisition failed: %s", self.name, run.error)
        if run.running:  # it ended by itself (completed or failed), nobody stopped it
            await self._end(run)

    def _deliver(self, run: Acquisition, raw: RawFrame, roi: Roi, st: CameraState) -> None:
        """Publish one frame (an all-zero one is counted, never published) and count it."""
        registry = self.stream("frames")
        number = run.number(raw.frame_number)
        zero = _all_zero(raw.pixels)
        if not zero:
            registry.publish(self._frame(raw, number, roi, st))
        skipped = run.account(raw.frame_number, raw.timestamp, registry.lost, zero=zero)
        run.last_frame_at = trio.current_time()
        if zero:
            run.warning = (
                f"frame {number} was all zero (a driver artefact): not published"
                f" ({run.zero} so far)"
            )
            logger.warning("%s: %s", self.name, run.warning)
        if skipped:
            logger.warning(
                "%s: frames %d to %d never arrived (%d missing so far)",
                self.name,
                skipped[0],
                skipped[-1],
                run.missing,
            )

    async def _restart_after_stall(
        self, run: Acquisition, st: CameraState, bound: float, timeout: TimeoutError
    ) -> None:
        """No frame within the bound: restart the camera and keep the numbering going, the
        slots that passed in silence counted as missing. Restarts that bring no frame, over
        and over, end the acquisition: a camera stuck in "exposure in progress" with no data
        is reported, not waited on."""
        silent = trio.current_time() - run.last_frame_at
        after = f"after frame {run.last_delivered}" if run.last_delivered else "at start"
        if run.restarts_without_frame >= self.stall_restarts:
            raise RuntimeError(
                f"no frame {after} within {bound:.3g} s (exposure + readout + frame_timeout),"
                f" also after {run.restarts_without_frame} restarts; the camera does not"
                f" deliver ({timeout}) — check it (power-cycle it if it stays so)"
            )
        await self.backend.finish()
        await self.backend.halt()
        interval = max(st.exposure_ms, st.readout_ms) / 1e3
        gap = math.floor((trio.current_time() - run.last_frame_at) / interval)
        first_missing = run.last_frame_number + 1
        count = run.restarted(gap)
        run.warning = (
            f"stall {run.stalls}: no frame {after} for {silent:.3g} s (bound {bound:.3g} s ="
            f" exposure + readout + frame_timeout); camera restarted, frames {first_missing}"
            f" to {run.last_frame_number} counted missing"
        )
        logger.warning("%s: %s", self.name, run.warning)
        await self.backend.start(count, overwrite=not run.overwrite_fallback)
        run.last_frame_at = trio.current_time()

    def _frame(self, raw: RawFrame, number: int, roi: Roi, st: CameraState) -> Frame:
        pixels = raw.pixels
        if pixels.shape != roi.shape:
            raise RuntimeError(
                f"frame {number} has shape {pixels.shape}, expected {roi.shape} for {roi}"
            )
        pixels.flags.writeable = False
        return Frame(number, raw.timestamp, st.exposure_ms, roi, st.bit_depth, pixels)

    async def _end(self, run: Acquisition) -> None:
        """Finish the camera's side; a camera that cannot even finish crashes the actor.

        The run counts as running until ``finish`` returns, so a StartAcquisition handled
        meanwhile is refused instead of being ended by this finish."""
        try:
            with trio.CancelScope(shield=True):
                await self._stopped_streaming()
        finally:
            run.ended()
        self._log_end(run)
        await self._between_acquisitions()

    def _log_end(self, run: Acquisition) -> None:
        logger.info(
            "%s: acquisition ended: %d frames, %d missing, %d lost, %d all-zero, %d stalls%s",
            self.name,
            run.acquired,
            run.missing,
            run.lost,
            run.zero,
            run.stalls,
            f" ({run.error})" if run.error else "",
        )

    async def _finish(self, why: str, *, read_after: bool = False) -> None:
        """Stop the acquisition, if one runs (StopAcquisition, abort, e-stop, on_stop);
        ``read_after``: then read the temperature and write held settings."""
        run = self._run
        if run is None or not run.running:
            return
        run.scope.cancel()
        run.ended(why)
        await self._stopped_streaming()
        self._log_end(run)
        if read_after:
            await self._between_acquisitions()

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


def _all_zero(pixels: np.ndarray[Any, Any]) -> bool:
    """Every pixel 0: a driver artefact (a real sensor reads its ~100 ADU bias in the dark).
    The corners settle it for almost every real frame without scanning the whole array."""
    if pixels.size == 0:
        return False
    if pixels.flat[0] or pixels.flat[-1]:
        return False
    return not pixels.any()
