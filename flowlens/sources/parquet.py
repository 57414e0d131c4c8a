"""Parquet reader: files written by `flowlens convert -o x.parquet`, by `df.to_parquet()` on a
flows frame, and the files of a flow store (flowlens.store), as batches of Arrow columns.

Only the row groups that can hold flows of the asked time window are decoded (their `time`
statistics tell), and only the asked columns; a column the file lacks (written by an older
flowlens) is left out of the batch, so the frame builder fills it with NA.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flowlens.errors import InputError
from flowlens.frame.schema import COLUMNS, LOST_EVENT_COLUMNS
from flowlens.sources.batch import FlowBatch, ReadReport
from flowlens.sources.files import Opened
from flowlens.sources.timerange import ALL_TIME, TIME_RANGE, TimeRange

__all__ = ["LOST_EVENTS_METADATA", "check_schema", "extent_of_file", "file_batches", "in_range",
           "lost_events_of", "open_parquet", "read_parquet", "reading", "time_bounds"]

# Key in a Parquet file's metadata holding the lost-event records as JSON (flowlens convert).
LOST_EVENTS_METADATA = b"flowlens.lost_events"
# Where pandas keeps `df.attrs` (lost events of a frame written with df.to_parquet()).
_PANDAS_ATTRS = b"PANDAS_ATTRS"


@contextlib.contextmanager
def reading(name: object) -> Iterator[None]:
    """Arrow's errors of reading a file (a bad footer, a page that does not decompress) as
    one InputError naming it."""
    try:
        yield
    except FileNotFoundError:  # (a store's reader lists the hour again)
        raise
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{name}: unreadable Parquet file ({exc})") from None


def open_parquet(source: Opened | str) -> pq.ParquetFile:
    """A Parquet file of flows to read from; InputError naming it when it is not one."""
    name = source if isinstance(source, str) else source.name
    with reading(name):
        if isinstance(source, str):
            file = pq.ParquetFile(source)
        else:
            stream: Any = source.stream
            if not stream.seekable() or not isinstance(stream, io.BufferedReader) \
                    or not hasattr(stream.raw, "fileno"):
                stream = io.BytesIO(stream.read())  # stdin or gzip: the footer needs seeking
            file = pq.ParquetFile(stream)
    check_schema(file.schema_arrow, name)
    return file


# The frame's column types a Parquet column must have (any width: values are checked).
_KINDS = {"boolean": ("a boolean", pa.types.is_boolean),
          "datetime64[ns, UTC]": ("a timestamp", pa.types.is_timestamp),
          **{c.dtype: ("an integer", pa.types.is_integer) for c in COLUMNS
             if c.dtype[:3] in ("Int", "UIn")}}
_BY_NAME = {c.name: c for c in COLUMNS}


def check_schema(schema: pa.Schema, name: object) -> None:
    """InputError naming the file when it is no file of flows: none of the frame's columns,
    or one of a type the frame's column cannot take (a `time` of strings, ports as text)."""
    known = [f for f in schema if f.name in _BY_NAME]
    if not known:
        raise InputError(f"{name}: not a Parquet file of flows (none of the columns of a "
                         "flows frame)")
    for f in known:
        want = _KINDS.get(_BY_NAME[f.name].dtype)
        if want is not None and not want[1](f.type):
            raise InputError(f"{name}: column {f.name} is {f.type}, not {want[0]}")


_INT_RANGES = {"Int16": (-(1 << 15), (1 << 15) - 1), "Int32": (-(1 << 31), (1 << 31) - 1),
               "Int64": (-(1 << 63), (1 << 63) - 1), "UInt16": (0, (1 << 16) - 1),
               "UInt32": (0, (1 << 32) - 1), "UInt64": (0, (1 << 64) - 1)}
_NS_RANGE = (-(1 << 63) + 1, (1 << 63) - 1)  # (the smallest int64 is NaT)


