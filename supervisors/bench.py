"""The bench: a supervision tree built from a BenchConfig, plus simulators where asked.

This is the one place that knows every driver and every simulator. A device whose port is
``"sim"`` gets its wire-protocol simulator started in-process on a pseudo-terminal, and the
real driver opens that — so the simulated bench runs exactly the code the lab runs. The
camera has no wire protocol (everything goes through the vendor library): its simulator is an
in-process backend that the driver's builder plugs into the real camera actor.

Supervision policy: each instrument has its own supervisor, so one device's failures never
restart another's. A device that loses its port keeps retrying with capped backoff and is
*degraded* (restarting) meanwhile; it is never given up on, because the cable may be plugged
back in an hour later and the daemon must pick it up without a restart.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from actors.acquisition.executor import EXECUTOR_NAME, PlanExecutor
from actors.acquisition.history import HISTORY_FILE
from actors.acquisition.suspenders import Condition, Suspender
from actors.documents.actor import DOCUMENTS_NAME, PUBLISHER_NAME, DocumentsActor, origin_of
from actors.documents.tiled import TiledPublisher, tiled_available
from actors.instruments import ell14, esp300, maitai, newport1830c, prime_bsi
from actors.instruments.camera_backend import CameraBackend
from actors.instruments.pyvcam_backend import PyVcamBackend
from actors.instruments.serial_device import LinkSettings
from actors.instruments.synthetic import (
    PeakShape,
    SyntheticMotor,
    SyntheticPeak,
    SyntheticReadable,
)
from actors.instruments.transport import SerialSettings
from actors.instruments.visa_transport import VisaSettings
from actors.pipeline.frame_ring import FrameRing
from actors.pipeline.recorder import RECORDER_NAME, RecorderActor
from actors.pipeline.ring_buffer import default_directory
from actors.scripting.execution_ids import IDS_FILE
from actors.scripting.runner import RUNNER_NAME, ScriptRunner
from runtime import ActorState, short_repr
from runtime.config import BUILT_IN, BenchConfig, DeviceConfig, parse_config
from simulators._pty import PtySimulator
from simulators.ell14 import Ell14BusSimulator
from simulators.esp300 import Esp300Simulator
from simulators.maitai import MaiTaiSimulator
from simulators.newport1830c import Newport1830CSimulator
from simulators.prime_bsi import SimulatedPrimeBsi

from ._specs import ActorSpec, Backoff, Strategy, SupervisorSpec
from ._system import SupervisedSystem, open_actor_system

VISA_PREFIX = "visa:"
DEVICE_RESTARTS = Backoff(initial=0.2, maximum=10.0, multiplier=2.0, jitter=0.2)
#: The longest one instrument's start-up holds the next ones (and the gRPC edge, which starts
#: last): a device still starting after this goes on starting, shown as degraded. A port that
#: fails (missing, not a tty, busy) fails in milliseconds; this bounds a start-up that hangs.
DEVICE_START_TIMEOUT = 10.0

SIMULATED_BENCH = """
[bench]
name = "simulated"

[[device]]
id = "ell14"
driver = "thorlabs_ell14"
port = "sim"
options = { addresses = ["2", "3", "8"] }

[[device]]
id = "esp300"
driver = "newport_esp300"
port = "sim"

[[device]]
id = "maitai"
driver = "spectra_physics_maitai"
port = "sim"

[[device]]
id = "power_meter"
driver = "newport_1830c"
port = "sim"

[[device]]
id = "camera"
driver = "photometrics_prime_bsi"
port = "sim"

