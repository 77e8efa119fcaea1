"""client.bluesky: a real RunEngine drives the simulated bench through the daemon's gRPC edge.

The daemon is ``python -m runtime`` in its own process (as users run it); the RunEngine runs
here, its plans on an ESP300 axis against the power meter and on the camera, and every
document it emits is checked against event-model's schemas and against the daemon's own run
file. Waits are on events (a position seen, a status), never on wall-clock margins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 (the frames are bitshuffle-LZ4 compressed)
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky import preprocessors as bpp
from bluesky.run_engine import call_in_bluesky_event_loop, get_bluesky_event_loop
from bluesky.utils import FailedStatus, RunEngineInterrupted
from event_model import DocumentNames, schema_validators
from ophyd_async.core import SignalR, SignalRW, TriggerInfo, observe_value

from client import Bench, ConnectionLost, InvalidArgument, RetryPolicy
from client.bluesky import (
    BenchCamera,
    BenchDevices,
    BenchMotor,
    BenchParameters,
    BenchReadable,
    EmergencyStopped,
    connect,
    connect_async,
)
from tests.actors.documents.consumer import audit
from tests.run_engine import run_engine

from .conftest import ROOT, Daemon, start_daemon

AXIS = "esp300.axis1"

Documents = list[tuple[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    process = start_daemon(tmp_path_factory.mktemp("bluesky-daemon"))
    try:
        yield process
    finally:
        if process.process.poll() is None:
            text = process.stop()
            assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def RE() -> Iterator[RunEngine]:  # noqa: N802 (bluesky's name for it)
    # on a loop of its own (tests/run_engine.py); a user's `RunEngine()` is stock:
    # test_the_notebook_cell runs exactly that
    with run_engine() as engine:
        yield engine


@pytest.fixture(scope="module")
def devices(daemon: Daemon, RE: RunEngine) -> Iterator[BenchDevices]:  # noqa: N803
    connected = connect(daemon.address)
    yield connected
    connected.close()


@pytest.fixture(scope="module")
def bench(daemon: Daemon) -> Iterator[Bench]:
    """A second, blocking client: the e-stop button and the eyes of the tests."""
    with Bench.connect(daemon.address) as client:
        yield client


@pytest.fixture(autouse=True)
def home(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts and ends with the axis at 0 mm, 5 mm/s, no e-stop latched."""
    if "bench" not in request.fixturenames:
        yield
        return
    client: Bench = request.getfixturevalue("bench")
    client.reset_emergency_stop("test setup")
    client.parameters[f"{AXIS}.velocity"] = 25.0
    client[AXIS].move_to(0.0)
    client.parameters[f"{AXIS}.velocity"] = 5.0
    yield
    client.reset_emergency_stop("test teardown")


def record(RE: RunEngine) -> Documents:  # noqa: N803
    documents: Documents = []
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    return documents


def validate(documents: Documents) -> None:
    assert documents, "no documents"
    for name, doc in documents:
        schema_validators[DocumentNames[name]].validate(doc)


def of(documents: Documents, name: str) -> list[dict[str, Any]]:
    return [doc for kind, doc in documents if kind == name]


