"""ophyd-async devices backed by a benchd daemon, so a stock Bluesky RunEngine drives the bench.

``connect(address, token=None)`` lists the daemon's devices and returns a dict keyed by their
daemon names, one ophyd-async device each (docs/bluesky.md):

- a Movable (ESP300 axis, ELL14 mount): :class:`BenchMotor` — ``set`` with progress,
  ``locate``, ``stop``, ``limits``, ``units``; ``read()`` is its position;
- the camera: :class:`BenchCamera`, a StandardDetector whose frames stay in the daemon's HDF5
  run file (StreamResource / StreamDatum documents point at them);
- a Readable (power meter, laser power): :class:`BenchReadable` — ``read()`` takes a reading;
- anything else with parameters: :class:`BenchParameters`;

and every daemon Parameter as a SignalRW (a SignalR if read-only) with units and limits. The
devices run on the RunEngine's event loop over the asyncio client (:class:`client.AsyncBench`),
so create the RunEngine first. Installed by ``pip install 'benchd[bluesky]'``.

Names: a Bluesky data key may not contain ``.``, so the ophyd-async ``name`` of
``esp300.axis1`` is ``esp300_axis1`` (the dict key stays the daemon's name).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any, Self

try:
    import bluesky  # noqa: F401
    import ophyd_async  # noqa: F401
except ImportError as missing:  # pragma: no cover - the extra is installed in the tests
    raise ImportError(
        f"client.bluesky needs bluesky and ophyd-async ({missing}): pip install 'benchd[bluesky]'"
    ) from missing

from bluesky.run_engine import (
    call_in_bluesky_event_loop,
    get_bluesky_event_loop,
    in_bluesky_event_loop,
)

from .._async import TLS, AsyncBench, RetryPolicy
from .._errors import BenchError
from .._types import DeviceInfo, ParameterInfo
from ._camera import BenchCamera
from ._devices import BenchDevice, BenchMotor, BenchParameters, BenchReadable
from ._frames import frame_shape
from ._session import EmergencyStopped, Session

__all__ = [
    "BenchCamera",
    "BenchDevice",
    "BenchDevices",
    "BenchMotor",
    "BenchParameters",
    "BenchReadable",
    "EmergencyStopped",
    "connect",
    "connect_async",
    "data_key_name",
    "frame_shape",
]


def data_key_name(name: str) -> str:
    """The ophyd-async name of a daemon device: Bluesky data keys allow no ``.`` or ``/``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


