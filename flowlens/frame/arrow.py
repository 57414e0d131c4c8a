"""The flows frame as Arrow: one schema with the declared columns' types (for Parquet files and
the flow store), and frames to tables with it."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa

from flowlens.frame.schema import COLUMNS, LOST_EVENT_COLUMNS, Column

_TYPES: dict[str, pa.DataType] = {
    "datetime64[ns, UTC]": pa.timestamp("ns", tz="UTC"),
    # Categories as dictionaries: Parquet keeps them dictionary-encoded, and reading one back
    # gives the frame builder codes instead of strings.
    "category": pa.dictionary(pa.int32(), pa.string()),
    "string": pa.string(),
    "boolean": pa.bool_(),
    **{name: getattr(pa, name.lower())() for name in
       ("Int16", "Int32", "Int64", "UInt16", "UInt32", "UInt64")},
}


def schema_of(columns: Sequence[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, _TYPES[c.dtype]) for c in columns])


SCHEMA = schema_of(COLUMNS)
LOST_EVENTS_SCHEMA = schema_of(LOST_EVENT_COLUMNS)


def to_table(df: pd.DataFrame, schema: pa.Schema = SCHEMA) -> pa.Table:
    """A frame (flows, or lost events with `LOST_EVENTS_SCHEMA`) as an Arrow table of
    `schema`, without pandas' own metadata (the frame builder restores every dtype)."""
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    return table.replace_schema_metadata(None)