def _value_range(dtype: str, kind: pa.DataType) -> tuple[int, int] | None:
    """The raw values (integers, or timestamps in their own unit) a column of this frame
    dtype holds; None: any of the Arrow type."""
    if pa.types.is_timestamp(kind):
        scale = _NANOS_PER_UNIT[kind.unit]
        low, high = -(_NS_RANGE[1] // scale), _NS_RANGE[1] // scale
    elif dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
    else:
        return None
    bits = kind.bit_width
    signed = pa.types.is_signed_integer(kind) or pa.types.is_timestamp(kind)
    have = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return None if low <= have[0] and have[1] <= high else (low, high)


def in_range(record: pa.RecordBatch, name: object, first_row: int,
             report: ReadReport | None) -> pa.RecordBatch:
    """The rows whose values the frame's columns hold: each other row is an unreadable line
    (`name: row N`), skipped and counted in `report` (under --strict, the end of the read);
    never a value wrapped into another."""
    bad: Any = None
    reasons: list[tuple[str, Any, tuple[int, int]]] = []
    for f, values in zip(record.schema, record.columns, strict=True):
        limits = _value_range(_BY_NAME[f.name].dtype, f.type) if f.name in _BY_NAME else None
        if limits is None:
            continue
        raw = values.cast(pa.int64()) if pa.types.is_timestamp(f.type) else values
        outside = pc.or_kleene(pc.less(raw, limits[0]), pc.greater(raw, limits[1]))
        if pc.any(outside).as_py():
            reasons.append((f.name, raw, limits))
            bad = outside if bad is None else pc.or_kleene(bad, outside)
    if bad is None:
        return record
    bad = bad.fill_null(False)
    for row in pc.indices_nonzero(bad).to_pylist():
        column, raw, limits = next((c, r, lim) for c, r, lim in reasons
                                   if not lim[0] <= (r[row].as_py() or 0) <= lim[1])
        value = raw[row].as_py()
        why = (f"time is outside {TIME_RANGE}" if column == "time" or
               _BY_NAME[column].dtype.startswith("datetime") else
               f"{column} {value} is outside {limits[0]}..{limits[1]}")
        if report is None:
            raise InputError(f"{name}: row {first_row + row}: {why}")
        report.bad(f"{name}: row {first_row + row}", why)
    return record.filter(pc.invert(bad))


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


def lost_events_of(file: pq.ParquetFile, name: object = "") -> list[dict[str, Any]]:
    """The lost-event records a flows file carries in its metadata (times as RFC 3339);
    InputError naming the file when they are not such records."""
    meta = file.schema_arrow.metadata or {}
    try:
        if LOST_EVENTS_METADATA in meta:
            return _checked_lost(json.loads(meta[LOST_EVENTS_METADATA]))
        if _PANDAS_ATTRS in meta:
            attrs = json.loads(meta[_PANDAS_ATTRS])
            return _checked_lost(attrs.get("lost_events") or [] if isinstance(attrs, dict)
                                 else [])
    except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
        raise InputError(f"{name}: unreadable lost-event records in its metadata "
                         f"({str(exc)[:200]})") from None
    return []


_LOST_TYPES = {"datetime64[ns, UTC]": pa.string(), "category": pa.string(),
               "Int32": pa.int32(), "UInt64": pa.uint64(), "Int64": pa.int64()}


def _checked_lost(records: Any) -> list[dict[str, Any]]:
    """Records the frame builder takes: a list of objects, each value of its column's type
    and range (Arrow refuses what does not fit), times RFC 3339, a position >= 0."""
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise TypeError("not a list of records")
    for c in LOST_EVENT_COLUMNS:
        values = pa.array([r.get(c.name) for r in records], type=_LOST_TYPES[c.dtype])
        if c.dtype.startswith("datetime"):
            pc.cast(values, pa.timestamp("ns", tz="UTC"))
        if c.name == "position" and (values.null_count or pc.any(pc.less(values, 0)).as_py()):
            raise ValueError("a record without a position")
    return records


def read_parquet(source: Opened | str, batch_size: int, *,
                 columns: Sequence[str] | None = None, window: TimeRange = ALL_TIME,
                 report: ReadReport | None = None) -> Iterator[FlowBatch]:
    """Batches of at most `batch_size` flows of one Parquet file: the row groups that can hold
    flows of `window`, only `columns` (None: all). Rows outside the window are not removed
    here (the caller's selection does that); lost events ride with the first batch. A row
    with a value the frame cannot hold is an unreadable line of `report` (`file: row N`)."""
    file = open_parquet(source)
    name = source if isinstance(source, str) else source.name
    present = file.schema_arrow.names
    wanted = [c for c in (present if columns is None else columns) if c in present]
    groups = [g for g in range(file.num_row_groups)
              if window.overlaps(*time_bounds(file, g))]
    lost = lost_events_of(file, name)
    if not wanted:  # no column asked for is in the file: count rows only
        rows = sum(file.metadata.row_group(g).num_rows for g in groups)
        yield FlowBatch(columns={}, size=rows, lost_events=lost)
        return
    for record in file_batches(file, name, groups, wanted, batch_size, report):
        columns_read = dict(zip(record.schema.names, record.columns, strict=True))
        yield FlowBatch(columns=columns_read, size=record.num_rows, lost_events=lost)
        lost = []
    if lost:  # a file of lost events only
        yield FlowBatch(columns={}, size=0, lost_events=lost)


def file_batches(file: pq.ParquetFile, name: object, groups: list[int], columns: list[str],
                 batch_size: int, report: ReadReport | None) -> Iterator[pa.RecordBatch]:
    """The row groups' rows, at most `batch_size` at a time, each with values the frame holds
    (`in_range`: rows numbered from 1 in the file)."""
    starts = [0]
    for g in range(file.num_row_groups):
        starts.append(starts[-1] + file.metadata.row_group(g).num_rows)
    for g in groups:
        row = starts[g] + 1
        with reading(name):
            for record in file.iter_batches(batch_size=batch_size, row_groups=[g],
                                            columns=columns, use_threads=False):
                yield in_range(record, name, row, report)
                row += record.num_rows