def beyond(bench: Bench, position: float, action: Callable[[], object]) -> threading.Thread:
    """Run ``action`` once the axis is past ``position`` mm. Watches the axis's ``position``
    parameter (reported while it moves; GetPosition would wait for the move to end), through
    a stream opened before the plan starts the move."""
    watch = bench[AXIS].watch_parameters("position")
    first = next(iter(watch))
    assert first.name == "position"

    def wait() -> None:
        with watch:
            for value in watch:
                if isinstance(value.value, float) and value.value > position:
                    break
        action()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def when(condition: Callable[[], bool], action: Callable[[], object]) -> threading.Thread:
    """Run ``action`` once ``condition`` holds (polled in a thread while a plan runs)."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


# -- the devices ------------------------------------------------------------------------------


def test_connect_builds_one_device_per_daemon_device(
    devices: BenchDevices,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
) -> None:
    assert set(devices) == set(bench.devices) | set(bench.services)  # the daemon's names
    axis, meter, camera = devices[AXIS], devices["power_meter"], devices["camera"]
    assert isinstance(axis, BenchMotor) and axis.name == "esp300_axis1"  # data keys: no "."
    assert isinstance(meter, BenchReadable) and isinstance(camera, BenchCamera)
    assert isinstance(devices["recorder"], BenchParameters)
    assert axis.units == "mm"

    # every parameter is a signal with the daemon's units and limits; read-only ones are R
    laser = devices["maitai"]
    wavelength = laser.parameter("wavelength")
    assert isinstance(wavelength, SignalRW) and wavelength is laser.wavelength
    power = laser.parameter("power")
    assert isinstance(power, SignalR) and not isinstance(power, SignalRW)

    key = call_in_bluesky_event_loop(wavelength.describe())["maitai-wavelength"]
    assert key["units"] == "nm" and key["dtype"] == "number"
    assert key["limits"]["control"] == {"low": 690.0, "high": 1040.0}

    # set through the signal (the daemon validates, reads back); refused with its message
    RE(bps.mv(wavelength, 920))
    assert bench.parameters["maitai.wavelength"] == 920.0
    with pytest.raises(FailedStatus) as refused:
        RE(bps.mv(wavelength, 5000))
    assert isinstance(refused.value.__cause__, InvalidArgument)
    assert "outside the allowed range 690 to 1040" in str(refused.value.__cause__)
    assert bench.parameters["maitai.wavelength"] == 920.0


def test_a_parameter_signal_follows_changes_made_elsewhere(
    devices: BenchDevices, bench: Bench
) -> None:
    signal = devices["power_meter"].parameter("wavelength")
    seen: list[int] = []

    async def watch() -> None:
        async for value in observe_value(signal, timeout=10):
            seen.append(value)
            if value == 633:
                return

    future = asyncio.run_coroutine_threadsafe(watch(), get_bluesky_event_loop())
    when(lambda: bool(seen), lambda: bench.parameters.set("power_meter.wavelength", 633))
    future.result(timeout=30)
    assert seen == [800, 633]  # the current value first, then the change

    async def put_back() -> None:
        await signal.set(800)

    call_in_bluesky_event_loop(put_back())
    assert bench.parameters["power_meter.wavelength"] == 800


def test_connect_on_the_runengines_loop_is_awaited(daemon: Daemon, RE: RunEngine) -> None:  # noqa: N803
    async def inside() -> tuple[str, float]:
        with pytest.raises(RuntimeError, match=r"await connect_async"):
            connect(daemon.address)  # would block the loop it needs
        devices = await connect_async(daemon.address)
        try:
            reading = await devices["power_meter"].read()
            return devices["power_meter"].name, reading["power_meter"]["value"]
        finally:
            await devices.aclose()

    name, value = call_in_bluesky_event_loop(inside())
    assert name == "power_meter" and value > 0


# -- plans on the ESP300 axis against the power meter ---------------------------------------


PLANS: dict[str, tuple[Callable[[Any, Any], Any], list[float]]] = {
    "count": (lambda m, a: bp.count([m, a], num=3), [0.0, 0.0, 0.0]),
    "scan": (lambda m, a: bp.scan([m], a, 0.0, 1.0, 5), [0.0, 0.25, 0.5, 0.75, 1.0]),
    "rel_scan": (lambda m, a: bp.rel_scan([m], a, -0.5, 0.5, 3), [-0.5, 0.0, 0.5]),
    "list_scan": (lambda m, a: bp.list_scan([m], a, [0.3, -0.2, 0.1]), [0.3, -0.2, 0.1]),
}


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_stock_plans_scan_the_axis_against_the_power_meter(
    devices: BenchDevices,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
    plan: str,
) -> None:
    make, positions = PLANS[plan]
    documents = record(RE)
    RE(make(devices["power_meter"], devices[AXIS]))
    validate(documents)
    (start,) = of(documents, "start")
    (stop,) = of(documents, "stop")
    assert start["plan_name"] == plan and stop["exit_status"] == "success"
    (descriptor,) = of(documents, "descriptor")
    keys = descriptor["data_keys"]
    assert keys["power_meter"]["units"] == "W" and keys["power_meter"]["dtype"] == "number"
    assert keys["esp300_axis1"]["units"] == "mm"
    config = descriptor["configuration"]["esp300_axis1"]["data"]
    assert config["esp300_axis1-velocity"] == 5.0  # the axis's settings, once per descriptor
    events = of(documents, "event")
    assert [e["data"]["esp300_axis1"] for e in events] == pytest.approx(positions, abs=1e-4)
    assert all(1e-9 < e["data"]["power_meter"] < 1e-3 for e in events)
    final = 0.0 if plan in ("count", "rel_scan") else positions[-1]  # rel_scan returns
    assert bench[AXIS].position == pytest.approx(final, abs=1e-4)


def test_grid_scan_over_two_axes(devices: BenchDevices, RE: RunEngine) -> None:  # noqa: N803
    documents = record(RE)
    fast = devices["esp300.axis2"]
    RE(bp.grid_scan([devices["power_meter"]], devices[AXIS], 0, 0.2, 2, fast, 0, 0.4, 3))
    validate(documents)
    events = of(documents, "event")
    points = [(e["data"]["esp300_axis1"], e["data"]["esp300_axis2"]) for e in events]
    expected = [(y, x) for y in (0.0, 0.2) for x in (0.0, 0.2, 0.4)]
    assert np.allclose(points, expected, atol=1e-4)
    RE(bps.mv(fast, 0))


def test_scalar_values_equal_what_the_daemon_recorded(
    devices: BenchDevices,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
) -> None:
    started = bench.record("bluesky-scalars", wait=False)
    documents = record(RE)
    try:
        RE(bp.scan([devices["power_meter"]], devices[AXIS], 0.0, 0.4, 3))
    finally:
        status = bench.stop_run("test done")
    assert status.state == "completed" and status.path == started.path
    events = of(documents, "event")
    with h5py.File(status.path, "r") as run:
        times = run["/entry/readings/power_meter/reading/time"][:]
        values = run["/entry/readings/power_meter/reading/value"][:]
    recorded = dict(zip(times.tolist(), values.tolist(), strict=True))
    for event in events:  # every value the RunEngine saw, at the daemon's own timestamp
        when_taken = event["timestamps"]["power_meter"]
        assert recorded[when_taken] == event["data"]["power_meter"]


# -- limits, stop, pause, abort, e-stop ------------------------------------------------------


def test_a_move_outside_the_travel_is_refused_before_anything_moves(
    devices: BenchDevices,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
) -> None:
    axis = devices[AXIS]
    documents = record(RE)
    with pytest.raises(FailedStatus) as refused:
        RE(bp.scan([devices["power_meter"]], axis, 0.0, 500.0, 3))
    assert isinstance(refused.value.__cause__, InvalidArgument)
    assert "outside the travel" in str(refused.value.__cause__)
    assert of(documents, "stop")[0]["exit_status"] == "fail"
    assert bench[AXIS].position == pytest.approx(0.0, abs=1e-4)  # the first point only
    # with the travel known (the daemon reports it with the device), check_value refuses
    # locally, before any request; the daemon's own refusal above covers the rest
    info = dataclasses.replace(bench.devices[AXIS].info(), position_limits=(-50.0, 50.0))
    known = BenchMotor(devices.session, info, [], "test", name="known_travel")
    assert known.limits == (-50.0, 50.0)
    with pytest.raises(InvalidArgument, match=r"60 mm is outside the travel -50 to 50 mm"):
        call_in_bluesky_event_loop(known.check_value(60.0))
    call_in_bluesky_event_loop(known.check_value(49.0))


def test_pause_stops_the_axis_and_resume_finishes_the_scan(
    devices: BenchDevices,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
) -> None:
    bench.parameters[f"{AXIS}.velocity"] = 2.0  # 0 -> 20 mm takes 10 s: paused long before
    documents = record(RE)
    pausing = beyond(bench, 0.5, RE.request_pause)
    with pytest.raises(RunEngineInterrupted):
        RE(bp.scan([devices["power_meter"]], devices[AXIS], 0.0, 20.0, 2))
    pausing.join()
    assert RE.state == "paused"
    first = bench[AXIS].position
    time.sleep(0.2)
    assert bench[AXIS].position == first and 0.5 < first < 19.0  # stopped mid-way, at rest
    bench.parameters[f"{AXIS}.velocity"] = 25.0
    RE.resume()  # rewinds to the point's checkpoint: moves to 20 mm again, then reads
    validate(documents)
    (stop,) = of(documents, "stop")
    assert stop["exit_status"] == "success"
    positions = [e["data"]["esp300_axis1"] for e in of(documents, "event")]
    assert positions == pytest.approx([0.0, 20.0], abs=1e-4)


def test_abort_stops_the_axis_and_ends_the_run_aborted(
    devices: BenchDevices,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
) -> None:
    bench.parameters[f"{AXIS}.velocity"] = 2.0
    documents = record(RE)
    aborting = beyond(bench, 0.5, lambda: RE.abort("enough"))
    with pytest.raises(RunEngineInterrupted):
        RE(bp.scan([devices["power_meter"]], devices[AXIS], 0.0, 20.0, 2))
    aborting.join()
    validate(documents)
    (stop,) = of(documents, "stop")
    assert stop["exit_status"] == "abort"
    first = bench[AXIS].position
    time.sleep(0.2)
    assert bench[AXIS].position == first and 0.5 < first < 19.0


def test_an_emergency_stop_fails_the_plan_with_the_daemons_reason(
    devices: BenchDevices,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
) -> None:
    bench.parameters[f"{AXIS}.velocity"] = 2.0
    documents = record(RE)
    stopping = beyond(bench, 0.5, lambda: bench.emergency_stop("beam dump 7"))
    with pytest.raises(FailedStatus) as failed:
        RE(bp.scan([devices["power_meter"]], devices[AXIS], 0.0, 20.0, 2))
    stopping.join()
    cause = failed.value.__cause__
    assert isinstance(cause, EmergencyStopped) and "beam dump 7" in str(cause)
    (stop,) = of(documents, "stop")
    assert stop["exit_status"] == "fail" and "beam dump 7" in stop["reason"]
    # readings go on in the daemon during an incident, but a plan reading them fails too
    bench.reset_emergency_stop("next part")
    documents.clear()
    meter = devices["power_meter"]
    stopping = when(
        lambda: len(of(documents, "event")) >= 3, lambda: bench.emergency_stop("door opened")
    )
    with pytest.raises(EmergencyStopped, match="door opened"):
        RE(bp.count([meter], num=10_000, delay=0.01))
    stopping.join()
    assert of(documents, "stop")[0]["exit_status"] == "fail"


# -- the camera --------------------------------------------------------------------------------


@pytest.fixture
def small_frames(devices: BenchDevices, RE: RunEngine) -> Iterator[BenchCamera]:  # noqa: N803
    camera = devices["camera"]
    assert isinstance(camera, BenchCamera)
    recorder = devices["recorder"]
    # a 64x48 region and a 0.1 s flush: a trigger waits for its frame to be in the file
    RE(bps.mv(camera.parameter("roi"), "0,0,64,48", recorder.parameter("flush_interval"), 0.1))
    yield camera
    RE(bps.mv(camera.parameter("roi"), "0,0,2048,2048", recorder.parameter("flush_interval"), 1))


def frames_in(uri: str, dataset: str, rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    path = Path(uri.removeprefix("file://localhost"))
    with h5py.File(path, "r", swmr=True) as run:
        data = run[dataset]
        assert data.shape[0] >= rows[1], (data.shape, rows)
        times = run[str(Path(dataset).parent / "timestamp")][rows[0] : rows[1]]
        return data[rows[0] : rows[1]], times


def test_camera_stream_documents_point_at_frames_in_the_daemons_file(
    small_frames: BenchCamera,
    devices: BenchDevices,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
) -> None:
    documents = record(RE)
    RE(bp.count([small_frames, devices["power_meter"]], num=3))
    validate(documents)
    (descriptor,) = of(documents, "descriptor")
    key = descriptor["data_keys"]["camera"]
    assert key["external"] == "STREAM:" and key["shape"] == [1, 48, 64]
    assert key["dtype_numpy"] == "<u2"
    assert all("camera" not in e["data"] for e in of(documents, "event"))  # no pixels
    (resource,) = of(documents, "stream_resource")
    assert resource["mimetype"] == "application/x-hdf5"
    assert resource["parameters"]["dataset"] == "/entry/instrument/camera/data"
    datums = of(documents, "stream_datum")
    assert [(d["indices"]["start"], d["indices"]["stop"]) for d in datums] == [
        (0, 1),
        (1, 2),
        (2, 3),
    ]
    assert [d["seq_nums"] for d in datums] == [{"start": i, "stop": i + 1} for i in (1, 2, 3)]
    pixels, _ = frames_in(resource["uri"], resource["parameters"]["dataset"], (0, 3))
    assert pixels.shape == (3, 48, 64) and pixels.dtype == np.uint16 and pixels.any()
    runs = {r.path: r for r in bench.runs()}
    assert runs[resource["uri"].removeprefix("file://localhost")].status == "completed"


def test_frames_join_a_run_that_is_already_recording(
    small_frames: BenchCamera,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
) -> None:
    started = bench.record("user-run", wait=False)
    try:
        camera = bench["camera"]
        camera.start_acquisition(2)  # two frames of the user's own before the plan
        while bench.run_status().frames_committed < 2:
            time.sleep(0.02)
        before = time.time()
        documents = record(RE)
        RE(bp.count([small_frames], num=2))
        assert bench.run_status().state == "recording"  # the user's run goes on
    finally:
        bench.stop_run("test done")
    validate(documents)
    (resource,) = of(documents, "stream_resource")
    assert resource["uri"] == f"file://localhost{started.path}"
    datums = of(documents, "stream_datum")
    assert [(d["indices"]["start"], d["indices"]["stop"]) for d in datums] == [(2, 3), (3, 4)]
    _, times = frames_in(resource["uri"], resource["parameters"]["dataset"], (2, 4))
    assert all(t >= before for t in times)  # the plan's frames, not the user's


def fly(camera: BenchCamera, info: TriggerInfo) -> Any:
    """A fly scan of the camera alone: prepare, kickoff, complete, collect into "primary"."""

    @bpp.stage_decorator([camera])
    @bpp.run_decorator()
    def plan() -> Any:
        yield from bps.prepare(camera, info, wait=True)
        yield from bps.declare_stream(camera, name="primary", collect=True)
        yield from bps.kickoff(camera, wait=True)
        yield from bps.complete(camera, wait=True)
        yield from bps.collect(camera, name="primary")

    return plan()


def test_a_fly_scan_collects_the_frames_of_one_acquisition(
    small_frames: BenchCamera,
    RE: RunEngine,  # noqa: N803
) -> None:
    documents = record(RE)
    RE(fly(small_frames, TriggerInfo(number_of_events=5, livetime=0.005)))
    validate(documents)
    (resource,) = of(documents, "stream_resource")
    (datum,) = of(documents, "stream_datum")
    assert datum["indices"] == {"start": 0, "stop": 5}
    assert datum["seq_nums"] == {"start": 1, "stop": 6}
    pixels, times = frames_in(resource["uri"], resource["parameters"]["dataset"], (0, 5))
    assert pixels.shape == (5, 48, 64) and list(times) == sorted(times)
    RE(bps.mv(small_frames.parameter("exposure"), 10))


def test_stream_datum_indices_count_events_of_several_collections(
    small_frames: BenchCamera,
    RE: RunEngine,  # noqa: N803
) -> None:
    """collections_per_event=2: each event is 2 frames (shape [2, 48, 64]), so 3 events are
    indices 0 to 3 (6 file rows) and num_events 3, as ophyd-async's detectors say it and as
    Tiled's HDF5 consolidator reads it (it counted 6 events of 2 frames: 12 from a file of 6)."""

    documents = record(RE)
    try:
        RE(
            fly(
                small_frames,
                TriggerInfo(number_of_events=3, collections_per_event=2, livetime=0.005),
            )
        )
    finally:
        RE(bps.mv(small_frames.parameter("exposure"), 10))
    audit(documents)
    (descriptor,) = of(documents, "descriptor")
    assert descriptor["data_keys"]["camera"]["shape"] == [2, 48, 64]
    (resource,) = of(documents, "stream_resource")
    (datum,) = of(documents, "stream_datum")
    assert datum["indices"] == {"start": 0, "stop": 3}
    assert datum["seq_nums"] == {"start": 1, "stop": 4}
    assert of(documents, "stop")[0]["num_events"] == {"primary": 3}
    pixels, _ = frames_in(resource["uri"], resource["parameters"]["dataset"], (0, 6))
    assert pixels.reshape(3, 2, 48, 64).shape == (3, *descriptor["data_keys"]["camera"]["shape"])


