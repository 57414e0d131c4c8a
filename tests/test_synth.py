"""flowlens.synth: the synthetic network-policy lab capture.

The checks restate the server rules of ../shared/spec/hubble-api.md (§2.4, §3.3.6) on their
own instead of calling the generator's helpers, so a wrong rule in the generator fails here.
"""

from __future__ import annotations

import collections
import itertools
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from flowlens.synth import DEFAULT_START, generate_flows, generate_lab, main

Record = dict[str, Any]

PHASE = timedelta(minutes=10)
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z$")
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
FLAG_ORDER = ("SYN", "ACK", "RST", "FIN", "PSH", "URG", "ECE", "CWR", "NS")
TRACE_POINTS = {
    0: "TO_ENDPOINT", 1: "TO_PROXY", 2: "TO_HOST", 3: "TO_STACK", 4: "TO_OVERLAY",
    5: "FROM_ENDPOINT", 6: "FROM_PROXY", 7: "FROM_HOST", 8: "FROM_STACK", 9: "FROM_OVERLAY",
    10: "FROM_NETWORK", 11: "TO_NETWORK", 12: "FROM_CRYPTO", 13: "TO_CRYPTO",
}
DROP_NAMES = {132: "INVALID_SOURCE_IP", 133: "POLICY_DENIED", 136: "CT_MISSING_TCP_ACK_FLAG",
              151: "STALE_OR_UNROUTABLE_IP"}


@pytest.fixture(scope="module")
def lab() -> list[Record]:
    return list(generate_lab())


def _flows(records: list[Record]) -> Iterator[Record]:
    return (r["flow"] for r in records if "flow" in r)


def _when(ts: str) -> datetime:
    """Parse a protojson timestamp (nanoseconds truncated to microseconds, enough here)."""
    base, _, frac = ts[:-1].partition(".")
    return datetime.fromisoformat(base).replace(tzinfo=timezone.utc) + timedelta(
        microseconds=int((frac or "0").ljust(9, "0")[:6]))


def _ns_key(ts: str) -> tuple[str, int]:
    base, _, frac = ts[:-1].partition(".")
    return base, int((frac or "0").ljust(9, "0"))


def _phase(flow: Record) -> int:
    offset = _when(flow["time"]) - DEFAULT_START
    return 1 if offset < PHASE else 2 if offset < 2 * PHASE else 3


def _pod(endpoint: Record) -> str:
    return str(endpoint.get("pod_name", "")).rsplit("-", 2)[0]


def _is_policy_verdict(flow: Record) -> bool:
    return bool(flow["event_type"]["type"] == 5)


# -- determinism and shape ---------------------------------------------------------------------


def test_same_seed_same_records() -> None:
    assert list(generate_lab(seed=3, scale=0.2)) == list(generate_lab(seed=3, scale=0.2))
    assert list(generate_lab(seed=3, scale=0.2)) != list(generate_lab(seed=4, scale=0.2))


def test_start_shifts_time_only() -> None:
    later = DEFAULT_START + timedelta(days=1)
    a = list(generate_lab(seed=5, scale=0.1))
    b = list(generate_lab(seed=5, scale=0.1, start=later))
    assert len(a) == len(b)
    assert _when(b[0]["time"]) - _when(a[0]["time"]) == timedelta(days=1)
    assert [r.get("flow", {}).get("uuid") for r in a] == [r.get("flow", {}).get("uuid") for r in b]


def test_size_at_scale_one(lab: list[Record]) -> None:
    assert 2_000 <= len(lab) <= 4_000
    span = _when(lab[-1]["time"]) - _when(lab[0]["time"])
    assert timedelta(minutes=28) < span < timedelta(minutes=31)
    assert {r["node_name"] for r in lab} == {"kind-control-plane", "kind-worker", "kind-worker2"}


def test_time_ordered_and_stamped(lab: list[Record]) -> None:
    keys = [_ns_key(r["time"]) for r in lab]
    assert keys == sorted(keys)
    for r in lab:
        assert TS_RE.match(r["time"]), r["time"]
        assert set(r) in ({"flow", "node_name", "time"}, {"lost_events", "node_name", "time"})
        if "flow" in r:
            assert r["flow"]["time"] == r["time"]
            assert r["flow"]["node_name"] == r["node_name"]
    # nanosecond resolution is used (protojson then prints 9 digits)
    assert sum(len(r["time"]) == 30 for r in lab) > len(lab) * 0.9


def test_uuids_are_v4_and_unique(lab: list[Record]) -> None:
    uuids = [f["uuid"] for f in _flows(lab)]
    assert all(UUID4_RE.match(u) for u in uuids)
    assert len(set(uuids)) == len(uuids)


