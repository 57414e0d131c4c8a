"""Lost events: what the source could not deliver. Any report over data with losses says so."""

from __future__ import annotations

import pandas as pd

from flowlens.analyses.labels import sort_largest
from flowlens.frame import lost_events as _lost_events


def lost_event_records(df: pd.DataFrame) -> pd.DataFrame:
    """The lost-event records that travel with a frame (`frame.attrs["lost_events"]`)."""
    return _lost_events(df)


def lost_events(df: pd.DataFrame) -> pd.DataFrame:
    """`hubble_lost_events_total by (source)`, per node too: events the source reported lost.
    Columns: source, node, events_lost, records, first, last (times of the records)."""
    return lost_events_table(lost_event_records(df))


def lost_events_table(lost: pd.DataFrame) -> pd.DataFrame:
    """The `lost_events` panel of lost-event records (a frame as `lost_event_records`)."""
    columns = ["source", "node", "events_lost", "records", "first", "last"]
    if lost.empty:
        return pd.DataFrame({c: pd.Series([], dtype="int64" if c in ("events_lost", "records")
                                          else object) for c in columns})
    grouped = lost.groupby(["source", "node"], observed=True, dropna=False, sort=True).agg(
        events_lost=("num_events_lost", "sum"), records=("time", "size"),
        first=("time", "min"), last=("time", "max")).reset_index()
    grouped["events_lost"] = grouped["events_lost"].astype("int64")
    grouped = grouped.astype({"source": object, "node": object})
    return sort_largest(grouped, "events_lost", ["source", "node"])[columns]


def total_lost_events(df: pd.DataFrame) -> int:
    """Sum of `num_events_lost` over the frame's lost-event records."""
    return int(lost_event_records(df)["num_events_lost"].fillna(0).sum())
