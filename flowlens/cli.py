"""The `flowlens` command: a thin shell over the library (parse flags, call, print)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from flowlens import __version__
from flowlens import _hubble as H
from flowlens import cli_live as _live
from flowlens import cli_store as _store
from flowlens import filters as _filters
from flowlens._lazy import lazy
from flowlens.cli_live import Choice
from flowlens.errors import FlowlensError, RelayError, UsageError
from flowlens.frame import build_all, take
from flowlens.load import ReadOptions, iter_batches, load
from flowlens.render.live import counted
from flowlens.render.sink import bytes_to_stdout, replaced, to_stdout
from flowlens.sources.batch import FlowBatch, ReadReport
from flowlens.sources.files import (
    DEFAULT_MAX_LINE,
    FORMATS,
    detect_format,
    expand,
    normalize_format,
    open_source,
    parse_size,
    reading,
)
from flowlens.sources.timerange import check_year

if TYPE_CHECKING:
    import pandas as pd

    from flowlens import analyses as _analyses
    from flowlens import live as _relay
    from flowlens import policy as _policy
    from flowlens.render import hubble as _hubble_text
    from flowlens.render import outputs as _outputs
    from flowlens.render import report_formats as _report_formats
    from flowlens.render import report_json as _report_json
    from flowlens.sources import jsonpb_runs as _jsonpb_runs
    from flowlens.sources import native as _native
    from flowlens.sources.relay import Connection
else:  # each command loads what it uses: `flowlens --help` loads none of them
    _analyses, _relay, _policy = lazy("flowlens.analyses"), lazy("flowlens.live"), \
        lazy("flowlens.policy")
    _hubble_text, _outputs = lazy("flowlens.render.hubble"), lazy("flowlens.render.outputs")
    _report_formats = lazy("flowlens.render.report_formats")
    _report_json = lazy("flowlens.render.report_json")
    _native, _jsonpb_runs = lazy("flowlens.sources.native"), lazy("flowlens.sources.jsonpb_runs")

F = TypeVar("F", bound=Callable[..., Any])

OUTPUTS = ("compact", "dict", "table", "tab", "jsonpb", "json")
# The report format a file's extension asks for when --format is not given.
REPORT_SUFFIXES = {".html": "html", ".md": "md", ".json": "json", ".txt": "text"}
# Words that name a format, never a file, as -o of report, convert and policy: `-o json` is
# hubble's tail habit, and would write a file named "json".
_FORMAT_WORDS = frozenset({*REPORT_SUFFIXES.values(), "txt", "markdown", *OUTPUTS, "parquet",
                           "csv", "jsonl", "yaml", "yml"})


def input_options(f: F) -> F:
    """Flags every command that reads saved flows shares."""
    for option in reversed([
        click.option("--input-format", type=Choice(FORMATS, case_sensitive=False),
                     help="Format of the input (default: detected from content)."),
        click.option("--year", metavar="YEAR", callback=lambda _c, _p, value: check_year(value),
                     help="Year of year-less timestamps (default: inferred from file time)."),
        click.option("--strict", is_flag=True,
                     help="Stop at the first unreadable line (exit status 2)."),
        click.option("--max-line-size", default="16MiB", show_default=True, metavar="SIZE",
                     expose_value=False, callback=_max_line,
                     help="Longest input line taken (a longer one is skipped as unreadable)."),
    ]):
        f = option(f)
    return f


def report_output_options(f: F) -> F:
    """--format, -o and --plotlyjs, as `report` and `policy check` share them."""
    for option in reversed([
        click.option("--format", "fmt", metavar="FORMAT",
                     help="html (self-contained page with charts), text, json or md "
                          "(default: from the extension of -o FILE, else text)."),
        click.option("-o", "--output", "out", metavar="FILE",
                     help="Write to FILE (default: standard output); its extension .html, "
                          ".md, .json or .txt sets the format when --format is not given."),
        click.option("--plotlyjs", default="inline", show_default=True, metavar="inline|cdn",
                     help="html: inline plotly.js (works offline) or load it from its CDN."),
    ]):
        f = option(f)
    return f


def _report_format(fmt: str | None, out: str | None) -> str:
    """--format, else the format the -o file's extension names, else text."""
    if fmt is not None:
        return fmt.lower()
    return REPORT_SUFFIXES.get(Path(out).suffix.lower(), "text") if out else "text"