def test_every_record_parses_as_get_flows_response(lab: list[Record]) -> None:
    json_format = pytest.importorskip("google.protobuf.json_format")
    observer_pb2 = pytest.importorskip("flowlens._proto.observer.observer_pb2")
    for r in lab:
        json_format.ParseDict(r, observer_pb2.GetFlowsResponse())


def test_records_are_in_hubble_canonical_shape(lab: list[Record]) -> None:
    """Key order (declaration order), omitted defaults, string-encoded 64-bit ints: re-encoding
    with hubble's own rules changes nothing."""
    jsonpb = pytest.importorskip("flowlens.render.jsonpb")
    for r in lab:
        canonical = json.loads(jsonpb.encode_response(r))
        assert json.dumps(canonical, ensure_ascii=False) == json.dumps(r, ensure_ascii=False)


# -- server rules (spec §2.4, §3.3.6) ------------------------------------------------------------


def _expected_l34_summary(l4: Record) -> str:
    if "TCP" in l4:
        flags = l4["TCP"].get("flags", {})
        return "TCP Flags: " + ", ".join(f for f in FLAG_ORDER if flags.get(f))
    if "UDP" in l4:
        return "UDP"
    proto = next(iter(l4))
    names = {("ICMPv4", 0): "EchoReply", ("ICMPv4", 8): "EchoRequest",
             ("ICMPv6", 128): "EchoRequest", ("ICMPv6", 129): "EchoReply"}
    return f"{proto} {names[(proto, l4[proto].get('type', 0))]}"


def _check_l7(flow: Record) -> None:
    l7 = flow["l7"]
    summary = flow["Summary"]
    assert flow["Type"] == "L7" and flow["event_type"] == {"type": 129}
    assert flow["is_reply"] is (l7["type"] == "RESPONSE")
    if "http" in l7:
        http = l7["http"]
        if l7["type"] == "REQUEST":
            assert "latency_ns" not in l7 and "code" not in http
            assert summary == f"HTTP/1.1 {http['method']} {http['url']}"
        else:
            ms = int(l7["latency_ns"]) // 1_000_000
            assert summary == f"HTTP/1.1 {http['code']} {ms}ms ({http['method']} {http['url']})"
        return
    dns = l7["dns"]
    assert dns["observation_source"] == "proxy"
    if l7["type"] == "REQUEST":
        assert summary == f"DNS Query {dns['query']} {','.join(dns['qtypes'])}"
        return
    tail = f"TTL: {dns['ttl']} (Proxy {dns['query']} {','.join(dns['qtypes'])})"
    if dns.get("rcode") == 3:
        assert summary == f"DNS Answer RCode: Non-Existent Domain {tail}"
    elif dns.get("ips"):
        assert summary == f'DNS Answer "{",".join(dns["ips"])}" {tail}'
    else:
        assert summary == f"DNS Answer  {tail}"  # NOERROR without answers: two spaces


def test_flows_follow_server_rules(lab: list[Record]) -> None:
    for flow in _flows(lab):
        et = flow["event_type"]
        kind, sub = et["type"], et.get("sub_type", 0)
        assert "sub_type" not in et or sub != 0  # zero is omitted by protojson
        if "l7" in flow:
            _check_l7(flow)
            continue
        assert flow["Type"] == "L3_L4"
        assert flow["Summary"] == _expected_l34_summary(flow["l4"])
        if kind == 1:  # drop
            assert flow["verdict"] == "DROPPED" and "is_reply" not in flow
            assert flow["drop_reason"] == sub and flow["drop_reason_desc"] == DROP_NAMES[sub]
        elif kind == 4:  # trace
            assert flow["verdict"] == "FORWARDED" and "drop_reason" not in flow
            assert flow["trace_observation_point"] == TRACE_POINTS[sub]
            reason = flow.get("trace_reason")
            if reason is None:
                assert "is_reply" not in flow and "traffic_direction" not in flow
            else:
                assert flow["is_reply"] is (reason == "REPLY")
        elif kind == 5:  # policy verdict
            assert "trace_observation_point" not in flow
            assert flow["traffic_direction"] == "INGRESS"
            if flow["verdict"] == "DROPPED":
                assert "is_reply" not in flow and "policy_match_type" not in flow
                assert flow["drop_reason"] == 133 and flow["drop_reason_desc"] == "POLICY_DENIED"
                assert [p["name"] for p in flow["ingress_denied_by"]] == ["backend-ingress-deny"]
            else:
                assert flow["verdict"] == "FORWARDED" and flow["is_reply"] is False
                assert flow["policy_match_type"] == 2
                assert [p["name"] for p in flow["ingress_allowed_by"]] == [
                    "backend-allow-ingress-frontend"]
        else:
            pytest.fail(f"unexpected event type {et}")


