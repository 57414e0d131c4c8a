"""Reports in parts: every number of a report computed over one part of its input at a time
(a flow store's hourly partitions) and merged, so that the report equals the one over the
whole input, exactly, in the memory of one part.

A part is a frame of the flows of one span of time (its `counted` rows) and of those within
PAIRING_REACH before and after it, which only answer, donate a drop reason or a direction to,
the counted ones: every pairing rule of the analyses reaches no further (SYN-ACKs, DNS
responses and HTTP requests ANSWER_WINDOW, echo replies ECHO_REPLY_TIMEOUT, the drop event of a
policy verdict's packet SAME_PACKET). Each panel has a partial form that adds up: counts per
key (top-N panels keep every key until the end), counts per time bucket, unanswered asks per
key, latencies with how many responses had each, the answer's runs of outcomes per connection
end, the policy check's requests per connection. Parts merge in time order (ties go to the
later part, as rows of the whole input do); `report_of` then ranks, cuts to the top N and
interpolates exactly as the panels over the whole input.

Nothing here reads: `flowlens.engine` reads the parts and runs this, locally or on Dask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from flowlens.analyses import drops, l7, lost, traffic
from flowlens.analyses.answer import AnswerPart, answer_of, answer_part, merge_answer_parts
from flowlens.analyses.buckets import Buckets
from flowlens.analyses.coverage import missing_counts, missing_table
from flowlens.analyses.labels import SIDE_NAMES, add_up, count, peer_columns, sharing
from flowlens.analyses.report import (
    PANELS,
    InputSummary,
    Panel,
    PanelSpec,
    Report,
    Window,
)
from flowlens.analyses.unanswered import ANSWER_WINDOW, ECHO_REPLY_TIMEOUT, ECHOES, QUERIES, SYNS
from flowlens.frame import build_lost_events
from flowlens.policy import PolicySet
from flowlens.policy.check import check_grouped, grouped_requests, merge_grouped

# How far beyond its own span a part must see to pair as the whole input does.
PAIRING_REACH = max(ANSWER_WINDOW, ECHO_REPLY_TIMEOUT, drops.SAME_PACKET)
_ALL = 1 << 62  # top-N panels keep every row until the merge


@dataclass
class ReportPart:
    """The partial report of one part, or of consecutive parts merged: flows read and
    counted (selected), their time range, the lost-event records of the window, and each
    panel's partial form."""

    read: int
    flows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    lost: list[dict[str, Any]]
    verdicts: pd.DataFrame
    panels: dict[str, Any]
    answer: AnswerPart | None
    missing: dict[str, int]
    policy: pd.DataFrame | None


class _Part:
    """One part's frames as the partial forms take them."""

    def __init__(self, df: pd.DataFrame, selected: np.ndarray, counted: np.ndarray,
                 buckets: Buckets) -> None:
        self.every, self.buckets = df, buckets
        self.selected = selected
        self.counted = counted  # over `every`
        # the selected flows, those around the part included
        self.picked = df if selected.all() else df.iloc[np.flatnonzero(selected)]
        self.mine = counted[selected]  # which of them are the part's
        self.chosen = self.picked[self.mine]
        self._drops: pd.DataFrame | None = None

    @property
    def drops(self) -> pd.DataFrame:
        """`drops.dropped` of the part's chosen flows (a policy verdict may take the reason
        of its packet's drop event just outside the part)."""
        if self._drops is None:
            columns = ["time", *peer_columns("src"), *peer_columns("dst")]
            self._drops = drops.dropped(self.picked, columns, self.mine)
        return self._drops


@dataclass(frozen=True)
class _Partial:
    """How one panel is computed in parts: its partial form, how partial forms merge, and the
    panel of the merged form (given the whole merged report, and --top)."""

    part: Callable[[_Part], Any]
    merge: Callable[[list[Any]], Any]
    finish: Callable[[Any, ReportPart, int], pd.DataFrame] = \
        lambda merged, _whole, _top: merged


def _added(keys: Sequence[str], name: str = "flows") -> Callable[[list[pd.DataFrame]], Any]:
    """Merge of counts per key (`count` or `add_up` frames)."""
    def merge(parts: list[pd.DataFrame]) -> pd.DataFrame:
        joined = pd.concat(parts, ignore_index=True)
        plain = {k: object for k in keys if isinstance(joined[k].dtype, pd.CategoricalDtype)}
        return add_up(joined.astype(plain), keys, name)
    return merge


