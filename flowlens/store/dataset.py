"""A flow store on disk, and reading it (no pandas here: this is a source).

    STORE/flowlens-store.json                         format, version, writer
    STORE/flows/date=2026-07-01/hour=08/*.parquet     flows, partitioned by UTC date and hour
    STORE/lost_events/date=…/hour=…/*.parquet         lost-event records, by their time
    STORE/node_status/date=…/hour=…/*.parquet         relay node status events, by their time

Files are written under a temporary name (`.tmp-…`, ignored here) and renamed when complete.
When an hour is over its small files are compacted into one, whose metadata names the files it
replaces (one row group each, in order): a reader skips replaced files that are still there, so
it never reads a flow twice, and never sees half a file.

Reading prunes twice before decoding anything: partitions by their hour, row groups by the
statistics of their `time` column; only the asked columns are read. `Store.partitions` gives
the unit a per-partition engine iterates: an hour, its files, its rows and time range.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flowlens.errors import InputError
from flowlens.sources.batch import FlowBatch, ReadReport
from flowlens.sources.files import STORE_FILE, is_store, is_url
from flowlens.sources.parquet import check_schema, file_batches, reading, time_bounds
from flowlens.sources.timerange import ALL_TIME, TimeRange

__all__ = [
    "COMPACTED_METADATA", "DISK", "FLOWS", "HOUR_NS", "LOST_EVENTS", "NODE_STATUS",
    "STORE_FILE", "TABLES", "Disk", "Partition", "Remote", "Store", "StoreFollower",
    "StoredFile", "is_store", "location",
]

FORMAT = "flowlens-store"
VERSION = 1
FLOWS, LOST_EVENTS, NODE_STATUS = "flows", "lost_events", "node_status"
TABLES = (FLOWS, LOST_EVENTS, NODE_STATUS)
HOUR_NS = 3_600_000_000_000
TEMP_PREFIX = ".tmp-"
# Key in a compacted file's metadata: {"files": [original file per row group], "replaces":
# [every file name it stands for, earlier compacted files included]}.
COMPACTED_METADATA = b"flowlens.compacted"
_PARTITION = re.compile(r"^date=(\d{4}-\d\d-\d\d)$"), re.compile(r"^hour=(\d\d)$")


def partition_folder(table: str, hour_ns: int) -> str:
    """`table/date=YYYY-MM-DD/hour=HH` of the hour starting at `hour_ns`."""
    start = datetime.fromtimestamp(hour_ns // 1_000_000_000, tz=timezone.utc)
    return f"{table}/date={start:%Y-%m-%d}/hour={start:%H}"


def _hour_of(date_dir: str, hour_dir: str) -> int | None:
    date, hour = _PARTITION[0].match(date_dir), _PARTITION[1].match(hour_dir)
    if date is None or hour is None:
        return None
    try:
        start = datetime.strptime(f"{date.group(1)} {hour.group(1)}", "%Y-%m-%d %H")
    except ValueError:
        return None
    return int(start.replace(tzinfo=timezone.utc).timestamp()) * 1_000_000_000


class Disk:
    """Where a store's files are: the local disk (paths are `Path`s)."""

    def names(self, folder: Path) -> list[str]:
        """The names in a folder ([] when it is not there)."""
        try:
            return [p.name for p in folder.iterdir()]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def exists(self, path: Path) -> bool:
        return path.exists()

    def read_text(self, path: Path) -> str:
        return path.read_text()

    def parquet(self, path: Path) -> pq.ParquetFile:
        return pq.ParquetFile(str(path))

    def schema(self, path: Path) -> pa.Schema:
        return pq.read_schema(str(path))


DISK = Disk()


