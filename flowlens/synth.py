"""Deterministic synthetic Hubble capture of the Cilium network-policy lab.

The story (about 30 minutes at ``scale=1.0``, on a three-node kind cluster):

* phase 1, no policy: ``frontend`` and ``not-frontend`` (kind-worker) both ``curl backend:8080``
  (kind-worker2): DNS through the DNS proxy, the TCP handshake as trace events, HTTP via the
  L7 proxy;
* phase 2, NetworkPolicy ``backend-ingress-deny`` (default deny on backend ingress): both clients
  get policy-verdict DENIED + ``Policy denied`` drops, with SYN retransmits after 1s, 2s and 4s;
* phase 3, ``backend-allow-ingress-frontend`` added: frontend is allowed (policy-verdict L3-L4
  ALLOWED, then forwarded), not-frontend is still denied.

Throughout: cilium-health probes (ICMPv4/ICMPv6 and TCP 4240, host / health / remote-node
identities, unknown-direction traces), kubelet probes, backend calling ``api.github.com`` (world
identity, ``destination_names``, NXDOMAIN from the ndots search list), a few other drop reasons,
lost events, IPv6 and some adversarial strings (HTML, non-ASCII, ESC).

Records are plain dicts in protojson shape with proto field names, keys in proto declaration
order: exactly what one ``hubble observe -o jsonpb`` line decodes to. Every Flow is built the way
the Cilium server builds it (spec ``hubble-api.md`` §2.4 and §3.3.6): ``Summary``, ``is_reply``,
``Type``, ``trace_observation_point`` etc. are derived from the packet, never typed by hand.

``python -m flowlens.synth --out samples/`` writes ``samples/lab.jsonpb``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

Record = dict[str, Any]

__all__ = ["DEFAULT_START", "generate_flows", "generate_lab", "generate_varied", "main"]

# --------------------------------------------------------------------------------------------
# The cast
# --------------------------------------------------------------------------------------------

CLUSTER = "kind-kind"
HUBBLE_VERSION = "1.19.4"
DEFAULT_START = datetime(2026, 7, 1, 8, 0, 0, tzinfo=timezone.utc)
PHASE_SECONDS = 600.0  # each of the three phases lasts 10 minutes at scale 1.0


@dataclass(frozen=True)
class NodeSpec:
    name: str
    ipv4: str  # InternalIP on the kind docker network
    ipv6: str
    router_ipv4: str  # cilium_host: source of host -> local endpoint traffic
    router_ipv6: str
    health_ipv4: str  # cilium-health endpoint
    health_ipv6: str
    health_endpoint_id: int
    health_ifindex: int


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("kind-control-plane", "172.18.0.2", "fc00:f853:ccd:e793::2", "10.244.0.83",
             "fd00:10:244::a1e2", "10.244.0.211", "fd00:10:244::7c1f", 1922, 9),
    NodeSpec("kind-worker", "172.18.0.3", "fc00:f853:ccd:e793::3", "10.244.1.171",
             "fd00:10:244:1::5b3e", "10.244.1.160", "fd00:10:244:1::e91", 132, 7),
    NodeSpec("kind-worker2", "172.18.0.4", "fc00:f853:ccd:e793::4", "10.244.2.40",
             "fd00:10:244:2::c0d4", "10.244.2.97", "fd00:10:244:2::4d2a", 2644, 8),
)


@dataclass(frozen=True)
class PodSpec:
    key: str
    name: str
    namespace: str
    node: str
    ipv4: str
    ipv6: str
    endpoint_id: int
    identity: int
    app_labels: tuple[str, ...]
    service_account: str
    workload: str
    workload_kind: str = "Deployment"


PODS: tuple[PodSpec, ...] = (
    PodSpec("frontend", "frontend-7d9c6bdc96-8r5hq", "default", "kind-worker", "10.244.1.45",
            "fd00:10:244:1::2d1a", 3101, 17629, ("k8s:app=frontend",), "default", "frontend"),
    PodSpec("not-frontend", "not-frontend-7db9747986-gktg6", "default", "kind-worker",
            "10.244.1.112", "fd00:10:244:1::87c3", 1417, 36044, ("k8s:app=not-frontend",),
            "default", "not-frontend"),
    PodSpec("backend", "backend-6f884b6495-69bbh", "default", "kind-worker2", "10.244.2.12",
            "fd00:10:244:2::19f6", 248, 48312, ("k8s:app=backend",), "default", "backend"),
    PodSpec("coredns-1", "coredns-5d78c9869d-xk2vl", "kube-system", "kind-control-plane",
            "10.244.0.3", "fd00:10:244::3", 77, 102, ("k8s:k8s-app=kube-dns",), "coredns",
            "coredns"),
    PodSpec("coredns-2", "coredns-5d78c9869d-q8ntp", "kube-system", "kind-control-plane",
            "10.244.0.4", "fd00:10:244::4", 1260, 102, ("k8s:k8s-app=kube-dns",), "coredns",
            "coredns"),
)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    namespace: str
    ipv4: str
    ipv6: str
    port: int
    backends: tuple[str, ...]  # pod keys


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("backend", "default", "10.96.48.7", "fd00:10:96::30d6", 8080, ("backend",)),
    ServiceSpec("kube-dns", "kube-system", "10.96.0.10", "fd00:10:96::a", 53,
                ("coredns-1", "coredns-2")),
)


@dataclass(frozen=True)
class PolicySpec:
    name: str
    namespace: str
    kind: str
    uid: str


DENY_POLICY = PolicySpec("backend-ingress-deny", "default", "NetworkPolicy",
                         "3f1c2a9e-6b0d-4e57-9a43-0c8d2b7e51aa")
ALLOW_POLICY = PolicySpec("backend-allow-ingress-frontend", "default", "NetworkPolicy",
                          "b2e47d10-92c3-4f6a-8d1e-7a5f03c9e6b4")
REVISION_DENY = 5  # after backend-ingress-deny
REVISION_ALLOW = 6  # after backend-allow-ingress-frontend

GITHUB_NAME = "api.github.com"
GITHUB_IPV4 = "140.82.121.6"
STALE_BACKEND_IPV6 = "fd00:10:244:2::a1b"  # IP of a backend pod that no longer exists
SPOOFED_IPV4 = "10.244.1.199"  # not-frontend's IP before a restart

HTTP_PATHS: tuple[str, ...] = ("/", "/", "/api/v1/items", "/api/v1/items?limit=20", "/version")
CURL_UA = "curl/8.5.0"
SEARCH_DOMAINS: tuple[str, ...] = ("default.svc.cluster.local", "svc.cluster.local",
                                   "cluster.local")

# Adversarial strings (renderers must escape / keep them verbatim).
XSS_URL = "http://backend:8080/caf%C3%A9?q=<script>alert(1)</script>&lang=café"
ESC_URL = "http://backend:8080/\x1b[31mred\x1b[0m?term=\x1b]0;owned\x07"
XSS_DNS_QUERY = "<script>alert(1)</script>.bücher.example."

# Small fact tables (restated from the spec, kept independent of the code under test).
TCP_FLAG_DECL_ORDER = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")
TCP_FLAG_SUMMARY_ORDER = ("SYN", "ACK", "RST", "FIN", "PSH", "URG", "ECE", "CWR", "NS")
TRACE_POINT_NAMES: dict[int, str] = {
    0: "TO_ENDPOINT", 1: "TO_PROXY", 2: "TO_HOST", 3: "TO_STACK", 4: "TO_OVERLAY",
    5: "FROM_ENDPOINT", 6: "FROM_PROXY", 7: "FROM_HOST", 8: "FROM_STACK", 9: "FROM_OVERLAY",
    10: "FROM_NETWORK", 11: "TO_NETWORK", 12: "FROM_CRYPTO", 13: "TO_CRYPTO",
}
TO_ENDPOINT, TO_STACK, TO_NETWORK = 0, 3, 11
DROP_REASON_NAMES: dict[int, str] = {
    132: "INVALID_SOURCE_IP", 133: "POLICY_DENIED", 136: "CT_MISSING_TCP_ACK_FLAG",
    151: "STALE_OR_UNROUTABLE_IP",
}
DROP_SOURCE_FILE: dict[int, tuple[str, int]] = {
    132: ("bpf_lxc.c", 1418), 133: ("bpf_lxc.c", 2077), 136: ("bpf_lxc.c", 1966),
    151: ("bpf_lxc.c", 1202),
}
ICMP_NAMES: dict[tuple[str, int], str] = {
    ("ICMPv4", 0): "EchoReply", ("ICMPv4", 8): "EchoRequest",
    ("ICMPv6", 128): "EchoRequest", ("ICMPv6", 129): "EchoReply",
}
DNS_RCODE_TEXT: dict[int, str] = {
    1: "Format Error", 2: "Server Failure", 3: "Non-Existent Domain", 4: "Not Implemented",
    5: "Query Refused",
}
NO_ANSWER_TTL = 4294967295  # the proxy's min-TTL over zero answers

# --------------------------------------------------------------------------------------------
# Peers: anything with an IP that appears as a flow's source or destination
# --------------------------------------------------------------------------------------------


def _pod_labels(pod: PodSpec) -> list[str]:
    ns = pod.namespace
    return sorted((
        *pod.app_labels,
        f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={ns}",
        f"k8s:io.cilium.k8s.policy.cluster={CLUSTER}",
        f"k8s:io.cilium.k8s.policy.serviceaccount={pod.service_account}",
        f"k8s:io.kubernetes.pod.namespace={ns}",
    ))


@dataclass(frozen=True, eq=False)
class Peer:
    """An endpoint as Hubble resolves it: the `Endpoint` message depends on the observing node
    (only local endpoints carry their endpoint ID; a node is `host` locally, `remote-node`
    elsewhere)."""

    key: str
    ipv4: str
    ipv6: str
    node: str | None
    local_view: Record
    remote_view: Record
    names: tuple[str, ...] = ()

    def ip(self, v6: bool) -> str:
        return self.ipv6 if v6 else self.ipv4

    def endpoint(self, observer: str) -> Record:
        view = self.local_view if observer == self.node else self.remote_view
        ep = dict(view)
        ep["labels"] = list(view["labels"])
        if "workloads" in view:
            ep["workloads"] = [dict(w) for w in view["workloads"]]
        return ep


def _pod_peer(pod: PodSpec) -> Peer:
    remote: Record = {
        "identity": pod.identity,
        "cluster_name": CLUSTER,
        "namespace": pod.namespace,
        "labels": _pod_labels(pod),
        "pod_name": pod.name,
        "workloads": [{"name": pod.workload, "kind": pod.workload_kind}],
    }
    return Peer(pod.key, pod.ipv4, pod.ipv6, pod.node, {"ID": pod.endpoint_id, **remote}, remote)


def _reserved(identity: int, label: str, endpoint_id: int = 0) -> Record:
    ep: Record = {"ID": endpoint_id} if endpoint_id else {}
    ep["identity"] = identity
    ep["labels"] = [f"reserved:{label}"]
    return ep


HOST = _reserved(1, "host")
REMOTE_NODE = _reserved(6, "remote-node")
WORLD = _reserved(2, "world")


def _build_peers() -> dict[str, Peer]:
    peers = {pod.key: _pod_peer(pod) for pod in PODS}
    for n in NODES:
        # the node's own address (node-to-node traffic) and its cilium_host address
        peers[f"node:{n.name}"] = Peer(f"node:{n.name}", n.ipv4, n.ipv6, n.name, HOST, REMOTE_NODE)
        peers[f"router:{n.name}"] = Peer(f"router:{n.name}", n.router_ipv4, n.router_ipv6, n.name,
                                         HOST, REMOTE_NODE)
        peers[f"health:{n.name}"] = Peer(f"health:{n.name}", n.health_ipv4, n.health_ipv6, n.name,
                                         _reserved(4, "health", n.health_endpoint_id),
                                         _reserved(4, "health"))
    peers["github"] = Peer("github", GITHUB_IPV4, "", None, WORLD, WORLD, (GITHUB_NAME,))
    peers["stale"] = Peer("stale", "", STALE_BACKEND_IPV6, None, WORLD, WORLD)
    return peers


PEERS: dict[str, Peer] = _build_peers()
NODE_BY_NAME: dict[str, NodeSpec] = {n.name: n for n in NODES}
# (peer key, port) -> Service message, how Hubble's service getter annotates both directions
SERVICE_BY_BACKEND: dict[tuple[str, int], Record] = {
    (b, svc.port): {"name": svc.name, "namespace": svc.namespace}
    for svc in SERVICES for b in svc.backends
}


class Pkt(NamedTuple):
    """One packet as the datapath reports it (source = the packet's sender)."""

    src: Peer
    dst: Peer
    proto: str  # TCP, UDP, ICMPv4, ICMPv6
    sport: int = 0
    dport: int = 0
    flags: tuple[str, ...] = ()
    icmp_type: int = 0
    v6: bool = False
    src_ip: str = ""  # overrides src.ip() (spoofed / stale source address)


@dataclass(frozen=True, slots=True)
class Conn:
    """A connection: client -> server. `fwd` packets go client->server, `rev` the other way."""

    client: Peer
    server: Peer
    proto: str
    cport: int
    sport: int
    v6: bool = False

    def fwd(self, *flags: str) -> Pkt:
        return Pkt(self.client, self.server, self.proto, self.cport, self.sport, flags, v6=self.v6)

    def rev(self, *flags: str) -> Pkt:
        return Pkt(self.server, self.client, self.proto, self.sport, self.cport, flags, v6=self.v6)


# --------------------------------------------------------------------------------------------
# Server-side derivations: l4 message and Summary (spec §3.3.6)
# --------------------------------------------------------------------------------------------


_TCP_FLAGS_CACHE: dict[tuple[str, ...], Record] = {}
_L34_SUMMARY_CACHE: dict[tuple[str, tuple[str, ...], int], str] = {}


def _tcp_flags(flags: tuple[str, ...]) -> Record:
    """TCPFlags message for a set of flag names (keys in declaration order)."""
    cached = _TCP_FLAGS_CACHE.get(flags)
    if cached is None:
        cached = _TCP_FLAGS_CACHE[flags] = {f: True for f in TCP_FLAG_DECL_ORDER if f in flags}
    return dict(cached)


def _l4(pkt: Pkt, with_flags: bool = True) -> Record:
    if pkt.proto == "TCP":
        body: Record = {"source_port": pkt.sport, "destination_port": pkt.dport}
        if with_flags and pkt.flags:
            body["flags"] = _tcp_flags(pkt.flags)
        return {"TCP": body}
    if pkt.proto == "UDP":
        return {"UDP": {"source_port": pkt.sport, "destination_port": pkt.dport}}
    icmp: Record = {"type": pkt.icmp_type} if pkt.icmp_type else {}
    return {pkt.proto: icmp}


def l34_summary(l4: Record) -> str:
    """Summary of an L3/L4 event: the last decoded layer, with TCP flags / ICMP type-code."""
    if "TCP" in l4:
        flags = l4["TCP"].get("flags", {})
        return "TCP Flags: " + ", ".join(f for f in TCP_FLAG_SUMMARY_ORDER if flags.get(f))
    if "UDP" in l4:
        return "UDP"
    for proto in ("ICMPv4", "ICMPv6"):
        if proto in l4:
            typ, code = l4[proto].get("type", 0), l4[proto].get("code", 0)
            name = ICMP_NAMES.get((proto, typ)) if code == 0 else None
            return f"{proto} {name if name else f'{typ}({code})'}"
    return ""


def l7_summary(l7: Record) -> str:
    """Summary of an L7 (proxy) record."""
    if "http" in l7:
        http = l7["http"]
        if l7["type"] == "RESPONSE":
            ms = int(l7.get("latency_ns", "0")) // 1_000_000
            return (f"{http['protocol']} {http.get('code', 0)} {ms}ms "
                    f"({http['method']} {http['url']})")
        return f"{http['protocol']} {http['method']} {http['url']}"
    dns = l7["dns"]
    qtypes = ",".join(dns.get("qtypes", []))
    if l7["type"] != "RESPONSE":
        return f"DNS Query {dns['query']} {qtypes}"
    rcode = dns.get("rcode", 0)
    if rcode:
        answer = f"RCode: {DNS_RCODE_TEXT.get(rcode, str(rcode))}"
    else:
        parts = []
        if dns.get("ips"):
            parts.append('"' + ",".join(dns["ips"]) + '"')
        if dns.get("cnames"):
            parts.append('CNAMEs: "' + ",".join(dns["cnames"]) + '"')
        answer = " ".join(parts)
    source = "Proxy" if dns.get("observation_source") == "proxy" else "Query"
    return f"DNS Answer {answer} TTL: {dns.get('ttl', 0)} ({source} {dns['query']} {qtypes})"


def _policy(p: PolicySpec, revision: int) -> Record:
    return {
        "name": p.name,
        "namespace": p.namespace,
        "labels": [
            f"k8s:io.cilium.k8s.policy.derived-from={p.kind}",
            f"k8s:io.cilium.k8s.policy.name={p.name}",
            f"k8s:io.cilium.k8s.policy.namespace={p.namespace}",
            f"k8s:io.cilium.k8s.policy.uid={p.uid}",
        ],
        "revision": str(revision),
        "kind": p.kind,
    }


def _start_ns(start: datetime) -> int:
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    delta = start - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)

