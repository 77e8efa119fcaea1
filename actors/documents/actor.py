"""The documents actor (bench name ``documents``): every run's Bluesky documents, live.

Every run — a record, a plan, a script's run, the run a Bluesky detector starts — is written by
the pipeline's RunWriter, which tells this actor what each flush made durable
(actors/pipeline/run_feed.py). A helper task composes the documents in order (:mod:`.compose`,
in a worker thread: validating a page of thousands of readings is not event-loop work; the
mailbox stays free for followers, status and heartbeats meanwhile), appends them to the
live :class:`~.log.DocumentLog` that gRPC streams follow, and when a run ends hands its file to
the Tiled publisher, if the bench has one.

It also finds run files for a rebuild from the file (GetRunDocuments): by uid, by the name
ListRuns gives (``20261205-141535_scan``) or by path — always inside the recorder's directory.

Error handling: a document that cannot be composed (a bug) is logged with its trace and that
run's live stream ends with a failed stop saying so; the run's file is untouched and its
documents can be rebuilt. Unknown runs are NotFoundError naming what is accepted.
"""

from __future__ import annotations

import enum
import json
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from runtime import (
    Actor,
    ActorError,
    BenchError,
    GetParameter,
    Message,
    NotFoundError,
    Request,
    ValidationError,
)

from ..pipeline.nexus_file import read_manifest
from ..pipeline.recorder import RECORDER_NAME
from ..pipeline.run_feed import DOCUMENTS_NAME, RunClosed, RunCommitted, RunOpened
from .compose import Document, RunComposer
from .log import DocumentLog, LoggedDocument

logger = logging.getLogger(__name__)

PUBLISHER_NAME = "publisher"  # the Tiled publisher (actors/documents/tiled.py), if configured
RUNS_REMEMBERED = 1000  # runs whose uid and path this actor keeps (older: found by a scan)
FEED_QUEUE = 4096  # run updates waiting to be composed (one a flush a run: minutes of them)
MAX_RUN_REFERENCE = 1024  # characters of a run's uid, name or path in a request


@dataclass(frozen=True, slots=True)
class PublishRun(Message):
    """A run ended: publish its file (sent to the publisher, if the bench has one)."""

    path: str
    uid: str


@dataclass(frozen=True, slots=True)
class DocumentCursor:
    """Where a follower starts: the headers of the runs it joins mid-way, then the log from
    ``since`` (only ``run``'s documents if ``run`` is set, until that run's stop)."""

    log: DocumentLog
    since: int
    headers: tuple[LoggedDocument, ...]
    run: str  # a run's uid, "" for every run


@dataclass(frozen=True, slots=True)
class FollowDocuments(Request[DocumentCursor]):
    """``run``: "" for every run from now on; a uid, name or path for one run (from its start
    if the log still has it, else its header and what comes next). ``since`` >= 0: resume a
    stream at that sequence number (after a dropped connection)."""

    run: str = ""
    since: int = -1


@dataclass(frozen=True, slots=True)
class FoundRun:
    """A run's file, and what its rebuilt documents must carry to match the live ones."""

    path: Path
    origin: str
    bench: str


@dataclass(frozen=True, slots=True)
class FindRun(Request[FoundRun]):
    """The file of a run, by uid, name (``20261205-141535_scan``) or path."""

    run: str


@dataclass(frozen=True, slots=True)
class DocumentsStatus:
    runs_open: int
    documents: int  # logged since the daemon started
    kept_bytes: int  # the live log's size now
    updates_lost: int  # run updates the writers could not deliver (live streams incomplete)
    compose_errors: int


@dataclass(frozen=True, slots=True)
class GetDocumentsStatus(Request[DocumentsStatus]):
    pass


@dataclass
class _Run:
    uid: str
    path: str
    start_seq: int
    composer: RunComposer | None  # None once the run has ended
    broken: str = ""  # why its documents could not be composed


def origin_of(host: str, port: int) -> str:
    """``benchd://host:port``: the prefix of every data key's ``source`` (client.bluesky's
    convention). A wildcard or loopback listen address is named by the machine's name."""
    if host in ("", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"):
        host = socket.gethostname()
    return f"benchd://{host}:{port}"


def encode(document: dict[str, Any]) -> bytes:
    """A document as compact JSON (NaN and Infinity as Python writes them: a reading may be
    NaN, and the file keeps it so)."""
    return json.dumps(document, separators=(",", ":"), default=_plain).encode()


def _plain(value: object) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)


