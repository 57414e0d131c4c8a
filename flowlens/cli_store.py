"""The store side of the `flowlens` command: `record`, the default store of `--store` /
FLOWLENS_STORE, `convert -o STORE/`, and `tail -f` on a store. `flowlens.cli` declares the
other commands; this does the store's part of them."""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from flowlens import cli_live as _live
from flowlens import filters as _filters
from flowlens._lazy import lazy
from flowlens.cli_live import Choice, _interrupt, is_tty
from flowlens.errors import UsageError
from flowlens.load import Extent, ReadOptions, plan_window
from flowlens.render.live import counted
from flowlens.sources.files import is_store

if TYPE_CHECKING:
    import pandas as pd

    from flowlens import engine as _engine
    from flowlens import frame as _frame
    from flowlens.analyses import parts as _parts
    from flowlens.render import live as _live_text
    from flowlens.sources.relay import Connection
    from flowlens.store import dataset as _dataset
    from flowlens.store import ingest as _ingest
    from flowlens.store import record as _record
else:
    pd, _frame = lazy("pandas"), lazy("flowlens.frame")
    _engine, _parts = lazy("flowlens.engine"), lazy("flowlens.analyses.parts")
    _live_text = lazy("flowlens.render.live")
    _dataset, _ingest = lazy("flowlens.store.dataset"), lazy("flowlens.store.ingest")
    _record = lazy("flowlens.store.record")

F = TypeVar("F", bound=Callable[..., Any])

STORE_ENV = "FLOWLENS_STORE"


def store_option(f: F) -> F:
    return click.option(
        "--store", metavar="STORE", envvar=STORE_ENV, show_envvar=True,
        help="Read this flow store (written by `flowlens record`) when no SOURCE and no "
             "--server is given.")(f)


def engine_options(f: F) -> F:
    """--engine and --scheduler: how a report over a flow store runs."""
    f = click.option("--scheduler", metavar="ADDRESS",
                     help="With --engine dask: the Dask scheduler (tcp://host:8786).")(f)
    return click.option(
        "--engine", type=Choice(["local", "dask"], case_sensitive=False),
        default="local", show_default=True,
        help="How a report over a flow store runs: here, one hourly partition at a time "
             "(local), or on the Dask cluster at --scheduler, each worker reading its own "
             "partitions (dask; the store a path every worker sees, or an s3://, gs:// or "
             "file:// URL).")(f)


def report_over_store(sources: tuple[str, ...], given: tuple[str, ...], filters:
                      _filters.Filters, engine: str, scheduler: str | None,
                      **kwargs: Any) -> Any:
    """The report over one flow store (partition by partition, `flowlens.engine`), or None
    when SOURCE... is not one store (--engine dask needs one)."""
    one_store = len(sources) == 1 and is_store(sources[0])
    if not one_store and engine.lower() == "local" and not scheduler:
        return None  # (without loading the engine: pandas is not loaded yet for a relay)
    runner = _engine.runner_for(engine.lower(), scheduler)
    if not one_store:
        if runner is not _engine.local:
            raise UsageError("--engine dask runs a report over a flow store: give one STORE "
                             "(a path or an s3://, gs://, file:// URL)")
        return None
    return _engine.report_store(sources[0], filters, sources=shown_sources(sources, given),
                                runner=runner, **kwargs)


def default_sources(sources: tuple[str, ...], store: str | None) -> tuple[str, ...]:
    """SOURCE... as given; without any, the store of --store / $FLOWLENS_STORE unless
    --server was given (then the relay: an empty tuple)."""
    if sources or store is None or _server_given():
        return sources
    if not is_store(store):
        raise UsageError(f"--store {store}: not a flow store (no {_dataset.STORE_FILE}; "
                         "`flowlens record` makes one)")
    return (store,)


def shown_sources(sources: tuple[str, ...], given: tuple[str, ...]) -> tuple[str, ...]:
    """How a report's header names its input: a store chosen by default says so."""
    if given or not sources:
        return sources
    ctx = click.get_current_context()
    how = STORE_ENV if ctx.get_parameter_source("store") == \
        click.core.ParameterSource.ENVIRONMENT else "--store"
    return (f"flow store {sources[0]} ({how})",)


