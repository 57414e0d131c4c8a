"""Each analysis counts as its dashboard panel's metric does: on small frames built by hand with
known answers, and on the lab sample against numbers computed here with plain pandas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import flowlens
from flowlens import analyses as A
from flowlens.errors import UsageError
from flowlens.frame import build, lost_events
from flowlens.sources.batch import FlowBatch

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
T0 = pd.Timestamp("2026-07-01T08:00:00Z")


def at(seconds: float) -> str:
    return (T0 + pd.Timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def frame(*rows: dict[str, Any], lost: tuple[dict[str, Any], ...] = ()) -> pd.DataFrame:
    """A typed flows frame from rows of column values (time in seconds after T0)."""
    names = sorted({k for r in rows for k in r} | {"time"})
    columns = {n: [(at(r.get("time", 0)) if n == "time" else r.get(n)) for r in rows]
               for n in names}
    return build(FlowBatch(columns=columns, size=len(rows), lost_events=list(lost)))


def pod(side: str, name: str, ns: str = "default", ip: str = "") -> dict[str, Any]:
    return {f"{side}_namespace": ns, f"{side}_pod": name, f"{side}_ip": ip or f"10.0.0.{len(name)}"}


def records(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in df.itertuples(index=False, name=None)]


@pytest.fixture(scope="module")
def lab() -> pd.DataFrame:
    return flowlens.read(SAMPLES / "lab.jsonpb")


# --- time buckets ------------------------------------------------------------------------------

@pytest.mark.parametrize(("span", "bucket"), [
    ("10s", "1s"), ("30min", "30s"), ("31min", "1min"), ("1h", "1min"), ("6h", "10min"),
    ("7D", "3h"),
])
def test_the_bucket_adapts_to_the_window(span: str, bucket: str) -> None:
    assert A.choose_bucket(T0, T0 + pd.Timedelta(span)) == pd.Timedelta(bucket)


def test_buckets_start_on_their_size_and_cover_the_window() -> None:
    buckets = A.time_buckets(T0 + pd.Timedelta("95s"), T0 + pd.Timedelta("301s"),
                             pd.Timedelta("1min"))
    assert buckets.start == T0 + pd.Timedelta("1min")
    assert buckets.count == 5


@pytest.mark.parametrize("text", ["0s", "500ms", "-1m", "soon", ""])
def test_a_bad_bucket_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--bucket"):
        A.parse_bucket(text)


def test_too_many_buckets_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="buckets"):
        A.time_buckets(T0, T0 + pd.Timedelta("2D"), pd.Timedelta("1s"))


# --- traffic -----------------------------------------------------------------------------------

def test_forwarded_vs_dropped_counts_every_flow_per_bucket_empty_buckets_included() -> None:
    df = frame({"time": 5, "verdict": "FORWARDED"}, {"time": 10, "verdict": "DROPPED"},
               {"time": 50, "verdict": "FORWARDED"}, {"time": 185, "verdict": "AUDIT"})
    got = A.forwarded_vs_dropped(df, A.time_buckets(T0, T0 + pd.Timedelta("185s"),
                                                    pd.Timedelta("1min")))
    assert list(got.columns) == ["time", "FORWARDED", "AUDIT", "DROPPED"]
    assert records(got) == [(T0, 2, 0, 1), (T0 + pd.Timedelta("1min"), 0, 0, 0),
                            (T0 + pd.Timedelta("2min"), 0, 0, 0),
                            (T0 + pd.Timedelta("3min"), 0, 1, 0)]


def test_flows_by_type_labels_types_and_subtypes_as_the_metric() -> None:
    df = frame({"event_type": 4, "event_subtype": 0}, {"event_type": 4, "event_subtype": 3},
               {"event_type": 4, "event_subtype": 3}, {"event_type": 129, "l7_protocol": "http"},
               {"event_type": 1, "event_subtype": 133}, {"event_type": 5},
               {"event_type": 200, "event_subtype": 1}, {"verdict": "FORWARDED"},
               {"event_type": 7, "event_subtype": 2})  # trace-sock: no type of its own
    assert records(A.flows_by_type(df)) == [
        ("Trace", "to-stack", 2), ("Drop", "", 1), ("L7", "HTTP", 1),
        ("PolicyVerdict", "", 1), ("Trace", "to-endpoint", 1), ("Unknown", "", 1),
        ("Unknown", "200", 1), ("Unknown", "7", 1)]


def test_flows_by_node_per_bucket() -> None:
    df = frame({"time": 1, "node": "a"}, {"time": 2, "node": "b"}, {"time": 70, "node": "a"})
    got = A.flows_by_node(df, A.time_buckets(T0, T0 + pd.Timedelta("70s"), pd.Timedelta("1min")))
    assert records(got) == [(T0, 1, 1), (T0 + pd.Timedelta("1min"), 1, 0)]


def test_ports_count_forwarded_and_redirected_non_reply_l4_flows() -> None:
    df = frame(
        {"verdict": "FORWARDED", "protocol": "TCP", "dst_port": 8080, "is_reply": False},
        {"verdict": "FORWARDED", "protocol": "TCP", "dst_port": 8080},  # reply unknown: counts
        {"verdict": "REDIRECTED", "protocol": "UDP", "dst_port": 53, "is_reply": False},
        {"verdict": "FORWARDED", "protocol": "TCP", "dst_port": 40000, "is_reply": True},
        {"verdict": "DROPPED", "protocol": "TCP", "dst_port": 8080},
        {"verdict": "FORWARDED", "protocol": "ICMPv4"},
        {"verdict": "FORWARDED"},  # no L4
    )
    assert records(A.protocols(df)) == [("TCP", 2), ("ICMPv4", 1), ("UDP", 1)]
    assert records(A.top_destination_ports(df)) == [("TCP", 8080, 2), ("UDP", 53, 1)]
    assert records(A.top_destination_ports(df, top=1)) == [("TCP", 8080, 2)]


def test_tcp_flags_count_forwarded_tcp_flows_by_flag_and_family() -> None:
    tcp = {"verdict": "FORWARDED", "protocol": "TCP", "ip_version": "IPv4"}
    df = frame({**tcp, "tcp_flags": "SYN"}, {**tcp, "tcp_flags": "SYN,ACK"},
               {**tcp, "tcp_flags": "ACK,FIN"}, {**tcp, "tcp_flags": "RST,FIN"},
               {**tcp, "tcp_flags": "ACK,PSH"}, {**tcp, "tcp_flags": "SYN", "ip_version": "IPv6"},
               {**tcp, "tcp_flags": "SYN", "verdict": "DROPPED"})
    assert records(A.tcp_flags(df)) == [("IPv4", "FIN", 2), ("IPv4", "RST", 1),
                                        ("IPv4", "SYN", 1), ("IPv4", "SYN-ACK", 1),
                                        ("IPv6", "SYN", 1)]


# --- drops and policy --------------------------------------------------------------------------

def test_drop_reasons_count_every_dropped_flow_policy_verdicts_too() -> None:
    denied = {"verdict": "DROPPED", "drop_reason": "POLICY_DENIED", "drop_reason_code": 133}
    df = frame({**denied, "event_type": 5}, {**denied, "event_type": 1},
               {"verdict": "DROPPED", "drop_reason_code": 999},
               {"verdict": "DROPPED"},
               {"verdict": "FORWARDED"})
    assert records(A.drop_reasons(df)) == [("POLICY_DENIED", 2), ("999", 1),
                                           ("DROP_REASON_UNKNOWN", 1)]


def test_drop_reasons_over_time() -> None:
    df = frame({"time": 1, "verdict": "DROPPED", "drop_reason": "POLICY_DENIED"},
               {"time": 61, "verdict": "DROPPED", "drop_reason_code": 999},
               {"time": 62, "verdict": "FORWARDED"})
    got = A.drop_reasons_over_time(df, A.time_buckets(T0, T0 + pd.Timedelta("62s"),
                                                      pd.Timedelta("1min")))
    assert list(got.columns) == ["time", "999", "POLICY_DENIED"]
    assert records(got) == [(T0, 0, 1), (T0 + pd.Timedelta("1min"), 1, 0)]


def test_top_denied_sources_and_destinations() -> None:
    denied = {"verdict": "DROPPED", "drop_reason": "POLICY_DENIED"}
    backend = pod("dst", "backend")
    df = frame(
        *[{**denied, **pod("src", "not-frontend"), **backend}] * 3,
        *[{**denied, **pod("src", "frontend"), **backend}] * 2,
        {**denied, "src_identity": 2, "src_ip": "1.2.3.4", **backend},  # world
        {**denied, "src_identity": 16777217, "src_ip": "8.8.8.8", **pod("dst", "db")},
        {"verdict": "DROPPED", "drop_reason": "STALE_OR_UNROUTABLE_IP", **pod("src", "x")},
        {"verdict": "FORWARDED", **pod("src", "y")},
    )
    assert records(A.top_denied_sources(df)[["source", "flows"]]) == [
        ("default/not-frontend", 3), ("default/frontend", 2), ("8.8.8.8", 1), ("world", 1)]
    assert records(A.top_denied_sources(df, top=2)[["source", "flows"]]) == [
        ("default/not-frontend", 3), ("default/frontend", 2)]
    assert records(A.top_denied_destinations(df)[["destination", "flows"]]) == [
        ("default/backend", 6), ("default/db", 1)]


def test_policy_verdicts_by_direction_match_and_action() -> None:
    df = frame(
        *[{"event_type": 5, "traffic_direction": "INGRESS", "policy_match": "L3-L4",
           "verdict": "FORWARDED", "src_identity": 17629}] * 2,
        {"event_type": 5, "traffic_direction": "INGRESS", "policy_match": "none",
         "verdict": "DROPPED", "src_identity": 36044},
        {"event_type": 5, "traffic_direction": "EGRESS", "verdict": "AUDIT"},
        {"event_type": 5, "traffic_direction": "INGRESS", "policy_match": "all",
         "verdict": "FORWARDED", "src_identity": 1},  # host: skipped by the metric
        {"event_type": 129, "traffic_direction": "EGRESS", "l7_protocol": "dns",
         "verdict": "FORWARDED"},
        {"event_type": 129, "traffic_direction": "EGRESS", "l7_protocol": "dns",
         "verdict": "FORWARDED", "src_identity": 1},  # L7 from the host: counted
        {"event_type": 4, "verdict": "FORWARDED"},  # trace: no policy verdict
    )
    assert records(A.policy_verdicts(df)) == [
        ("egress", "l7/dns", "forwarded", 2), ("ingress", "l3-l4", "forwarded", 2),
        ("egress", "none", "audit", 1), ("ingress", "none", "dropped", 1)]


# --- asks without answers ----------------------------------------------------------------------

def _tcp(src: str, sport: int, dst: str, dport: int, flags: str, t: float = 0,
         verdict: str = "FORWARDED") -> dict[str, Any]:
    return {"time": t, "verdict": verdict, "protocol": "TCP", "tcp_flags": flags,
            "src_ip": src, "src_port": sport, "dst_ip": dst, "dst_port": dport,
            "src_pod": f"pod-{src}", "src_namespace": "ns", "dst_pod": f"pod-{dst}",
            "dst_namespace": "ns"}


def test_syns_without_syn_ack_pair_each_connection_with_its_answer() -> None:
    df = frame(
        _tcp("a", 1000, "b", 80, "SYN", 0), _tcp("a", 1000, "b", 80, "SYN", 0.1),
        _tcp("b", 80, "a", 1000, "SYN,ACK", 0.2),  # answered, however often traced
        _tcp("a", 1001, "b", 80, "SYN", 1), _tcp("a", 1001, "b", 80, "SYN", 2),  # retransmit
        _tcp("a", 1002, "b", 80, "SYN", 5), _tcp("b", 80, "a", 9999, "SYN,ACK", 5.1),
        _tcp("c", 1003, "b", 80, "SYN", 7, verdict="DROPPED"),  # not forwarded
    )
    assert records(A.syns_without_syn_ack(df)) == [
        ("ns/pod-a", "ns/pod-b", 80, 2, 3, T0 + pd.Timedelta("1s"), T0 + pd.Timedelta("5s"))]


def _pairing_side(rng: np.random.Generator, n: int, categorical: bool) -> pd.DataFrame:
    """Asks or answers for the pairing: ends (categorical, or objects with NA as `endpoint`
    gives them), UInt16 ports with NA, times (NaT some) on a coarse grid, so that times
    exactly `within` apart and equal keys are common."""
    ends = rng.choice(np.array(["10.0.0.1", "10.0.0.2", "ns/pod", None], dtype=object), n)
    ports = pd.array([None if p < 0 else int(p) for p in rng.choice([53, 80, 1000, -1], n)],
                     dtype="UInt16")
    times = pd.Series(T0 + pd.to_timedelta(rng.integers(0, 12, n) * 5, unit="s"))
    times[rng.random(n) < 0.1] = pd.NaT
    return pd.DataFrame({"end": pd.Categorical(ends) if categorical else ends, "port": ports,
                         "time": times})


@pytest.mark.parametrize("direction,within", [("nearest", "10s"), ("forward", "10s"),
                                              ("nearest", "0s"), ("forward", "2min")])
def test_pairing_finds_an_answer_exactly_when_one_is_in_range(direction: str,
                                                              within: str) -> None:
    """An ask is answered when an answer with equal keys (as plain values; NA equals
    nothing) has a time within `within` either side ("nearest") or after it ("forward")."""
    from flowlens.analyses.unanswered import _answered_in_time

    rng = np.random.default_rng(7)
    for case in range(20):
        asks = _pairing_side(rng, 60, categorical=case % 2 == 0)
        answers = _pairing_side(rng, 40, categorical=case % 3 == 0)
        got = _answered_in_time(asks, answers, ["end", "port"], ["end", "port"],
                                pd.Timedelta(within), direction)  # type: ignore[arg-type]
        width = pd.Timedelta(within)
        before = width if direction == "nearest" else pd.Timedelta(0)
        given = [(a.end, a.port, a.time) for a in answers.itertuples()
                 if not any(pd.isna(v) for v in (a.end, a.port, a.time))]
        expected = [not any(pd.isna(v) for v in (ask.end, ask.port, ask.time)) and any(
            (end, port) == (ask.end, ask.port) and ask.time - before <= t <= ask.time + width
            for end, port, t in given) for ask in asks.itertuples()]
        assert got.tolist() == expected, case
        assert 0 < sum(expected) < len(expected)
        assert got.index.equals(asks.index)


def _icmp(src: str, dst: str, kind: str, t: float) -> dict[str, Any]:
    return {"time": t, "verdict": "FORWARDED", "protocol": "ICMPv4", "icmp_type": kind,
            "src_ip": src, "dst_ip": dst, "src_identity": 1, "dst_identity": 4}


def test_echo_requests_without_reply_within_the_timeout() -> None:
    df = frame(_icmp("10.0.0.1", "10.0.0.2", "EchoRequest", 0),
               _icmp("10.0.0.2", "10.0.0.1", "EchoReply", 0.001),
               _icmp("10.0.0.1", "10.0.0.2", "EchoRequest", 60),
               _icmp("10.0.0.2", "10.0.0.1", "EchoReply", 75),  # 15s later: too late
               _icmp("10.0.0.1", "10.0.0.3", "EchoRequest", 90))
    assert records(A.echo_requests_without_reply(df)) == [
        ("host", "health", 2, T0 + pd.Timedelta("60s"), T0 + pd.Timedelta("90s"))]


def _dns(kind: str, query: str, t: float, **extra: Any) -> dict[str, Any]:
    client = {"src_ip": "10.0.0.1", "src_port": 5000, "dst_ip": "10.0.0.53", "dst_port": 53,
              **pod("src", "client", ip="10.0.0.1"), **pod("dst", "dns", "kube-system",
                                                          "10.0.0.53")}
    if kind == "RESPONSE":
        client = {"src_ip": "10.0.0.53", "src_port": 53, "dst_ip": "10.0.0.1",
                  "dst_port": 5000, **pod("src", "dns", "kube-system", "10.0.0.53"),
                  **pod("dst", "client", ip="10.0.0.1")}
    return {"time": t, "verdict": "FORWARDED", "event_type": 129, "l7_protocol": "dns",
            "l7_type": kind, "dns_query": query, **client, **extra}


def test_dns_queries_errors_and_missing_responses() -> None:
    df = frame(_dns("REQUEST", "a.example.", 0), _dns("RESPONSE", "a.example.", 1, dns_rcode=0),
               _dns("REQUEST", "a.example.", 2), _dns("RESPONSE", "a.example.", 3, dns_rcode=3),
               _dns("REQUEST", "b.example.", 4),
               _dns("REQUEST", "c.example.", 5, verdict="DROPPED"),
               _dns("RESPONSE", "d.example.", 6, dns_rcode=2))
    assert records(A.top_dns_queries(df)) == [("a.example.", 2), ("b.example.", 1),
                                             ("c.example.", 1)]
    assert records(A.dns_errors(df)) == [("Non-Existent Domain", 1), ("Server Failure", 1)]
    missing = A.dns_queries_without_response(df)
    assert records(missing[["source", "destination", "query", "queries"]]) == [
        ("default/client", "kube-system/dns", "b.example.", 1),
        ("default/client", "kube-system/dns", "c.example.", 1)]


def test_http_requests_responses_latency_and_success_rate() -> None:
    http = {"event_type": 129, "l7_protocol": "http", "verdict": "FORWARDED"}
    df = frame({**http, "l7_type": "REQUEST", "http_method": "GET"},
               {**http, "l7_type": "REQUEST", "http_method": "GET"},
               {**http, "l7_type": "REQUEST", "http_method": "POST"},
               {**http, "l7_type": "RESPONSE", "http_code": 200, "latency_ns": 10_000_000},
               {**http, "l7_type": "RESPONSE", "http_code": 200, "latency_ns": 20_000_000},
               {**http, "l7_type": "RESPONSE", "http_code": 404, "latency_ns": 30_000_000},
               {**http, "l7_type": "RESPONSE", "http_code": 503, "latency_ns": 40_000_000})
    assert records(A.http_requests(df)) == [("GET", 2), ("POST", 1)]
    assert records(A.http_responses(df)) == [(200, 2), (404, 1), (503, 1)]
    latency = A.http_latency(df)
    assert latency["quantile"].tolist() == ["p50", "p95", "p99"]
    assert latency["seconds"].tolist() == pytest.approx([0.025, 0.0385, 0.0397])
    assert records(A.http_success_rate(df)) == [(4, 1, 0.75)]


def test_lost_events_by_source_and_node() -> None:
    lost = ({"time": at(1), "node": "a", "source": "PERF_EVENT_RING_BUFFER",
             "num_events_lost": 10, "position": 0},
            {"time": at(2), "node": "a", "source": "PERF_EVENT_RING_BUFFER",
             "num_events_lost": 5, "position": 0},
            {"time": at(3), "node": "b", "source": "HUBBLE_RING_BUFFER", "num_events_lost": 7,
             "position": 0})
    df = frame({"verdict": "FORWARDED"}, lost=lost)
    assert records(A.lost_events(df)) == [
        ("PERF_EVENT_RING_BUFFER", "a", 15, 2, T0 + pd.Timedelta("1s"), T0 + pd.Timedelta("2s")),
        ("HUBBLE_RING_BUFFER", "b", 7, 1, T0 + pd.Timedelta("3s"), T0 + pd.Timedelta("3s"))]
    assert A.total_lost_events(df) == 22


def test_every_analysis_answers_an_empty_frame() -> None:
    df = frame({"verdict": "FORWARDED"}).iloc[:0]
    report = A.build_report(df)
    assert report.flows == 0
    for panel in report.panels:
        assert panel.data.empty or panel.key in ("http_latency", "http_success_rate"), panel.key


# --- the lab sample, against numbers computed here ---------------------------------------------

def test_lab_verdicts_over_time(lab: pd.DataFrame) -> None:
    bucket = pd.Timedelta("30s")
    got = A.forwarded_vs_dropped(lab, A.time_buckets(lab["time"].min(), lab["time"].max(),
                                                     bucket)).set_index("time")
    expect = (lab.groupby([lab["time"].dt.floor(bucket), lab["verdict"].astype(str)])
              .size().unstack(fill_value=0))
    assert got.loc[expect.index, expect.columns].equals(expect.astype("int64"))
    assert got.sum().to_dict() == lab["verdict"].astype(str).value_counts().to_dict()


def test_lab_drop_reasons(lab: pd.DataFrame) -> None:
    dropped = lab[lab["verdict"] == "DROPPED"]
    expect = dropped["drop_reason"].astype(str).value_counts()
    got = A.drop_reasons(lab).set_index("reason")["flows"]
    assert got.to_dict() == expect.to_dict()
    assert got.index[0] == "POLICY_DENIED"


def test_lab_top_denied_sources(lab: pd.DataFrame) -> None:
    denied = lab[(lab["verdict"] == "DROPPED") & (lab["drop_reason"] == "POLICY_DENIED")]
    names = denied["src_namespace"].astype(str) + "/" + denied["src_pod"].astype(str)
    got = A.top_denied_sources(lab)
    assert dict(records(got[["source", "flows"]])) == names.value_counts().to_dict()
    firsts = denied.groupby(names)["time"].min()
    assert got.set_index("source")["first"].to_dict() == firsts.to_dict()
    assert got["source"].iloc[0].startswith("default/not-frontend-")


def test_a_policy_verdict_without_drop_reason_takes_the_one_of_its_drop_event() -> None:
    """hubble's text prints no reason on policy-verdict lines; the drop event of the same
    packet (same peers, ports, protocol, within a second) has it."""
    packet = {**pod("src", "a"), **pod("dst", "b"), "src_ip": None, "dst_ip": None,
              "src_port": 40000, "dst_port": 8080, "protocol": "TCP", "verdict": "DROPPED"}
    df = frame({**packet, "time": 1, "event_type": 5},
               {**packet, "time": 1, "event_type": 1, "drop_reason_code": 181},
               {**packet, "time": 9, "event_type": 5, "dst_port": 9090},  # no drop event
               {**packet, "time": 9, "event_type": 1, "drop_reason_code": 133,
                "src_port": 1})  # another packet
    assert records(A.drop_reasons(df)) == [("POLICY_DENY", 2), ("DROP_REASON_UNKNOWN", 1),
                                           ("POLICY_DENIED", 1)]
    missing = A.missing_fields(df)
    assert missing["missing"].iloc[0] == "drop reason of policy-verdict events"
    assert missing["flows"].iloc[0] == 2
    assert "1 without one count as DROP_REASON_UNKNOWN" in missing["effect"].iloc[0]


def test_tcp_flags_of_flows_without_ip_count_under_an_unknown_family() -> None:
    tcp = {"verdict": "FORWARDED", "protocol": "TCP", "tcp_flags": "SYN"}
    df = frame({**tcp, "ip_version": "IPv4"}, tcp)
    assert records(A.tcp_flags(df)) == [("IPv4", "SYN", 1), ("unknown", "SYN", 1)]


def test_lab_policy_verdicts(lab: pd.DataFrame) -> None:
    verdicts = lab[(lab["event_type"] == 5) & (lab["src_identity"] != 1)]
    got = {(d, m, a): n for d, m, a, n in records(A.policy_verdicts(lab)) if not m.startswith("l7")}
    expect = (verdicts.groupby([verdicts["traffic_direction"].astype(str).str.lower(),
                                verdicts["policy_match"].astype(str).str.lower(),
                                verdicts["verdict"].astype(str).str.lower()])
              .size().to_dict())
    assert got == expect
    assert got[("ingress", "l3-l4", "forwarded")] > 0
    l7 = lab[lab["event_type"] == 129]
    assert sum(n for _, m, _, n in records(A.policy_verdicts(lab)) if m.startswith("l7")) \
        == len(l7)


def test_lab_tcp_flags_and_missing_syn_acks(lab: pd.DataFrame) -> None:
    tcp = lab[(lab["verdict"] == "FORWARDED") & (lab["protocol"] == "TCP")]
    flags = tcp["tcp_flags"].astype(str)
    syn = flags.str.contains("SYN") & ~flags.str.contains("ACK")
    syn_ack = flags.str.contains("SYN") & flags.str.contains("ACK")
    got = A.tcp_flags(lab).groupby("flag")["flows"].sum().to_dict()
    assert got["SYN"] == syn.sum() and got["SYN-ACK"] == syn_ack.sum()
    assert got["FIN"] == flags.str.contains("FIN").sum()

    def key(row: Any, reverse: bool) -> tuple[Any, ...]:
        a, b = (row.src_ip, row.src_port), (row.dst_ip, row.dst_port)
        return (*b, *a) if reverse else (*a, *b)

    answered = {key(r, True) for r in tcp[syn_ack].itertuples()}
    open_syns = [r for r in tcp[syn].itertuples() if key(r, False) not in answered]
    missing = A.syns_without_syn_ack(lab, top=100)
    assert missing["syns"].sum() == len(open_syns)
    assert missing["connections"].sum() == len({key(r, False) for r in open_syns})
    first = missing.iloc[0]
    assert first["source"].startswith("default/not-frontend-") and first["port"] == 8080


def test_lab_ports_dns_http_and_lost_events(lab: pd.DataFrame) -> None:
    not_reply = ~lab["is_reply"].fillna(False).astype(bool)  # unknown counts, as in Go
    counted = lab[lab["verdict"].isin(["FORWARDED", "REDIRECTED"]) & lab["protocol"].notna()
                  & not_reply]
    assert dict(records(A.protocols(lab))) == counted["protocol"].astype(str).value_counts(
    ).to_dict()
    dns = lab[lab["l7_protocol"] == "dns"]
    queries = dns[dns["l7_type"] == "REQUEST"]["dns_query"].astype(str).value_counts()
    assert dict(records(A.top_dns_queries(lab, top=100))) == queries.to_dict()
    responses = dns[dns["l7_type"] == "RESPONSE"]
    assert dict(records(A.dns_errors(lab))) == {
        "Non-Existent Domain": int((responses["dns_rcode"] == 3).sum())}
    http = lab[(lab["l7_protocol"] == "http") & (lab["l7_type"] == "RESPONSE")]
    latency = http["latency_ns"].to_numpy(dtype=float) / 1e9
    assert A.http_latency(lab)["seconds"].tolist() == pytest.approx(
        np.quantile(latency, [0.5, 0.95, 0.99]).tolist())
    assert A.http_success_rate(lab)["success_rate"].iloc[0] == pytest.approx(
        (http["http_code"] < 500).mean())
    assert A.total_lost_events(lab) == int(lost_events(lab)["num_events_lost"].sum())


def test_analyses_do_not_change_the_frame(lab: pd.DataFrame) -> None:
    before = lab.copy()
    A.build_report(lab)
    pd.testing.assert_frame_equal(lab, before)


# --- the answer --------------------------------------------------------------------------------

def _conn(src: str, t: float, kind: str, **extra: Any) -> dict[str, Any]:
    """A request of `src` to default/backend:8080 at `t`: delivered (to-endpoint trace), or
    denied at the backend's ingress (a policy-verdict event and its drop event)."""
    flow = {"time": t, "protocol": "TCP", "tcp_flags": "SYN", "src_port": 40000, "dst_port": 8080,
            "traffic_direction": "INGRESS", **pod("src", src), **pod("dst", "backend"), **extra}
    if kind == "delivered":
        return {**flow, "verdict": "FORWARDED", "event_type": 4, "event_subtype": 0,
                "is_reply": False}
    return {**flow, "verdict": "DROPPED", "drop_reason": "POLICY_DENIED",
            "drop_reason_code": 133, "event_type": 5 if kind == "verdict" else 1,
            "policies": "deny (NetworkPolicy)" if kind == "verdict" else None}