def _check_output_file(out: str | None, meaning: str) -> None:
    """Refuse `-o json` where -o names a file: `meaning` says what -o is there instead."""
    if out is not None and out.lower() in _FORMAT_WORDS and not Path(out).is_dir():
        raise UsageError(f"-o {out} names no file: {meaning} (-o ./{out} writes a file named "
                         f"{out!r})")


_REPORT_OUTPUT = ("here -o is the output file, its extension sets the format (report.html, "
                  ".md, .json, .txt), and --format sets it whatever the name")


def _one_window(command: click.Command) -> click.Command:
    """report and policy check read one window: they take every filter flag but -f/--follow."""
    command.params = [p for p in command.params if "--follow" not in p.opts]
    return command


def _max_line(ctx: click.Context, param: click.Parameter, value: str) -> None:
    """--max-line-size, kept for `_read_options` (every reading command has it)."""
    ctx.meta["max_line"] = parse_size(value)


def _read_options(input_format: str | None, year: int | None, strict: bool,
                  keep_raw: bool = False) -> ReadOptions:
    max_line = click.get_current_context().meta.get("max_line", DEFAULT_MAX_LINE)
    return ReadOptions(input_format=input_format, year=year, strict=strict, keep_raw=keep_raw,
                       report=ReadReport(strict=strict), max_line=max_line)


def _report_bad_lines(report: ReadReport) -> None:
    for line in report.summary_lines():
        click.echo(f"flowlens: {line}", err=True)


def _usage_error(exc: click.UsageError) -> NoReturn:
    """click's usage error (an unknown option, a missing argument) as one line, as ours are,
    with where help is instead of click's usage block."""
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        raise exc  # `flowlens` alone: click prints the help
    where = exc.ctx.command_path if exc.ctx is not None else "flowlens"
    message = exc.format_message().rstrip(".")
    click.echo(f"flowlens: error: {message} (see {where} --help)", err=True)
    raise click.exceptions.Exit(exc.exit_code)


class FlowlensGroup(click.Group):
    """Turns flowlens's own errors and click's usage errors into one line on stderr and a
    non-zero exit, no traceback."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            _usage_error(exc)
        except FlowlensError as exc:
            click.echo(f"flowlens: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            # `flowlens tail ... | head`: the reader left; that is not an error.
            sys.stderr.close()
            ctx.exit(0)


@click.group(cls=FlowlensGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__)  # (not package_name: reading metadata is slow)
def main() -> None:
    """flowlens: what your Cilium network policies are doing, from Hubble flows."""


# Set by a command that wrote and closed everything it opened: `run` may then end the process
# without Python's teardown.
exit_at_once = False


def run() -> None:
    """The `flowlens` command (and `python -m flowlens`): `main`; after a command that set
    `exit_at_once` and succeeded, the process ends without Python's teardown (unloading
    pandas and the rest takes about 0.07 s, a fifth of a report's work after receiving)."""
    try:
        main()
    except SystemExit as done:
        if exit_at_once and done.code in (0, None):
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except (OSError, ValueError):  # (a closed or broken stream: the usual exit)
                raise done from None
            os._exit(0)
        raise


@main.command(cls=_filters.FilterCommand,
              short_help="Print saved or live flows as hubble observe does, filtered.",
              context_settings={"allow_extra_args": True})  # to hint at --input-file FILE
@click.option("--input-file", "input_files", multiple=True, metavar="SOURCE",
              help="Read flows from a file (plain or .gz), a folder, or - for stdin "
                   "(jsonpb, hubble text or Parquet). Repeatable.")
@input_options
@click.option("-o", "--output", type=Choice(OUTPUTS, case_sensitive=False),
              default="compact", show_default=True, help="Output format, as hubble observe.")
@click.option("--time-format", default="StampMilli", show_default=True,
              help="Timestamp format: StampMilli, RFC3339, RFC3339Milli, RFC3339Micro, "
                   "RFC3339Nano, RFC1123Z, YearMonthDay, YearMonthDayHour, "
                   "YearMonthDayHourMinute.")
@click.option("--print-node-name", is_flag=True, help="Print the node each flow was seen on.")
@click.option("--print-policy-names", is_flag=True,
              help="Print the policies that allowed or denied policy verdicts.")
@click.option("--numeric", is_flag=True, help="Print IP addresses instead of names.")
@click.option("--color", type=Choice(("auto", "always", "never"), case_sensitive=False),
              default="auto", show_default=True,
              help="Colour compact and dict output, as hubble: auto colours a terminal (not "
                   "with TERM=dumb or NO_COLOR set).")