def test_replies_keep_the_sender_as_source(lab: list[Record]) -> None:
    replies = [f for f in _flows(lab) if f.get("is_reply") and "TCP" in f["l4"]
               and _pod(f["destination"]) == "frontend" and _pod(f["source"]) == "backend"]
    assert replies
    for f in replies:
        assert f["l4"]["TCP"]["source_port"] == 8080
        assert f["source_service"] == {"name": "backend", "namespace": "default"}


def test_handshake_flags_and_points(lab: list[Record]) -> None:
    seen = collections.Counter(
        (f["Summary"], f.get("trace_observation_point"), f.get("is_reply"))
        for f in _flows(lab) if f["event_type"]["type"] == 4 and _pod(f["source"]) in
        ("frontend", "backend") and _pod(f["destination"]) in ("frontend", "backend"))
    for key in [("TCP Flags: SYN", "TO_STACK", False), ("TCP Flags: SYN", "TO_ENDPOINT", False),
                ("TCP Flags: SYN, ACK", "TO_STACK", True),
                ("TCP Flags: SYN, ACK", "TO_ENDPOINT", True),
                ("TCP Flags: ACK", "TO_ENDPOINT", False),
                ("TCP Flags: ACK, PSH", "TO_ENDPOINT", False),
                ("TCP Flags: ACK, PSH", "TO_ENDPOINT", True),
                ("TCP Flags: ACK, FIN", "TO_ENDPOINT", False),
                ("TCP Flags: ACK, FIN", "TO_ENDPOINT", True)]:
        assert seen[key] > 10, key


# -- the story -----------------------------------------------------------------------------------


def _verdicts(lab: list[Record]) -> collections.Counter[tuple[int, str, str]]:
    return collections.Counter(
        (_phase(f), _pod(f["source"]), f["verdict"]) for f in _flows(lab) if _is_policy_verdict(f))


def test_phase_one_has_no_policy(lab: list[Record]) -> None:
    verdicts = _verdicts(lab)
    assert not [k for k in verdicts if k[0] == 1]
    http = [f for f in _flows(lab) if _phase(f) == 1 and "http" in f.get("l7", {})
            and f["l7"]["type"] == "RESPONSE"]
    assert {_pod(f["destination"]) for f in http} == {"frontend", "not-frontend"}


def test_phase_two_denies_both_clients(lab: list[Record]) -> None:
    verdicts = _verdicts(lab)
    assert verdicts[(2, "frontend", "DROPPED")] >= 20
    assert verdicts[(2, "not-frontend", "DROPPED")] >= 20
    assert verdicts[(2, "frontend", "FORWARDED")] == 0
    drops = collections.Counter(_pod(f["source"]) for f in _flows(lab)
                                if _phase(f) == 2 and f["event_type"] == {"type": 1,
                                                                          "sub_type": 133})
    assert drops["frontend"] == verdicts[(2, "frontend", "DROPPED")]
    assert drops["not-frontend"] == verdicts[(2, "not-frontend", "DROPPED")]
    assert not [f for f in _flows(lab) if _phase(f) == 2 and "http" in f.get("l7", {})
                and _pod(f["destination"]) == "backend"]


def test_phase_three_allows_frontend_only(lab: list[Record]) -> None:
    verdicts = _verdicts(lab)
    assert verdicts[(3, "frontend", "FORWARDED")] >= 10
    assert verdicts[(3, "frontend", "DROPPED")] == 0
    assert verdicts[(3, "not-frontend", "DROPPED")] >= 20
    assert verdicts[(3, "not-frontend", "FORWARDED")] == 0
    denied = [f for f in _flows(lab) if _phase(f) == 3 and "ingress_denied_by" in f]
    assert {p["revision"] for f in denied for p in f["ingress_denied_by"]} == {"6"}


def test_syn_retransmits_back_off(lab: list[Record]) -> None:
    attempts: dict[tuple[str, int], list[datetime]] = collections.defaultdict(list)
    for f in _flows(lab):
        if _is_policy_verdict(f) and f["verdict"] == "DROPPED":
            ip, tcp = f["IP"], f["l4"]["TCP"]
            attempts[(ip["source"], tcp["source_port"])].append(_when(f["time"]))
    assert attempts
    for times in attempts.values():
        gaps = [round((b - a).total_seconds()) for a, b in itertools.pairwise(times)]
        assert gaps == [1, 2, 4]


def test_policy_verdict_precedes_its_drop(lab: list[Record]) -> None:
    flows = list(_flows(lab))
    for i, f in enumerate(flows):
        if f["event_type"] == {"type": 1, "sub_type": 133}:
            before = [g for g in flows[max(0, i - 5):i] if _is_policy_verdict(g)
                      and g["l4"] == f["l4"] and g["IP"] == f["IP"]]
            assert before, f


# -- coverage of the rest of the capture -------------------------------------------------------


