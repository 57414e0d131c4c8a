"""Reports over a flow store, one hourly partition at a time: on this machine (`local`, the
default), or on a Dask cluster (`dask`), where every worker reads its own partitions (the
store may be a path all workers see, or an fsspec URL: s3://, gs://, file://).

    >>> from flowlens import engine
    >>> report = engine.report("flows-store/", since="1h")                  # local
    >>> report = engine.report("s3://bucket/flows", engine="dask",
    ...                        scheduler="tcp://scheduler:8786", from_namespace="shop")

The report equals `analyses.build_report` over every flow of the store, exactly (JSON and
all), while memory follows the largest partition: each partition is read with the flows
PAIRING_REACH before and after it (requests meet their answers across the hour's edges),
computed into a partial report (`flowlens.analyses.parts`) and merged in time order.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flowlens import filters as _filters
from flowlens import frame as _frame
from flowlens.analyses.buckets import Buckets, window_buckets
from flowlens.analyses.parts import (
    PAIRING_REACH,
    ReportPart,
    merge_parts,
    report_of,
    report_part,
)
from flowlens.analyses.report import (
    DEFAULT_TOP,
    PANELS,
    InputSummary,
    Report,
    in_window,
    report_window,
)
from flowlens.errors import ClusterError, UsageError
from flowlens.policy import PolicySet
from flowlens.sources.batch import FlowBatch
from flowlens.sources.timerange import ALL_TIME, TimeRange
from flowlens.store.dataset import HOUR_NS, LOST_EVENTS, Partition, Store

ENGINES = ("local", "dask")
# Columns no panel and no policy evaluation reads: left on disk (uuids alone are most of a
# store's bytes), unless a filter needs them.
NOT_REPORTED = ("uuid", "summary")


def report_columns(filters: _filters.Filters) -> list[str]:
    """The columns a report (or a policy check, or suggest) reads of Parquet and stores."""
    from flowlens.frame.schema import NAMES

    used = {key for flt in (*filters.whitelist, *filters.blacklist) for key in flt}
    return [c for c in NAMES if c not in NOT_REPORTED or c in used]


@dataclass(frozen=True)
class Task:
    """One partition's share of a report: plain data, handed to a worker as it is."""

    part: int  # its place in time order
    partition: Partition
    neighbours: tuple[Partition | None, Partition | None]  # the hours before and after
    reach: TimeRange  # the flows the report reads: its window and PAIRING_REACH around it
    columns: tuple[str, ...]
    filters: _filters.Filters  # without --first/--last
    anchored_at: pd.Timestamp | None
    window: TimeRange  # --since/--until: lost events, and flows that tell an end passed
    buckets: Buckets
    panels: tuple[str, ...]
    policies: bool


def run(task: Task) -> ReportPart:
    """The partial report of one partition (what a worker computes)."""
    part = task.partition
    own = _clip(task.reach, part.start_ns, part.end_ns)
    reach = PAIRING_REACH.value
    batches: list[FlowBatch] = []
    counted: list[np.ndarray] = []
    before, after = task.neighbours
    bounded = task.reach != ALL_TIME
    for hour, window in ((before, _clip(task.reach, part.start_ns - reach, part.start_ns - 1)),
                         (part, own),
                         (after, _clip(task.reach, part.end_ns + 1, part.end_ns + reach))):
        if hour is None or window is None:
            continue
        # lost events come by time, from their own table
        for batch in hour.batches(list(task.columns), window, lost=False):
            if hour is not part or bounded:  # a row group holds more
                batch = _within(batch, window, untimed=hour is part)
            batches.append(batch)
            counted.append(np.full(batch.size, hour is part, dtype=bool))
    df = _frame.build_all(batches)
    mine = np.concatenate(counted) if counted else np.zeros(0, dtype=bool)
    rows = _filters.selection(task.filters, df, task.anchored_at, with_lost=False).rows
    selected = np.zeros(len(df), dtype=bool)
    selected[rows] = True
    lost = part.records(LOST_EVENTS, task.window)
    since, until = (None if ns is None else pd.Timestamp(ns, tz="UTC")
                    for ns in (task.window.since_ns, task.window.until_ns))
    seen = in_window(df, since, until)
    spec = [p for p in PANELS if p.key in task.panels]
    return report_part(df, selected, mine, task.buckets, seen=seen, lost=lost, panels=spec,
                       policies=task.policies, part=task.part)


def _clip(window: TimeRange, low: int, high: int) -> TimeRange | None:
    """`window` within low..high (None: they do not meet)."""
    since = low if window.since_ns is None else max(low, window.since_ns)
    until = high if window.until_ns is None else min(high, window.until_ns)
    return TimeRange(since, until) if since <= until else None


