"""The GUI on a bench in the states the lab meets: motors off after power-up (ESP300), a laser
still warming up (Mai Tai cold start), an e-stop made by someone else before this GUI came up.
A daemon of its own, with those simulator quirk modes on."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from client import Bench
from gui.window import MainWindow
from supervisors.bench import SIMULATED_BENCH
from tests.client.conftest import OPERATOR, Daemon, start_daemon, tokens_file

WAIT_MS = 30_000

Open = Callable[..., MainWindow]


def quirky(bench: str) -> str:
    for device, quirk in (("esp300", "motor_off"), ("maitai", "cold_start")):
        plain = f'id = "{device}"\ndriver = '
        assert plain in bench
        head, tail = bench.split(plain, 1)
        driver, rest = tail.split("\n", 1)
        port, rest = rest.split("\n", 1)
        bench = f'{head}{plain}{driver}\n{port}\noptions = {{ quirks = ["{quirk}"] }}\n{rest}'
    return bench


@pytest.fixture(scope="module")
def cold_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("cold-bench")
    daemon = start_daemon(directory, tokens=tokens_file(directory), bench=quirky(SIMULATED_BENCH))
    try:
        yield daemon
    finally:
        if daemon.process.poll() is None:
            text = daemon.stop()
            assert "Traceback" not in text, text


def recorded(target: object, method: str) -> list[object]:
    """Every value ``target.method`` is called with from the GUI's code (it still runs)."""
    seen: list[object] = []
    original = getattr(target, method)

    def record(value: object, *rest: object) -> object:
        seen.append(value)
        return original(value, *rest)

    setattr(target, method, record)
    return seen


def test_the_laser_panel_shows_warm_up_the_drivers_status_and_the_e_stop_safe_state(
    qtbot: QtBot, open_window: Open, cold_daemon: Daemon
) -> None:
    window = open_window(cold_daemon.address, live=False)
    laser = window.laser
    qtbot.waitUntil(lambda: laser.laser == "maitai" and laser.emission_on.isEnabled(),
                    timeout=WAIT_MS)  # fmt: skip
    with Bench.connect(cold_daemon.address, token=OPERATOR) as bench:
        warming = bench.parameters["maitai.warmup"] < 100  # cold start: 0 to 100 % in 10 s
        qtbot.mouseClick(laser.emission_on, Qt.MouseButton.LeftButton)
        if warming:  # emission waits for warm-up; the driver says so and the panel shows it
            qtbot.waitUntil(
                lambda: laser.status.text().startswith("waiting for warm-up: "), timeout=WAIT_MS
            )
            qtbot.waitUntil(lambda: 0 < laser.warmup.value() < 100, timeout=WAIT_MS)
            assert "warming up" in laser.interlocks["warmup"].text()
        else:  # the machine was slow to get here: it was warm already
            qtbot.waitUntil(lambda: laser.status.text() == "emission on", timeout=WAIT_MS)
            assert laser.warmup.value() == 100
            assert "warm (100 %)" in laser.interlocks["warmup"].text()
        assert laser.interlocks["safe_state"].text() == "no e-stop since the driver started"
        qtbot.mouseClick(window.estop, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(
            lambda: laser.interlocks["safe_state"].text() == "shutter confirmed closed",
            timeout=WAIT_MS,
        )
        assert laser.safe_state.text().startswith("confirmed: the shutter reads closed")
        bench.reset_emergency_stop("laser test done")
        qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=WAIT_MS)
        bench.parameters["maitai.emission"] = False


