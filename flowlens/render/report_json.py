"""`flowlens report --format json`: the machine-readable report.

The top-level keys of ../shared/design.md (window, flows, lost_events, verdicts, drop_reasons,
forwarded_vs_dropped, top_denied_sources, top_denied_destinations, policy_verdicts) are a
contract; every other panel follows under its own key, with `input`, `bucket`, `top` and
`panels` (what each panel reproduces) beside them.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pandas as pd

from flowlens.analyses.answer import Answer
from flowlens.analyses.buckets import duration_text
from flowlens.analyses.report import Report
from flowlens.policy import PolicyCheck
from flowlens.render.report_common import iso_time

# Panels the design gives as {name: count} objects rather than lists of rows.
_AS_OBJECT = {"drop_reasons": "reason"}


def value(v: Any) -> Any:
    """A frame value as plain JSON: ints, floats, strings, RFC 3339 times, null for NA."""
    if isinstance(v, pd.Timestamp):
        return iso_time(v)
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [str(c) for c in frame.columns]
    return [{c: value(v) for c, v in zip(columns, row, strict=True)}
            for row in frame.itertuples(index=False, name=None)]


def counts(frame: pd.DataFrame, key: str, column: str = "flows") -> dict[str, int]:
    return {str(k): int(n) for k, n in zip(frame[key], frame[column], strict=True)}


def document(report: Report) -> dict[str, Any]:
    """The report as one JSON-ready dict."""
    w, given = report.window, report.input
    doc: dict[str, Any] = {}
    if report.answer is not None:
        doc["summary"] = summary(report.answer)
    doc |= {
        "window": {"since": iso_time(w.since), "until": iso_time(w.until),
                   "first_flow": iso_time(w.first_flow), "last_flow": iso_time(w.last_flow),
                   "anchor": w.anchor, "anchored_at": iso_time(w.anchored_at),
                   "requested": {"since": w.requested_since, "until": w.requested_until},
                   "asked": {"since": iso_time(w.asked_since), "until": iso_time(w.asked_until)},
                   "held": {"first_flow": iso_time(given.first_flow),
                            "last_flow": iso_time(given.last_flow)},
                   "covered": w.covered},
        "flows": report.flows,
        "lost_events": report.lost_events,
        "verdicts": counts(report.verdicts, "verdict"),
    }
    for panel in report.panels:
        key = _AS_OBJECT.get(panel.key)
        doc[panel.key] = counts(panel.data, key) if key else rows(panel.data)
    doc["input"] = {"sources": list(given.sources), "flows": given.flows,
                    "first_flow": iso_time(given.first_flow),
                    "last_flow": iso_time(given.last_flow), "filters": list(given.filters),
                    "missing": rows(report.missing)}
    doc["bucket"] = duration_text(report.bucket)
    doc["top"] = report.top
    if report.policy is not None:
        doc["policy_check"] = report.policy.to_dict()
    doc["panels"] = [{"key": p.key, "title": p.spec.title, "section": p.spec.section,
                      "counts": p.spec.counts} for p in report.panels]
    return doc


def summary(answer: Answer) -> dict[str, Any]:
    """The answer: `denied` (per connection end denied by policy), `changes` (where an end
    flipped), how denied packets count and the drops that are not policy denials."""
    return {"denied": rows(answer.denied), "changes": rows(answer.changes),
            "denied_flows": int(answer.denied["flows"].sum()),
            "policy_verdict_events": answer.verdict_events, "drop_events": answer.drop_events,
            "counted_twice": answer.counted_twice,
            "other_drops": counts(answer.other_drops, "reason")}


def policy_json(check: PolicyCheck) -> str:
    """`flowlens policy check --format json`."""
    return orjson.dumps(check.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"


def render(report: Report) -> str:
    return orjson.dumps(document(report), option=orjson.OPT_INDENT_2).decode() + "\n"