S = 1_000_000_000  # one second in ns
MS = 1_000_000
US = 1_000

# --------------------------------------------------------------------------------------------
# The capture being built
# --------------------------------------------------------------------------------------------


class _Capture:
    """Collects GetFlowsResponse dicts with their capture time; `records()` sorts them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._items: list[tuple[int, int, Record]] = []
        self._ts_cache: dict[int, str] = {}

    # -- primitives ---------------------------------------------------------------------------

    def ts(self, t: int) -> str:
        """protojson Timestamp: RFC 3339 UTC, 0/3/6/9 fraction digits."""
        sec, frac = divmod(t, S)
        base = self._ts_cache.get(sec)
        if base is None:
            base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            self._ts_cache[sec] = base
        if frac == 0:
            return base + "Z"
        if frac % MS == 0:
            return f"{base}.{frac // MS:03d}Z"
        if frac % US == 0:
            return f"{base}.{frac // US:06d}Z"
        return f"{base}.{frac:09d}Z"

    def uuid(self) -> str:
        """A version-4 UUID from the seeded RNG (same bits as uuid.UUID(int=..., version=4))."""
        bits = (self.rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def port(self) -> int:
        return 32768 + int(self.rng.random() * 28232)  # Linux ephemeral range 32768-60999

    def jitter(self, lo_us: int, hi_us: int) -> int:
        """A delay between lo and hi microseconds, in ns (random() is cheaper than randint)."""
        return lo_us * US + int(self.rng.random() * ((hi_us - lo_us) * US + 1))

    def records(self) -> list[Record]:
        self._items.sort()  # (time, sequence) is unique: dicts are never compared
        return [rec for _, _, rec in self._items]

    def _push(self, t: int, rec: Record) -> None:
        self._items.append((t, len(self._items), rec))

    # -- Flow assembly (keys in proto declaration order) ---------------------------------------

    def flow(
        self,
        t: int,
        node: str,
        pkt: Pkt,
        *,
        verdict: str,
        type_: str,
        event_type: Record,
        l4: Record,
        drop_reason: int = 0,
        l7: Record | None = None,
        direction: str = "",
        policy_match_type: int = 0,
        trace_point: int | None = None,
        trace_reason: str = "",
        is_reply: bool | None = None,
        interface: Record | None = None,
        ingress_allowed_by: list[Record] | None = None,
        ingress_denied_by: list[Record] | None = None,
    ) -> None:
        stamp = self.ts(t)
        f: Record = {
            "time": stamp,
            "uuid": self.uuid(),
            "emitter": {"name": "Hubble", "version": HUBBLE_VERSION},
            "verdict": verdict,
        }
        if drop_reason:
            f["drop_reason"] = drop_reason
        f["IP"] = {
            "source": pkt.src_ip or pkt.src.ip(pkt.v6),
            "destination": pkt.dst.ip(pkt.v6),
            "ipVersion": "IPv6" if pkt.v6 else "IPv4",
        }
        f["l4"] = l4
        f["source"] = pkt.src.endpoint(node)
        f["destination"] = pkt.dst.endpoint(node)
        f["Type"] = type_
        f["node_name"] = node
        if pkt.src.names:
            f["source_names"] = list(pkt.src.names)
        if pkt.dst.names:
            f["destination_names"] = list(pkt.dst.names)
        if l7 is not None:
            f["l7"] = l7
        f["event_type"] = event_type
        src_svc = SERVICE_BY_BACKEND.get((pkt.src.key, pkt.sport))
        if src_svc is not None:
            f["source_service"] = dict(src_svc)
        dst_svc = SERVICE_BY_BACKEND.get((pkt.dst.key, pkt.dport))
        if dst_svc is not None:
            f["destination_service"] = dict(dst_svc)
        if direction:
            f["traffic_direction"] = direction
        if policy_match_type:
            f["policy_match_type"] = policy_match_type
        if trace_point is not None:
            f["trace_observation_point"] = TRACE_POINT_NAMES[trace_point]
        if trace_reason:
            f["trace_reason"] = trace_reason
        if drop_reason:
            name, line = DROP_SOURCE_FILE[drop_reason]
            f["file"] = {"name": name, "line": line}
            f["drop_reason_desc"] = DROP_REASON_NAMES[drop_reason]
        if is_reply is not None:
            f["is_reply"] = is_reply
        if interface is not None:
            f["interface"] = interface
        if l7 is not None:
            f["Summary"] = l7_summary(l7)
        else:
            key = (pkt.proto, pkt.flags, pkt.icmp_type)
            summary = _L34_SUMMARY_CACHE.get(key)
            if summary is None:
                summary = _L34_SUMMARY_CACHE[key] = l34_summary(l4)
            f["Summary"] = summary
        if ingress_allowed_by:
            f["ingress_allowed_by"] = ingress_allowed_by
        if ingress_denied_by:
            f["ingress_denied_by"] = ingress_denied_by
        self._push(t, {"flow": f, "node_name": node, "time": stamp})

    # -- event kinds ----------------------------------------------------------------------------

    def trace(self, t: int, node: str, pkt: Pkt, point: int, reason: str, direction: str = "",
              interface: Record | None = None) -> None:
        """Trace notification (type 4): FORWARDED; is_reply only when the CT reason is known."""
        is_reply = None if not reason else reason == "REPLY"
        self.flow(t, node, pkt, verdict="FORWARDED", type_="L3_L4",
                  event_type={"type": 4, "sub_type": point} if point else {"type": 4},
                  l4=_l4(pkt), direction=direction, trace_point=point, trace_reason=reason,
                  is_reply=is_reply, interface=interface)

    def policy_verdict(self, t: int, node: str, pkt: Pkt, *, allowed_by: Record | None = None,
                       denied_by: Record | None = None, match_type: int = 0) -> None:
        """Ingress policy-verdict notification (type 5)."""
        if denied_by is not None:
            self.flow(t, node, pkt, verdict="DROPPED", type_="L3_L4", event_type={"type": 5},
                      l4=_l4(pkt), drop_reason=133, direction="INGRESS",
                      policy_match_type=match_type, ingress_denied_by=[denied_by])
        else:
            self.flow(t, node, pkt, verdict="FORWARDED", type_="L3_L4", event_type={"type": 5},
                      l4=_l4(pkt), direction="INGRESS", policy_match_type=match_type,
                      is_reply=False, ingress_allowed_by=[allowed_by] if allowed_by else None)

    def drop(self, t: int, node: str, pkt: Pkt, reason: int, direction: str) -> None:
        """Drop notification (type 1, sub_type = reason): DROPPED, is_reply absent."""
        self.flow(t, node, pkt, verdict="DROPPED", type_="L3_L4",
                  event_type={"type": 1, "sub_type": reason}, l4=_l4(pkt), drop_reason=reason,
                  direction=direction)

    def l7(self, t: int, node: str, pkt: Pkt, l7: Record) -> None:
        """Proxy access log (type 129) from the client-side (egress) proxy."""
        self.flow(t, node, pkt, verdict="FORWARDED", type_="L7", event_type={"type": 129},
                  l4=_l4(pkt, with_flags=False), l7=l7, direction="EGRESS",
                  is_reply=l7["type"] == "RESPONSE")

    def lost(self, t: int, node: str, source: str, lost: int, cpu: int,
             window: tuple[int, int] | None = None) -> None:
        body: Record = {"source": source, "num_events_lost": str(lost), "cpu": cpu}
        if window is not None:
            body["first"] = self.ts(window[0])
            body["last"] = self.ts(window[1])
        self._push(t, {"lost_events": body, "node_name": node, "time": self.ts(t)})


# --------------------------------------------------------------------------------------------
# Conversations (small functions per event kind, composed by the scenario)
# --------------------------------------------------------------------------------------------


def _dns(cap: _Capture, t: int, client: Peer, query: str, qtype: str, *,
         ips: Sequence[str] = (), rcode: int = 0, ttl: int = 30, upstream: bool = False) -> int:
    """A DNS query/answer seen by the DNS proxy on the client's node; returns the answer time."""
    server = PEERS[cap.rng.choice(("coredns-1", "coredns-2"))]
    conn = Conn(client, server, "UDP", cap.port(), 53)
    node = client.node or ""
    cap.l7(t, node, conn.fwd(), {
        "type": "REQUEST",
        "dns": {"query": query, "observation_source": "proxy", "qtypes": [qtype]},
    })
    latency = cap.jitter(4_000, 45_000) if upstream else cap.jitter(180, 2_400)
    answer: Record = {"query": query}
    if ips:
        answer["ips"] = list(ips)
    answer["ttl"] = ttl if ips else NO_ANSWER_TTL
    answer["observation_source"] = "proxy"
    if rcode:
        answer["rcode"] = rcode
    answer["qtypes"] = [qtype]
    if ips:
        answer["rrtypes"] = [qtype] * len(ips)
    cap.l7(t + latency, node, conn.rev(),
           {"type": "RESPONSE", "latency_ns": str(latency), "dns": answer})
    return t + latency


