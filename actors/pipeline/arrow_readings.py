"""A run's scalar readings as an Arrow IPC stream, beside its HDF5 file.

Why a second copy: Python (pyarrow, polars, pandas) and Julia (Arrow.jl) readers load Arrow
record batches with no HDF5 library and no copy, and the IPC *stream* format is append-only —
a reader gets every batch written before a crash. The HDF5 file stays the record; this is the
convenient view. Synchronous: call it from the recorder's worker thread.

Schema: ``device`` (string), ``channel`` ("reading" or a parameter name), ``time``
(timestamp[us, UTC]), ``value`` (float64; NaN where a reading had no valid value, and for
text-valued parameters, whose text is in ``text``), ``text`` (string), ``flags`` (string).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

SCHEMA = pa.schema(
    [
        ("device", pa.string()),
        ("channel", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("value", pa.float64()),
        ("text", pa.string()),
        ("flags", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class Row:
    device: str
    channel: str
    time: float
    value: float
    text: str = ""
    flags: str = ""


def record_batch(rows: Sequence[Row]) -> pa.RecordBatch:
    """Rows as one Arrow record batch (also what a gRPC or Flight server would send)."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array([r.device for r in rows], pa.string()),
            pa.array([r.channel for r in rows], pa.string()),
            pa.array([round(r.time * 1e6) for r in rows], pa.int64()).cast(SCHEMA.field(2).type),
            pa.array([r.value for r in rows], pa.float64()),
            pa.array([r.text for r in rows], pa.string()),
            pa.array([r.flags for r in rows], pa.string()),
        ],
        schema=SCHEMA,
    )


class ArrowReadingsWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, SCHEMA)
        self.rows_written = 0

    def append(self, rows: Sequence[Row]) -> None:
        if rows:
            self._writer.write_batch(record_batch(rows))
            self.rows_written += len(rows)

    def flush(self) -> None:
        self._sink.flush()

    def close(self) -> None:
        self._writer.close()
        self._sink.close()


def read_readings(path: Path) -> pa.Table:
    """Every complete batch in the file (a crashed writer's last partial batch is ignored)."""
    batches = []
    with pa.OSFile(str(path), "rb") as source:
        try:
            reader = pa.ipc.open_stream(source)
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
        except (pa.ArrowInvalid, OSError):
            pass  # a truncated tail: keep what was complete
    return pa.Table.from_batches(batches, schema=SCHEMA)
