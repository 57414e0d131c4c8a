"""The one place a flows frame is built: batches of plain columns in, typed DataFrame out."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flowlens._lazy import lazy
from flowlens.frame.schema import COLUMNS, LOST_EVENT_COLUMNS, NAMES, Column
from flowlens.sources.batch import FlowBatch

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
else:  # loaded by the first frame built: importing flowlens.frame (the schema) stays light
    np, pd, pa, pc = lazy("numpy"), lazy("pandas"), lazy("pyarrow"), lazy("pyarrow.compute")


@functools.cache
def _string_dtype() -> Any:
    return pd.ArrowDtype(pa.string())


def _arrow(values: Any, dtype: str) -> pa.Array:
    """A source column (Arrow array or list of plain values) as one Arrow array."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    first = next((v for v in values if v is not None), None)
    if isinstance(first, list):
        return pc.binary_join(pa.array(values, type=pa.list_(pa.string())), ",")
    if first is None:
        return pa.nulls(len(values), _null_type(dtype))
    if dtype == "UInt64" and isinstance(first, int):
        return pa.array(values, type=pa.uint64())  # (Arrow would infer int64: 2**63 overflows)
    return pa.array(values)


def _null_type(dtype: str) -> pa.DataType:
    """The Arrow type of an all-null source column of this frame dtype."""
    if dtype == "boolean":
        return pa.bool_()
    if dtype.startswith("datetime64"):
        return pa.timestamp("ns", tz="UTC")
    return pa.int64() if dtype[:3] in ("Int", "UIn") else pa.string()


def _times(arr: pa.Array) -> pd.DatetimeIndex:
    if pa.types.is_integer(arr.type):
        arr = arr.cast(pa.timestamp("ns", tz="UTC"))
    elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        try:
            arr = pc.cast(arr, pa.timestamp("ns", tz="UTC"))
        except pa.ArrowInvalid:  # offsets other than Z, ...: pandas reads every RFC 3339 form
            return pd.DatetimeIndex(pd.to_datetime(arr.to_pylist(), format="ISO8601", utc=True)
                                    ).as_unit("ns")
    elif pa.types.is_timestamp(arr.type) and arr.type.tz is None:
        arr = arr.cast(pa.timestamp("ns", tz="UTC"))
    return pd.DatetimeIndex(arr.to_pandas()).as_unit("ns")


def _column(col: Column, values: Any, size: int) -> Any:
    arr = _source_array(col, values, size)
    if col.dtype == "category":
        return _categorical(arr)
    if col.dtype == "string":
        return _strings(arr)
    return _typed(col.dtype, *_numbers(col.dtype, arr))


def _source_array(col: Column, values: Any, size: int) -> pa.Array:
    if values is None:
        values = pa.nulls(size, _null_type(col.dtype))
    return _arrow(values, col.dtype)


def _strings(arr: pa.Array) -> Any:
    return pd.array(arr.cast(pa.string()), dtype=_string_dtype())


_Numbers = tuple["np.ndarray[Any, Any]", "np.ndarray[Any, Any] | None"]


def _numbers(dtype: str, arr: pa.Array) -> _Numbers:
    """A time, boolean or integer column as numpy data and NA mask (None for times: NaT)."""
    if dtype.startswith("datetime64"):
        return _times(arr).asi8, None
    mask = arr.is_null().to_numpy(zero_copy_only=False)
    if dtype == "boolean":
        return arr.fill_null(False).to_numpy(zero_copy_only=False).astype(bool), mask
    # Nullable integers: data and mask straight from Arrow.
    return arr.fill_null(0).to_numpy(zero_copy_only=False).astype(dtype.lower()), mask


def _typed(dtype: str, data: np.ndarray[Any, Any], mask: np.ndarray[Any, Any] | None) -> Any:
    """The pandas array of `_numbers`' data and mask."""
    if mask is None:
        return pd.DatetimeIndex(data.view("datetime64[ns]")).tz_localize("UTC")
    if dtype == "boolean":
        return pd.arrays.BooleanArray(data, mask)
    return pd.arrays.IntegerArray(data, mask)