@click.option("--save", metavar="FILE",
              help="Relay only: also write every flow to FILE as jsonpb (hubble-readable).")
@click.option("--print-raw-filters", is_flag=True,
              help="Print the allow/deny FlowFilters of the request as YAML and exit.")
@_store.store_option
@_live.connection_options
@_filters.filter_options
def tail(input_files: tuple[str, ...], input_format: str | None, year: int | None, strict: bool,
         output: str, time_format: str, print_node_name: bool, print_policy_names: bool,
         numeric: bool, color: str, save: str | None, print_raw_filters: bool,
         store: str | None,
         connection: Connection, filters: _filters.Filters) -> None:
    """Print flows as `hubble observe` does, filtered with hubble's filter flags.

    From hubble-relay (--server) unless --input-file is given. From a relay, without
    -f/--follow, --last, --first, --all, --since or --until the last 20 flows (per node, as
    hubble-relay counts) are printed; Ctrl-C ends a stream with exit status 0 and a summary.
    From files every flow is printed unless --last/--first/--since/--until select."""
    stray = click.get_current_context().args
    if stray:
        raise click.UsageError(f"unexpected argument {stray[0]!r}: tail reads saved flows with "
                               f"--input-file (flowlens tail --input-file {stray[0]})")
    fmt = {"tab": "table", "json": "jsonpb"}.get(output.lower(), output.lower())
    if fmt == "table" and filters.follow:  # whatever the source, as hubble refuses it
        raise UsageError("-o table cannot be used with --follow (a table is aligned over all "
                         "its rows, so it is printed at the end)")
    colored = _colored(color)
    if time_format.lower() not in {name.lower() for name in H.TIME_FORMATS}:
        raise UsageError(f"invalid value {time_format!r} for --time-format: want one of "
                         f"{', '.join(H.TIME_FORMATS)}")
    if print_raw_filters:
        click.echo(_filters.raw_filters_yaml(filters), nl=False)
        return
    input_files = _store.default_sources(input_files, store)
    if not input_files:
        _live.tail_relay(connection, filters, fmt=fmt, time_format=time_format,
                         node_name=print_node_name, policy_names=print_policy_names,
                         numeric=numeric, color=colored, save=save)
        return
    if save is not None:
        raise UsageError("--save is for streams from a relay; use `flowlens convert` for files")
    # CEL expressions see the whole flows of jsonpb sources, as hubble does.
    options = _read_options(input_format, year, strict,
                            keep_raw=fmt == "jsonpb" or filters.has_cel)
    printed = None
    if not colored and len(input_files) == 1:
        printed = _tail_without_frame(input_files[0], filters, options, fmt=fmt,
                                      time_format=time_format, node_name=print_node_name,
                                      policy_names=print_policy_names, numeric=numeric)
        if printed is not None and printed.whole:
            return
    render = functools.partial(_render, fmt=fmt, time_format=time_format,
                               node_name=print_node_name, policy_names=print_policy_names,
                               numeric=numeric, color=colored)
    if filters.follow and len(input_files) == 1 and _store.is_store(input_files[0]):
        _store.follow_store(input_files[0], filters, options, lambda frame: render(frame, None),
                            between="------------\n" if fmt == "dict" else "")
        return
    extent = _store.prune(input_files, filters, options)
    if printed is not None:  # the frame path prints the rest of the file
        options.skip = (printed.size, printed.lines)
        _tail_stream(input_files[0], options, filters, fmt, render, printed.records)
    elif _streams(input_files, fmt, filters):
        _tail_stream(input_files[0], options, filters, fmt, render)
    else:
        df, raw = load(input_files, options)
        shown = _filters.selection(filters, df, None if extent is None else extent[1],
                                   originals=raw)
        chosen = take(df, shown.rows, shown.lost)
        if raw is not None:
            raw = [raw[i] for i in shown.rows] if fmt == "jsonpb" else None
        to_stdout(render(chosen, raw))
    _report_bad_lines(options.report)


@dataclasses.dataclass
class _Printed:
    """What tail printed of a file without a frame: its first `records` records, which are
    its first `size` bytes and `lines` lines; `whole`: all of it."""

    records: int = 0
    size: int = 0
    lines: int = 0
    whole: bool = False