# A software detector: a peak over the first ESP300 axis, for tune and adaptive plans.
[[device]]
id = "peak"
driver = "synthetic_peak"
port = "sim"
[device.options]
motor = "esp300.axis1"
centre = 0.3
width = 0.4
amplitude = 1.0
background = 0.05
noise = 0.002
"""


class Options:
    """Reads one device's ``options`` table; anything not read is an unknown-key error."""

    def __init__(self, config: BenchConfig, device: DeviceConfig) -> None:
        self._config = config
        self._device = device
        self._left = dict(device.options)
        self._allowed: list[str] = []

    def get(
        self,
        name: str,
        kind: type,
        default: Any,
        check: Callable[[Any], str | None] = lambda v: None,
    ) -> Any:
        self._allowed.append(name)
        if name not in self._left:
            return default
        value = self._left.pop(name)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self._error(
                name, f"expected {kind.__name__}, got {type(value).__name__} {value!r}"
            )
        problem = check(value)
        if problem:
            raise self._error(name, problem)
        return value

    def finish(self) -> None:
        for name in self._left:
            allowed = ", ".join(self._allowed) or "none"
            raise self._error(
                name, f"unknown option for driver {self._device.driver!r}; allowed: {allowed}"
            )

    def _error(self, name: str, reason: str) -> Exception:
        return self._config.error(f"{self._device.key}.options.{name}", reason)


def _link(settings: SerialSettings, options: Options) -> LinkSettings:
    """``port = "visa:GPIB0::5::INSTR"`` (or any VISA resource) selects the VISA link for the
    instruments that have GPIB; framing and timeouts stay those of the serial settings."""
    backend = options.get("visa_backend", str, "@py")
    if not settings.port.startswith(VISA_PREFIX):
        return settings
    return VisaSettings(
        settings.port.removeprefix(VISA_PREFIX),
        backend=backend,
        write_terminator=settings.write_terminator,
        read_terminator=settings.read_terminator,
        reply_timeout=settings.reply_timeout,
        any_line_end=settings.any_line_end,
    )


def _range_pair(value: Any) -> str | None:
    if len(value) != 2 or not all(isinstance(v, int) for v in value) or value[0] >= value[1]:
        return "expected [low, high] integers with low < high"
    return None


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def _axes(value: Any) -> str | None:
    if not value or any(a not in (1, 2, 3) for a in value) or len(set(value)) != len(value):
        return "expected a list of distinct axis numbers from 1, 2, 3"
    return None


def _power_meter(config: BenchConfig, device: DeviceConfig, port: str) -> SupervisorSpec:
    options = Options(config, device)
    settings = newport1830c.serial_settings(
        port,
        baudrate=options.get("baudrate", int, 9600, _positive),
        reply_timeout=options.get("reply_timeout", float, 1.0, _positive),
    )
    low, high = options.get("wavelength_limits", list, [300, 1100], _range_pair)
    link = _link(settings, options)
    options.finish()
    actor = ActorSpec(
        device.id, lambda: newport1830c.Newport1830C(link, wavelength_limits=(low, high))
    )
    return _device_supervisor(device.id, (actor,), Strategy.ONE_FOR_ONE)


def _esp300(config: BenchConfig, device: DeviceConfig, port: str) -> SupervisorSpec:
    options = Options(config, device)
    settings = esp300.serial_settings(
        port,
        baudrate=options.get("baudrate", int, 19200, _positive),
        rtscts=options.get("rtscts", bool, True),
        reply_timeout=options.get("reply_timeout", float, 1.0, _positive),
    )
    axes = options.get("axes", list, [1, 2, 3], _axes)
    motor_off = options.get("motor_off_on_estop", bool, False)
    link = _link(settings, options)
    options.finish()
    controller = ActorSpec(device.id, lambda: esp300.Esp300(link, motor_off_on_estop=motor_off))
    children = [controller] + [_esp300_axis(device.id, n) for n in axes]
    return _device_supervisor(device.id, tuple(children), Strategy.REST_FOR_ONE)


