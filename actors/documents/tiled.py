"""The Tiled publisher (bench name ``publisher``): every finished run into a Tiled catalog.

``[publish] tiled = "http://host:8000"`` turns it on (docs/facility.md). When a run ends, the
documents actor hands its file here; the publisher rebuilds the run's documents from the file
(:func:`~.replay.replay`, the same composer as the live stream) and writes them with
bluesky-tiled-plugins' ``TiledWriter``: the start document becomes the run's searchable
metadata, events become tables, and the frames are *registered* where they are — the
StreamResource points at the run's HDF5 file, which the Tiled server reads in place (it must
see the run directory: the same machine, or a shared file system). Nothing is copied.

Why from the file, after the run: publishing must never slow acquisition, and the file is the
one truth. So the publisher's queue holds run files (a bounded deque, ``queue`` runs), a worker
thread does the HTTP, and a failure never touches a run: the run stays first in the queue and
is tried again with exponential backoff (1 s doubling to ``retry_max``, with jitter). A run a
failed attempt left half-written in the catalog is deleted and written again whole. A daemon
whose server is down runs as usual; the backlog (runs waiting) is counted in health.

Catch-up from the files: a ledger in the run directory (``.benchd-tiled.json``: per server,
the runs published and the runs that cannot be) says what is done, so at start (``catch_up``)
and after every outage the publisher scans the directory and queues every finished run the
ledger does not name — runs that ended while the server was down, that overflowed the queue,
or that ended while the daemon was not running.

Error handling: a server that cannot be reached, answers 5xx / 429, or refuses the API key
(401/403) is an outage (retried; ``last_error`` says why). A run the server refuses outright
(another 4xx) or a file that is not a readable run is recorded in the ledger as failed with the
reason, logged, and not retried.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from runtime import Actor, ActorError, BenchError, GetParameter, Message, Request

from ..pipeline.nexus_file import read_end_record
from ..pipeline.recorder import RECORDER_NAME
from .actor import PUBLISHER_NAME, PublishRun
from .replay import RunStillRecording, replay

logger = logging.getLogger(__name__)

LEDGER = ".benchd-tiled.json"
RETRY_MIN = 1.0  # s before the first retry; doubles up to retry_max
PROBE_TIMEOUT = 5.0  # s for the server to answer its first request of an attempt
# Tiled's client retries a failed request itself (10 times within 45 s by default): too long
# for a publisher that has its own backoff and must notice an outage. Set before tiled is
# imported; the environment wins if it says otherwise.
TILED_RETRY_ENVIRONMENT = {"TILED_RETRY_ATTEMPTS": "2", "TILED_RETRY_TIMEOUT": "5"}


@dataclass(frozen=True, slots=True)
class PublishStatus:
    server: str
    connected: bool  # the last attempt reached the server (True before any attempt)
    backlog: int  # runs waiting to be published (the one in flight included)
    published: int  # runs published since the daemon started
    failed_runs: int  # runs the server refused or that could not be read (in the ledger)
    attempts_failed: int  # attempts that met an outage
    last_error: str
    last_published: float  # Unix time, 0 if none yet
    retry_in: float  # s until the next attempt while the server is out, else 0
    overflowed: int  # runs the queue had no room for (the catch-up scan finds them)


@dataclass(frozen=True, slots=True)
class GetPublishStatus(Request[PublishStatus]):
    pass


@dataclass(frozen=True, slots=True)
class PublishAll(Message):
    """Scan the run directory now and queue every finished run not yet published."""


class Outage(Exception):
    """The server could not take the run now (unreachable, 5xx, 429, key refused)."""


class Refused(Exception):
    """The run cannot be published (the server refuses it, or its file is not a run)."""


def tiled_available() -> str | None:
    """None if the publish extra is installed, else what is missing."""
    import importlib.util  # noqa: PLC0415

    missing = [m for m in ("tiled", "bluesky_tiled_plugins") if importlib.util.find_spec(m) is None]
    return ", ".join(missing) or None


class TiledPublisher(Actor):
    stop_timeout = 5.0

    def __init__(
        self,
        *,
        server: str,
        api_key: str,
        origin: str,
        bench: str = "",
        queue: int = 1000,
        retry_max: float = 60.0,
        catch_up: bool = True,
    ) -> None:
        self.server = server
        self.api_key = api_key
        self.origin = origin
        self.bench = bench
        self.capacity = queue
        self.retry_max = retry_max
        self.catch_up = catch_up
        self._queue: deque[Path] = deque()
        self._wake = trio.Event()
        self._scan = catch_up  # a directory scan is due
        self._started = time.time()
        self._client: Any = None
        self._ledgers: dict[Path, dict[str, Any]] = {}
        self.connected = True
        self.published = 0
        self.failed_runs = 0
        self.attempts_failed = 0
        self.last_error = ""
        self.last_published = 0.0
        self.retry_at = 0.0
        self.overflowed = 0

    async def on_start(self) -> None:
        self.nursery.start_soon(self._work)

    async def handle(self, message: Message) -> object:
        match message:
            case PublishRun(path=path):
                self._enqueue([Path(path)])
                return None
            case PublishAll():
                self._scan = True
                self._wake.set()
                return None
            case GetPublishStatus():
                return PublishStatus(
                    server=self.server,
                    connected=self.connected,
                    backlog=len(self._queue),
                    published=self.published,
                    failed_runs=self.failed_runs,
                    attempts_failed=self.attempts_failed,
                    last_error=self.last_error,
                    last_published=self.last_published,
                    retry_in=max(0.0, self.retry_at - trio.current_time())
                    if self.retry_at
                    else 0.0,
                    overflowed=self.overflowed,
                )
        return await super().handle(message)

    def _enqueue(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if path in self._queue:
                continue
            if len(self._queue) >= self.capacity:
                self.overflowed += 1  # the ledger lacks it: the next scan queues it again
                self._scan = True
                continue
            self._queue.append(path)
        self._wake.set()

    # -- the worker ---------------------------------------------------------------------------

    async def _work(self) -> None:
        delay = RETRY_MIN
        while True:
            if self._scan:
                self._scan = False
                await self._scan_directory()
            if not self._queue:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            path = self._queue[0]
            try:
                uid = await trio.to_thread.run_sync(self._publish, path, abandon_on_cancel=True)
            except Outage as outage:
                self.connected = False
                self.attempts_failed += 1
                self.last_error = str(outage)
                if self.attempts_failed == 1 or delay >= self.retry_max:
                    logger.warning("Tiled %s: %s; retrying in %.0f s", self.server, outage, delay)
                wait = delay * random.uniform(0.8, 1.2)
                self.retry_at = trio.current_time() + wait
                await trio.sleep(wait)
                self.retry_at = 0.0
                delay = min(self.retry_max, delay * 2)
                continue
            except Refused as refusal:
                self.failed_runs += 1
                self.last_error = f"{path.name}: {refusal}"
                logger.error("not publishing %s to Tiled: %s", path, refusal)
                await trio.to_thread.run_sync(self._record, path, "", str(refusal))
            except RunStillRecording:
                pass  # it is published when it ends
            else:
                if uid:
                    self.published += 1
                    self.last_published = time.time()
                if not self.connected:  # the server is back: what did we miss meanwhile?
                    self._scan = True
                    logger.info("Tiled %s is back; catching up from the run files", self.server)
                self.connected = True
                delay = RETRY_MIN
            if self._queue and self._queue[0] == path:
                self._queue.popleft()

    def _publish(self, path: Path) -> str:
        """Write one run (worker thread); its uid, or "" if it was there already."""
        for key, value in TILED_RETRY_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        import httpx  # noqa: PLC0415 (the publish extra: imported only when publishing)
        from bluesky_tiled_plugins import TiledWriter  # noqa: PLC0415

        try:
            self._probe(httpx)
            client = self._connect()
            documents = replay(path, origin=self.origin, bench=self.bench)
            name, start = next(documents)
            uid = str(start["uid"])
            if uid in client:
                if "stop" in (client[uid].metadata or {}):
                    self._record(path, uid, "")  # published before (a lost ledger, a rescan)
                    return ""
                # a failed attempt left it half-written: write it again, whole
                client.delete_contents([uid], recursive=True, external_only=False)
            writer = TiledWriter(client)
            writer(name, start)
            for name, document in documents:
                writer(name, document)
        except RunStillRecording:
            raise
        except httpx.HTTPStatusError as error:
            code = error.response.status_code
            detail = _detail(error)
            if code >= 500 or code in (401, 403, 429):
                self._disconnect()
                raise Outage(f"HTTP {code}: {detail}") from error
            raise Refused(f"the server refused it: HTTP {code}: {detail}") from error
        except (httpx.TransportError, ConnectionError, TimeoutError) as error:
            self._disconnect()
            raise Outage(f"cannot reach the server: {error or type(error).__name__}") from error
        except (OSError, KeyError, ValueError) as error:
            raise Refused(f"not a readable run file: {type(error).__name__}: {error}") from error
        self._record(path, uid, "")
        logger.info("published %s to Tiled %s (uid %s)", path.name, self.server, uid)
        return uid

    def _probe(self, httpx: Any) -> None:
        """One quick request before writing: a server that is down is an outage at once,
        not after the Tiled client's own retries."""
        httpx.get(f"{self.server.rstrip('/')}/api/v1/", timeout=PROBE_TIMEOUT).raise_for_status()

    def _connect(self) -> Any:
        if self._client is None:
            from tiled.client import from_uri  # noqa: PLC0415

            self._client = from_uri(self.server, api_key=self.api_key or None)
        return self._client

    def _disconnect(self) -> None:
        """Close the client's connections (a new one is made for the next attempt)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.context.close()
            except Exception:  # closing a client whose server is gone: nothing to save
                logger.debug("closing the Tiled client failed", exc_info=True)

    async def on_stop(self) -> None:
        await trio.to_thread.run_sync(self._disconnect)

    # -- the ledger and the catch-up ----------------------------------------------------------

    def _ledger(self, directory: Path) -> dict[str, Any]:
        """This server's section of the directory's ledger: ``published`` {file: uid},
        ``failed`` {file: reason} (read once, then kept)."""
        if directory not in self._ledgers:
            try:
                data = json.loads((directory / LEDGER).read_text())
            except (OSError, ValueError):
                data = {}
            if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
                data = {"version": 1, "servers": {}}
            self._ledgers[directory] = data
        servers: dict[str, Any] = self._ledgers[directory]["servers"]
        section: dict[str, Any] = servers.setdefault(self.server, {})
        return section

    def _record(self, path: Path, uid: str, failure: str) -> None:
        """Note a run as published (its uid) or as failed (why), atomically (worker thread)."""
        section = self._ledger(path.parent)
        section.setdefault("failed" if failure else "published", {})[path.name] = failure or uid
        temporary = path.parent / f"{LEDGER}.tmp"
        try:
            temporary.write_text(json.dumps(self._ledgers[path.parent], indent=1))
            temporary.replace(path.parent / LEDGER)
        except OSError as error:
            logger.error("cannot write the publish ledger in %s: %s", path.parent, error)

    async def _scan_directory(self) -> None:
        try:
            snapshot = await self.system.ref(RECORDER_NAME).ask(
                GetParameter("directory"), timeout=5.0
            )
        except (BenchError, ActorError) as error:
            logger.warning("catch-up: the recorder cannot say where runs are: %s", error)
            return
        since = 0.0 if self.catch_up else self._started
        directory = Path(str(snapshot.value))
        found = await trio.to_thread.run_sync(self._unpublished, directory, since)
        if found:
            logger.info("catch-up: %d run(s) in %s to publish to Tiled", len(found), directory)
        self._enqueue(found)

    def _unpublished(self, directory: Path, since: float) -> list[Path]:
        ledger = self._ledger(directory)
        done = {*ledger.get("published", {}), *ledger.get("failed", {})}
        found = []
        try:
            paths = sorted(directory.glob("*.nxs"))
        except OSError:
            return []
        for path in paths:
            try:
                if path.name in done or path.stat().st_mtime < since:
                    continue
                if read_end_record(path).get("status", "running") != "running":
                    found.append(path)
            except (OSError, ValueError, KeyError, RuntimeError):
                continue
        return found


def _detail(error: Any) -> str:
    try:
        text = str(error.response.json().get("detail", ""))
    except (ValueError, AttributeError):
        text = ""
    return (text or str(error))[:200]


__all__ = [
    "LEDGER",
    "PUBLISHER_NAME",
    "GetPublishStatus",
    "PublishAll",
    "PublishStatus",
    "TiledPublisher",
    "tiled_available",
]