def _tail_without_frame(source: str, filters: _filters.Filters, options: ReadOptions, *,
                        fmt: str, time_format: str, node_name: bool, policy_names: bool,
                        numeric: bool) -> _Printed | None:
    """Prints what tail shows of one jsonpb file when no flow filter or time window asks for
    a frame: hubble's text rendered in C from the file's runs, or its records re-encoded,
    without loading pandas or Arrow (flowlens.sources.jsonpb_runs): block by block as the
    file is split, up to a block only the frame path reads; with --first/--last or as a table,
    all or nothing. None when nothing was printed."""
    module = _native.native()
    if (module is None or filters.whitelist or filters.blacklist
            or filters.since is not None or filters.until is not None or filters.follow
            or not os.path.isfile(source)
            or normalize_format(options.input_format) not in (None, "jsonpb")):
        return None
    whole_messages = fmt == "jsonpb"
    printed = _Printed()
    opened = open_source(source)
    with contextlib.closing(opened.stream):
        with reading(opened.name):
            if detect_format(opened) != "jsonpb":
                return None
            if filters.first is not None or filters.last is not None or fmt == "table":
                tail = _jsonpb_runs.tail_runs(opened, first=filters.first, last=filters.last,
                                              max_line=options.max_line,
                                              whole_messages=whole_messages)
                if tail is None:
                    return None
                tails = iter([tail])
            else:
                tails = _jsonpb_runs.tail_blocks(opened, max_line=options.max_line,
                                                 whole_messages=whole_messages)
        while True:  # (writing stdout is not reading the source: outside `reading`)
            try:
                with reading(opened.name):
                    tail = next(tails, None)
            except _jsonpb_runs.Unusable:
                break
            if tail is None:
                printed.whole = True
                break
            text = _runs_text(module, tail, printed.records, fmt, time_format=time_format,
                              node_name=node_name, policy_names=policy_names, numeric=numeric)
            if text is None:
                break
            bytes_to_stdout(text)
            printed.records += tail.records
            printed.size += tail.size
            printed.lines += tail.lines
    return printed if printed.records or printed.whole else None


def _runs_text(module: Any, tail: _jsonpb_runs.Tail, before: int, fmt: str,
               **options: Any) -> bytes | None:
    """A Tail's records as tail prints them after `before` others; None when a run must be
    rendered through a frame."""
    if fmt == "jsonpb":
        return tail.jsonpb()
    table = module.Table(node_name=options["node_name"]) if fmt == "table" else None
    texts = []
    records = before
    for run in tail.runs():
        text = run.render(fmt, separator=records > 0, table=table, **options)
        if text is None:
            return None
        texts.append(text)
        records += run.rows + len(run.lost_events)
    if table is not None:
        texts.append(table.finish())
    return b"".join(texts)


def _streams(sources: tuple[str, ...], fmt: str, filters: _filters.Filters) -> bool:
    """Whether tail prints flows as they are read (stdin as it arrives, any file in bounded
    memory): one source, and nothing that needs the whole input first (a table aligns over
    all rows; --first/--last pick by time; a --since/--until duration counts back from the
    newest flow)."""
    relative = any(t is not None and _filters.parse_duration(t) is not None
                   for t in (filters.since, filters.until))
    return (len(sources) == 1 and fmt != "table" and filters.first is None
            and filters.last is None and not relative)


# A frame and its rendering per part cost as much as some thousand flows: parts of 10,000 flows
# read a file with 8% more CPU than reading it whole, in 220 MB instead of 370 (200,000 flows).
_TAIL_PART = 10_000


def _tail_stream(source: str, options: ReadOptions, filters: _filters.Filters, fmt: str,
                 render: Callable[..., Iterator[str]], printed: int = 0) -> None:
    """Printed as it is read: what hubble shows of a record depends on the record alone (and
    its place among the others), so part by part is the same as the whole. Input arriving over
    time (stdin, a pipe) is printed batch by batch; a file in parts of _TAIL_PART flows
    (after the `printed` records `options.skip` leaves out)."""
    continued = _live.Continued(fmt)
    continued.blocks = printed
    arriving = source == "-" or (os.path.exists(source) and not os.path.isfile(source)
                                 and not os.path.isdir(source))
    part: list[FlowBatch] = []

    def show() -> None:
        df = build_all(part)
        raws = [b.raw for b in part]
        # The records as written: what CEL expressions see, what -o jsonpb writes back.
        raw = None if None in raws else [r for rs in raws for r in rs or ()]
        shown = _filters.selection(filters, df, originals=raw)
        to_stdout(continued(render(take(df, shown.rows, shown.lost), None if raw is None
                                   or fmt != "jsonpb" else [raw[i] for i in shown.rows])))
        part.clear()

    try:
        for batch in iter_batches(source, options):
            part.append(batch)
            if arriving or sum(b.size for b in part) >= _TAIL_PART:
                show()
    except KeyboardInterrupt:
        if not arriving:
            raise
        return  # Ctrl-C ends a stream (as a relay's): what was skipped is still reported
    if part:
        show()