def _maitai(config: BenchConfig, device: DeviceConfig, port: str) -> SupervisorSpec:
    options = Options(config, device)
    settings = maitai.serial_settings(
        port,
        baudrate=options.get("baudrate", int, 9600, _positive),
        xonxoff=options.get("xonxoff", bool, True),
        reply_timeout=options.get("reply_timeout", float, 3.0, _positive),
    )
    off_on_estop = options.get("off_on_estop", bool, False)
    shutter_lag = options.get("shutter_lag", float, 1.2, _positive)
    # the e-stop's read-back window: the shutter's lag plus a slow (~2 s) reply, with room
    confirm = options.get("estop_confirm_window", float, 5.0, _positive)
    warmup_timeout = options.get("warmup_timeout", float, 300.0, _positive)
    options.finish()
    if confirm <= shutter_lag:
        raise config.error(
            f"{device.key}.options.estop_confirm_window",
            f"{confirm:g} s leaves no time to read the shutter after its lag ({shutter_lag:g} s)",
        )
    actor = ActorSpec(
        device.id,
        lambda: maitai.MaiTai(
            settings,
            off_on_estop=off_on_estop,
            shutter_lag=shutter_lag,
            estop_confirm_window=confirm,
            warmup_timeout=warmup_timeout,
        ),
    )
    return _device_supervisor(device.id, (actor,), Strategy.ONE_FOR_ONE)


def _addresses(value: Any) -> str | None:
    valid = all(isinstance(a, str) and len(a) == 1 and a in "0123456789ABCDEF" for a in value)
    if not value or not valid or len(set(value)) != len(value):
        return 'expected a list of distinct one-digit hex addresses, e.g. ["2", "3", "8"]'
    return None


def _status_codes(value: Any) -> str | None:
    codes = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    if len(codes) != len(value) or any(c not in ell14.STATUS or c == 0 for c in codes):
        listing = ", ".join(f"{c} {t}" for c, t in ell14.STATUS.items() if c)
        return f"expected a list of status codes 1-13 to accept after a move ({listing})"
    return None


def _ell14(config: BenchConfig, device: DeviceConfig, port: str) -> SupervisorSpec:
    """No default address: a mount at the wrong address would time out or, worse, be another
    unit. List them (``addresses``); ``discover = true`` reports what is on the bus."""
    options = Options(config, device)
    settings = ell14.serial_settings(
        port, reply_timeout=options.get("reply_timeout", float, 2.0, _positive)
    )
    addresses = options.get("addresses", list, None, _addresses)
    move_timeout = options.get("move_timeout", float, 30.0, _positive)
    discover = options.get("discover", bool, False)
    tolerate = options.get("tolerate_status", list, [], _status_codes)
    options.finish()
    if addresses is None:
        raise config.error(
            f"{device.key}.options.addresses",
            'required: the modules\' one-digit hex addresses, e.g. addresses = ["2", "3", "8"]'
            " (there is no default address; discover = true reports the units on the bus)",
        )
    bus = ActorSpec(
        device.id, lambda: ell14.Ell14Bus(settings, discover=discover, addresses=addresses)
    )
    mounts = tuple(_ell14_mount(device.id, a, move_timeout, tuple(tolerate)) for a in addresses)
    # The bus first, its mounts after it (a new bus restarts them all); but the mounts side by
    # side: one module unplugged or powered off must not restart (or hold) the others.
    side_by_side = _device_supervisor(f"{device.id}.mounts", mounts, Strategy.ONE_FOR_ONE)
    return _device_supervisor(device.id, (bus, side_by_side), Strategy.REST_FOR_ONE)


def _ell14_mount(
    bus: str, address: str, move_timeout: float, tolerate: tuple[int, ...] = ()
) -> ActorSpec:
    return ActorSpec(
        f"{bus}.{address}",
        lambda: ell14.Ell14Mount(bus, address, move_timeout=move_timeout, tolerate_status=tolerate),
    )


def _binnings(value: Any) -> str | None:
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return "expected a list of integer binning factors, e.g. [1, 2, 4, 8]"
    if any(v < 1 for v in value) or len(set(value)) != len(value):
        return "expected distinct binning factors >= 1"
    return None


