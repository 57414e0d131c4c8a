"""Parquet reader: files written by `flowlens convert -o x.parquet`, by `df.to_parquet()` on a
flows frame, and the files of a flow store (flowlens.store), as batches of Arrow columns.

Only the row groups that can hold flows of the asked time window are decoded (their `time`
statistics tell), and only the asked columns; a column the file lacks (written by an older
flowlens) is left out of the batch, so the frame builder fills it with NA.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flowlens.errors import InputError
from flowlens.sources.batch import FlowBatch
from flowlens.sources.files import Opened
from flowlens.sources.timerange import ALL_TIME, TimeRange

__all__ = ["LOST_EVENTS_METADATA", "extent_of_file", "lost_events_of", "open_parquet",
           "read_parquet", "time_bounds"]

# Key in a Parquet file's metadata holding the lost-event records as JSON (flowlens convert).
LOST_EVENTS_METADATA = b"flowlens.lost_events"
# Where pandas keeps `df.attrs` (lost events of a frame written with df.to_parquet()).
_PANDAS_ATTRS = b"PANDAS_ATTRS"


def open_parquet(source: Opened | str) -> pq.ParquetFile:
    """A Parquet file to read from; InputError naming it when it is not one."""
    name = source if isinstance(source, str) else source.name
    try:
        if isinstance(source, str):
            return pq.ParquetFile(source)
        stream: Any = source.stream
        if not stream.seekable() or not isinstance(stream, io.BufferedReader) \
                or not hasattr(stream.raw, "fileno"):
            stream = io.BytesIO(stream.read())  # stdin or gzip: the footer needs seeking
        return pq.ParquetFile(stream)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{name}: unreadable Parquet file ({exc})") from None


def time_bounds(file: pq.ParquetFile, group: int) -> tuple[int | None, int | None]:
    """(min, max) of a row group's `time` column in nanoseconds, from its statistics (None,
    None when the file has no statistics for it)."""
    names = file.schema_arrow.names
    if "time" not in names:
        return None, None
    kind = file.schema_arrow.field("time").type
    column = file.metadata.row_group(group).column(file.metadata.schema.names.index("time"))
    stats = column.statistics
    if not pa.types.is_timestamp(kind) or stats is None or not stats.has_min_max:
        return None, None
    scale = _NANOS_PER_UNIT[kind.unit]
    return int(stats.min_raw) * scale, int(stats.max_raw) * scale


_NANOS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def extent_of_file(path: str) -> tuple[int | None, int | None]:
    """The oldest and newest flow time of a Parquet file, from its row groups' statistics."""
    file = open_parquet(path)
    bounds = [time_bounds(file, g) for g in range(file.num_row_groups)]
    lows = [low for low, _ in bounds if low is not None]
    highs = [high for _, high in bounds if high is not None]
    return (min(lows) if lows else None), (max(highs) if highs else None)


def lost_events_of(file: pq.ParquetFile) -> list[dict[str, Any]]:
    """The lost-event records a flows file carries in its metadata (times as RFC 3339)."""
    meta = file.schema_arrow.metadata or {}
    if LOST_EVENTS_METADATA in meta:
        return list(json.loads(meta[LOST_EVENTS_METADATA]))
    if _PANDAS_ATTRS in meta:
        attrs = json.loads(meta[_PANDAS_ATTRS])
        return list(attrs.get("lost_events") or []) if isinstance(attrs, dict) else []
    return []


def read_parquet(source: Opened | str, batch_size: int, *,
                 columns: Sequence[str] | None = None,
                 window: TimeRange = ALL_TIME) -> Iterator[FlowBatch]:
    """Batches of at most `batch_size` flows of one Parquet file: the row groups that can hold
    flows of `window`, only `columns` (None: all). Rows outside the window are not removed
    here (the caller's selection does that); lost events ride with the first batch."""
    file = open_parquet(source)
    name = source if isinstance(source, str) else source.name
    present = file.schema_arrow.names
    wanted = [c for c in (present if columns is None else columns) if c in present]
    groups = [g for g in range(file.num_row_groups)
              if window.overlaps(*time_bounds(file, g))]
    lost = lost_events_of(file)
    if not wanted:  # no column asked for is in the file: count rows only
        rows = sum(file.metadata.row_group(g).num_rows for g in groups)
        yield FlowBatch(columns={}, size=rows, lost_events=lost)
        return
    try:
        for record in file.iter_batches(batch_size=batch_size, row_groups=groups,
                                        columns=wanted, use_threads=False):
            columns_read = dict(zip(record.schema.names, record.columns, strict=True))
            yield FlowBatch(columns=columns_read, size=record.num_rows, lost_events=lost)
            lost = []
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{name}: unreadable Parquet file ({exc})") from None
    if lost:  # a file of lost events only
        yield FlowBatch(columns={}, size=0, lost_events=lost)