def _render(df: pd.DataFrame, raw: list[dict[str, Any]] | None, *, fmt: str, time_format: str,
            node_name: bool, policy_names: bool, numeric: bool, color: bool) -> Iterator[str]:
    if fmt == "jsonpb":
        return _outputs.jsonpb_lines(df, raw)
    renderer = {"compact": _hubble_text.compact, "dict": _hubble_text.dict_,
                "table": _hubble_text.table}[fmt]
    return renderer(df, time_format=time_format, node_name=node_name,
                    policy_names=policy_names, numeric=numeric, color=color)


def _colored(when: str) -> bool:
    """hubble's --color: always, never, or auto: when stdout is a terminal, unless TERM is dumb
    or NO_COLOR is set (as the hubble CLI decides, checked against it)."""
    when = when.lower()
    if when != "auto":
        return when == "always"
    return (_live.is_tty(sys.stdout) and os.environ.get("TERM") != "dumb"
            and not os.environ.get("NO_COLOR"))


@main.command(short_help="Convert saved flows to Parquet, CSV, JSON lines or jsonpb.")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("-o", "--output", "out", required=True, metavar="OUT",
              help="Output file: .parquet, .csv, .jsonl (frame rows) or .jsonpb (hubble-readable); "
                   "or a flow store (an existing one, or a path ending in /) to add to.")
@input_options
def convert(sources: tuple[str, ...], out: str, input_format: str | None, year: int | None,
            strict: bool) -> None:
    """Convert SOURCE... (jsonpb, hubble text or Parquet; files, folders, -) into one OUT
    file."""
    _check_output_file(out, "here -o is the output file, its extension sets the format "
                            "(flows.parquet, .csv, .jsonl, .jsonpb)")
    options = _read_options(input_format, year, strict, keep_raw=out.lower().endswith(".jsonpb"))
    if _store.convert_into_store(sources, out, options):
        _report_bad_lines(options.report)
        return
    _check_writable(out, sources)
    df, raw = load(sources, options)
    _outputs.write_frame(df, out, raw)
    lost = len(df.attrs.get("lost_events", ()))
    wrote = f"flowlens: wrote {counted(len(df), 'flow')}"
    if _outputs.output_kind(out) in ("parquet", "jsonpb"):
        click.echo(f"{wrote} and {counted(lost, 'lost-event record')} to {out}", err=True)
    else:  # a CSV or JSON-lines row is a flow
        left_out = (f"; the input's {counted(lost, 'lost-event record')} "
                    f"{'is' if lost == 1 else 'are'} not in it (.parquet and .jsonpb keep "
                    "them)") if lost else ""
        click.echo(f"{wrote} to {out}{left_out}", err=True)
    _report_bad_lines(options.report)


@main.command(short_help="Show the relay's status, as hubble status.")
@_live.connection_options
@click.option("-o", "--output", type=Choice(("compact", "dict", "table", "tab", "json",
                                             "jsonpb"), case_sensitive=False),
              default="compact", show_default=True, help="Output format, as hubble status.")
def status(connection: Connection, output: str) -> None:
    """Show the relay's status, as `hubble status` does (flows seen/max, flows/s, nodes)."""
    fmt = output.lower()
    _live.print_status(connection, {"tab": "table", "jsonpb": "json"}.get(fmt, fmt))


@main.command(short_help="List the nodes the relay sees.")
@_live.connection_options
@click.option("-o", "--output", type=Choice(("table", "json"), case_sensitive=False),
              default="table", show_default=True, help="Output format.")
def nodes(connection: Connection, output: str) -> None:
    """List the nodes the relay sees (GetNodes): state, address, TLS, uptime, flows."""
    _live.print_nodes(connection, output.lower())