def _resolve_backend(cap: _Capture, t: int, client: Peer) -> int:
    """curl resolving `backend`: A and AAAA in parallel (first search domain hits)."""
    svc = SERVICES[0]
    name = f"{svc.name}.{svc.namespace}.svc.cluster.local."
    a = _dns(cap, t, client, name, "A", ips=[svc.ipv4])
    aaaa = _dns(cap, t + cap.jitter(15, 60), client, name, "AAAA", ips=[svc.ipv6])
    return max(a, aaaa)


def _http(method: str, url: str, request_id: str, code: int = 0) -> Record:
    body: Record = {}
    if code:
        body["code"] = code
    body["method"] = method
    body["url"] = url
    body["protocol"] = "HTTP/1.1"
    headers = [{"key": "Accept", "value": "*/*"}]
    if method == "POST":
        headers += [{"key": "Content-Length", "value": "27"},
                    {"key": "Content-Type", "value": "application/json"}]
    headers += [{"key": "User-Agent", "value": CURL_UA},
                {"key": "X-Request-Id", "value": request_id}]
    body["headers"] = headers
    return body


def _http_session(cap: _Capture, t: int, conn: Conn, method: str, url: str,
                  allowed_by: Record | None, code: int = 0) -> int:
    """Allowed pod-to-pod TCP connection across nodes with one HTTP exchange through the
    client-side L7 proxy (`code` 0: the backend answers 2xx, sometimes 503/500). Returns the
    time of the last packet."""
    cn, sn = conn.client.node or "", conn.server.node or ""
    hop = cap.jitter(70, 260)  # one-way node-to-node latency
    cap.trace(t, cn, conn.fwd("SYN"), TO_STACK, "NEW", "EGRESS")
    t += hop
    if allowed_by is not None:
        cap.policy_verdict(t, sn, conn.fwd("SYN"), allowed_by=allowed_by, match_type=2)
        t += cap.jitter(2, 9)
    cap.trace(t, sn, conn.fwd("SYN"), TO_ENDPOINT, "NEW", "INGRESS")
    t += cap.jitter(20, 60)
    cap.trace(t, sn, conn.rev("SYN", "ACK"), TO_STACK, "REPLY", "INGRESS")
    t += hop
    cap.trace(t, cn, conn.rev("SYN", "ACK"), TO_ENDPOINT, "REPLY", "EGRESS")
    t += cap.jitter(20, 80) + hop
    cap.trace(t, sn, conn.fwd("ACK"), TO_ENDPOINT, "ESTABLISHED", "INGRESS")
    # the request as the proxy logs it, then the bytes reaching the backend
    t_req = t + cap.jitter(30, 120)
    request_id = cap.uuid()
    cap.l7(t_req, cn, conn.fwd(), {"type": "REQUEST", "http": _http(method, url, request_id)})
    cap.trace(t_req + hop, sn, conn.fwd("ACK", "PSH"), TO_ENDPOINT, "ESTABLISHED", "INGRESS")
    roll = cap.rng.random()
    if code == 503 or (not code and roll < 0.04):
        code, latency = 503, cap.jitter(1_000, 30_000)
    elif code == 500 or (not code and roll < 0.06):
        code, latency = 500, cap.jitter(2_000, 12_000)
    else:
        code = code or (201 if method == "POST" else 200)
        latency = int(cap.rng.lognormvariate(15.4, 0.6))  # median ~5ms
        latency = max(latency, 2 * hop + 200 * US)
    t_resp = t_req + latency
    cap.trace(t_resp - cap.jitter(5, 40), cn, conn.rev("ACK", "PSH"), TO_ENDPOINT, "REPLY",
              "EGRESS")
    cap.l7(t_resp, cn, conn.rev(), {"type": "RESPONSE", "latency_ns": str(latency),
                                    "http": _http(method, url, request_id, code)})
    t = t_resp + cap.jitter(100, 400) + hop
    cap.trace(t, sn, conn.fwd("ACK", "FIN"), TO_ENDPOINT, "ESTABLISHED", "INGRESS")
    t += cap.jitter(20, 60) + hop
    cap.trace(t, cn, conn.rev("ACK", "FIN"), TO_ENDPOINT, "REPLY", "EGRESS")
    return t


