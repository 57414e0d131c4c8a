"""Differential: `flowlens tail --input-file F FLAGS -o compact` prints, byte for byte, what the
real `hubble observe --input-file F FLAGS -o compact` prints, for every filter and selection flag
both share, alone and combined, over the shared captures and a generated one
(`flowlens.synth.generate_varied`). Where hubble refuses a flag value, flowlens must refuse it
too. Needs the reference hubble CLI (../shared/bin); skipped with the reason when it is absent.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from shared_data import REFERENCE_BIN, REFERENCE_BIN_ABSENT, SHARED

from flowlens import cli, synth
from flowlens.cli import main
from flowlens.load import load as cli_load
from flowlens.relay_server import ReplayData, ReplayRelay

pytestmark = pytest.mark.skipif(REFERENCE_BIN is None, reason=REFERENCE_BIN_ABSENT)

RENDERED = SHARED / "reference-renderings"
OTEL = SHARED / "real-flows" / "hubble-otel"
CAPTURES = {
    "coverage": RENDERED / "coverage.jsonl",
    "lab": RENDERED / "lab-small.jsonl",
    "http": OTEL / "basic-sample-348-http-flows.json",
    "dns": OTEL / "basic-sample-330-dns-flows.json",
    "tcp": OTEL / "basic-sample-400-tcp-flows.json",
}
VARIED = "varied"  # written at session start from flowlens.synth.generate_varied
EDGES = "edges"  # the records below: what hubble reads as zero values, odd URLs, lost events

_T = "2026-03-14T15:09:4{}Z"
_EDGE_RECORDS: list[dict[str, object]] = [
    {"flow": {"time": _T.format(0)}, "time": _T.format(0)},
    {"flow": {"time": _T.format(0), "verdict": "DROPPED", "Summary": "drop, reply unknown"},
     "time": _T.format(0)},
    {"flow": {"time": _T.format(1), "verdict": "FORWARDED", "is_reply": False,
              "source": {}, "destination": {"identity": 0}, "interface": {},
              "IP": {"source": "fd00:0::1", "destination": "10.0.0.1", "ipVersion": "IPv6"},
              "event_type": {}, "Summary": "zero identities, empty interface"},
     "time": _T.format(1)},
    {"lost_events": {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": "2"},
     "node_name": "k1"},
    {"flow": {"time": _T.format(2), "verdict": "FORWARDED", "reply": True,
              "source_service": {"namespace": "default"}, "Summary": "deprecated reply"},
     "time": _T.format(2)},
    *({"flow": {"time": _T.format(3), "verdict": "FORWARDED", "Type": "L7",
                "event_type": {"type": 129}, "node_name": "k1",
                "l7": {"type": "REQUEST", "http": {"method": "GET", "url": url}},
                "Summary": url}, "time": _T.format(3)}
      for url in ("http://h/a%2Fb", "/rel/%7e?q=%zz", "mailto:x@y", "http://h/p#%zz",
                  "http://h/\x1b[31m", "http://h:80/%E5%AD%97", "http://h/a b", "")),
    {"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "1"},
     "node_name": "k1", "time": _T.format(5)},
]

Case = tuple[str, tuple[str, ...]]


def _alone() -> Iterator[tuple[str, ...]]:
    """One filter flag (or a pair that belongs together) per case, with values the captures
    hold, values they do not, and values hubble refuses."""
    yield from (
        ("--verdict", "DROPPED"), ("--verdict", "FORWARDED"), ("--verdict", "VERDICT_UNKNOWN"),
        ("--verdict", "dropped"),
        ("--drop-reason-desc", "POLICY_DENIED"), ("--drop-reason-desc", "STALE_OR_UNROUTABLE_IP"),
        ("--type", "drop"), ("--type", "trace"), ("--type", "trace:to-endpoint"),
        ("--type", "policy-verdict"), ("--type", "l7"), ("--type", "129"), ("-t", "4:3"),
        ("--protocol", "tcp"), ("--protocol", "UDP"), ("--protocol", "icmp"),
        ("--protocol", "icmpv6"), ("--protocol", "http"), ("--protocol", "dns"),
        ("--traffic-direction", "ingress"), ("--traffic-direction", "EGRESS"),
        ("--tcp-flags", "SYN"), ("--tcp-flags", "syn,ack"), ("--tcp-flags", "FIN"),
        ("--http-status", "200"), ("--http-status", "5+"), ("--http-status", "40+"),
        ("--http-method", "GET"), ("--http-method", "post"),
        ("--http-path", "^/api"), ("--http-path", r"\.\."), ("--http-path", "/a/b"),
        ("--http-path", "café"), ("--http-path", "~user"), ("--http-path", "[[:digit:]]"),
        ("--http-path", r"\p{Han}"), ("--http-path", "(?i)/API"), ("--http-path", "a{2,1}"),
        ("--http-path", "(?P<x>v)ersion"), ("--http-path", r"\Z"), ("--http-path", "(?=x)"),
        ("--http-url", "backend"), ("--http-url", "%2e"), ("--http-url", "[[:alpha:]]+:"),
        ("--http-url", "productpage$"), ("--http-url", "(unclosed"),
        ("--http-header", "X-Request-Id:"), ("--http-header", "User-Agent:curl/8.5.0"),
        ("--http-header", ":curl/8.5.0"), ("--http-header", "accept:*/*"),
        ("--pod", "default/frontend"), ("--from-pod", "backend"), ("--to-pod", "kube-system/"),
        ("--pod", "/coredns"), ("--pod", "default/"), ("--to-pod", "productpage"),
        ("--namespace", "default"), ("-n", "kube-system"), ("--from-namespace", "default"),
        ("--to-namespace", "kube-system"),
        ("--all-namespaces",), ("--from-all-namespaces",), ("--to-all-namespaces",),
        ("-A", "--pod", "backend"), ("--namespace", "default", "--pod", "frontend"),
        ("--from-namespace", "default", "--from-pod", "not-frontend"),
        ("--label", "k8s:app=frontend"), ("--from-label", "app=backend"),
        ("--to-label", "reserved:world"), ("--label", "k8s:app in (frontend, backend)"),
        ("--label", "k8s:app notin (frontend)"), ("--label", "!k8s:app"),
        ("--label", "k8s:app!=backend"), ("--to-label", "reserved:host"),
        ("--label", "io.kubernetes.pod.namespace=kube-system"), ("-l", "any:app"),
        ("--ip", "10.244.1.45"), ("--from-ip", "10.244.0.0/16"), ("--to-ip", "fd00::/8"),
        ("--ip", "140.82.121.6"), ("--to-ip", "10.16.0.0/12"), ("--ip", "not-an-ip"),
        ("--port", "8080"), ("--to-port", "53"), ("--from-port", "4240"), ("--port", "9080"),
        ("--port", "99999"),
        ("--identity", "2"), ("--from-identity", "host"), ("--to-identity", "world"),
        ("--identity", "remote-node"), ("--identity", "0x44bd"), ("--to-identity", "health"),
        ("--service", "default/backend"), ("--to-service", "kube-system/kube-dns"),
        ("--from-service", "backend"), ("--service", "reviews"),
        ("--workload", "backend"), ("--from-workload", "Deployment/frontend"),
        ("--to-workload", "Deployment/"), ("--workload", "coredns"),
        ("--fqdn", "api.github.com"), ("--to-fqdn", "*.github.com"),
        ("--to-fqdn", "API.GITHUB.COM."), ("--fqdn", "*.com"), ("--fqdn", "api.github.com.."),
        ("--to-fqdn", "*"), ("--fqdn", "bad/name"),
        ("--node-name", "kind-worker"), ("--node-name", "KIND-WORKER"),
        ("--node-name", "*/kind-worker"), ("--node-name", "kind-kind/"),
        ("--node-name", "kind-*"), ("--node-name", "*worker2"), ("--node-name", "kind-worker?"),
        ("--node-name", "a/b/c"), ("--node-name", "gke-*"), ("--node-name", "default/"),
        ("--uuid", "d7a8c6f0-0000-0000-0000-000000000000"),
        ("-4",), ("-6",), ("--ipv6",), ("--ip-version", "4"), ("--ip-version", "v6"),
        ("--ip-version", "none"),
        ("--ip-trace-id", "1234"), ("--ip-trace-id", "0"),
        ("--cluster", "kind-kind"), ("--from-cluster", "kind-remote"),
        ("--to-cluster", "kind-kind"), ("--cluster", "kind-*"),
        ("--encrypted",), ("--unencrypted",),
        ("--interface", "eth0"), ("--interface", "lxc_health"), ("--interface", "nothing"),
        ("--trace-id", "4b" * 16), ("--trace-id", "nope"),
        ("--node-label", "topology.kubernetes.io/zone=zone-a"),
        ("--node-label", "kubernetes.io/os"), ("--node-label", "!node-role.kubernetes.io/control-plane"),
        ("--node-label", "topology.kubernetes.io/zone in (zone-a, zone-b)"),
        ("--node-label", "bad=="),
        ("--snat-ip", "172.18.0.3"), ("--snat-ip", "172.18.0.0/16"), ("--snat-ip", "10.0.0.1"),
        ("--cel-expression", "_flow.verdict == Verdict.DROPPED"),
        ("--cel-expression", "_flow.source.namespace == 'default'"),
        ("--cel-expression", "has(_flow.l7)"),
        ("--cel-expression", "_flow.l4.TCP.destination_port == 8080u"),
        ("--cel-expression", "_flow.destination_names.exists(n, n.endsWith('.'))"),
        ("--cel-expression", "_flow.IP.encrypted"),
        ("--cel-expression", "_flow.verdict"), ("--cel-expression", "_flow.nosuch == 1"),
        ("--cel-expression", "_flow.l4.TCP.destination_port == 8080"),
        ("--cel-expression", "size(_flow.source.labels) > 5"),
        ("--cel-expression", "_flow.node_name.matches('^KIND')"),
        ("--identity", "0"), ("--from-identity", "0"), ("--port", "0"),
        ("--verdict", "VERDICT_UNKNOWN"), ("--to-service", "default/"),
        ("--drop-reason-desc", "DROP_REASON_UNKNOWN"), ("--ip", "fd00::1"),
        ("--from-ip", "fd00:0:0::1"), ("--label", ""), ("--http-status", "20"),
        ("--http-status", "500+"), ("--http-path", "^/a/b$"), ("--http-path", "^/rel/~$"),
        ("--http-path", "^$"), ("--http-path", "字"), ("--http-path", "a b"),
        ("--http-url", "^$"), ("--http-method", "get"),
        ("--type", "trace", "--http-method", "GET"), ("--type", "l7", "--http-url", "h"),
        ("--type", "drop", "--http-status", "2+"),
    )


_COMBINED: tuple[tuple[str, ...], ...] = (
    ("--verdict", "DROPPED", "--from-pod", "default/not-frontend"),
    ("--verdict", "FORWARDED", "--verdict", "DROPPED", "--protocol", "tcp"),
    ("--not", "--verdict", "FORWARDED"), ("--not", "--pod", "default/"),
    ("--not", "--label", "k8s:app=frontend"), ("--not", "--protocol", "tcp"),
    ("--not", "--node-name", "kind-worker"), ("--not", "--unencrypted"),
    ("--not", "--encrypted"), ("--not", "--ip", "10.244.0.0/16"),
    ("--not", "--type", "trace", "--not", "--type", "l7"),
    ("--label", "k8s:app=frontend", "--not", "--to-port", "53"),
    ("-n", "default", "--not", "--label", "k8s:app=backend"),
    ("--not", "--node-label", "kubernetes.io/os=linux"),
    ("--not", "--cel-expression", "has(_flow.l7)"),
    ("--not", "--http-path", "^/api"), ("--not", "--fqdn", "*.com"),
    ("--type", "l7", "--http-header", "Accept:*/*"),
    ("--protocol", "http", "--http-status", "2+", "--http-method", "GET"),
    ("--to-label", "reserved:world", "--snat-ip", "172.18.0.3"),
    ("--from-cluster", "kind-remote", "--to-cluster", "kind-kind"),
    ("--interface", "eth0", "--interface", "lxc_health", "--verdict", "FORWARDED"),
    ("--allowlist", '{"source_pod":["default/"]}', "--denylist", '{"verdict":["DROPPED"]}'),
    ("--allowlist", '{"interface":[{"index":3}]}'),
    ("--allowlist", '{"http_header":[{"key":"X-Request-Id"}]}'),
    ("--allowlist", '{"dns_query":["github"]}'), ("--allowlist", '{"reply":[true]}'),
    ("--denylist", '{"reply":[false]}'), ("--allowlist", '{"encrypted":[true,false]}'),
    ("--allowlist", '{"source_cluster_name":[""]}'),
    ("--allowlist", '{"experimental":{"cel_expression":["_flow.verdict == Verdict.DROPPED",'
     '"has(_flow.l7)"]}}'),
    ("--allowlist", '{"node_name":["KIND-CONTROL-PLANE"]}'),
    ("--allowlist", '{"source_fqdn":[".."]}'),
    ("--allowlist", '{"dns_query":["(?i)GITHUB"]}'),
    ("--allowlist", '{"dns_query":["[[:upper:]]"]}'),
    ("--allowlist", '{"event_type":[{}]}'), ("--allowlist", '{"interface":[{}]}'),
    ("--allowlist", '{"uuid":[""]}'), ("--allowlist", '{"trace_id":[""]}'),
    ("--allowlist", '{"ip_trace_id":[0]}'), ("--allowlist", '{"source_workload":[{}]}'),
    ("--allowlist", '{"tcp_flags":[{}]}'), ("--allowlist", '{"encrypted":[false]}'),
    ("--allowlist", '{"traffic_direction":["TRAFFIC_DIRECTION_UNKNOWN"]}'),
    ("--allowlist", '{"ip_version":["IP_NOT_USED"]}'), ("--allowlist", '{"reply":[false]}'),
    ("--allowlist", '{"http_header":[{"key":"Accept","value":"*/*"}]}'),
    ("--allowlist", '{"event_type":[{"type":4,"sub_type":3}]}'),
    ("--allowlist", '{"event_type":[{"sub_type":3,"match_sub_type":true}]}'),
    ("--allowlist", '{"node_name":["*"]}', "--denylist", '{"node_name":["kind-worker"]}'),
    ("--denylist", '{"source_label":["!k8s:app"]}'),
    ("--from-pod", "default/", "--not", "--to-namespace", "kube-system"),
    ("--not", "--trace-id", ""), ("--not", "--label", "k8s:app", "--verdict", "DROPPED"),
)

_TIMES = ("2026-07-01T08:03:00Z", "2026-07-01T08:00:31.897Z", "2021-06-04T16:10:00Z",
          "2026-07-01T08:15:00+02:00", "2026-07-01")


def _selection() -> Iterator[tuple[str, ...]]:
    yield ("--last", "1000001")  # hubble's ring buffer for --last on files holds 1,000,000
    for n in ("0", "1", "5", "40"):
        yield ("--first", n)
        yield ("--last", n)
    for t in _TIMES:
        yield ("--since", t)
        yield ("--until", t)
    yield ("--since", _TIMES[2], "--until", _TIMES[0])
    yield ("--since", _TIMES[1], "--until", _TIMES[0], "--last", "3")
    yield ("--verdict", "DROPPED", "--first", "3")
    yield ("--verdict", "DROPPED", "--last", "3")
    yield ("--not", "--verdict", "FORWARDED", "--last", "7")
    yield ("--not", "--verdict", "FORWARDED", "--first", "7")
    yield ("--protocol", "tcp", "--since", _TIMES[1], "--first", "4")
    yield ("--node-name", "kind-worker", "--last", "10")


def cases() -> list[Case]:
    out: list[Case] = []
    for flags in (*_alone(), *_COMBINED, *_selection()):
        for capture in (*CAPTURES, VARIED, EDGES):
            out.append((capture, flags))
    return out


@pytest.fixture(scope="module", autouse=True)
def _read_once() -> Iterator[None]:
    """Each capture is read once for all its cases (reading is tested elsewhere; this suite
    is about selecting)."""
    read: dict[tuple[Any, ...], Any] = {}

    def load(sources: Any, options: Any) -> Any:
        key = (tuple(sources), options.keep_raw)
        if key not in read:
            read[key] = cli_load(sources, options)
        return read[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "load", load)
        yield


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("differential")
    made = {VARIED: synth.generate_varied(), EDGES: _EDGE_RECORDS}
    for name, records in made.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    return {**CAPTURES, **{name: folder / name for name in made}}


def _hubble(path: Path, flags: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    assert REFERENCE_BIN is not None
    return subprocess.run([str(REFERENCE_BIN / "hubble"), "observe", "--input-file", str(path),
                           *flags, "-o", "compact"], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(("capture", "flags"), cases(),
                         ids=[f"{c}:{' '.join(f)}" for c, f in cases()])
def test_tail_prints_what_hubble_prints(paths: dict[str, Path], capture: str,
                                        flags: tuple[str, ...]) -> None:
    path = paths[capture]
    hubble = _hubble(path, flags)
    ours = CliRunner().invoke(main, ["tail", "--input-file", str(path), *flags, "-o",
                                     "compact"])
    if hubble.returncode != 0:
        assert ours.exit_code != 0, f"hubble refused: {hubble.stderr.strip()}"
        return
    assert ours.exit_code == 0, ours.output
    assert ours.stdout == hubble.stdout


# ---- through the relay: hubble observe --server against `flowlens relay` ------------------------

RELAYED = ("coverage", VARIED)


def _filters_only() -> list[tuple[str, ...]]:
    """The flag sets without selection flags (a relay is asked for --all of them)."""
    selection = {"--first", "--last", "--since", "--until"}
    return [f for f in (*_alone(), *_COMBINED) if not selection & set(f)]


@pytest.fixture(scope="module")
def relays(paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, tuple[str, Path]]]:
    """Per capture: a relay serving it, and the capture's flows in time order (what a relay
    holds, lost events aside) for hubble to read as a file."""
    folder = tmp_path_factory.mktemp("relayed")
    with contextlib.ExitStack() as stack:
        out = {}
        for name in RELAYED:
            lines = [json.loads(line) for line in paths[name].read_text().splitlines()]
            flows = sorted((r for r in lines if "flow" in r), key=lambda r: _nanos(r))
            by_time = folder / name
            by_time.write_text("".join(json.dumps(r) + "\n" for r in flows))
            server = stack.enter_context(ReplayRelay(ReplayData.from_sources(paths[name]),
                                                     listen="127.0.0.1:0"))
            out[name] = (f"127.0.0.1:{server.port}", by_time)
        yield out


def _nanos(record: dict[str, Any]) -> int:
    return int(pd.Timestamp(record["flow"].get("time") or record["time"]).value)


def _without_lost(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if "EVENTS LOST" not in line)


@pytest.mark.parametrize("capture", RELAYED)
@pytest.mark.parametrize("flags", _filters_only(), ids=" ".join)
def test_the_relay_selects_what_hubble_selects(relays: dict[str, tuple[str, Path]],
                                               capture: str, flags: tuple[str, ...]) -> None:
    assert REFERENCE_BIN is not None
    address, by_time = relays[capture]
    from_file = _hubble(by_time, flags)
    # Without hubble's default field mask, which leaves out parts of a line (directions, DNS
    # names) that a file has.
    live = subprocess.run([str(REFERENCE_BIN / "hubble"), "observe", "--server", address,
                           "--use-default-field-masks=false", "--all", *flags, "-o", "compact"],
                          capture_output=True, text=True, timeout=60, check=False)
    if from_file.returncode != 0:
        assert live.returncode != 0, f"hubble refused: {from_file.stderr.strip()}"
        return
    assert live.returncode == 0, live.stderr
    assert _without_lost(live.stdout) == from_file.stdout
