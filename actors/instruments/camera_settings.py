"""The camera's settings as one value, and the rules they must follow before any write.

Pure functions over what the camera enumerated at open (a ``CameraDescription``), so the
rules are tested without a camera and the actor keeps only the wiring. Each refusal is a
``ValidationError`` that says what is allowed.

Text forms: ``roi`` is ``"x,y,width,height"`` in unbinned sensor pixels, ``binning`` is
``"XxY"``. An ROI is one thing: as four parameters, moving it to the sensor's edge (or
re-applying it after a restart, one parameter at a time) would pass through invalid regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runtime import ValidationError

from .camera_backend import CameraDescription, CameraState, ReadoutPort, ReadoutSpeed


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


def defaults(d: CameraDescription) -> Settings:
    """Full frame, 1x1, the first readout mode, internal trigger: a known state at start."""
    low, high = d.exposure_limits_ms
    speed = d.ports[0].speeds[0]
    setpoint_low, setpoint_high = d.temperature_setpoint_limits
    return Settings(
        exposure_ms=min(max(10.0, low), high),
        roi=(0, 0, *d.sensor_size),
        binning=(1, 1),
        port=d.ports[0].index,
        speed=speed.index,
        gain=speed.gains[0].index,
        trigger_mode=_prefer(d.trigger_modes, "Internal Trigger"),
        clear_mode=_prefer(d.clear_modes, "Auto"),
        temperature_setpoint=min(max(-20.0, setpoint_low), setpoint_high),
        fan_speed=_prefer(d.fan_speeds, "High") if d.fan_speeds else "",
    )


def is_internal(mode: str) -> bool:
    """PVCAM's internally timed modes ("Internal Trigger"; legacy "Timed", "Variable Timed");
    every other mode waits for a trigger (edge, level, first, software). By name: the
    enumerated modes carry no other marker."""
    return "internal" in mode.lower() or "timed" in mode.lower()


def _prefer(choices: Sequence[str], preferred: str) -> str:
    return preferred if preferred in choices else str(choices[0])


# -- ROI and binning ---------------------------------------------------------------------------


def format_roi(roi: tuple[int, int, int, int]) -> str:
    return ",".join(str(v) for v in roi)


def parse_roi(text: str) -> tuple[int, int, int, int]:
    parts = text.replace(" ", "").split(",")
    try:
        x, y, width, height = (int(p) for p in parts)
    except ValueError:
        raise ValidationError(
            f"roi: {text!r} is not 'x,y,width,height' (four integers, unbinned pixels)"
        ) from None
    return x, y, width, height


def parse_binning(text: str) -> tuple[int, int]:
    try:
        x, y = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ValidationError(f"binning: {text!r} is not 'XxY', e.g. '2x2'") from None
    return x, y


def check_roi(text: str, sensor_size: tuple[int, int], binning: tuple[int, int]) -> None:
    """PyVCAM's ``set_roi`` rules (inside the sensor, width/height >= 1), plus: at least one
    whole bin, since partial bins are clipped and an empty frame is no frame."""
    x, y, width, height = parse_roi(text)
    columns, rows = sensor_size
    if width < 1 or height < 1 or x < 0 or y < 0:
        raise ValidationError(f"roi: {text!r}: x and y must be >= 0 and width and height >= 1")
    if x + width > columns or y + height > rows:
        raise ValidationError(
            f"roi: {text!r} extends beyond the {columns}x{rows} sensor: needs"
            f" x + width <= {columns} and y + height <= {rows}"
        )
    bin_x, bin_y = binning
    if width < bin_x or height < bin_y:
        raise ValidationError(
            f"roi: {text!r} is smaller than one {bin_x}x{bin_y} bin; make it larger or"
            " reduce the binning first"
        )


def check_binning(text: str, roi: tuple[int, int, int, int]) -> None:
    """Factors >= 1 and no larger than the ROI; whether the camera offers the pair is the
    parameter's choices (None when the camera bins arbitrarily)."""
    bin_x, bin_y = parse_binning(text)
    if bin_x < 1 or bin_y < 1:
        raise ValidationError(f"binning: {text!r}: both factors must be >= 1")
    _, _, width, height = roi
    if width < bin_x or height < bin_y:
        raise ValidationError(
            f"binning: {text!r} is larger than the {width}x{height} roi; enlarge the roi first"
        )


# -- the readout table: port -> speed -> gain --------------------------------------------------


def port_of(d: CameraDescription, index: int) -> ReadoutPort:
    return next(p for p in d.ports if p.index == index)


def speed_of(d: CameraDescription, port: int, index: int) -> ReadoutSpeed:
    return next(s for s in port_of(d, port).speeds if s.index == index)


def speeds(d: CameraDescription, port: int) -> list[int]:
    return [s.index for s in port_of(d, port).speeds]


def gains(d: CameraDescription, port: int, speed: int) -> list[int]:
    return [g.index for g in speed_of(d, port, speed).gains]


def readout_for_port(d: CameraDescription, s: Settings, port: int) -> tuple[int, int, int]:
    """(port, speed, gain) for a new port: keep the present speed and gain if the port has
    them, else take its first ones (PVCAM's order: port, then speed, then gain)."""
    offered = speeds(d, port)
    speed = s.speed if s.speed in offered else offered[0]
    return (port, *readout_for_speed(d, s, port, speed)[1:])


def readout_for_speed(
    d: CameraDescription, s: Settings, port: int, speed: int
) -> tuple[int, int, int]:
    offered = gains(d, port, speed)
    return port, speed, s.gain if s.gain in offered else offered[0]


def readout_name(d: CameraDescription, st: CameraState) -> str:
    """E.g. ``Sensitivity / Speed_0 (10 ns/px) / HDR (16-bit)``."""
    port, speed = port_of(d, st.port), speed_of(d, st.port, st.speed)
    gain = next(g for g in speed.gains if g.index == st.gain)
    return (
        f"{port.name} / {speed.name} ({speed.pixel_time_ns} ns/px) / {gain.name}"
        f" ({gain.bit_depth}-bit)"
    )