def test_the_latch_says_since_when_and_by_whom_also_to_a_gui_that_came_later(
    qtbot: QtBot, open_window: Open, cold_daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    first = open_window(cold_daemon.address, live=False)
    qtbot.waitUntil(lambda: first.connection.connected_now, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: first.latch.text() == "E-stop: clear", timeout=WAIT_MS)
    pressed = time.time()
    qtbot.mouseClick(first.estop, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: first.latch_info.by.startswith("alice"), timeout=WAIT_MS)
    info = first.latch_info
    assert info.latched and info.since is not None and abs(info.since - pressed) < 10
    assert info.reason == "GUI emergency-stop button"
    assert "by alice (operator) from 127.0.0.1" in first.banner_text.text()
    assert first.latch.text().startswith("LATCHED ") and "alice" in first.latch.text()
    # a GUI opened now learns of the latch when it connects: the daemon's info says when and
    # by whom (the event stream's current state does not); a refusal says it again
    later = open_window(cold_daemon.address, live=False)
    qtbot.waitUntil(lambda: later.latch_info.by.startswith("alice"), timeout=WAIT_MS)
    assert later.latch_info.since is not None and abs(later.latch_info.since - info.since) < 1.5
    assert "since before this GUI connected" not in later.banner_text.text()
    qtbot.waitUntil(lambda: "esp300.axis2" in later.motion.axes, timeout=WAIT_MS)
    axis = later.motion.axis("esp300.axis2")
    qtbot.waitUntil(axis.go.isEnabled, timeout=WAIT_MS)
    axis.target.setText("1")
    qtbot.mouseClick(axis.go, Qt.MouseButton.LeftButton)

    def refused() -> bool:  # the row's note may be replaced by a newer motor state: the log
        return any(
            "move esp300.axis2 refused" in r.getMessage()
            and "e-stop latched since" in r.getMessage()
            for r in caplog.records
        )

    qtbot.waitUntil(refused, timeout=WAIT_MS)
    assert later.latch_info.by.startswith("alice")
    assert "by alice (operator) from 127.0.0.1: GUI emergency-stop button" in (
        later.banner_text.text()
    )
    qtbot.mouseClick(later.reset, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not first.banner.isVisible() and not later.banner.isVisible(),
                    timeout=WAIT_MS)  # fmt: skip


def test_motor_on_home_and_live_positions_from_the_motion_panel(
    qtbot: QtBot, open_window: Open, cold_daemon: Daemon
) -> None:
    window = open_window(cold_daemon.address, live=False)
    qtbot.waitUntil(lambda: "esp300.axis1" in window.motion.axes, timeout=WAIT_MS)
    axis = window.motion.axis("esp300.axis1")
    # power-up left the motor off: the row says so, with the controller's words, and offers it
    qtbot.waitUntil(axis.motor_on.isVisible, timeout=WAIT_MS)
    assert axis.status.text() == "MOTOR OFF" and "motor off:" in axis.error.text()
    qtbot.waitUntil(axis.motor_on.isEnabled, timeout=WAIT_MS)
    qtbot.mouseClick(axis.motor_on, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not axis.motor_on.isVisible(), timeout=WAIT_MS)
    # the motor parameter's update may hide the button before motor_on's reply says "home it"
    qtbot.waitUntil(lambda: axis.status.text() == "motor on: home it", timeout=WAIT_MS)
    assert not axis.error.isVisible()
    # a move: the position column follows the axis while it moves, not only at the end
    shown = recorded(axis, "show_at")
    axis.target.setText("4")
    qtbot.mouseClick(axis.go, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: axis.status.text() == "settled", timeout=WAIT_MS)
    assert any(0.2 < float(p) < 3.8 for p in shown), shown  # type: ignore[arg-type]
    # home: its progress as it goes, then where it ended
    statuses = recorded(axis.status, "setText")
    qtbot.mouseClick(axis.home, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: axis.status.text().startswith("homed at "), timeout=WAIT_MS)
    assert any(str(s).startswith("homing… ") and " s · at " in str(s) for s in statuses), statuses
    with Bench.connect(cold_daemon.address, token=OPERATOR) as bench:
        position = bench["esp300.axis1"].position
    assert axis.status.text() == f"homed at {position:.4f} mm"
    assert axis.position.text() == f"{position:.4f}"
    assert Path(cold_daemon.log).exists()