def _camera(config: BenchConfig, device: DeviceConfig, port: str) -> SupervisorSpec:
    """``port = "sim"``: the simulated Prime BSI, one instance for the device's lifetime (it
    outlives actor restarts like a real camera); else the PVCAM camera name (``pvcamUSB_0``)."""
    options = Options(config, device)
    temperature_poll = options.get("temperature_poll", float, 5.0, _positive)
    frame_timeout = options.get("frame_timeout", float, 2.0, _positive)
    stall_restarts = options.get(
        "stall_restarts", int, 3, lambda v: None if v >= 0 else "must be >= 0"
    )
    backend: CameraBackend
    if device.simulated:
        # The camera's allowed binnings are unconfirmed: the simulator's are configurable.
        factors = options.get("binnings", list, [1, 2, 4, 8], _binnings)
        quirks = options.get("quirks", list, [])  # names checked by simulator_quirks
        backend = SimulatedPrimeBsi(binnings=tuple((f, f) for f in factors), quirks=quirks)
        options.finish()

        def make() -> prime_bsi.PrimeBsi:
            return prime_bsi.PrimeBsi(
                backend,
                temperature_poll=temperature_poll,
                frame_timeout=frame_timeout,
                stall_restarts=stall_restarts,
            )
    else:
        options.finish()

        def make() -> prime_bsi.PrimeBsi:
            return prime_bsi.PrimeBsi(
                PyVcamBackend(port),
                temperature_poll=temperature_poll,
                frame_timeout=frame_timeout,
                stall_restarts=stall_restarts,
            )

    return _device_supervisor(device.id, (ActorSpec(device.id, make),), Strategy.ONE_FOR_ONE)


def _synthetic(config: BenchConfig, device: DeviceConfig, port: str) -> SupervisorSpec:
    """A software signal source (no hardware; ``port`` is ignored, conventionally "sim")."""
    options = Options(config, device)
    rate = options.get("rate", float, 0.0, lambda v: None if v >= 0 else "must be >= 0")
    amplitude = options.get("amplitude", float, 1.0)
    period = options.get("period", float, 1.0, _positive)
    options.finish()
    actor = ActorSpec(
        device.id, lambda: SyntheticReadable(rate=rate, amplitude=amplitude, period=period)
    )
    return _device_supervisor(device.id, (actor,), Strategy.ONE_FOR_ONE)


def _limits_pair(value: Any) -> str | None:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if len(value) != 2 or not numbers or not value[0] < value[1]:
        return "expected [low, high] numbers with low < high"
    return None


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _synthetic_motor(config: BenchConfig, device: DeviceConfig, port: str) -> SupervisorSpec:
    """A software stage (no hardware; ``port`` is ignored, conventionally "sim")."""
    options = Options(config, device)
    low, high = options.get("limits", list, [-100.0, 100.0], _limits_pair)
    velocity = options.get("velocity", float, 0.0, _not_negative)
    settle = options.get("settle", float, 0.0, _not_negative)
    units = options.get("units", str, "mm")
    initial = options.get(
        "initial",
        float,
        0.0,
        lambda v: None if low <= v <= high else f"must be inside the limits {low:g} to {high:g}",
    )
    options.finish()
    actor = ActorSpec(
        device.id,
        lambda: SyntheticMotor(
            limits=(float(low), float(high)),
            velocity=velocity,
            settle=settle,
            units=units,
            initial=initial,
        ),
    )
    return _device_supervisor(device.id, (actor,), Strategy.ONE_FOR_ONE)