@main.command(short_help="Serve saved flows as hubble-relay does.")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--listen", default="127.0.0.1:4245", show_default=True, metavar="ADDRESS",
              help="Address to serve the Observer API on.")
@click.option("--speed", default="max", show_default=True,
              help="Replay pace: max (all at once), realtime, or a factor such as 60.")
@click.option("--tls-cert", metavar="FILE", help="Serve TLS with this PEM certificate.")
@click.option("--tls-key", metavar="FILE", help="PEM key of --tls-cert.")
@click.option("--tls-client-ca", metavar="FILE",
              help="Require client certificates signed by this CA (mTLS).")
@input_options
def relay(sources: tuple[str, ...], listen: str, speed: str, tls_cert: str | None,
          tls_key: str | None, tls_client_ca: str | None, input_format: str | None,
          year: int | None, strict: bool) -> None:
    """Serve SOURCE... (files, folders, -) over Hubble's Observer API, as a relay that the
    hubble CLI, Hubble UI and `flowlens tail` can read. Ctrl-C stops it."""
    options = _read_options(input_format, year, strict)
    _live.serve_relay(sources, options, listen=listen, speed=speed, tls_cert=tls_cert,
                      tls_key=tls_key, tls_client_ca=tls_client_ca,
                      on_loaded=lambda: _report_bad_lines(options.report))


@_one_window
@main.command(cls=_filters.FilterCommand,
              short_help="The Hubble dashboard's panels as a text, md, json or html report.")
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@input_options
@report_output_options
@click.option("--top", default="10", show_default=True, metavar="N",
              help="Rows of the top-N panels (denied pods, ports, DNS queries...).")
@click.option("--bucket", metavar="DURATION",
              help="Time bucket of the over-time panels, like 10s, 1m, 1h (default: from "
                   "the window).")
@click.option("--policy", "policy_files", multiple=True, metavar="POLICY.yaml",
              help="Add what these policies would change (as `flowlens policy check`). "
                   "Repeatable.")
@click.option("--named-port", "named_ports", multiple=True, metavar="NAME=PORT",
              help="With --policy: the port number of a named port. Repeatable.")
@_store.store_option
@_store.engine_options
@_live.connection_options
@_filters.filter_options
def report(sources: tuple[str, ...], input_format: str | None, year: int | None, strict: bool,
           fmt: str | None, out: str | None, top: str, bucket: str | None, plotlyjs: str,
           policy_files: tuple[str, ...], named_ports: tuple[str, ...], store: str | None,
           engine: str, scheduler: str | None, connection: Connection,
           filters: _filters.Filters) -> None:
    """The Hubble dashboard's panels as a report over SOURCE... (files, folders, -), or over
    the flows hubble-relay (--server) holds when no SOURCE is given: forwarded vs dropped, drop
    reasons, denied pods, policy verdicts, TCP, ICMP, DNS, HTTP, lost events.

    --since/--until durations count back from the newest flow of the input (files) or from
    now (relay); hubble's filter flags select the flows."""
    _check_output_file(out, _REPORT_OUTPUT)
    fmt, plotlyjs = _report_format(fmt, out), plotlyjs.lower()
    _report_formats.check_format(fmt, plotlyjs)
    size = _analyses.parse_bucket(bucket) if bucket is not None else None
    rows = _top(top)
    if out is not None:
        _check_writable(out, (*sources, *policy_files))
    policies = _policy.load_policies(policy_files) if policy_files else None
    ports = _policy.parse_named_ports(named_ports) if named_ports else {}  # (pandas not yet)
    options = _read_options(input_format, year, strict)
    built = _report_over(sources, store, options, connection, filters, (engine, scheduler),
                         top=rows, bucket=size, policies=policies, named_ports=ports)
    _warn_policy_notes(built)
    _write(_report_formats.report_chunks(built, fmt, plotlyjs), out)
    if out is not None:
        click.echo(f"flowlens: wrote the {fmt} report of {counted(built.flows, 'flow')} to {out}",
                   err=True)
    _report_bad_lines(options.report)
    global exit_at_once
    exit_at_once = True


