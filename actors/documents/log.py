"""The live document log: every run's documents in order, followed by any number of readers.

Why a log and not a queue per subscriber: the documents actor appends (O(1), never waits) and
each follower (a gRPC stream) indexes into the log at its own pace on the event loop's thread,
as the plan event log does (actors/acquisition/events.py): a slow client falls behind, it
never slows the runs or the other clients. Documents are kept as JSON bytes — what the wire
carries, and a fifth of the memory of the dicts — and the log keeps at most
``max_bytes`` of them (the newest); a follower further behind than that gets
:class:`DocumentsGap`, naming the run files that hold the whole story.

Each open run's *header* (start, descriptors, stream resources) is kept apart for as long as
the run is open, so a client that starts following mid-run still gets what a consumer needs
before any event (Bluesky's RunRouter needs the start first).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import trio

HEADER_DOCUMENTS = frozenset({"start", "descriptor", "stream_resource"})


@dataclass(frozen=True, slots=True)
class LoggedDocument:
    seq: int  # 0, 1, 2, … over every run since the daemon started
    run: str  # the run's uid (its start document's)
    name: str  # start, descriptor, event_page, stream_resource, stream_datum, stop
    body: bytes  # the document as JSON (NaN and Infinity as Python writes them)


class DocumentsGap(Exception):
    """A follower fell behind what the log keeps."""


class DocumentLog:
    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._documents: deque[LoggedDocument] = deque()
        self._bytes = 0
        self._next = 0
        self._changed = trio.Event()
        self.headers: dict[str, list[LoggedDocument]] = {}  # open runs' headers

    @property
    def next_seq(self) -> int:
        return self._next

    @property
    def first_seq(self) -> int:
        return self._documents[0].seq if self._documents else self._next

    def append(self, run: str, name: str, body: bytes) -> LoggedDocument:
        document = LoggedDocument(self._next, run, name, body)
        self._next += 1
        self._documents.append(document)
        self._bytes += len(body)
        while self._bytes > self.max_bytes and len(self._documents) > 1:
            self._bytes -= len(self._documents.popleft().body)
        if name == "start":
            self.headers[run] = [document]
        elif name in HEADER_DOCUMENTS and run in self.headers:
            self.headers[run].append(document)
        elif name == "stop":
            self.headers.pop(run, None)
        self._changed.set()
        self._changed = trio.Event()
        return document

    def statistics(self) -> tuple[int, int, int]:
        """(documents logged since start, documents kept, bytes kept)."""
        return self._next, len(self._documents), self._bytes

    async def follow(self, since: int) -> AsyncGenerator[LoggedDocument, None]:
        """Every document from ``since`` on, then new ones, for ever. Leaving early: close it
        (``contextlib.aclosing``).

        Error handling: DocumentsGap once ``since`` has left the log."""
        while True:
            changed = self._changed
            while since < self._next:
                first = self.first_seq
                if since < first:
                    raise DocumentsGap(
                        f"this stream fell {first - since} document(s) behind what the daemon"
                        f" keeps ({self.max_bytes // (1024 * 1024)} MiB); the run files hold"
                        " everything: rebuild a run's documents with GetRunDocuments"
                    )
                document = self._documents[since - first]
                since += 1
                yield document
            await changed.wait()
