"""`flowlens report --format text`: the report as plain tables for a 100-column terminal."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import pandas as pd

from flowlens.analyses.report import Panel, Report
from flowlens.render.report_common import (
    ANSWER_TITLE,
    MISSING_TITLE,
    answer_text,
    caveats,
    document,
    header_facts,
    missing_notes,
    numeric_columns,
    records,
    visible,
)

WIDTH = 100
_GAP = "  "
_MIN_TEXT = 8  # a text column is never cut narrower than this


def table(frame: pd.DataFrame, width: int = WIDTH) -> list[str]:
    """A frame as aligned lines no wider than `width`, numbers right-aligned. A table too wide
    for that shows each row as a block of `column  value` lines when it has more than three
    columns, else has its widest text column shortened with '…'."""
    headers = [visible(str(c)) for c in frame.columns]
    cells = records(frame)
    numeric = {i for i, h in enumerate(headers) if h in numeric_columns(frame)}
    widths = _widths(headers, cells)
    room = width - len(_GAP) * (len(headers) - 1)
    if sum(widths) > room and len(headers) > 3:
        return _blocks(headers, cells, width)
    floors = [widths[i] if i in numeric else _MIN_TEXT for i in range(len(headers))]
    _fit(widths, floors, room)
    lines = [_line(headers, widths, set()), _line(["-" * w for w in widths], widths, set())]
    lines += [_line(row, widths, numeric) for row in cells]
    return [line.rstrip() for line in lines]


def _widths(headers: list[str], cells: list[list[str]]) -> list[int]:
    return [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]


def fits(frame: pd.DataFrame, width: int = WIDTH) -> bool:
    """Whether the frame's table fits `width` without shortening anything."""
    widths = _widths([visible(str(c)) for c in frame.columns], records(frame))
    return sum(widths) + len(_GAP) * (len(widths) - 1) <= width


def _blocks(headers: list[str], cells: list[list[str]], width: int) -> list[str]:
    indent = max(len(h) for h in headers) + len(_GAP)
    lines: list[str] = []
    for n, row in enumerate(cells):
        if n:
            lines.append("")
        for header_, value in zip(headers, row, strict=True):
            wrapped = textwrap.wrap(value, width, initial_indent=header_.ljust(indent),
                                    subsequent_indent=" " * indent, break_on_hyphens=False,
                                    drop_whitespace=False) or [header_]
            lines += [line.rstrip() for line in wrapped]  # the space a line was broken at
    return lines


def long_form(frame: pd.DataFrame, series: str) -> pd.DataFrame:
    """An over-time panel (time, then a column per series) as rows of time, series, flows,
    the non-zero ones only: a handful of columns whatever the number of series."""
    melted = frame.melt(id_vars="time", var_name=series, value_name="flows")
    melted = melted[melted["flows"] > 0]
    return melted.sort_values(["time"], kind="stable").reset_index(drop=True)


def _fit(widths: list[int], floors: list[int], room: int) -> None:
    """Narrow the widest shrinkable column, one character at a time, until all fit."""
    while sum(widths) > room:
        shrinkable = [i for i, w in enumerate(widths) if w > floors[i]]
        if not shrinkable:
            return
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1


def _line(values: Sequence[str], widths: Sequence[int], right: set[int]) -> str:
    parts = []
    for i, (value, w) in enumerate(zip(values, widths, strict=True)):
        text = value if len(value) <= w else value[:w - 1] + "…"
        parts.append(text.rjust(w) if i in right else text.ljust(w))
    return _GAP.join(parts)


def header(report: Report) -> list[str]:
    """The title and facts, the answer, then the caveats."""
    facts = header_facts(report)
    indent = max(len(label) for label, _ in facts) + 2
    lines = [report.title, ""]
    for label, value in facts:
        lines += textwrap.wrap(value, WIDTH, initial_indent=label.ljust(indent),
                               subsequent_indent=" " * indent, break_on_hyphens=False)
    lines += answer_lines(report)
    for notice in caveats(report):
        lines += ["", *_wrap(f"!! {visible(notice)}", "   ")]
    notes = missing_notes(report)
    if notes:
        lines += ["", f"{MISSING_TITLE}:"]
        for note in notes:
            lines += _bullet(note)
    return lines


def answer_lines(report: Report) -> list[str]:
    found = answer_text(report)
    if found is None:
        return []
    lines = ["", _rule(ANSWER_TITLE), *_wrap(found.headline)]
    for sentence in found.denied:
        lines += _bullet(sentence)
    if found.changes:
        lines += ["Changes in the window:"]
        for sentence in found.changes:
            lines += _bullet(sentence)
    for note in found.notes:
        lines += ["", *_wrap(note)]
    return lines


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_on_hyphens=False)


def _bullet(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent="- ", subsequent_indent="  ",
                         break_on_hyphens=False)


def _rule(title: str) -> str:
    head = f"== {title} "
    return head + "=" * max(0, WIDTH - len(head))


def panel_lines(panel: Panel) -> list[str]:
    spec = panel.spec
    lines = ["", _rule(f"{spec.section}: {spec.title}"), *textwrap.wrap(spec.counts, WIDTH)]
    data = panel.data
    if spec.series and not fits(data):
        data = long_form(data, spec.series)
    lines += table(data) if len(data) else ["(none)"]
    return lines


def render(report: Report) -> str:
    return document(report, header, panel_lines)
