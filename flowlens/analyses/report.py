"""The report: every panel over one window of flows, with what was read and what was lost.

`build_report` selects the window (hubble's filter and --since/--until flags), then runs every
analysis; renderers (flowlens.render.report_*) only lay the result out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Literal

import numpy as np
import pandas as pd

from flowlens import filters as _filters
from flowlens.analyses import drops, l7, lost, traffic, unanswered
from flowlens.analyses.answer import Answer, answer
from flowlens.analyses.buckets import Buckets, window_buckets
from flowlens.analyses.coverage import COLUMNS as COVERAGE
from flowlens.analyses.coverage import missing_fields
from flowlens.analyses.labels import sharing
from flowlens.frame import set_lost_events, take
from flowlens.policy import PolicyCheck, PolicySet
from flowlens.policy import check as _check_policies

Anchor = Literal["data", "now"]
DEFAULT_TOP = 10


@dataclass(frozen=True)
class PanelSpec:
    """One panel: its key (the JSON key), title, dashboard section, the analysis that computes
    it and what it counts, in a line."""

    key: str
    title: str
    section: str
    compute: Callable[..., pd.DataFrame]
    takes: Literal["buckets", "buckets_top", "top", "frame", "policy"]
    counts: str
    series: str = ""  # over-time panels: what their columns after `time` are
    # Pairs asks with answers: computed over every flow read, counting the selected ones
    # (`selected=`), so that a filter never hides the answer to a request it selects.
    pairs: bool = False


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec("forwarded_vs_dropped", "Forwarded vs Dropped", "Network",
              traffic.forwarded_vs_dropped, "buckets",
              "every flow by verdict per time bucket (hubble_flows_processed_total)",
              "verdict"),
    PanelSpec("drop_reasons", "Drop Reason", "Network", drops.drop_reasons, "frame",
              "flows with verdict DROPPED by drop reason, policy-verdict events included "
              "(hubble_drop_total)"),
    PanelSpec("drop_reasons_over_time", "Drop Reason over time", "Network",
              drops.drop_reasons_over_time, "buckets",
              "DROPPED flows by drop reason per time bucket (hubble_drop_total)", "reason"),
    PanelSpec("top_denied_sources", "Top Source Pods with Denied Packets", "Network Policy",
              drops.top_denied_sources, "top",
              "DROPPED flows with reason POLICY_DENIED by source pod (hubble_drop_total)"),
    PanelSpec("top_denied_destinations", "Top Destination Pods with Denied Packets",
              "Network Policy", drops.top_denied_destinations, "top",
              "DROPPED flows with reason POLICY_DENIED by destination pod (hubble_drop_total)"),
    PanelSpec("denied_sources_over_time", "Top Source Pods with Denied Packets over time",
              "Network Policy", drops.denied_sources_over_time, "buckets_top",
              "DROPPED flows with reason POLICY_DENIED of the top source pods per time bucket "
              "(hubble_drop_total)", "source"),
    PanelSpec("denied_destinations_over_time",
              "Top Destination Pods with Denied Packets over time", "Network Policy",
              drops.denied_destinations_over_time, "buckets_top",
              "DROPPED flows with reason POLICY_DENIED of the top destination pods per time "
              "bucket (hubble_drop_total)", "destination"),
    PanelSpec("policy_verdicts", "Policy verdicts by direction, match and action",
              "Network Policy", drops.policy_verdicts, "frame",
              "policy-verdict events (those from the host identity excluded) and L7 events "
              "(hubble_policy_verdicts_total)"),
    PanelSpec("flows_by_type", "Flow types", "General", traffic.flows_by_type, "frame",
              "every flow by type and subtype (hubble_flows_processed_total)"),
    PanelSpec("flows_by_node", "Flows processed per node", "General", traffic.flows_by_node,
              "buckets", "every flow by node per time bucket (hubble_flows_processed_total)",
              "node"),
    PanelSpec("protocols", "Protocol usage", "Network", traffic.protocols, "frame",
              "forwarded/redirected non-reply L4 flows by protocol "
              "(hubble_port_distribution_total)"),
    PanelSpec("top_destination_ports", "Top destination ports", "Network",
              traffic.top_destination_ports, "top",
              "forwarded/redirected non-reply L4 flows by destination port, port 0 excluded "
              "(hubble_port_distribution_total)"),
    PanelSpec("tcp_flags", "TCP flags", "Network", traffic.tcp_flags, "frame",
              "forwarded TCP flows by flag: SYN, SYN-ACK, FIN, RST (hubble_tcp_flags_total)"),
    PanelSpec("syns_without_syn_ack", "Missing TCP SYN-ACKs", "Network",
              unanswered.syns_without_syn_ack, "top",
              "forwarded SYNs of connections that got no SYN-ACK back (hubble_tcp_flags_total)",
              pairs=True),
    PanelSpec("echo_requests_without_reply", "Missing ICMP Echo-Replies", "Network",
              unanswered.echo_requests_without_reply, "top",
              "ICMP echo requests with no echo reply back within 10s (hubble_icmp_total)",
              pairs=True),
    PanelSpec("top_dns_queries", "Top DNS queries", "DNS", l7.top_dns_queries, "top",
              "DNS requests and dropped DNS records by query (hubble_dns_queries_total)"),
    PanelSpec("dns_errors", "DNS errors by rcode", "DNS", l7.dns_errors, "frame",
              "DNS responses by rcode other than No Error (hubble_dns_responses_total)"),
    PanelSpec("dns_queries_without_response", "Missing DNS responses", "DNS",
              unanswered.dns_queries_without_response, "top",
              "DNS requests with no response back (hubble_dns_queries_total, "
              "hubble_dns_responses_total)", pairs=True),
    PanelSpec("http_requests", "HTTP requests by method", "HTTP", l7.http_requests, "frame",
              "HTTP request records by method (hubble_http_requests_total)"),
    PanelSpec("http_responses", "HTTP responses by status", "HTTP", l7.http_responses, "frame",
              "HTTP response records by status (hubble_http_responses_total)"),
    PanelSpec("http_latency", "HTTP latency p50 / p95 / p99", "HTTP", l7.http_latency, "frame",
              "exact quantiles of HTTP response latency, of the exchanges whose request or "
              "response is selected (hubble_http_request_duration_seconds)", pairs=True),
    PanelSpec("http_success_rate", "HTTP success rate", "HTTP", l7.http_success_rate, "frame",
              "share of HTTP responses that are not 5xx"),
    PanelSpec("lost_events_by_source", "Lost events", "General", lost.lost_events, "frame",
              "events the source reported lost, by source and node "
              "(hubble_lost_events_total)"),
)


_ENDS = ("connection ends (a connection is judged at its source pod's egress and at its "
         "destination pod's ingress) ")
# `flowlens report --policy` and `flowlens policy check`: what the given policies change.
POLICY_PANELS: tuple[PanelSpec, ...] = (
    PanelSpec("policy_changes", "What this policy changes", "Policy check",
              PolicyCheck.changes, "policy",
              _ENDS + "by observed verdict (newest policy outcome in the flows) against the "
              "verdict the given policies predict, with their flows"),
    PanelSpec("policy_would_break", "Would break: allowed now, denied by the policies",
              "Policy check", partial(PolicyCheck.ends, change="would_break"), "policy",
              "connection ends observed allowed that the policies would deny"),
    PanelSpec("policy_newly_allowed", "Newly allowed: denied now, allowed by the policies",
              "Policy check", partial(PolicyCheck.ends, change="newly_allowed"), "policy",
              "connection ends observed denied that the policies would allow"),
    PanelSpec("policy_unknown", "Cannot tell", "Policy check",
              partial(PolicyCheck.ends, change="unknown"), "policy",
              "connection ends whose observed or predicted verdict is unknown (reason says why)"),
    PanelSpec("policy_unchanged", "Unchanged", "Policy check",
              partial(PolicyCheck.ends, change="unchanged"), "policy",
              "connection ends the policies would treat as they were treated"),
)


@dataclass(frozen=True)
class Panel:
    spec: PanelSpec
    data: pd.DataFrame

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass(frozen=True)
class Window:
    """The time window a report covers, and what durations were counted back from."""

    since: pd.Timestamp | None
    until: pd.Timestamp | None
    first_flow: pd.Timestamp | None
    last_flow: pd.Timestamp | None
    anchor: Anchor
    anchored_at: pd.Timestamp | None
    requested_since: str | None = None
    requested_until: str | None = None
    # With --since: the window asked for (until: --until, else what durations count back
    # from), and the share of it the input holds flows for (a relay's ring buffer, a capture
    # that starts later).
    asked_since: pd.Timestamp | None = None
    asked_until: pd.Timestamp | None = None
    covered: float | None = None


@dataclass(frozen=True)
class InputSummary:
    """What was read: the sources, their flows, the time range they hold (a relay's whole
    range, not only what it sent), and the filter flags."""

    sources: tuple[str, ...]
    flows: int
    first_flow: pd.Timestamp | None
    last_flow: pd.Timestamp | None
    filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    input: InputSummary
    window: Window
    flows: int
    lost_events: int
    verdicts: pd.DataFrame
    bucket: pd.Timedelta
    top: int
    panels: tuple[Panel, ...]
    policy: PolicyCheck | None = None  # with --policy: what the policies would change
    title: str = "flowlens report"
    # What the input could not carry (hubble's text formats), and which panels that changes.
    missing: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COVERAGE))
    # Who is denied, by what, since when, still: what every format opens with (None for a
    # policy check alone).
    answer: Answer | None = None

    @cached_property
    def policy_panels(self) -> tuple[Panel, ...]:
        """The policy check's sections (none without one)."""
        if self.policy is None:
            return ()
        return tuple(Panel(spec, spec.compute(self.policy)) for spec in POLICY_PANELS)

    @property
    def all_panels(self) -> tuple[Panel, ...]:
        """The dashboard's panels, then the policy check's."""
        return self.panels + self.policy_panels

    def panel(self, key: str) -> Panel:
        """The panel with this key (its rows are `.data`)."""
        for panel in self.panels:
            if panel.key == key:
                return panel
        raise KeyError(key)