def _denied_connect(cap: _Capture, t: int, conn: Conn, denied_by: Record) -> int:
    """SYN to a backend under default deny: retransmitted after 1s, 2s, 4s (curl -m 10)."""
    cn, sn = conn.client.node or "", conn.server.node or ""
    cap.trace(t, cn, conn.fwd("SYN"), TO_STACK, "NEW", "EGRESS")
    for backoff in (0, 1, 3, 7):
        at = t + backoff * S + (cap.jitter(200, 9_000) if backoff else 0) + cap.jitter(70, 260)
        syn = conn.fwd("SYN")
        cap.policy_verdict(at, sn, syn, denied_by=denied_by)
        cap.drop(at + cap.jitter(1, 6), sn, syn, 133, "INGRESS")
    return t + 10 * S


def _curl_backend(cap: _Capture, t: int, client: Peer, phase: int, *, v6: bool,
                  method: str = "GET", url: str = "", code: int = 0) -> None:
    """One `curl backend:8080/...` from a client pod, as the policy of `phase` treats it."""
    t = _resolve_backend(cap, t, client) + cap.jitter(60, 300)
    conn = Conn(client, PEERS["backend"], "TCP", cap.port(), 8080, v6)
    url = url or "http://backend:8080" + cap.rng.choice(HTTP_PATHS)
    if phase == 1:
        _http_session(cap, t, conn, method, url, None, code)
    elif phase == 3 and client.key == "frontend":
        _http_session(cap, t, conn, method, url, _policy(ALLOW_POLICY, REVISION_ALLOW), code)
    else:
        revision = REVISION_DENY if phase == 2 else REVISION_ALLOW
        _denied_connect(cap, t, conn, _policy(DENY_POLICY, revision))


