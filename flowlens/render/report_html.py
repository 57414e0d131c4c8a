"""`flowlens report --format html`: one self-contained page, a plotly chart and its table per
panel, that works offline (plotly.js inlined) or with plotly.js from its CDN (`plotlyjs="cdn"`).

Every string that came from a flow is escaped where it lands: HTML-escaped in tables and in
chart labels (plotly reads labels as a subset of HTML), and the chart data travels as a JSON
data block with `<`, `>` and `&` escaped. A Content-Security-Policy allows only this page's own
scripts (by hash), so markup that slipped through could still not run. The page's size depends
on the panels (top N rows, time buckets), never on the number of flows.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import orjson
import pandas as pd
import plotly.offline

from flowlens import _hubble as H
from flowlens.analyses.buckets import duration_text
from flowlens.analyses.report import Panel, Report
from flowlens.render.report_common import (
    ANSWER_TITLE,
    MISSING_TITLE,
    answer_text,
    coverage_notice,
    empty_notice,
    header_facts,
    lost_warning,
    missing_notes,
    numeric_columns,
    records,
    short_time,
    visible,
)

PlotlyJs = Literal["inline", "cdn"]
CDN = "https://cdn.plot.ly"
_LABEL_LIMIT = 60  # characters of a chart label; the table has the whole value

# One meaning per colour in every chart and table: red is dropped, denied or would break; green
# forwarded or allowed; each other verdict, outcome and drop reason has a colour of its own.
_RED, _GREEN, _BLUE, _ORANGE, _GREY = "#c62828", "#2e7d32", "#1f77b4", "#ef6c00", "#607d8b"
_OUTCOME_COLORS = {
    _RED: ("DROPPED", "dropped", "denied", "DENIED", "would_break", "still denied"),
    _GREEN: ("FORWARDED", "forwarded", "allowed", "ALLOWED", "newly_allowed", "allowed again"),
    "#1565c0": ("REDIRECTED", "redirected"),
    "#f9a825": ("AUDIT", "audit", "AUDITED"),
    "#6a1b9a": ("ERROR", "error"),
    _GREY: ("TRACED", "TRANSLATED", "unchanged", "VERDICT_UNKNOWN", "verdict_unknown"),
    "#8d6e63": ("unknown",),
}
OUTCOME_COLORS: dict[str, str] = {word: color for color, words in _OUTCOME_COLORS.items()
                                  for word in words}
VERDICT_COLORS = OUTCOME_COLORS  # the name the notebook and older code use
# Policy drops in reds; every other drop reason a fixed colour from its DropReason number.
_POLICY_REASON_COLORS = {"POLICY_DENIED": _RED, "POLICY_DENY": "#8e0000",
                         "AUTH_REQUIRED": "#e57373"}
_REASON_PALETTE = ("#ef6c00", "#6a1b9a", "#00838f", "#5d4037", "#ad1457", "#283593",
                   "#9e9d24", "#00695c", "#4527a0", "#78909c")
_REASON_NUMBERS = {name: code for code, (name, _) in H.DROP_REASONS.items()}
# Lines of one kind (denied pods) in shades of their colour, so that each stays apart.
_RED_SHADES = ("#c62828", "#e57373", "#8e0000", "#ef9a9a", "#d32f2f", "#b71c1c", "#ff8a80",
               "#c2185b", "#ad1457", "#880e4f")
_LOST = "#6d4c41"
# Table columns whose values name an outcome or a drop reason: their cells carry its colour.
_COLORED_COLUMNS = frozenset({"verdict", "action", "change", "status", "observed",
                              "predicted", "reason"})


def reason_color(reason: str) -> str:
    """The colour of a drop reason, the same in every panel and every report."""
    if reason in _POLICY_REASON_COLORS:
        return _POLICY_REASON_COLORS[reason]
    number = _REASON_NUMBERS.get(reason)
    if number is None:
        number = int(reason) if reason.isdigit() else sum(map(ord, reason))
    return _REASON_PALETTE[number % len(_REASON_PALETTE)]


def value_color(column: str, value: Any) -> str | None:
    """The colour a table cell of `column` carries, if its value has one."""
    if column not in _COLORED_COLUMNS or not isinstance(value, str):
        return None
    if column == "reason":
        return reason_color(value.split(", ")[0])
    return OUTCOME_COLORS.get(value)


@dataclass(frozen=True)
class Chart:
    """How a panel is drawn: lines over time, or horizontal bars of `value` per row labelled
    by the `labels` columns; `colors` names what colours its lines or bars: the verdict, the
    drop reason, the outcome in column `by`, or shades of red for denied pods."""

    kind: Literal["lines", "bars"]
    labels: tuple[str, ...] = ()
    value: str = "flows"
    color: str = _BLUE
    percent: bool = False
    colors: Literal["", "outcome", "reason", "denied"] = ""
    by: str = ""


CHARTS: dict[str, Chart] = {
    "forwarded_vs_dropped": Chart("lines", colors="outcome"),
    "drop_reasons": Chart("bars", ("reason",), colors="reason", by="reason"),
    "drop_reasons_over_time": Chart("lines", colors="reason"),
    "top_denied_sources": Chart("bars", ("source",), color=_RED),
    "top_denied_destinations": Chart("bars", ("destination",), color=_RED),
    "denied_sources_over_time": Chart("lines", colors="denied"),
    "denied_destinations_over_time": Chart("lines", colors="denied"),
    "policy_verdicts": Chart("bars", ("direction", "match", "action"), colors="outcome",
                             by="action"),
    "flows_by_type": Chart("bars", ("type", "subtype")),
    "flows_by_node": Chart("lines"),
    "protocols": Chart("bars", ("protocol",)),
    "top_destination_ports": Chart("bars", ("protocol", "port")),
    "tcp_flags": Chart("bars", ("family", "flag")),
    "syns_without_syn_ack": Chart("bars", ("source", "destination", "port"), "syns", _ORANGE),
    "echo_requests_without_reply": Chart("bars", ("source", "destination"), "requests",
                                         _ORANGE),
    "top_dns_queries": Chart("bars", ("query",), "queries"),
    "dns_errors": Chart("bars", ("rcode",), "responses", _ORANGE),
    "dns_queries_without_response": Chart("bars", ("source", "query"), "queries", _ORANGE),
    "http_requests": Chart("bars", ("method",), "requests"),
    "http_responses": Chart("bars", ("status",), "responses"),
    "http_latency": Chart("bars", ("quantile",), "seconds"),
    "policy_changes": Chart("bars", ("change",), "connections", colors="outcome", by="change"),
    "policy_would_break": Chart("bars", ("source", "destination", "port", "direction"),
                                color=_RED),
    "policy_newly_allowed": Chart("bars", ("source", "destination", "port", "direction"),
                                  color=_GREEN),
    "http_success_rate": Chart("bars", (), "success_rate", percent=True),
    "lost_events_by_source": Chart("bars", ("source", "node"), "events_lost", _LOST),
}


# --- charts -------------------------------------------------------------------------------------

def chart_text(value: Any) -> str:
    """A flow string as a plotly label: shortened, control characters shown, HTML-escaped."""
    text = visible(str(value))
    if len(text) > _LABEL_LIMIT:
        text = text[:_LABEL_LIMIT - 1] + "…"
    return html.escape(text, quote=False)


def figure(panel: Panel, bucket: pd.Timedelta | None = None) -> dict[str, Any]:
    """The plotly figure (data and layout, as a dict) of one panel; usable in a notebook as
    `plotly.graph_objects.Figure(figure(panel))`."""
    chart = CHARTS[panel.key]
    if chart.kind == "lines":
        return _lines(panel.data, chart, bucket)
    return _bars(panel.data, chart)


def _color(chart: Chart, value: Any, n: int) -> str | None:
    """The colour of the `n`th line or bar, whose series or `by` value is `value`."""
    if chart.colors == "outcome":
        return OUTCOME_COLORS.get(str(value))
    if chart.colors == "reason":
        return reason_color(str(value))
    if chart.colors == "denied":
        return _RED_SHADES[n % len(_RED_SHADES)]
    return None


def _lines(data: pd.DataFrame, chart: Chart, bucket: pd.Timedelta | None) -> dict[str, Any]:
    times = [t.strftime("%Y-%m-%d %H:%M:%S") for t in data["time"]]
    traces = []
    for n, column in enumerate(data.columns[1:]):
        color = _color(chart, column, n)
        traces.append({"type": "scatter", "mode": "lines+markers", "marker": {"size": 4},
                       "name": chart_text(column), "x": times, "y": data[column].tolist(),
                       **({"line": {"color": color}, "marker": {"size": 4, "color": color}}
                          if color else {})})
    per = f" per {duration_text(bucket)}" if bucket is not None else ""
    return {"data": traces, "layout": _layout({
        "xaxis": {"title": {"text": "time (UTC)"}, "type": "date"},
        "yaxis": {"title": {"text": f"flows{per}"}, "rangemode": "tozero"},
        "legend": {"orientation": "h", "y": -0.25}, "showlegend": True,
        "height": 360})}


def _bars(data: pd.DataFrame, chart: Chart) -> dict[str, Any]:
    labels = _unique([_label(dict(zip(data.columns, row, strict=True)), chart.labels)
                      for row in data.itertuples(index=False, name=None)])
    values = [None if pd.isna(v) else float(v) for v in data[chart.value]]
    axis: dict[str, Any] = {"title": {"text": chart.value.replace("_", " ")},
                            "rangemode": "tozero"}
    if chart.percent:
        axis.update(tickformat=".0%", range=[0, 1])
    colors: Any = chart.color
    if chart.by:
        colors = [_color(chart, v, n) or chart.color for n, v in enumerate(data[chart.by])]
    return {"data": [{"type": "bar", "orientation": "h", "y": labels, "x": values,
                      "marker": {"color": colors}, "name": chart.value}],
            "layout": _layout({"xaxis": axis,
                               "yaxis": {"type": "category", "autorange": "reversed",
                                         "automargin": True},
                               "height": 140 + 26 * max(len(labels), 1)})}


def _label(row: dict[Any, Any], columns: tuple[str, ...]) -> str:
    if not columns:
        return "all responses"
    parts = [str(row[c]) if not pd.isna(row[c]) else "-" for c in columns]
    if columns[:2] == ("source", "destination"):
        parts = [f"{parts[0]} → {parts[1]}", *parts[2:]]
    return chart_text(" · ".join(p for p in parts if p))  # no " · " before an empty value


def _unique(labels: list[str]) -> list[str]:
    """Labels that shortening made equal get a counter, so their bars stay apart."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _layout(extra: dict[str, Any]) -> dict[str, Any]:
    return {"margin": {"l": 60, "r": 20, "t": 30, "b": 50}, "showlegend": False,
            "font": {"family": "system-ui, sans-serif", "size": 12}, **extra}


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no `<`, `>`, `&` or line separators unescaped."""
    text = orjson.dumps(value).decode()
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


# --- page -------------------------------------------------------------------------------------

_BOOT = """(function () {
  var specs = JSON.parse(document.getElementById("flowlens-charts").textContent);
  specs.forEach(function (spec) {
    var target = document.getElementById(spec.id);
    if (typeof Plotly === "undefined") {
      target.textContent = "Charts need plotly.js, which did not load " +
        "(offline? write the report with --plotlyjs inline).";
      return;
    }
    Plotly.newPlot(target, spec.data, spec.layout, {displaylogo: false, responsive: true});
  });
})();"""

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 24px 48px; color: #212121; }
h1 { margin: 24px 0 8px; } h2 { margin: 0 0 4px; font-size: 18px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.alert { border: 2px solid #c62828; background: #ffebee; color: #b71c1c; padding: 10px 14px;
         font-weight: 600; margin: 12px 0; border-radius: 4px; }
.notice { border: 2px solid #607d8b; background: #eceff1; padding: 10px 14px; margin: 12px 0; }
nav ul { columns: 3; padding-left: 18px; }
section { border-top: 1px solid #ddd; padding: 18px 0; }
.counts { color: #555; margin: 0 0 8px; }
.chart { min-height: 160px; }
table { border-collapse: collapse; margin-top: 8px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left;
         overflow-wrap: break-word; max-width: 520px; }
th, td.num { white-space: nowrap; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.none { color: #777; font-style: italic; }
#answer { border-top: 3px solid #c62828; padding-top: 12px; }
#answer .headline { font-size: 16px; font-weight: 600; }
"""


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@cache
def _plotlyjs() -> tuple[str, str]:
    """plotly.js as bundled with plotly.py, and its SHA-256 (computed once per process)."""
    js = plotly.offline.get_plotlyjs()
    return js, _sha256(js)


