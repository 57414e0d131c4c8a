"""What every report format shares: how a cell, a time and the header read.

Only layout: the numbers come from `flowlens.analyses.Report` as they are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from flowlens.analyses.buckets import duration_text
from flowlens.analyses.report import Panel, Report

PERCENT_COLUMNS = frozenset({"success_rate"})
# Control characters (ESC, CR, ...) from flow data would drive the terminal: shown escaped.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def iso_time(value: pd.Timestamp | None) -> str | None:
    """RFC 3339 UTC with a Z, nanoseconds kept when there are any."""
    if value is None or pd.isna(value):
        return None
    return value.tz_convert("UTC").isoformat().replace("+00:00", "Z")


def short_time(value: pd.Timestamp | None) -> str:
    """`2026-07-01 08:10:05.335` (UTC; milliseconds only when there are any)."""
    if value is None or pd.isna(value):
        return "-"
    value = value.tz_convert("UTC")
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    millis = value.microsecond // 1000
    return f"{text}.{millis:03d}" if millis or value.nanosecond or value.microsecond else text


def visible(text: str) -> str:
    """Control characters as \\x.. escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def cell(value: Any, column: str) -> str:
    """One table cell as text: thousands separators, percentages, short times, '-' for NA."""
    if isinstance(value, pd.Timestamp):
        return short_time(value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
        return f"{int(value):,}" if column != "port" and column != "status" else str(int(value))
    if isinstance(value, float):
        if column in PERCENT_COLUMNS:
            return f"{value * 100:.1f}%"
        return f"{value:.4g}" if math.isfinite(value) else "-"
    return visible(str(value))


def records(frame: pd.DataFrame) -> list[list[str]]:
    """Every row of a panel as cells."""
    columns = list(frame.columns)
    return [[cell(v, c) for v, c in zip(row, columns, strict=True)]
            for row in frame.itertuples(index=False, name=None)]


def numeric_columns(frame: pd.DataFrame) -> set[str]:
    return {str(c) for c in frame.columns
            if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(
                frame[c])}


def verdict_totals(report: Report) -> str:
    parts = [f"{v} {n:,}" for v, n in zip(report.verdicts["verdict"], report.verdicts["flows"],
                                         strict=True)]
    return ", ".join(parts) if parts else "none"


def _from_relay(report: Report) -> bool:
    return report.window.anchor == "now"


def window_text(report: Report) -> str:
    w = report.window
    if w.since is None or w.until is None:
        return "no flows"
    text = f"{short_time(w.since)} to {short_time(w.until)} UTC"
    if _from_relay(report) and w.requested_until is None and report.input.flows:
        text += " (the newest flow the relay sent)"
    return text


def anchor_text(report: Report) -> str:
    w = report.window
    origin = "the newest flow of the input" if w.anchor == "data" else "now"
    if w.requested_since is None and w.requested_until is None:
        return "every flow of the input" if w.anchor == "data" else "every flow the relay holds"
    return f"durations count back from {origin}, {short_time(w.anchored_at)}"


def held_text(report: Report) -> str:
    given = report.input
    if given.first_flow is None:
        return "no flows"
    return f"{short_time(given.first_flow)} to {short_time(given.last_flow)}"


def input_text(report: Report) -> str:
    given = report.input
    sources = ", ".join(visible(s) for s in given.sources) or "hubble-relay"
    if _from_relay(report):
        return f"{sources}: {given.flows:,} flows sent; it holds {held_text(report)}"
    return f"{sources}: {given.flows:,} flows, {held_text(report)}"


def coverage_notice(report: Report) -> str | None:
    """What a --since window reaching before the input's oldest flow says."""
    w = report.window
    if w.covered is None or w.covered >= 1:
        return None
    holder = "the relay holds" if _from_relay(report) else "the input has"
    held = (f"flows from {short_time(report.input.first_flow)} on" if report.input.first_flow
            is not None else "no flows")
    return (f"--since {w.requested_since} asked for {short_time(w.asked_since)} to "
            f"{short_time(w.asked_until)} UTC; {holder} {held}: this report covers "
            f"{w.covered:.0%} of the window asked.")


def header_facts(report: Report) -> list[tuple[str, str]]:
    """(label, value) lines of every report's header."""
    facts = [("input", input_text(report))]
    if report.input.filters:
        facts.append(("filters", visible(" ".join(report.input.filters))))
    facts += [
        ("window", window_text(report)),
        ("anchor", anchor_text(report)),
        ("flows", f"{report.flows:,} ({verdict_totals(report)})"),
        ("lost events", f"{report.lost_events:,}"),
    ]
    if report.panels:  # the over-time panels' step; a policy check alone has none
        facts.append(("bucket", duration_text(report.bucket)))

    if report.policy is not None:
        facts.append(("policies", ", ".join(report.policy.policies.titles())))
    return facts


MISSING_TITLE = "Not in the input"


def missing_notes(report: Report) -> list[str]:
    """What the input could not carry, one sentence each (none for jsonpb)."""
    return [f"{what} ({flows:,} flows): {effect}."
            for what, flows, effect in report.missing.itertuples(index=False)]


def lost_warning(report: Report) -> str | None:
    """The sentence that says the data is incomplete, when it is."""
    if report.lost_events <= 0:
        return None
    return (f"INCOMPLETE DATA: the source reported {report.lost_events:,} lost events; "
            "every count in this report may be too low.")


def empty_notice(report: Report) -> str | None:
    """What an empty window says instead of panels."""
    if report.flows:
        return None
    given = report.input
    holder = "the relay holds" if _from_relay(report) else "the input has"
    where = (f"{holder} flows from {short_time(given.first_flow)} to "
             f"{short_time(given.last_flow)} UTC" if given.first_flow is not None
             else f"{holder} no flows")
    w = report.window
    if w.since is not None and w.until is not None:
        return f"No flows between {short_time(w.since)} and {short_time(w.until)} UTC; {where}."
    return f"No flows match; {where}."


def document(report: Report, header: Callable[[Report], list[str]],
             panel_lines: Callable[[Panel], list[str]]) -> str:
    """A line-based report: the header, then every panel unless the window held nothing."""
    lines = header(report)
    if report.flows or report.lost_events:
        for panel in report.all_panels:
            lines += panel_lines(panel)
    return "\n".join(lines) + "\n"