def _within(batch: FlowBatch, window: TimeRange, untimed: bool) -> FlowBatch:
    """The batch's flows inside the window, and with `untimed` those without a time (the
    epoch's hour holds them; --until selects them)."""
    times = pc.cast(batch.columns["time"], pa.int64())
    keep = pc.and_(pc.greater_equal(times, window.since_ns), pc.less_equal(times, window.until_ns))
    keep = pc.fill_null(keep, untimed)
    columns = {name: pc.filter(column, keep) for name, column in batch.columns.items()}
    return FlowBatch(columns=columns, size=len(columns["time"]))


@dataclass(frozen=True)
class Plan:
    """What a report over a store reads and how it is laid out, before anything is read."""

    tasks: list[Task]
    given: InputSummary
    buckets: Buckets
    window: Any  # analyses.report.Window, first and last flow still to fill in
    untimed_lost: list[dict[str, Any]]


def plan(store: Store, filters: _filters.Filters, *, sources: Sequence[str],
         bucket: pd.Timedelta | None = None, panels: Iterable[str] = (),
         policies: bool = False) -> Plan:
    """The report's tasks, one per partition that holds flows of the window or of its reach,
    and how far the store reaches (from the footers of its oldest and newest hours: nothing
    is decoded, no other hour is opened)."""
    if filters.first is not None or filters.last is not None:
        raise UsageError("--first/--last select flows in file order: a report over a flow "
                         "store takes a time window (--since/--until) instead")
    hours = store.hours()
    first, last = (None if t is None else pd.Timestamp(t, tz="UTC") for t in store.extent())
    # flows: what the parts read, known once they are merged
    given = InputSummary(tuple(sources), 0, first, last, tuple(filters.argv()))
    window = report_window(filters, given, anchor="data", anchored_at=last)
    buckets = window_buckets(window.since, window.until, bucket)
    since, until = _filters.time_window(filters, last)
    selection = TimeRange(None if since is None else since.value,
                          None if until is None else until.value)
    margin = PAIRING_REACH.value
    reach = TimeRange(None if since is None else since.value - margin,
                      None if until is None else until.value + margin)
    read = [h for h in hours if reach.overlaps(h, h + HOUR_NS - 1)]

    def neighbour(start: int, low: int, high: int) -> Partition | None:
        """The hour at `start` when it holds flows the report reads (low..high)."""
        wanted = start in hours and _clip(reach, low, high) is not None
        return store.partition(start) if wanted else None

    chosen = dataclasses.replace(filters, first=None, last=None)
    columns = tuple(report_columns(filters))
    tasks = [Task(i, store.partition(h),
                  (neighbour(h - HOUR_NS, h - margin, h - 1),
                   neighbour(h + HOUR_NS, h + HOUR_NS, h + HOUR_NS + margin - 1)),
                  reach, columns, chosen, last, selection, buckets, tuple(panels), policies)
             for i, h in enumerate(read)]
    # Lost events without a time are inside every window; they live in the epoch's hour.
    untimed = ([r for r in store.partition(0).records(LOST_EVENTS) if r.get("time") is None]
               if 0 in hours and 0 not in read else [])
    return Plan(tasks, given, buckets, window, untimed)


Runner = Callable[[list[Task]], Iterator[ReportPart]]


def local(tasks: list[Task]) -> Iterator[ReportPart]:
    """One partition after the other, in this process."""
    for task in tasks:
        yield run(task)


def on_dask(scheduler: str) -> Runner:
    """The tasks on the Dask cluster whose scheduler is at `scheduler` (tcp://host:8786):
    every worker reads its partitions itself; results come back in time order. A scheduler
    that cannot be reached, or a cluster without a worker for Dask's connect timeout
    (`distributed.comm.timeouts.connect`, 30 s unless configured), is a `ClusterError`."""
    def runner(tasks: list[Task]) -> Iterator[ReportPart]:
        try:
            import dask
            from distributed import Client
        except ImportError:
            raise UsageError("--engine dask needs Dask: pip install 'flowlens[dask]'") from None
        patience = float(dask.utils.parse_timedelta(
            dask.config.get("distributed.comm.timeouts.connect"), default="seconds"))
        _reach(scheduler, patience)
        try:
            client = Client(scheduler, set_as_default=False, timeout=patience)
        except (OSError, ValueError) as exc:
            raise ClusterError(f"--scheduler {scheduler}: {_first_line(exc)}") from None
        with client:
            futures = client.map(run, tasks, pure=False)
            for future in futures:
                yield _result(client, future, scheduler, patience)
                future.release()
    return runner


