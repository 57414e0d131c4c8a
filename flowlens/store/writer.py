"""Writing a flow store: frames into hourly partitions, files rolled by time or flow count and
renamed when complete; one writer at a time (a lock); compaction of an hour that is over;
retention. The layout is described in `flowlens.store.dataset`."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flowlens.errors import StoreError
from flowlens.frame import build_lost_events, build_table, lost_events
from flowlens.frame.arrow import LOST_EVENTS_SCHEMA, SCHEMA, to_table
from flowlens.sources.batch import FlowBatch
from flowlens.store.dataset import (
    COMPACTED_METADATA,
    FLOWS,
    FORMAT,
    HOUR_NS,
    LOST_EVENTS,
    NODE_STATUS,
    STORE_FILE,
    TABLES,
    TEMP_PREFIX,
    VERSION,
    _hour_of,
    _visible,
    is_store,
    partition_folder,
)

__all__ = ["DEFAULT_ROLL_FLOWS", "DEFAULT_ROLL_SECONDS", "StoreLock", "StoreWriter", "compact",
           "create_store", "remove_before"]

DEFAULT_ROLL_SECONDS = 60.0
DEFAULT_ROLL_FLOWS = 100_000
LOCK_FILE = ".lock"

LOST_SCHEMA = pa.schema([f for f in LOST_EVENTS_SCHEMA if f.name != "position"])
NODE_STATUS_SCHEMA = pa.schema([
    pa.field("time", pa.timestamp("ns", tz="UTC")), pa.field("node", pa.string()),
    pa.field("state", pa.string()), pa.field("node_names", pa.list_(pa.string())),
    pa.field("message", pa.string()),
])
SCHEMAS = {FLOWS: SCHEMA, LOST_EVENTS: LOST_SCHEMA, NODE_STATUS: NODE_STATUS_SCHEMA}


def _write_options(schema: pa.Schema) -> dict[str, Any]:
    """zstd (level 1, Arrow's default: higher levels cost time and gain nothing here; lz4 or
    snappy save a sixth of the time for 70% more bytes: README); times delta-coded; uuids
    (unique) without a dictionary. Statistics of time and numbers, which prune row groups; not
    of strings: they would cost a quarter of the time and prune nothing (a file holds many of
    every value). Measured on the generated capture at a live rate: 29 bytes/flow."""
    plain = {"time", "uuid"}
    return {
        "compression": "zstd",
        "use_dictionary": [f.name for f in schema if f.name not in plain],
        "column_encoding": {"time": "DELTA_BINARY_PACKED"} if "time" in schema.names else None,
        "write_statistics": [f.name for f in schema if not _is_text(f.type)],
    }


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or (
        pa.types.is_dictionary(kind) and _is_text(kind.value_type)) or (
        pa.types.is_list(kind) and _is_text(kind.value_type))


def create_store(root: str | os.PathLike[str]) -> Path:
    """Make `root` a flow store (a new or empty folder); an existing store is kept as it is."""
    path = Path(root)
    if is_store(path):
        return path
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise StoreError(f"{path}: not a flow store, and not an empty folder: will not write "
                         "a store into it")
    try:
        path.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": VERSION, "writer": _writer_name(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "tables": list(TABLES), "partitioning": "date=YYYY-MM-DD/hour=HH (UTC)"}
        _atomic_text(path / STORE_FILE, json.dumps(meta, indent=1) + "\n")
    except OSError as exc:
        raise StoreError(f"cannot create the store {path}: {exc.strerror or exc}") from None
    return path


def _writer_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"flowlens {version('flowlens')}"
    except PackageNotFoundError:
        return "flowlens"


def _atomic_text(path: Path, text: str) -> None:
    temp = path.with_name(TEMP_PREFIX + path.name)
    temp.write_text(text)
    os.replace(temp, path)


class StoreLock:
    """The one-writer lock of a store (an advisory lock on STORE/.lock, released by the kernel
    when the process ends, also by kill -9)."""

    def __init__(self, root: Path, what: str) -> None:
        self.root = root
        self.what = what
        self._file: IO[str] | None = None

    def __enter__(self) -> StoreLock:
        path = self.root / LOCK_FILE
        try:
            handle = open(path, "a+")
        except OSError as exc:
            raise StoreError(f"cannot lock the store {self.root}: {exc.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StoreError(f"{self.root} is being written by {holder}: one writer per "
                                 "store") from None
            raise StoreError(f"cannot lock the store {self.root}: {exc.strerror}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"flowlens {self.what} (pid {os.getpid()})\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


NO_TIME = -(1 << 63)  # NaT as nanoseconds


def hour_starts(times_ns: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The start of each time's UTC hour (unknown times, NaT, go to the epoch's hour)."""
    hours = (times_ns // HOUR_NS) * HOUR_NS
    hours[times_ns == NO_TIME] = 0
    return hours


def time_nanos(times: pd.Series) -> np.ndarray[Any, Any]:
    """A time column as integer nanoseconds (NaT: NO_TIME)."""
    return np.asarray(pd.DatetimeIndex(times).asi8)


@dataclass
class WriterStats:
    flows: int = 0
    lost_records: int = 0
    node_status: int = 0
    files: int = 0
    bytes: int = 0


@dataclass
class _Pending:
    """What is buffered for one table: Arrow tables per partition hour."""

    parts: dict[int, list[pa.Table]] = field(default_factory=dict)
    rows: int = 0

    def add(self, hour: int, table: pa.Table) -> None:
        self.parts.setdefault(hour, []).append(table)
        self.rows += table.num_rows


class StoreWriter:
    """Buffers flows, lost events and node status events per hour, and writes one file per
    table and hour when `flush` is called (`due` says when a roll is due: `roll_seconds`
    since the first buffered flow, or `roll_flows` flows)."""

    def __init__(self, root: str | os.PathLike[str], *,
                 roll_seconds: float = DEFAULT_ROLL_SECONDS,
                 roll_flows: int = DEFAULT_ROLL_FLOWS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = Path(root)
        self.roll_seconds = roll_seconds
        self.roll_flows = roll_flows
        self.clock = clock
        self.stats = WriterStats()
        self.accepted_flows = 0  # written, being written behind, or buffered
        self._pending = {t: _Pending() for t in TABLES}
        self._since: float | None = None
        self._token = secrets.token_hex(3)
        self._seq = 0
        self._behind: threading.Thread | None = None
        self._error: StoreError | None = None
        # A write that failed: nothing is written after it (a resume starts from the newest
        # flow stored, and would step over what failed).
        self._failed: StoreError | None = None

    # ---- buffering ----

    def add(self, df: pd.DataFrame) -> None:
        """A flows frame; its lost events (attrs) go to their own table."""
        self._add(to_table(df), lost_events(df))

    def add_batch(self, batch: FlowBatch) -> None:
        """A batch as a source reads it (no frame is made: the fast path of `record`)."""
        self._add(build_table(batch),
                  build_lost_events(batch.lost_events) if batch.lost_events else None)

    def _add(self, flows: pa.Table, lost: pd.DataFrame | None) -> None:
        self.accepted_flows += flows.num_rows
        if flows.num_rows:
            self._split(FLOWS, flows, pc.fill_null(pc.cast(flows.column("time"), pa.int64()),
                                                   NO_TIME).to_numpy())
        if lost is not None and len(lost):
            self._split(LOST_EVENTS, to_table(lost.drop(columns="position"), LOST_SCHEMA),
                        time_nanos(lost["time"]))
        if self._since is None and (flows.num_rows or (lost is not None and len(lost))):
            self._since = self.clock()

    def add_node_status(self, rows: Iterable[dict[str, Any]]) -> None:
        """Node status events as dicts (time ns, node, state, node_names, message)."""
        rows = list(rows)
        if rows:
            table = pa.Table.from_pylist(rows, schema=NODE_STATUS_SCHEMA)
            times = np.array([r["time"] if r.get("time") is not None else NO_TIME
                              for r in rows], dtype=np.int64)
            self._split(NODE_STATUS, table, times)
            if self._since is None:
                self._since = self.clock()

    def _split(self, name: str, table: pa.Table, times: np.ndarray[Any, Any]) -> None:
        hours = hour_starts(times)
        pending = self._pending[name]
        first, last = hours.min(), hours.max()
        if first == last:
            pending.add(int(first), table)
            return
        for hour in np.unique(hours):
            pending.add(int(hour), table.filter(pa.array(hours == hour)))

    @property
    def pending_flows(self) -> int:
        """Flows buffered (not those a write behind holds: see `accepted_flows`)."""
        return self._pending[FLOWS].rows

    def due(self) -> bool:
        if self.pending_flows >= self.roll_flows:
            return True
        return self._since is not None and self.clock() - self._since >= self.roll_seconds

    # ---- writing ----

    def flush(self) -> list[Path]:
        """Write everything buffered, now (after a write started by `flush_behind`); after
        a write that failed, nothing (its error again)."""
        self.wait()
        if self._failed is not None:
            raise self._failed
        return self._write_all(self._take())

    def flush_behind(self) -> None:
        """Start writing everything buffered on a thread of its own and return: Arrow and
        Parquet work without Python's lock, so receiving goes on meanwhile. One write at a
        time: this waits for the previous one (and raises its error)."""
        self.wait()
        if self._failed is not None:
            raise self._failed
        work = self._take()
        self._behind = threading.Thread(target=self._write_behind, args=(work,),
                                        name="flowlens-store-writer", daemon=True)
        self._behind.start()

    def wait(self) -> None:
        """Wait for a write `flush_behind` started; raise what made it fail."""
        if self._behind is not None:
            self._behind.join()
            self._behind = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def check(self) -> None:
        """Raise the error of a write behind that has ended with one, without waiting for a
        write still going (a recorder on a quiet relay learns of a full disk at once, not at
        its next roll)."""
        if self._behind is not None and not self._behind.is_alive():
            self.wait()

    def _take(self) -> dict[str, dict[int, list[pa.Table]]]:
        work = {name: pending.parts for name, pending in self._pending.items()}
        self._pending = {t: _Pending() for t in TABLES}
        self._since = None
        return work

    def _write_behind(self, work: dict[str, dict[int, list[pa.Table]]]) -> None:
        try:
            self._write_all(work)
        except StoreError as exc:
            self._error = exc

    def _write_all(self, work: dict[str, dict[int, list[pa.Table]]]) -> list[Path]:
        """Node status and lost events first, then flows, oldest hour first (a resume starts
        from the newest flow written, so nothing older may be left unwritten behind it)."""
        written: list[Path] = []
        try:
            self._write_tables(work, written)
        except StoreError as exc:
            self._failed = exc
            raise
        return written

    def _write_tables(self, work: dict[str, dict[int, list[pa.Table]]], written: list[Path]
                      ) -> None:
        for name in (NODE_STATUS, LOST_EVENTS, FLOWS):
            for hour, parts in sorted(work[name].items()):
                table = _sorted(_used_only(pa.concat_tables(parts)))
                for start in range(0, table.num_rows, self.roll_flows):  # at most a roll each
                    written.append(self._write(name, hour, table.slice(start, self.roll_flows)))
                if name == FLOWS:
                    self.stats.flows += table.num_rows
                elif name == LOST_EVENTS:
                    self.stats.lost_records += table.num_rows
                else:
                    self.stats.node_status += table.num_rows

    def _write(self, name: str, hour: int, table: pa.Table) -> Path:
        folder = self.root / partition_folder(name, hour)
        self._seq += 1
        first = pc.min(table.column("time")).value if table.num_rows else None
        stamp = _stamp(first if first is not None else hour)
        path = folder / f"{stamp}-{self._token}-{self._seq:06d}.parquet"
        size = write_file(path, [table], SCHEMAS[name])
        self.stats.files += 1
        self.stats.bytes += size
        return path


def _stamp(ns: int) -> str:
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, tz=timezone.utc):%Y%m%dT%H%M%S}.{nanos:09d}Z"


