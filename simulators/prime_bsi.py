"""A simulated Photometrics Prime BSI: the camera backend the simulated bench and tests use.

It satisfies ``actors.instruments.camera_backend.CameraBackend`` structurally (simulators may
not import the actors). Facts: ../shared/reference/pvcam-prime-bsi.md; what is unconfirmed
there is a constructor argument here, not a constant.

Timing is computed, not run: frame ``k`` of an acquisition is ready at a time derived from
the start (or its trigger) and the frame interval, ``max(exposure, rows x row_time)`` with
``row_time = 1 / (47 x 2048)`` s scaled by the speed's pixel time — so a full frame comes at
~47 fps at 10 ns/pixel and fewer rows are faster. ``next_frame`` sleeps with trio to the next
ready time, so tests run in virtual time (``autojump_clock``) and no background task exists.
Live mode keeps a circular buffer (16 frames, like PyVCAM's default): frames nobody fetched
in time are overwritten and show up as gaps in the frame numbers.

Frames are cheap: per (shape, bit depth) a pool of a few pattern+noise frames is made once;
each frame is a copy of one (about a memcpy) with its frame number stamped into the first
pixels (:func:`stamped_number` reads it back), so a consumer can check which frame it holds.
Like the real sensor, no pixel is below the bias: a dark pixel reads ~100-104 ADU.

Quirk modes (:attr:`SimulatedPrimeBsi.QUIRKS`) reproduce what the lab camera and its driver
were recorded doing — frame callbacks that stop, a camera left acquiring by a crashed process,
all-zero frames, circular overwrite refused at start. They are off by default (the simulated
bench is clean); a test (``SimulatedPrimeBsi(quirks=("stalls",))``) or a bench file
(``options = { quirks = ["stalls"] }`` on a ``port = "sim"`` camera) switches them on. One-off
failures a test injects stay in :class:`CameraFaults`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import trio

FULL_FRAME_FPS = 47.0  # measured 46-47.5 fps on the lab camera at 100 MHz [obs]
SENSOR = (2048, 2048)  # width, height
REFERENCE_PIXEL_TIME_NS = 10
POOL_SIZE = 4
BIAS_ADU = 100  # a real Prime BSI's dark level is ~100-104 ADU [obs]
READ_NOISE_ADU = 4  # dark pixels spread over BIAS_ADU .. BIAS_ADU + READ_NOISE_ADU
STALL_AFTER = 19  # "stalls" quirk: frames per start before the callbacks stop [obs]
ZERO_EVERY = 10  # "zero_frames" quirk: every 10th frame of a start is all zero


def stamped_number(pixels: npt.NDArray[np.uint16], bit_depth: int) -> int:
    """The frame number the simulator stamped into a frame's first two pixels: digits in base
    ``2**bit_depth - BIAS_ADU``, low digit first, each on top of the bias (so a stamped pixel
    never reads below the dark level either)."""
    base = (1 << bit_depth) - BIAS_ADU
    flat = pixels.reshape(-1)
    return sum((int(flat[i]) - BIAS_ADU) * base**i for i in range(min(2, flat.size)))


@dataclass(frozen=True, slots=True)
class Gain:
    index: int
    name: str
    bit_depth: int


@dataclass(frozen=True, slots=True)
class Speed:
    index: int
    name: str
    pixel_time_ns: int
    gains: tuple[Gain, ...]


@dataclass(frozen=True, slots=True)
class Port:
    index: int
    name: str
    speeds: tuple[Speed, ...]


#: Port 0 / 100 MHz (10 ns) / HDR 16-bit + CMS 12-bit is in the PVCAM manual. PVCAM names no
#: speed on this camera (PyVCAM reports "Speed_0"). Port 1 — "Speed", 5 ns, one 11-bit gain —
#: follows rust-daq's mock and the commonly cited 11-bit mode: UNCONFIRMED.
PRIME_BSI_PORTS: tuple[Port, ...] = (
    Port(0, "Sensitivity", (Speed(0, "Speed_0", 10, (Gain(1, "HDR", 16), Gain(2, "CMS", 12))),)),
    Port(1, "Speed", (Speed(0, "Speed_0", 5, (Gain(1, "Balanced", 11),)),)),
)
#: Which binnings the camera offers is unconfirmed (rust-daq tested 1, 2, 4, 8).
PRIME_BSI_BINNINGS: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (4, 4), (8, 8))
#: PVCAM's sCMOS extended exposure modes; names as PVCAM reports them (unconfirmed spelling).
TRIGGER_MODES = {
    "Internal Trigger": 1792,
    "Trigger first": 2048,
    "Edge Trigger": 2304,
    "Software Trigger Edge": 3072,
    "Software Trigger First": 2816,
}
SOFTWARE_TRIGGER_MODES = ("Software Trigger Edge", "Software Trigger First")
EDGE_MODES = ("Edge Trigger", "Software Trigger Edge")  # one trigger, one frame
FIRST_MODES = ("Trigger first", "Software Trigger First")  # one trigger starts the sequence
CLEAR_MODES = ("Auto", "Never", "Pre-Exposure", "Pre-Sequence")
FAN_SPEEDS = ("High", "Medium", "Low", "Off")


@dataclass(frozen=True, slots=True)
class Description:
    sensor_size: tuple[int, int]
    chip_name: str
    serial: str
    ports: tuple[Port, ...]
    trigger_modes: tuple[str, ...]
    software_trigger_modes: tuple[str, ...]
    clear_modes: tuple[str, ...]
    fan_speeds: tuple[str, ...]
    exposure_limits_ms: tuple[float, float]
    exposure_resolution_ms: float
    temperature_setpoint_limits: tuple[float, float]
    binnings: tuple[tuple[int, int], ...] | None


@dataclass(frozen=True, slots=True)
class State:
    exposure_ms: float = 10.0
    roi: tuple[int, int, int, int] = (0, 0, *SENSOR)
    binning: tuple[int, int] = (1, 1)
    port: int = 0
    speed: int = 0
    gain: int = 1  # PyVCAM's open() leaves port 0, speed 0, gain 1
    trigger_mode: str = "Internal Trigger"
    clear_mode: str = "Auto"
    temperature_setpoint: float = -20.0
    fan_speed: str = "High"
    bit_depth: int = 16
    readout_ms: float = 1e3 / FULL_FRAME_FPS  # full frame at 10 ns/pixel


@dataclass(frozen=True, slots=True)
class SimulatedFrame:
    pixels: npt.NDArray[np.uint16]
    frame_number: int
    timestamp: float


@dataclass
class CameraFaults:
    """Fault injection for tests. ``drop``: frame numbers the camera never delivers (gaps);
    ``zero``: frame numbers that arrive all zero (each start numbers from 1);
    ``stall``: no frame is delivered while set (live frames keep being overwritten);
    ``readout_failure``: the next ``next_frame`` raises RuntimeError with this text;
    ``temperature_failure``: ``read_temperature`` raises RuntimeError with this text."""

    drop: set[int] = field(default_factory=set)
    zero: set[int] = field(default_factory=set)  # frame numbers that arrive all zero
    stall: bool = False
    readout_failure: str = ""
    temperature_failure: str = ""


class SimulatedPrimeBsi:
    """The simulated camera. One instance is one physical camera: keep it across actor
    restarts (it remembers its temperature); opening it while open is "camera busy"."""

    #: The quirk modes: name -> what the real camera (or its driver) does in that mode.
    QUIRKS: ClassVar[Mapping[str, str]] = {
        "stall_on_parameter_read": "a parameter read (temperature, a setting's read-back)"
        " while streaming stops the frame callbacks until the acquisition is restarted (a"
        " background poll stopped the lab camera after 19 frames)",
        "left_acquiring": "found acquiring, left so by a process that exited uncleanly: a start"
        " without an abort (halt) first stays in 'exposure in progress' with 0 bytes",
        "stalls": f"the frame callbacks stop after {STALL_AFTER} frames of every start, until"
        " the acquisition is restarted",
        "zero_frames": f"every {ZERO_EVERY}th frame of a start arrives all zero (a driver"
        " artefact)",
        "overwrite_refused": "continuous acquisition with circular overwrite fails at start"
        " with PVCAM error 185 (configuration invalid); without overwrite it runs",
    }

    def __init__(
        self,
        *,
        name: str = "PrimeBSI",
        serial: str = "SIM-A19G204008",
        ports: Sequence[Port] = PRIME_BSI_PORTS,
        binnings: Sequence[tuple[int, int]] | None = PRIME_BSI_BINNINGS,
        exposure_limits_ms: tuple[float, float] = (1.0, 10_000.0),  # unconfirmed
        exposure_resolution_ms: float = 1.0,  # PyVCAM's default resolution: ms
        setpoint_limits: tuple[float, float] = (-25.0, 25.0),  # unconfirmed
        live_buffer_frames: int = 16,
        ambient_c: float = 22.0,
        cooling_time_constant: float = 60.0,  # s: within 0.5 °C of -20 °C after ~5 min
        seed: int = 0,
        quirks: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.quirks: set[str] = set()
        for quirk in quirks:
            self.enable_quirk(quirk)
        self.reads_while_streaming = 0  # parameter reads during an acquisition (should be 0)
        self.description = Description(
            sensor_size=SENSOR,
            chip_name="GS2020",
            serial=serial,
            ports=tuple(ports),
            trigger_modes=tuple(TRIGGER_MODES),
            software_trigger_modes=SOFTWARE_TRIGGER_MODES,
            clear_modes=CLEAR_MODES,
            fan_speeds=FAN_SPEEDS,
            exposure_limits_ms=exposure_limits_ms,
            exposure_resolution_ms=exposure_resolution_ms,
            temperature_setpoint_limits=setpoint_limits,
            binnings=tuple(binnings) if binnings is not None else None,
        )
        self.live_buffer_frames = live_buffer_frames
        self.faults = CameraFaults()
        self.state = State()
        self.is_open = False
        self.opens = 0
        self._ambient = ambient_c
        self._tau = cooling_time_constant
        self._cooling: tuple[float, float] | None = None  # (start time, start temperature)
        self._rng = np.random.default_rng(seed)
        self._pools: dict[tuple[tuple[int, int], int], list[npt.NDArray[np.uint16]]] = {}
        self._run: _Run | None = None
        self._changed = trio.Event()
        self._left_acquiring = self.quirk("left_acquiring")  # until halted

    # -- quirk modes -------------------------------------------------------------------------

    def enable_quirk(self, name: str, on: bool = True) -> None:
        """Switch a quirk mode on (or off). ValueError naming the known ones for a typo."""
        if name not in self.QUIRKS:
            known = ", ".join(sorted(self.QUIRKS))
            raise ValueError(f"{self.name} simulator has no quirk {name!r}; quirks: {known}")
        if on:
            self.quirks.add(name)
        else:
            self.quirks.discard(name)
        if name == "left_acquiring":
            self._left_acquiring = on

    def quirk(self, name: str) -> bool:
        return name in self.quirks

    def _parameter_read(self) -> None:
        """A read through the library; while streaming it may stop the frame callbacks."""
        run = self._run
        if run is not None:
            self.reads_while_streaming += 1
            if self.quirk("stall_on_parameter_read"):
                run.frozen = True

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> Description:
        await trio.lowlevel.checkpoint()
        if self.is_open:
            raise RuntimeError(
                f"Failed to open camera {self.name!r}: camera busy (PVCAM error 195): another"
                " process still holds it"
            )
        self.is_open = True
        self.opens += 1
        self._run = None
        self.state = State()
        if self._cooling is None:  # the sensor starts cooling when first powered and opened
            self._cooling = (trio.current_time(), self._ambient)
        return self.description

    async def close(self) -> None:
        await trio.lowlevel.checkpoint()
        self._run = None
        self.is_open = False
        self._wake()

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
    ) -> State:
        await trio.lowlevel.checkpoint()
        self._require_open()
        self._parameter_read()  # PyVCAM reads back (and its setters read) what it writes
        frame_settings = (exposure_ms, roi, binning, port, speed, gain, trigger_mode, clear_mode)
        if self._run is not None and frame_settings != astuple(self.state)[:8]:
            raise ValueError(
                "exposure, ROI, binning, readout and modes cannot change while an acquisition"
                " runs; finish it first"
            )
        bit_depth = self._readout(port, speed, gain).bit_depth
        self._check_roi(*roi)
        self._check_binning(binning)
        low, high = self.description.exposure_limits_ms
        resolution = self.description.exposure_resolution_ms
        units = round(exposure_ms / resolution)  # PyVCAM's exp_time is an int in exp_res units
        if not low <= units * resolution <= high:
            raise ValueError(
                f"Invalid value: {exposure_ms} - only exposure times between {low} and {high}"
            )
        for value, allowed, what in (
            (trigger_mode, TRIGGER_MODES, "exp_modes"),
            (clear_mode, CLEAR_MODES, "clear_modes"),
            (fan_speed, FAN_SPEEDS, "fan_speeds"),
        ):
            if value not in allowed:
                raise ValueError(f"Invalid key '{value}' for {what} - keys: {list(allowed)}")
        low, high = self.description.temperature_setpoint_limits
        if not low <= temperature_setpoint <= high:
            raise ValueError(f"Invalid temp {temperature_setpoint}: range {low} - {high}")
        if temperature_setpoint != self.state.temperature_setpoint:
            self._cooling = (trio.current_time(), self._temperature())
        self.state = State(
            exposure_ms=units * resolution,
            roi=roi,
            binning=binning,
            port=port,
            speed=speed,
            gain=gain,
            trigger_mode=trigger_mode,
            clear_mode=clear_mode,
            temperature_setpoint=temperature_setpoint,
            fan_speed=fan_speed,
            bit_depth=bit_depth,
            readout_ms=roi[3] * self._row_time(port, speed) * 1e3,
        )
        return self.state

    def _row_time(self, port: int, speed: int) -> float:
        """Seconds to read one sensor row: ~47 fps full frame at 10 ns/pixel, scaled."""
        pixel_time = self.description.ports[port].speeds[speed].pixel_time_ns
        return pixel_time / (FULL_FRAME_FPS * SENSOR[1] * REFERENCE_PIXEL_TIME_NS)

    def _readout(self, port: int, speed: int, gain: int) -> Gain:
        ports = {p.index: p for p in self.description.ports}
        if port not in ports:
            raise ValueError(f"Invalid value '{port}' for readout_ports - values: {list(ports)}")
        speeds = {s.index: s for s in ports[port].speeds}
        if speed not in speeds:
            raise ValueError(f"port {port} only supports {len(speeds)} speed entries")
        gains = {g.index: g for g in speeds[speed].gains}
        if gain not in gains:
            raise ValueError(f"Invalid value: {gain} - only supports gain indices {list(gains)}")
        return gains[gain]

    def _check_roi(self, x: int, y: int, width: int, height: int) -> None:
        """PyVCAM's set_roi rules: width/height >= 1, the whole region inside the sensor."""
        if width < 1 or height < 1:
            raise ValueError("Width and height must be >= 1")
        columns, rows = self.description.sensor_size
        if not (x >= 0 and x + width <= columns and y >= 0 and y + height <= rows):
            raise ValueError("Could not add ROI. ROI extends beyond limits of sensor")

    def _check_binning(self, binning: tuple[int, int]) -> None:
        if binning[0] <= 0 or binning[1] <= 0:
            raise ValueError("Binning must be >= 1")
        allowed = self.description.binnings
        if allowed is not None and binning not in allowed:
            raise ValueError(f"{self.name} only supports {list(allowed)} binnings")

    # -- acquisition ---------------------------------------------------------------------------

    async def start(self, frames: int | None, *, overwrite: bool = True) -> None:
        await trio.lowlevel.checkpoint()
        self._require_open()
        if frames is not None and not 1 <= frames <= 65535:
            raise ValueError(f"a sequence has 1 to 65535 frames, not {frames}")
        if frames is None and overwrite and self.quirk("overwrite_refused"):
            raise RuntimeError(
                "PVCAM error 185: Invalid Configuration (pl_exp_start_cont with CIRC_OVERWRITE)"
            )
        state = self.state
        _, _, width, height = state.roi
        interval = max(state.exposure_ms / 1e3, state.readout_ms / 1e3)
        shape = (height // state.binning[1], width // state.binning[0])
        mode = state.trigger_mode
        internal = mode not in EDGE_MODES + FIRST_MODES
        self._run = _Run(
            frames=frames,
            interval=interval,
            shape=shape,
            bit_depth=state.bit_depth,
            mode=mode,
            started=trio.current_time() if internal else None,
            epoch=time.time() - trio.current_time(),
            overwrite=overwrite,
            frozen=self._left_acquiring,  # 'exposure in progress' with 0 bytes, for ever
            stall_after=STALL_AFTER if self.quirk("stalls") else None,
        )
        self._wake()

    async def halt(self) -> None:
        """pl_exp_abort(CCS_HALT): whatever runs stops, also another process's acquisition."""
        await trio.lowlevel.checkpoint()
        self._require_open()
        self._left_acquiring = False
        self._run = None
        self._wake()

    async def finish(self) -> None:
        await trio.lowlevel.checkpoint()
        self._run = None
        self._wake()

    async def software_trigger(self) -> None:
        await trio.lowlevel.checkpoint()
        run = self._run
        if run is None or run.mode not in SOFTWARE_TRIGGER_MODES:
            raise RuntimeError("sw_trigger failed: no acquisition in a software trigger mode")
        self._trigger(run)

    def external_trigger(self) -> None:
        """A rising edge on the trigger input (for tests of the hardware trigger modes)."""
        if self._run is not None and self._run.mode in ("Edge Trigger", "Trigger first"):
            self._trigger(self._run)

    def _trigger(self, run: _Run) -> None:
        now = trio.current_time()
        if run.mode in FIRST_MODES:
            if run.started is None:
                run.started = now
        else:
            previous = run.ready[-1] if run.ready else -math.inf
            run.ready.append(max(now, previous) + run.interval)
        self._wake()

    async def next_frame(self, timeout: float) -> SimulatedFrame:
        deadline = trio.current_time() + timeout
        while True:
            run = self._run
            if run is None:
                raise RuntimeError("no acquisition is running (start one, or it was finished)")
            if self.faults.readout_failure:
                message, self.faults.readout_failure = self.faults.readout_failure, ""
                raise RuntimeError(f"Readout failed: {message}")
            now = trio.current_time()
            produced = run.produced(now)
            if run.frames is None:
                self._buffer(run, produced)
            if run.stall_after is not None and run.delivered >= run.stall_after:
                run.frozen = True
            stalled = self.faults.stall or run.frozen
            if run.next <= produced and not stalled:
                number = run.next
                run.next = run.take() if run.held is not None else run.next + 1
                if number in self.faults.drop:
                    continue
                run.delivered += 1
                return self._frame(run, number)
            if now >= deadline:
                raise TimeoutError(
                    "Frame timeout. Verify the timeout exceeds the exposure time. If"
                    " applicable, check external trigger source."
                )
            ready = run.ready_time(run.next)
            if stalled:  # re-check every frame time: the fault is a plain flag
                wake = min(deadline, now + run.interval)
            else:
                wake = deadline if ready is None else min(deadline, ready)
            with trio.move_on_at(wake):
                await self._changed.wait()

    def _buffer(self, run: _Run, produced: int) -> None:
        """Live mode's buffer of ``live_buffer_frames``: with overwrite the oldest unread
        frames give way to new ones; without, new frames that find it full are lost."""
        size = self.live_buffer_frames
        if run.overwrite:
            if produced - run.next + 1 > size:
                run.next = produced - size + 1  # the oldest overwritten
            return
        if run.held is None:
            run.held = deque()
        if produced > run.stored:  # O(buffer), however long nobody read
            room = max(0, size - len(run.held))
            run.held.extend(range(run.stored + 1, min(produced, run.stored + room) + 1))
            run.stored = produced
        run.next = run.held[0] if run.held else produced + 1

    def _frame(self, run: _Run, number: int) -> SimulatedFrame:
        ready = run.ready_time(number)
        assert ready is not None
        zero = number in self.faults.zero or (
            self.quirk("zero_frames") and number % ZERO_EVERY == 0
        )
        if zero:  # the whole buffer zero, as the lab's driver delivered it now and then
            return SimulatedFrame(np.zeros(run.shape, np.uint16), number, run.epoch + ready)
        pool = self._pool(run.shape, run.bit_depth)
        pixels = pool[number % len(pool)].copy()
        flat = pixels.reshape(-1)
        base = (1 << run.bit_depth) - BIAS_ADU
        for i in range(min(2, flat.size)):  # see stamped_number
            flat[i] = BIAS_ADU + (number // base**i) % base
        return SimulatedFrame(pixels, number, run.epoch + ready)

    def _pool(self, shape: tuple[int, int], bit_depth: int) -> list[npt.NDArray[np.uint16]]:
        """A few frames per geometry and mode: a bright spot on the bias, with read noise."""
        key = (shape, bit_depth)
        if key not in self._pools:
            # Cheap on purpose (tens of ms for a full frame's pool, on the event loop): the spot
            # is separable (an outer product, not a 2-D exp) and the noise a small tile
            # repeated, all in uint16 (the spot leaves headroom, so the sum never overflows).
            full = (1 << bit_depth) - 1
            rows, columns = shape
            gy = np.exp(-(np.linspace(-1.0, 1.0, rows) ** 2) / 0.1).astype(np.float32)
            gx = np.exp(-(np.linspace(-1.0, 1.0, columns) ** 2) / 0.1).astype(np.float32)
            spot = np.outer(gy, gx)
            spot *= 0.9 * (full - BIAS_ADU - READ_NOISE_ADU)
            spot += BIAS_ADU
            base = spot.astype(np.uint16)
            repeats = (-(-rows // 64), -(-columns // 64))
            pool = []
            for _ in range(POOL_SIZE):
                tile = self._rng.integers(0, READ_NOISE_ADU + 1, (64, 64), dtype=np.uint16)
                pool.append(base + np.tile(tile, repeats)[:rows, :columns])
            self._pools[key] = pool
        return self._pools[key]

    # -- temperature ---------------------------------------------------------------------------

    async def read_temperature(self) -> float:
        await trio.lowlevel.checkpoint()
        self._require_open()
        self._parameter_read()
        if self.faults.temperature_failure:
            raise RuntimeError(self.faults.temperature_failure)
        return round(self._temperature(), 2)  # PVCAM reports hundredths of a degree

    def _temperature(self) -> float:
        if self._cooling is None:
            return self._ambient
        since, start = self._cooling
        target = self.state.temperature_setpoint
        elapsed = trio.current_time() - since
        return target + (start - target) * math.exp(-elapsed / self._tau)

    # -- helpers -------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if not self.is_open:
            raise RuntimeError(f"camera {self.name!r} is not open")

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@dataclass
class _Run:
    """One acquisition: when each frame is ready, and which one is taken next."""

    frames: int | None
    interval: float
    shape: tuple[int, int]
    bit_depth: int
    mode: str
    started: float | None  # internal timing from here (None: waiting for the first trigger)
    epoch: float  # Unix time minus trio time, for frame timestamps
    ready: list[float] = field(default_factory=list)  # edge modes: one entry per trigger
    next: int = 1
    overwrite: bool = True  # live mode's circular buffer overwrites the oldest unread frames
    held: deque[int] | None = None  # without overwrite: the frames the buffer holds
    stored: int = 0  # without overwrite: frames produced so far that found the buffer (or not)
    frozen: bool = False  # frame callbacks stopped: nothing is delivered until a new start
    stall_after: int | None = None  # the "stalls" quirk: frames before the callbacks stop
    delivered: int = 0

    def take(self) -> int:
        """Without overwrite: the frame after the one just taken from the buffer."""
        assert self.held is not None
        self.held.popleft()
        return self.held[0] if self.held else self.stored + 1

    def ready_time(self, number: int) -> float | None:
        if self.frames is not None and number > self.frames:
            return None
        if self.mode in EDGE_MODES:
            return self.ready[number - 1] if number <= len(self.ready) else None
        if self.started is None:
            return None
        return self.started + number * self.interval

    def produced(self, now: float) -> int:
        """How many frames the camera has read out by ``now``."""
        if self.mode in EDGE_MODES:
            count = sum(1 for t in self.ready if t <= now)
        elif self.started is None:
            count = 0
        else:
            count = math.floor((now - self.started) / self.interval)
            if self.started + (count + 1) * self.interval <= now:  # rounding: agree with
                count += 1  # ready_time, so a frame is never due yet "not produced"
        return count if self.frames is None else min(count, self.frames)
