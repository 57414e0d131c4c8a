"""The report in each format: `text`, `md`, `json`, `html`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from flowlens._lazy import lazy
from flowlens.errors import UsageError

if TYPE_CHECKING:
    from flowlens.analyses.report import Report
    from flowlens.render import report_html, report_json, report_md, report_text
else:  # checking the flags loads none of them (a report from a relay loads them meanwhile)
    report_html, report_json = lazy("flowlens.render.report_html"), \
        lazy("flowlens.render.report_json")
    report_md, report_text = lazy("flowlens.render.report_md"), \
        lazy("flowlens.render.report_text")

FORMATS: tuple[str, ...] = ("html", "text", "json", "md")
PLOTLYJS_CHOICES: tuple[str, ...] = ("inline", "cdn")


def check_format(fmt: str, plotlyjs: str = "inline") -> None:
    """UsageError for an unknown --format or --plotlyjs."""
    if fmt not in FORMATS:
        raise UsageError(f"invalid value {fmt!r} for --format: want one of {', '.join(FORMATS)}")
    if plotlyjs not in PLOTLYJS_CHOICES:
        raise UsageError(f"invalid value {plotlyjs!r} for --plotlyjs: want one of "
                         f"{', '.join(PLOTLYJS_CHOICES)}")


def report_chunks(report: Report, fmt: str, plotlyjs: str = "inline") -> Iterator[str]:
    """The report as text in `fmt`, in pieces to write one after the other."""
    check_format(fmt, plotlyjs)
    if fmt == "html":
        yield from report_html.chunks(report, "cdn" if plotlyjs == "cdn" else "inline")
    elif fmt == "json":
        yield report_json.render(report)
    elif fmt == "md":
        yield report_md.render(report)
    else:
        yield report_text.render(report)


def write_report(report: Report, out: TextIO, fmt: str = "text",
                 plotlyjs: str = "inline") -> None:
    for chunk in report_chunks(report, fmt, plotlyjs):
        out.write(chunk)
