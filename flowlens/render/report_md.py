"""`flowlens report --format md`: the report as Markdown, for a ticket or a pull request.

Every cell is escaped: Markdown and inline HTML from flow data show as the text they are.
"""

from __future__ import annotations

import re

import pandas as pd

from flowlens.analyses.report import Panel, Report
from flowlens.render.report_common import (
    MISSING_TITLE,
    coverage_notice,
    document,
    empty_notice,
    header_facts,
    lost_warning,
    missing_notes,
    numeric_columns,
    records,
)

# CommonMark lets a backslash escape any ASCII punctuation; these are the ones that mean
# something in a table cell (inline HTML, emphasis, code, links, the cell separator).
_SPECIAL = re.compile(r"([\\`*_\[\]<>|&#!~])")


def escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text.replace("\n", " ").replace("\r", " "))


def table(frame: pd.DataFrame) -> list[str]:
    headers = [str(c) for c in frame.columns]
    numeric = numeric_columns(frame)
    rule = ["---:" if h in numeric else "---" for h in headers]
    lines = [_row([escape(h) for h in headers]), _row(rule)]
    lines += [_row([escape(c) for c in row]) for row in records(frame)]
    return lines


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def header(report: Report) -> list[str]:
    lines = [f"# {escape(report.title)}", ""]
    lines += [f"- **{label}**: {escape(value)}" for label, value in header_facts(report)]
    notes = missing_notes(report)
    if notes:
        lines += ["", f"**{MISSING_TITLE}:**", "", *(f"- {escape(n)}" for n in notes)]
    for notice in (lost_warning(report), coverage_notice(report), empty_notice(report)):
        if notice:
            lines += ["", f"> **{escape(notice)}**"]
    return lines


def panel_lines(panel: Panel) -> list[str]:
    spec = panel.spec
    lines = ["", f"## {escape(spec.section)}: {escape(spec.title)}", "",
             f"_{escape(spec.counts)}_", ""]
    lines += table(panel.data) if len(panel.data) else ["(none)"]
    return lines


def render(report: Report) -> str:
    return document(report, header, panel_lines)
