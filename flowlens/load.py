"""Sources to frames: open what the user named, detect formats, read in batches, build frames."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowlens import frame as _frame
from flowlens._lazy import lazy
from flowlens.errors import InputError, UsageError
from flowlens.filters import Filters, select, time_window
from flowlens.sources.batch import FlowBatch, ReadReport
from flowlens.sources.files import (
    DEFAULT_MAX_LINE,
    PARQUET_MAGIC,
    detect_format,
    expand,
    is_store,
    normalize_format,
    open_source,
    reading,
)
from flowlens.sources.timerange import TimeRange, check_year

Source = str | os.PathLike[str]
DEFAULT_BATCH = 50_000

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")


@dataclass
class ReadOptions:
    """How to read sources: forced format, year for year-less timestamps, strictness, the
    longest line taken, and what of Parquet sources and stores to read."""

    input_format: str | None = None
    year: int | None = None
    strict: bool = False
    batch_size: int = DEFAULT_BATCH
    keep_raw: bool = False
    report: ReadReport = field(default_factory=ReadReport)
    # Parquet sources and stores: only these columns (None: all; the rest are NA) and only the
    # partitions and row groups that can hold flows of this window.
    columns: Sequence[str] | None = None
    window: TimeRange = field(default_factory=TimeRange)
    max_line: int = DEFAULT_MAX_LINE
    # The bytes and lines at the start of a jsonpb source not to read (what `tail` printed
    # without a frame); its reading starts at the line after them.
    skip: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.input_format = normalize_format(self.input_format)
        self.year = check_year(self.year)  # also for jsonpb, which has no use for it
        self.report.strict = self.strict


def _as_list(source: Source | Iterable[Source]) -> list[Source]:
    if isinstance(source, (str, os.PathLike)):
        return [source]
    return list(source)


def iter_batches(source: Source | Iterable[Source], options: ReadOptions) -> Iterator[FlowBatch]:
    """Every batch of every source, in order. Raises InputError for a source that yields
    nothing readable."""
    for name in expand(_as_list(source)):
        if is_store(name):
            from flowlens.store.dataset import Store

            yield from _per_batch(Store(name).batches(options.columns, options.window,
                                                      options.batch_size, options.report))
            continue
        opened = open_source(name)
        try:
            with reading(opened.name):
                skipped, lines = options.skip
                if skipped:
                    _skip(opened.stream, skipped)
                fmt = "jsonpb" if skipped else options.input_format or detect_format(opened)
                before = options.report.bad_lines
                got = 0
                for batch in _per_batch(_reader(fmt, opened, options, lines + 1)):
                    got += batch.size + len(batch.lost_events)
                    yield batch
            if got == 0 and not skipped and options.report.bad_lines > before:
                hint = "" if options.input_format is None else f" as {fmt} (check --input-format)"
                raise InputError(f"{opened.name}: no line could be read{hint}")
        finally:
            if name != "-":
                opened.stream.close()


def _per_batch(batches: Iterable[FlowBatch]) -> Iterator[FlowBatch]:
    """Readers count lost-event positions across their source; frames, per batch."""
    flows_before = 0
    for batch in batches:
        for event in batch.lost_events:
            event["position"] -= flows_before
        flows_before += batch.size
        yield batch


def _skip(stream: Any, size: int) -> None:
    """Past the first `size` bytes of a stream (of a gzip file too: read through)."""
    if stream.seekable():
        stream.seek(size)
        return
    while size > 0:
        chunk = stream.read(min(size, 1 << 20))
        if not chunk:
            return
        size -= len(chunk)


def _reader(fmt: str, opened: Any, options: ReadOptions, first_line: int = 1
            ) -> Iterator[FlowBatch]:
    if fmt == "jsonpb":
        from flowlens.sources.jsonpb import read_jsonpb

        return read_jsonpb(opened, options.report, options.batch_size, options.keep_raw,
                           options.max_line, first_line)
    if fmt == "parquet":
        from flowlens.sources.parquet import read_parquet

        return read_parquet(opened, options.batch_size, columns=options.columns,
                            window=options.window, report=options.report)
    from flowlens.sources.text import read_text

    return read_text(opened, options.report, fmt, year=options.year,
                     batch_size=options.batch_size, max_line=options.max_line)


Extent = tuple["pd.Timestamp | None", "pd.Timestamp | None"]


def plan_window(source: Source | Iterable[Source], filters: Filters, options: ReadOptions,
                anchor: pd.Timestamp | None = None) -> Extent | None:
    """Prune Parquet sources and stores to the --since/--until window before anything is read
    (sets `options.window`), when every source is one. Durations count back from `anchor`, by
    default the newest flow of the input. Returns the input's (oldest, newest) flow, which
    footers tell without decoding (the pruned frame may not hold them: selection counts back
    from the newest), or None when nothing was pruned."""
    if filters.since is None and filters.until is None:
        return None
    extent = _stored_extent(expand(_as_list(source)))
    if extent is None or (anchor or extent[1]) is None:
        return None
    since, until = time_window(filters, anchor or extent[1])
    options.window = TimeRange(None if since is None else since.value,
                               None if until is None else until.value)
    return extent


def _stored_extent(names: list[str]) -> Extent | None:
    """The oldest and newest flow of these sources from Parquet footers; None unless all are
    Parquet files or stores."""
    from flowlens.sources.parquet import extent_of_file
    from flowlens.store.dataset import Store

    lows: list[int] = []
    highs: list[int] = []
    for name in names:
        if is_store(name):
            low, high = Store(name).extent()
        elif name != "-" and _is_parquet(name):
            low, high = extent_of_file(name)
        else:
            return None
        lows += [low] if low is not None else []
        highs += [high] if high is not None else []
    if not lows or not highs:
        return None, None
    return pd.Timestamp(min(lows), tz="UTC"), pd.Timestamp(max(highs), tz="UTC")


def _is_parquet(name: str) -> bool:
    try:
        with open(name, "rb") as f:
            return f.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def iter_frames(source: Source | Iterable[Source], *, input_format: str | None = None,
                year: int | None = None, strict: bool = False,
                batch_size: int = DEFAULT_BATCH, report: ReadReport | None = None,
                columns: Sequence[str] | None = None,
                **filters: Any) -> Iterator[pd.DataFrame]:
    """Frames of at most `batch_size` flows, for inputs larger than memory (`columns`: as in
    `read`).

    `filters` are hubble's filter flags as keywords (see `read`); streaming cannot know the
    newest flow in advance, so --since/--until durations count back from now and
    --first/--last are not available here."""
    chosen = Filters.from_kwargs(**filters)
    if chosen.first is not None or chosen.last is not None:
        raise UsageError("first/last need the whole input: use flowlens.read")
    options = ReadOptions(input_format=input_format, year=year, strict=strict,
                          batch_size=batch_size, report=report or ReadReport(),
                          columns=columns)
    now = pd.Timestamp.now("UTC")
    plan_window(source, chosen, options, anchor=now)
    for batch in iter_batches(source, options):
        frame = _frame.build(batch)
        yield select(chosen, frame, newest=now) if filters else frame


def read(source: Source | Iterable[Source], *, input_format: str | None = None,
         year: int | None = None, strict: bool = False,
         report: ReadReport | None = None, columns: Sequence[str] | None = None,
         **filters: Any) -> pd.DataFrame:
    """Read flows from files, folders, flow stores or `-` (stdin) into one frame.

    `filters` are hubble's filter flags as keywords: `from_pod="default/frontend"`,
    `verdict="DROPPED"` or a list of values, `not_label="k8s:app=x"` for the deny side, and the
    selection flags `since`, `until`, `first`, `last` (durations count back from the newest
    flow of the input). From Parquet and stores only the partitions and row groups of the
    since/until window are read, and only `columns` when given (the others are NA)."""
    chosen = Filters.from_kwargs(**filters)
    options = ReadOptions(input_format=input_format, year=year, strict=strict,
                          report=report or ReadReport(), columns=columns)
    extent = plan_window(source, chosen, options)
    frame = _frame.build_all(iter_batches(source, options))
    return select(chosen, frame, None if extent is None else extent[1]) if filters else frame


def load(source: Source | Iterable[Source], options: ReadOptions,
         ) -> tuple[pd.DataFrame, list[dict[str, Any]] | None]:
    """One frame of everything, and the original records beside it when every source had them
    and `options.keep_raw` asked for them (to write hubble's jsonpb back unchanged)."""
    raw: list[dict[str, Any]] | None = [] if options.keep_raw else None
    complete = True

    def batches() -> Iterator[FlowBatch]:
        nonlocal complete
        for batch in iter_batches(source, options):
            if raw is not None and batch.raw is None:
                complete = False
                raw.clear()
            elif raw is not None and complete and batch.raw is not None:
                raw.extend(batch.raw)
            yield batch

    frame = _frame.build_all(batches())
    return frame, raw if complete else None