def _plotly_tags(mode: PlotlyJs) -> tuple[list[str], str]:
    """The <script> that loads plotly.js (in pieces: it is large), and the CSP source that
    allows it."""
    js, digest = _plotlyjs()
    if mode == "inline":
        return ["<script>", js, "</script>"], f"'{digest}'"
    url = f"{CDN}/plotly-{plotly.offline.get_plotlyjs_version()}.min.js"
    return ([f'<script src="{url}" integrity="{digest}" crossorigin="anonymous" '
             'charset="utf-8"></script>'], CDN)


def _table(frame: pd.DataFrame) -> str:
    numeric = numeric_columns(frame)
    columns = [str(c) for c in frame.columns]
    # (the over-time panels' columns are flow strings: pods, nodes, verdicts)
    head = "".join(f"<th>{html.escape(visible(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(_cell(c, v, shown, c in numeric)
                         for c, v, shown in zip(columns, raw, row, strict=True)) + "</tr>"
        for raw, row in zip(frame.itertuples(index=False, name=None), records(frame),
                            strict=True))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(column: str, value: Any, shown: str, numeric: bool) -> str:
    """A table cell: numbers right-aligned, outcomes and reasons marked with their colour."""
    color = value_color(column, value)
    attributes = (' class="num"' if numeric else "") + (
        f' style="border-left: 5px solid {color}"' if color else "")
    return f"<td{attributes}>{html.escape(shown)}</td>"


