"""The simulated Prime BSI on its own: PyVCAM's rules, timing in virtual time, cheap frames."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from simulators.prime_bsi import BIAS_ADU, SimulatedPrimeBsi, stamped_number

DEFAULTS: dict[str, Any] = {
    "exposure_ms": 10.0,
    "roi": (0, 0, 2048, 2048),
    "binning": (1, 1),
    "port": 0,
    "speed": 0,
    "gain": 1,
    "trigger_mode": "Internal Trigger",
    "clear_mode": "Auto",
    "temperature_setpoint": -20.0,
    "fan_speed": "High",
}


async def opened(**kwargs: Any) -> SimulatedPrimeBsi:
    camera = SimulatedPrimeBsi(**kwargs)
    await camera.open()
    return camera


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"roi": (0, 0, 0, 5)}, "Width and height must be >= 1"),
        ({"roi": (2000, 0, 49, 10)}, "ROI extends beyond limits of sensor"),
        ({"roi": (-1, 0, 10, 10)}, "ROI extends beyond limits of sensor"),
        ({"binning": (3, 3)}, r"only supports \[\(1, 1\), \(2, 2\), \(4, 4\), \(8, 8\)\]"),
        ({"binning": (0, 1)}, "Binning must be >= 1"),
        ({"port": 2}, "readout_ports"),
        ({"gain": 3}, "gain indices"),
        ({"exposure_ms": 0.2}, "exposure times between"),
        ({"trigger_mode": "Bulb"}, "exp_modes"),
    ],
)
async def test_settings_follow_pyvcam_rules(change, message):
    camera = await opened()
    with pytest.raises(ValueError, match=message):
        await camera.apply(**{**DEFAULTS, **change})
    await camera.apply(**{**DEFAULTS, "roi": (2000, 2000, 48, 48)})  # the corner fits exactly


async def test_arbitrary_binning_when_the_camera_does_not_limit_it():
    camera = await opened(binnings=None)
    state = await camera.apply(**{**DEFAULTS, "binning": (3, 5)})
    assert state.binning == (3, 5)


async def test_exposure_is_rounded_to_the_resolution():
    camera = await opened()
    assert (await camera.apply(**{**DEFAULTS, "exposure_ms": 12.4})).exposure_ms == 12.0


async def test_trigger_first_starts_internal_timing_at_the_first_trigger(autojump_clock):
    camera = await opened()
    await camera.apply(**{**DEFAULTS, "trigger_mode": "Trigger first"})
    await camera.start(3)
    with pytest.raises(TimeoutError, match="Frame timeout"):
        await camera.next_frame(1.0)
    camera.external_trigger()
    numbers = [(await camera.next_frame(1.0)).frame_number for _ in range(3)]
    assert numbers == [1, 2, 3]
    with pytest.raises(TimeoutError):  # a sequence has no frame 4
        await camera.next_frame(1.0)


async def test_frames_are_copies_of_a_small_pool_stamped_with_their_number(autojump_clock):
    camera = await opened()
    await camera.start(None)
    frames = [await camera.next_frame(1.0) for _ in range(20)]
    assert len(camera._pools) == 1 and len(next(iter(camera._pools.values()))) == 4
    assert [stamped_number(f.pixels, 16) for f in frames] == list(range(1, 21))
    assert frames[1].timestamp - frames[0].timestamp == pytest.approx(1 / 47, rel=1e-3)
    await camera.finish()
    with pytest.raises(RuntimeError, match="no acquisition is running"):
        await camera.next_frame(1.0)


async def test_a_software_trigger_outside_a_software_mode_fails():
    camera = await opened()
    await camera.start(None)
    with pytest.raises(RuntimeError, match="sw_trigger failed"):
        await camera.software_trigger()


async def test_the_second_port_is_faster_per_row(autojump_clock):
    camera = await opened()
    await camera.apply(**{**DEFAULTS, "port": 1, "exposure_ms": 1.0})
    await camera.start(None)
    first = await camera.next_frame(1.0)
    second = await camera.next_frame(1.0)
    assert second.timestamp - first.timestamp == pytest.approx(1 / 94, rel=1e-3)
    assert camera.state.bit_depth == 11 and int(first.pixels.max()) < 2048
    await trio.lowlevel.checkpoint()


@pytest.mark.parametrize(("gain", "port", "bit_depth"), [(1, 0, 16), (2, 0, 12), (1, 1, 11)])
async def test_the_dark_level_is_the_bias_of_a_real_sensor(autojump_clock, gain, port, bit_depth):
    """A real Prime BSI reads ~100-104 ADU in the dark; no pixel, stamp included, is below."""
    camera = await opened()
    await camera.apply(**{**DEFAULTS, "port": port, "gain": gain, "roi": (0, 0, 256, 256)})
    await camera.start(None)
    frame = await camera.next_frame(1.0)
    corner = frame.pixels[-16:, -16:]  # far from the spot: dark
    assert int(corner.min()) >= BIAS_ADU and int(corner.max()) <= 104
    assert int(frame.pixels.min()) >= BIAS_ADU
    assert int(frame.pixels.max()) < 1 << bit_depth
    assert stamped_number(frame.pixels, bit_depth) == 1
    big = 70_000  # two digits: the number survives the stamp's base
    assert stamped_number(camera._frame(camera._run, big).pixels, bit_depth) == big  # type: ignore[arg-type]


def test_quirk_modes_are_named_and_off_by_default():
    camera = SimulatedPrimeBsi()
    assert not camera.quirks
    assert set(SimulatedPrimeBsi.QUIRKS) == {
        "stall_on_parameter_read",
        "left_acquiring",
        "stalls",
        "zero_frames",
        "overwrite_refused",
    }
    with pytest.raises(ValueError, match="has no quirk 'stall'; quirks: left_acquiring"):
        SimulatedPrimeBsi(quirks=("stall",))


async def test_left_acquiring_stays_in_exposure_until_halted(autojump_clock):
    camera = await opened(quirks=("left_acquiring",))
    await camera.start(2)
    with pytest.raises(TimeoutError, match="Frame timeout"):
        await camera.next_frame(1.0)
    await camera.finish()  # PyVCAM's finish of an acquisition it did not start: a no-op
    await camera.start(2)
    with pytest.raises(TimeoutError):
        await camera.next_frame(1.0)
    await camera.halt()
    await camera.start(2)
    assert (await camera.next_frame(1.0)).frame_number == 1


async def test_a_parameter_read_while_streaming_stops_the_frames(autojump_clock):
    camera = await opened(quirks=("stall_on_parameter_read",))
    await camera.read_temperature()  # idle: harmless
    await camera.start(None)
    await camera.next_frame(1.0)
    await camera.read_temperature()
    with pytest.raises(TimeoutError):
        await camera.next_frame(1.0)
    assert camera.reads_while_streaming == 1
    await camera.finish()
    await camera.start(None)  # a restart brings the frames back
    assert (await camera.next_frame(1.0)).frame_number == 1


async def test_stalls_and_zero_frames_quirks(autojump_clock):
    camera = await opened(quirks=("stalls", "zero_frames"))
    await camera.start(None)
    frames = [await camera.next_frame(1.0) for _ in range(19)]
    assert [f.frame_number for f in frames if not f.pixels.any()] == [10]
    with pytest.raises(TimeoutError):
        await camera.next_frame(1.0)


async def test_live_mode_without_overwrite_keeps_the_oldest_and_loses_the_newest(autojump_clock):
    camera = await opened(quirks=("overwrite_refused",))
    with pytest.raises(RuntimeError, match="PVCAM error 185"):
        await camera.start(None)
    await camera.start(None, overwrite=False)
    await trio.sleep(1.0)  # ~47 frames read out; the buffer holds 16
    numbers = [(await camera.next_frame(1.0)).frame_number for _ in range(18)]
    assert numbers[:16] == list(range(1, 17))
    assert numbers[16] >= 47 and numbers[17] == numbers[16] + 1