def _report_over(sources: tuple[str, ...], store: str | None, options: ReadOptions,
                 connection: Connection, filters: _filters.Filters,
                 engine: tuple[str, str | None], **kwargs: Any) -> _analyses.Report:
    """The report over the window of SOURCE... (or of the default store; a store partition by
    partition, on --engine), or of the relay when there is none."""
    chosen = _store.default_sources(sources, store)
    over_store = _store.report_over_store(chosen, sources, filters, *engine, **kwargs)
    if over_store is not None:
        return over_store
    if chosen:
        held = _store.prune(chosen, filters, options, report=True)
        df, _ = load(chosen, options)
        return _analyses.build_report(df, filters, sources=_store.shown_sources(chosen, sources),
                                      held=held, **kwargs)
    window = _relay_window(connection, filters,
                           meanwhile=lambda: importlib.import_module("flowlens.analyses"))
    return _analyses.build_report(window.flows, filters,
                                  sources=(f"hubble-relay {connection.server}",),
                                  anchor="now", now=window.now, filtered=window.filtered,
                                  held=window.held, **kwargs)


def _relay_window(connection: Connection, filters: _filters.Filters,
                  meanwhile: Callable[[], object] | None = None) -> _relay.RelayWindow:
    """The relay's window (`flowlens.live.read_window`; `meanwhile` runs while it is received),
    for a command given no SOURCE."""
    try:
        return _relay.read_window(
            connection, filters, on_event=lambda text: click.echo(f"flowlens: {text}", err=True),
            meanwhile=meanwhile)
    except RelayError as exc:
        # Say why a relay was asked at all: the user may have meant to name files.
        raise RelayError(f"no SOURCE given, so flows were asked of hubble-relay at "
                         f"{connection.server} (--server, $HUBBLE_SERVER): {exc}") from None


# More rows than any top list has; a count beyond is refused, not carried into the JSON.
MAX_TOP = 1_000_000


