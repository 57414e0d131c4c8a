"""Reading hubble's own text renderings gives the frame reading the same flows as jsonpb gives.

Every `.txt` in ../shared/real-flows/rendered and ../shared/reference-renderings is what the real
hubble CLI (v1.19.4) printed for a jsonpb file beside it. Text carries less than jsonpb, so the
jsonpb frame is first reduced to what that rendering shows (`shown_by_text`): the time at the
text's precision, hosts as printed (pod, else service, else DNS names, else IP), no policy-verdict
drop reasons, ... Then every column the format carries must match exactly.
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from shared_data import SHARED

from flowlens import load
from flowlens.frame import build, concat, lost_events
from flowlens.sources.batch import ReadReport
from flowlens.sources.files import Opened
from flowlens.sources.text import read_text

REAL = SHARED / "real-flows"
REFERENCE = SHARED / "reference-renderings"

_SIDE = ["namespace", "pod", "ip", "port", "names"]
# What every text format prints for a flow.
TEXT_COLUMNS = [
    "time", "verdict", "event", "event_type", "event_subtype", "drop_reason", "drop_reason_code",
    "traffic_direction", "policy_match",
    *(f"src_{c}" for c in _SIDE), *(f"dst_{c}" for c in _SIDE), "ip_version",
    "protocol", "tcp_flags", "icmp_type", "l7_type", "l7_protocol",
    "http_method", "http_url", "http_code", "http_protocol", "latency_ns",
    "dns_query", "dns_rcode", "dns_qtypes", "dns_ips",
    "auth_type", "ip_trace_id", "summary",
]
# Compared columns per format; `node` and `policies` are added for the variants that print them.
COMPARED = {
    "compact": [*TEXT_COLUMNS, "is_reply", "src_identity", "dst_identity"],
    "dict": TEXT_COLUMNS,
    "table": TEXT_COLUMNS,
}
HTTP_COLUMNS = ["http_method", "http_url", "http_code", "http_protocol"]
DNS_COLUMNS = ["dns_query", "dns_rcode", "dns_qtypes", "dns_ips"]
LOST_COMPARED = ["time", "source", "cpu", "num_events_lost", "first", "last", "position"]


@dataclass(frozen=True)
class Rendering:
    text: Path
    jsonpb: tuple[Path, ...]
    fmt: str
    year: int
    precision: str = "ms"  # the time format's resolution, as a pandas frequency
    node: bool = False
    numeric: bool = False
    policies: bool = False

    @property
    def columns(self) -> list[str]:
        extra = ["node"] * self.node + ["policies"] * self.policies
        return COMPARED[self.fmt] + extra

    def __str__(self) -> str:
        return self.text.name


def _renderings() -> list[Rendering]:
    otel = tuple(sorted((REAL / "hubble-otel").glob("*.json")))
    rendered = REAL / "rendered"
    cases = [Rendering(rendered / f"{p.stem}.compact.txt", (p,), "compact", 2021) for p in otel]
    cases += [
        Rendering(rendered / "all.compact-node-name.txt", otel, "compact", 2021, node=True),
        Rendering(rendered / "all.compact-rfc3339nano.txt", otel, "compact", 2021, precision="ns"),
        Rendering(rendered / "all.compact-numeric.txt", otel, "compact", 2021, numeric=True),
        Rendering(rendered / "all.dict.txt", otel, "dict", 2021),
        Rendering(rendered / "all.table.txt", otel, "table", 2021),
    ]
    for name in ("coverage", "lab-small"):
        src = (REFERENCE / f"{name}.jsonl",)
        text = {v: REFERENCE / f"{name}.{v}.txt" for v in (
            "compact", "compact-node-name", "compact-policy-names", "compact-rfc3339milli",
            "dict", "table")}
        cases += [
            Rendering(text["compact"], src, "compact", 2026),
            Rendering(text["compact-node-name"], src, "compact", 2026, node=True),
            Rendering(text["compact-policy-names"], src, "compact", 2026, policies=True),
            Rendering(text["compact-rfc3339milli"], src, "compact", 2026),
            Rendering(text["dict"], src, "dict", 2026),
            Rendering(text["table"], src, "table", 2026),
        ]
    return cases


RENDERINGS = _renderings()


def test_every_rendering_is_covered() -> None:
    texts = {*REAL.glob("rendered/*.txt"), *REFERENCE.glob("*.txt")}
    assert texts == {r.text for r in RENDERINGS}, "a rendering in ../shared has no test case"


# --- what the text shows of a jsonpb frame ---------------------------------------------------


def _as_objects(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories as plain values and every NA as None, so frames compare by value."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
                or pd.api.types.is_datetime64_any_dtype(column)):
            out[name] = column.astype(object).where(column.notna(), None)
    return out


def _family(ip: str) -> str:
    return f"IPv{ipaddress.ip_address(ip).version}"


def _shown_side(j: pd.DataFrame, side: str, numeric: bool) -> pd.DataFrame:
    """namespace/pod/ip/names as hubble prints a host: pod, else service, else names, else IP."""
    ns, pod, ip, names = (j[f"{side}_{c}"].copy() for c in ("namespace", "pod", "ip", "names"))
    service = j[f"{side}_service"]
    svc_ns = service.map(lambda s: s.partition("/")[0], na_action="ignore")
    svc_name = service.map(lambda s: s.partition("/")[2], na_action="ignore")
    if numeric:
        ns[:] = pod[:] = names[:] = None
    else:
        has_pod = pod.notna()
        ns = ns.where(~(has_pod & service.notna()), svc_ns)  # the namespace comes from the service
        shows_service = ~has_pod & service.notna()
        ns = ns.where(~shows_service, svc_ns)
        pod = pod.where(~shows_service, svc_name)
        by_name = has_pod | shows_service
        names = names.where(~by_name, None)
        ip = ip.where(~(by_name | names.notna()), None)
        ns = ns.where(by_name, None)
    return pd.DataFrame({f"{side}_namespace": ns, f"{side}_pod": pod, f"{side}_ip": ip,
                         f"{side}_names": names})


def shown_by_text(jsonpb: pd.DataFrame, r: Rendering) -> pd.DataFrame:
    """The jsonpb frame reduced to what rendering `r` prints, in its compared columns."""
    j = _as_objects(jsonpb)
    etype = j["event_type"]
    j["time"] = j["time"].dt.floor(r.precision)
    for side in ("src", "dst"):
        for name, values in _shown_side(j, side, r.numeric).items():
            j[name] = values
    # The text shows an address, whose family is the ip_version. (A few synthetic coverage flows
    # mix an IPv6 source with an IPv4 destination: there the printed address is what counts.)
    printed = j["src_ip"].fillna(j["dst_ip"])
    j["ip_version"] = printed.map(_family, na_action="ignore")
    consistent = j["ip_version"].isna() | (j["ip_version"] == _as_objects(jsonpb)["ip_version"])
    assert (~consistent).sum() <= 5, "jsonpb ip_version disagrees with the printed addresses"
    policy_verdict = etype == 5
    # A policy-verdict prints ALLOWED for FORWARDED and REDIRECTED, DENIED for DROPPED and ERROR.
    j.loc[policy_verdict, "verdict"] = j.loc[policy_verdict, "verdict"].replace(
        {"REDIRECTED": "FORWARDED", "ERROR": "DROPPED"})
    not_drop = etype != 1
    j.loc[not_drop, "drop_reason"] = None
    j.loc[not_drop, "drop_reason_code"] = pd.NA
    j["traffic_direction"] = j["traffic_direction"].where(policy_verdict, None)
    l7 = etype == 129
    j["protocol"] = j["protocol"].where(~l7, None)  # an L7 summary does not name the L4 protocol
    for proto, columns in (("http", HTTP_COLUMNS), ("dns", DNS_COLUMNS)):
        other = j["l7_protocol"] != proto
        for name in columns:
            j.loc[other, name] = None  # the summary of another protocol does not carry them
    http_response = (j["l7_protocol"] == "http") & (j["l7_type"] == "RESPONSE")
    j["latency_ns"] = (j["latency_ns"] // 1_000_000 * 1_000_000).where(http_response, pd.NA)
    # `--print-policy-names` names policies after ALLOWED and DENIED; hubble 1.19 not after AUDITED.
    j["policies"] = j["policies"].where(r.policies & (j["verdict"] != "AUDIT"), None)
    return _as_objects(j[r.columns])


# --- reading -----------------------------------------------------------------------------------


def _read_jsonpb(r: Rendering) -> pd.DataFrame:
    return load.read(list(r.jsonpb), input_format="jsonpb")


def _read_text(r: Rendering) -> tuple[pd.DataFrame, ReadReport]:
    report = ReadReport()
    frame = load.read(r.text, input_format=r.fmt, year=r.year, report=report)
    return frame, report


def _column_mismatch(name: str, actual: pd.Series, expected: pd.Series, where: str) -> str | None:
    """pandas' own message for the first few rows where the column differs, or None."""
    same = (actual == expected).fillna(False).astype(bool) | (actual.isna() & expected.isna())
    rows = same.index[~same][:3]
    if not len(rows):
        return None
    try:
        pd.testing.assert_series_equal(actual[rows], expected[rows], check_dtype=False,
                                       check_categorical=False, obj=f"{where}: {name}")
    except AssertionError as exc:
        return f"{(~same).sum()} rows differ, first rows {list(rows)}:\n{exc}"
    return None