def build_report(df: pd.DataFrame, filters: _filters.Filters | None = None, *,
                 sources: Sequence[str] = (), top: int = DEFAULT_TOP,
                 bucket: pd.Timedelta | None = None, anchor: Anchor = "data",
                 now: pd.Timestamp | None = None, panels: Sequence[PanelSpec] = PANELS,
                 policies: PolicySet | None = None,
                 named_ports: Mapping[str, int] | None = None,
                 title: str = "flowlens report", filtered: bool = True,
                 held: tuple[pd.Timestamp | None, pd.Timestamp | None] | None = None,
                 ) -> Report:
    """Every panel (of `panels`) over the flows of `df` that `filters` select; with
    `policies`, also what those policies would change (flowlens.policy.check).

    Durations in --since/--until count back from the newest flow of `df` (`anchor="data"`, for
    files), or from `now` (`anchor="now"`: `df` came from a relay for the window the selection
    flags asked; `filtered`: the relay also applied the filter flags; `held`: the oldest and
    newest flow the relay holds, or the input when `df` was read pruned to the window). A
    relay's window ends at its newest flow sent, without --until."""
    filters = filters or _filters.Filters()
    given = _input_summary(df, sources, filters, held)
    anchored_at = given.last_flow if anchor == "data" else (now or pd.Timestamp.now(tz="UTC"))
    since, until = _filters.time_window(filters, anchored_at)
    window = report_window(filters, given, anchor=anchor, anchored_at=anchored_at,
                           sent=_time_range(df))
    if anchor == "data":
        rows = _filters.selected_rows(filters, df, newest=anchored_at)
    elif filtered:
        rows = np.arange(len(df))
    else:  # the relay chose the window; the filter flags are left to do
        rows = _filters.selected_rows(replace(filters, first=None, last=None), df,
                                      newest=anchored_at)
    chosen = _with_lost(df, rows, since, until)
    selected = np.zeros(len(df), dtype=bool)
    selected[rows] = True
    first, last = _time_range(chosen)
    window = replace(window, first_flow=first, last_flow=last)
    buckets = window_buckets(window.since, window.until, bucket)
    with sharing():
        computed = tuple(Panel(spec, _compute(spec, chosen, buckets, top, df, selected))
                         for spec in panels)
        checked = None if policies is None else _check_policies(chosen, policies, named_ports)
        return Report(given, window, len(chosen), lost.total_lost_events(chosen),
                      traffic.verdicts(chosen), buckets.size, top, computed, checked, title,
                      missing_fields(chosen),
                      answer(df, selected, in_window(df, window.since, window.until))
                      if panels else None)