def _top(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_TOP:
        raise UsageError(f"invalid value {text!r} for --top: want a count from 1 to "
                         f"{MAX_TOP:,}")
    return int(text)


def _check_writable(path: str, sources: Iterable[str] = ()) -> None:
    """Fail before reading anything when the output could not be written, or would be
    written over one of its sources."""
    target = Path(path)
    try:
        exists = target.exists()
    except OSError as exc:  # a name too long, ...
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    if exists:
        for source in sources:
            for name in (expand([source]) if source != "-" else ()):
                if os.path.samefile(name, target):
                    raise UsageError(f"refusing to write {path}: it is a source of this "
                                     "command, which would be overwritten")
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder")
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: no folder {folder}")
    if not os.access(folder, os.W_OK) or (exists and not os.access(target, os.W_OK)):
        raise UsageError(f"cannot write {path}: permission denied")


def _write(chunks: Iterable[str], out: str | None) -> None:
    """To stdout, or to the file `out`, whole or not at all (a full disk leaves what was
    there)."""
    if out is None:
        to_stdout(chunks)
        return
    with replaced(out) as temp, open(temp, "w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(chunk)


# --- policy lens --------------------------------------------------------------------------------

@main.group(short_help="Check policies against flows, or suggest them from flows.")
def policy() -> None:
    """What NetworkPolicies would do to the connections in recorded flows (check), and the
    least-privilege policies those flows call for (suggest)."""


@_one_window
@policy.command("check", cls=_filters.FilterCommand,
                short_help="What these policies would change for the flows' connections.")
@click.argument("paths", nargs=-1, required=True, metavar="POLICY.yaml... [SOURCE]...")
@input_options
@report_output_options
@click.option("--named-port", "named_ports", multiple=True, metavar="NAME=PORT",
              help="The port number of a named port the policies use. Repeatable.")
@_store.store_option
@_store.engine_options
@_live.connection_options
@_filters.filter_options
def policy_check(paths: tuple[str, ...], input_format: str | None, year: int | None,
                 strict: bool, fmt: str | None, out: str | None, named_ports: tuple[str, ...],
                 plotlyjs: str, store: str | None, engine: str, scheduler: str | None,
                 connection: Connection, filters: _filters.Filters) -> None:
    """Evaluate the policies in POLICY.yaml... (files ending in .yaml or .yml, or folders of
    them) against the connections in SOURCE... (flow files, folders, -; the relay at --server
    when none), as if exactly these policies were applied: per connection and end (source
    egress, destination ingress) the verdict observed in the flows, the verdict the policies
    predict and the rule that allows it; then what would break, what becomes allowed and what
    stays. Kubernetes NetworkPolicy in full, CiliumNetworkPolicy in part (see the README)."""
    _check_output_file(out, _REPORT_OUTPUT)
    fmt, plotlyjs = _report_format(fmt, out), plotlyjs.lower()
    _report_formats.check_format(fmt, plotlyjs)
    policy_paths, sources = _policy.split_paths(paths)
    if not policy_paths:
        raise UsageError("no policy given: name POLICY.yaml files (.yaml, .yml), or folders of "
                         f"them only, first; taken for flows: {', '.join(sources)}")
    if out is not None:
        _check_writable(out, (*sources, *policy_paths))
    policies = _policy.load_policies(policy_paths)
    options = _read_options(input_format, year, strict)
    built = _report_over(sources, store, options, connection, filters, (engine, scheduler),
                         panels=(), policies=policies,
                         named_ports=_policy.parse_named_ports(named_ports),
                         title="flowlens policy check")
    _warn_policy_notes(built)
    assert built.policy is not None
    _write([_report_json.policy_json(built.policy)] if fmt == "json"
           else _report_formats.report_chunks(built, fmt, plotlyjs),
           out)
    summary = built.policy.summary
    click.echo(f"flowlens: {counted(built.flows, 'flow')}, "
               f"{counted(len(built.policy.connections), 'connection end')}: "
               f"{summary['would_break']:,} would break, {summary['newly_allowed']:,} newly "
               f"allowed, {summary['unknown']:,} unknown, {summary['unchanged']:,} unchanged"
               + (f"; wrote the {fmt} check to {out}" if out is not None else ""), err=True)
    _report_bad_lines(options.report)


@policy.command("suggest", short_help="Least-privilege NetworkPolicy YAML from the flows.")
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@input_options
@click.option("-n", "--namespace", metavar="NS", help="Only workloads in this namespace.")
@click.option("--selector", metavar="KEY=VALUE[,...]",
              help="Only workloads whose labels match, e.g. app=backend.")
@click.option("--direction", type=Choice(("ingress", "egress", "both")),
              default="ingress", show_default=True,
              help="Write ingress policies (who may connect to the workload), egress "
                   "policies (where it may connect to), or both.")
@click.option("--since", metavar="TIME", help="Only flows since TIME: a duration back from the "
              "newest flow (files) or now (relay), like 5m, 1h30m, 2d, or a date/RFC 3339 time.")
@click.option("--until", metavar="TIME", help="Only flows until TIME (same forms as --since).")
@click.option("-o", "--output", "out", metavar="FILE",
              help="Write the YAML to FILE (default: standard output).")
@_store.store_option
@_live.connection_options
def policy_suggest(sources: tuple[str, ...], input_format: str | None, year: int | None,
                   strict: bool, namespace: str | None, selector: str | None, direction: str,
                   since: str | None, until: str | None, out: str | None, store: str | None,
                   connection: Connection) -> None:
    """Least-privilege NetworkPolicy YAML per workload from the traffic SOURCE... (or the
    relay) saw allowed: peers by their workload labels, one rule per peer set and its ports.
    `flowlens policy check` of the result over the same flows changes nothing."""
    filters = _filters.Filters(since=since, until=until)
    chosen = _policy.parse_selector(selector)
    directions = _policy.DIRECTIONS if direction == "both" else (
        "ingress" if direction == "ingress" else "egress",)
    _check_output_file(out, "here -o is the file the YAML is written to (e.g. -o policy.yaml)")
    if out is not None:
        _check_writable(out, sources)
    options = _read_options(input_format, year, strict)
    sources = _store.default_sources(sources, store)
    if sources:
        extent = _store.prune(sources, filters, options, report=True)
        df, _ = load(sources, options)
        df = _filters.select(filters, df, None if extent is None else extent[1])
    else:
        df = _relay_window(connection, filters).flows
    suggestion = _policy.suggest(df, namespace=namespace, selector=chosen,
                                 directions=directions)
    for note in suggestion.notes:
        click.echo(f"flowlens: note: {note}", err=True)
    _write([suggestion.yaml()], out)
    made = f"{counted(len(suggestion.policies), 'policy', 'policies')} from " \
        f"{counted(len(df), 'flow')}"
    click.echo(f"flowlens: {made}" if out is None else f"flowlens: wrote {made} to {out}",
               err=True)
    _report_bad_lines(options.report)


def _warn_policy_notes(built: _analyses.Report) -> None:
    for note in built.policy.notes if built.policy is not None else ():
        click.echo(f"flowlens: warning: {note}", err=True)


main.add_command(_store.record)


if __name__ == "__main__":
    main()
