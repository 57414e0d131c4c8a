"""Putting flows into a store exactly once: what identifies a flow, what the store already
holds, and importing files (`flowlens convert SOURCE… -o STORE/`).

A flow is its uuid (Hubble gives every flow one); a flow without one (hubble text carries
none) is the hash of all its values. Duplicates are counted as a multiset: a flow arriving as
often as the store already holds it adds nothing, one arriving more often adds the rest (two
identical text lines can be two real packets).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowlens import frame as _frame
from flowlens.load import ReadOptions, iter_batches
from flowlens.sources.timerange import ALL_TIME, TimeRange
from flowlens.store.dataset import LOST_EVENTS, NODE_STATUS, Store
from flowlens.store.writer import (
    NO_TIME,
    StoreLock,
    StoreWriter,
    create_store,
    hour_starts,
    time_nanos,
)

__all__ = ["ImportSummary", "Known", "flow_keys", "import_sources"]

def flow_keys(df: pd.DataFrame) -> np.ndarray[Any, Any]:
    """Per row, what identifies the flow: its uuid, else a hash of every other value."""
    keys = df["uuid"].astype(object).to_numpy(copy=True)
    missing = pd.isna(keys)
    if missing.any():
        rest = df.loc[missing, [c for c in df.columns if c != "uuid"]]
        hashes = pd.util.hash_pandas_object(rest, index=False).to_numpy()
        keys[missing] = [f"#{h:016x}" for h in hashes.tolist()]
    return keys


def lost_event_keys(lost: pd.DataFrame) -> list[Hashable]:
    """A lost-event record is all of its values but its position."""
    cols = [c for c in lost.columns if c != "position"]
    return [tuple(None if pd.isna(v) else v for v in row)
            for row in lost[cols].itertuples(index=False, name=None)]


def node_status_key(row: dict[str, Any]) -> Hashable:
    return (row.get("time"), row.get("node"), row.get("state"),
            tuple(row.get("node_names") or ()), row.get("message"))


class Known:
    """What a store held before this writer started, per hour, loaded when an hour is first
    asked about: flows, lost events and node status events, as multisets of keys."""

    def __init__(self, store: Store, window: TimeRange = ALL_TIME) -> None:
        self.store = store
        self.window = window
        self._hours: dict[int, tuple[Counter[Hashable], Counter[Hashable],
                                     Counter[Hashable]]] = {}

    def _hour(self, start: int) -> tuple[Counter[Hashable], Counter[Hashable],
                                         Counter[Hashable]]:
        if start not in self._hours:
            self._hours[start] = self._load(start)
        return self._hours[start]

    def _load(self, start: int) -> tuple[Counter[Hashable], Counter[Hashable],
                                         Counter[Hashable]]:
        part = self.store.partition(start)
        ids = _frame.build_all(part.batches(columns=["uuid"], window=self.window))
        flows: Counter[Hashable] = Counter(ids["uuid"].dropna().astype(object))
        if ids["uuid"].isna().any():  # flows without uuid: their values are the key
            whole = _frame.build_all(part.batches(window=self.window))
            flows = Counter(flow_keys(whole).tolist())
        lost = _frame.build_lost_events([
            {**r, "position": 0} for r in part.records(LOST_EVENTS, self.window)])
        statuses = part.records(NODE_STATUS, self.window)
        return flows, Counter(lost_event_keys(lost)), Counter(map(node_status_key, statuses))

    def fresh_flows(self, df: pd.DataFrame, upto_ns: int | None = None) -> np.ndarray[Any, Any]:
        """A mask of the rows of `df` the store does not hold yet (consumed as they match).
        Rows newer than `upto_ns` (the newest flow stored) are new without looking."""
        keep = np.ones(len(df), dtype=bool)
        times = df["time"].array.asi8
        check = np.ones(len(df), dtype=bool) if upto_ns is None else times <= upto_ns
        rows = np.flatnonzero(check)
        if not len(rows):
            return keep
        keys = flow_keys(df.iloc[rows])
        hours = hour_starts(times[rows])
        for row, key, hour in zip(rows.tolist(), keys.tolist(), hours.tolist(), strict=True):
            held = self._hour(hour)[0]
            if held[key] > 0:
                held[key] -= 1
                keep[row] = False
        return keep

    def fresh_lost_events(self, lost: pd.DataFrame,
                          upto_ns: int | None = None) -> np.ndarray[Any, Any]:
        keep = np.ones(len(lost), dtype=bool)
        times = time_nanos(lost["time"])
        hours = hour_starts(times)
        for i, (key, hour) in enumerate(zip(lost_event_keys(lost), hours.tolist(), strict=True)):
            if upto_ns is not None and times[i] > upto_ns:
                continue
            held = self._hour(hour)[1]
            if held[key] > 0:
                held[key] -= 1
                keep[i] = False
        return keep

    def fresh_node_status(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            t = row.get("time")
            held = self._hour(hour_starts(np.array([NO_TIME if t is None else t]))[0])[2]
            key = node_status_key(row)
            if held[key] > 0:
                held[key] -= 1
            else:
                out.append(row)
        return out

    def keep_new(self, df: pd.DataFrame, upto_ns: int | None = None) -> pd.DataFrame:
        """`df` without the flows and lost events the store already holds."""
        keep = self.fresh_flows(df, upto_ns)
        lost = _frame.lost_events(df)
        if keep.all() and not len(lost):
            return df
        rows = np.flatnonzero(keep)
        out = df.iloc[rows].reset_index(drop=True)
        lost = lost[self.fresh_lost_events(lost, upto_ns)].reset_index(drop=True)
        lost["position"] = np.searchsorted(rows, lost["position"].to_numpy(dtype=np.int64))
        _frame.set_lost_events(out, lost)
        return out


@dataclass
class ImportSummary:
    flows_read: int
    flows_added: int
    lost_added: int
    node_status_added: int
    files: int
    bytes: int


def import_sources(root: str | os.PathLike[str], sources: Iterable[str | os.PathLike[str]],
                   options: ReadOptions | None = None) -> ImportSummary:
    """Add the flows of `sources` (files, folders, `-`, other stores) to the store at `root`
    (created when it is a new or empty folder), leaving out what it already holds."""
    options = options or ReadOptions()
    path = create_store(root)
    with StoreLock(path, "convert"):
        known = Known(Store(path))
        writer = StoreWriter(path, roll_seconds=float("inf"))
        read = 0
        for batch in iter_batches(list(sources), options):
            df = _frame.build(batch)
            read += len(df)
            writer.add(known.keep_new(df))
            if writer.due():
                writer.flush()
        statuses = [_status_row(r) for r in options.report.node_status]
        writer.add_node_status(known.fresh_node_status(statuses))
        writer.flush()
    s = writer.stats
    return ImportSummary(read, s.flows, s.lost_records, s.node_status, s.files, s.bytes)


def _status_row(response: dict[str, Any]) -> dict[str, Any]:
    """A node status GetFlowsResponse dict (as a jsonpb source reads it) as a store row."""
    event = response.get("node_status") or {}
    t = response.get("time")
    return {"time": None if t is None else int(pd.Timestamp(t).value),
            "node": response.get("node_name") or None, "state": event.get("state_change"),
            "node_names": list(event.get("node_names") or []),
            "message": event.get("message") or None}


def store_path(out: str) -> Path | None:
    """The store `convert -o OUT` names: an existing store, or a path ending in '/'."""
    if out.endswith(("/", os.sep)) or os.path.isdir(out):  # (False for a name too long)
        return Path(out)
    return None