def _categorical(arr: pa.Array) -> pd.Categorical:
    """A string column as a categorical, encoded by Arrow (several times faster than pandas on
    Python strings), with the smallest code type that fits."""
    categories: dict[Any, int] = {}
    codes = _codes(arr, categories)
    return pd.Categorical.from_codes(codes, categories=pd.Index(list(categories), dtype=object))


def _codes(arr: pa.Array, categories: dict[Any, int]) -> np.ndarray[Any, Any]:
    """The values as codes into `categories` (value -> code, in order of first appearance; new
    values are added), in the smallest type that fits; NA is -1."""
    if not (pa.types.is_string(arr.type) or pa.types.is_dictionary(arr.type)):
        arr = arr.cast(pa.string())
    encoded = arr if pa.types.is_dictionary(arr.type) else arr.dictionary_encode()
    lookup = np.array([categories.setdefault(v, len(categories))
                       for v in encoded.dictionary.to_pylist()], dtype=np.int64)
    local = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    # One slot more, so that NA (-1) looks up -1.
    return np.append(lookup, -1)[local].astype(_code_dtype(len(categories)))


def _code_dtype(n: int) -> type[np.signedinteger[Any]]:
    return np.int8 if n < 127 else np.int16 if n < 32767 else np.int32


def build_table(batch: FlowBatch) -> pa.Table:
    """One batch as an Arrow table of every declared column with the frame's types
    (`flowlens.frame.arrow.SCHEMA`), without making a frame (what `record` writes): read back,
    it builds the frame `build(batch)` builds. Lost events are left to the caller."""
    from flowlens.frame.arrow import SCHEMA

    arrays = []
    for c, target in zip(COLUMNS, SCHEMA, strict=True):
        arr = _source_array(c, batch.columns.get(c.name), batch.size)
        try:
            arrays.append(_arrow_typed(c.dtype, arr, target.type))
        except pa.ArrowInvalid:  # a value its type cannot hold: as the frame makes it
            from flowlens.frame.arrow import to_table

            return to_table(build(FlowBatch(batch.columns, batch.size)))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _arrow_typed(dtype: str, arr: pa.Array, kind: pa.DataType) -> pa.Array:
    if dtype.startswith("datetime64"):
        if pa.types.is_integer(arr.type) or pa.types.is_timestamp(arr.type):
            return arr.cast(pa.int64()).cast(kind)
        return pa.array(_times(arr), type=kind)
    if dtype == "category" and not pa.types.is_dictionary(arr.type):
        return pc.dictionary_encode(arr.cast(pa.string())).cast(kind)
    return arr.cast(kind)


def build(batch: FlowBatch) -> pd.DataFrame:
    """A typed frame with every declared column from one batch; lost events in attrs."""
    return build_all([batch])


def build_all(batches: Iterable[FlowBatch]) -> pd.DataFrame:
    """One typed frame of many batches, as `concat` of their `build`s gives, in less memory and
    time: each batch is reduced to its columns' final form as it arrives (so that its Arrow
    working set is freed before the next one is read), categoricals are coded against categories
    shared by all batches, and no per-batch frame is made."""
    columns = _Columns()
    for batch in batches:
        columns.add(batch)
    return columns.frame()