def test_a_pause_stops_the_camera_and_resume_redoes_the_point(
    small_frames: BenchCamera,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
) -> None:
    RE(bps.mv(small_frames.parameter("exposure"), 10_000))  # paused long before it ends
    documents = record(RE)
    try:
        pausing = when(lambda: bench["camera"].acquisition().running, RE.request_pause)
        with pytest.raises(RunEngineInterrupted):
            RE(bp.count([small_frames], num=2))
        pausing.join()
        stopped = bench["camera"].acquisition()
        assert not stopped.running and stopped.frames_acquired == 0  # stopped, no frame
        bench.parameters["camera.exposure"] = 5.0
        RE.resume()
    finally:
        RE(bps.mv(small_frames.parameter("exposure"), 10))
    validate(documents)
    assert of(documents, "stop")[0]["exit_status"] == "success"
    datums = of(documents, "stream_datum")  # the interrupted acquisition left no row
    assert [d["indices"] for d in datums] == [{"start": 0, "stop": 1}, {"start": 1, "stop": 2}]


def test_a_camera_trigger_fails_at_once_on_an_emergency_stop(
    small_frames: BenchCamera,
    bench: Bench,
    RE: RunEngine,  # noqa: N803
) -> None:
    documents = record(RE)
    RE(bps.mv(small_frames.parameter("exposure"), 10_000))  # a 10 s exposure to stop in
    try:
        stopping = when(
            lambda: bench["camera"].acquisition().running, lambda: bench.emergency_stop("cover")
        )
        began = time.monotonic()
        with pytest.raises(FailedStatus) as failed:
            RE(bp.count([small_frames], num=1))
        stopping.join()
        assert isinstance(failed.value.__cause__, EmergencyStopped)
        assert time.monotonic() - began < 8  # not after the 10 s exposure or a timeout
        assert of(documents, "stop")[0]["exit_status"] == "fail"
    finally:
        bench.reset_emergency_stop("test done")
        RE(bps.mv(small_frames.parameter("exposure"), 10))