class DocumentsActor(Actor):
    def __init__(self, *, origin: str, bench: str = "", max_bytes: int = 64 * 1024 * 1024) -> None:
        self.origin = origin
        self.bench = bench
        self.log = DocumentLog(max_bytes)
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._by_path: dict[str, str] = {}  # path -> uid
        self._scanned: dict[str, str] = {}  # uid -> path, found by reading manifests
        self.lost = 0
        self.compose_errors = 0
        self._feed: trio.MemorySendChannel[RunOpened | RunCommitted | RunClosed] | None = None

    async def on_start(self) -> None:
        send, receive = trio.open_memory_channel[RunOpened | RunCommitted | RunClosed](FEED_QUEUE)
        self._feed = send
        self.nursery.start_soon(self._compose_loop, receive)

    async def handle(self, message: Message) -> object:
        match message:
            case RunOpened() | RunCommitted() | RunClosed():
                # composed by a helper task, in order: the mailbox stays free for followers,
                # status and pings while a page of thousands of readings is validated
                try:
                    assert self._feed is not None
                    self._feed.send_nowait(message)
                except trio.WouldBlock:
                    self.lost += 1  # the file keeps it; that run's live stream says so
                return None
            case FollowDocuments(run=run, since=since):
                return self._cursor(run, since)
            case FindRun(run=run):
                return FoundRun(await self._find(run), self.origin, self.bench)
            case GetDocumentsStatus():
                documents, _, kept = self.log.statistics()
                return DocumentsStatus(
                    runs_open=sum(r.composer is not None for r in self._runs.values()),
                    documents=documents,
                    kept_bytes=kept,
                    updates_lost=self.lost,
                    compose_errors=self.compose_errors,
                )
        return await super().handle(message)

    # -- the runs' feeds ----------------------------------------------------------------------

    async def _compose_loop(
        self, receive: trio.MemoryReceiveChannel[RunOpened | RunCommitted | RunClosed]
    ) -> None:
        async for message in receive:
            match message:
                case RunOpened():
                    await self._opened(message)
                case RunCommitted():
                    await self._committed(message)
                case RunClosed():
                    await self._closed(message)

    async def _opened(self, opened: RunOpened) -> None:
        composer = RunComposer(opened, origin=self.origin, bench=self.bench)
        run = _Run(opened.uid, opened.path, self.log.next_seq, composer)
        self._runs[opened.uid] = run
        self._by_path[opened.path] = opened.uid
        while len(self._runs) > RUNS_REMEMBERED:
            _, old = self._runs.popitem(last=False)
            self._by_path.pop(old.path, None)
        await self._compose(run, composer.start)

    async def _committed(self, committed: RunCommitted) -> None:
        run = self._runs.get(committed.uid)
        if run is None or run.composer is None:
            self.lost += 1  # its opening was lost: the file keeps it
            return
        composer = run.composer
        await self._compose(run, lambda: composer.commit(committed))

    async def _closed(self, closed: RunClosed) -> None:
        run = self._runs.get(closed.uid)
        if run is not None and run.composer is not None:
            composer = run.composer
            record = dict(closed.end_record)
            if run.broken:
                record["reason"] = f"{record.get('reason', '')}; {run.broken}".lstrip("; ")
            lost = max(closed.lost, composer.lost)
            self.lost += lost
            await self._compose(run, lambda: composer.stop(record, lost=lost), closing=True)
            run.composer = None
        elif run is None:
            self.lost += 1
        self._publish(closed)

    async def _compose(
        self, run: _Run, make: Callable[[], list[Document]], *, closing: bool = False
    ) -> None:
        """Compose in a worker thread (shielded: a priority message must not lose a flush's
        documents) and log them in order."""
        if run.broken and not closing:
            return

        def work() -> list[tuple[str, bytes]]:
            return [(name, encode(document)) for name, document in make()]

        try:
            with trio.CancelScope(shield=True):
                documents = await trio.to_thread.run_sync(work)
        except Exception as error:  # a bug: this run's live documents end here, said so
            self.compose_errors += 1
            logger.exception("run %s: its documents could not be composed", run.path)
            run.broken = (
                f"live documents ended early: {type(error).__name__}: {error}"[:300]
                + " (GetRunDocuments rebuilds them from the file)"
            )
            return
        for name, body in documents:
            self.log.append(run.uid, name, body)

    def _publish(self, closed: RunClosed) -> None:
        if PUBLISHER_NAME not in self.system.names():
            return
        try:
            sent = self.system.ref(PUBLISHER_NAME).try_tell(PublishRun(closed.path, closed.uid))
        except BenchError:
            sent = False
        if not sent:  # the publisher's catch-up finds it in the run directory
            logger.warning("the publisher did not take %s now; its catch-up will", closed.path)

    # -- followers ----------------------------------------------------------------------------

    def _cursor(self, reference: str, since: int) -> DocumentCursor:
        log = self.log
        if since > log.next_seq:
            raise ValidationError(
                f"since {since} is past the newest document ({log.next_seq - 1}): resume"
                " after the last Document.seq received"
            )
        if reference:
            uid = self._uid(reference)
            if uid is None:
                raise NotFoundError(
                    f"no run {_shown(reference)} in the live log; give a run's uid, name"
                    " (ListRuns) or path — a run that has ended: GetRunDocuments"
                )
            run = self._runs[uid]
            if since >= 0:
                return DocumentCursor(log, since, (), uid)
            if run.start_seq >= log.first_seq:
                return DocumentCursor(log, run.start_seq, (), uid)
            if run.composer is None:
                raise NotFoundError(
                    f"run {_shown(reference)} has ended and its live documents are gone from"
                    " the log: GetRunDocuments rebuilds them from its file"
                )
            return DocumentCursor(log, log.next_seq, tuple(log.headers.get(uid, ())), uid)
        if since >= 0:
            return DocumentCursor(log, since, (), "")
        headers = tuple(d for documents in log.headers.values() for d in documents)
        return DocumentCursor(log, log.next_seq, headers, "")

    def _uid(self, reference: str) -> str | None:
        if reference in self._runs:
            return reference
        if reference in self._by_path:
            return self._by_path[reference]
        for uid, run in reversed(self._runs.items()):
            if Path(run.path).stem == reference or Path(run.path).name == reference:
                return uid
        return None

    # -- finding a run's file -----------------------------------------------------------------

    async def _find(self, reference: str) -> Path:
        if not reference or len(reference) > MAX_RUN_REFERENCE:
            raise ValidationError(
                "run: a run's uid, its name as ListRuns gives it (20261205-141535_scan) or its"
                f" path (at most {MAX_RUN_REFERENCE} characters)"
            )
        uid = self._uid(reference)
        if uid is not None:
            return Path(self._runs[uid].path)
        directory = await self._directory()
        known = dict(self._scanned)
        path, scanned = await trio.to_thread.run_sync(_locate, reference, directory, known)
        self._scanned.update(scanned)
        return path

    async def _directory(self) -> Path:
        try:
            snapshot = await self.system.ref(RECORDER_NAME).ask(
                GetParameter("directory"), timeout=2.0
            )
        except (BenchError, ActorError) as error:
            raise NotFoundError(f"the recorder cannot say where runs are ({error})") from error
        return Path(str(snapshot.value))


