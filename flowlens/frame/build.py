"""The one place a flows frame is built: batches of plain columns in, typed DataFrame out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flowlens.frame.schema import COLUMNS, LOST_EVENT_COLUMNS, NAMES, Column
from flowlens.sources.batch import FlowBatch

_STRING = pd.ArrowDtype(pa.string())


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
        return pa.nulls(len(values), _ARROW_NULL_TYPES.get(dtype, pa.string()))
    return pa.array(values)


_ARROW_NULL_TYPES = {"boolean": pa.bool_(), "datetime64[ns, UTC]": pa.timestamp("ns", tz="UTC")}
for _name in ("Int16", "Int32", "Int64", "UInt16", "UInt32", "UInt64"):
    _ARROW_NULL_TYPES[_name] = pa.int64()


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
    dtype = col.dtype
    if values is None:
        values = pa.nulls(size, _ARROW_NULL_TYPES.get(dtype, pa.string()))
    arr = _arrow(values, dtype)
    if dtype == "category":
        return _categorical(arr)
    if dtype.startswith("datetime64"):
        return _times(arr)
    if dtype == "string":
        return pd.array(arr.cast(pa.string()), dtype=_STRING)
    if dtype == "boolean":
        mask = arr.is_null().to_numpy(zero_copy_only=False)
        data = arr.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        return pd.arrays.BooleanArray(data, mask)
    # Nullable integers: data and mask straight from Arrow.
    mask = arr.is_null().to_numpy(zero_copy_only=False)
    data = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(dtype.lower())
    return pd.arrays.IntegerArray(data, mask)


def _categorical(arr: pa.Array) -> pd.Categorical:
    """A string column as a categorical, encoded by Arrow (several times faster than pandas on
    Python strings), with the smallest code type that fits."""
    if not (pa.types.is_string(arr.type) or pa.types.is_dictionary(arr.type)):
        arr = arr.cast(pa.string())
    encoded = arr if pa.types.is_dictionary(arr.type) else arr.dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    categories = encoded.dictionary.to_pylist()
    return pd.Categorical.from_codes(codes.astype(_code_dtype(len(categories))),
                                     categories=pd.Index(categories, dtype=object))


def _code_dtype(n: int) -> type[np.signedinteger[Any]]:
    return np.int8 if n < 127 else np.int16 if n < 32767 else np.int32


def build(batch: FlowBatch) -> pd.DataFrame:
    """A typed frame with every declared column from one batch; lost events in attrs."""
    cols = batch.columns
    data = {c.name: _column(c, cols.get(c.name), batch.size) for c in COLUMNS}
    frame = pd.DataFrame(data, columns=list(NAMES))
    frame.attrs["lost_events"] = build_lost_events(batch.lost_events)
    return frame


def build_lost_events(records: list[dict[str, Any]]) -> pd.DataFrame:
    size = len(records)
    data = {c.name: _column(c, [r.get(c.name) for r in records], size) for c in LOST_EVENT_COLUMNS}
    return pd.DataFrame(data, columns=[c.name for c in LOST_EVENT_COLUMNS])


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
    lost_parts = []
    offset = 0
    for f in frames:
        lost = f.attrs.get("lost_events")
        if lost is not None and len(lost):
            lost = lost.copy()
            lost["position"] = lost["position"] + offset
            lost_parts.append(lost)
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
    out.attrs["lost_events"] = _concat_lost(lost_parts)
    return out


def _concat_lost(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return build_lost_events([])
    lost = pd.concat(parts, ignore_index=True)
    for c in LOST_EVENT_COLUMNS:
        if c.dtype == "category":  # categories differ between parts: pandas falls back to object
            values = lost[c.name].astype(object)
            lost[c.name] = pd.Categorical(values, categories=pd.Index(
                list(dict.fromkeys(values.dropna())), dtype=object))
    return lost


def take(df: pd.DataFrame, rows: Any) -> pd.DataFrame:
    """The rows at these positions (sorted), with the lost events that came between the first
    and the last of them (they say this stretch of data is incomplete), re-anchored."""
    positions = np.asarray(rows, dtype=np.int64)
    out = df.iloc[positions].reset_index(drop=True)
    lost = df.attrs.get("lost_events")
    if lost is not None and len(lost) and len(positions):
        at = lost["position"].to_numpy(dtype=np.int64)
        # A selection that reaches the end of the stream keeps the lost events after it too.
        end = len(df) if positions[-1] == len(df) - 1 else positions[-1]
        lost = lost[(at >= positions[0]) & (at <= end)].reset_index(drop=True)
        lost["position"] = np.searchsorted(positions, lost["position"].to_numpy(dtype=np.int64))
        out.attrs["lost_events"] = lost
    else:
        out.attrs["lost_events"] = build_lost_events([])
    return out
