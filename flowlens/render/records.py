"""Frame rows back to GetFlowsResponse dicts (protojson shape), for sources that had no jsonpb.

What a row does not carry (MACs, endpoint IDs, ...) is left out, as a server leaves out unset
fields; hubble reading the result prints the same text the row was read from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd

from flowlens import _hubble as H
from flowlens.frame import lost_events

_TRACE_POINT_ENUM = (
    "TO_ENDPOINT", "TO_PROXY", "TO_HOST", "TO_STACK", "TO_OVERLAY", "FROM_ENDPOINT", "FROM_PROXY",
    "FROM_HOST", "FROM_STACK", "FROM_OVERLAY", "FROM_NETWORK", "TO_NETWORK", "FROM_CRYPTO",
    "TO_CRYPTO",
)
_SOCK_ENUM = (
    "SOCK_XLATE_POINT_UNKNOWN", "SOCK_XLATE_POINT_PRE_DIRECTION_FWD",
    "SOCK_XLATE_POINT_POST_DIRECTION_FWD", "SOCK_XLATE_POINT_PRE_DIRECTION_REV",
    "SOCK_XLATE_POINT_POST_DIRECTION_REV",
)
_CAPTURE_ENUM = {v: k for k, v in H.DEBUG_CAPTURE_POINTS.items()}


def _na(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def _time(ts: Any) -> str | None:
    if _na(ts):
        return None
    text: str = ts.strftime("%Y-%m-%dT%H:%M:%S")
    ns = ts.value % 1_000_000_000
    if ns:
        frac = f"{ns:09d}"
        digits = 3 if frac[3:] == "000000" else 6 if frac[6:] == "000" else 9
        text += "." + frac[:digits]
    return text + "Z"


def _endpoint(r: dict[str, Any], side: str) -> dict[str, Any]:
    ep: dict[str, Any] = {}
    if not _na(r[f"{side}_identity"]) and r[f"{side}_identity"]:
        ep["identity"] = int(r[f"{side}_identity"])
    if not _na(r[f"{side}_cluster"]):
        ep["cluster_name"] = r[f"{side}_cluster"]
    if not _na(r[f"{side}_namespace"]):
        ep["namespace"] = r[f"{side}_namespace"]
    if not _na(r[f"{side}_labels"]):
        ep["labels"] = r[f"{side}_labels"].split(",")
    if not _na(r[f"{side}_pod"]):
        ep["pod_name"] = r[f"{side}_pod"]
    if not _na(r[f"{side}_workload"]):
        ep["workloads"] = [dict(zip(("kind", "name"), w.split("/", 1), strict=False))
                           for w in r[f"{side}_workload"].split(",")]
    return ep


def _service(value: Any) -> dict[str, str] | None:
    if _na(value):
        return None
    namespace, _, name = value.rpartition("/")
    return {"name": name, "namespace": namespace} if namespace else {"name": name}


def _l4(r: dict[str, Any]) -> dict[str, Any] | None:
    proto = r["protocol"]
    if _na(proto) and not (_na(r["src_port"]) and _na(r["dst_port"])):
        # Text prints no L4 protocol on L7 lines; HTTP and Kafka ride on TCP, DNS mostly on UDP.
        proto = {"http": "TCP", "kafka": "TCP", "dns": "UDP"}.get(r["l7_protocol"])
    if _na(proto):
        return None
    body: dict[str, Any] = {}
    if proto in H.PORT_PROTOCOLS:
        if not _na(r["src_port"]):
            body["source_port"] = int(r["src_port"])
        if not _na(r["dst_port"]):
            body["destination_port"] = int(r["dst_port"])
        if proto == "TCP" and not _na(r["tcp_flags"]):
            body["flags"] = dict.fromkeys(r["tcp_flags"].split(","), True)
    return {proto: body}


def _l7(r: dict[str, Any]) -> dict[str, Any] | None:
    if _na(r["l7_type"]):
        return None
    l7: dict[str, Any] = {"type": r["l7_type"]}
    if not _na(r["latency_ns"]) and r["latency_ns"]:
        l7["latency_ns"] = str(int(r["latency_ns"]))
    proto = r["l7_protocol"]
    if proto == "http":
        http: dict[str, Any] = {}
        if not _na(r["http_code"]) and r["http_code"]:
            http["code"] = int(r["http_code"])
        for key in ("method", "url", "protocol"):
            if not _na(r[f"http_{key}"]):
                http[key] = r[f"http_{key}"]
        if not _na(r["http_headers"]):
            http["headers"] = [_header(line) for line in r["http_headers"].split("\n")]
        l7["http"] = http
    elif proto == "dns":
        dns: dict[str, Any] = {}
        if not _na(r["dns_query"]):
            dns["query"] = r["dns_query"]
        if not _na(r["dns_ips"]):
            dns["ips"] = r["dns_ips"].split(",")
        event = r["event"]
        if isinstance(event, str) and " " in event and event.split(" ", 1)[1]:
            dns["observation_source"] = event.split(" ", 1)[1]
        if not _na(r["dns_rcode"]) and r["dns_rcode"]:
            dns["rcode"] = int(r["dns_rcode"])
        if not _na(r["dns_qtypes"]):
            dns["qtypes"] = r["dns_qtypes"].split(",")
        l7["dns"] = dns
    elif proto == "kafka":
        l7["kafka"] = {}
    return l7


def _header(line: str) -> dict[str, str]:
    """'Key: value' back to a header; the separator is searched after the first character, as
    HTTP/2 pseudo-headers (':authority') start with a colon."""
    at = line.find(": ", 1)
    return {"key": line[:at], "value": line[at + 2:]} if at >= 0 else {"key": line, "value": ""}


def _policies(value: Any) -> list[dict[str, str]]:
    out = []
    for item in value.split(", "):
        name, _, kind = item.rpartition(" (")
        out.append({"name": name, "kind": kind.rstrip(")")})
    return out


def flow_dict(r: dict[str, Any]) -> dict[str, Any]:
    """One frame row (as a dict of column -> value) as a protojson Flow dict."""
    f: dict[str, Any] = {}
    if (t := _time(r["time"])) is not None:
        f["time"] = t
    if not _na(r["uuid"]):
        f["uuid"] = r["uuid"]
    f["verdict"] = r["verdict"] if not _na(r["verdict"]) else "VERDICT_UNKNOWN"
    if not _na(r["drop_reason_code"]):
        f["drop_reason"] = int(r["drop_reason_code"])
    if not _na(r["auth_type"]):
        f["auth_type"] = r["auth_type"]
    # hubble names endpoints only for flows with an IP message: keep one, even empty, when the
    # text showed pods but not their addresses.
    ip = {k: r[c] for k, c in (("source", "src_ip"), ("source_xlated", "src_ip_xlated"),
                               ("destination", "dst_ip")) if not _na(r[c])}
    if not _na(r["ip_version"]):
        ip["ipVersion"] = r["ip_version"]
    if not _na(r["encrypted"]) and r["encrypted"]:
        ip["encrypted"] = True
    f["IP"] = ip
    if (l4 := _l4(r)) is not None:
        f["l4"] = l4
    f["source"] = _endpoint(r, "src")
    f["destination"] = _endpoint(r, "dst")
    etype = None if _na(r["event_type"]) else int(r["event_type"])
    f["Type"] = "L7" if not _na(r["l7_type"]) else "SOCK" if etype == 7 else "L3_L4"
    if not _na(r["node"]):
        f["node_name"] = r["node"]
    if not _na(r["node_labels"]):
        f["node_labels"] = r["node_labels"].split(",")
    for col, key in (("src_names", "source_names"), ("dst_names", "destination_names")):
        if not _na(r[col]):
            f[key] = r[col].split(",")
    if (l7 := _l7(r)) is not None:
        f["l7"] = l7
    if etype is not None:
        sub = 0 if _na(r["event_subtype"]) else int(r["event_subtype"])
        f["event_type"] = {"type": etype, "sub_type": sub} if sub else {"type": etype}
    for col, key in (("src_service", "source_service"), ("dst_service", "destination_service")):
        if (svc := _service(r[col])) is not None:
            f[key] = svc
    direction = r["traffic_direction"]
    if not _na(direction):
        f["traffic_direction"] = direction
    if etype == 5 and not _na(r["policy_match"]) and r["policy_match"] in H.POLICY_MATCH:
        f["policy_match_type"] = H.POLICY_MATCH.index(r["policy_match"])
    if etype == 4 and f.get("event_type", {}).get("sub_type", 0) < len(_TRACE_POINT_ENUM):
        f["trace_observation_point"] = _TRACE_POINT_ENUM[f["event_type"].get("sub_type", 0)]
    if etype == 3 and r["event"] in _CAPTURE_ENUM:
        f["debug_capture_point"] = r["event"]
    if etype == 7 and r["event"] in H.SOCK_XLATE_POINTS:
        f["sock_xlate_point"] = _SOCK_ENUM[H.SOCK_XLATE_POINTS.index(r["event"])]
    if not _na(r["ip_trace_id"]):
        f["ip_trace_id"] = {"trace_id": str(int(r["ip_trace_id"]))}
    if not _na(r["drop_reason"]):
        f["drop_reason_desc"] = r["drop_reason"]
    if not _na(r["is_reply"]):
        f["is_reply"] = bool(r["is_reply"])
    if not _na(r["interface_index"]):
        iface: dict[str, Any] = {"index": int(r["interface_index"])} if r["interface_index"] \
            else {}
        if not _na(r["interface"]):
            iface["name"] = r["interface"]
        f["interface"] = iface
    if not _na(r["trace_id"]):
        f["trace_context"] = {"parent": {"trace_id": r["trace_id"]}}
    if not _na(r["summary"]):
        f["Summary"] = r["summary"]
    if not _na(r["policies"]) and not _na(direction):
        allowed = r["verdict"] in ("FORWARDED", "REDIRECTED")
        key = f"{direction.lower()}_{'allowed' if allowed else 'denied'}_by"
        f[key] = _policies(r["policies"])
    return f


def _lost_dict(r: dict[str, Any]) -> dict[str, Any]:
    ev: dict[str, Any] = {"source": r["source"], "num_events_lost": str(int(r["num_events_lost"]))}
    if not _na(r["cpu"]):
        ev["cpu"] = int(r["cpu"])
    for key in ("first", "last"):
        if (t := _time(r[key])) is not None:
            ev[key] = t
    out: dict[str, Any] = {"lost_events": ev}
    if not _na(r["node"]):
        out["node_name"] = r["node"]
    if (t := _time(r["time"])) is not None:
        out["time"] = t
    return out


def flow_responses(df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """A GetFlowsResponse dict for every row."""
    rows: list[dict[str, Any]] = df.to_dict("records")  # type: ignore[assignment]
    for row in rows:
        flow = flow_dict(row)
        out: dict[str, Any] = {"flow": flow}
        if "node_name" in flow:
            out["node_name"] = flow["node_name"]
        if "time" in flow:
            out["time"] = flow["time"]
        yield out


def lost_responses(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A GetFlowsResponse dict for every lost-event record beside the frame."""
    rows: list[dict[str, Any]] = lost_events(df).to_dict("records")  # type: ignore[assignment]
    return [_lost_dict(r) for r in rows]


def responses(df: pd.DataFrame, flows: Iterable[dict[str, Any]] | None = None,
              ) -> Iterator[dict[str, Any]]:
    """Every flow and lost-event record in stream order; `flows` (one per row, e.g. the
    records the frame was read from) replaces the ones rebuilt from rows."""
    lost = lost_responses(df)
    positions = [r["position"] for r in df.attrs.get("lost_events", ())]
    li = 0
    for i, flow in enumerate(flow_responses(df) if flows is None else flows):
        while li < len(lost) and positions[li] <= i:
            yield lost[li]
            li += 1
        yield flow
    yield from lost[li:]