# -- a daemon that goes away ------------------------------------------------------------------


def test_a_daemon_that_goes_away_fails_the_plan_naming_it(
    tmp_path: Path,
    RE: RunEngine,  # noqa: N803
) -> None:
    """The daemon killed between two plans: the next plan's read fails with the client's
    ConnectionLost naming the daemon once the reconnect budget is spent — not with
    ophyd-async's bare ``TimeoutError(<source>)`` (its 10 s signal timeout fired while the
    client still retried), and not a hang."""
    gone = start_daemon(tmp_path / "gone")
    devices = connect(gone.address, retry=RetryPolicy(budget=13.0))  # past ophyd's 10 s
    try:
        meter = devices["power_meter"]
        RE(bp.count([meter], 1))
        gone.process.kill()
        gone.process.wait(timeout=10)
        began = time.monotonic()
        with pytest.raises(ConnectionLost, match=f"could not reach the daemon at {gone.address}"):
            RE(bp.count([meter], 1))
        assert time.monotonic() - began < 60
    finally:
        devices.close()


# -- docs/bluesky.md --------------------------------------------------------------------------


def test_the_notebook_cell_of_the_docs(daemon: Daemon, tmp_path: Path) -> None:
    """The cell as written, with a stock ``RunEngine()``, in a fresh interpreter."""
    section = (ROOT / "docs" / "bluesky.md").read_text().split("## A notebook cell", 1)[1]
    cell = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    assert 'connect("127.0.0.1:50051")' in cell and "RE = RunEngine()" in cell
    script = tmp_path / "cell.py"
    script.write_text(cell.replace("127.0.0.1:50051", daemon.address) + "\nprint(uid)\n")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if re.match(r"\|\s+\d+ \|", line)]
    positions = [float(row.split("|")[3]) for row in rows]
    assert positions == pytest.approx([-1 + 0.2 * i for i in range(11)], abs=1e-3)
    assert all(float(row.split("|")[4]) > 0 for row in rows)  # watts, 9 decimals
    assert re.fullmatch(r"[0-9a-f-]{36}", done.stdout.splitlines()[-1])