def _synthetic_peak(config: BenchConfig, device: DeviceConfig, port: str) -> SupervisorSpec:
    """A software detector: a peak over a motor's position (any Movable of the bench)."""
    options = Options(config, device)
    ids = {d.id for d in config.devices}

    def known_motor(value: str) -> str | None:
        if value.split(".", 1)[0] in ids and value != device.id:
            return None
        return f"{value!r} is not a device of this bench; devices: {', '.join(sorted(ids))}"

    motor = options.get("motor", str, "", known_motor)
    if not motor:
        raise config.error(f"{device.key}.options.motor", "missing (required): the motor's name")
    shapes = [s.value for s in PeakShape]
    shape = options.get(
        "shape", str, "gaussian", lambda v: None if v in shapes else f"one of {shapes}"
    )
    centre = options.get("centre", float, 0.0)
    width = options.get("width", float, 1.0, _positive)
    amplitude = options.get("amplitude", float, 1.0)
    background = options.get("background", float, 0.0)
    noise = options.get("noise", float, 0.0, _not_negative)
    seed = options.get("seed", int, 0)
    units = options.get("units", str, "V")
    options.finish()
    actor = ActorSpec(
        device.id,
        lambda: SyntheticPeak(
            motor=motor,
            shape=PeakShape(shape),
            centre=centre,
            width=width,
            amplitude=amplitude,
            background=background,
            noise=noise,
            seed=seed,
            units=units,
        ),
    )
    return _device_supervisor(device.id, (actor,), Strategy.ONE_FOR_ONE)


def _pipeline(config: BenchConfig) -> SupervisorSpec:
    """The recorder (runs of the first camera's frames plus every reading), one
    shared-memory frame ring per camera, and the script runner (scripts and scans)."""
    storage = config.storage
    cameras = [d.id for d in config.devices if DRIVERS[d.driver].frames]
    recorder = ActorSpec(
        RECORDER_NAME,
        lambda: RecorderActor(
            storage.directory,
            camera=cameras[0] if cameras else None,
            config_text=config.text,
            config_source=config.source,
            min_free_mb=storage.min_free_mb,
            flush_interval=storage.flush_interval,
            frame_queue=storage.frame_queue,
            compression=storage.compression,
            allowed_directories=storage.allowed_directories,
        ),
    )
    rings = [
        ActorSpec(
            f"{camera}.ring",
            lambda camera=camera: FrameRing(  # type: ignore[misc]
                camera, path=_ring_path(config, camera), capacity=storage.ring_slots
            ),
        )
        for camera in cameras
        if storage.ring_slots > 0
    ]
    script_ids = storage.directory / IDS_FILE  # ids never reused, across restarts too
    scripts = ActorSpec(RUNNER_NAME, lambda: ScriptRunner(config.scripting, ids_path=script_ids))
    defaults = bench_suspenders(config)
    history_path = storage.directory / HISTORY_FILE  # beside the runs it names
    plans = ActorSpec(
        EXECUTOR_NAME, lambda: PlanExecutor(defaults=defaults, history_path=history_path)
    )
    documents = _documents(config)
    return _device_supervisor(
        "pipeline", (*documents, recorder, *rings, scripts, plans), Strategy.ONE_FOR_ONE
    )


def _documents(config: BenchConfig) -> tuple[ActorSpec, ...]:
    """Every run's Bluesky documents (actors/documents), and the Tiled publisher if
    ``[publish] tiled`` names a server. They start before the recorder, so its first run is
    followed."""
    origin = origin_of(config.edge.host, config.edge.port)
    specs = [ActorSpec(DOCUMENTS_NAME, lambda: DocumentsActor(origin=origin, bench=config.name))]
    publish = config.publish
    if publish.enabled:
        missing = tiled_available()
        if missing is not None:
            raise config.error(
                "publish.tiled",
                f"publishing to Tiled needs the publish extra (missing: {missing}):"
                " pip install 'benchd[daemon,publish]'",
            )
        specs.append(
            ActorSpec(
                PUBLISHER_NAME,
                lambda: TiledPublisher(
                    server=publish.tiled,
                    api_key=publish.api_key,
                    origin=origin,
                    bench=config.name,
                    queue=publish.queue,
                    retry_max=publish.retry_max,
                    catch_up=publish.catch_up,
                ),
            )
        )
    return tuple(specs)