@pytest.mark.parametrize("rendering", RENDERINGS, ids=str)
def test_text_reads_as_its_jsonpb(rendering: Rendering) -> None:
    text, report = _read_text(rendering)
    assert report.bad_lines == 0 and not report.truncated, report.summary_lines()
    jsonpb = _read_jsonpb(rendering)
    assert len(text) == len(jsonpb), f"{rendering}: {len(text)} flows, jsonpb has {len(jsonpb)}"
    expected = shown_by_text(jsonpb, rendering)
    actual = _as_objects(text)[rendering.columns]
    failures = [m for name in rendering.columns
                if (m := _column_mismatch(name, actual[name], expected[name], str(rendering)))]
    assert not failures, "\n\n".join(failures)
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, check_categorical=False)


@pytest.mark.parametrize("rendering", RENDERINGS, ids=str)
def test_lost_events_read_as_in_jsonpb(rendering: Rendering) -> None:
    text = lost_events(_read_text(rendering)[0])
    jsonpb = lost_events(_read_jsonpb(rendering))
    jsonpb["time"] = jsonpb["time"].dt.floor(rendering.precision)
    pd.testing.assert_frame_equal(
        _as_objects(text[LOST_COMPARED]), _as_objects(jsonpb[LOST_COMPARED]),
        check_dtype=False, check_categorical=False, obj=f"{rendering}: lost events")
    assert text["node"].isna().all() or rendering.fmt != "compact"