def in_window(df: pd.DataFrame, start: pd.Timestamp | None,
              end: pd.Timestamp | None) -> np.ndarray:
    """The flows of the window, whatever the filters."""
    times = df["time"]
    inside = times.notna().to_numpy(copy=True)
    if start is not None:
        inside &= np.asarray((times >= start).fillna(False), dtype=bool)
    if end is not None:
        inside &= np.asarray((times <= end).fillna(False), dtype=bool)
    return inside


def report_window(filters: _filters.Filters, given: InputSummary, *, anchor: Anchor,
                  anchored_at: pd.Timestamp | None,
                  sent: tuple[pd.Timestamp | None, pd.Timestamp | None] = (None, None)
                  ) -> Window:
    """The window a report over `given` covers (its first and last flow left to fill in):
    --since/--until counted back from `anchored_at`, else the input's (or with
    `anchor="now"`, what the relay `sent`) oldest and newest flow."""
    since, until = _filters.time_window(filters, anchored_at)
    sent_first, sent_last = sent
    start = since if since is not None else (given.first_flow if anchor == "data" else sent_first)
    end = until if until is not None else (
        anchored_at if anchor == "data" or sent_last is None else sent_last)
    if start is not None and given.first_flow is not None and start < given.first_flow <= end:
        start = given.first_flow  # --since before the oldest flow held: `covered` says so
    asked_until = until if until is not None else anchored_at
    return Window(start, end, None, None, anchor, anchored_at, filters.since, filters.until,
                  since, asked_until if since is not None else None,
                  _covered(since, asked_until, given.first_flow))