def _reach(scheduler: str, patience: float) -> None:
    """Fail early, in one line, on an address that is not one or a scheduler that does not
    answer (a failed `Client` would linger and complain while it is collected)."""
    import asyncio

    from distributed.comm import connect

    async def knock() -> None:
        comm = await connect(scheduler, timeout=patience)
        await comm.close()

    try:
        asyncio.run(knock())
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--scheduler {scheduler}: {_first_line(exc)}") from None
    except OSError as exc:
        raise ClusterError(f"--scheduler {scheduler}: {_first_line(exc)}") from None


def _result(client: Any, future: Any, scheduler: str, patience: float) -> ReportPart:
    """The future's partial report; a task's own error as it is (an unreadable file is an
    InputError); a cluster without workers for `patience` seconds, workers dying on the task
    or a lost scheduler as a `ClusterError`."""
    from distributed import KilledWorker

    alone_since: float | None = None
    while True:
        try:
            part: ReportPart = future.result(timeout=1)
            return part
        except TimeoutError:
            pass
        except KilledWorker as exc:
            raise ClusterError(f"--scheduler {scheduler}: workers died computing a partition "
                               f"({_first_line(exc)})") from None
        except Exception as exc:
            if future.status == "error":
                raise  # the task's own
            raise ClusterError(f"--scheduler {scheduler}: lost the cluster "
                               f"({type(exc).__name__}: {_first_line(exc)})") from None
        try:
            workers = client.nthreads()
        except OSError as exc:
            raise ClusterError(f"--scheduler {scheduler}: lost the scheduler "
                               f"({_first_line(exc)})") from None
        now = time.monotonic()
        if workers:
            alone_since = None
        elif alone_since is None:
            alone_since = now
        elif now - alone_since > patience:
            raise ClusterError(f"--scheduler {scheduler}: the Dask cluster has no workers "
                               f"(none for {patience:g} s: none started, or all lost)")


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]


def report_store(store: str, filters: _filters.Filters | None = None, *,
                 sources: Sequence[str] = (), runner: Runner = local, top: int = DEFAULT_TOP,
                 bucket: pd.Timedelta | None = None, panels: Sequence[Any] = PANELS,
                 policies: PolicySet | None = None,
                 named_ports: Mapping[str, int] | None = None,
                 title: str = "flowlens report") -> Report:
    """The report over a flow store (`build_report`'s arguments), partition by partition on
    `runner` (`local`, or `on_dask(scheduler)`)."""
    filters = filters or _filters.Filters()
    laid = plan(Store(store), filters, sources=sources or (store,), bucket=bucket,
                panels=[p.key for p in panels], policies=policies is not None)
    merged = _merged(runner(laid.tasks), laid, panels, policies is not None)
    merged.lost.extend(laid.untimed_lost)
    return report_of(merged, laid.given, laid.window, laid.buckets, top=top, panels=panels,
                     policies=policies, named_ports=named_ports, title=title)


def _merged(parts: Iterator[ReportPart], laid: Plan, panels: Sequence[Any],
            policies: bool) -> ReportPart:
    """The parts folded in time order as they come (one partial and one part in memory); no
    part: the partial report of no flows."""
    merged: ReportPart | None = None
    for part in parts:
        merged = part if merged is None else merge_parts([merged, part])
    if merged is None:
        empty = _frame.empty()
        merged = report_part(empty, np.zeros(0, dtype=bool), np.zeros(0, dtype=bool),
                             laid.buckets, panels=panels, policies=policies)
    return merged


def report(store: str, *, engine: str = "local", scheduler: str | None = None,
           top: int = DEFAULT_TOP, bucket: str | None = None,
           policies: PolicySet | None = None, **filters: Any) -> Report:
    """The report over a flow store (a path or an fsspec URL), with hubble's filter flags as
    keywords (`since="1h"`, `from_pod="default/frontend"`, as `flowlens.read` takes them);
    `engine="dask"` runs it on the cluster of `scheduler`."""
    from flowlens.analyses.buckets import parse_bucket

    return report_store(store, _filters.Filters.from_kwargs(**filters),
                        runner=runner_for(engine, scheduler), top=top,
                        bucket=None if bucket is None else parse_bucket(bucket),
                        policies=policies)


def runner_for(engine: str, scheduler: str | None) -> Runner:
    """The runner of `--engine` (and `--scheduler`)."""
    if engine not in ENGINES:
        raise UsageError(f"invalid value {engine!r} for --engine: want one of "
                         f"{', '.join(ENGINES)}")
    if engine == "dask":
        if not scheduler:
            raise UsageError("--engine dask needs --scheduler ADDRESS (a Dask scheduler, "
                             "tcp://host:8786)")
        return on_dask(scheduler)
    if scheduler:
        raise UsageError("--scheduler goes with --engine dask")
    return local


__all__ = ["ENGINES", "Plan", "Task", "local", "on_dask", "plan", "report", "report_columns",
           "report_store", "run", "runner_for"]
