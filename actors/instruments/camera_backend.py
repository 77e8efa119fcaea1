"""What the camera actor needs from a camera: the backend interface.

Why a split: the Prime BSI has no wire protocol we could simulate on a pty — everything goes
through the vendor library (PVCAM, via PyVCAM). So the actor talks to a *backend*: the real one
(``pyvcam_backend.PyVcamBackend``) or the simulated Prime BSI (``simulators.prime_bsi``), and
the same actor code runs against both.

Everything here is a ``typing.Protocol``, data included: the simulator may not import the
actors (the layers forbid it), so it satisfies these protocols structurally with its own frozen
dataclasses, and mypy checks the fit where the bench plugs a backend into the actor. Data
members are read-only properties so frozen dataclasses match them.

Error handling (the contract both backends keep, in the builtin exceptions PyVCAM itself
uses): ``ValueError`` for a setting the camera refuses; ``TimeoutError`` from
:meth:`CameraBackend.next_frame` when no frame came in time (normal while waiting for a
trigger); ``RuntimeError`` for anything the camera or its library failed to do (busy, readout
failed, link gone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt


class ReadoutGain(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def bit_depth(self) -> int: ...


class ReadoutSpeed(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def pixel_time_ns(self) -> int: ...
    @property
    def gains(self) -> Sequence[ReadoutGain]: ...


class ReadoutPort(Protocol):
    """One branch of PVCAM's readout table: port -> speed -> gain (set in that order)."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def speeds(self) -> Sequence[ReadoutSpeed]: ...


class CameraDescription(Protocol):
    """What the camera says about itself at open time; the actor derives its parameters'
    limits and choices from this, never from constants."""

    @property
    def sensor_size(self) -> tuple[int, int]: ...  # (width, height) in pixels
    @property
    def chip_name(self) -> str: ...
    @property
    def serial(self) -> str: ...
    @property
    def ports(self) -> Sequence[ReadoutPort]: ...
    @property
    def trigger_modes(self) -> Sequence[str]: ...
    @property
    def software_trigger_modes(self) -> Sequence[str]: ...  # subset: sw_trigger() works there
    @property
    def clear_modes(self) -> Sequence[str]: ...
    @property
    def fan_speeds(self) -> Sequence[str]: ...
    @property
    def exposure_limits_ms(self) -> tuple[float, float]: ...
    @property
    def exposure_resolution_ms(self) -> float: ...  # exposures are whole multiples of this
    @property
    def temperature_setpoint_limits(self) -> tuple[float, float]: ...  # °C
    @property
    def binnings(self) -> Sequence[tuple[int, int]] | None: ...  # (x, y) pairs; None: any


class CameraState(Protocol):
    """The settings as the camera reports them after :meth:`CameraBackend.apply`."""

    @property
    def exposure_ms(self) -> float: ...
    @property
    def roi(self) -> tuple[int, int, int, int]: ...  # x, y, width, height (unbinned pixels)
    @property
    def binning(self) -> tuple[int, int]: ...
    @property
    def port(self) -> int: ...
    @property
    def speed(self) -> int: ...
    @property
    def gain(self) -> int: ...
    @property
    def trigger_mode(self) -> str: ...
    @property
    def clear_mode(self) -> str: ...
    @property
    def temperature_setpoint(self) -> float: ...
    @property
    def fan_speed(self) -> str: ...
    @property
    def bit_depth(self) -> int: ...
    @property
    def readout_ms(self) -> float: ...  # reading one frame of this ROI out of the sensor


class RawFrame(Protocol):
    @property
    def pixels(self) -> npt.NDArray[np.uint16]: ...  # (rows, columns), owned by the receiver
    @property
    def frame_number(self) -> int: ...  # the camera's counter, 1 for an acquisition's first
    @property
    def timestamp(self) -> float: ...  # Unix time at the end of readout


class CameraBackend(Protocol):
    """One camera. The actor calls these from its handlers and from its acquisition helper
    (``next_frame`` may be waiting while ``software_trigger`` or ``read_temperature`` runs);
    a backend serialises whatever its library cannot take concurrently."""

    async def open(self) -> CameraDescription:
        """Connect; RuntimeError if the camera is absent or busy (held by another process)."""
        ...

    async def close(self) -> None:
        """Disconnect; safe to call when not open, and after a failed open."""
        ...

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
    ) -> CameraState:
        """Write every setting (port, then speed, then gain: PVCAM's order) and read them back.
        Takes effect at the next :meth:`start`; refused (ValueError) while acquiring."""
        ...

    async def start(self, frames: int | None, *, overwrite: bool = True) -> None:
        """A sequence of ``frames`` frames, or live mode for None: a circular buffer whose
        oldest unread frames are overwritten, or, with ``overwrite=False``, one that keeps
        them and loses the newest instead. The frame counter restarts at 1. RuntimeError
        with the library's text if the camera refuses (PVCAM error 185 for overwrite on some
        setups: it shows at start, not at setup)."""
        ...

    async def halt(self) -> None:
        """Abort whatever the camera is doing — also an acquisition an earlier process left
        running (an unclean exit) — so the next start begins clean; harmless when idle."""
        ...

    async def next_frame(self, timeout: float) -> RawFrame:
        """The oldest frame not yet taken; TimeoutError if none arrives within ``timeout`` s."""
        ...

    async def software_trigger(self) -> None: ...

    async def finish(self) -> None:
        """End the acquisition (sequence or live) and free its buffers; a no-op if none."""
        ...

    async def read_temperature(self) -> float:
        """Sensor temperature in °C. A parameter read: the actor never calls it (nor
        :meth:`apply`) while the camera streams — on a real camera a parameter read during
        streaming stopped the frame callbacks."""
        ...