def _locate(reference: str, directory: Path, known: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A run file in ``directory`` by path, name or uid (a worker thread: file system work).
    Returns it and the uids learnt by reading manifests (each file's once)."""
    candidate = Path(reference)
    if candidate.is_absolute():
        resolved = candidate.resolve()
        if resolved.parent != directory.resolve():
            raise ValidationError(
                f"{_shown(reference)} is not in the run directory {directory};"
                " only its run files can be read"
            )
    elif "/" in reference or reference.startswith("."):
        raise ValidationError(f"run {_shown(reference)}: a name has no '/' and no leading '.'")
    else:
        resolved = directory / (reference if reference.endswith(".nxs") else f"{reference}.nxs")
    if resolved.suffix == ".nxs" and resolved.is_file():
        return resolved, {}
    found: dict[str, str] = {}
    if _looks_like_uid(reference):
        if reference in known and Path(known[reference]).is_file():
            return Path(known[reference]), {}
        seen = set(known.values())
        for path in sorted(directory.glob("*.nxs")):
            if str(path) in seen:
                continue
            try:
                run = read_manifest(path).get("run") or {}
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if run.get("uid"):
                found[str(run["uid"])] = str(path)
        if reference in found:
            return Path(found[reference]), found
    raise NotFoundError(f"no run {_shown(reference)} in {directory}; ListRuns lists the runs there")


def _looks_like_uid(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else f"{text[:60]}… ({len(text)} characters)")


__all__ = [
    "DOCUMENTS_NAME",
    "PUBLISHER_NAME",
    "DocumentCursor",
    "DocumentsActor",
    "DocumentsStatus",
    "FindRun",
    "FollowDocuments",
    "FoundRun",
    "GetDocumentsStatus",
    "PublishRun",
    "encode",
    "origin_of",
]