def _top(merged: pd.DataFrame, _whole: ReportPart, top: int) -> pd.DataFrame:
    return merged.head(top)


def _denied_tally(side: str) -> _Partial:
    peer = SIDE_NAMES[side]
    return _Partial(lambda p: drops.denied_tally(drops.policy_denied(p.drops, side), peer),
                    lambda parts: drops.merge_denied_tallies(parts, peer),
                    lambda merged, _whole, top: drops.top_denied(merged, peer, top))


def _denied_over_time(side: str, tally_key: str) -> _Partial:
    peer = SIDE_NAMES[side]

    def part(p: _Part) -> pd.DataFrame:
        flows = drops.policy_denied(p.drops, side)
        return traffic.over_time(flows["time"], flows[peer], p.buckets)

    def finish(merged: pd.DataFrame, whole: ReportPart, top: int) -> pd.DataFrame:
        tops = drops.top_denied(whole.panels[tally_key], peer, top)[peer].tolist()
        return traffic.merge_over_time([merged], keep=tops)
    return _Partial(part, traffic.merge_over_time, finish)


def _asks(pairing: Any) -> _Partial:
    return _Partial(lambda p: pairing.open_asks(p.every, p.selected & p.counted),
                    pairing.merge, lambda merged, _whole, top: pairing.panel(merged).head(top))


def _success(merged: pd.DataFrame) -> pd.DataFrame:
    total, errors = int(merged["responses"].sum()), int(merged["server_errors"].sum())
    return pd.DataFrame({"responses": [total], "server_errors": [errors],
                         "success_rate": [(total - errors) / total if total else np.nan]})


_PARTIALS: dict[str, _Partial] = {
    "forwarded_vs_dropped": _Partial(
        lambda p: traffic.forwarded_vs_dropped(p.chosen, p.buckets), traffic.merge_over_time),
    "drop_reasons": _Partial(lambda p: count(p.drops, ["reason"]), _added(["reason"])),
    "drop_reasons_over_time": _Partial(
        lambda p: traffic.over_time(p.drops["time"], p.drops["reason"], p.buckets),
        traffic.merge_over_time),
    "top_denied_sources": _denied_tally("src"),
    "top_denied_destinations": _denied_tally("dst"),
    "denied_sources_over_time": _denied_over_time("src", "top_denied_sources"),
    "denied_destinations_over_time": _denied_over_time("dst", "top_denied_destinations"),
    "policy_verdicts": _Partial(lambda p: drops.policy_verdicts(p.chosen),
                                _added(["direction", "match", "action"])),
    "flows_by_type": _Partial(lambda p: traffic.flows_by_type(p.chosen),
                              _added(["type", "subtype"])),
    "flows_by_node": _Partial(lambda p: traffic.flows_by_node(p.chosen, p.buckets),
                              traffic.merge_over_time),
    "protocols": _Partial(lambda p: traffic.protocols(p.chosen), _added(["protocol"])),
    "top_destination_ports": _Partial(
        lambda p: traffic.top_destination_ports(p.chosen, _ALL), _added(["protocol", "port"]),
        _top),
    "tcp_flags": _Partial(lambda p: traffic.tcp_flags(p.chosen), _added(["family", "flag"])),
    "syns_without_syn_ack": _asks(SYNS),
    "echo_requests_without_reply": _asks(ECHOES),
    "top_dns_queries": _Partial(lambda p: l7.top_dns_queries(p.chosen, _ALL),
                                _added(["query"], "queries"), _top),
    "dns_errors": _Partial(lambda p: l7.dns_errors(p.chosen), _added(["rcode"], "responses")),
    "dns_queries_without_response": _asks(QUERIES),
    "http_requests": _Partial(lambda p: l7.http_requests(p.chosen),
                              _added(["method"], "requests")),
    "http_responses": _Partial(
        lambda p: l7.http_responses(p.chosen), _added(["status"], "responses"),
        lambda merged, _whole, _top: merged.astype({"status": "Int64"})),
    "http_latency": _Partial(lambda p: l7.latencies(p.every, p.selected, p.counted),
                             l7.merge_latencies,
                             lambda merged, _whole, _top: l7.latency_quantiles(merged)),
    "http_success_rate": _Partial(lambda p: l7.http_success_rate(p.chosen),
                                  lambda parts: pd.concat(parts, ignore_index=True),
                                  lambda merged, _whole, _top: _success(merged)),
    # of the lost-event records, which every part keeps (a report counts them without panels)
    "lost_events_by_source": _Partial(
        lambda p: None, lambda parts: None,
        lambda _merged, whole, _top: lost.lost_events_table(build_lost_events(whole.lost))),
}