def _used_only(table: pa.Table) -> pa.Table:
    """One chunk per column, dictionaries holding only the values used: a frame's categories
    (or an hour's share of a batch) carry others, which would be written with every file."""
    table = table.unify_dictionaries().combine_chunks()
    columns = []
    for column in table.columns:
        arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        if pa.types.is_dictionary(arr.type) and \
                pc.count_distinct(arr.indices).as_py() < len(arr.dictionary):
            arr = pc.dictionary_encode(arr.dictionary_decode()).cast(arr.type)
        columns.append(arr)
    return pa.Table.from_arrays(columns, schema=table.schema)


def _sorted(table: pa.Table) -> pa.Table:
    """Rows in time order (stable), unless they already are (the usual case)."""
    times = table.column("time")
    if table.num_rows < 2 or times.null_count:
        return table
    values = pc.cast(times, pa.int64()).combine_chunks()
    if pc.all(pc.greater_equal(values[1:], values[:-1])).as_py():
        return table
    return table.take(pc.sort_indices(values, sort_keys=[("", "ascending")]))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns (a column an older file lacks becomes null)."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.table(columns, schema=schema)


def write_file(path: Path, tables: Iterable[pa.Table], schema: pa.Schema,
               metadata: dict[bytes, bytes] | None = None) -> int:
    """Write one row group per table into `path`, under a temporary name renamed when
    complete. Returns the file's size; a full disk or a refused write is a StoreError."""
    temp = path.with_name(TEMP_PREFIX + path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(str(temp), schema.with_metadata(metadata or {}),
                              **_write_options(schema)) as out:
            for table in tables:
                out.write_table(_conform(table, schema), row_group_size=max(table.num_rows, 1))
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
        return path.stat().st_size
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---- housekeeping: temporary files, compaction, retention --------------------------------------


def _partition_dirs(root: Path, table: str) -> Iterator[tuple[int, Path]]:
    base = root / table
    if not base.is_dir():
        return
    for date_dir in sorted(base.iterdir()):
        if not date_dir.is_dir():
            continue
        for hour_dir in sorted(date_dir.iterdir()):
            start = _hour_of(date_dir.name, hour_dir.name)
            if start is not None and hour_dir.is_dir():
                yield start, hour_dir


def tidy(root: Path) -> int:
    """After a writer died: remove temporary files, and files a finished compaction replaced.
    Only call with the lock held. Returns how many files were removed."""
    removed = 0
    for table in TABLES:
        for _, folder in _partition_dirs(root, table):
            visible = {f.name for f in _visible(folder)}
            for path in folder.iterdir():
                if path.name.startswith(TEMP_PREFIX) or (
                        path.suffix == ".parquet" and path.name not in visible):
                    path.unlink(missing_ok=True)
                    removed += 1
    return removed


def compact(root: Path, hour: int, stop: Callable[[], bool] = lambda: False) -> int:
    """Merge the files of every table's partition `hour` into one per table (one row group
    per original file, so a follower can skip what it has read). Returns the files replaced.
    Readers never see a flow twice: the merged file names the files it replaces, which are
    deleted once it is in place. `stop` abandons the work between row groups."""
    replaced = 0
    for table in TABLES:
        folder = root / partition_folder(table, hour)
        files = _visible(folder)
        if len(files) < 2:
            continue
        originals: list[str] = []
        names: list[str] = []
        parts: list[tuple[pq.ParquetFile, int]] = []
        for stored in files:
            file = pq.ParquetFile(str(stored.path))
            info = json.loads((file.schema_arrow.metadata or {}).get(COMPACTED_METADATA, b"{}"))
            names += [stored.name, *info.get("replaces", ())]
            for g in range(file.num_row_groups):
                originals.append(stored.originals[g] if stored.originals else stored.name)
                parts.append((file, g))

        def groups(parts: list[tuple[pq.ParquetFile, int]]) -> Iterator[pa.Table]:
            for file, g in parts:
                if stop():
                    raise InterruptedError
                yield file.read_row_group(g)

        meta = {COMPACTED_METADATA: json.dumps({"files": originals, "replaces": names}).encode()}
        target = folder / f"hour-{_stamp(hour)[9:11]}-{secrets.token_hex(3)}.parquet"
        try:
            write_file(target, groups(parts), SCHEMAS[table], meta)
        except InterruptedError:
            target.with_name(TEMP_PREFIX + target.name).unlink(missing_ok=True)
            return replaced
        for stored in files:
            stored.path.unlink(missing_ok=True)
        replaced += len(files)
    return replaced


def hours_to_compact(root: Path, before_ns: int) -> list[int]:
    """Hours ending before `before_ns` whose partition has more than one file."""
    out: set[int] = set()
    for table in TABLES:
        for start, folder in _partition_dirs(root, table):
            if start + HOUR_NS <= before_ns and len(_visible(folder)) > 1:
                out.add(start)
    return sorted(out)


def remove_before(root: Path, cutoff_ns: int) -> int:
    """Delete every partition whose hour ended before `cutoff_ns` (--retain). Returns how
    many hours of partitions were removed."""
    removed: set[int] = set()
    for table in TABLES:
        for start, folder in list(_partition_dirs(root, table)):
            if start + HOUR_NS <= cutoff_ns:
                shutil.rmtree(folder, ignore_errors=True)
                removed.add(start)
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()  # the date folder, once empty
    return len(removed)