def bench_suspenders(config: BenchConfig) -> tuple[Suspender, ...]:
    """The ``[[acquisition.suspender]]`` defaults as Suspenders; ConfigError naming the key."""
    ids = {d.id for d in config.devices}
    found = []
    for entry in config.acquisition.suspenders:
        try:
            condition = Condition(entry.condition)
        except ValueError:
            allowed = ", ".join(c.value for c in Condition)
            raise config.error(
                f"{entry.key}.condition", f"{short_repr(entry.condition)} is not one of {allowed}"
            ) from None
        suspender = Suspender(
            entry.signal,
            condition,
            entry.threshold,
            entry.resume,
            entry.settle,
            entry.poll,
        )
        problems = suspender.problems(entry.key)
        if problems:
            problem = problems[0]
            raise config.error(problem.field, problem.message)
        if entry.signal.split(".", 1)[0] not in ids:
            raise config.error(
                f"{entry.key}.signal",
                f"{short_repr(entry.signal)} names no device of this bench;"
                f" devices: {', '.join(sorted(ids)[:40])}",
            )
        found.append(suspender)
    return tuple(found)


def _ring_path(config: BenchConfig, camera: str) -> Path:
    directory = config.storage.ring_directory or default_directory()
    return directory / f"benchd-{config.name}-{camera}.ring"


def _esp300_axis(controller: str, axis: int) -> ActorSpec:
    return ActorSpec(f"{controller}.axis{axis}", lambda: esp300.Esp300Axis(controller, axis))


def _device_supervisor(
    device_id: str, children: tuple[ActorSpec | SupervisorSpec, ...], strategy: Strategy
) -> SupervisorSpec:
    return SupervisorSpec(
        f"{device_id}.supervisor",
        children,
        strategy=strategy,
        max_restarts=1_000_000,
        period=60.0,
        backoff=DEVICE_RESTARTS,
        start_timeout=DEVICE_START_TIMEOUT,
    )


@dataclass(frozen=True, slots=True)
class Driver:
    """How to build a device's supervision subtree, and its wire-protocol simulator for
    ``port = "sim"`` (on a pty). ``simulator`` is None for a device simulated in-process,
    whose builder handles ``"sim"`` itself (the camera's simulated backend)."""

    build: Callable[[BenchConfig, DeviceConfig, str], SupervisorSpec]
    simulator: Callable[[Path], PtySimulator] | None = None
    frames: bool = False  # a camera: the recorder records its frames, a ring shares them
    #: The simulator's quirk modes (device option ``quirks`` on a ``sim`` port switches them on).
    quirks: Mapping[str, str] = field(default_factory=dict)


DRIVERS: Mapping[str, Driver] = {
    "thorlabs_ell14": Driver(
        _ell14, lambda link: Ell14BusSimulator(link=link), quirks=Ell14BusSimulator.QUIRKS
    ),
    "newport_1830c": Driver(
        _power_meter,
        lambda link: Newport1830CSimulator(link=link),
        quirks=Newport1830CSimulator.QUIRKS,
    ),
    "newport_esp300": Driver(
        _esp300, lambda link: Esp300Simulator(link=link), quirks=Esp300Simulator.QUIRKS
    ),
    "spectra_physics_maitai": Driver(
        _maitai, lambda link: MaiTaiSimulator(link=link), quirks=MaiTaiSimulator.QUIRKS
    ),
    "photometrics_prime_bsi": Driver(_camera, frames=True, quirks=SimulatedPrimeBsi.QUIRKS),
    "synthetic_signal": Driver(_synthetic),
    "synthetic_motor": Driver(_synthetic_motor),
    "synthetic_peak": Driver(_synthetic_peak),
}