def _section(panel: Panel) -> str:
    spec = panel.spec
    parts = [f'<section id="{panel.key}"><h2>{html.escape(spec.title)}</h2>',
             f'<p class="counts">{html.escape(spec.section)} · {html.escape(spec.counts)}</p>']
    chart = CHARTS.get(panel.key)  # None: a table only
    if panel.data.empty:
        parts.append('<p class="none">None in this window.</p>')
    else:
        if chart is not None:
            parts.append(f'<div class="chart" id="chart-{panel.key}"></div>')
        table = _table(panel.data)
        if chart is not None and chart.kind == "lines":
            table = (f"<details><summary>table ({len(panel.data)} time buckets)</summary>"
                     f"{table}</details>")
        parts.append(table)
    parts.append("</section>")
    return "".join(parts)


def _header(report: Report) -> str:
    """The title and facts, the answer, then the caveats."""
    facts = "".join(f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd>"
                    for label, value in header_facts(report))
    out = [f'<header><h1>{html.escape(report.title)}</h1><dl class="facts">{facts}</dl>',
           _answer(report)]
    empty = empty_notice(report)
    for warning in (lost_warning(report), coverage_notice(report)):
        if warning:
            out.append(f'<div class="alert" role="alert">{html.escape(warning)}</div>')
    if empty:
        out.append(f'<div class="notice">{html.escape(empty)}</div>')
    notes = missing_notes(report)
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        out.append(f'<div class="notice"><strong>{MISSING_TITLE}:</strong><ul>{items}</ul></div>')
    out.append("</header>")
    return "".join(out)


