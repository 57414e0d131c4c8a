"""Each way hubble's filters select, held without the reference binary (the differential suite,
tests/test_filters_hubble.py, holds them against hubble itself): lost events, fields beyond
the basic ones (clusters, encryption, interfaces, trace ids, node labels, SNAT, HTTP headers,
CEL), any-namespace pods, node-name patterns, decoded HTTP paths, Go's regular expressions,
--first/--last in file order, FQDN trailing dots."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import flowlens
from flowlens import analyses
from flowlens.cli import main
from flowlens.errors import UsageError
from flowlens.filters import Filters, mask

T0 = "2026-07-01T08:00:0{}Z"


def flow(second: int, summary: str, **fields: Any) -> dict[str, Any]:
    body = {"time": T0.format(second), "verdict": "FORWARDED",
            "IP": {"source": "10.0.0.1", "destination": "10.0.0.2", "ipVersion": "IPv4"},
            "l4": {"TCP": {"source_port": 40000, "destination_port": 80}},
            "source": {"identity": 1000, "namespace": "default", "pod_name": "client"},
            "destination": {"identity": 2000, "namespace": "default", "pod_name": "server"},
            "Type": "L3_L4", "node_name": "kind-worker", "event_type": {"type": 4},
            "Summary": summary}
    body.update(fields)
    return {"flow": body, "node_name": body["node_name"], "time": body["time"]}


def lost(second: int) -> dict[str, Any]:
    return {"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "7", "cpu": 1},
            "node_name": "kind-worker", "time": T0.format(second)}


def capture(tmp_path: Path, *records: dict[str, Any]) -> str:
    path = tmp_path / "capture.jsonpb"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def tail(path: str, *flags: str) -> list[str]:
    """What tail prints, one summary (or EVENTS LOST) per line."""
    result = CliRunner().invoke(main, ["tail", "--input-file", path, *flags])
    assert result.exit_code == 0, result.output
    return [line.rsplit("(", 1)[-1].rstrip(")") if "EVENTS LOST" not in line else "LOST"
            for line in result.stdout.splitlines()]


# ---- 1. lost events, filtered as a flow that is not there --------------------------------------

@pytest.fixture
def with_lost(tmp_path: Path) -> str:
    return capture(tmp_path, flow(1, "a", verdict="DROPPED", drop_reason_desc="POLICY_DENIED"),
                   lost(2), flow(3, "b"), lost(5))


@pytest.mark.parametrize(("flags", "shown"), [
    ((), ["a", "LOST", "b", "LOST"]),
    (("--verdict", "DROPPED"), ["a"]),  # positive filters drop them
    (("--not", "--verdict", "FORWARDED"), ["a", "LOST", "LOST"]),  # --not keeps them
    (("--label", "!k8s:app"), ["a", "LOST", "b", "LOST"]),  # negative selectors keep them
    (("--label", "k8s:app notin (x)", "--verdict", "FORWARDED"), ["b"]),  # AND in a filter
    (("--node-label", "!zone"), ["a", "LOST", "b", "LOST"]),
    (("--unencrypted",), ["a", "LOST", "b", "LOST"]),
    (("--encrypted",), []),
    (("--cel-expression", "!has(_flow.l7)"), ["a", "LOST", "b", "LOST"]),
    (("--cel-expression", "_flow.verdict == Verdict.FORWARDED"), ["b"]),
    (("--since", T0.format(4), "--not", "--pod", "default/"), ["LOST"]),  # by its own time
    (("--first", "2"), ["a", "LOST"]),  # they count among the N, as hubble counts them
    (("--last", "1"), ["LOST"]),
])
def test_tail_filters_lost_events_as_hubble(with_lost: str, flags: tuple[str, ...],
                                             shown: list[str]) -> None:
    assert tail(with_lost, *flags) == shown


def test_reports_count_every_lost_event_of_the_window(with_lost: str) -> None:
    df = flowlens.read(with_lost)
    report = analyses.build_report(df, Filters.from_kwargs(verdict="DROPPED"))
    assert report.flows == 1 and report.lost_events == 14
    windowed = analyses.build_report(df, Filters.from_kwargs(verdict="DROPPED",
                                                             until=T0.format(3)))
    assert windowed.lost_events == 7


# ---- 2. fields the frame now carries --------------------------------------------------------

@pytest.fixture
def fields(tmp_path: Path) -> str:
    http = {"type": "REQUEST", "http": {"method": "GET", "url": "http://x/", "headers": [
        {"key": "X-Id", "value": "1"}, {"key": ":authority", "value": "x"}]}}
    return capture(
        tmp_path,
        flow(1, "remote", source={"identity": 9, "cluster_name": "east", "namespace": "default",
                                  "pod_name": "client"}),
        flow(2, "snat", IP={"source": "10.0.0.1", "source_xlated": "172.18.0.3",
                            "destination": "1.1.1.1", "ipVersion": "IPv4", "encrypted": True},
             interface={"index": 7, "name": "eth0"}, node_labels=["zone=a", "os=linux"]),
        flow(3, "http", Type="L7", event_type={"type": 129}, l7=http,
             trace_context={"parent": {"trace_id": "ab" * 16}}, trace_reason="NEW"),
    )


@pytest.mark.parametrize(("flags", "shown"), [
    (("--from-cluster", "east"), ["remote"]),
    (("--cluster", "west"), []),
    (("--encrypted",), ["snat"]),
    (("--unencrypted",), ["remote", "http"]),
    (("--interface", "eth0"), ["snat"]),
    (("--allowlist", '{"interface":[{"index":7}]}'), ["snat"]),
    (("--trace-id", "ab" * 16), ["http"]),
    (("--node-label", "zone in (a, b)"), ["snat"]),
    (("--node-label", "!zone"), ["remote", "http"]),
    (("--snat-ip", "172.18.0.0/16"), ["snat"]),
    (("--http-header", "X-Id:1"), ["http"]),
    (("--http-header", ":authority:x"), []),  # split at the first colon: key ""
    (("--http-header", "X-Id:"), []),  # key and value both, exactly
    (("--cel-expression", "_flow.IP.source_xlated != ''"), ["snat"]),
    # CEL sees the whole flow of a jsonpb source, fields the frame does not keep too
    (("--cel-expression", "_flow.trace_reason == TraceReason.NEW"), ["http"]),
    (("--cel-expression", "1/0 == 1"), []),  # an evaluation error is false
])
def test_fields_beyond_the_basic_ones(fields: str, flags: tuple[str, ...],
                                      shown: list[str]) -> None:
    assert tail(fields, *flags) == shown


def test_frames_and_the_library_take_them_too(fields: str) -> None:
    df = flowlens.read(fields)
    assert mask(Filters.from_kwargs(from_cluster="east"), df).tolist() == [True, False, False]
    got = flowlens.read(fields, cel_expression="_flow.l7.http.headers.exists(h, h.key == 'X-Id')")
    assert got["summary"].tolist() == ["http"]


def test_cel_expressions_hubble_refuses_are_refused() -> None:
    with pytest.raises(UsageError, match="wanted 'bool' result type"):
        Filters.from_kwargs(cel_expression="_flow.verdict")
    with pytest.raises(UsageError, match="no matching overload"):
        Filters.from_kwargs(cel_expression="_flow.l4.TCP.destination_port == 80")


# ---- 3-5, 8: pods, node names, HTTP paths, FQDNs ---------------------------------------------

@pytest.fixture
def peers(tmp_path: Path) -> str:
    return capture(
        tmp_path,
        flow(1, "pod"),
        flow(2, "world", source={"identity": 2, "labels": ["reserved:world"]},
             destination={"identity": 1, "labels": ["reserved:host"]}, node_name="c1/kind-worker"),
        flow(3, "ns-only", source={"identity": 5, "namespace": "default"},
             destination={"identity": 2}, node_name="c1/Kind-Worker2"),
        flow(4, "dotted", destination={"identity": 2}, destination_names=["api.github.com."],
             Type="L7", event_type={"type": 129},
             l7={"type": "REQUEST", "http": {"url": "http://x/%2e%2e/etc?q=%zz"}}),
        flow(5, "plain", destination={"identity": 2}, destination_names=["api.github.com"],
             Type="L7", event_type={"type": 129},
             l7={"type": "REQUEST", "http": {"url": "http://x/bad%zz/\u5b57"}}),
    )


@pytest.mark.parametrize(("flags", "shown"), [
    (("--all-namespaces",), ["pod", "ns-only", "dotted", "plain"]),  # never world or host
    (("--from-all-namespaces",), ["pod", "ns-only", "dotted", "plain"]),
    (("--node-name", "*/kind-worker"), ["pod", "world", "dotted", "plain"]),
    (("--node-name", "default/kind-worker"), ["pod", "dotted", "plain"]),  # no cluster: default
    (("--node-name", "KIND-WORKER"), ["pod", "world", "dotted", "plain"]),  # pattern lowered
    (("--node-name", "c1/"), ["world"]),  # names are lower-case DNS names
    (("--http-path", r"^/\.\./etc$"), ["dotted"]),  # the decoded path, query aside
    (("--http-path", "bad"), []),  # a path Go cannot decode matches nothing
    (("--http-url", "%zz"), ["dotted", "plain"]),
    (("--http-url", r"\p{Han}"), ["plain"]),
    (("--http-url", "[[:digit:]]"), ["dotted"]),
    (("--to-fqdn", "api.github.com"), ["plain"]),  # the pattern's dot is trimmed, not names'
    (("--to-fqdn", "API.GITHUB.COM."), ["plain"]),
    (("--to-fqdn", "*.com"), ["plain"]),
])
def test_patterns_as_hubble_reads_them(peers: str, flags: tuple[str, ...],
                                       shown: list[str]) -> None:
    assert tail(peers, *flags) == shown


@pytest.mark.parametrize(("flags", "why"), [
    (("--node-name", "kind-worker?"), "invalid rune in pattern"),
    (("--to-fqdn", "a.."), "multiple trailing dots"),
    (("--http-path", "(?=x)"), "invalid perl operator"),
    (("--http-path", r"\C"), "invalid escape sequence"),
    (("--http-path", "x{1001}"), "invalid repetition size"),
])
def test_patterns_hubble_refuses_are_refused(peers: str, flags: tuple[str, ...], why: str
                                             ) -> None:
    result = CliRunner().invoke(main, ["tail", "--input-file", peers, *flags])
    assert result.exit_code == 2 and why in result.output


def test_regular_expressions_take_linear_time(tmp_path: Path) -> None:
    url = "http://x/" + "a" * 5000 + "!"
    path = capture(tmp_path, flow(1, "long", Type="L7", event_type={"type": 129},
                                  l7={"type": "REQUEST", "http": {"url": url}}))
    start = time.monotonic()
    assert tail(path, "--http-url", "(a+)+$") == []
    assert time.monotonic() - start < 5  # a backtracking engine takes ages here


# ---- 7. --first / --last in file order ---------------------------------------------------------

def test_first_and_last_follow_the_file_not_the_clock(tmp_path: Path) -> None:
    # two nodes' captures joined: the second node's flows are older
    path = capture(tmp_path, flow(5, "n1-late"), flow(6, "n1-later"), flow(1, "n2-early"),
                   flow(2, "n2-earlier-than-n1"))
    assert tail(path, "--first", "2") == ["n1-late", "n1-later"]
    assert tail(path, "--last", "2") == ["n2-early", "n2-earlier-than-n1"]
    assert flowlens.read(path, last=1)["summary"].tolist() == ["n2-earlier-than-n1"]