def _server_given() -> bool:
    """Was --server on the command line (HUBBLE_SERVER alone does not beat the store)?"""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and \
        ctx.get_parameter_source("server") == click.core.ParameterSource.COMMANDLINE


def prune(sources: tuple[str, ...], filters: _filters.Filters, options: ReadOptions, *,
          report: bool = False) -> Extent | None:
    """Read of Parquet sources and stores only the --since/--until window; for a report (or a
    policy check) with a margin, and only the columns it reads. Returns the input's oldest and
    newest flow when it was pruned (selection counts durations back from the newest)."""
    extent = plan_window(sources, filters, options)
    window = options.window
    if report:
        # Requests pair with their answers over every flow: the flows as far around the
        # window as any pairing rule reaches are read too.
        reach = _parts.PAIRING_REACH.value
        options.columns = _engine.report_columns(filters)
        options.window = dataclasses.replace(
            window, since_ns=None if window.since_ns is None else window.since_ns - reach,
            until_ns=None if window.until_ns is None else window.until_ns + reach)
    return extent


# --- convert -o STORE/ ------------------------------------------------------------------------


def convert_into_store(sources: tuple[str, ...], out: str, options: ReadOptions) -> bool:
    """`convert SOURCE... -o STORE/`: import into a store (False: OUT is not a store)."""
    target = _ingest.store_path(out)
    if target is None:
        return False
    done = _ingest.import_sources(target, sources, options)
    repeats = done.flows_read - done.flows_added
    click.echo(f"flowlens: added {done.flows_added:,} of {counted(done.flows_read, 'flow')} "
               f"({repeats:,} already in the store), "
               f"{counted(done.lost_added, 'lost-event record')} and "
               f"{counted(done.node_status_added, 'node status event')} to {target}: "
               f"{counted(done.files, 'file')}", err=True)
    return True


# --- tail -f on a store -----------------------------------------------------------------------

POLL_SECONDS = 0.5


def follow_store(root: str, filters: _filters.Filters, options: ReadOptions,
                 render: Callable[[pd.DataFrame], Iterator[str]], between: str = "") -> None:
    """Print the selection (--last, --since, ... if given) and then every flow of the files
    `record` adds, until Ctrl-C (exit status 0). Without a selection only new flows are
    printed, as from a relay. `between` goes before every rendering but the first (dict's
    separator)."""
    follower = _dataset.StoreFollower(_dataset.Store(root))
    printed = False

    def show(df: pd.DataFrame) -> None:
        nonlocal printed
        for i, block in enumerate(render(df)):
            sys.stdout.write(between + block if i == 0 and printed else block)
            printed = True
        sys.stdout.flush()

    every = dataclasses.replace(filters, since=None, until=None, first=None, last=None,
                                all=False, follow=False)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if any(v is not None for v in (filters.since, filters.until, filters.first,
                                       filters.last)) or filters.all:
            extent = plan_window((root,), filters, options)
            df = _frame.build_all(follower.initial(options.columns, options.window,
                                                   options.batch_size, options.report))
            show(_shown(dataclasses.replace(filters, follow=False), df,
                        None if extent is None else extent[1]))
        else:
            follower.skip_existing()
        while True:
            for batch in follower.new(options.columns, options.batch_size, options.report):
                show(_shown(every, _frame.build(batch)))
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _shown(filters: _filters.Filters, df: pd.DataFrame,
           newest: pd.Timestamp | None = None) -> pd.DataFrame:
    """What tail shows of a frame: the selected flows and the lost events hubble keeps (each
    filtered as a missing flow), as tail on files shows them."""
    shown = _filters.selection(filters, df, newest)
    return _frame.take(df, shown.rows, shown.lost)


# --- record -----------------------------------------------------------------------------------