def report_part(df: pd.DataFrame, selected: np.ndarray, counted: np.ndarray,
                buckets: Buckets, *, seen: np.ndarray | None = None,
                lost: list[dict[str, Any]] | None = None,
                panels: Sequence[PanelSpec] = PANELS, policies: bool = False,
                part: int = 0) -> ReportPart:
    """The partial report of one part: `df` holds its flows (`counted`) and those within
    PAIRING_REACH around them, `selected` the flows the report's filters and window select
    (of all of them), `seen` those inside the window whatever the filters (the answer tells
    from them whether a denied end passed again), `lost` the part's lost-event records inside
    the window; `part` its place among the parts (the policy check keeps the order its
    requests came in)."""
    with sharing():
        return _report_part(df, selected, counted, buckets, seen, lost, panels, policies, part)


def _report_part(df: pd.DataFrame, selected: np.ndarray, counted: np.ndarray,
                 buckets: Buckets, seen: np.ndarray | None, lost: list[dict[str, Any]] | None,
                 panels: Sequence[PanelSpec], policies: bool, part: int) -> ReportPart:
    p = _Part(df, selected, counted, buckets)
    chosen = p.chosen
    times = chosen["time"].dropna()
    return ReportPart(
        read=int(np.count_nonzero(counted)), flows=len(chosen),
        first=times.min() if len(times) else None, last=times.max() if len(times) else None,
        lost=list(lost or ()),
        verdicts=traffic.verdicts(chosen),
        panels={spec.key: _PARTIALS[spec.key].part(p) for spec in panels},
        answer=answer_part(df, selected, seen, counted) if panels else None,
        missing=missing_counts(p.picked, p.mine),
        policy=grouped_requests(chosen, part) if policies else None)


def merge_parts(parts: Sequence[ReportPart]) -> ReportPart:
    """Partial reports of consecutive parts, in time order, as one."""
    if len(parts) == 1:
        return parts[0]
    firsts = [p.first for p in parts if p.first is not None]
    lasts = [p.last for p in parts if p.last is not None]
    keys = parts[0].panels.keys()
    answers = [p.answer for p in parts if p.answer is not None]
    policies = [p.policy for p in parts if p.policy is not None]
    return ReportPart(
        read=sum(p.read for p in parts), flows=sum(p.flows for p in parts),
        first=min(firsts) if firsts else None, last=max(lasts) if lasts else None,
        lost=[r for p in parts for r in p.lost],
        verdicts=_added(["verdict"])([p.verdicts for p in parts]),
        panels={k: _PARTIALS[k].merge([p.panels[k] for p in parts]) for k in keys},
        answer=merge_answer_parts(answers) if answers else None,
        missing={k: sum(p.missing[k] for p in parts) for k in parts[0].missing},
        policy=merge_grouped(policies) if policies else None)


def report_of(part: ReportPart, given: InputSummary, window: Window, buckets: Buckets, *,
              top: int, panels: Sequence[PanelSpec] = PANELS,
              policies: PolicySet | None = None,
              named_ports: Mapping[str, int] | None = None,
              title: str = "flowlens report") -> Report:
    """The report of an input from its merged `ReportPart` (`given` without the flows read,
    `report_window` gives `window` without its first and last flow: the part has them)."""
    computed = tuple(Panel(spec, _PARTIALS[spec.key].finish(part.panels[spec.key], part, top))
                     for spec in panels)
    checked = (None if policies is None or part.policy is None
               else check_grouped(part.policy, policies, named_ports))
    lost_events = int(build_lost_events(part.lost)["num_events_lost"].fillna(0).sum())
    return Report(replace(given, flows=part.read),
                  replace(window, first_flow=part.first, last_flow=part.last),
                  part.flows, lost_events, part.verdicts, buckets.size, top, computed, checked,
                  title, missing_table(part.missing),
                  answer_of(part.answer) if part.answer is not None else None)
