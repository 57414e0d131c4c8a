"""The flow store: Parquet files partitioned by UTC date and hour that `flowlens record` writes
and every command reads (a store is a SOURCE like a file).

    >>> import flowlens
    >>> from flowlens.store import Store, read_partition
    >>> df = flowlens.read("flows-store/", since="1h")            # pruned before decoding
    >>> for part in Store("flows-store/").partitions():           # a per-partition engine
    ...     frame = read_partition(part, columns=["time", "verdict"])

Layout and reading: `flowlens.store.dataset`; writing, compaction and retention:
`flowlens.store.writer`; exactly-once import: `flowlens.store.ingest`; the recorder:
`flowlens.store.record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flowlens.sources.timerange import ALL_TIME, TimeRange
from flowlens.store.dataset import HOUR_NS, Partition, Store, is_store

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "HOUR_NS", "Partition", "Store", "TimeRange", "import_sources", "is_store",
    "read_partition", "record",
]


def read_partition(partition: Partition, columns: Sequence[str] | None = None,
                   window: TimeRange = ALL_TIME) -> pd.DataFrame:
    """One hour of a store as a flows frame: only the row groups that can hold flows of
    `window` (rows outside it are kept: select them), only `columns` (the others NA); its lost
    events in attrs, placed among its flows."""
    from flowlens.frame import build_all

    return build_all(partition.batches(columns, window))


def __getattr__(name: str) -> Any:
    # Writing needs the loaders (which import this package): only when asked for.
    if name == "import_sources":
        from flowlens.store.ingest import import_sources

        return import_sources
    if name == "record":
        from flowlens.store.record import record

        return record
    raise AttributeError(f"module 'flowlens.store' has no attribute {name!r}")
