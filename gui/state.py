"""What the GUI knows of the bench, kept current by one set of streams per session.

Several panels show the same things (the camera's exposure is in the parameter editor and
beside the live view; the e-stop latch in the toolbar and the devices tree), so one object
follows the daemon and panels listen to its signals instead of each opening its own streams.
Values are the daemon's: the GUI never assumes a write succeeded, it shows the read-back that
comes back on the parameter stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from client import (
    AcquisitionStatus,
    AsyncBench,
    DeviceInfo,
    EmergencyStopEvent,
    Health,
    ParameterInfo,
    ParameterValue,
    Position,
    RunStatus,
)

from .connection import Connection, Session

DEVICES_PERIOD = 2.0
HEALTH_PERIOD = 2.0
ACQUISITION_PERIOD = 0.5
POSITION_INTERVAL = 0.2


class BenchState(QObject):
    devices_changed = Signal(list)  # list[DeviceInfo]
    parameters_listed = Signal(str, list)  # device, list[ParameterInfo]
    parameter_changed = Signal(object)  # ParameterValue
    position_changed = Signal(object)  # Position
    estop_event = Signal(object)  # EmergencyStopEvent
    alert = Signal(object)  # Alert
    health_changed = Signal(object)  # Health
    run_status = Signal(object)  # RunStatus
    acquisition_changed = Signal(object)  # AcquisitionStatus
    #: (what failed, the error): for the log panel.
    problem = Signal(str, object)

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self.connection = connection
        self.session: Session | None = None
        self.devices: dict[str, DeviceInfo] = {}
        self.infos: dict[str, dict[str, ParameterInfo]] = {}
        self.values: dict[tuple[str, str], ParameterValue] = {}
        self.positions: dict[str, Position] = {}
        self.latched = False
        self.latch_event: EmergencyStopEvent | None = None
        self.health: Health | None = None
        self.run: RunStatus | None = None
        self.acquisitions: dict[str, AcquisitionStatus] = {}
        self._followed: set[str] = set()
        connection.connected.connect(self._on_connected)
        connection.disconnected.connect(self._on_disconnected)

    # -- queries ---------------------------------------------------------------------------------

    def with_capability(self, capability: str) -> list[str]:
        return [n for n, d in self.devices.items() if capability in d.capabilities]

    @property
    def cameras(self) -> list[str]:
        return self.with_capability("FrameProducer")

    @property
    def operator(self) -> bool:
        return self.session is not None and self.session.operator

    def value(self, device: str, name: str) -> Any:
        sample = self.values.get((device, name))
        return None if sample is None else sample.value

    # -- following the daemon --------------------------------------------------------------------

    def _failed(self, what: str) -> Callable[[BaseException], None]:
        return lambda error: self.problem.emit(what, error)

    def _on_connected(self, session: Session) -> None:
        self.session = session
        self._followed.clear()
        conn = self.connection
        conn.poll(
            lambda b: b.devices(),
            self._on_devices,
            DEVICES_PERIOD,
            failed=self._failed("list devices"),
        )
        conn.poll(
            lambda b: b.health(), self._on_health, HEALTH_PERIOD, failed=self._failed("health")
        )
        conn.watch(
            lambda b: b.stream_emergency_stop_events(),
            self._on_estop,
            failed=self._failed("e-stop events"),
        )
        conn.watch(lambda b: b.stream_alerts(), self.alert.emit, failed=self._failed("alerts"))
        conn.watch(
            lambda b: b.stream_run_status(),
            self._on_run,
            latest=True,
            failed=self._failed("run status"),
        )

    def _on_disconnected(self, reason: str) -> None:
        self.session = None
        self._followed.clear()

    def _on_devices(self, devices: list[DeviceInfo]) -> None:
        self.devices = {d.name: d for d in devices}
        for device in devices:
            if device.name not in self._followed and device.state == "ready":
                self._follow(device)
        self.devices_changed.emit(devices)

    def _follow(self, device: DeviceInfo) -> None:
        """A device's parameters (listed once, then every change) and position."""
        name = device.name
        self._followed.add(name)
        conn = self.connection
        if "Parameterized" in device.capabilities:

            def listed(infos: list[ParameterInfo]) -> None:
                self.infos[name] = {i.name: i for i in infos}
                self.parameters_listed.emit(name, infos)
                if not infos:
                    return  # nothing to follow (a stream of nothing ends at once)
                conn.watch(
                    lambda b: b.stream_parameters(name),
                    self._on_parameter,
                    failed=self._failed(f"parameters of {name}"),
                )

            def unlisted(error: BaseException) -> None:
                self._followed.discard(name)  # try again with the next device list
                self.problem.emit(f"parameters of {name}", error)

            conn.call(lambda b: b.parameters(name), listed, unlisted)
        if "Movable" in device.capabilities:
            conn.watch(
                lambda b: b.stream_position(name, POSITION_INTERVAL),
                self._on_position,
                latest=True,
                failed=self._failed(f"position of {name}"),
            )
        if "FrameProducer" in device.capabilities:

            def acquisition(bench: AsyncBench) -> Any:
                return bench.acquisition(name)

            conn.poll(
                acquisition,
                self._on_acquisition,
                ACQUISITION_PERIOD,
                failed=self._failed(f"acquisition of {name}"),
            )

    def record(self, value: ParameterValue) -> None:
        """A value from a Get or Set reply (they carry the desired value; streams do not)."""
        self._on_parameter(value)

    def _on_parameter(self, value: ParameterValue) -> None:
        key = (value.device, value.name)
        previous = self.values.get(key)
        if value.desired is None and previous is not None and previous.desired is not None:
            value = dataclasses.replace(value, desired=previous.desired)
        self.values[key] = value
        self.parameter_changed.emit(value)

    def _on_position(self, position: Position) -> None:
        self.positions[position.device] = position
        self.position_changed.emit(position)

    def _on_estop(self, event: EmergencyStopEvent) -> None:
        self.latched = event.latched
        self.latch_event = event
        self.estop_event.emit(event)

    def _on_health(self, health: Health) -> None:
        self.health = health
        self.health_changed.emit(health)

    def _on_run(self, status: RunStatus) -> None:
        self.run = status
        self.run_status.emit(status)

    def _on_acquisition(self, status: AcquisitionStatus) -> None:
        self.acquisitions[status.device] = status
        self.acquisition_changed.emit(status)