_ANSWER_COLUMNS = ["source", "destination", "port", "protocol", "direction", "status", "since",
                   "last", "allowed_again", "flows", "reason", "policies"]


def _answer(report: Report) -> str:
    """Who is denied: the headline, a table of the denied connection ends (status coloured),
    the changes and the notes."""
    found = answer_text(report)
    if found is None or report.answer is None:
        return ""
    parts = [f'<section id="answer"><h2>{ANSWER_TITLE}</h2>',
             f'<p class="headline">{html.escape(found.headline)}</p>']
    denied = report.answer.denied
    if len(denied):
        parts.append(_table(denied.head(report.top)[_ANSWER_COLUMNS]))
    if len(denied) > report.top:
        parts.append(f'<p class="counts">{html.escape(found.denied[-1])}</p>')
    changes = report.answer.changes
    if len(changes):
        parts += ["<h3>Changes in the window</h3>", _table(changes.head(report.top))]
    if len(changes) > report.top:
        parts.append(f'<p class="counts">{html.escape(found.changes[-1])}</p>')
    parts += [f'<p class="counts">{html.escape(note)}</p>' for note in found.notes]
    parts.append("</section>")
    return "".join(parts)


def _nav(report: Report) -> str:
    items = "".join(f'<li><a href="#{p.key}">{html.escape(p.spec.title)}</a></li>'
                    for p in report.all_panels)
    return f"<nav><ul>{items}</ul></nav>"


def _specs(report: Report) -> list[dict[str, Any]]:
    return [{"id": f"chart-{p.key}", **figure(p, report.bucket)}
            for p in report.all_panels if not p.data.empty and p.key in CHARTS]


def chunks(report: Report, plotlyjs: PlotlyJs = "inline") -> Iterator[str]:
    """The page in pieces (plotly.js is one large piece: write them, do not join them)."""
    loader, source = _plotly_tags(plotlyjs)
    policy = ("default-src 'none'; style-src 'unsafe-inline'; img-src data: blob:; "
              f"script-src {source} '{_sha256(_BOOT)}'")
    title = f"{report.title} {short_time(report.window.since)}"
    yield ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
           f'<meta http-equiv="Content-Security-Policy" content="{html.escape(policy)}">'
           '<meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>{html.escape(title)}</title><style>{_STYLE}</style>")
    yield from loader
    yield "</head><body>" + _header(report)
    if report.flows or report.lost_events:
        yield _nav(report)
        yield from (_section(p) for p in report.all_panels)
    yield ('<script type="application/json" id="flowlens-charts">'
           f"{script_json(_specs(report))}</script>")
    yield f"<script>{_BOOT}</script></body></html>\n"


def render(report: Report, plotlyjs: PlotlyJs = "inline") -> str:
    return "".join(chunks(report, plotlyjs))