class _Growing:
    """A numpy column appended to batch by batch, in one array grown by half when full.

    Per-batch pieces joined at the end would need the column twice, and thousands of small
    freed pieces stay resident as heap holes; capacity not yet written is not resident.
    """

    def __init__(self) -> None:
        self.array: np.ndarray[Any, Any] | None = None
        self.size = 0

    def append(self, values: np.ndarray[Any, Any]) -> None:
        if self.array is None:  # one batch is taken as it is
            self.array, self.size = values, len(values)
            return
        if not len(values):  # (the first batch's array may be read-only)
            return
        end = self.size + len(values)
        dtype = np.result_type(self.array, values)  # codes widen as categories grow
        if end > len(self.array) or dtype != self.array.dtype:
            grown = np.empty(max(end, len(self.array) * 3 // 2), dtype)
            grown[:self.size] = self.array[:self.size]
            self.array = grown
        self.array[self.size:end] = values
        self.size = end

    def values(self) -> np.ndarray[Any, Any]:
        assert self.array is not None
        return self.array[:self.size]


class _Columns:
    """The columns of the batches added so far."""

    def __init__(self) -> None:
        self.data = {c.name: _Growing() for c in COLUMNS if c.dtype not in ("category", "string")}
        self.masks = {name: _Growing() for name in self.data}
        self.strings: dict[str, list[pa.Array]] = {
            c.name: [] for c in COLUMNS if c.dtype == "string"}
        self.codes = {c.name: _Growing() for c in COLUMNS if c.dtype == "category"}
        # Per categorical column: every value seen, in order of first appearance, to its code.
        self.categories: dict[str, dict[Any, int]] = {name: {} for name in self.codes}
        self.rows = 0
        self.lost: list[dict[str, Any]] = []
        self.batches = 0

    def add(self, batch: FlowBatch) -> None:
        for c in COLUMNS:
            arr = _source_array(c, batch.columns.get(c.name), batch.size)
            if c.dtype == "category":
                self.codes[c.name].append(_codes(arr, self.categories[c.name]))
            elif c.dtype == "string":
                # Copied out of Arrow's default pool (mimalloc), where each batch's pieces kept
                # would pin pages among that batch's freed working set (measured: +25 MB at 1M
                # flows); the system pool returns what is freed.
                self.strings[c.name].append(pa.concat_arrays(
                    [arr.cast(pa.string())], memory_pool=pa.system_memory_pool()))
            else:
                data, mask = _numbers(c.dtype, arr)
                self.data[c.name].append(data)
                if mask is not None:
                    self.masks[c.name].append(mask)
        # Lost-event positions count the flows of their batch before them; here, of the frame.
        self.lost += [{**e, "position": e["position"] + self.rows} for e in batch.lost_events]
        self.rows += batch.size
        self.batches += 1

    def frame(self) -> pd.DataFrame:
        if not self.batches:
            self.add(FlowBatch(columns={}, size=0))
        data: dict[str, Any] = {}
        for c in COLUMNS:
            if c.dtype == "category":
                categories = list(self.categories[c.name])
                data[c.name] = pd.Categorical.from_codes(
                    self.codes[c.name].values().astype(_code_dtype(len(categories)), copy=False),
                    categories=pd.Index(categories, dtype=object))
            elif c.dtype == "string":
                chunks = self.strings[c.name]
                data[c.name] = pd.array(chunks[0] if len(chunks) == 1 else pa.chunked_array(
                    chunks, type=pa.string()), dtype=_string_dtype())
            else:
                mask = self.masks[c.name]
                data[c.name] = _typed(c.dtype, self.data[c.name].values(),
                                      mask.values() if mask.array is not None else None)
        # copy=False: pandas 3 copies every column of a dict by default.
        frame = pd.DataFrame(data, columns=list(NAMES), copy=False)
        set_lost_events(frame, build_lost_events(self.lost))
        return frame


def build_lost_events(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The typed lost-events frame of records (dicts keyed by LOST_EVENT_COLUMNS).

    A record's times may be RFC 3339 strings or integer nanoseconds, as a batch's `time` column
    (text readers and the relay give nanoseconds, jsonpb strings): records of different sources
    come together here, each time read on its own."""
    size = len(records)
    data = {c.name: _column(c, [_lost_value(c, r.get(c.name)) for r in records], size)
            for c in LOST_EVENT_COLUMNS}
    return pd.DataFrame(data, columns=[c.name for c in LOST_EVENT_COLUMNS])


def _lost_value(col: Column, value: Any) -> Any:
    """A record's value in one type per column: times as integer nanoseconds since the epoch."""
    if value is None or not col.dtype.startswith("datetime") or isinstance(value, int):
        return value
    return pd.Timestamp(value).value


# Lost events travel in `frame.attrs["lost_events"]` as JSON values (times as RFC 3339 strings
# with nanoseconds), so that every pandas export of a frame works: to_parquet writes attrs as
# JSON (and read_parquet brings them back), to_pickle copies them.
_LOST_TIMES = tuple(c.name for c in LOST_EVENT_COLUMNS if c.dtype.startswith("datetime"))


def lost_events(df: pd.DataFrame) -> pd.DataFrame:
    """The lost-event records that travel with a flows frame, as a typed frame (columns
    LOST_EVENT_COLUMNS; `position` is the row of the first flow after each record)."""
    return build_lost_events(df.attrs.get("lost_events") or [])


def set_lost_events(df: pd.DataFrame, lost: pd.DataFrame | None) -> None:
    """Attach lost-event records (a frame with LOST_EVENT_COLUMNS) to a flows frame."""
    if lost is None or not len(lost):
        df.attrs["lost_events"] = []
        return
    columns = {}
    for c in LOST_EVENT_COLUMNS:
        values = lost[c.name]
        if c.name in _LOST_TIMES:
            columns[c.name] = [None if pd.isna(t) else t.isoformat().replace("+00:00", "Z")
                               for t in values]
        elif c.dtype == "category":
            columns[c.name] = [None if pd.isna(v) else str(v) for v in values]
        else:
            columns[c.name] = [None if pd.isna(v) else int(v) for v in values]
    df.attrs["lost_events"] = [dict(zip(columns, row, strict=True))
                               for row in zip(*columns.values(), strict=True)]


def empty() -> pd.DataFrame:
    return build(FlowBatch(columns={}, size=0))


def concat(frames: Iterable[pd.DataFrame], *, consume: bool = False) -> pd.DataFrame:
    """Join frames into one, keeping every dtype (categories unioned) and all lost events.

    With `consume`, each column is dropped from the parts once joined, so joining needs about
    one frame of memory instead of two (the parts are left without columns)."""
    frames = list(frames)
    if not frames:
        return empty()
    if len(frames) == 1:
        return frames[0]
    lost: list[dict[str, Any]] = []
    offset = 0
    for f in frames:
        lost += [{**r, "position": r["position"] + offset} for r in f.attrs.get("lost_events", ())]
        offset += len(f)
    data = {}
    for c in COLUMNS:
        parts = [f[c.name].array for f in frames]
        if c.dtype == "category":
            joined = pd.api.types.union_categoricals(parts, ignore_order=True)
            # Keep categories as object strings, as `build` makes them.
            data[c.name] = pd.Categorical.from_codes(
                joined.codes, categories=pd.Index(list(joined.categories), dtype=object))
        else:
            # Plain Series (no attrs): pandas compares attrs when concatenating frames' columns.
            data[c.name] = pd.concat([pd.Series(p) for p in parts], ignore_index=True).array
        del parts
        if consume:
            for f in frames:
                del f[c.name]
    out = pd.DataFrame(data, columns=list(NAMES))
    out.attrs["lost_events"] = lost
    return out


def take(df: pd.DataFrame, rows: Any, lost_records: Any = None) -> pd.DataFrame:
    """The rows at these positions (sorted), with the lost-event records at the positions
    `lost_records` (in `lost_events(df)`), or by default those that came between the first and
    the last of the rows (they say this stretch of data is incomplete), re-anchored."""
    positions = np.asarray(rows, dtype=np.int64)
    out = df.iloc[positions].reset_index(drop=True)
    lost = lost_events(df)
    if lost_records is not None:
        lost = lost.iloc[np.asarray(lost_records, dtype=np.int64)].reset_index(drop=True)
    elif len(lost) and len(positions):
        at = lost["position"].to_numpy(dtype=np.int64)
        # A selection that reaches the end of the stream keeps the lost events after it too.
        end = len(df) if positions[-1] == len(df) - 1 else positions[-1]
        lost = lost[(at >= positions[0]) & (at <= end)].reset_index(drop=True)
    else:
        lost = lost.iloc[:0]
    lost["position"] = np.searchsorted(positions, lost["position"].to_numpy(dtype=np.int64))
    set_lost_events(out, lost)
    return out
