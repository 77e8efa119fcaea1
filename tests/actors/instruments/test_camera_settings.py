"""The camera's rules and frame accounting, without a camera."""

from __future__ import annotations

from dataclasses import replace

import pytest

from actors.instruments import camera_settings as rules
from actors.instruments.acquisition import Acquisition
from runtime import ValidationError
from simulators.prime_bsi import SimulatedPrimeBsi

DESCRIPTION = SimulatedPrimeBsi().description


def test_defaults_are_full_frame_internal_trigger_and_the_first_readout():
    s = rules.defaults(DESCRIPTION)
    assert (s.roi, s.binning, s.port, s.speed, s.gain) == ((0, 0, 2048, 2048), (1, 1), 0, 0, 1)
    assert (s.trigger_mode, s.clear_mode, s.exposure_ms) == ("Internal Trigger", "Auto", 10.0)


@pytest.mark.parametrize(
    ("text", "binning", "message"),
    [
        ("0,0,2049,1", (1, 1), "extends beyond the 2048x2048 sensor"),
        ("-1,0,10,10", (1, 1), "x and y must be >= 0"),
        ("0,0,4,4", (8, 8), "smaller than one 8x8 bin"),
        ("a,b,c,d", (1, 1), "is not 'x,y,width,height'"),
    ],
)
def test_roi_rules(text, binning, message):
    with pytest.raises(ValidationError, match=message):
        rules.check_roi(text, (2048, 2048), binning)


def test_binning_rules():
    rules.check_binning("2x4", (0, 0, 8, 8))
    with pytest.raises(ValidationError, match="larger than the 8x8 roi"):
        rules.check_binning("16x16", (0, 0, 8, 8))
    with pytest.raises(ValidationError, match="is not 'XxY'"):
        rules.check_binning("2", (0, 0, 8, 8))


def test_a_new_port_keeps_speed_and_gain_only_if_it_has_them():
    s = rules.defaults(DESCRIPTION)
    assert rules.readout_for_port(DESCRIPTION, s, 1) == (1, 0, 1)
    assert rules.readout_for_port(DESCRIPTION, replace(s, gain=2), 1) == (1, 0, 1)
    assert rules.readout_for_port(DESCRIPTION, replace(s, gain=2), 0) == (0, 0, 2)


def test_internal_modes_are_told_from_triggered_ones():
    assert rules.is_internal("Internal Trigger") and rules.is_internal("Timed")
    assert not rules.is_internal("Edge Trigger") and not rules.is_internal("Software Trigger First")


def test_accounting_counts_gaps_losses_and_rate():
    run = Acquisition(frames=10, software_triggered=False, triggered=False, lost_before=3)
    assert not run.account(1, 100.0, lost_total=3)
    assert list(run.account(4, 100.1, lost_total=4)) == [2, 3]
    run.account(5, 100.2, lost_total=4)
    status = run.status()
    assert (status.frames_acquired, status.frames_missing, status.frames_lost) == (3, 2, 1)
    assert status.fps == pytest.approx(10.0) and status.last_frame_number == 5
    assert not run.complete
    run.ended("stopped")
    run.ended("again")
    assert run.error == "stopped" and not run.running and run.done.is_set()
