"""hubble's filter flags: validation, the FlowFilters they build, and the same filters over frames.

Mask tests hold `mask()` against predicates written directly over the raw flow JSON of the shared
captures, so they check the frame back-end against the data, not against itself.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pandas as pd
import pytest
from click.testing import CliRunner
from shared_data import SHARED

from flowlens import filters as F
from flowlens.errors import UsageError
from flowlens.filters import (
    FilterCommand,
    Filters,
    filter_options,
    mask,
    selected_rows,
    to_request,
)
from flowlens.load import read

COVERAGE = SHARED / "reference-renderings" / "coverage.jsonl"
LAB = SHARED / "reference-renderings" / "lab-small.jsonl"
OTEL_HTTP = SHARED / "real-flows" / "hubble-otel" / "basic-sample-348-http-flows.json"
OTEL_DNS = SHARED / "real-flows" / "hubble-otel" / "basic-sample-330-dns-flows.json"
OTEL_TCP = SHARED / "real-flows" / "hubble-otel" / "basic-sample-400-tcp-flows.json"

Flow = dict[str, Any]


def pairs(*argv: str) -> Filters:
    """Filters from a hubble-like command line (a value follows every flag that takes one)."""
    out: list[tuple[str, str | None]] = []
    it = iter(argv)
    for arg in it:
        name = F.canonical_flag(arg)
        flag = F.FLAGS_BY_NAME.get(name)
        takes = flag.takes_value if flag else name in (
            "allowlist", "denylist", "since", "until", "last", "first")
        out.append((arg, next(it) if takes else None))
    return Filters.from_pairs(out)


def raw_filters(*argv: str) -> tuple[list[Flow], list[Flow]]:
    f = pairs(*argv)
    return list(f.whitelist), list(f.blacklist)


# ---- spec §4.1: the README example, byte for byte ----------------------------------------------

def test_readme_print_raw_filters_example() -> None:
    f = pairs("-t", "drop", "-n", "kube-system", "--not", "--label", "k8s:k8s-app=kube-dns")
    assert F.raw_filters_yaml(f) == (
        "allowlist:\n"
        """    - '{"source_pod":["kube-system/"],"event_type":[{"type":1}]}'\n"""
        """    - '{"destination_pod":["kube-system/"],"event_type":[{"type":1}]}'\n"""
        "denylist:\n"
        """    - '{"source_label":["k8s:k8s-app=kube-dns"]}'\n"""
        """    - '{"destination_label":["k8s:k8s-app=kube-dns"]}'\n"""
    )


def test_raw_filters_follow_declaration_order_and_protojson_forms() -> None:
    f = pairs("--ip-trace-id", "7", "--verdict", "DROPPED", "--uuid", "u-1", "-t",
              "trace:to-endpoint")
    assert F.raw_filters_yaml(f) == (
        "allowlist:\n"
        """    - '{"uuid":["u-1"],"verdict":["DROPPED"],"""
        """"event_type":[{"type":4,"match_sub_type":true}],"ip_trace_id":["7"]}'\n"""
        "denylist: []\n"
    )


def test_raw_filters_quote_single_quotes_the_yaml_way() -> None:
    text = F.raw_filters_yaml(pairs("--http-path", "it's"))
    assert """    - '{"http_path":["it''s"]}'\n""" in text


# ---- left / right filters ---------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "value", "src", "dst", "parsed"), [
    ("--ip", "10.0.0.1", "source_ip", "destination_ip", "10.0.0.1"),
    ("--pod", "web", "source_pod", "destination_pod", "web"),
    ("--service", "ns/svc", "source_service", "destination_service", "ns/svc"),
    ("--fqdn", "*.cilium.io", "source_fqdn", "destination_fqdn", "*.cilium.io"),
    ("-l", "k8s:app=x", "source_label", "destination_label", "k8s:app=x"),
    ("--identity", "world", "source_identity", "destination_identity", 2),
    ("--workload", "Deployment/web", "source_workload", "destination_workload",
     {"kind": "Deployment", "name": "web"}),
    ("--cluster", "prod-*", "source_cluster_name", "destination_cluster_name", "prod-*"),
    ("--port", "53", "source_port", "destination_port", "53"),
])
def test_either_side_flags_make_a_left_and_a_right_filter(
        flag: str, value: str, src: str, dst: str, parsed: Any) -> None:
    white, black = raw_filters(flag, value, "--verdict", "DROPPED")
    assert white == [{src: [parsed], "verdict": ["DROPPED"]},
                     {dst: [parsed], "verdict": ["DROPPED"]}]
    assert black == []
    # --from-X / --to-X write one side into both filters, which then merge into one.
    name = F.canonical_flag(flag)
    assert raw_filters(f"--from-{name}", value)[0] == [{src: [parsed]}]
    assert raw_filters(f"--to-{name}", value)[0] == [{dst: [parsed]}]


def test_repeated_flags_or_and_different_flags_and() -> None:
    white, _ = raw_filters("--from-pod", "a", "--from-pod", "b", "--protocol", "tcp")
    assert white == [{"source_pod": ["a", "b"], "protocol": ["tcp"]}]


