"""`flowlens record`: follow a relay and keep every flow, lost event and node status event it
sends in a store, exactly once, across restarts of the relay and of the recorder itself.

    relay ──FlowStream (reopens, resumes)──► frames ──Known (drop what STORE holds)──►
        StoreWriter (hourly partitions, files rolled, renamed when complete) ──► STORE
                               └─ housekeeping: compaction of hours that are over, --retain

A recorder that was stopped or killed resumes from the newest flow in the store: it asks the
relay for everything since a little before it (RESUME_MARGIN: the relay merges nodes' streams
by time only within a short window) and drops what the store already holds, by uuid. What the
relay overwrote in its ring buffer while nothing recorded is lost; Hubble reports such losses
as lost events, which are recorded like everything else.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from flowlens import frame as _frame
from flowlens.filters import Filters
from flowlens.live import relay_stream
from flowlens.sources.proto import NodeStatus
from flowlens.sources.relay import Connection, FlowStream
from flowlens.sources.timerange import TimeRange
from flowlens.store.dataset import Store
from flowlens.store.ingest import Known
from flowlens.store.writer import (
    DEFAULT_ROLL_FLOWS,
    DEFAULT_ROLL_SECONDS,
    StoreLock,
    StoreWriter,
    WriterStats,
    compact,
    create_store,
    hours_to_compact,
    remove_before,
    tidy,
)

__all__ = ["RESUME_MARGIN_NS", "RecordSummary", "Recorder", "record"]

RESUME_MARGIN_NS = 10_000_000_000
# An hour is compacted once the newest flow received is this far past its end (late flows of
# other nodes still arrive for a moment).
COMPACT_AFTER_NS = 120_000_000_000
RETAIN_EVERY_SECONDS = 3600.0


@dataclass
class RecordSummary:
    """What a recording did (the CLI's closing line)."""

    store: Path
    server: str
    written: WriterStats
    repeats_dropped: int
    lost_events: int
    reconnects: int
    resumed_from_ns: int | None
    compacted_files: int
    removed_hours: int
    seconds: float


class Recorder:
    """Records from a relay into a store until `stop()` (any thread, or a signal handler) or
    a terminating relay error. `run()` holds the store's writer lock while it works."""

    def __init__(self, root: str | os.PathLike[str], connection: Connection,
                 filters: Filters | None = None, *,
                 roll_seconds: float = DEFAULT_ROLL_SECONDS,
                 roll_flows: int = DEFAULT_ROLL_FLOWS,
                 retain: pd.Timedelta | None = None,
                 on_event: Callable[[str], None] | None = None,
                 on_progress: Callable[[Recorder], None] | None = None) -> None:
        self.root = Path(root)
        self.connection = connection
        self.filters = filters or Filters()
        self.roll_seconds = roll_seconds
        self.roll_flows = roll_flows
        self.retain = retain
        self.on_event = on_event or (lambda message: None)
        self.on_progress = on_progress or (lambda recorder: None)
        self.writer = StoreWriter(self.root, roll_seconds=roll_seconds, roll_flows=roll_flows)
        self.stream: FlowStream | None = None
        self.repeats = 0
        self.resumed_from_ns: int | None = None
        self.newest_received_ns: int | None = None
        self.compacted = 0
        self.removed_hours = 0
        self._stopped = threading.Event()
        self._housekeeping: threading.Thread | None = None
        self._next_retain = 0.0

    def stop(self) -> None:
        """End the recording: what is buffered is written, then `run` returns."""
        self._stopped.set()
        if self.stream is not None:
            self.stream.cancel()

    def run(self) -> RecordSummary:
        started = time.monotonic()
        create_store(self.root)
        with StoreLock(self.root, "record"):
            tidy(self.root)
            store = Store(self.root)
            _, newest = store.extent()
            self.resumed_from_ns = newest
            known = None if newest is None else \
                Known(store, TimeRange(newest - RESUME_MARGIN_NS, None))
            self._retain()
            self.stream = relay_stream(self.connection, self._request(newest),
                                       on_event=self.on_event)
            try:
                if not self._stopped.is_set():
                    self._receive(self.stream, known, newest)
            except KeyboardInterrupt:  # Ctrl-C in a notebook or a plain script: a stop
                self.stop()
            finally:
                self.stream.cancel()
                self.writer.flush()
                self._finish_housekeeping()
        stats = self.stream.stats
        return RecordSummary(self.root, self.connection.server, self.writer.stats,
                             self.repeats + stats.duplicates, stats.lost_events,
                             stats.reconnects, self.resumed_from_ns, self.compacted,
                             self.removed_hours, time.monotonic() - started)

    def _request(self, newest: int | None) -> Filters:
        """Everything the relay holds (or since a little before the newest flow stored),
        then follow."""
        since = self.filters.since
        if newest is not None:
            since = pd.Timestamp(newest - RESUME_MARGIN_NS, tz="UTC").isoformat()
        return dataclasses.replace(self.filters, follow=True, all=since is None, since=since,
                                   until=None, first=None, last=None)

    def _receive(self, stream: FlowStream, known: Known | None, newest: int | None) -> None:
        stream.connect()
        for decoded in stream:
            batch = decoded.batch
            if batch.size or batch.lost_events:
                if known is not None and newest is not None:
                    # Resuming: what the store holds is dropped (a frame is needed for that).
                    df = _frame.build(batch)
                    fresh = known.keep_new(df, upto_ns=newest)
                    self.repeats += len(df) - len(fresh)
                    self.writer.add(fresh)
                    if decoded.newest_ns is not None and decoded.newest_ns > newest \
                            + RESUME_MARGIN_NS:
                        known = None  # past anything the store held: no more repeats
                else:
                    self.writer.add_batch(batch)
                if decoded.newest_ns is not None:
                    self.newest_received_ns = max(decoded.newest_ns,
                                                  self.newest_received_ns or 0)
            self.writer.add_node_status(_status_rows(decoded.node_status))
            self.writer.check()
            if self.writer.due():
                self.writer.flush_behind()
                self._housekeep()
            self.on_progress(self)
            if self._stopped.is_set():
                break

    # ---- housekeeping, beside the recording ----

    def _housekeep(self) -> None:
        """After a roll: compact the hours that are over, and apply --retain hourly; in a
        thread of its own (one at a time), so that recording goes on."""
        if self._housekeeping is not None and self._housekeeping.is_alive():
            return
        newest = self.newest_received_ns

        def work() -> None:
            over = [] if newest is None else hours_to_compact(self.root,
                                                              newest - COMPACT_AFTER_NS)
            for hour in over:
                if self._stopped.is_set():
                    return
                self.compacted += compact(self.root, hour, stop=self._stopped.is_set)
            self._retain()

        self._housekeeping = threading.Thread(target=work, name="flowlens-store-housekeeping",
                                              daemon=True)
        self._housekeeping.start()

    def _retain(self) -> None:
        if self.retain is None or time.monotonic() < self._next_retain:
            return
        cutoff = pd.Timestamp.now(tz="UTC") - self.retain
        self.removed_hours += remove_before(self.root, cutoff.value)
        self._next_retain = time.monotonic() + RETAIN_EVERY_SECONDS

    def _finish_housekeeping(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.join()

    # ---- for a status line ----

    @property
    def lag_ns(self) -> int | None:
        """How far the newest flow received is behind the clock."""
        if self.newest_received_ns is None:
            return None
        return time.time_ns() - self.newest_received_ns


def _status_rows(events: list[NodeStatus]) -> list[dict[str, object]]:
    return [{"time": e.time_ns, "node": e.node or None, "state": e.state,
             "node_names": list(e.node_names), "message": e.message or None} for e in events]


def record(root: str | os.PathLike[str], server: str | None = None, *,
           roll_seconds: float = DEFAULT_ROLL_SECONDS, roll_flows: int = DEFAULT_ROLL_FLOWS,
           retain: pd.Timedelta | str | None = None, **filters: object) -> RecordSummary:
    """Record from a relay into the store at `root` until interrupted (Ctrl-C): filters and
    connection keywords as `flowlens.read_relay` takes them."""
    from flowlens.live import _split

    connection, chosen = _split(server, dict(filters))
    return Recorder(root, connection, chosen, roll_seconds=roll_seconds, roll_flows=roll_flows,
                    retain=None if retain is None else pd.Timedelta(retain)).run()