class BenchDevices(dict[str, BenchDevice]):
    """The devices of one daemon, by daemon name; ``close()`` ends their connection."""

    def __init__(self, devices: Mapping[str, BenchDevice], session: Session) -> None:
        super().__init__(devices)
        self.session = session

    @property
    def bench(self) -> AsyncBench:
        """The asyncio client the devices share (for calls no device covers), on the
        RunEngine's loop: ``call_in_bluesky_event_loop(devices.bench.health())``."""
        return self.session.bench

    async def aclose(self) -> None:
        for device in self.values():
            await device.close_monitors()
        await self.session.close()

    def close(self) -> None:
        """Close the connection (from outside the RunEngine's loop; inside: ``aclose``)."""
        _blocking("close()", "await devices.aclose()")
        call_in_bluesky_event_loop(self.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _make_device(
    session: Session, info: DeviceInfo, parameters: list[ParameterInfo], address: str, name: str
) -> BenchDevice:
    """The device class by capability: Movable, then FrameProducer, then Readable."""
    if "Movable" in info.capabilities:
        return BenchMotor(session, info, parameters, address, name=name)
    if "FrameProducer" in info.capabilities:
        return BenchCamera(session, info, parameters, address, name=name)
    if "Readable" in info.capabilities:
        return BenchReadable(session, info, parameters, address, name=name)
    return BenchParameters(session, info, parameters, address, name=name)


logger = logging.getLogger(__name__)


async def _parameters(bench: AsyncBench, device: str) -> list[ParameterInfo]:
    try:
        return await bench.parameters(device)
    except BenchError as error:  # restarting (UNAVAILABLE), or busy past the deadline
        logger.warning("%s: its parameters are left out (connect again later): %s", device, error)
        return []


async def connect_async(
    address: str,
    token: str | None = None,
    *,
    tls: TLS = None,
    timeout: float = 10.0,
    retry: RetryPolicy | None = None,
) -> BenchDevices:
    """:func:`connect` for code already running on the RunEngine's loop (``await`` it)."""
    _check_loop(asyncio.get_running_loop())
    bench = await AsyncBench.connect(address, token=token, tls=tls, timeout=timeout, retry=retry)
    try:
        session = await Session.open(bench)
    except BaseException:
        await bench.close()
        raise
    try:
        infos = await bench.actors()  # services too: the recorder's parameters
        parameters = await asyncio.gather(*(_parameters(bench, i.name) for i in infos))
        devices: dict[str, BenchDevice] = {}
        taken: set[str] = set()
        for info, infos_of in zip(infos, parameters, strict=True):
            name = data_key_name(info.name)
            while name in taken:  # "a.b" and "a_b" both exist: keep both
                name += "_"
            taken.add(name)
            devices[info.name] = _make_device(session, info, infos_of, address, name)
        connected: list[Any] = [d.connect(timeout=timeout) for d in devices.values()]
        await asyncio.gather(*connected)
    except BaseException:
        await session.close()
        raise
    return BenchDevices(devices, session)


def _check_loop(loop: asyncio.AbstractEventLoop) -> None:
    """trio-asyncio's loop (a process that imported ``trio_asyncio`` gets it from
    ``asyncio.new_event_loop()``) cannot run a RunEngine from its thread: say so plainly."""
    if type(loop).__module__.startswith("trio_asyncio"):
        raise RuntimeError(
            "the RunEngine runs on trio-asyncio's event loop (this process imported"
            " trio_asyncio), which does not work from the RunEngine's thread: create it with"
            " RunEngine(loop=asyncio.SelectorEventLoop())"
        )


def _blocking(what: str, instead: str) -> None:
    if in_bluesky_event_loop():
        raise RuntimeError(
            f"{what} blocks, and this code runs on the RunEngine's event loop: use `{instead}`"
        )
    loop: asyncio.AbstractEventLoop | None = get_bluesky_event_loop()  # type: ignore[no-untyped-call]
    if loop is None or not loop.is_running():
        raise RuntimeError(
            f"{what} needs the RunEngine's event loop, and there is none yet: create the"
            " RunEngine first (RE = RunEngine()); the devices run on its loop"
        )
    _check_loop(loop)


def connect(
    address: str,
    token: str | None = None,
    *,
    tls: TLS = None,
    timeout: float = 10.0,
    retry: RetryPolicy | None = None,
) -> BenchDevices:
    """Build one ophyd-async device per daemon device, keyed by the daemon's device names.

    Call it after creating the RunEngine (a notebook cell, a script): the devices are made
    and connected on the RunEngine's event loop. Inside that loop, ``await
    connect_async(...)``. ``token`` is a bearer token of the daemon's tokens file; ``tls``
    as for :class:`client.Bench`; ``timeout`` bounds each call to the daemon and ``retry``
    (:class:`client.RetryPolicy`, default: reconnect for 15 s) how long the devices try to
    reach a daemon that went away before a plan fails with ``ConnectionLost``.

    Error handling: ``ConnectionLost`` / ``Unauthenticated`` as ``Bench.connect``;
    RuntimeError if there is no RunEngine yet or this is called on its loop.
    """
    _blocking("connect()", "await connect_async(...)")
    devices: BenchDevices = call_in_bluesky_event_loop(
        connect_async(address, token, tls=tls, timeout=timeout, retry=retry)
    )
    return devices