# --- grammar details not in the fixtures -----------------------------------------------------


def _read(text: str, fmt: str = "compact", *, year: int | None = 2024,
          reference: dt.datetime | None = None, batch_size: int = 50_000,
          ) -> tuple[pd.DataFrame, ReadReport]:
    report = ReadReport()
    opened = Opened("t.txt", io.BufferedReader(io.BytesIO(text.encode())), None)
    batches = read_text(opened, report, fmt, year=year, batch_size=batch_size,
                        reference_time=reference)
    return concat(build(b) for b in batches), report


FLOW = "{ts}: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)\n"


def _times(frame: pd.DataFrame) -> list[str]:
    return [t.isoformat() for t in frame["time"]]


@pytest.mark.parametrize(("stamp", "iso"), [
    ("Jan 26 09:07:03.396", "2024-01-26T09:07:03.396000+00:00"),
    ("2024-01-26", "2024-01-26T00:00:00+00:00"),
    ("2024-01-26T09Z", "2024-01-26T09:00:00+00:00"),
    ("2024-01-26T09:07Z", "2024-01-26T09:07:00+00:00"),
    ("2024-01-26T09:07:03Z", "2024-01-26T09:07:03+00:00"),
    ("2024-01-26T09:07:03.396Z", "2024-01-26T09:07:03.396000+00:00"),
    ("2024-01-26T09:07:03.396123Z", "2024-01-26T09:07:03.396123+00:00"),
    ("2024-01-26T09:07:03.396123456Z", "2024-01-26T09:07:03.396123456+00:00"),
    ("Fri, 26 Jan 2024 09:07:03 +0000", "2024-01-26T09:07:03+00:00"),
])
def test_every_time_format(stamp: str, iso: str) -> None:
    frame, report = _read(FLOW.format(ts=stamp))
    assert report.bad_lines == 0, report.examples
    assert frame["time"][0] == pd.Timestamp(iso)


