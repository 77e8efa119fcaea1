"""The daemon's run file as a detector's file writer: which run, which rows, which documents.

A :class:`FileLink` follows the daemon run the frames go to (its status stream: frames
committed — flushed, readable during the run, kept after a crash). A :class:`FramesProvider`
is the ophyd-async StreamableDataProvider over it: "collections written" are the frames of the
detector's own acquisitions now committed, and its stream documents (one StreamResource, then
StreamDatum row ranges) point into ``/entry/instrument/<camera>/data``. Each acquisition is a
segment located by the file's frame count when it started, so frames nobody asked for are
never referenced.

Error handling: a run that ends while in use makes the next wait raise FailedPrecondition
saying how it ended; stopping a run checks first that it is still the one this link started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bluesky.protocols import StreamAsset
from event_model import ComposeStreamResource, ComposeStreamResourceBundle, DataKey, StreamRange
from ophyd_async.core import StreamableDataProvider, soft_signal_r_and_setter

from .._errors import BenchError, FailedPrecondition
from .._types import RunStatus
from ._session import Session

logger = logging.getLogger(__name__)

#: The HDF5 mimetype bluesky's consolidators (Tiled) read.
MIMETYPE = "application/x-hdf5"


def frame_shape(roi: str, binning: str) -> tuple[int, int]:
    """(rows, columns) of a frame from the camera's ``roi`` ("x,y,width,height", unbinned)
    and ``binning`` ("XxY"), as the daemon's file lays them out."""
    _, _, width, height = (int(v) for v in roi.split(","))
    bin_x, bin_y = (int(v) for v in binning.lower().split("x"))
    return height // bin_y, width // bin_x


@dataclass
class Segment:
    """The frames of one acquisition: ``count`` rows of the file from row ``start``."""

    start: int
    count: int


@dataclass
class FileLink:
    """The daemon run the frames go to, followed through its status stream."""

    session: Session
    path: str
    owned: bool  # started by this detector: stopped at unstage
    status: RunStatus
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    ended: str = ""  # why the run ended while in use
    follower: asyncio.Task[None] | None = None

    async def follow(self) -> None:
        async for status in self.session.bench.stream_run_status():
            if status.path != self.path:
                continue  # the status from before this run, or after it
            self.status = status
            if status.finished:
                self.ended = (
                    f"the daemon's run {status.name!r} ended ({status.state}"
                    f"{': ' + status.error if status.error else ''})"
                )
            self.changed.set()
            self.changed = asyncio.Event()
            if status.finished:
                return

    @property
    def settled(self) -> bool:
        """Every frame the run took is in the file (none queued, none unflushed)."""
        s = self.status
        return s.writer_lag == 0 and s.frames_committed == s.frames_received

    async def wait_change(self, timeout: float) -> None:
        if self.ended:
            raise FailedPrecondition(self.ended)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)

    async def close(self) -> None:
        if self.follower is not None:
            self.follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, BenchError):
                await self.follower
        if not self.owned or self.ended:
            return
        # StopRun ends whatever run records: make sure it is still this one
        status = await self.session.bench.run_status()
        if status.path == self.path and not status.finished:
            try:
                await self.session.bench.stop_run(
                    "the Bluesky detector was unstaged", complete=True
                )
            except FailedPrecondition as error:  # it ended meanwhile
                logger.info("%s: %s", self.path, error)


class FramesProvider(StreamableDataProvider):
    """Collections written = frames of this detector's acquisitions now committed to the
    file; stream documents map them to file rows."""

    def __init__(
        self, link: FileLink, data_key: str, uri: str, dataset: str, shape: tuple[int, int]
    ) -> None:
        self.link = link
        self.data_key = data_key
        self.uri = uri
        self.dataset = dataset
        self.shape = shape
        self.segments: list[Segment] = []
        self.collections_written_signal, self._set_written = soft_signal_r_and_setter(int, 0)
        self._emitted = 0  # collections already in a StreamDatum
        self._bundle: ComposeStreamResourceBundle | None = None

    def committed_rows(self) -> int:
        return self.link.status.frames_committed

    def update(self) -> None:
        committed = self.committed_rows()
        written = sum(max(0, min(s.count, committed - s.start)) for s in self.segments)
        self._set_written(written)

    async def make_datakeys(self, collections_per_event: int) -> dict[str, DataKey]:
        return {
            self.data_key: DataKey(
                source=self.uri,
                shape=[collections_per_event, *self.shape],
                dtype="array",
                dtype_numpy="<u2",
                external="STREAM:",
            )
        }

    def _rows(self, first: int, stop: int) -> list[StreamRange]:
        """File row ranges of collections [first, stop), one per contiguous piece."""
        ranges: list[StreamRange] = []
        index = 0
        for segment in self.segments:
            low, high = max(first, index), min(stop, index + segment.count)
            if low < high:
                start = segment.start + low - index
                if ranges and ranges[-1]["stop"] == start:
                    ranges[-1] = StreamRange(start=ranges[-1]["start"], stop=start + high - low)
                else:
                    ranges.append(StreamRange(start=start, stop=start + high - low))
            index += segment.count
        return ranges

    async def make_stream_docs(
        self, collections_written: int, collections_per_event: int
    ) -> AsyncIterator[StreamAsset]:
        stop = collections_written - collections_written % collections_per_event
        if stop <= self._emitted:
            return
        if self._bundle is None:
            self._bundle = ComposeStreamResource()(
                mimetype=MIMETYPE,
                uri=self.uri,
                data_key=self.data_key,
                parameters={
                    "dataset": self.dataset,
                    "chunk_shape": [1, *self.shape],
                    "swmr": True,
                },
            )
            yield "stream_resource", self._bundle.stream_resource_doc
        for rows in self._rows(self._emitted, stop):
            indices = self._event_indices(rows, collections_per_event)
            yield "stream_datum", self._bundle.compose_stream_datum(indices)
        self._emitted = stop

    def _event_indices(self, rows: StreamRange, per_event: int) -> StreamRange:
        """File rows as StreamDatum indices, which count events of ``per_event`` rows each
        (the data key's shape is ``[per_event, rows, columns]``): ophyd-async's convention,
        and how Tiled's HDF5 consolidator and the RunEngine's ``num_events`` read them.

        Error handling: FailedPrecondition if the rows do not fall on event boundaries of
        the file (frames of this detector joining a run at a row that is not a multiple of
        ``per_event``): no index range could point at them."""
        if rows["start"] % per_event or rows["stop"] % per_event:
            raise FailedPrecondition(
                f"{self.data_key}: {per_event} collections per event need the detector's"
                f" frames at rows that are multiples of {per_event} in the run file, and"
                f" they are rows {rows['start']} to {rows['stop']}: use collections_per_event=1"
                " with a run that already holds other frames"
            )
        return StreamRange(start=rows["start"] // per_event, stop=rows["stop"] // per_event)