def _github_fetch(cap: _Capture, t: int, client: Peer) -> None:
    """`curl https://api.github.com/zen`: the ndots:5 search list first (NXDOMAIN), then the
    TLS connection to the world identity."""
    for domain in (*SEARCH_DOMAINS, ""):
        name = f"{GITHUB_NAME}.{domain}." if domain else f"{GITHUB_NAME}."
        ips = [GITHUB_IPV4] if not domain else []
        rcode = 3 if domain else 0
        a = _dns(cap, t, client, name, "A", ips=ips, rcode=rcode, ttl=60, upstream=not domain)
        aaaa = _dns(cap, t + cap.jitter(15, 60), client, name, "AAAA", rcode=rcode,
                    upstream=not domain)  # GitHub has no IPv6: NOERROR without answers
        t = max(a, aaaa) + cap.jitter(20, 90)
    node = client.node or ""
    conn = Conn(client, PEERS["github"], "TCP", cap.port(), 443)
    rtt = cap.jitter(14_000, 32_000)
    cap.trace(t, node, conn.fwd("SYN"), TO_STACK, "NEW", "EGRESS")
    t += rtt
    cap.trace(t, node, conn.rev("SYN", "ACK"), TO_ENDPOINT, "REPLY", "EGRESS")
    t += cap.jitter(30, 120)
    cap.trace(t, node, conn.fwd("ACK", "PSH"), TO_STACK, "ESTABLISHED", "EGRESS")
    t += rtt + cap.jitter(500, 3_000)
    cap.trace(t, node, conn.rev("ACK", "PSH"), TO_ENDPOINT, "REPLY", "EGRESS")
    t += cap.jitter(2_000, 9_000)
    cap.trace(t, node, conn.fwd("ACK", "FIN"), TO_STACK, "ESTABLISHED", "EGRESS")
    t += rtt
    cap.trace(t, node, conn.rev("ACK", "FIN"), TO_ENDPOINT, "REPLY", "EGRESS")