def test_missing_time_is_na() -> None:
    frame, report = _read(FLOW.format(ts="N/A"))
    assert report.bad_lines == 0
    assert frame["time"].isna().all()


def test_year_is_the_latest_not_after_the_reference_and_steps_at_new_year() -> None:
    lines = "".join(FLOW.format(ts=t) for t in (
        "Dec 31 23:59:59.998", "Jan  1 00:00:00.001", "Dec 31 23:59:59.999", "Jan  1 00:00:00.002",
        "Feb  3 10:00:00.000"))
    frame, _ = _read(lines, year=None, reference=dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc))
    assert _times(frame) == [
        "2024-12-31T23:59:59.998000+00:00", "2025-01-01T00:00:00.001000+00:00",
        "2024-12-31T23:59:59.999000+00:00", "2025-01-01T00:00:00.002000+00:00",
        "2025-02-03T10:00:00+00:00"]


def test_year_before_the_reference_date_is_last_year() -> None:
    frame, _ = _read(FLOW.format(ts="Nov 26 09:07:03.396"), year=None,
                     reference=dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc))
    assert frame["time"][0].year == 2025
    frame, _ = _read(FLOW.format(ts="Feb 29 09:07:03.396"), year=None,
                     reference=dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc))
    assert frame["time"][0].year == 2024


def test_given_year_wins() -> None:
    frame, _ = _read(FLOW.format(ts="Nov 26 09:07:03.396"), year=2019)
    assert frame["time"][0].year == 2019


