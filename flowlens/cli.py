"""The `flowlens` command: a thin shell over the library (parse flags, call, print)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
import pandas as pd

from flowlens import filters as _filters
from flowlens.errors import FlowlensError, UsageError
from flowlens.frame import take
from flowlens.load import ReadOptions, load
from flowlens.render import hubble as _hubble_text
from flowlens.render.outputs import jsonpb_lines, write_frame
from flowlens.sources.batch import ReadReport
from flowlens.sources.files import FORMATS

F = TypeVar("F", bound=Callable[..., Any])

OUTPUTS = ("compact", "dict", "table", "tab", "jsonpb", "json")


def input_options(f: F) -> F:
    """Flags every command that reads saved flows shares."""
    for option in reversed([
        click.option("--input-format", type=click.Choice(FORMATS, case_sensitive=False),
                     help="Format of the input (default: detected from content)."),
        click.option("--year", type=int,
                     help="Year of year-less timestamps (default: inferred from file time)."),
        click.option("--strict", is_flag=True,
                     help="Stop at the first unreadable line (exit status 2)."),
    ]):
        f = option(f)
    return f


def _read_options(input_format: str | None, year: int | None, strict: bool,
                  keep_raw: bool = False) -> ReadOptions:
    return ReadOptions(input_format=input_format, year=year, strict=strict, keep_raw=keep_raw,
                       report=ReadReport(strict=strict))


def _report_bad_lines(report: ReadReport) -> None:
    for line in report.summary_lines():
        click.echo(f"flowlens: {line}", err=True)


class FlowlensGroup(click.Group):
    """Turns flowlens's own errors into one line on stderr and a non-zero exit, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FlowlensError as exc:
            click.echo(f"flowlens: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            # `flowlens tail ... | head`: the reader left; that is not an error.
            sys.stderr.close()
            ctx.exit(0)


@click.group(cls=FlowlensGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowlens")
def main() -> None:
    """flowlens: what your Cilium network policies are doing, from Hubble flows."""


@main.command(cls=_filters.FilterCommand)
@click.option("--input-file", "input_files", multiple=True, metavar="SOURCE",
              help="Read flows from a file (plain or .gz), a folder, or - for stdin "
                   "(jsonpb or hubble text). Repeatable.")
@input_options
@click.option("-o", "--output", type=click.Choice(OUTPUTS, case_sensitive=False),
              default="compact", show_default=True, help="Output format, as hubble observe.")
@click.option("--time-format", default="StampMilli", show_default=True,
              help="Timestamp format: StampMilli, RFC3339, RFC3339Milli, RFC3339Micro, "
                   "RFC3339Nano, RFC1123Z, YearMonthDay, YearMonthDayHour, "
                   "YearMonthDayHourMinute.")
@click.option("--print-node-name", is_flag=True, help="Print the node each flow was seen on.")
@click.option("--print-policy-names", is_flag=True,
              help="Print the policies that allowed or denied policy verdicts.")
@click.option("--numeric", is_flag=True, help="Print IP addresses instead of names.")
@_filters.filter_options
def tail(input_files: tuple[str, ...], input_format: str | None, year: int | None, strict: bool,
         output: str, time_format: str, print_node_name: bool, print_policy_names: bool,
         numeric: bool, filters: _filters.Filters) -> None:
    """Print flows as `hubble observe` does, filtered with hubble's filter flags.

    Without --last/--first/--since/--until every flow of the input is printed."""
    if not input_files:
        raise UsageError("no --input-file given (streaming from hubble-relay comes with "
                         "`flowlens tail --server`, not yet available)")
    fmt = {"tab": "table", "json": "jsonpb"}.get(output.lower(), output.lower())
    options = _read_options(input_format, year, strict, keep_raw=fmt == "jsonpb")
    df, raw = load(input_files, options)
    rows = _filters.selected_rows(filters, df)
    chosen = take(df, rows)
    if raw is not None:
        raw = [raw[i] for i in rows]
    for line in _render(chosen, raw, fmt, time_format, print_node_name, print_policy_names,
                        numeric):
        sys.stdout.write(line)
    sys.stdout.flush()
    _report_bad_lines(options.report)


def _render(df: pd.DataFrame, raw: list[dict[str, Any]] | None, fmt: str, time_format: str,
            node_name: bool, policy_names: bool, numeric: bool) -> Iterator[str]:
    if fmt == "jsonpb":
        return jsonpb_lines(df, raw)
    renderer = {"compact": _hubble_text.compact, "dict": _hubble_text.dict_,
                "table": _hubble_text.table}[fmt]
    return renderer(df, time_format=time_format, node_name=node_name,
                    policy_names=policy_names, numeric=numeric)


@main.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--output", "out", required=True, metavar="OUT",
              help="Output file: .parquet, .csv, .jsonl (frame rows) or .jsonpb (hubble-readable).")
@input_options
def convert(sources: tuple[str, ...], out: str, input_format: str | None, year: int | None,
            strict: bool) -> None:
    """Convert SOURCE... (jsonpb or hubble text, files, folders, -) into one OUT file."""
    options = _read_options(input_format, year, strict, keep_raw=out.lower().endswith(".jsonpb"))
    df, raw = load(sources, options)
    write_frame(df, out, raw)
    lost = df.attrs["lost_events"]
    click.echo(f"flowlens: wrote {len(df)} flows and {len(lost)} lost-event records to {out}",
               err=True)
    _report_bad_lines(options.report)


if __name__ == "__main__":
    main()