def test_one_sided_directional_flags_combine_in_both_filters() -> None:
    white, _ = raw_filters("--from-ip", "1.1.1.1", "--to-port", "80", "--label", "a=b")
    assert white == [
        {"source_ip": ["1.1.1.1"], "destination_port": ["80"], "source_label": ["a=b"]},
        {"source_ip": ["1.1.1.1"], "destination_port": ["80"], "destination_label": ["a=b"]},
    ]


def test_value_flags_and_switches_map_to_their_fields() -> None:
    white, _ = raw_filters(
        "-4", "--ip-version", "v6", "--ip-version", "none", "--encrypted", "--tcp-flags",
        "syn,ACK", "--tcp-flags", "FIN", "--http-header", "X-A:b:c", "--interface", "eth0",
        "--cel-expression", "_flow.verdict == 2", "--traffic-direction", "Ingress",
        "--snat-ip", "10.0.0.0/8", "--node-label", "k=v", "--trace-id", "abc",
        "--ip-trace-id", "16", "--drop-reason-desc", "POLICY_DENIED")
    assert white == [{
        "ip_version": ["IPv4", "IPv6", "IP_NOT_USED"], "encrypted": [True],
        "tcp_flags": [{"SYN": True, "ACK": True}, {"FIN": True}],
        "http_header": [{"key": "X-A", "value": "b:c"}], "interface": [{"name": "eth0"}],
        "experimental": {"cel_expression": ["_flow.verdict == 2"]},
        "traffic_direction": ["INGRESS"], "source_ip_xlated": ["10.0.0.0/8"],
        "node_labels": ["k=v"], "trace_id": ["abc"], "ip_trace_id": [16],
        "drop_reason_desc": ["POLICY_DENIED"],
    }]
    req = to_request(pairs("--unencrypted", "-6"))
    assert list(req.whitelist[0].encrypted) == [False]


@pytest.mark.parametrize(("value", "parsed"), [
    ("drop", {"type": 1}),
    ("trace:to-endpoint", {"type": 4, "match_sub_type": True, "sub_type": 0}),
    ("trace:from-network", {"type": 4, "match_sub_type": True, "sub_type": 10}),
    ("policy-verdict", {"type": 5}),
    ("l7", {"type": 129}),
    ("agent:policy-updated", {"type": 130, "match_sub_type": True, "sub_type": 5}),
    ("1:133", {"type": 1, "match_sub_type": True, "sub_type": 133}),
    ("trace-sock", {"type": 7}),
])
def test_type_names_and_sub_types(value: str, parsed: Flow) -> None:
    assert raw_filters("-t", value)[0] == [{"event_type": [parsed]}]


@pytest.mark.parametrize(("value", "number"), [
    ("host", 1), ("world", 2), ("remote-node", 6), ("kube-apiserver", 7),
    ("overlay-to-encrypt", 11), ("16777217", 16777217), ("0x10", 16), ("010", 8),
    ("0b11", 3), ("0o17", 15),
])
def test_identity_names_and_base0_numbers(value: str, number: int) -> None:
    assert raw_filters("--from-identity", value)[0] == [{"source_identity": [number]}]


# ---- --not -------------------------------------------------------------------------------------

def test_not_routes_only_the_next_filter_flag_to_the_denylist() -> None:
    white, black = raw_filters("--from-pod", "a", "--not", "--to-pod", "b", "--verdict",
                               "DROPPED")
    assert white == [{"source_pod": ["a"], "verdict": ["DROPPED"]}]
    assert black == [{"destination_pod": ["b"]}]


def test_not_skips_selection_flags() -> None:
    f = pairs("--not", "--since", "1h", "--from-pod", "a")
    assert f.blacklist == ({"source_pod": ["a"]},) and f.whitelist == () and f.since == "1h"


@pytest.mark.parametrize("argv", [("--not", "--not", "--pod", "a"), ("--pod", "a", "--not")])
def test_not_not_and_trailing_not_are_errors(argv: tuple[str, ...]) -> None:
    with pytest.raises(UsageError, match="--not"):
        pairs(*argv)


# ---- incompatible groups ---------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (("--ip", "1.1.1.1", "--pod", "x"), "filters --ip and --pod cannot be combined"),
    (("--from-fqdn", "a.io", "-n", "x"), "filters --from-fqdn and --namespace cannot be combined"),
    (("-n", "x", "--to-pod", "y"), "filters --namespace and --to-pod cannot be combined"),
    (("-A", "--from-service", "y"),
     "filters --all-namespaces and --from-service cannot be combined"),
    (("-n", "x", "-A"), "filters --namespace and --all-namespaces cannot be combined"),
    (("--label", "a", "--from-label", "b"), "filters --label and --from-label cannot be combined"),
    (("--to-service", "a", "--service", "b"),
     "filters --to-service and --service cannot be combined"),
    (("--port", "1", "--to-port", "2"), "filters --port and --to-port cannot be combined"),
    (("--from-identity", "1", "--identity", "2"),
     "filters --from-identity and --identity cannot be combined"),
    (("--workload", "a", "--from-workload", "b"),
     "filters --workload and --from-workload cannot be combined"),
    (("--encrypted", "--unencrypted"), "filters --encrypted and --unencrypted cannot be combined"),
    (("--to-ip", "1.1.1.1", "--to-fqdn", "a.io"),
     "filters --to-ip and --to-fqdn cannot be combined"),
])
def test_incompatible_flags(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError) as err:
        pairs(*argv)
    assert str(err.value) == message