def test_spec_examples_compact() -> None:
    text = (
        "Jan  1 00:20:34.567 [k8s1]: 2.2.2.2:8080 (ID:12345) <- 1.1.1.1:31793 (health) Policy denied DROPPED (TCP Flags: SYN)\n"
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:L3-Only INGRESS ALLOWED BY my-policy (CiliumNetworkPolicy), my-policy-2 (CiliumClusterwideNetworkPolicy) (TCP Flags: SYN)\n"
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:none EGRESS AUDITED BY my-policy (CiliumNetworkPolicy) (TCP Flags: SYN)\n"
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (IP Trace ID: 1234; TCP Flags: SYN, ACK; Auth: SPIRE)\n"
        "Jan  1 00:20:34.567: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) kafka-request DROPPED (Kafka request 1234 correlation id 1 topic 'my-topic^[[30mblack^[[0m^[\\r')\n"
        "Jan  2 12:51:20.053: demo/client (ID:22917) <> kube-system/kube-dns:53 (world) pre-xlate-fwd TRACED (UDP)\n"
        "Jan  2 12:51:20.053: [fd00::1]:8080 (ID:11) -> a,b:53 (world-ipv6) 210, 0 DROPPED ()\n"
        "Jan  2 12:51:20.053: 00:01:02:03:04:05 (unknown) -> fd00::2 (ID:16777217) DBG_CAPTURE_FROM_LB FORWARDED (Ethernet)\n"
        "Jan  2 12:51:20.053: 10.0.0.1 (host) -> 10.0.0.2 (remote-node) No tunnel/encapsulation endpoint (datapath BUG!) DROPPED (ICMPv4 DestinationUnreachable(Port))\n"
        "Jan  2 12:51:20.053: 10.0.0.1 (host) -> 10.0.0.2 (remote-node) NAT 46/64 not enabled DROPPED (TCP Flags: )\n"
        "Jan  2 12:51:20.053: 10.0.0.1 (host) -> 10.0.0.2 (remote-node) 123 FORWARDED (UDP)\n"
    )
    frame, report = _read(text)
    assert report.bad_lines == 0, report.examples
    rows = frame.to_dict("records")
    reply, allowed, audited, traced_id, kafka, xlate, unknown_drop, capture, bug, nat, trace = rows
    assert (reply["src_ip"], reply["src_port"], reply["src_identity"], reply["is_reply"]) == \
        ("1.1.1.1", 31793, 4, True)
    assert (reply["dst_ip"], reply["dst_identity"], reply["node"]) == ("2.2.2.2", 12345, "k8s1")
    assert (reply["event_type"], reply["event_subtype"], reply["drop_reason"],
            reply["drop_reason_code"]) == (1, 133, "POLICY_DENIED", 133)
    assert (allowed["verdict"], allowed["event"], allowed["traffic_direction"],
            allowed["policy_match"], allowed["event_type"]) == \
        ("FORWARDED", "policy-verdict:L3-Only", "INGRESS", "L3-Only", 5)
    assert allowed["policies"] == \
        "my-policy (CiliumNetworkPolicy), my-policy-2 (CiliumClusterwideNetworkPolicy)"
    assert pd.isna(allowed["is_reply"])
    assert (audited["verdict"], audited["traffic_direction"]) == ("AUDIT", "EGRESS")
    assert (traced_id["ip_trace_id"], traced_id["auth_type"], traced_id["summary"],
            traced_id["tcp_flags"], traced_id["is_reply"]) == \
        (1234, "SPIRE", "TCP Flags: SYN, ACK", "SYN,ACK", False)
    assert kafka["summary"] == "Kafka request 1234 correlation id 1 topic 'my-topic\x1b[30mblack\x1b[0m\x1b\r'"
    assert (kafka["l7_protocol"], kafka["l7_type"], kafka["event_type"]) == ("kafka", "REQUEST", 129)
    assert (xlate["event_type"], xlate["event_subtype"], xlate["src_namespace"], xlate["src_pod"],
            xlate["dst_port"], xlate["protocol"], xlate["dst_identity"]) == \
        (7, 1, "demo", "client", 53, "UDP", 2)
    assert pd.isna(xlate["src_port"])
    assert (unknown_drop["event_type"], unknown_drop["event_subtype"],
            unknown_drop["drop_reason_code"], unknown_drop["src_ip"], unknown_drop["src_port"],
            unknown_drop["dst_names"], unknown_drop["ip_version"], unknown_drop["src_identity"]) == \
        (1, 210, 210, "fd00::1", 8080, "a,b", "IPv6", 11)
    assert pd.isna(unknown_drop["drop_reason"]) and pd.isna(unknown_drop["summary"])
    assert (capture["event_type"], capture["event_subtype"], capture["dst_ip"],
            capture["src_identity"], capture["dst_identity"]) == (3, 5, "fd00::2", 0, 16777217)
    assert pd.isna(capture["src_ip"]) and pd.isna(capture["protocol"])
    assert (bug["event_subtype"], bug["protocol"], bug["icmp_type"]) == \
        (160, "ICMPv4", "DestinationUnreachable(Port)")
    assert (nat["drop_reason"], nat["drop_reason_code"], nat["protocol"]) == \
        ("FAILED_TO_INSERT_INTO_PROXYMAP", 161, "TCP")
    assert pd.isna(nat["tcp_flags"])
    assert (trace["event"], trace["event_type"], trace["event_subtype"]) == ("123", 4, 123)


