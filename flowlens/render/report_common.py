"""What every report format shares: how a cell, a time and the header read.

Only layout: the numbers come from `flowlens.analyses.Report` as they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from flowlens._hubble import visible  # a flow string safe on a terminal (reports' text, md)
from flowlens.analyses.answer import STILL_DENIED
from flowlens.analyses.buckets import duration_text
from flowlens.analyses.report import Panel, Report
from flowlens.render.live import counted

PERCENT_COLUMNS = frozenset({"success_rate"})
# Control characters from flow data would drive the terminal. ESC and CR are escaped as `tail`
# (and hubble) escape them; a report also shows every other one as \x.. (BEL, backspace, ...).


def iso_time(value: pd.Timestamp | None) -> str | None:
    """RFC 3339 UTC with a Z, nanoseconds kept when there are any."""
    if value is None or pd.isna(value):
        return None
    return value.tz_convert("UTC").isoformat().replace("+00:00", "Z")


def short_time(value: pd.Timestamp | None, millis: bool = False) -> str:
    """`2026-07-01 08:10:05.335` (UTC; milliseconds when there are any, or always with `millis`:
    the times of a table column line up)."""
    if value is None or pd.isna(value):
        return "-"
    value = value.tz_convert("UTC")
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    fraction = value.microsecond or value.nanosecond
    return f"{text}.{value.microsecond // 1000:03d}" if millis or fraction else text


def cell(value: Any, column: str) -> str:
    """One table cell as text: thousands separators, percentages, short times, '-' for NA."""
    if isinstance(value, pd.Timestamp):
        return short_time(value, millis=True)
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
    sources = ", ".join(given.sources) or "hubble-relay"
    if _from_relay(report):
        return f"{sources}: {given.flows:,} flows sent; it holds {held_text(report)}"
    w = report.window
    if w.requested_since is not None or w.requested_until is not None:
        # A store or Parquet is read for the window only (and the minutes around it that
        # pairing needs): the count is what was read, the range what the input holds.
        return f"{sources}: {given.flows:,} flows read; it holds {held_text(report)}"
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
        facts.append(("filters", " ".join(report.input.filters)))
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
    return [(label, visible(value)) for label, value in facts]


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


def line_panels(report: Report) -> list[Panel]:
    """The panels in the order a reader scrolls a text report: the tables first, the long
    over-time ones last."""
    panels = report.all_panels
    return [p for p in panels if not p.spec.series] + [p for p in panels if p.spec.series]


def document(report: Report, header: Callable[[Report], list[str]],
             panel_lines: Callable[[Panel], list[str]]) -> str:
    """A line-based report: the header (the answer in it), then every panel unless the window
    held nothing."""
    lines = header(report)
    if report.flows or report.lost_events:
        for panel in line_panels(report):
            lines += panel_lines(panel)
    return "\n".join(lines) + "\n"


# --- the answer ------------------------------------------------------------------------------

ANSWER_TITLE = "Who is denied, by what, since when"


@dataclass(frozen=True)
class AnswerText:
    """The answer as sentences, control characters shown (`visible`): a headline, one per
    denied connection end and one per change (the first `--top`, then how many more), notes."""

    headline: str
    denied: list[str]
    changes: list[str]
    notes: list[str]


def connection_text(row: Any) -> str:
    """`source → destination:port/protocol (direction)` of an answer row."""
    port = "" if row.port is None or pd.isna(row.port) else f":{int(row.port)}"
    protocol = f"/{row.protocol}" if isinstance(row.protocol, str) else ""
    return f"{row.source} → {row.destination}{port}{protocol} ({row.direction})"


def _denied_sentence(row: Any, at: Callable[[Any], str], cut: pd.Timestamp | None) -> str:
    """One denied end; `cut`: where --since cut the window (the flows before it unread)."""
    # No policy name in the flows is NA (a float NaN here, and truthy).
    named = isinstance(row.policies, str) and row.policies
    by = f"{row.reason} by {row.policies}" if named else str(row.reason)
    passed = not pd.isna(row.allowed_before)
    before = f" (forwarded until {at(row.allowed_before)})" if passed else ""
    # Nothing passed before the run in the window: it may have begun before the window.
    earlier = f" at the latest (the window starts at {at(cut)})" if cut is not None and \
        not passed else ""
    if row.status == STILL_DENIED:
        when = f"still denied, since {at(row.since)}{earlier}{before}, last at {at(row.last)}"
    else:
        when = (f"denied from {at(row.since)}{earlier} to {at(row.last)}{before}, allowed "
                f"again at {at(row.allowed_again)}")
    return f"{connection_text(row)}: {when}; {counted(row.flows, 'flow')}; {by}."


def _change_sentence(row: Any, at: Callable[[Any], str]) -> str:
    was = "forwarded" if row.change == "denied" else "denied"
    return f"{at(row.at)}: {connection_text(row)} {row.change} ({was} until {at(row.before)})."


def clock(report: Report) -> Callable[[Any], str]:
    """How the answer writes a time: the time of day when the window lies within one UTC day
    (the header gives the date), else the date too."""
    w = report.window
    one_day = (w.since is not None and w.until is not None
               and w.since.tz_convert("UTC").date() == w.until.tz_convert("UTC").date())
    return (lambda t: short_time(t)[11:]) if one_day else short_time


def answer_text(report: Report) -> AnswerText | None:
    """The answer every format opens with; None without one (a policy check, no flows)."""
    found = report.answer
    if found is None or not report.flows:
        return None
    denied = found.denied
    still = int((denied["status"] == STILL_DENIED).sum())
    if len(denied):
        headline = (f"{len(denied):,} connection{'s' * (len(denied) != 1)} denied by policy "
                    f"between {short_time(report.window.since)} and "
                    f"{short_time(report.window.until)} UTC; {still:,} still denied at the end "
                    "of the window.")
    else:
        headline = "No connection was denied by policy in this window."
    notes = []
    if found.counted_twice:
        notes.append(f"A denied packet usually shows twice, as a policy-verdict event and as a "
                     f"drop event ({found.verdict_events:,} and {found.drop_events:,} here): "
                     "flow counts, like hubble_drop_total, count both.")
    if len(found.other_drops):
        others = ", ".join(f"{r} {n:,}" for r, n in found.other_drops.itertuples(index=False))
        notes.append(f"Dropped for other reasons: {others} (see Drop Reason).")
    at = clock(report)
    cut = report.window.since if report.window.requested_since is not None else None
    return AnswerText(
        visible(headline),
        _first(report, denied, lambda r: _denied_sentence(r, at, cut),
               "--top, or the JSON summary"),
        _first(report, found.changes, lambda r: _change_sentence(r, at), "the JSON summary"),
        [visible(n) for n in notes])


def _first(report: Report, frame: pd.DataFrame, sentence: Callable[[Any], str],
           rest: str) -> list[str]:
    """A sentence for each of the first `--top` rows, then how many more there are."""
    shown = [visible(sentence(r)) for r in frame.head(report.top).itertuples(index=False)]
    more = len(frame) - len(shown)
    return shown + ([f"… and {more:,} more ({rest})"] if more > 0 else [])


def caveats(report: Report) -> list[str]:
    """What to keep in mind when reading the numbers: losses, a window the input only partly
    covers, an empty window."""
    return [n for n in (lost_warning(report), coverage_notice(report), empty_notice(report))
            if n]