@pytest.mark.parametrize("argv", [
    ("--ip", "1.1.1.1", "--not", "--pod", "x"),  # checked per tracker
    ("--from-pod", "a", "--to-pod", "b"),
    ("--from-ip", "1.1.1.1", "--to-pod", "b"),
    ("--from-label", "a", "--to-label", "b"),
    ("-n", "a", "-n", "b"),
    ("-n", "a", "--pod", "web", "--service", "svc"),
])
def test_compatible_flags(argv: tuple[str, ...]) -> None:
    pairs(*argv)


# ---- namespaces (spec §4.3) ------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "white"), [
    (("-n", "kube-system"),
     [{"source_pod": ["kube-system/"]}, {"destination_pod": ["kube-system/"]}]),
    (("-n", "ns", "--pod", "web"), [{"source_pod": ["ns/web"]}, {"destination_pod": ["ns/web"]}]),
    (("-A", "--pod", "web"), [{"source_pod": ["/web"]}, {"destination_pod": ["/web"]}]),
    (("--all-namespaces",), [{"source_pod": ["/"]}, {"destination_pod": ["/"]}]),
    (("-n", "a", "-n", "b"), [{"source_pod": ["a/", "b/"]}, {"destination_pod": ["a/", "b/"]}]),
    (("-n", "ns", "--service", "svc"),
     [{"source_service": ["ns/svc"]}, {"destination_service": ["ns/svc"]}]),
    (("--from-namespace", "a"), [{"source_pod": ["a/"]}]),
    (("--from-namespace", "a", "--to-namespace", "b"),
     [{"source_pod": ["a/"], "destination_pod": ["b/"]}]),
    (("--from-namespace", "a", "--from-pod", "web", "--to-pod", "api"),
     [{"source_pod": ["a/web"], "destination_pod": ["api"]}]),
    (("-n", "ns", "--pod", "ns/web"),
     [{"source_pod": ["ns/web"]}, {"destination_pod": ["ns/web"]}]),
    (("--to-all-namespaces", "--to-pod", "x/web"), [{"destination_pod": ["x/web"]}]),
])
def test_namespace_flags(argv: tuple[str, ...], white: list[Flow]) -> None:
    assert raw_filters(*argv)[0] == white


def test_a_pod_in_another_namespace_conflicts() -> None:
    with pytest.raises(UsageError, match="'other/web' names namespace 'other'"):
        pairs("-n", "ns", "--pod", "other/web")


# ---- malformed values ------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (("--port", "70000"), "invalid value '70000' for --port: out of range (max 65535)"),
    (("--to-port", "http"), "invalid value 'http' for --to-port: not a number"),
    (("--port", "+80"), "invalid value '+80' for --port: not a number"),
    (("--identity", "worlds"), "invalid value 'worlds' for --identity: not a number: want"),
    (("--identity", "unknown"), "invalid value 'unknown' for --identity"),
    (("--from-identity", "4294967296"), "for --from-identity: out of range"),
    (("--verdict", "dropped"), "invalid value 'dropped' for --verdict: not a verdict"),
    (("--drop-reason-desc", "Policy denied"), "for --drop-reason-desc: not a drop reason"),
    (("-t", "drops"), "invalid value 'drops' for --type: unknown type 'drops'"),
    (("-t", "trace:to-nowhere"), "for --type: unknown sub type 'to-nowhere'"),
    (("-t", "drop:"), "for --type: unknown sub type ''"),
    (("--http-status", "600"), "invalid value '600' for --http-status"),
    (("--http-status", "5xx"), "invalid value '5xx' for --http-status"),
    (("--http-status", "500+"), "invalid value '500+' for --http-status"),
    (("--tcp-flags", "SYN,SYNACK"), "for --tcp-flags: unknown TCP flag 'SYNACK'"),
    (("--traffic-direction", "up"), "invalid value 'up' for --traffic-direction"),
    (("--ip", "10.0.0.300"), "invalid value '10.0.0.300' for --ip: not an IP address or CIDR"),
    (("--to-ip", "10.0.0.0/33"), "for --to-ip: not an IP address or CIDR"),
    (("--fqdn", "a b.io"), "invalid value 'a b.io' for --fqdn"),
    (("-l", "app in (a,b"), "for --label: unbalanced '('"),
    (("--from-label", "=web"), "for --from-label: cannot parse"),
    (("--http-path", "(unclosed"), "for --http-path: error parsing regexp: missing )"),
    (("--http-url", "*x"), "for --http-url: error parsing regexp: no argument for repetition"),
    (("--http-url", r"\Z"), "for --http-url: error parsing regexp: invalid escape sequence"),
    (("--http-url", r"a\C"), "for --http-url: error parsing regexp: invalid escape sequence"),
    (("--node-name", "a?"), "for --node-name: '?': invalid rune in pattern"),
    (("--node-name", "a/b/c"), "for --node-name: too many slashes in pattern"),
    (("--fqdn", "x.."), "for --fqdn: multiple trailing dots in pattern"),
    (("--cluster", ""), "for --cluster: name must not be empty"),
    (("--cel-expression", "_flow.verdict"), "wanted 'bool' result type"),
    (("--cel-expression", "_flow.nope"), "undefined field 'nope'"),
    (("--allowlist", '{"source_pod":[""]}'), "invalid filter: a pod or service name must not be empty"),
    (("--allowlist", '{"dns_query":["(?=x)"]}'), "invalid filter: error parsing regexp"),
    (("-t", "trace", "--http-method", "GET"),
     "invalid filter: filtering by http method requires the event type filter to only match "
     "'l7' events"),
    (("--http-header", "X-A"), "for --http-header: want KEY:VALUE"),
    (("--ip-trace-id", "0"), "for --ip-trace-id: must be greater than 0"),
    (("--protocol", "quic"), "for --protocol: unknown protocol"),
    (("--workload", "/"), "for --workload: want NAME, KIND/NAME or KIND/"),
    (("--last", "ten"), "invalid value 'ten' for --last: not a number"),
    (("--first", "-1"), "invalid value '-1' for --first: not a number"),
    (("--since", "yesterday"), "invalid value 'yesterday' for --since"),
    (("--until", "2024-01-26T09:07:03"), "for --until"),
    (("--since", "2024-02-30"), "invalid value '2024-02-30' for --since: day is out of range"),
    (("--since", "9000000h"), "invalid value '9000000h' for --since: out of range"),
    (("--allowlist", "{nope"), "invalid value for --allowlist: not a FlowFilter in JSON"),
    (("--denylist", '{"source_podd": ["x"]}'), "invalid value for --denylist"),
    (("--allowlist", "[1]"), "invalid value for --allowlist"),
    (("--first", "1", "--last", "2"), "flags --first and --last cannot be combined"),
    (("--first", "1", "-f"), "flags --first and --follow cannot be combined"),
    (("--all", "--last", "2"), "flags --last and --all cannot be combined"),
    (("--all", "--first", "2"), "flags --first and --all cannot be combined"),
])
def test_malformed_values_raise_one_clear_usage_error(argv: tuple[str, ...], message: str
                                                       ) -> None:
    with pytest.raises(UsageError) as err:
        pairs(*argv)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_unknown_flag() -> None:
    with pytest.raises(UsageError, match="unknown filter flag '--podd'"):
        Filters.from_pairs([("--podd", "x")])
    with pytest.raises(UsageError, match="needs a value"):
        Filters.from_pairs([("--pod", None)])