def test_l7_summaries() -> None:
    text = (
        "Sep  1 14:11:03.118: prod/frontend:52118 (ID:25478) <- prod/payments:8080 (ID:31902) http-response FORWARDED (HTTP/1.1 503 4138ms (GET http://payments.prod.svc:8080/healthz))\n"
        "Oct  1 15:32:18.121: ns/test-pod:39368 (ID:153368) <- kube-system/dns:53 (ID:183526) dns-response proxy FORWARDED (DNS Answer \"20.205.243.166,1.2.3.4\" CNAMEs: \"github.com.\" TTL: 30 (Proxy www.github.com. A,AAAA))\n"
        "Oct  1 15:32:18.121: ns/test-pod:39368 (ID:153368) <- kube-system/dns:53 (ID:183526) dns-response proxy FORWARDED (DNS Answer RCode: Query Refused TTL: 4294967295 (Proxy x.invalid. A))\n"
        "Oct  1 15:32:18.121: ns/test-pod:39368 (ID:153368) -> kube-system/dns:53 (ID:183526) dns-request proxy FORWARDED (DNS Query x.invalid. AAAA)\n"
    )
    frame, report = _read(text)
    assert report.bad_lines == 0, report.examples
    http, answer, refused, query = frame.to_dict("records")
    assert (http["http_protocol"], http["http_code"], http["latency_ns"], http["http_method"],
            http["http_url"], http["src_pod"], http["l7_type"]) == \
        ("HTTP/1.1", 503, 4_138_000_000, "GET", "http://payments.prod.svc:8080/healthz",
         "payments", "RESPONSE")
    assert pd.isna(http["protocol"])
    assert (answer["dns_ips"], answer["dns_rcode"], answer["dns_query"], answer["dns_qtypes"],
            answer["event"]) == \
        ("20.205.243.166,1.2.3.4", 0, "www.github.com.", "A,AAAA", "dns-response proxy")
    assert (refused["dns_rcode"], refused["dns_query"]) == (5, "x.invalid.")
    assert pd.isna(refused["dns_ips"])
    assert (query["dns_query"], query["dns_qtypes"], query["is_reply"]) == ("x.invalid.", "AAAA", False)
    assert pd.isna(query["dns_rcode"])


def test_lost_events_with_first_and_last_keep_their_place() -> None:
    text = (
        FLOW.format(ts="Jan  1 00:20:34.567")
        + "Jan  1 00:20:34.567 EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1 (first: Jan  1 00:20:30.567, last: Jan  1 00:20:38.567)\n"
        + FLOW.format(ts="Jan  1 00:20:35.567") * 3
        + "Jan  1 00:20:36.567 EVENTS LOST: PERF_EVENT_RING_BUFFER CPU(0) 7\n"
    )
    frame, report = _read(text)
    lost = lost_events(frame)
    assert len(frame) == 4 and report.bad_lines == 0
    assert lost["position"].tolist() == [1, 4]
    assert lost["num_events_lost"].tolist() == [1, 7]
    assert lost["cpu"].tolist() == [5, 0]
    assert lost["first"][0] == pd.Timestamp("2024-01-01T00:20:30.567Z")
    assert lost["last"][0] == pd.Timestamp("2024-01-01T00:20:38.567Z")
    assert lost["source"].tolist() == ["HUBBLE_RING_BUFFER", "PERF_EVENT_RING_BUFFER"]
    assert lost["node"].isna().all()


