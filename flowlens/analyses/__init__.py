"""The dashboard's answers from flows: pure functions, a flows frame in, a small frame out.

Each function reproduces one panel of Cilium's Grafana Hubble dashboards and counts exactly as
that panel's metric does (../shared/spec/dashboards.md); its docstring names the panel.
`build_report` runs them all over one window. Nothing here reads, writes or prints.

    >>> import flowlens
    >>> from flowlens import analyses
    >>> df = flowlens.read("samples/lab.jsonpb")
    >>> analyses.top_denied_sources(df).iloc[0]["source"]
    'default/not-frontend-7db9747986-gktg6'
"""

from flowlens.analyses.answer import Answer, answer
from flowlens.analyses.buckets import Buckets, choose_bucket, parse_bucket, time_buckets
from flowlens.analyses.coverage import missing_fields
from flowlens.analyses.drops import (
    denied_destinations_over_time,
    denied_sources_over_time,
    drop_reasons,
    drop_reasons_over_time,
    policy_verdicts,
    top_denied_destinations,
    top_denied_sources,
)
from flowlens.analyses.l7 import (
    dns_errors,
    http_latency,
    http_requests,
    http_responses,
    http_success_rate,
    top_dns_queries,
)
from flowlens.analyses.lost import lost_events, total_lost_events
from flowlens.analyses.report import PANELS, POLICY_PANELS, Report, build_report
from flowlens.analyses.traffic import (
    flows_by_node,
    flows_by_type,
    forwarded_vs_dropped,
    protocols,
    tcp_flags,
    top_destination_ports,
    verdicts,
)
from flowlens.analyses.unanswered import (
    dns_queries_without_response,
    echo_requests_without_reply,
    syns_without_syn_ack,
)

__all__ = [
    "PANELS", "POLICY_PANELS", "Answer", "Buckets", "Report", "answer", "build_report",
    "choose_bucket", "denied_destinations_over_time", "denied_sources_over_time", "dns_errors",
    "dns_queries_without_response", "drop_reasons", "drop_reasons_over_time",
    "echo_requests_without_reply", "flows_by_node", "flows_by_type", "forwarded_vs_dropped",
    "http_latency", "http_requests", "http_responses", "http_success_rate", "lost_events",
    "missing_fields", "parse_bucket", "policy_verdicts", "protocols", "syns_without_syn_ack",
    "tcp_flags", "time_buckets", "top_denied_destinations", "top_denied_sources",
    "top_destination_ports", "top_dns_queries", "total_lost_events", "verdicts",
]
