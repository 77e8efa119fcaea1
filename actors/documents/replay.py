"""A finished run's documents, rebuilt from its file.

Why: a run recorded while nobody listened (or whose live documents were cut short) can still
be published — to a client (GetRunDocuments), to Tiled (the publisher's catch-up). The same
:class:`~.compose.RunComposer` as the live stream makes them, fed from the file through the
pipeline's read helpers (actors/pipeline/nexus_file.py), in chunks of at most
:data:`~.compose.PAGE_ROWS` rows: a run of millions of readings is never in memory at once.

Synchronous (h5py): iterate it in a worker thread.

Error handling: :class:`RunStillRecording` for a file whose run has not ended (no end record
yet: its writer is live, or a crash left it open and the recorder has not repaired it);
OSError / KeyError / ValueError from a file that is not a benchd run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..pipeline.nexus_file import ChannelKind, RunFileReader
from ..pipeline.run_feed import ChannelRows, FrameRows, RunCommitted, RunOpened
from .compose import PAGE_ROWS, Document, RunComposer


class RunStillRecording(Exception):
    """The run has no end record yet."""


def replay(
    path: Path, *, origin: str, bench: str = "", chunk: int = PAGE_ROWS
) -> Iterator[Document]:
    """Every document of the run in ``path``: start, descriptors, pages, resources, stop."""
    with RunFileReader(path) as reader:
        contents = reader.contents()
        if contents.end_record.get("status", "running") == "running":
            raise RunStillRecording(
                f"{path.name} is still recording (no end record yet): stream its documents"
                " live (StreamDocuments), or rebuild them once it has ended"
            )
        uid = contents.uid
        opened = RunOpened(
            uid=uid,
            path=str(path),
            name=contents.name,
            start_time=contents.start_time,
            manifest=contents.manifest,
            channels=tuple(spec for spec, _ in contents.channels),
            layout=contents.layout,
            frames_dataset=contents.frames_dataset,
        )
        composer = RunComposer(opened, origin=origin, bench=bench)
        yield from composer.start()

        def rows(kind: ChannelKind) -> list[tuple[ChannelRows, int]]:
            return [(ChannelRows(s, 0, (), ()), n) for s, n in contents.channels if s.kind is kind]

        # parameter changes: every device's at once (sample and hold needs them in time order)
        parameters = []
        for empty, count in rows(ChannelKind.PARAMETER):
            times, values, _ = reader.channel(empty.spec, 0, count)
            parameters.append(ChannelRows(empty.spec, 0, tuple(times), tuple(values)))
        yield from composer.commit(RunCommitted(uid, None, tuple(parameters)))

        scan = rows(ChannelKind.SCAN)
        points = min((count for _, count in scan), default=0)
        for start in range(0, points, chunk):
            stop = min(points, start + chunk)
            columns = []
            for empty, _ in scan:
                times, values, _ = reader.channel(empty.spec, start, stop)
                columns.append(ChannelRows(empty.spec, start, tuple(times), tuple(values)))
            yield from composer.commit(RunCommitted(uid, None, tuple(columns)))

        for empty, count in rows(ChannelKind.READING):
            for start in range(0, count, chunk):
                times, values, flags = reader.channel(empty.spec, start, min(count, start + chunk))
                part = ChannelRows(
                    empty.spec, start, tuple(times), tuple(values), tuple(flags or ())
                )
                yield from composer.commit(RunCommitted(uid, None, (part,)))

        layout = contents.layout
        if layout is not None:
            for start in range(0, contents.frames, chunk):
                stop = min(contents.frames, start + chunk)
                numbers, stamps, exposures = reader.frames(layout.detector, start, stop)
                frames = FrameRows(start, tuple(numbers), tuple(stamps), tuple(exposures))
                yield from composer.commit(RunCommitted(uid, frames, ()))

        yield from composer.stop(contents.end_record)