@pytest.mark.parametrize("batch_size", [1, 2, 3, 50_000])
def test_batches_count_lost_event_positions_across_the_source(batch_size: int) -> None:
    """As the jsonpb reader does: a position counts every flow of the source before it."""
    text = (FLOW.format(ts="Jan  1 00:20:34.567")
            + "Jan  1 00:20:34.567 EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1\n"
            + FLOW.format(ts="Jan  1 00:20:35.567") * 3
            + "Jan  1 00:20:36.567 EVENTS LOST: PERF_EVENT_RING_BUFFER CPU(0) 7\n")
    opened = Opened("t.txt", io.BufferedReader(io.BytesIO(text.encode())), None)
    batches = list(read_text(opened, ReadReport(), "compact", year=2024, batch_size=batch_size))
    assert [b.size for b in batches] == _sizes(4, batch_size)
    assert [e["position"] for b in batches for e in b.lost_events] == [1, 4]
    assert all(len(v) == b.size for b in batches for v in b.columns.values())


def _sizes(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


DICT_WITH_NODE = """\
  TIMESTAMP: Jan  1 00:20:34.567
       NODE: k8s1
     SOURCE: 1.1.1.1:31793
DESTINATION: 2.2.2.2:8080
       TYPE: policy-verdict:none EGRESS
    VERDICT: DENIED BY my-policy (CiliumNetworkPolicy)
    SUMMARY: TCP Flags: SYN
------------
  TIMESTAMP: Jan  1 00:20:35.000
       NODE: k8s2
     SOURCE: HUBBLE_RING_BUFFER
       TYPE: EVENTS LOST
    VERDICT: -
    SUMMARY: CPU(5) - 1 (first: Jan  1 00:20:30.567, last: Jan  1 00:20:38.567)
"""


def test_dict_with_node_lines() -> None:
    frame, report = _read(DICT_WITH_NODE, "dict")
    assert report.bad_lines == 0, report.examples
    row = frame.iloc[0]
    assert (row["node"], row["src_ip"], row["dst_port"], row["verdict"], row["policies"],
            row["traffic_direction"]) == \
        ("k8s1", "1.1.1.1", 8080, "DROPPED", "my-policy (CiliumNetworkPolicy)", "EGRESS")
    assert pd.isna(row["is_reply"]) and pd.isna(row["src_identity"])
    lost = lost_events(frame)
    assert lost[["node", "cpu", "num_events_lost", "position"]].values.tolist() == [["k8s2", 5, 1, 1]]


def test_table_with_node_column() -> None:
    text = (
        "TIMESTAMP             NODE   SOURCE          DESTINATION    TYPE            VERDICT   SUMMARY\n"
        "Jan  1 00:20:34.567   k8s1   1.1.1.1:31793   2.2.2.2:8080   Policy denied   DROPPED   TCP Flags: SYN\n"
    )
    frame, report = _read(text, "table")
    assert report.bad_lines == 0, report.examples
    row = frame.iloc[0]
    assert (row["node"], row["src_ip"], row["src_port"], row["dst_ip"], row["event"],
            row["drop_reason"], row["summary"]) == \
        ("k8s1", "1.1.1.1", 31793, "2.2.2.2", "Policy denied", "POLICY_DENIED", "TCP Flags: SYN")


def test_bad_lines_are_reported_with_their_line_number() -> None:
    good = FLOW.format(ts="Jan  1 00:20:34.567")
    text = good * 2 + "garbage\n" + good + "\n" + good.replace("(ID:12345)", "(ID:x)") + good[:40]
    frame, report = _read(text)
    assert len(frame) == 3
    assert report.bad_lines == 2
    assert [e.split(":")[1] for e in report.examples] == ["3", "6"]
    assert report.truncated == ["t.txt:7"]


def test_a_complete_last_line_without_newline_is_read() -> None:
    frame, report = _read(FLOW.format(ts="Jan  1 00:20:34.567").rstrip("\n"))
    assert len(frame) == 1 and not report.truncated and report.bad_lines == 0


def test_crlf_line_endings() -> None:
    frame, report = _read(FLOW.format(ts="Jan  1 00:20:34.567").replace("\n", "\r\n") * 2)
    assert len(frame) == 2 and report.bad_lines == 0
    assert frame["summary"][0] == "TCP Flags: SYN"