def test_background_traffic(lab: list[Record]) -> None:
    flows = list(_flows(lab))
    identities = {f[side]["identity"] for f in flows for side in ("source", "destination")}
    assert {1, 2, 4, 6, 102} <= identities
    assert any(f["l4"].get("TCP", {}).get("destination_port") == 4240 for f in flows)
    summaries = {f["Summary"] for f in flows}
    assert {"ICMPv4 EchoRequest", "ICMPv4 EchoReply", "ICMPv6 EchoRequest",
            "ICMPv6 EchoReply"} <= summaries
    world = [f for f in flows if f["destination"]["identity"] == 2 and "TCP" in f["l4"]]
    assert world and all(f["destination"]["labels"] == ["reserved:world"] for f in world)
    assert any(f.get("destination_names") == ["api.github.com"] for f in world)
    assert any(f.get("destination_service") == {"name": "backend", "namespace": "default"}
               for f in flows)
    assert any(f.get("destination_service") == {"name": "kube-dns", "namespace": "kube-system"}
               for f in flows)
    unknown = [f for f in flows if f["event_type"]["type"] == 4 and "is_reply" not in f]
    assert unknown


def test_drop_reasons_and_dns_errors(lab: list[Record]) -> None:
    flows = list(_flows(lab))
    reasons = {f["event_type"].get("sub_type") for f in flows if f["event_type"]["type"] == 1}
    assert reasons == {132, 133, 136, 151}
    rcodes = collections.Counter(f["l7"]["dns"].get("rcode", 0) for f in flows
                                 if "dns" in f.get("l7", {}) and f["l7"]["type"] == "RESPONSE")
    assert rcodes[3] > 0 and rcodes[0] > rcodes[3]
    codes = {f["l7"]["http"]["code"] for f in flows
             if "http" in f.get("l7", {}) and f["l7"]["type"] == "RESPONSE"}
    assert 200 in codes and any(c >= 500 for c in codes)


def test_ipv6_flows(lab: list[Record]) -> None:
    v6 = [f for f in _flows(lab) if f["IP"]["ipVersion"] == "IPv6"]
    assert {next(iter(f["l4"])) for f in v6} == {"TCP", "ICMPv6"}
    assert all(f["IP"]["source"].startswith("fd00:") for f in v6 if "ICMPv6" in f["l4"])
    assert any(_is_policy_verdict(f) for f in v6)


def test_lost_events(lab: list[Record]) -> None:
    lost = [r["lost_events"] for r in lab if "lost_events" in r]
    assert {e["source"] for e in lost} == {"HUBBLE_RING_BUFFER", "PERF_EVENT_RING_BUFFER"}
    for e in lost:
        assert isinstance(e["num_events_lost"], str) and e["num_events_lost"].isdigit()
        assert isinstance(e["cpu"], int)


def test_adversarial_strings(lab: list[Record]) -> None:
    flows = list(_flows(lab))
    urls = {f["l7"]["http"]["url"] for f in flows if "http" in f.get("l7", {})}
    assert any("<script>alert(1)</script>" in u and "é" in u for u in urls)
    queries = {f["l7"]["dns"]["query"] for f in flows if "dns" in f.get("l7", {})}
    assert any("<script>" in q and "ü" in q for q in queries)
    assert any("\x1b" in f["Summary"] for f in flows)


def test_int64_fields_are_strings(lab: list[Record]) -> None:
    for f in _flows(lab):
        if "latency_ns" in f.get("l7", {}):
            assert f["l7"]["latency_ns"].isdigit()
        for policy in f.get("ingress_allowed_by", []) + f.get("ingress_denied_by", []):
            assert policy["revision"].isdigit()
            assert policy["kind"] == "NetworkPolicy"


# -- generate_flows and the CLI -----------------------------------------------------------------


def test_generate_flows_exact_count() -> None:
    flows = list(generate_flows(1000))
    assert len(flows) == 1000
    assert all(set(r) == {"flow", "node_name", "time"} for r in flows)
    assert list(generate_flows(0)) == []


def test_generate_flows_extends_the_story_in_time() -> None:
    first_lab = [r for r in generate_lab(seed=9) if "flow" in r]
    flows = list(generate_flows(len(first_lab) + 500, seed=9))
    assert flows[: len(first_lab)] == first_lab
    keys = [_ns_key(r["time"]) for r in flows]
    assert keys == sorted(keys)
    assert len({r["flow"]["uuid"] for r in flows}) == len(flows)


def test_cli_writes_lab_jsonpb(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path / "samples"), "--scale", "0.1", "--seed", "2"]) == 0
    lines = (tmp_path / "samples" / "lab.jsonpb").read_text(encoding="utf-8").splitlines()
    expected = list(generate_lab(seed=2, scale=0.1))
    assert [json.loads(line) for line in lines] == expected