# ---- the library form --------------------------------------------------------------------------

def test_from_kwargs_matches_the_command_line_form() -> None:
    f = Filters.from_kwargs(from_pod="default/frontend", verdict=["DROPPED", "AUDIT"],
                            not_label="k8s:app=x", since="1h", last=10, ipv4=True,
                            all_namespaces=False)
    g = pairs("--from-pod", "default/frontend", "--verdict", "DROPPED", "--verdict", "AUDIT",
              "--not", "--label", "k8s:app=x", "--since", "1h", "--last", "10", "-4")
    assert f == g
    assert f.whitelist == ({"source_pod": ["default/frontend"], "verdict": ["DROPPED", "AUDIT"],
                            "ip_version": ["IPv4"]},)
    assert f.blacklist == ({"source_label": ["k8s:app=x"]}, {"destination_label": ["k8s:app=x"]})
    assert f.argv()[:4] == ["--from-pod", "default/frontend", "--verdict", "DROPPED"]
    with pytest.raises(UsageError, match="--since cannot be negated"):
        Filters.from_kwargs(not_since="1h")


# ---- GetFlowsRequest (spec §4.4) ---------------------------------------------------------------

NOW = pd.Timestamp("2024-01-26T10:00:00Z")


@pytest.mark.parametrize(("argv", "expect"), [
    ((), {"number": 20}),
    (("-f",), {"follow": True}),
    (("--last", "5"), {"number": 5}),
    (("--first", "5"), {"number": 5, "first": True}),
    (("--all",), {"number": F.UINT64_MAX}),
    (("--since", "1h"), {"since": "2024-01-26T09:00:00Z"}),
    (("--since", "1h", "--until", "2024-01-26T09:30:00.5+01:00"),
     {"since": "2024-01-26T09:00:00Z", "until": "2024-01-26T08:30:00.500Z"}),
    (("-f", "--until", "10m", "--since", "20m"),
     {"follow": True, "since": "2024-01-26T09:40:00Z"}),
    (("-f", "--last", "3"), {"follow": True, "number": 3}),
])
def test_selection_flags_in_the_request(argv: tuple[str, ...], expect: dict[str, Any]) -> None:
    from google.protobuf import json_format

    req = to_request(pairs(*argv), now=NOW)
    got = json_format.MessageToDict(req, preserving_proto_field_name=True)
    if "number" in got:
        got["number"] = int(got["number"])
    assert got == expect


def test_request_carries_both_lists_and_the_field_mask() -> None:
    f = pairs("--pod", "web", "--not", "--verdict", "FORWARDED",
              "--allowlist", '{"dns_query":["x"]}{"reply":[true]}',
              "--denylist", '{"sourcePod":["kube-system/"]}')
    req = to_request(f, field_mask=["time", "verdict"])
    assert [list(w.source_pod) + list(w.destination_pod) for w in req.whitelist] == [
        ["web"], ["web"], [], []]
    assert list(req.whitelist[2].dns_query) == ["x"]
    assert list(req.whitelist[3].reply) == [True]
    assert len(req.blacklist) == 2 and list(req.blacklist[1].source_pod) == ["kube-system/"]
    assert list(req.field_mask.paths) == ["time", "verdict"]