def _denied(src: str, t: float) -> list[dict[str, Any]]:
    return [_conn(src, t, "verdict"), _conn(src, t, "drop")]


def test_the_answer_says_who_is_denied_since_when_and_whether_it_still_is() -> None:
    df = frame(_conn("a", 0, "delivered"), *_denied("a", 10), *_denied("a", 20),
               _conn("a", 30, "delivered"),  # allowed again
               _conn("b", 5, "delivered"), *_denied("b", 15), *_denied("b", 25),
               *_denied("c", 12),  # never seen passing
               _conn("a", 40, "delivered", traffic_direction="EGRESS"),  # another end
               {"time": 3, "verdict": "DROPPED", "drop_reason": "INVALID_SOURCE_IP",
                "event_type": 1})
    found = A.answer(df)
    denied = found.denied
    assert records(denied[["source", "destination", "port", "protocol", "direction", "flows",
                           "status", "reason", "policies"]]) == [
        ("default/b", "default/backend", 8080, "TCP", "ingress", 4, "still denied",
         "POLICY_DENIED", "deny (NetworkPolicy)"),
        ("default/c", "default/backend", 8080, "TCP", "ingress", 2, "still denied",
         "POLICY_DENIED", "deny (NetworkPolicy)"),
        ("default/a", "default/backend", 8080, "TCP", "ingress", 4, "allowed again",
         "POLICY_DENIED", "deny (NetworkPolicy)")]

    def t(seconds: float) -> pd.Timestamp:
        return T0 + pd.Timedelta(seconds=seconds)

    assert records(denied[["first", "last", "since", "allowed_before", "allowed_again"]]) == [
        (t(15), t(25), t(15), t(5), pd.NaT), (t(12), t(12), t(12), pd.NaT, pd.NaT),
        (t(10), t(20), t(10), t(0), t(30))]
    assert records(found.changes[["source", "change", "at", "before"]]) == [
        ("default/a", "denied", t(10), t(0)), ("default/b", "denied", t(15), t(5)),
        ("default/a", "allowed again", t(30), t(20))]
    assert (found.verdict_events, found.drop_events, found.counted_twice) == (5, 5, True)
    assert records(found.other_drops) == [("INVALID_SOURCE_IP", 1)]