def _covered(since: pd.Timestamp | None, until: pd.Timestamp | None,
             held_from: pd.Timestamp | None) -> float | None:
    """The share of since..until after the oldest flow the input holds (None: no --since)."""
    if since is None or until is None or until <= since:
        return None
    if held_from is None:
        return 0.0
    # In integer nanoseconds: a window of more than 292 years overflows a Timedelta.
    after = until.value - max(since, held_from).value
    return float(min(max(after / (until.value - since.value), 0.0), 1.0))


def _with_lost(df: pd.DataFrame, rows: np.ndarray, since: pd.Timestamp | None,
               until: pd.Timestamp | None) -> pd.DataFrame:
    """The rows, with every lost event of the time window: a report's caveat is about the
    data, whatever the filters (`tail` filters them as hubble does)."""
    if len(rows) == len(df):
        chosen = _all(df)
        set_lost_events(chosen, _lost_within(df, since, until))
        return chosen
    return take(df, rows, np.flatnonzero(_in_time(lost.lost_event_records(df)["time"], since,
                                                  until)))


def _all(df: pd.DataFrame) -> pd.DataFrame:
    """Every row, without copying them (the caller's attrs are left alone)."""
    out = df.copy(deep=False)
    out.attrs = dict(df.attrs)
    return out


def _compute(spec: PanelSpec, df: pd.DataFrame, buckets: Buckets, top: int,
             every: pd.DataFrame, selected: np.ndarray) -> pd.DataFrame:
    if spec.pairs:
        args = (top,) if spec.takes == "top" else ()
        return spec.compute(every, *args, selected=selected)
    if spec.takes == "buckets":
        return spec.compute(df, buckets)
    if spec.takes == "buckets_top":
        return spec.compute(df, buckets, top)
    if spec.takes == "top":
        return spec.compute(df, top)
    return spec.compute(df)


def _input_summary(df: pd.DataFrame, sources: Sequence[str], filters: _filters.Filters,
                   held: tuple[pd.Timestamp | None, pd.Timestamp | None] | None
                   ) -> InputSummary:
    first, last = _time_range(df) if held is None else held
    return InputSummary(tuple(str(s) for s in sources), len(df), first, last,
                        tuple(filters.argv()))


def _time_range(df: pd.DataFrame) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    times = df["time"]
    if times.notna().any():
        return times.min(), times.max()
    return None, None


def _lost_within(df: pd.DataFrame, since: pd.Timestamp | None,
                 until: pd.Timestamp | None) -> pd.DataFrame:
    """Lost-event records reported inside the time window (all of them without one)."""
    records = lost.lost_event_records(df)
    return records[_in_time(records["time"], since, until)].reset_index(drop=True)


def _in_time(times: pd.Series, since: pd.Timestamp | None,
             until: pd.Timestamp | None) -> np.ndarray:
    """Times inside the window; a record without a time is inside."""
    keep = np.ones(len(times), dtype=bool)
    if since is not None:
        keep &= np.asarray((times >= since).fillna(True), dtype=bool)
    if until is not None:
        keep &= np.asarray((times <= until).fillna(True), dtype=bool)
    return keep