def build_tree(
    config: BenchConfig, ports: Mapping[str, str], services: Sequence[ActorSpec] = ()
) -> SupervisorSpec:
    """The bench's supervision tree; ``ports`` maps simulated device ids to their pty links.

    ``services`` (the gRPC edge) start after every device and stop before them.
    """
    children: list[ActorSpec | SupervisorSpec] = []
    for device in config.devices:
        driver = DRIVERS.get(device.driver)
        if driver is None:
            known = ", ".join(sorted(DRIVERS))
            raise config.error(
                f"{device.key}.driver", f"unknown driver {device.driver!r}; known: {known}"
            )
        bare, _ = simulator_quirks(config, device)
        if driver.simulator is None:  # simulated in-process: the builder takes the quirks
            bare = device
        children.append(driver.build(config, bare, ports.get(device.id, device.port)))
    children.append(_pipeline(config))
    children.extend(services)
    return SupervisorSpec("bench", tuple(children), strategy=Strategy.ONE_FOR_ONE)


@dataclass
class Bench:
    """A running bench: its actors, its config, and the simulators behind ``sim`` ports."""

    config: BenchConfig
    system: SupervisedSystem
    simulators: dict[str, PtySimulator] = field(default_factory=dict)

    def device_states(self) -> dict[str, str]:
        """``ready`` / ``degraded`` (restarting, reconnecting) / ``down`` for every actor."""
        names = {
            ActorState.RUNNING: "ready",
            ActorState.DOWN: "down",
        }
        return {s.name: names.get(s.state, "degraded") for s in self.system.statistics()}


def simulator_quirks(config: BenchConfig, device: DeviceConfig) -> tuple[DeviceConfig, list[str]]:
    """The ``quirks`` option (simulator quirk modes, for ``port = "sim"`` only), validated,
    and the device without it (the driver's builder never sees it)."""
    if "quirks" not in device.options:
        return device, []
    key = f"{device.key}.options.quirks"
    quirks = device.options["quirks"]
    driver = DRIVERS[device.driver]
    if not device.simulated:
        raise config.error(key, 'quirk modes are a simulator\'s: only for port = "sim"')
    known = ", ".join(sorted(driver.quirks)) or "none"
    if not isinstance(quirks, list) or not all(isinstance(q, str) for q in quirks):
        raise config.error(key, f"expected a list of quirk names; quirks: {known}")
    for quirk in quirks:
        if quirk not in driver.quirks:
            raise config.error(key, f"unknown quirk {quirk!r} for {device.driver}; quirks: {known}")
    options = {k: v for k, v in device.options.items() if k != "quirks"}
    return dataclasses.replace(device, options=options), list(quirks)


def _pty_simulator(driver: str) -> Callable[[Path], PtySimulator] | None:
    known = DRIVERS.get(driver)
    return None if known is None else known.simulator


def simulated_bench_config() -> BenchConfig:
    return parse_config(SIMULATED_BENCH, BUILT_IN)


@asynccontextmanager
async def open_bench(
    config: BenchConfig | None = None, *, services: Sequence[ActorSpec] = ()
) -> AsyncIterator[Bench]:
    """Start the simulators the config asks for, then the bench's supervision tree, then
    ``services`` (actors that serve the bench, such as the gRPC edge).

    Error handling: a bad config raises ConfigError before anything starts; a device that
    fails to start does not prevent the others (it is retried and shows as degraded).
    """
    config = config or simulated_bench_config()
    simulated = [d for d in config.devices if d.simulated]
    with tempfile.TemporaryDirectory(prefix="benchd-sim-") as directory:
        simulators = {d.id: factory(Path(directory) / d.id)
                      for d in simulated
                      if (factory := _pty_simulator(d.driver)) is not None}  # fmt: skip
        for device in simulated:
            if device.id in simulators and device.driver in DRIVERS:
                for quirk in simulator_quirks(config, device)[1]:
                    simulators[device.id].enable_quirk(quirk)
        ports = {device_id: str(sim.path) for device_id, sim in simulators.items()}
        tree = build_tree(config, ports, services)  # validates everything before anything starts
        async with trio.open_nursery() as nursery:
            for simulator in simulators.values():
                await nursery.start(simulator.run)
            async with open_actor_system(tree) as system:
                yield Bench(config, system, simulators)
            nursery.cancel_scope.cancel()