def test_the_answer_of_hubble_text_matches_its_jsonpb(lab: pd.DataFrame) -> None:
    """Text prints no drop reason on policy-verdict lines and no direction on drop lines or
    traces: they come from the same packet's other event and the trace point."""
    text = A.answer(flowlens.read(SAMPLES / "lab.compact.txt"))
    full = A.answer(lab)
    keys = ["source", "destination", "port", "protocol", "direction", "flows", "status",
            "reason"]
    assert records(text.denied[keys]) == records(full.denied[keys])
    assert records(text.changes[["source", "change"]]) == records(full.changes[["source",
                                                                                  "change"]])
    assert (text.verdict_events, text.drop_events) == (full.verdict_events, full.drop_events)


def test_top_denied_sources_over_time(lab: pd.DataFrame) -> None:
    buckets = A.time_buckets(lab["time"].min(), lab["time"].max(), pd.Timedelta("1min"))
    got = A.denied_sources_over_time(lab, buckets, top=1)
    top = A.top_denied_sources(lab, top=1)
    assert list(got.columns) == ["time", top["source"].iloc[0]]
    assert int(got[top["source"].iloc[0]].sum()) == int(top["flows"].iloc[0])
    first_bucket = got.loc[got.iloc[:, 1] > 0, "time"].iloc[0]
    assert first_bucket == top["first"].iloc[0].floor("1min")


def test_a_report_computes_a_shared_mask_once_per_frame() -> None:
    """Inside `sharing()` (as a report runs its panels) a `shared` function computes once per
    frame and arguments, and hands out read-only arrays; outside, every call computes."""
    from flowlens.analyses.labels import shared, sharing

    calls: list[tuple[int, str]] = []

    @shared
    def mask(df: pd.DataFrame, column: str) -> np.ndarray:
        calls.append((id(df), column))
        return df[column].to_numpy() > 0

    one, other = pd.DataFrame({"a": [1, 0], "b": [0, 1]}), pd.DataFrame({"a": [0, 0]})
    mask(one, "a"), mask(one, "a")
    assert len(calls) == 2
    calls.clear()
    with sharing():
        first = mask(one, "a")
        assert mask(one, "a") is first and mask(one, "b").tolist() == [False, True]
        assert mask(other, "a").tolist() == [False, False]
        with pytest.raises(ValueError):
            first[0] = False
    assert len(calls) == 3
    assert mask(one, "a").flags.writeable