# ---- time parsing ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expect"), [
    ("30s", "2024-01-26T09:59:30Z"),
    ("1h30m", "2024-01-26T08:30:00Z"),
    ("1.5h", "2024-01-26T08:30:00Z"),
    ("300ms", "2024-01-26T09:59:59.7Z"),
    ("2d", "2024-01-24T10:00:00Z"),
    ("1d12h", "2024-01-24T22:00:00Z"),
    ("1500us", "2024-01-26T09:59:59.9985Z"),
    ("0", "2024-01-26T10:00:00Z"),
    ("-5m", "2024-01-26T10:05:00Z"),
    ("2024-01-26", "2024-01-26T00:00:00Z"),
    ("2024-01-26T09Z", "2024-01-26T09:00:00Z"),
    ("2024-01-26T09+01:00", "2024-01-26T08:00:00Z"),
    ("2024-01-26T09:07Z", "2024-01-26T09:07:00Z"),
    ("2024-01-26T09:07:03Z", "2024-01-26T09:07:03Z"),
    ("2024-01-26T09:07:03-02:30", "2024-01-26T11:37:03Z"),
    ("2024-01-26T09:07:03.396123456Z", "2024-01-26T09:07:03.396123456Z"),
    ("Fri, 26 Jan 2024 09:07:03 +0000", "2024-01-26T09:07:03Z"),
    ("Fri, 26 Jan 2024 10:07:03 +0100", "2024-01-26T09:07:03Z"),
])
def test_parse_time(text: str, expect: str) -> None:
    assert F.parse_time(text, NOW) == pd.Timestamp(expect)