def _health_round(cap: _Capture, t: int, node: NodeSpec, remote: NodeSpec, v6: bool) -> None:
    """cilium-health on `node`: ICMP echo (IPv4 or IPv6) and TCP 4240 to the local health
    endpoint, then ICMP (IPv4 rounds) or TCP 4240 (IPv6 rounds) to the health endpoint of
    `remote`, untracked (unknown direction) where it leaves this node."""
    me = node.name
    router, health = PEERS[f"router:{me}"], PEERS[f"health:{me}"]
    lxc = {"index": node.health_ifindex, "name": "lxc_health"}
    proto, request, reply = ("ICMPv6", 128, 129) if v6 else ("ICMPv4", 8, 0)
    cap.trace(t, me, Pkt(router, health, proto, icmp_type=request, v6=v6), TO_ENDPOINT, "NEW",
              "INGRESS", lxc)
    t += cap.jitter(15, 60)
    cap.trace(t, me, Pkt(health, router, proto, icmp_type=reply, v6=v6), TO_STACK, "REPLY",
              "INGRESS")
    t += cap.jitter(40, 200)
    conn = Conn(router, health, "TCP", cap.port(), 4240)
    cap.trace(t, me, conn.fwd("SYN"), TO_ENDPOINT, "NEW", "INGRESS", lxc)
    t += cap.jitter(15, 60)
    cap.trace(t, me, conn.rev("SYN", "ACK"), TO_STACK, "REPLY", "INGRESS")
    t += cap.jitter(300, 1_500)
    cap.trace(t, me, conn.fwd("ACK", "FIN"), TO_ENDPOINT, "ESTABLISHED", "INGRESS", lxc)
    t += cap.jitter(100, 400)
    src, dst = PEERS[f"node:{me}"], PEERS[f"health:{remote.name}"]
    hop = cap.jitter(70, 260)
    if v6:
        remote_conn = Conn(src, dst, "TCP", cap.port(), 4240)
        out, back = remote_conn.fwd("SYN"), remote_conn.rev("SYN", "ACK")
    else:
        out, back = Pkt(src, dst, "ICMPv4", icmp_type=8), Pkt(dst, src, "ICMPv4")
    cap.trace(t, me, out, TO_NETWORK, "")
    cap.trace(t + hop, remote.name, out, TO_ENDPOINT, "NEW", "INGRESS")
    cap.trace(t + hop + cap.jitter(15, 60), remote.name, back, TO_STACK, "REPLY", "INGRESS")


def _kubelet_probe(cap: _Capture, t: int, pod: Peer, port: int) -> None:
    """Readiness probe from the node to a local pod (host traffic is allowed under any policy)."""
    node = pod.node or ""
    conn = Conn(PEERS[f"router:{node}"], pod, "TCP", cap.port(), port)
    cap.trace(t, node, conn.fwd("SYN"), TO_ENDPOINT, "NEW", "INGRESS")
    t += cap.jitter(15, 50)
    cap.trace(t, node, conn.rev("SYN", "ACK"), TO_STACK, "REPLY", "INGRESS")
    t += cap.jitter(400, 2_000)
    cap.trace(t, node, conn.fwd("ACK", "FIN"), TO_ENDPOINT, "ESTABLISHED", "INGRESS")