class Remote(Disk):
    """A store on an fsspec filesystem (s3://, gs://, file://, ...): paths are the
    filesystem's own, without the protocol; every worker that is handed a partition reads it
    from there itself."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def names(self, folder: Path) -> list[str]:
        try:
            return [str(p).rstrip("/").rsplit("/", 1)[-1]
                    for p in self.fs.ls(str(folder), detail=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def is_dir(self, path: Path) -> bool:
        return bool(self.fs.isdir(str(path)))

    def exists(self, path: Path) -> bool:
        return bool(self.fs.exists(str(path)))

    def read_text(self, path: Path) -> str:
        return str(self.fs.cat_file(str(path)).decode())

    def parquet(self, path: Path) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open(str(path), "rb"))

    def schema(self, path: Path) -> pa.Schema:
        with self.fs.open(str(path), "rb") as f:
            return pq.read_schema(f)


def location(root: str | os.PathLike[str]) -> tuple[Disk, Path]:
    """Where a store named by a path or an fsspec URL is: its filesystem and root path."""
    text = os.fspath(root)
    if not is_url(text):
        return DISK, Path(text)
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{text}: reading a URL needs fsspec (pip install "
                         "'flowlens[dask]')") from None
    try:
        fs, path = fsspec.core.url_to_fs(text)
    except (ImportError, ValueError) as exc:
        raise InputError(f"{text}: {exc}") from None
    return Remote(fs), Path(path)


@dataclass
class StoredFile:
    """One visible Parquet file of a partition; for a compacted file, the original file of
    each row group (a follower skips the ones it has already read)."""

    path: Path
    originals: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Partition:
    """One hour of the store: its visible files per table. Plain data (paths and numbers), so
    it can be handed to another process or machine and read there."""

    start_ns: int
    folders: dict[str, Path]
    files: dict[str, list[StoredFile]] = field(default_factory=dict)
    disk: Disk = DISK

    @property
    def end_ns(self) -> int:
        """The last nanosecond of the hour."""
        return self.start_ns + HOUR_NS - 1

    @property
    def name(self) -> str:
        return partition_folder("", self.start_ns).lstrip("/")

    def stats(self) -> tuple[int, int | None, int | None]:
        """(flows, first time, last time) from the files' footers, nothing decoded."""
        rows, low, high = 0, None, None
        for _, file, groups in self._open(FLOWS, frozenset()):
            rows += file.metadata.num_rows
            for g in groups:
                a, b = time_bounds(file, g)
                if a is not None and b is not None:
                    low = a if low is None else min(low, a)
                    high = b if high is None else max(high, b)
        return rows, low, high

    def batches(self, columns: Sequence[str] | None = None, window: TimeRange = ALL_TIME,
                batch_size: int = 50_000, report: ReadReport | None = None,
                skip: frozenset[str] = frozenset(), lost: bool = True) -> Iterator[FlowBatch]:
        """The hour's flows (only the row groups that can hold flows of `window`, only
        `columns`), its lost events placed by time among them (position counts the flows of
        this partition before each; `lost` False: none), and its node status events into
        `report`. Original files named in `skip` are left out (a follower has read them)."""
        opened = self._open(FLOWS, skip)
        lost_events = self.records(LOST_EVENTS, window, skip) if lost else []
        if report is not None:
            report.node_status.extend(_node_status_response(r)
                                      for r in self.records(NODE_STATUS, window, skip))
        wanted = None if columns is None else list(dict.fromkeys(["time", *columns]))
        positions = _positions(opened, lost_events, window) if lost_events else []
        placed = sorted(zip(positions, range(len(lost_events)), strict=True))
        at = 0
        for path, file, groups in opened:
            for batch in _file_batches(path, file, groups, wanted, window, batch_size, report):
                end = at + batch.size
                while placed and placed[0][0] < end:
                    pos, i = placed.pop(0)
                    batch.lost_events.append({**lost_events[i], "position": pos})
                at = end
                yield batch
        if placed:  # after the last flow of the hour
            yield FlowBatch(columns={}, size=0,
                            lost_events=[{**lost_events[i], "position": pos}
                                         for pos, i in placed])

    def _open(self, table: str, skip: frozenset[str]) -> list[_Opened]:
        """Every visible file of `table` opened (an open file stays readable when compaction
        removes it), with the row groups to read."""
        out = []
        for stored in self.files.get(table, []):
            try:
                with reading(stored.path):
                    file = self.disk.parquet(stored.path)
            except FileNotFoundError:  # compacted away since listing: list the hour again
                return self._relisted()._open(table, skip)
            if table == FLOWS:
                check_schema(file.schema_arrow, stored.path)
            groups = list(range(file.num_row_groups))
            if stored.originals:
                groups = [g for g in groups if stored.originals[g] not in skip]
            elif stored.name in skip:
                groups = []
            out.append((stored.path, file, groups))
        return out

    def names(self, tables: Sequence[str] = TABLES) -> set[str]:
        """Every original file of this hour's `tables` (compacted files stand for theirs)."""
        return {name for table in tables for stored in self.files.get(table, ())
                for name in (stored.originals or (stored.name,))}

    def _relisted(self) -> Partition:
        return _partition(self.start_ns, self.folders, self.disk)

    def records(self, table: str, window: TimeRange = ALL_TIME,
                skip: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """The rows of a small table (lost events, node status) of this hour in the window,
        as dicts (times as integer nanoseconds)."""
        out: list[dict[str, Any]] = []
        for path, file, groups in self._open(table, skip):
            groups = [g for g in groups if window.overlaps(*time_bounds(file, g))]
            if not groups:
                continue
            with reading(path):
                read = file.read_row_groups(groups)
            # Times as integer nanoseconds (to_pylist would make datetimes, losing them).
            read = pa.table({name: pc.cast(column, pa.int64())
                             if pa.types.is_timestamp(column.type) else column
                             for name, column in zip(read.column_names, read.columns,
                                                     strict=True)})
            out += [row for row in read.to_pylist()
                    if row.get("time") is None or window.overlaps(row["time"], row["time"])]
        return out


# A file of a partition: its path, the file opened, the row groups to read.
_Opened = tuple[Path, pq.ParquetFile, list[int]]


def _file_batches(path: Path, file: pq.ParquetFile, groups: list[int],
                  columns: list[str] | None, window: TimeRange, batch_size: int,
                  report: ReadReport | None) -> Iterator[FlowBatch]:
    groups = [g for g in groups if window.overlaps(*time_bounds(file, g))]
    present = file.schema_arrow.names
    wanted = [c for c in (present if columns is None else columns) if c in present]
    for record in file_batches(file, path, groups, wanted, batch_size, report):
        yield FlowBatch(columns=dict(zip(record.schema.names, record.columns, strict=True)),
                        size=record.num_rows)


def _positions(opened: list[_Opened], lost: list[dict[str, Any]], window: TimeRange
               ) -> list[int]:
    """Per lost event, how many of the flows read come before it in time."""
    times = []
    for path, file, groups in opened:
        with reading(path):
            times += [file.read_row_group(g, columns=["time"]).column(0) for g in groups
                      if window.overlaps(*time_bounds(file, g))]
    counts = [0] * len(lost)
    for column in times:
        values = pc.cast(column, pa.int64())
        for i, event in enumerate(lost):
            t = event.get("time")
            if t is not None:
                counts[i] += pc.sum(pc.less(values, t)).as_py() or 0
    return counts


def _node_status_response(row: dict[str, Any]) -> dict[str, Any]:
    """A stored node status event as the GetFlowsResponse dict a jsonpb source gives."""
    t = row.get("time")
    response: dict[str, Any] = {"node_status": {
        "state_change": row.get("state"), "node_names": list(row.get("node_names") or []),
        "message": row.get("message") or ""}, "node_name": row.get("node") or ""}
    if t is not None:
        response["time"] = _rfc3339(t)
    return response


def _rfc3339(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def _visible(folder: Path, disk: Disk = DISK) -> list[StoredFile]:
    """The files of a partition folder a reader reads: complete (not temporary), not replaced
    by a compacted file."""
    names = sorted(n for n in disk.names(folder)
                   if n.endswith(".parquet") and not n.startswith("."))
    replaced: set[str] = set()
    originals: dict[str, tuple[str, ...]] = {}
    for name in names:
        if not name.startswith("hour-"):
            continue
        try:
            with reading(folder / name):
                meta = disk.schema(folder / name).metadata or {}
        except FileNotFoundError:
            continue
        try:
            info = json.loads(meta.get(COMPACTED_METADATA, b"{}"))
            if not isinstance(info, dict):
                raise ValueError(info)
        except ValueError:
            raise InputError(f"{folder / name}: unreadable list of the files it replaces "
                             "in its metadata") from None
        replaced.update(info.get("replaces", ()))
        originals[name] = tuple(info.get("files", ()))
    return [StoredFile(folder / n, originals.get(n, ())) for n in names
            if n not in replaced and disk.exists(folder / n)]


def _partition(start_ns: int, folders: dict[str, Path], disk: Disk = DISK) -> Partition:
    return Partition(start_ns, folders, {t: _visible(f, disk) for t, f in folders.items()},
                     disk)


class Store:
    """A flow store folder (a path, or an fsspec URL: s3://bucket/flows, file:///...), for
    reading. Nothing is read until asked."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.disk, self.root = location(root)
        meta_path = self.root / STORE_FILE
        try:
            self.meta = json.loads(self.disk.read_text(meta_path))
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.root}: not a flow store ({STORE_FILE} unreadable: "
                             f"{getattr(exc, 'strerror', None) or exc})") from None
        if self.meta.get("format") != FORMAT or int(self.meta.get("version", 0)) > VERSION:
            raise InputError(f"{self.root}: a store of format {self.meta.get('format')!r} "
                             f"version {self.meta.get('version')!r}; this flowlens reads "
                             f"{FORMAT} version {VERSION}")

    def hours(self, window: TimeRange = ALL_TIME) -> list[int]:
        """Start of every hour that holds data of any table in the window, in order."""
        found: set[int] = set()
        for table in TABLES:
            base = self.root / table
            for date_name in self.disk.names(base):
                for hour_name in self.disk.names(base / date_name):
                    start = _hour_of(date_name, hour_name)
                    if start is not None and window.overlaps(start, start + HOUR_NS - 1):
                        found.add(start)
        return sorted(found)

    def partitions(self, window: TimeRange = ALL_TIME) -> list[Partition]:
        """The hours in `window` (pruned by their names alone), in time order, with their
        visible files."""
        return [self.partition(start) for start in self.hours(window)]

    def partition(self, start_ns: int) -> Partition:
        folders = {t: self.root / partition_folder(t, start_ns) for t in TABLES}
        return _partition(start_ns, folders, self.disk)

    def extent(self) -> tuple[int | None, int | None]:
        """Times of the oldest and the newest flow stored, from footers (the hours at either
        end, going inwards past hours that hold no flow)."""
        hours = self.hours()
        low = next((first for start in hours
                    for _, first, _ in [self.partition(start).stats()] if first is not None), None)
        high = next((last for start in reversed(hours)
                     for _, _, last in [self.partition(start).stats()] if last is not None), None)
        return low, high

    def batches(self, columns: Sequence[str] | None = None, window: TimeRange = ALL_TIME,
                batch_size: int = 50_000, report: ReadReport | None = None
                ) -> Iterator[FlowBatch]:
        """Every flow in the window's partitions and row groups (rows outside the window are
        the caller's to drop), lost events placed among them (positions count the flows of
        the whole store read before them), node status events into `report`."""
        yield from _positioned(part.batches(columns, window, batch_size, report)
                               for part in self.partitions(window))


def _positioned(partitions: Iterable[Iterator[FlowBatch]]) -> Iterator[FlowBatch]:
    """Batches of several partitions as one source: lost-event positions count the flows of
    every partition before."""
    before = 0
    for batches in partitions:
        offset = before
        for batch in batches:
            for event in batch.lost_events:
                event["position"] += offset
            before += batch.size
            yield batch


_SETTLE_POLLS, _SETTLE_SECONDS = 20, 0.05  # a follower waits up to 1 s for an hour's flows


class StoreFollower:
    """New files of a store as `record` writes them (for `tail -f`): what was there when
    following started is marked seen (or read once by `initial`), then `new` reads each file
    that appeared since, once, compacted or not."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: set[str] = set()
        self.floor: int | None = None  # hours before this are not watched

    def _mark(self, parts: list[Partition]) -> None:
        for part in parts:
            self.seen |= part.names()
        if parts:
            self.floor = max(self.floor or 0, parts[-1].start_ns - HOUR_NS)

    def _unseen(self) -> list[Partition]:
        """The watched hours with files not read yet."""
        return [p for p in self.store.partitions(TimeRange(self.floor, None))
                if p.names() - self.seen]

    def skip_existing(self) -> None:
        self._mark(self.store.partitions())

    def initial(self, columns: Sequence[str] | None = None, window: TimeRange = ALL_TIME,
                batch_size: int = 50_000, report: ReadReport | None = None
                ) -> Iterator[FlowBatch]:
        """What the store holds now (in the window), as `Store.batches` reads it."""
        parts = self.store.partitions()
        self._mark(parts)
        yield from _positioned(p.batches(columns, window, batch_size, report)
                               for p in parts if window.overlaps(p.start_ns, p.end_ns))

    def new(self, columns: Sequence[str] | None = None, batch_size: int = 50_000,
            report: ReadReport | None = None) -> Iterator[FlowBatch]:
        """Flows of the files that appeared since the last call (the current and previous
        hour of the newest data are watched)."""
        parts = self._unseen()
        # record writes an hour's lost events and node status just before its flows: while
        # only those have appeared, give the flows a moment, so that a lost event is printed
        # among the flows it came between rather than ahead of them.
        for _ in range(_SETTLE_POLLS):
            if not any(not p.names((FLOWS,)) - self.seen for p in parts):
                break
            time.sleep(_SETTLE_SECONDS)
            parts = self._unseen()
        skip = frozenset(self.seen)
        self._mark(parts)
        yield from _positioned(p.batches(columns, ALL_TIME, batch_size, report, skip)
                               for p in parts)
