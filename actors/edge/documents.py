"""Documents service: every run's Bluesky documents, live or rebuilt from its file.

A servicer translates only: the documents actor (actors/documents) owns the live log and finds
run files; the rebuild runs :func:`actors.documents.replay` in a worker thread.

Both streams are pulled, not pushed: the servicer takes the next batch (from the log, or from
the rebuild in its thread) and awaits ``send_message`` (HTTP/2 flow control) before taking
another, so a slow client reads behind and never slows a run or makes the daemon buffer a
whole run's documents. A live follower further behind than the log keeps gets DATA_LOSS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from benchd.v1 import documents_grpc
from benchd.v1 import documents_pb2 as pb

from ..documents import (
    DOCUMENTS_NAME,
    Document,
    DocumentCursor,
    DocumentsGap,
    FindRun,
    FollowDocuments,
    FoundRun,
    LoggedDocument,
    RunStillRecording,
    encode,
    replay,
)
from ._context import EdgeContext
from .hardware import receive

BATCH = 64  # documents taken at once
MAX_RUN = 1024  # characters of a run reference


def _run_reference(value: str) -> str:
    if len(value) > MAX_RUN:
        raise GRPCError(
            Status.INVALID_ARGUMENT,
            f"run: at most {MAX_RUN} characters (a uid, a name as ListRuns gives it, or a path)",
        )
    return value


async def next_documents(cursor: DocumentCursor, since: int) -> list[LoggedDocument]:
    """Up to BATCH documents from ``since`` (of the cursor's run, if it has one), waiting for
    the first; [] once that run's stop has been sent (trio side)."""
    found: list[LoggedDocument] = []
    async with contextlib.aclosing(cursor.log.follow(since)) as follower:
        async for document in follower:
            if cursor.run and document.run != cursor.run:
                if document.seq + 1 >= cursor.log.next_seq and found:
                    break
                continue
            found.append(document)
            if len(found) >= BATCH or document.seq + 1 >= cursor.log.next_seq:
                break
            if cursor.run and document.name == "stop":
                break
    return found


class _Rebuild:
    """A finished run's documents, taken from a worker thread a batch at a time."""

    def __init__(self, path: Path, origin: str, bench: str) -> None:
        self._documents: Iterator[Document] = replay(path, origin=origin, bench=bench)
        self.done = False
        self.run = ""  # the start document's uid

    def take(self) -> list[tuple[str, bytes, str]]:
        batch: list[tuple[str, bytes, str]] = []
        for name, document in self._documents:
            if name == "start":
                self.run = str(document["uid"])
            batch.append((name, encode(document), self.run))
            if len(batch) >= BATCH:
                return batch
        self.done = True
        return batch

    def close(self) -> None:
        close = getattr(self._documents, "close", None)
        if close is not None:
            close()


class DocumentsServicer(documents_grpc.DocumentsBase):
    def __init__(self, context: EdgeContext) -> None:
        self.ctx = context

    async def _ask(self, stream: Stream[Any, Any], message: Any, timeout: float = 10.0) -> Any:
        return await self.ctx.request(
            stream, self.ctx.ref(DOCUMENTS_NAME), message, default=timeout
        )

    async def StreamDocuments(self, stream: Stream[pb.StreamDocumentsRequest, pb.Document]) -> None:
        request = await receive(stream)
        run = _run_reference(request.run)
        since = int(request.since) if request.resume else -1
        cursor: DocumentCursor = await self._ask(stream, FollowDocuments(run, since))
        for header in cursor.headers:
            await stream.send_message(_message(header))
        position = cursor.since
        while True:
            try:
                batch = await self.ctx.bridge.call(
                    lambda position=position: next_documents(cursor, position)  # type: ignore[misc]
                )
            except DocumentsGap as gap:
                raise GRPCError(Status.DATA_LOSS, str(gap)) from None
            for document in batch:
                await stream.send_message(_message(document))
            if not batch:
                return
            position = batch[-1].seq + 1
            if cursor.run and batch[-1].name == "stop":
                return

    async def GetRunDocuments(self, stream: Stream[pb.GetRunDocumentsRequest, pb.Document]) -> None:
        request = await receive(stream)
        run = _run_reference(request.run)
        if not run:
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                "run: required — a uid, a name as ListRuns gives it (20261205-141535_scan),"
                " or a path in the run directory",
            )
        found: FoundRun = await self._ask(stream, FindRun(run))
        path = found.path
        rebuild = _Rebuild(path, found.origin, found.bench)
        try:
            await self._send_rebuilt(stream, rebuild, path)
        finally:  # a client gone mid-way: close the file now, in a thread (h5py)
            await self.ctx.bridge.call(lambda: trio.to_thread.run_sync(rebuild.close))

    async def _send_rebuilt(
        self, stream: Stream[Any, pb.Document], rebuild: _Rebuild, path: Path
    ) -> None:
        seq = 0
        while not rebuild.done:
            try:
                batch = await self.ctx.bridge.call(lambda: trio.to_thread.run_sync(rebuild.take))
            except RunStillRecording as error:
                raise GRPCError(Status.FAILED_PRECONDITION, str(error)) from None
            except (OSError, KeyError, ValueError) as error:
                raise GRPCError(
                    Status.FAILED_PRECONDITION,
                    f"{path.name} cannot be read as a run: {type(error).__name__}: {error}"[:300],
                ) from None
            for name, body, uid in batch:
                await stream.send_message(pb.Document(name=name, json=body, seq=seq, run=uid))
                seq += 1


def _message(document: LoggedDocument) -> pb.Document:
    return pb.Document(name=document.name, json=document.body, seq=document.seq, run=document.run)