@pytest.mark.parametrize("text", ["", "1", "5 m", "1y", "h", "1h30", "2024-01-26T09:07:03",
                                  "Nov 26 09:07:03.396", "2024-1-26", "26 Jan 2024"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--since"):
        F.parse_time(text, NOW)


# ---- masks over real frames, against predicates on the raw flows ------------------------------

def raw_flows(path: Path) -> list[Flow]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if "flow" in rec:
                out.append(rec["flow"])
    return out


@pytest.fixture(scope="module")
def frames() -> dict[Path, tuple[pd.DataFrame, list[Flow]]]:
    out = {}
    for path in (COVERAGE, LAB, OTEL_HTTP, OTEL_DNS, OTEL_TCP):
        df = read(path)
        flows = raw_flows(path)
        assert len(df) == len(flows)
        out[path] = (df, flows)
    return out


def src(f: Flow) -> Flow:
    return f.get("source") or {}


def dst(f: Flow) -> Flow:
    return f.get("destination") or {}


def either(pred: Callable[[Flow], bool]) -> Callable[[Flow], bool]:
    return lambda f: pred(src(f)) or pred(dst(f))


def l4_ports(f: Flow) -> tuple[int | None, int | None]:
    for proto in ("TCP", "UDP", "SCTP"):
        body = (f.get("l4") or {}).get(proto)
        if body is not None:
            return body.get("source_port"), body.get("destination_port")
    return None, None


def tcp_flags(f: Flow) -> set[str]:
    flags = ((f.get("l4") or {}).get("TCP") or {}).get("flags") or {}
    return {k for k, v in flags.items() if v}


def http(f: Flow) -> Flow:
    return (f.get("l7") or {}).get("http") or {}


def in_net(ip: str | None, net: str) -> bool:
    return ip is not None and ipaddress.ip_address(ip) in ipaddress.ip_network(net)


def service(f: Flow, key: str) -> str:
    s = f.get(key) or {}
    return f"{s.get('namespace')}/{s.get('name')}" if s else ""


def nothing(f: Flow) -> bool:
    """For cases whose data has no match (the frame must not invent one)."""
    return False


CASES: list[tuple[Path, dict[str, Any], Callable[[Flow], bool]]] = [
    (LAB, {"from_pod": "default/frontend"},
     lambda f: src(f).get("namespace") == "default"
     and src(f).get("pod_name", "").startswith("frontend")),
    (LAB, {"from_pod": "frontend"},  # no '/': namespace default
     lambda f: src(f).get("namespace") == "default"
     and src(f).get("pod_name", "").startswith("frontend")),
    (LAB, {"pod": "kube-system/coredns"},
     either(lambda e: e.get("namespace") == "kube-system"
            and e.get("pod_name", "").startswith("coredns"))),
    (COVERAGE, {"to_all_namespaces": True, "to_pod": "db"},
     lambda f: dst(f).get("pod_name", "").startswith("db")),
    (COVERAGE, {"namespace": "kube-system"}, either(lambda e: e.get("namespace") == "kube-system")),
    (COVERAGE, {"namespace": "shop", "pod": "web"},
     either(lambda e: e.get("namespace") == "shop" and e.get("pod_name", "").startswith("web"))),
    (COVERAGE, {"from_namespace": "payments", "to_namespace": "shop"},
     lambda f: src(f).get("namespace") == "payments" and dst(f).get("namespace") == "shop"),
    (COVERAGE, {"verdict": "DROPPED"}, lambda f: f["verdict"] == "DROPPED"),
    (COVERAGE, {"verdict": ["AUDIT", "REDIRECTED"]},
     lambda f: f["verdict"] in ("AUDIT", "REDIRECTED")),
    (COVERAGE, {"not_verdict": "FORWARDED"}, lambda f: f["verdict"] != "FORWARDED"),
    (COVERAGE, {"drop_reason_desc": "POLICY_DENIED"},
     lambda f: f.get("drop_reason_desc") == "POLICY_DENIED"),
    (COVERAGE, {"label": "reserved:world"},
     either(lambda e: "reserved:world" in e.get("labels", []))),
    (COVERAGE, {"to_label": "reserved:world"},
     lambda f: "reserved:world" in dst(f).get("labels", [])),
    (COVERAGE, {"from_label": "k8s:app=web"}, lambda f: "k8s:app=web" in src(f).get("labels", [])),
    (COVERAGE, {"from_label": "app=web"}, lambda f: "k8s:app=web" in src(f).get("labels", [])),
    (COVERAGE, {"from_label": "container:app=web"}, nothing),
    (COVERAGE, {"from_label": "app in (web, db),tier=a"},
     lambda f: bool({"k8s:app=web", "k8s:app=db"} & set(src(f).get("labels", [])))
     and "k8s:tier=a" in src(f).get("labels", [])),
    (COVERAGE, {"from_label": "app notin (web,db)"},
     lambda f: not {"k8s:app=web", "k8s:app=db"} & set(src(f).get("labels", []))),
    (COVERAGE, {"from_label": "tier!=a"}, lambda f: "k8s:tier=a" not in src(f).get("labels", [])),
    (COVERAGE, {"to_label": "!k8s:app"},
     lambda f: not any(x.startswith("k8s:app=") for x in dst(f).get("labels", []))),
    (COVERAGE, {"from_label": "k8s:tier"},
     lambda f: any(x.startswith("k8s:tier=") for x in src(f).get("labels", []))),
    (COVERAGE, {"not_label": "reserved:world"},
     lambda f: not any("reserved:world" in e.get("labels", []) for e in (src(f), dst(f)))),
    (OTEL_HTTP, {"to_label": "reserved:world"},
     lambda f: "reserved:world" in dst(f).get("labels", [])),
    (OTEL_HTTP, {"label": "k8s:app=ratings"},
     either(lambda e: "k8s:app=ratings" in e.get("labels", []))),
    (COVERAGE, {"to_ip": "10.0.0.0/16"}, lambda f: in_net(f["IP"]["destination"], "10.0.0.0/16")),
    (COVERAGE, {"ip": "fd00::/8"},
     lambda f: in_net(f["IP"]["source"], "fd00::/8") or in_net(f["IP"]["destination"], "fd00::/8")),
    (LAB, {"from_ip": "10.0.1.45"}, lambda f: f["IP"]["source"] == "10.0.1.45"),
    (COVERAGE, {"port": "8080"}, lambda f: 8080 in l4_ports(f)),
    (COVERAGE, {"to_port": "53"}, lambda f: l4_ports(f)[1] == 53),
    (OTEL_DNS, {"from_port": "53"}, lambda f: l4_ports(f)[0] == 53),
    (COVERAGE, {"type": "drop"}, lambda f: f["event_type"]["type"] == 1),
    (COVERAGE, {"type": "trace:to-endpoint"},
     lambda f: f["event_type"]["type"] == 4 and f["event_type"].get("sub_type", 0) == 0),
    (COVERAGE, {"type": ["policy-verdict", "trace:from-network"]},
     lambda f: f["event_type"]["type"] == 5
     or (f["event_type"]["type"] == 4 and f["event_type"].get("sub_type") == 10)),
    (OTEL_TCP, {"type": "trace"}, lambda f: f["event_type"]["type"] == 4),
    (COVERAGE, {"http_status": "5+"}, lambda f: 500 <= http(f).get("code", 0) <= 599),
    (COVERAGE, {"http_status": ["404", "20+"]},
     lambda f: http(f).get("code") == 404 or 200 <= http(f).get("code", 0) <= 209),
    (OTEL_HTTP, {"http_status": "2+"}, lambda f: 200 <= http(f).get("code", 0) <= 299),
    (COVERAGE, {"http_method": "POST"}, lambda f: http(f).get("method") == "POST"),
    (COVERAGE, {"http_path": "^/api/v1/items/1"},
     lambda f: urlsplit(http(f).get("url", "")).path.startswith("/api/v1/items/1")),
    (OTEL_HTTP, {"http_url": r":9990/metrics$"},
     lambda f: http(f).get("url", "").endswith(":9990/metrics")),
    (COVERAGE, {"tcp_flags": "SYN"}, lambda f: "SYN" in tcp_flags(f)),
    (COVERAGE, {"tcp_flags": "syn,ack"}, lambda f: {"SYN", "ACK"} <= tcp_flags(f)),
    (COVERAGE, {"tcp_flags": ["RST", "FIN"]}, lambda f: bool({"RST", "FIN"} & tcp_flags(f))),
    (COVERAGE, {"protocol": "icmp"}, lambda f: bool({"ICMPv4", "ICMPv6"} & set(f.get("l4", {})))),
    (COVERAGE, {"protocol": "ICMPv6"}, lambda f: "ICMPv6" in f.get("l4", {})),
    (COVERAGE, {"protocol": ["udp", "sctp"]}, lambda f: bool({"UDP", "SCTP"} & set(f["l4"]))),
    (COVERAGE, {"protocol": "dns"}, lambda f: "dns" in (f.get("l7") or {})),
    (COVERAGE, {"protocol": "http"}, lambda f: "http" in (f.get("l7") or {})),
    (COVERAGE, {"identity": "world"}, either(lambda e: e.get("identity") == 2)),
    (COVERAGE, {"to_identity": ["host", "0x6"]}, lambda f: dst(f).get("identity") in (1, 6)),
    (LAB, {"from_identity": "17629"}, lambda f: src(f).get("identity") == 17629),
    (COVERAGE, {"workload": "StatefulSet/"},
     either(lambda e: any(w.get("kind") == "StatefulSet" for w in e.get("workloads", [])))),
    (COVERAGE, {"from_workload": "Deployment/web"},
     lambda f: any(w.get("kind") == "Deployment" and w.get("name") == "web"
                   for w in src(f).get("workloads", []))),
    (COVERAGE, {"to_workload": "db"},
     lambda f: any(w.get("name") == "db" for w in dst(f).get("workloads", []))),
    (COVERAGE, {"to_service": "payments/svc-"},
     lambda f: service(f, "destination_service").startswith("payments/svc-")),
    (LAB, {"service": "backend"},
     lambda f: "default/backend" in (service(f, "source_service"),
                                     service(f, "destination_service"))),
    # hubble trims a pattern's trailing dot, never a name's: names written with one (as these
    # are) match no pattern.
    (COVERAGE, {"fqdn": "*.example.com"}, nothing),
    (COVERAGE, {"to_fqdn": "API.example.com."}, nothing),
    (COVERAGE, {"node_name": "kind-worker*"}, lambda f: f["node_name"].startswith("kind-worker")),
    (COVERAGE, {"node_name": "kind-worker"}, lambda f: f["node_name"] == "kind-worker"),
    (COVERAGE, {"traffic_direction": "egress"}, lambda f: f.get("traffic_direction") == "EGRESS"),
    (COVERAGE, {"uuid": ["d2461a8a-f88a-4581-9e73-898f4507ddc9", "nope"]},
     lambda f: f["uuid"] == "d2461a8a-f88a-4581-9e73-898f4507ddc9"),
    (COVERAGE, {"ipv6": True}, lambda f: f["IP"]["ipVersion"] == "IPv6"),
    (COVERAGE, {"ip_version": "4"}, lambda f: f["IP"]["ipVersion"] == "IPv4"),
    (COVERAGE, {"ip_trace_id": "5"}, nothing),
    (COVERAGE, {"allowlist": '{"dns_query":["^nope"]}'},
     lambda f: ((f.get("l7") or {}).get("dns") or {}).get("query", "").startswith("nope")),
    (COVERAGE, {"allowlist": '{"reply":[true]}{"verdict":["AUDIT"]}'},
     lambda f: f.get("is_reply") is True or f["verdict"] == "AUDIT"),
    (COVERAGE, {"denylist": '{"source_pod":["kube-system/"]}'},
     lambda f: src(f).get("namespace") != "kube-system"),
    # whitelist OR, blacklist subtracts
    (COVERAGE, {"from_pod": "shop/", "not_to_pod": "payments/", "verdict": "DROPPED"},
     lambda f: src(f).get("namespace") == "shop" and f["verdict"] == "DROPPED"
     and dst(f).get("namespace") != "payments"),
]


@pytest.mark.parametrize(("path", "kwargs", "expect"), CASES,
                         ids=[f"{p.stem}-{k}" for p, k, _ in CASES])
def test_mask_matches_the_raw_flows(frames: dict[Path, tuple[pd.DataFrame, list[Flow]]],
                                    path: Path, kwargs: dict[str, Any],
                                    expect: Callable[[Flow], bool]) -> None:
    df, flows = frames[path]
    got = mask(Filters.from_kwargs(**kwargs), df)
    assert got.dtype == bool and got.index.equals(df.index)
    want = [expect(f) for f in flows]
    assert got.tolist() == want
    assert expect is nothing or sum(want) > 0  # the case selects something


def test_mask_with_no_filters_keeps_everything(
        frames: dict[Path, tuple[pd.DataFrame, list[Flow]]]) -> None:
    df, _ = frames[COVERAGE]
    assert mask(Filters(), df).all()
    assert mask(Filters(), df.iloc[:0]).empty


def test_every_flow_filter_field_is_answered() -> None:
    from flowlens import _match
    from flowlens._proto.flow import flow_pb2

    fields = {fd.name for fd in flow_pb2.FlowFilter.DESCRIPTOR.fields}
    assert fields == set(_match._MATCHERS) | {"experimental"}


# ---- select: since / until / first / last -----------------------------------------------------

def times(flows: list[Flow]) -> list[pd.Timestamp]:
    return [pd.Timestamp(f["time"]) for f in flows]


def test_select_since_counts_back_from_the_newest_flow(
        frames: dict[Path, tuple[pd.DataFrame, list[Flow]]]) -> None:
    df, flows = frames[COVERAGE]
    ts = times(flows)
    newest = max(ts)
    got = selected_rows(Filters.from_kwargs(since="1m"), df)
    want = [i for i, t in enumerate(ts) if t >= newest - pd.Timedelta(minutes=1)]
    assert 0 < len(want) < len(flows)
    assert got.tolist() == want


def test_select_until_absolute_and_since_with_an_anchor(
        frames: dict[Path, tuple[pd.DataFrame, list[Flow]]]) -> None:
    df, flows = frames[COVERAGE]
    ts = times(flows)
    cut = pd.Timestamp("2026-03-14T15:10:00Z")
    got = selected_rows(Filters.from_kwargs(until="2026-03-14T15:10:00Z"), df)
    assert got.tolist() == [i for i, t in enumerate(ts) if t <= cut]
    anchored = selected_rows(Filters.from_kwargs(since="2m"), df, newest=cut)
    assert anchored.tolist() == [i for i, t in enumerate(ts)
                                       if t >= cut - pd.Timedelta(minutes=2)]


def test_select_first_and_last_in_file_order(
        frames: dict[Path, tuple[pd.DataFrame, list[Flow]]]) -> None:
    df, _ = frames[COVERAGE]
    assert selected_rows(Filters.from_kwargs(first=7), df).tolist() == list(range(7))
    assert selected_rows(Filters.from_kwargs(last=7), df).tolist() == \
        list(range(len(df) - 7, len(df)))
    assert len(selected_rows(Filters(), df)) == len(df)  # files: everything by default
    assert len(selected_rows(Filters.from_kwargs(last=0), df)) == len(df)  # as hubble: N = 0


def test_select_filters_then_windows_then_takes_last(
        frames: dict[Path, tuple[pd.DataFrame, list[Flow]]]) -> None:
    df, flows = frames[COVERAGE]
    ts = times(flows)
    newest = max(ts)
    dropped = [i for i, f in enumerate(flows) if f["verdict"] == "DROPPED"
               and ts[i] >= newest - pd.Timedelta(minutes=3)]
    want = dropped[-5:]
    f = Filters.from_kwargs(verdict="DROPPED", since="3m", last=5)
    assert selected_rows(f, df).tolist() == want
    assert F.selected_rows(f, df).tolist() == want


# ---- click -------------------------------------------------------------------------------------

@click.command(cls=FilterCommand)
@click.option("-o", "--output", default="compact")
@filter_options
def _observe(output: str, filters: Filters) -> None:
    click.echo(output)
    click.echo(json.dumps({"white": filters.whitelist, "black": filters.blacklist,
                           "flags": filters.flags, "since": filters.since,
                           "last": filters.last, "follow": filters.follow}))


def test_click_command_keeps_flag_order_across_options() -> None:
    result = CliRunner().invoke(_observe, [
        "--from-pod", "a", "--not", "--to-pod", "b", "--to-pod", "c", "-o", "dict",
        "--to-namespace", "ns", "--since", "5m", "-f", "--last", "3", "-4", "--not", "-4"])
    assert result.exit_code == 0, result.output
    out_format, payload = result.output.splitlines()
    got = json.loads(payload)
    assert out_format == "dict"
    assert got["flags"] == [["from-pod", "a"], ["not", None], ["to-pod", "b"], ["to-pod", "c"],
                            ["to-namespace", "ns"], ["ipv4", None], ["not", None],
                            ["ipv4", None]]
    assert got["white"] == [
        {"source_pod": ["a"], "destination_pod": ["ns/c"], "ip_version": ["IPv4"]}]
    assert got["black"] == [{"destination_pod": ["b"], "ip_version": ["IPv4"]}]
    assert (got["since"], got["last"], got["follow"]) == ("5m", 3, True)


def test_click_command_reports_bad_filters_as_usage_errors() -> None:
    result = CliRunner().invoke(_observe, ["--pod", "a", "--ip", "1.1.1.1"])
    assert result.exit_code == 2
    assert "Error: filters --pod and --ip cannot be combined" in result.output
    result = CliRunner().invoke(_observe, ["--port", "x"])
    assert result.exit_code == 2
    assert "invalid value 'x' for --port: not a number" in result.output


def test_click_help_lists_hubble_flag_names() -> None:
    result = CliRunner().invoke(_observe, ["--help"])
    assert result.exit_code == 0
    for name in ["--from-pod", "-n, --namespace", "-A, --all-namespaces", "-l, --label",
                 "-t, --type", "--not", "--allowlist", "--since", "--last", "-f, --follow",
                 "-4, --ipv4", "--http-status", "--drop-reason-desc"]:
        assert name in result.output


def test_allowlist_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBBLE_DENYLIST", '{"verdict":["DROPPED"]}')
    result = CliRunner().invoke(_observe, [])
    assert json.loads(result.output.splitlines()[1])["black"] == [{"verdict": ["DROPPED"]}]
    result = CliRunner().invoke(_observe, ["--denylist", '{"verdict":["AUDIT"]}'])
    assert json.loads(result.output.splitlines()[1])["black"] == [{"verdict": ["AUDIT"]}]
