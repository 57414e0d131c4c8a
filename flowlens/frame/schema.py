"""The flows frame: every column, its dtype and what it holds — declared once, here.

A frame that leaves flowlens always has exactly these columns in this order, NA where the source
did not carry the value (text carries less than jsonpb). Column names are API: add, never rename.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    doc: str


_C = Column

COLUMNS: tuple[Column, ...] = (
    _C("time", "datetime64[ns, UTC]", "capture time"),
    _C("node", "category", "node that observed the flow (Flow.node_name)"),
    _C("node_labels", "category", "labels of that node as key=value, joined with ','"),
    _C("verdict", "category", "Verdict name: FORWARDED, DROPPED, AUDIT, REDIRECTED, ..."),
    _C("drop_reason", "category", "DropReason name (POLICY_DENIED, ...); NA unless dropped"),
    _C("drop_reason_code", "UInt16", "numeric drop reason, also for codes without an enum name"),
    _C("event_type", "Int16", "monitor event type: 1 drop, 4 trace, 5 policy verdict, 129 L7, ..."),
    _C("event_subtype", "Int16", "monitor event sub type (trace point, drop reason, ...)"),
    _C("event", "category", "hubble's TYPE label without direction: to-endpoint, Policy denied, "
       "policy-verdict:none, http-request, dns-request proxy, ..."),
    _C("traffic_direction", "category", "INGRESS or EGRESS; NA when unknown"),
    _C("is_reply", "boolean", "reply packet; NA when unknown (<> in compact text)"),
    _C("policy_match", "category", "policy-verdict match: none, L3-Only, L3-L4, L4-Only, all, ..."),
    _C("src_cluster", "category", "cluster of the source endpoint (Endpoint.cluster_name)"),
    _C("src_namespace", "category", "source namespace"),
    _C("src_pod", "category", "source pod name"),
    _C("src_workload", "category", "source workloads as Kind/name, joined with ','"),
    _C("src_service", "category", "source service as namespace/name"),
    _C("src_identity", "UInt32", "source security identity (reserved ones keep their number)"),
    _C("src_labels", "category", "source labels joined with ',' in the order given"),
    _C("src_ip", "category", "source IP (pre-SNAT)"),
    _C("src_ip_xlated", "category", "source IP after SNAT (IP.source_xlated), when translated"),
    _C("src_port", "UInt16", "source port; NA when the protocol has none"),
    _C("src_names", "category", "DNS names known for the source IP, joined with ','"),
    _C("dst_cluster", "category", "cluster of the destination endpoint"),
    _C("dst_namespace", "category", "destination namespace"),
    _C("dst_pod", "category", "destination pod name"),
    _C("dst_workload", "category", "destination workloads as Kind/name, joined with ','"),
    _C("dst_service", "category", "destination service as namespace/name"),
    _C("dst_identity", "UInt32", "destination security identity"),
    _C("dst_labels", "category", "destination labels joined with ','"),
    _C("dst_ip", "category", "destination IP"),
    _C("dst_port", "UInt16", "destination port; NA when the protocol has none"),
    _C("dst_names", "category", "DNS names known for the destination IP, joined with ','"),
    _C("ip_version", "category", "IPv4 or IPv6"),
    _C("encrypted", "boolean", "the packet was encrypted (WireGuard/IPsec); NA without an IP "
       "header or when the source does not say"),
    _C("protocol", "category", "L4 protocol: TCP, UDP, ICMPv4, ICMPv6, SCTP, VRRP, IGMP"),
    _C("tcp_flags", "category", "TCP flags set, in hubble's order, e.g. SYN,ACK"),
    _C("icmp_type", "category", "ICMP type/code text as hubble prints it: EchoRequest, "
       "DestinationUnreachable(Port), ..."),
    _C("l7_type", "category", "REQUEST, RESPONSE or SAMPLE"),
    _C("l7_protocol", "category", "http, dns or kafka"),
    _C("http_method", "category", "HTTP method"),
    _C("http_url", "category", "HTTP URL"),
    _C("http_code", "Int16", "HTTP status code (responses)"),
    _C("http_protocol", "category", "HTTP protocol, e.g. HTTP/1.1"),
    _C("http_headers", "category", "HTTP headers as 'Key: value' lines joined with '\\n', in "
       "the flow's order"),
    _C("dns_query", "category", "DNS query name (with trailing dot)"),
    _C("dns_rcode", "Int16", "DNS response code (responses)"),
    _C("dns_qtypes", "category", "DNS query types joined with ','"),
    _C("dns_ips", "category", "DNS answer IPs joined with ','"),
    _C("latency_ns", "UInt64", "L7 response latency in nanoseconds"),
    _C("auth_type", "category", "policy auth type when not DISABLED (SPIRE, ...)"),
    _C("ip_trace_id", "UInt64", "IP option trace id"),
    _C("trace_id", "category", "trace-context (W3C traceparent) trace id, hex"),
    _C("interface", "category", "network interface the packet was seen on (name)"),
    _C("interface_index", "UInt32", "that interface's index; NA when the flow names none"),
    _C("policies", "string", "policies that allowed or denied the flow, as 'name (Kind)' joined "
       "with ', ' (ingress/egress list picked by direction and verdict)"),
    _C("summary", "string", "the server's summary text (Flow.Summary)"),
    _C("uuid", "string", "flow UUID"),
)

NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
DTYPES: dict[str, str] = {c.name: c.dtype for c in COLUMNS}

# Columns of the lost-events frame kept in frame.attrs["lost_events"]. `position` is the index of
# the first flow row after the record, so renderers can interleave them as hubble printed them.
LOST_EVENT_COLUMNS: tuple[Column, ...] = (
    _C("time", "datetime64[ns, UTC]", "when the loss was reported"),
    _C("node", "category", "node that lost the events"),
    _C("source", "category", "LostEventSource: HUBBLE_RING_BUFFER, PERF_EVENT_RING_BUFFER, ..."),
    _C("cpu", "Int32", "CPU, when reported"),
    _C("num_events_lost", "UInt64", "how many events were lost"),
    _C("first", "datetime64[ns, UTC]", "first lost event time, when reported"),
    _C("last", "datetime64[ns, UTC]", "last lost event time, when reported"),
    _C("position", "Int64", "row of the first flow after this record in its source"),
)