def _invalid_source_drops(cap: _Capture, t: int) -> None:
    """not-frontend still sending from its pre-restart address: dropped at from-container."""
    client = PEERS["not-frontend"]
    server = PEERS["coredns-1"]
    sport = cap.port()
    for i in range(3):
        pkt = Pkt(client, server, "UDP", sport, 53, src_ip=SPOOFED_IPV4)
        cap.drop(t + i * S + cap.jitter(0, 900), client.node or "", pkt, 132, "EGRESS")


def _stale_ip_drops(cap: _Capture, t: int) -> None:
    """frontend reusing a cached IPv6 address of a deleted backend pod."""
    client = PEERS["frontend"]
    conn = Conn(client, PEERS["stale"], "TCP", cap.port(), 8080, v6=True)
    for backoff in (0, 1):
        cap.drop(t + backoff * S + cap.jitter(0, 4_000), client.node or "", conn.fwd("SYN"), 151,
                 "EGRESS")


def _missing_ack_drop(cap: _Capture, t: int) -> None:
    """A late RST from api.github.com for a connection the backend's CT already forgot."""
    backend = PEERS["backend"]
    pkt = Pkt(PEERS["github"], backend, "TCP", 443, cap.port(), ("RST",))
    cap.drop(t, backend.node or "", pkt, 136, "INGRESS")


# --------------------------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------------------------


def _every(cap: _Capture, first: float, period: float, end: float,
           jitter: float) -> Iterator[float]:
    """Times (seconds from the lab start) of a periodic activity with some jitter."""
    at = first
    while at < end:
        yield at
        at += period + cap.rng.uniform(-jitter, jitter)


