"""Every counting panel against Hubble's metric handlers, restated here from the spec
(../shared/spec/hubble-api.md §5) over the raw jsonpb records, independently of the frame:
on the real hubble-otel captures and on the lab sample (which has the drops they lack)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from shared_data import SHARED

import flowlens
from flowlens import analyses as A

REAL = SHARED / "real-flows" / "hubble-otel"
LAB = Path(__file__).resolve().parents[1] / "samples" / "lab.jsonpb"
TRACE_POINTS = ("to-endpoint", "to-proxy", "to-host", "to-stack", "to-overlay", "from-endpoint",
                "from-proxy", "from-host", "from-stack", "from-overlay", "from-network",
                "to-network", "from-crypto", "to-crypto")
RCODES = {0: "No Error", 1: "Format Error", 2: "Server Failure", 3: "Non-Existent Domain",
          4: "Not Implemented", 5: "Query Refused"}


def flows(path: Path) -> Iterator[dict[str, Any]]:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    for file in files:
        for line in file.read_text().splitlines():
            record = json.loads(line)
            if "flow" in record:
                yield record["flow"]


def event_type(f: dict[str, Any]) -> int:
    return int(f.get("event_type", {}).get("type", 0))


def l7_kind(f: dict[str, Any]) -> str | None:
    l7 = f.get("l7", {})
    return next((k for k in ("dns", "http", "kafka") if k in l7), None)


def tcp(f: dict[str, Any]) -> dict[str, Any] | None:
    return f.get("l4", {}).get("TCP")


def l4_protocol(f: dict[str, Any]) -> str | None:
    return next(iter(f.get("l4", {})), None)


def dport(f: dict[str, Any]) -> int:
    l4 = f.get("l4", {})
    proto = next(iter(l4), None)
    return int(l4[proto].get("destination_port", 0)) if proto in ("TCP", "UDP", "SCTP") else 0


def peer(endpoint: dict[str, Any], ip: str | None) -> str:
    """The `pod` context of the source/destination label, with the fallbacks the panels use."""
    if endpoint.get("pod_name"):
        ns = endpoint.get("namespace")
        return f"{ns}/{endpoint['pod_name']}" if ns else endpoint["pod_name"]
    names = {1: "host", 2: "world", 3: "unmanaged", 4: "health", 5: "init", 6: "remote-node",
             7: "kube-apiserver", 8: "ingress", 9: "world-ipv4", 10: "world-ipv6"}
    identity = int(endpoint.get("identity", 0))
    if identity in names:
        return names[identity]
    return ip or "unknown"


def handlers(path: Path) -> dict[str, Counter[Any]]:
    """Each metric as its handler counts it, keyed by the labels a panel groups by."""
    m: dict[str, Counter[Any]] = {k: Counter() for k in (
        "type", "verdict", "drop", "denied_src", "denied_dst", "policy", "protocol", "port",
        "tcp", "dns_query", "dns_error", "http_request", "http_response", "http_duration")}
    for f in flows(path):
        kind, verdict, l7 = event_type(f), f.get("verdict", "VERDICT_UNKNOWN"), l7_kind(f)
        # hubble_flows_processed_total: every flow, type and subtype by event type
        if kind == 129:
            m["type"]["L7", {"dns": "DNS", "http": "HTTP", "kafka": "Kafka"}.get(l7 or "", "")] += 1
        elif kind == 4:
            m["type"]["Trace", TRACE_POINTS[int(f["event_type"].get("sub_type", 0))]] += 1
        else:
            name = {1: "Drop", 3: "Capture", 5: "PolicyVerdict"}.get(kind)
            m["type"][(name, "") if name else ("Unknown", str(kind))] += 1
        m["verdict"][verdict] += 1
        ip = f.get("IP", {})
        # hubble_drop_total: verdict DROPPED, by reason name
        if verdict == "DROPPED":
            reason = f.get("drop_reason_desc", "DROP_REASON_UNKNOWN")
            m["drop"][reason] += 1
            if reason == "POLICY_DENIED":
                m["denied_src"][peer(f.get("source", {}), ip.get("source"))] += 1
                m["denied_dst"][peer(f.get("destination", {}), ip.get("destination"))] += 1
        # hubble_policy_verdicts_total: policy-verdict events (not from host) and L7 events
        source_identity = int(f.get("source", {}).get("identity", 0))
        if (kind == 5 and source_identity != 1) or kind == 129:
            match = f"l7/{l7}" if kind == 129 else _match(f)
            m["policy"][f.get("traffic_direction", "TRAFFIC_DIRECTION_UNKNOWN").lower(), match,
                        verdict.lower()] += 1
        # hubble_port_distribution_total: forwarded/redirected non-reply flows with L4
        proto = l4_protocol(f)
        if verdict in ("FORWARDED", "REDIRECTED") and proto and not f.get("is_reply", False):
            m["protocol"][proto] += 1
            if dport(f):
                m["port"][proto, dport(f)] += 1
        # hubble_tcp_flags_total: forwarded TCP with flags, by family
        flags = (tcp(f) or {}).get("flags")
        if verdict == "FORWARDED" and flags:
            family = ip.get("ipVersion", "")
            if flags.get("SYN"):
                m["tcp"][family, "SYN-ACK" if flags.get("ACK") else "SYN"] += 1
            for flag in ("FIN", "RST"):
                if flags.get(flag):
                    m["tcp"][family, flag] += 1
        # hubble_dns_*: requests and dropped DNS records; responses by rcode
        l7_type = f.get("l7", {}).get("type")
        if l7 == "dns":
            dns = f["l7"]["dns"]
            if l7_type == "REQUEST" or verdict == "DROPPED":
                m["dns_query"][dns.get("query", "")] += 1
            elif l7_type == "RESPONSE" and int(dns.get("rcode", 0)) != 0:
                m["dns_error"][RCODES.get(int(dns["rcode"]), str(dns["rcode"]))] += 1
        # hubble_http_*: requests by method, responses by status, durations of responses
        if l7 == "http":
            http = f["l7"]["http"]
            if l7_type == "REQUEST":
                m["http_request"][http.get("method", "")] += 1
            elif l7_type == "RESPONSE":
                m["http_response"][int(http.get("code", 0))] += 1
                m["http_duration"]["observed"] += 1
    return m


_MATCHES = {0: "none", 1: "l3-only", 2: "l3-l4", 3: "l4-only", 4: "all", 5: "l3-proto",
            6: "proto-only"}


def _match(f: dict[str, Any]) -> str:
    return _MATCHES.get(int(f.get("policy_match_type", 0)), "unknown")


def as_counter(frame: pd.DataFrame, keys: list[str], value: str = "flows") -> Counter[Any]:
    out: Counter[Any] = Counter()
    for row in frame.itertuples(index=False):
        key = tuple(getattr(row, k) for k in keys)
        out[key[0] if len(key) == 1 else key] += int(getattr(row, value))
    return out


@pytest.mark.parametrize("path", [REAL, LAB], ids=["hubble-otel", "lab"])
def test_every_counting_panel_counts_as_its_metric_handler(path: Path) -> None:
    expect = handlers(path)
    df = flowlens.read(path)
    assert as_counter(A.flows_by_type(df), ["type", "subtype"]) == expect["type"]
    assert as_counter(A.verdicts(df), ["verdict"]) == expect["verdict"]
    assert as_counter(A.drop_reasons(df), ["reason"]) == expect["drop"]
    assert as_counter(A.top_denied_sources(df, 1000), ["source"]) == expect["denied_src"]
    assert as_counter(A.top_denied_destinations(df, 1000), ["destination"]) == expect["denied_dst"]
    assert as_counter(A.policy_verdicts(df), ["direction", "match", "action"]) == expect["policy"]
    assert as_counter(A.protocols(df), ["protocol"]) == expect["protocol"]
    assert as_counter(A.top_destination_ports(df, 1000), ["protocol", "port"]) == expect["port"]
    assert as_counter(A.tcp_flags(df), ["family", "flag"]) == expect["tcp"]
    assert as_counter(A.top_dns_queries(df, 1000), ["query"], "queries") == expect["dns_query"]
    assert as_counter(A.dns_errors(df), ["rcode"], "responses") == expect["dns_error"]
    assert as_counter(A.http_requests(df), ["method"], "requests") == expect["http_request"]
    assert as_counter(A.http_responses(df), ["status"], "responses") == expect["http_response"]
    assert A.http_latency(df)["responses"].iloc[0] == expect["http_duration"]["observed"]


def test_policy_verdicts_leave_out_the_host_only_for_policy_verdict_events() -> None:
    """The hubble-otel captures have ten egress HTTP records from the host identity: the
    handler counts L7 events whatever their source."""
    got = as_counter(A.policy_verdicts(flowlens.read(REAL)), ["direction", "match", "action"])
    assert got["egress", "l7/http", "forwarded"] == 418