def _roll(text: str) -> tuple[float, int]:
    """--roll: a duration, a flow count, or both (comma-separated); what is not given keeps
    its default."""
    seconds, flows = _record.DEFAULT_ROLL_SECONDS, _record.DEFAULT_ROLL_FLOWS
    for part in (p.strip() for p in text.split(",")):
        if part.isdigit() and int(part) > 0:
            flows = int(part)
            continue
        duration = _filters.parse_duration(part) if part else None
        if duration is None or duration.total_seconds() <= 0:
            raise UsageError(f"invalid value {text!r} for --roll: want a duration (1m), a flow "
                             "count (100000) or both (1m,100000)")
        seconds = duration.total_seconds()
    return seconds, flows


def _retain(text: str | None) -> pd.Timedelta | None:
    if text is None:
        return None
    duration = _filters.parse_duration(text)
    if duration is None or duration.total_seconds() <= 0:
        raise UsageError(f"invalid value {text!r} for --retain: want a duration like 7d or 12h")
    return duration


@click.command(cls=_filters.FilterCommand,
               short_help="Keep every flow of the relay in a flow store (Parquet).")
@click.argument("store", metavar="STORE")
@click.option("--roll", default="1m,100000", show_default=True, metavar="DURATION,FLOWS",
              help="Start a new file after this long or this many flows, whichever comes "
                   "first (either alone keeps the other's default).")
@click.option("--retain", metavar="DURATION",
              help="Delete partitions older than this, e.g. 7d (checked every hour).")
@_live.connection_options
@_filters.filter_options
def record(store: str, roll: str, retain: str | None, connection: Connection,
           filters: _filters.Filters) -> None:
    """Follow hubble-relay (--server) and keep every flow, lost event and node status event
    in STORE: Parquet partitioned by UTC date and hour, which every flowlens command reads.

    Starts with everything the relay holds; restarted (after a stop, a crash or kill -9) it
    resumes from the newest flow in STORE and stores no flow twice. Hubble's filter flags
    select what is kept. Ctrl-C or SIGTERM writes what is buffered and exits 0 with a
    summary; one record per STORE."""
    for name in ("first", "last", "until"):
        if getattr(filters, name) is not None:
            raise UsageError(f"--{name} does not go with record, which follows the relay")
    roll_seconds, roll_flows = _roll(roll)
    tty = is_tty(sys.stderr)
    status: list[Any] = []
    recorder = _record.Recorder(
        store, connection, filters, roll_seconds=roll_seconds, roll_flows=roll_flows,
        retain=_retain(retain), on_event=lambda message: _event(message, status),
        on_progress=lambda r: status[0].update() if status else None)
    if tty:
        status.append(_live_text.RecordStatusLine(sys.stderr, recorder))
    handlers = {sig: signal.signal(sig, lambda *_: recorder.stop())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = recorder.run()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if status:
            status[0].clear()
    sys.stderr.write(_summary_line(summary))


def _summary_line(summary: _record.RecordSummary) -> str:
    """The line `flowlens record` ends with."""
    w = summary.written
    parts = [f"recorded {counted(w.flows, 'flow')}, {counted(w.lost_records, 'lost-event record')}"
             f" and {counted(w.node_status, 'node status event')} from {summary.server} into "
             f"{summary.store}: {counted(w.files, 'file')}, {_live_text.size_text(w.bytes)}"]
    if summary.resumed_from_ns is not None:
        since = pd.Timestamp(summary.resumed_from_ns, tz="UTC").isoformat()
        parts.append(f"; resumed after {since.replace('+00:00', 'Z')} "
                     f"({counted(summary.repeats_dropped, 'repeat')} dropped)")
    if summary.lost_events:
        parts.append(f"; EVENTS LOST: {summary.lost_events:,} (as the relay reported them; "
                     "recorded)")
    if summary.reconnects:
        parts.append(f"; {counted(summary.reconnects, 'reconnect')}")
    if summary.compacted_files or summary.removed_hours:
        parts.append(f"; {counted(summary.compacted_files, 'file')} compacted, "
                     f"{counted(summary.removed_hours, 'hour')} removed (--retain)")
    return "flowlens: " + "".join(parts) + "\n"


def _event(message: str, status: list[Any]) -> None:
    if status:
        status[0].clear()
    click.echo(f"flowlens: {message}", err=True)