def _build_lab(seed: int, start_ns: int, scale: float) -> _Capture:
    cap = _Capture(seed)
    phase_len = PHASE_SECONDS * scale
    end = 3 * phase_len

    def at(seconds: float) -> int:
        return start_ns + int(seconds * S) + int(cap.rng.random() * MS)

    def phase_of(seconds: float) -> int:
        return 1 if seconds < phase_len else 2 if seconds < 2 * phase_len else 3

    # clients: a curl loop each (every ~25s), every 4th request over IPv6
    for key, first in (("frontend", 3.2), ("not-frontend", 7.9)):
        client = PEERS[key]
        for i, sec in enumerate(_every(cap, first * min(scale, 1.0), 25.0, end - 12.0, 3.0)):
            _curl_backend(cap, at(sec), client, phase_of(sec), v6=i % 4 == 3)
    # one-off requests of phase 1 (present at any scale): hostile URLs, a POST, a 503
    one_offs: tuple[tuple[float, str, str, str, int], ...] = (
        (0.27, "not-frontend", "GET", XSS_URL, 0),
        (0.38, "frontend", "GET", ESC_URL, 0),
        (0.55, "frontend", "POST", "http://backend:8080/api/v1/orders", 0),
        (0.61, "not-frontend", "GET", "http://backend:8080/api/v1/items/9", 503),
    )
    for fraction, key, method, url, code in one_offs:
        _curl_backend(cap, at(fraction * phase_len), PEERS[key], 1, v6=False, method=method,
                      url=url, code=code)

    # cilium-health on every node, once a minute, alternating the remote target
    for idx, node in enumerate(NODES):
        others = [n for n in NODES if n is not node]
        for i, sec in enumerate(_every(cap, 11.0 * (idx + 1) * min(scale, 1.0), 60.0, end, 1.5)):
            _health_round(cap, at(sec), node, others[(i // 2) % len(others)], v6=i % 2 == 1)

    # kubelet readiness probes of backend
    for sec in _every(cap, 5.0 * min(scale, 1.0), 30.0, end, 0.3):
        _kubelet_probe(cap, at(sec), PEERS["backend"], 8080)

    # backend fetching from api.github.com every ~3 minutes
    for sec in _every(cap, 45.0 * min(scale, 1.0), 180.0, end - 5.0, 20.0):
        _github_fetch(cap, at(sec), PEERS["backend"])

    # one-off trouble
    _invalid_source_drops(cap, at(0.42 * phase_len))
    _stale_ip_drops(cap, at(0.71 * phase_len))
    _missing_ack_drop(cap, at(2.33 * phase_len))
    _dns(cap, at(2.55 * phase_len), PEERS["frontend"], XSS_DNS_QUERY, "A", rcode=3,
         upstream=True)

    # lost events
    t = at(0.93 * phase_len)
    cap.lost(t, "kind-control-plane", "PERF_EVENT_RING_BUFFER", 1207, 3)
    t = at(1.5 * phase_len)
    cap.lost(t, "kind-worker2", "PERF_EVENT_RING_BUFFER", 211, 1)
    t = at(2.8 * phase_len)
    cap.lost(t, "kind-worker", "HUBBLE_RING_BUFFER", 37, 0, (t - 2 * S - 417 * MS, t - 3 * MS))
    return cap


def _build_quietly(seed: int, start_ns: int, scale: float) -> list[Record]:
    """Build and sort one lab run with the cyclic GC paused: the records are trees (no reference
    cycles), and tens of thousands of fresh containers would otherwise trigger many collections."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_lab(seed, start_ns, scale).records()
    finally:
        if was_enabled:
            gc.enable()


def _lab_span_ns(scale: float) -> int:
    """Time window one lab run occupies (its last events end well before this)."""
    return int((3 * PHASE_SECONDS * scale + 60.0) * S)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_lab(*, seed: int = 7, start: datetime | None = None,
                 scale: float = 1.0) -> Iterator[Record]:
    """Yield the lab capture as GetFlowsResponse dicts (protojson shape, proto field names),
    ordered by time. Same seed, start and scale give the same records."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    start_ns = _start_ns(start or DEFAULT_START)
    yield from _build_quietly(seed, start_ns, scale)


def generate_flows(n: int, *, seed: int = 7) -> Iterator[Record]:
    """Yield exactly `n` flow records (no lost events): the lab scenario repeated with advancing
    time. The first cycle is the flows of `generate_lab(seed=seed)`."""
    start_ns = _start_ns(DEFAULT_START)
    span = _lab_span_ns(1.0)
    produced = 0
    cycle = 0
    while produced < n:
        cycle_seed = seed if cycle == 0 else seed * 1_000_003 + cycle
        for rec in _build_quietly(cycle_seed, start_ns + cycle * span, 1.0):
            if "flow" in rec:
                yield rec
                produced += 1
                if produced >= n:
                    return
        cycle += 1


# How `generate_varied` shows each node: with and without a cluster prefix, one in capitals
# (hubble matches node names case-insensitively), each with its node labels.
_VARIED_NODES: dict[str, tuple[str, list[str]]] = {
    "kind-control-plane": (f"{CLUSTER}/kind-control-plane", [
        "kubernetes.io/hostname=kind-control-plane", "kubernetes.io/os=linux",
        "node-role.kubernetes.io/control-plane="]),
    "kind-worker": ("kind-worker", [
        "kubernetes.io/hostname=kind-worker", "kubernetes.io/os=linux",
        "topology.kubernetes.io/zone=zone-a"]),
    "kind-worker2": (f"{CLUSTER}/Kind-Worker2", [
        "kubernetes.io/hostname=kind-worker2", "topology.kubernetes.io/zone=zone-b"]),
}
_VARIED_URLS = ("http://backend:8080/%2e%2e/etc/passwd", "http://backend:8080/a%2Fb?x=%41",
                "http://backend:8080/caf%C3%A9/%7euser", "http://backend:8080/bad%zzpath")
_TRACE_IDS = tuple(f"{i:02x}" * 16 for i in (0x4b, 0xa1, 0x0f))


def generate_varied(*, seed: int = 7, scale: float = 0.25) -> Iterator[Record]:
    """The lab capture (at `scale`) with what filters need beyond it: node names with and
    without a cluster prefix (one in capitals) and node labels, endpoints of a second cluster
    and pods' namespaces without a pod name, SNAT addresses towards the world, encrypted
    packets, interfaces, trace contexts, percent-encoded HTTP paths, DNS names in capitals
    with and without a trailing dot. Records come node by node, each node in time order (as
    per-node captures joined together are), lost events with their node."""
    rng = random.Random(seed)
    records = list(generate_lab(seed=seed, scale=scale))
    for rec in records:
        node, labels = _VARIED_NODES.get(rec["node_name"], (rec["node_name"], []))
        rec["node_name"] = node
        flow = rec.get("flow")
        if flow is None:
            continue
        _vary_flow(flow, rng, node, labels)
    order = list(_VARIED_NODES)
    records.sort(key=lambda r: order.index(next(k for k, v in _VARIED_NODES.items()
                                                if v[0] == r["node_name"])))
    yield from records


def _vary_flow(flow: Record, rng: random.Random, node: str, labels: list[str]) -> None:
    flow["node_name"] = node
    if labels:
        flow["node_labels"] = labels
    ip = flow.get("IP", {})
    for side in ("source", "destination"):
        ep = flow.get(side, {})
        if "pod_name" in ep and rng.random() < 0.1:
            ep["cluster_name"] = "kind-remote"
        if side == "source" and "pod_name" in ep and rng.random() < 0.05:
            del ep["pod_name"]  # a namespace without a pod
    if flow.get("destination", {}).get("identity") == 2 and "source" in ip:
        ip["source_xlated"] = "172.18.0.3"
    if ip and rng.random() < 0.2:
        ip["encrypted"] = True
    if "interface" not in flow and flow.get("event_type", {}).get("type") == 4:
        roll = rng.random()
        if roll < 0.3:
            flow["interface"] = {"index": 11 + int(roll * 10), "name": "eth0"}
        elif roll < 0.4:
            flow["interface"] = {"index": 3}
    http = flow.get("l7", {}).get("http")
    if http is not None:
        if rng.random() < 0.5:
            http["url"] = rng.choice(_VARIED_URLS)
            flow["Summary"] = l7_summary(flow["l7"])
        flow["trace_context"] = {"parent": {"trace_id": rng.choice(_TRACE_IDS)}}
    for key in ("source_names", "destination_names"):
        if key in flow and rng.random() < 0.5:
            flow[key] = [n.upper() + "." for n in flow[key]]
    # keys back in declaration order, as a server writes them
    flow_keys = ("time", "uuid", "emitter", "verdict", "drop_reason", "auth_type", "IP", "l4",
                 "source", "destination", "Type", "node_name", "node_labels", "source_names",
                 "destination_names", "l7", "event_type", "source_service",
                 "destination_service", "traffic_direction", "policy_match_type",
                 "trace_observation_point", "trace_reason", "file", "drop_reason_desc",
                 "is_reply", "interface", "trace_context", "Summary", "ingress_allowed_by",
                 "ingress_denied_by")
    ordered = {k: flow[k] for k in flow_keys if k in flow}
    assert len(ordered) == len(flow), set(flow) - set(ordered)
    flow.clear()
    flow.update(ordered)
    if ip:
        flow["IP"] = {k: ip[k] for k in ("source", "source_xlated", "destination", "ipVersion",
                                         "encrypted") if k in ip}
    for side in ("source", "destination"):
        ep = flow.get(side)
        if ep:
            flow[side] = {k: ep[k] for k in ("ID", "identity", "cluster_name", "namespace",
                                             "labels", "pod_name", "workloads") if k in ep}


def _line_encoder() -> tuple[Callable[[Record], bytes], bool]:
    """flowlens.render.jsonpb.encode_response when available (hubble's exact bytes), else a
    compact json.dumps. Returns (encoder, used_hubble_encoder)."""
    try:
        jsonpb = importlib.import_module("flowlens.render.jsonpb")
    except ImportError:
        jsonpb = None
    encode = getattr(jsonpb, "encode_response", None)
    if encode is not None:
        hubble_encode: Callable[[Record], str | bytes] = encode

        def via_hubble(rec: Record) -> bytes:
            out = hubble_encode(rec)
            data = out.encode("utf-8") if isinstance(out, str) else bytes(out)
            return data if data.endswith(b"\n") else data + b"\n"

        return via_hubble, True

    def via_json(rec: Record) -> bytes:
        return (json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n").encode()

    return via_json, False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowlens.synth",
        description="Write a synthetic Hubble capture of the Cilium network-policy lab.",
    )
    parser.add_argument("--out", type=Path, default=Path("samples"),
                        help="output directory (default: samples/)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="length of the story (1.0 = 30 minutes)")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    encode, exact = _line_encoder()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "lab.jsonpb"
    count = 0
    with path.open("wb") as fh:
        for rec in generate_lab(seed=args.seed, scale=args.scale):
            fh.write(encode(rec))
            count += 1
    how = "hubble jsonpb encoder" if exact else "json.dumps fallback"
    print(f"wrote {count:,} records to {path} ({how})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
