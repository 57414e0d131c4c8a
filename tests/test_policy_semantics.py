"""What the policy lens decides, case by case: NetworkPolicy and the documented subset of
CiliumNetworkPolicy written as users write them, peers built from the label strings Hubble sends,
and `check` over small frames. Each table row is one rule of the semantics."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pytest
from test_analyses import frame

from flowlens.policy import Peer, PolicyError, PolicySet, check, decide, load_policies, peer
from flowlens.policy.model import Direction, Policy, parse_policies

# --- peers as the flows describe them ------------------------------------------------------------

NS_PREFIX = "k8s:io.cilium.k8s.namespace.labels."


def labels(namespace: str, *pod_labels: str, ns_labels: Mapping[str, str] | None = None,
           account: str = "default") -> str:
    """A pod's `src_labels`/`dst_labels` text as Hubble sends it (sorted, as Cilium does)."""
    parts = [f"k8s:{label}" for label in pod_labels]
    parts.append(f"{NS_PREFIX}kubernetes.io/metadata.name={namespace}")
    parts += [f"{NS_PREFIX}{k}={v}" for k, v in (ns_labels or {}).items()]
    parts += ["k8s:io.cilium.k8s.policy.cluster=kind-kind",
              f"k8s:io.cilium.k8s.policy.serviceaccount={account}",
              f"k8s:io.kubernetes.pod.namespace={namespace}"]
    return ",".join(sorted(parts))


# The lab's own pods, with the label strings of samples/lab.jsonpb.
FRONTEND = peer("default", "frontend-7d9c6bdc96-8r5hq", 17629, "10.244.1.45",
                "k8s:app=frontend,k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name="
                "default,k8s:io.cilium.k8s.policy.cluster=kind-kind,k8s:io.cilium.k8s.policy."
                "serviceaccount=default,k8s:io.kubernetes.pod.namespace=default")
NOT_FRONTEND = peer("default", "not-frontend-7db9747986-gktg6", 36044, "10.244.1.112",
                    labels("default", "app=not-frontend"))
BACKEND = peer("default", "backend-6f884b6495-69bbh", 48312, "10.244.2.12",
               labels("default", "app=backend"))
COREDNS = peer("kube-system", "coredns-5d78c9869d-xk2vl", 102, "10.244.0.3",
               "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=kube-system,"
               "k8s:io.cilium.k8s.policy.cluster=kind-kind,k8s:io.cilium.k8s.policy."
               "serviceaccount=coredns,k8s:io.kubernetes.pod.namespace=kube-system,"
               "k8s:k8s-app=kube-dns")
# More pods: labels for matchExpressions, and a namespace with labels of its own.
WEB = peer("default", "web-5c9f7d8b4-q2xkz", 40001, "10.244.1.20",
           labels("default", "app=web", "tier=frontend"))
NIGHTLY = peer("default", "nightly-28734120-7k4cd", 40002, "10.244.1.21",
               labels("default", "job-name=nightly-28734120"))
SUSPECT = peer("default", "suspect-6d8f9c7b5-zz9xw", 40003, "10.244.1.22",
               labels("default", "app=web", "quarantine=true"))
PROMETHEUS = peer("monitoring", "prometheus-0", 50001, "10.244.3.10",
                  labels("monitoring", "app=prometheus", ns_labels={"team": "observability"}))
GRAFANA = peer("monitoring", "grafana-7f6d5c4b3-abcde", 50002, "10.244.3.11",
               labels("monitoring", "app=grafana", ns_labels={"team": "observability"}))
# A pod in another namespace that carries the same app label as the lab's frontend.
FOREIGN_FRONTEND = peer("staging", "frontend-6b5d4c3f2-kkkkk", 50003, "10.244.3.12",
                        labels("staging", "app=frontend"))
# Reserved identities and outside addresses.
WORLD = peer(None, None, 2, "203.0.113.7", "reserved:world")
WORLD_EXCEPTED = peer(None, None, 2, "203.0.113.200", "reserved:world")
WORLD_PRIVATE = peer(None, None, 2, "10.1.2.3", "reserved:world")
WORLD_V4 = peer(None, None, 9, "198.51.100.9", "reserved:world-ipv4")
WORLD_V6 = peer(None, None, 2, "2001:db8::7", "reserved:world")
HOST = peer(None, None, 1, "10.244.2.40", "reserved:host")
REMOTE_NODE = peer(None, None, 6, "172.18.0.3", "reserved:remote-node")
HEALTH = peer(None, None, 4, "10.244.2.97", "reserved:health")
APISERVER = peer(None, None, 7, "172.18.0.2", "reserved:kube-apiserver,reserved:remote-node")
# Text input: the same pods without labels.
TEXT_BACKEND = peer("default", "backend-6f884b6495-69bbh", 48312, None, None)
TEXT_FRONTEND = peer("default", "frontend-7d9c6bdc96-8r5hq", 17629, None, None)


def test_peers_from_frame_columns() -> None:
    assert (FRONTEND.name, FRONTEND.namespace, FRONTEND.is_pod) == \
        ("default/frontend-7d9c6bdc96-8r5hq", "default", True)
    assert FRONTEND.labels is not None and ("k8s", "app", "frontend") in FRONTEND.labels
    assert PROMETHEUS.namespace_labels() == frozenset({
        ("k8s", "kubernetes.io/metadata.name", "monitoring"), ("k8s", "team", "observability")})
    assert (WORLD.name, WORLD.entity, WORLD.in_world, WORLD.is_pod) == \
        ("203.0.113.7", "world", True, False)
    assert (HOST.name, HOST.entity) == ("host", "host")
    # Text input: no labels; reserved identities still known by number.
    assert TEXT_BACKEND.labels is None and TEXT_BACKEND.is_pod
    assert peer(None, None, 1, "10.244.2.40", None).entity == "host"
    assert peer(None, None, None, "10.0.0.9", None).entity is None


# --- policies as users write them ----------------------------------------------------------------

def parse(text: str, origin: str = "test.yaml") -> list[Policy]:
    return parse_policies(textwrap.dedent(text), origin)


def np(name: str, spec: str, namespace: str = "default") -> str:
    """A NetworkPolicy document around an indented `spec` body."""
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n"
            f"  name: {name}\n  namespace: {namespace}\nspec:\n{body}\n")


def cnp(name: str, spec: str, namespace: str = "default",
        kind: str = "CiliumNetworkPolicy") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    meta = f"  name: {name}\n" + (f"  namespace: {namespace}\n"
                                   if kind == "CiliumNetworkPolicy" else "")
    return f"apiVersion: cilium.io/v2\nkind: {kind}\nmetadata:\n{meta}spec:\n{body}\n"


def docs(*texts: str) -> str:
    return "---\n".join(texts)


DENY_INGRESS = np("deny-ingress", """
    podSelector: {}
    policyTypes: [Ingress]
""")
DENY_ALL = np("deny-all", """
    podSelector: {}
    policyTypes: [Ingress, Egress]
""")
ALLOW_FRONTEND = np("allow-frontend", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - podSelector:
          matchLabels: {app: frontend}
""")
SAME_NAMESPACE = np("same-namespace", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - podSelector: {}
""")
ALLOW_ALL_SOURCES = np("all-sources", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - {}
""")
ANY_SOURCE_ON_8080 = np("any-source-8080", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - ports:
      - port: 8080
""")
FROM_TEAM = np("from-observability", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - namespaceSelector:
          matchLabels: {team: observability}
""")
FROM_NAMESPACE_NAME = np("from-monitoring", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - namespaceSelector:
          matchLabels:
            kubernetes.io/metadata.name: monitoring
""")
FROM_ANY_NAMESPACE = np("from-any-namespace", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - namespaceSelector: {}
""")
PROMETHEUS_ONLY = np("prometheus-only", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - namespaceSelector:
          matchLabels: {team: observability}
        podSelector:
          matchLabels: {app: prometheus}
""")
TEAM_OR_FRONTEND = np("team-or-frontend", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - namespaceSelector:
          matchLabels: {team: observability}
      - podSelector:
          matchLabels: {app: frontend}
""")
FROM_CIDR = np("from-cidr", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - ipBlock:
          cidr: 203.0.113.0/24
          except: [203.0.113.128/25]
      - ipBlock:
          cidr: 10.0.0.0/8
      - ipBlock:
          cidr: 172.18.0.0/16
""")
FROM_CIDR_V6 = np("from-cidr-v6", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - ipBlock:
          cidr: 2001:db8::/32
""")
EGRESS_DNS = docs(np("deny-egress", """
    podSelector: {}
    policyTypes: [Egress]
"""), np("allow-dns", """
    podSelector: {}
    policyTypes: [Egress]
    egress:
    - to:
      - namespaceSelector:
          matchLabels:
            kubernetes.io/metadata.name: kube-system
        podSelector:
          matchLabels: {k8s-app: kube-dns}
      ports:
      - port: 53
        protocol: UDP
      - port: 53
        protocol: TCP
"""))
EGRESS_ANYWHERE = np("egress-internet", """
    podSelector:
      matchLabels: {app: frontend}
    policyTypes: [Egress]
    egress:
    - to:
      - ipBlock: {cidr: 0.0.0.0/0}
""")
DNS_TCP_ONLY = np("dns-tcp-only", """
    podSelector:
      matchLabels: {app: frontend}
    policyTypes: [Egress]
    egress:
    - ports:
      - {port: 53, protocol: TCP}
""")
PORT_8080 = np("port-8080", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - ports:
      - port: 8080
      from:
      - podSelector: {}
""")
PORT_RANGE = np("port-range", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - podSelector: {}
      ports:
      - protocol: TCP
        port: 8000
        endPort: 8100
""")
NAMED_PORT = np("named-port", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - podSelector:
          matchLabels: {app: frontend}
      ports:
      - port: http
""")
NAMED_UDP_PORT = np("named-udp-port", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - ports:
      - {port: metrics, protocol: UDP}
""")
EXPRESSIONS = np("expressions", """
    podSelector:
      matchExpressions:
      - {key: app, operator: In, values: [backend, api]}
    ingress:
    - from:
      - podSelector:
          matchExpressions:
          - {key: app, operator: NotIn, values: [not-frontend]}
          - {key: quarantine, operator: DoesNotExist}
      ports:
      - port: 8080
    - from:
      - podSelector:
          matchExpressions:
          - {key: tier, operator: Exists}
      ports:
      - port: 9090
""")
EGRESS_RULES_ONLY = np("egress-rules-only", """
    podSelector:
      matchLabels: {app: backend}
    egress:
    - to:
      - namespaceSelector: {}
""")
INGRESS_RULES_ONLY = np("ingress-rules-only", """
    podSelector:
      matchLabels: {app: backend}
    ingress:
    - from:
      - podSelector:
          matchLabels: {app: frontend}
""")
EGRESS_TYPE_IGNORES_INGRESS = np("egress-type", """
    podSelector:
      matchLabels: {app: backend}
    policyTypes: [Egress]
    ingress:
    - from:
      - podSelector:
          matchLabels: {app: frontend}
""")
EMPTY_TYPES = np("empty-types", """
    podSelector:
      matchLabels: {app: backend}
    policyTypes: []
""")
OTHER_NAMESPACE_DENY = np("deny-staging", """
    podSelector: {}
    policyTypes: [Ingress, Egress]
""", namespace="staging")
LIST = textwrap.dedent("""\
    apiVersion: v1
    kind: List
    items:
    - apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata: {name: deny-ingress, namespace: default}
      spec:
        podSelector: {}
        policyTypes: [Ingress]
    - apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata: {name: allow-frontend, namespace: default}
      spec:
        podSelector:
          matchLabels: {app: backend}
        ingress:
        - from:
          - podSelector:
              matchLabels: {app: frontend}
""")


def case(case_id: str, policy_yaml: str, direction: str, endpoint: Peer, other: Peer,
         port: int | None, protocol: str, verdict: str, allowed_by: tuple[str, ...] = (),
         named_ports: Mapping[str, int] | None = None) -> Any:
    return pytest.param(policy_yaml, direction, endpoint, other, port, protocol, named_ports,
                        verdict, allowed_by, id=case_id)


NETWORK_POLICY_CASES = [
    # No policy, and the default-deny rule per direction.
    case("no-policy-allows", "", "ingress", BACKEND, FRONTEND, 8080, "TCP", "allowed"),
    case("deny-ingress/ingress-denied", DENY_INGRESS, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "denied"),
    case("deny-ingress/egress-unaffected", DENY_INGRESS, "egress", FRONTEND, BACKEND, 8080,
         "TCP", "allowed"),
    case("deny-all/ingress-denied", DENY_ALL, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "denied"),
    case("deny-all/egress-denied", DENY_ALL, "egress", FRONTEND, COREDNS, 53, "UDP", "denied"),
    case("deny-all/egress-to-world-denied", DENY_ALL, "egress", FRONTEND, WORLD, 443, "TCP",
         "denied"),
    case("deny-all/other-namespace-unaffected", DENY_ALL, "ingress", PROMETHEUS, FRONTEND, 9090,
         "TCP", "allowed"),
    case("deny-staging/default-unaffected", OTHER_NAMESPACE_DENY, "ingress", BACKEND,
         FOREIGN_FRONTEND, 8080, "TCP", "allowed"),
    # Cilium: the pod's own node may always connect to it; other nodes may not.
    case("deny-all/from-host-allowed", DENY_ALL, "ingress", BACKEND, HOST, 8080, "TCP",
         "allowed"),
    case("deny-all/egress-to-host-denied", DENY_ALL, "egress", BACKEND, HOST, 10250, "TCP",
         "denied"),
    case("deny-all/from-remote-node-denied", DENY_ALL, "ingress", BACKEND, REMOTE_NODE, 8080,
         "TCP", "denied"),
    case("deny-all/from-health-denied", DENY_ALL, "ingress", BACKEND, HEALTH, 4240, "TCP",
         "denied"),
    # Policies add up: deny-all + allow.
    case("additive/frontend-allowed", docs(DENY_INGRESS, ALLOW_FRONTEND), "ingress", BACKEND,
         FRONTEND, 8080, "TCP", "allowed", ("default/allow-frontend ingress[0]",)),
    case("additive/not-frontend-denied", docs(DENY_INGRESS, ALLOW_FRONTEND), "ingress", BACKEND,
         NOT_FRONTEND, 8080, "TCP", "denied"),
    case("additive/frontend-of-other-namespace-denied", docs(DENY_INGRESS, ALLOW_FRONTEND),
         "ingress", BACKEND, FOREIGN_FRONTEND, 8080, "TCP", "denied"),
    case("additive/every-allowing-rule-listed", docs(ALLOW_FRONTEND, SAME_NAMESPACE), "ingress",
         BACKEND, FRONTEND, 8080, "TCP", "allowed",
         ("default/allow-frontend ingress[0]", "default/same-namespace ingress[0]")),
    case("allow-frontend/isolates-only-selected-pods", ALLOW_FRONTEND, "ingress", WEB,
         NOT_FRONTEND, 80, "TCP", "allowed"),
    case("list-kind/both-policies-apply", LIST, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "allowed", ("default/allow-frontend ingress[0]",)),
    case("list-kind/deny-applies", LIST, "ingress", WEB, FRONTEND, 80, "TCP", "denied"),
    # Empty podSelector in `from`: every pod of the policy's namespace, nothing else.
    case("empty-podSelector/same-namespace-allowed", SAME_NAMESPACE, "ingress", BACKEND,
         NOT_FRONTEND, 8080, "TCP", "allowed", ("default/same-namespace ingress[0]",)),
    case("empty-podSelector/other-namespace-denied", SAME_NAMESPACE, "ingress", BACKEND,
         PROMETHEUS, 8080, "TCP", "denied"),
    case("empty-podSelector/world-denied", SAME_NAMESPACE, "ingress", BACKEND, WORLD, 8080,
         "TCP", "denied"),
    # Empty or missing `from`: every source, pods and outside alike.
    case("empty-rule/world-allowed", ALLOW_ALL_SOURCES, "ingress", BACKEND, WORLD, 8080, "TCP",
         "allowed", ("default/all-sources ingress[0]",)),
    case("empty-rule/icmp-allowed", ALLOW_ALL_SOURCES, "ingress", BACKEND, PROMETHEUS, None,
         "ICMPv4", "allowed", ("default/all-sources ingress[0]",)),
    case("no-from/any-source-on-port", ANY_SOURCE_ON_8080, "ingress", BACKEND, WORLD, 8080,
         "TCP", "allowed", ("default/any-source-8080 ingress[0]",)),
    case("no-from/other-port-denied", ANY_SOURCE_ON_8080, "ingress", BACKEND, PROMETHEUS, 9090,
         "TCP", "denied"),
    # namespaceSelector alone, by a namespace label and by the namespace's name label.
    case("namespaceSelector/labelled-namespace-allowed", FROM_TEAM, "ingress", BACKEND, GRAFANA,
         8080, "TCP", "allowed", ("default/from-observability ingress[0]",)),
    case("namespaceSelector/own-namespace-not-selected", FROM_TEAM, "ingress", BACKEND,
         FRONTEND, 8080, "TCP", "denied"),
    case("namespaceSelector/by-name-label", FROM_NAMESPACE_NAME, "ingress", BACKEND, PROMETHEUS,
         8080, "TCP", "allowed", ("default/from-monitoring ingress[0]",)),
    case("namespaceSelector/by-name-label-other", FROM_NAMESPACE_NAME, "ingress", BACKEND,
         FOREIGN_FRONTEND, 8080, "TCP", "denied"),
    case("namespaceSelector-empty/any-namespace", FROM_ANY_NAMESPACE, "ingress", BACKEND,
         FOREIGN_FRONTEND, 8080, "TCP", "allowed", ("default/from-any-namespace ingress[0]",)),
    case("namespaceSelector-empty/not-world", FROM_ANY_NAMESPACE, "ingress", BACKEND, WORLD,
         8080, "TCP", "denied"),
    case("namespaceSelector-empty/not-host-network-nodes", FROM_ANY_NAMESPACE, "ingress",
         BACKEND, REMOTE_NODE, 8080, "TCP", "denied"),
    # namespaceSelector and podSelector in one peer (AND) and as two peers (OR).
    case("ns-and-pod/both-match", PROMETHEUS_ONLY, "ingress", BACKEND, PROMETHEUS, 8080, "TCP",
         "allowed", ("default/prometheus-only ingress[0]",)),
    case("ns-and-pod/pod-does-not-match", PROMETHEUS_ONLY, "ingress", BACKEND, GRAFANA, 8080,
         "TCP", "denied"),
    case("ns-and-pod/namespace-does-not-match", PROMETHEUS_ONLY, "ingress", BACKEND,
         peer("default", "prometheus-1", 40009, "10.244.1.30",
              labels("default", "app=prometheus")), 8080, "TCP", "denied"),
    case("ns-or-pod/namespace-peer", TEAM_OR_FRONTEND, "ingress", BACKEND, GRAFANA, 8080, "TCP",
         "allowed", ("default/team-or-frontend ingress[0]",)),
    case("ns-or-pod/pod-peer", TEAM_OR_FRONTEND, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "allowed", ("default/team-or-frontend ingress[0]",)),
    case("ns-or-pod/neither", TEAM_OR_FRONTEND, "ingress", BACKEND, NOT_FRONTEND, 8080, "TCP",
         "denied"),
    # ipBlock with except: outside addresses only, never pods or nodes by their IP.
    case("ipBlock/inside", FROM_CIDR, "ingress", BACKEND, WORLD, 8080, "TCP", "allowed",
         ("default/from-cidr ingress[0]",)),
    case("ipBlock/except", FROM_CIDR, "ingress", BACKEND, WORLD_EXCEPTED, 8080, "TCP",
         "denied"),
    case("ipBlock/private-world-address", FROM_CIDR, "ingress", BACKEND, WORLD_PRIVATE, 8080,
         "TCP", "allowed", ("default/from-cidr ingress[0]",)),
    case("ipBlock/pod-ip-not-selected", FROM_CIDR, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "denied"),
    case("ipBlock/node-ip-not-selected", FROM_CIDR, "ingress", BACKEND, REMOTE_NODE, 8080,
         "TCP", "denied"),
    case("ipBlock/ipv6-block-ipv4-peer", FROM_CIDR_V6, "ingress", BACKEND, WORLD, 8080, "TCP",
         "denied"),
    case("ipBlock/ipv6-block-ipv6-peer", FROM_CIDR_V6, "ingress", BACKEND, WORLD_V6, 8080, "TCP",
         "allowed", ("default/from-cidr-v6 ingress[0]",)),
    case("ipBlock/egress-0.0.0.0/0-world", EGRESS_ANYWHERE, "egress", FRONTEND, WORLD, 443,
         "TCP", "allowed", ("default/egress-internet egress[0]",)),
    case("ipBlock/egress-0.0.0.0/0-not-pods", EGRESS_ANYWHERE, "egress", FRONTEND, BACKEND, 8080,
         "TCP", "denied"),
    # Egress to DNS under a default deny.
    case("egress-dns/udp-53", EGRESS_DNS, "egress", FRONTEND, COREDNS, 53, "UDP", "allowed",
         ("default/allow-dns egress[0]",)),
    case("egress-dns/tcp-53", EGRESS_DNS, "egress", FRONTEND, COREDNS, 53, "TCP", "allowed",
         ("default/allow-dns egress[0]",)),
    case("egress-dns/other-port", EGRESS_DNS, "egress", FRONTEND, COREDNS, 5353, "UDP",
         "denied"),
    case("egress-dns/other-peer", EGRESS_DNS, "egress", FRONTEND, BACKEND, 53, "UDP", "denied"),
    case("egress-dns/world", EGRESS_DNS, "egress", FRONTEND, WORLD, 53, "UDP", "denied"),
    case("egress-dns/ingress-unaffected", EGRESS_DNS, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "allowed"),
    # Ports and protocols.
    case("protocol/udp-vs-tcp-rule", DNS_TCP_ONLY, "egress", FRONTEND, COREDNS, 53, "UDP",
         "denied"),
    case("protocol/tcp-rule", DNS_TCP_ONLY, "egress", FRONTEND, COREDNS, 53, "TCP", "allowed",
         ("default/dns-tcp-only egress[0]",)),
    case("protocol/default-is-tcp", PORT_8080, "ingress", BACKEND, FRONTEND, 8080, "UDP",
         "denied"),
    case("protocol/icmp-vs-ports-rule", PORT_8080, "ingress", BACKEND, FRONTEND, None, "ICMPv4",
         "denied"),
    case("protocol/icmpv6-vs-ports-rule", PORT_8080, "ingress", BACKEND, FRONTEND, None,
         "ICMPv6", "denied"),
    case("port/match", PORT_8080, "ingress", BACKEND, FRONTEND, 8080, "TCP", "allowed",
         ("default/port-8080 ingress[0]",)),
    case("port/other", PORT_8080, "ingress", BACKEND, FRONTEND, 8081, "TCP", "denied"),
    case("endPort/low-end", PORT_RANGE, "ingress", BACKEND, FRONTEND, 8000, "TCP", "allowed",
         ("default/port-range ingress[0]",)),
    case("endPort/inside", PORT_RANGE, "ingress", BACKEND, FRONTEND, 8080, "TCP", "allowed",
         ("default/port-range ingress[0]",)),
    case("endPort/high-end", PORT_RANGE, "ingress", BACKEND, FRONTEND, 8100, "TCP", "allowed",
         ("default/port-range ingress[0]",)),
    case("endPort/above", PORT_RANGE, "ingress", BACKEND, FRONTEND, 8101, "TCP", "denied"),
    case("endPort/below", PORT_RANGE, "ingress", BACKEND, FRONTEND, 7999, "TCP", "denied"),
    # Named ports: unknown until --named-port says which number they are.
    case("named-port/unresolved", NAMED_PORT, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "unknown"),
    case("named-port/resolved-match", NAMED_PORT, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "allowed", ("default/named-port ingress[0]",), {"http": 8080}),
    case("named-port/resolved-other-port", NAMED_PORT, "ingress", BACKEND, FRONTEND, 9090, "TCP",
         "denied", (), {"http": 8080}),
    case("named-port/peer-not-selected", NAMED_PORT, "ingress", BACKEND, NOT_FRONTEND, 8080,
         "TCP", "denied"),
    case("named-port/other-protocol", NAMED_UDP_PORT, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "denied"),
    case("named-port/other-rule-allows", docs(NAMED_PORT, ALLOW_FRONTEND), "ingress", BACKEND,
         FRONTEND, 8080, "TCP", "allowed", ("default/allow-frontend ingress[0]",)),
    # matchExpressions: In (policy's pods), NotIn, DoesNotExist, Exists (peers).
    case("In/selects-endpoint", EXPRESSIONS, "ingress", BACKEND, NOT_FRONTEND, 8080, "TCP",
         "denied"),
    case("In/does-not-select-others", EXPRESSIONS, "ingress", WEB, NOT_FRONTEND, 8080, "TCP",
         "allowed"),
    case("NotIn/other-value", EXPRESSIONS, "ingress", BACKEND, FRONTEND, 8080, "TCP", "allowed",
         ("default/expressions ingress[0]",)),
    case("NotIn/label-absent", EXPRESSIONS, "ingress", BACKEND, NIGHTLY, 8080, "TCP", "allowed",
         ("default/expressions ingress[0]",)),
    case("DoesNotExist/label-present", EXPRESSIONS, "ingress", BACKEND, SUSPECT, 8080, "TCP",
         "denied"),
    case("Exists/label-present", EXPRESSIONS, "ingress", BACKEND, WEB, 9090, "TCP", "allowed",
         ("default/expressions ingress[1]",)),
    case("Exists/label-absent", EXPRESSIONS, "ingress", BACKEND, FRONTEND, 9090, "TCP",
         "denied"),
    # policyTypes defaults: Ingress always, Egress when there are egress rules.
    case("types-default/egress-rules-isolate-ingress", EGRESS_RULES_ONLY, "ingress", BACKEND,
         FRONTEND, 8080, "TCP", "denied"),
    case("types-default/egress-rules-isolate-egress", EGRESS_RULES_ONLY, "egress", BACKEND,
         WORLD, 443, "TCP", "denied"),
    case("types-default/egress-rules-allow", EGRESS_RULES_ONLY, "egress", BACKEND, COREDNS, 53,
         "UDP", "allowed", ("default/egress-rules-only egress[0]",)),
    case("types-default/ingress-only-egress-free", INGRESS_RULES_ONLY, "egress", BACKEND, WORLD,
         443, "TCP", "allowed"),
    case("types-Egress/ingress-rules-ignored", EGRESS_TYPE_IGNORES_INGRESS, "ingress", BACKEND,
         NOT_FRONTEND, 8080, "TCP", "allowed"),
    case("types-Egress/egress-isolated", EGRESS_TYPE_IGNORES_INGRESS, "egress", BACKEND,
         COREDNS, 53, "UDP", "denied"),
    case("types-Egress/ingress-rules-allow-nothing", docs(DENY_INGRESS,
         EGRESS_TYPE_IGNORES_INGRESS), "ingress", BACKEND, FRONTEND, 8080, "TCP", "denied"),
    case("types-empty-list/defaults-to-ingress", EMPTY_TYPES, "ingress", BACKEND, FRONTEND, 8080,
         "TCP", "denied"),
    # Text input: no labels, so selectors over labels cannot be decided.
    case("labels-unknown/endpoint-selected-by-labels", ALLOW_FRONTEND, "ingress", TEXT_BACKEND,
         FRONTEND, 8080, "TCP", "unknown"),
    case("labels-unknown/peer-selected-by-labels", docs(DENY_INGRESS, ALLOW_FRONTEND), "ingress",
         BACKEND, TEXT_FRONTEND, 8080, "TCP", "unknown"),
    case("labels-unknown/empty-podSelector-selects-anyway", DENY_INGRESS, "ingress",
         TEXT_BACKEND, TEXT_FRONTEND, 8080, "TCP", "denied"),
    case("labels-unknown/empty-podSelector-peer", SAME_NAMESPACE, "ingress", BACKEND,
         TEXT_FRONTEND, 8080, "TCP", "allowed", ("default/same-namespace ingress[0]",)),
    case("labels-unknown/maybe-selected-allow", docs(DENY_INGRESS, ALLOW_FRONTEND), "ingress",
         TEXT_BACKEND, FRONTEND, 8080, "TCP", "unknown"),
    case("labels-unknown/maybe-selected-no-allow", docs(DENY_INGRESS, ALLOW_FRONTEND),
         "ingress", TEXT_BACKEND, NOT_FRONTEND, 8080, "TCP", "denied"),
    case("labels-unknown/namespace-known", OTHER_NAMESPACE_DENY, "ingress", TEXT_BACKEND,
         TEXT_FRONTEND, 8080, "TCP", "allowed"),
    case("labels-unknown/peer-in-other-namespace", ALLOW_FRONTEND, "ingress", BACKEND,
         peer("staging", "frontend-6b5d4c3f2-kkkkk", 50003, None, None), 8080, "TCP", "denied"),
    case("labels-unknown/ipBlock-never-a-pod", FROM_CIDR, "ingress", BACKEND, TEXT_FRONTEND,
         8080, "TCP", "denied"),
    case("labels-unknown/namespace-name-known", FROM_NAMESPACE_NAME, "ingress", BACKEND,
         peer("monitoring", "prometheus-0", 50001, None, None), 8080, "TCP", "allowed",
         ("default/from-monitoring ingress[0]",)),
    case("labels-unknown/namespace-label", FROM_TEAM, "ingress", BACKEND,
         peer("monitoring", "prometheus-0", 50001, None, None), 8080, "TCP", "unknown"),
]


def run(policy_yaml: str, direction: str, endpoint: Peer, other: Peer, port: int | None,
        protocol: str, named_ports: Mapping[str, int] | None = None) -> Any:
    policies = parse(policy_yaml) if policy_yaml else []
    return decide(policies, cast(Direction, direction), endpoint, other, port, protocol,
                  named_ports)


@pytest.mark.parametrize(("policy_yaml", "direction", "endpoint", "other", "port", "protocol",
                          "named_ports", "verdict", "allowed_by"), NETWORK_POLICY_CASES)
def test_network_policy(policy_yaml: str, direction: str, endpoint: Peer, other: Peer,
                        port: int | None, protocol: str, named_ports: Mapping[str, int] | None,
                        verdict: str, allowed_by: tuple[str, ...]) -> None:
    decision = run(policy_yaml, direction, endpoint, other, port, protocol, named_ports)
    assert (decision.verdict, decision.allowed_by) == (verdict, allowed_by), decision.reason
    assert decision.reason


def test_reasons_say_why() -> None:
    assert "no policy selects" in run("", "ingress", BACKEND, FRONTEND, 8080, "TCP").reason
    denied = run(DENY_INGRESS, "ingress", BACKEND, FRONTEND, 8080, "TCP")
    assert "default/deny-ingress" in denied.reason and "no rule allows it" in denied.reason
    assert "host" in run(DENY_ALL, "ingress", BACKEND, HOST, 8080, "TCP").reason
    named = run(NAMED_PORT, "ingress", BACKEND, FRONTEND, 8080, "TCP")
    assert "named port http" in named.reason and "--named-port" in named.reason
    text = run(ALLOW_FRONTEND, "ingress", TEXT_BACKEND, FRONTEND, 8080, "TCP")
    assert "labels of default/backend-6f884b6495-69bbh unknown" in text.reason
    text_peer = run(docs(DENY_INGRESS, ALLOW_FRONTEND), "ingress", BACKEND, TEXT_FRONTEND, 8080,
                    "TCP")
    assert "labels of default/frontend-7d9c6bdc96-8r5hq are unknown" in text_peer.reason


def test_policy_types_as_kubernetes_defaults_them() -> None:
    def enforced(text: str) -> set[str]:
        return set(parse(text)[0].enforces)

    assert enforced(INGRESS_RULES_ONLY) == {"ingress"}
    assert enforced(EGRESS_RULES_ONLY) == {"ingress", "egress"}
    assert enforced(EMPTY_TYPES) == {"ingress"}
    assert enforced(np("empty-egress", "podSelector: {}\negress: []")) == {"ingress"}
    assert enforced(DENY_ALL) == {"ingress", "egress"}
    assert enforced(EGRESS_TYPE_IGNORES_INGRESS) == {"egress"}


# --- CiliumNetworkPolicy -------------------------------------------------------------------------

CNP_FRONTEND = cnp("backend-from-frontend", """
    endpointSelector:
      matchLabels: {app: backend}
    ingress:
    - fromEndpoints:
      - matchLabels: {app: frontend}
      toPorts:
      - ports:
        - {port: "8080", protocol: TCP}
""")
CNP_OTHER_NAMESPACE = cnp("backend-from-monitoring", """
    endpointSelector:
      matchLabels: {app: backend}
    ingress:
    - fromEndpoints:
      - matchLabels:
          k8s:io.kubernetes.pod.namespace: monitoring
          app: prometheus
""")
CNP_ANY_PROTOCOL = cnp("any-protocol", """
    endpointSelector:
      matchLabels: {app: backend}
    ingress:
    - toPorts:
      - ports:
        - port: "8080"
""")
CNP_CIDR_SET = cnp("from-cidr-set", """
    endpointSelector:
      matchLabels: {app: backend}
    ingress:
    - fromCIDRSet:
      - cidr: 203.0.113.0/24
        except: [203.0.113.128/25]
    - fromCIDR: [10.0.0.0/8]
""")
CNP_TO_WORLD = cnp("to-world", """
    endpointSelector:
      matchLabels: {app: frontend}
    egress:
    - toEntities: [world]
      toPorts:
      - ports:
        - {port: "443", protocol: TCP}
""")
CNP_TO_CLUSTER = cnp("to-cluster", """
    endpointSelector:
      matchLabels: {app: frontend}
    egress:
    - toEntities: [cluster]
""")
CNP_TO_HOST = cnp("to-host", """
    endpointSelector:
      matchLabels: {app: frontend}
    egress:
    - toEntities: [host]
""")
CNP_TO_APISERVER = cnp("to-apiserver", """
    endpointSelector:
      matchLabels: {app: frontend}
    egress:
    - toEntities: [kube-apiserver]
""")
CNP_FROM_ALL = cnp("from-all", """
    endpointSelector:
      matchLabels: {app: backend}
    ingress:
    - fromEntities: [all]
""")
CNP_DENY_INGRESS = cnp("default-deny", """
    endpointSelector: {}
    ingress:
    - {}
""")
CNP_EMPTY_INGRESS = cnp("no-ingress-rules", """
    endpointSelector: {}
    ingress: []
""")
CNP_NO_DEFAULT_DENY = cnp("no-default-deny", """
    endpointSelector:
      matchLabels: {app: backend}
    enableDefaultDeny: {ingress: false}
    ingress:
    - fromEndpoints:
      - matchLabels: {app: frontend}
""")
CNP_EXPLICIT_EGRESS_DENY = cnp("explicit-egress-deny", """
    endpointSelector:
      matchLabels: {app: frontend}
    enableDefaultDeny: {egress: true}
    ingress:
    - fromEntities: [cluster]
""")
CNP_DNS = cnp("dns", """
    endpointSelector: {}
    egress:
    - toEndpoints:
      - matchLabels:
          k8s:io.kubernetes.pod.namespace: kube-system
          k8s:k8s-app: kube-dns
      toPorts:
      - ports:
        - {port: "53", protocol: ANY}
        rules:
          dns:
          - matchPattern: "*"
""")
CNP_FQDN = cnp("to-fqdn", """
    endpointSelector:
      matchLabels: {app: frontend}
    egress:
    - toFQDNs:
      - matchName: api.example.com
    - toEndpoints:
      - matchLabels: {app: backend}
""")
CNP_FQDN_WITH_ENDPOINTS = cnp("fqdn-and-endpoints", """
    endpointSelector:
      matchLabels: {app: frontend}
    egress:
    - toEndpoints:
      - matchLabels: {app: backend}
      toFQDNs:
      - matchName: api.example.com
""")
CNP_ICMP = cnp("icmp-only", """
    endpointSelector:
      matchLabels: {app: backend}
    ingress:
    - icmps:
      - fields:
        - {type: 8, family: IPv4}
""")
CNP_ICMP_AND_PORT = cnp("icmp-and-port", """
    endpointSelector:
      matchLabels: {app: backend}
    ingress:
    - fromEndpoints:
      - matchLabels: {app: frontend}
      icmps:
      - fields:
        - {type: 8, family: IPv4}
      toPorts:
      - ports:
        - {port: "8080", protocol: TCP}
""")
CCNP_FRONTEND = cnp("backend-from-any-frontend", """
    endpointSelector:
      matchLabels: {app: backend}
    ingress:
    - fromEndpoints:
      - matchLabels: {app: frontend}
""", kind="CiliumClusterwideNetworkPolicy")
CNP_SPECS = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: split, namespace: default}
    specs:
    - endpointSelector:
        matchLabels: {app: backend}
      ingress:
      - fromEndpoints:
        - matchLabels: {app: frontend}
    - endpointSelector:
        matchLabels: {app: backend}
      ingress:
      - fromEndpoints:
        - matchLabels: {app: web}
""")

CILIUM_CASES = [
    # endpointSelector / fromEndpoints, scoped to the policy's namespace.
    case("cnp-fromEndpoints/selected", CNP_FRONTEND, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "allowed", ("default/backend-from-frontend ingress[0]",)),
    case("cnp-fromEndpoints/not-selected", CNP_FRONTEND, "ingress", BACKEND, NOT_FRONTEND, 8080,
         "TCP", "denied"),
    case("cnp-fromEndpoints/scoped-to-namespace", CNP_FRONTEND, "ingress", BACKEND,
         FOREIGN_FRONTEND, 8080, "TCP", "denied"),
    case("cnp-fromEndpoints/naming-a-namespace", CNP_OTHER_NAMESPACE, "ingress", BACKEND,
         PROMETHEUS, 8080, "TCP", "allowed", ("default/backend-from-monitoring ingress[0]",)),
    case("cnp-fromEndpoints/naming-a-namespace-other-pod", CNP_OTHER_NAMESPACE, "ingress",
         BACKEND, GRAFANA, 8080, "TCP", "denied"),
    case("cnp-endpointSelector/not-selected", CNP_FRONTEND, "ingress", WEB, NOT_FRONTEND, 80,
         "TCP", "allowed"),
    case("cnp-endpointSelector/egress-not-enforced", CNP_FRONTEND, "egress", BACKEND, WORLD, 443,
         "TCP", "allowed"),
    case("ccnp/fromEndpoints-any-namespace", CCNP_FRONTEND, "ingress", BACKEND, FOREIGN_FRONTEND,
         8080, "TCP", "allowed", ("backend-from-any-frontend ingress[0]",)),
    case("ccnp/selects-every-namespace", CCNP_FRONTEND, "ingress",
         peer("staging", "backend-0", 50010, "10.244.3.20", labels("staging", "app=backend")),
         NOT_FRONTEND, 8080, "TCP", "denied"),
    case("cnp-specs/first", CNP_SPECS, "ingress", BACKEND, FRONTEND, 8080, "TCP", "allowed",
         ("default/split[0] ingress[0]",)),
    case("cnp-specs/second", CNP_SPECS, "ingress", BACKEND, WEB, 8080, "TCP", "allowed",
         ("default/split[1] ingress[0]",)),
    case("cnp-specs/neither", CNP_SPECS, "ingress", BACKEND, NOT_FRONTEND, 8080, "TCP",
         "denied"),
    # toPorts.
    case("cnp-toPorts/other-port", CNP_FRONTEND, "ingress", BACKEND, FRONTEND, 9090, "TCP",
         "denied"),
    case("cnp-toPorts/other-protocol", CNP_FRONTEND, "ingress", BACKEND, FRONTEND, 8080, "UDP",
         "denied"),
    case("cnp-toPorts/any-protocol-udp", CNP_ANY_PROTOCOL, "ingress", BACKEND, FRONTEND, 8080,
         "UDP", "allowed", ("default/any-protocol ingress[0]",)),
    case("cnp-toPorts-only/any-peer", CNP_ANY_PROTOCOL, "ingress", BACKEND, WORLD, 8080, "TCP",
         "allowed", ("default/any-protocol ingress[0]",)),
    case("cnp-toPorts-only/icmp-denied", CNP_ANY_PROTOCOL, "ingress", BACKEND, WORLD, None,
         "ICMPv4", "denied"),
    # fromCIDR / fromCIDRSet with except.
    case("cnp-fromCIDRSet/inside", CNP_CIDR_SET, "ingress", BACKEND, WORLD, 8080, "TCP",
         "allowed", ("default/from-cidr-set ingress[0]",)),
    case("cnp-fromCIDRSet/except", CNP_CIDR_SET, "ingress", BACKEND, WORLD_EXCEPTED, 8080, "TCP",
         "denied"),
    case("cnp-fromCIDR/world", CNP_CIDR_SET, "ingress", BACKEND, WORLD_PRIVATE, 8080, "TCP",
         "allowed", ("default/from-cidr-set ingress[1]",)),
    case("cnp-fromCIDR/not-a-pod", CNP_CIDR_SET, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "denied"),
    # Entities.
    case("toEntities-world/world", CNP_TO_WORLD, "egress", FRONTEND, WORLD, 443, "TCP",
         "allowed", ("default/to-world egress[0]",)),
    case("toEntities-world/world-ipv4", CNP_TO_WORLD, "egress", FRONTEND, WORLD_V4, 443, "TCP",
         "allowed", ("default/to-world egress[0]",)),
    case("toEntities-world/other-port", CNP_TO_WORLD, "egress", FRONTEND, WORLD, 80, "TCP",
         "denied"),
    case("toEntities-world/not-pods", CNP_TO_WORLD, "egress", FRONTEND, BACKEND, 443, "TCP",
         "denied"),
    case("toEntities-world/not-host", CNP_TO_WORLD, "egress", FRONTEND, HOST, 443, "TCP",
         "denied"),
    case("toEntities-cluster/pod-other-namespace", CNP_TO_CLUSTER, "egress", FRONTEND,
         PROMETHEUS, 9090, "TCP", "allowed", ("default/to-cluster egress[0]",)),
    case("toEntities-cluster/host", CNP_TO_CLUSTER, "egress", FRONTEND, HOST, 10250, "TCP",
         "allowed", ("default/to-cluster egress[0]",)),
    case("toEntities-cluster/remote-node", CNP_TO_CLUSTER, "egress", FRONTEND, REMOTE_NODE,
         10250, "TCP", "allowed", ("default/to-cluster egress[0]",)),
    case("toEntities-cluster/not-world", CNP_TO_CLUSTER, "egress", FRONTEND, WORLD, 443, "TCP",
         "denied"),
    case("toEntities-host/host", CNP_TO_HOST, "egress", FRONTEND, HOST, 10250, "TCP", "allowed",
         ("default/to-host egress[0]",)),
    case("toEntities-host/remote-node", CNP_TO_HOST, "egress", FRONTEND, REMOTE_NODE, 10250,
         "TCP", "denied"),
    case("toEntities-kube-apiserver/on-a-node", CNP_TO_APISERVER, "egress", FRONTEND, APISERVER,
         6443, "TCP", "allowed", ("default/to-apiserver egress[0]",)),
    case("toEntities-kube-apiserver/plain-node", CNP_TO_APISERVER, "egress", FRONTEND,
         REMOTE_NODE, 6443, "TCP", "denied"),
    case("fromEntities-all/world", CNP_FROM_ALL, "ingress", BACKEND, WORLD, 8080, "TCP",
         "allowed", ("default/from-all ingress[0]",)),
    # Default deny: an empty rule allows nothing, an empty list is no ingress section.
    case("cnp-ingress-empty-rule/denies", CNP_DENY_INGRESS, "ingress", BACKEND, FRONTEND, 8080,
         "TCP", "denied"),
    case("cnp-ingress-empty-rule/egress-free", CNP_DENY_INGRESS, "egress", FRONTEND, BACKEND,
         8080, "TCP", "allowed"),
    case("cnp-ingress-empty-rule/host-allowed", CNP_DENY_INGRESS, "ingress", BACKEND, HOST, 8080,
         "TCP", "allowed"),
    case("cnp-ingress-empty-list/not-enforced", CNP_EMPTY_INGRESS, "ingress", BACKEND, FRONTEND,
         8080, "TCP", "allowed"),
    case("cnp-additive/with-deny-all", docs(CNP_DENY_INGRESS, CNP_FRONTEND), "ingress", BACKEND,
         FRONTEND, 8080, "TCP", "allowed", ("default/backend-from-frontend ingress[0]",)),
    case("cnp-and-np/additive", docs(DENY_INGRESS, CNP_FRONTEND), "ingress", BACKEND, FRONTEND,
         8080, "TCP", "allowed", ("default/backend-from-frontend ingress[0]",)),
    case("cnp-enableDefaultDeny-false/others-allowed", CNP_NO_DEFAULT_DENY, "ingress", BACKEND,
         NOT_FRONTEND, 8080, "TCP", "allowed"),
    case("cnp-enableDefaultDeny-false/with-deny", docs(CNP_NO_DEFAULT_DENY, CNP_DENY_INGRESS),
         "ingress", BACKEND, FRONTEND, 8080, "TCP", "allowed",
         ("default/no-default-deny ingress[0]",)),
    case("cnp-enableDefaultDeny-true/without-rules", CNP_EXPLICIT_EGRESS_DENY, "egress",
         FRONTEND, WORLD, 443, "TCP", "denied"),
    case("cnp-enableDefaultDeny-true/ingress-rules", CNP_EXPLICIT_EGRESS_DENY, "ingress",
         FRONTEND, WORLD, 443, "TCP", "denied"),
    case("cnp-enableDefaultDeny-true/ingress-cluster", CNP_EXPLICIT_EGRESS_DENY, "ingress",
         FRONTEND, BACKEND, 80, "TCP", "allowed", ("default/explicit-egress-deny ingress[0]",)),
    # Egress to DNS (L7 dns rules are not evaluated: the port decides).
    case("cnp-dns/udp", CNP_DNS, "egress", FRONTEND, COREDNS, 53, "UDP", "allowed",
         ("default/dns egress[0]",)),
    case("cnp-dns/tcp", CNP_DNS, "egress", FRONTEND, COREDNS, 53, "TCP", "allowed",
         ("default/dns egress[0]",)),
    case("cnp-dns/other-peer", CNP_DNS, "egress", FRONTEND, BACKEND, 53, "UDP", "denied"),
    # Fields flowlens cannot decide make what they could change unknown, nothing else.
    case("toFQDNs/world-unknown", CNP_FQDN, "egress", FRONTEND, WORLD, 443, "TCP", "unknown"),
    case("toFQDNs/other-rule-allows", CNP_FQDN, "egress", FRONTEND, BACKEND, 8080, "TCP",
         "allowed", ("default/to-fqdn egress[1]",)),
    case("toFQDNs-with-endpoints/endpoint", CNP_FQDN_WITH_ENDPOINTS, "egress", FRONTEND, BACKEND,
         8080, "TCP", "allowed", ("default/fqdn-and-endpoints egress[0]",)),
    case("toFQDNs-with-endpoints/other-unknown", CNP_FQDN_WITH_ENDPOINTS, "egress", FRONTEND,
         WORLD, 443, "TCP", "unknown"),
    case("icmps-only/tcp-denied", CNP_ICMP, "ingress", BACKEND, FRONTEND, 8080, "TCP", "denied"),
    case("icmps-only/icmp-unknown", CNP_ICMP, "ingress", BACKEND, FRONTEND, None, "ICMPv4",
         "unknown"),
    case("icmps-and-port/port", CNP_ICMP_AND_PORT, "ingress", BACKEND, FRONTEND, 8080, "TCP",
         "allowed", ("default/icmp-and-port ingress[0]",)),
    case("icmps-and-port/other-port", CNP_ICMP_AND_PORT, "ingress", BACKEND, FRONTEND, 9090,
         "TCP", "denied"),
    case("icmps-and-port/icmp-unknown", CNP_ICMP_AND_PORT, "ingress", BACKEND, FRONTEND, None,
         "ICMPv4", "unknown"),
    case("icmps-and-port/other-peer-icmp", CNP_ICMP_AND_PORT, "ingress", BACKEND, NOT_FRONTEND,
         None, "ICMPv4", "denied"),
]


@pytest.mark.parametrize(("policy_yaml", "direction", "endpoint", "other", "port", "protocol",
                          "named_ports", "verdict", "allowed_by"), CILIUM_CASES)
def test_cilium_policy(policy_yaml: str, direction: str, endpoint: Peer, other: Peer,
                       port: int | None, protocol: str, named_ports: Mapping[str, int] | None,
                       verdict: str, allowed_by: tuple[str, ...]) -> None:
    decision = run(policy_yaml, direction, endpoint, other, port, protocol, named_ports)
    assert (decision.verdict, decision.allowed_by) == (verdict, allowed_by), decision.reason


def test_undecided_fields_are_named_in_the_reason() -> None:
    reason = run(CNP_FQDN, "egress", FRONTEND, WORLD, 443, "TCP").reason
    assert "default/to-fqdn egress[0] uses toFQDNs" in reason
    assert "icmps" in run(CNP_ICMP, "ingress", BACKEND, FRONTEND, None, "ICMPv4").reason


# --- errors: one line naming the file, the document and the field -------------------------------

ERROR_CASES = [
    pytest.param("kind: NetworkPolicy\nmetadata: {name: x\nspec: {}\n",
                 r"^test\.yaml: line 3: not valid YAML", id="malformed-yaml"),
    pytest.param("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n",
                 r"^test\.yaml, document 1: kind 'Deployment' is not one of NetworkPolicy, "
                 r"CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy", id="unknown-kind"),
    pytest.param(docs(DENY_INGRESS, "kind: NetworkPolicy\nmetadata: {name: broken}\n"
                                    "spec:\n  ingress: []\n"),
                 r"^test\.yaml, document 2 \(NetworkPolicy broken\): spec\.podSelector: missing",
                 id="missing-podSelector"),
    pytest.param("kind: NetworkPolicy\nspec: {podSelector: {}}\n",
                 r"document 1: metadata: want a mapping", id="missing-metadata"),
    pytest.param("kind: NetworkPolicy\nmetadata: {namespace: x}\nspec: {podSelector: {}}\n",
                 r"document 1: metadata\.name: missing", id="missing-name"),
    pytest.param(np("bad-cidr", """
        podSelector: {}
        ingress:
        - from:
          - ipBlock: {cidr: 10.0.0.0/33}
    """), r"\(NetworkPolicy bad-cidr\): spec\.ingress\[0\]\.from\[0\]\.ipBlock\.cidr: "
          r"'10\.0\.0\.0/33' is not a CIDR", id="bad-cidr"),
    pytest.param(np("bad-except", """
        podSelector: {}
        ingress:
        - from:
          - ipBlock:
              cidr: 10.0.0.0/8
              except: [192.168.0.0/16]
    """), r"spec\.ingress\[0\]\.from\[0\]\.ipBlock\.except: 192\.168\.0\.0/16 is not inside "
          r"10\.0\.0\.0/8", id="except-outside-cidr"),
    pytest.param(np("ipblock-and-selector", """
        podSelector: {}
        ingress:
        - from:
          - ipBlock: {cidr: 10.0.0.0/8}
            podSelector: {}
    """), r"from\[0\]: ipBlock cannot be combined", id="ipBlock-with-selector"),
    pytest.param(np("bad-port", """
        podSelector: {}
        ingress:
        - ports:
          - port: 70000
    """), r"spec\.ingress\[0\]\.ports\[0\]\.port: 70000 is not a port number",
        id="port-out-of-range"),
    pytest.param(np("port-zero", """
        podSelector: {}
        ingress:
        - ports:
          - port: 0
    """), r"ports\[0\]\.port: 0 is not a port number", id="port-zero"),
    pytest.param(np("port-name", """
        podSelector: {}
        ingress:
        - ports:
          - port: 80/tcp
    """), r"ports\[0\]\.port: '80/tcp' is not a port number or a port name", id="bad-port-name"),
    pytest.param(np("end-below", """
        podSelector: {}
        ingress:
        - ports:
          - {port: 9000, endPort: 8000}
    """), r"ports\[0\]\.endPort: 8000 is below port 9000", id="endPort-below-port"),
    pytest.param(np("end-named", """
        podSelector: {}
        ingress:
        - ports:
          - {port: http, endPort: 8000}
    """), r"ports\[0\]\.endPort: only with a numeric port", id="endPort-with-named-port"),
    pytest.param(np("end-alone", """
        podSelector: {}
        ingress:
        - ports:
          - {protocol: TCP, endPort: 8000}
    """), r"ports\[0\]\.endPort: only with a numeric port", id="endPort-without-port"),
    pytest.param(np("bad-protocol", """
        podSelector: {}
        ingress:
        - ports:
          - {port: 80, protocol: ICMP}
    """), r"ports\[0\]\.protocol: 'ICMP' is not TCP, UDP or SCTP", id="bad-protocol"),
    pytest.param(np("typo", """
        podSelector: {}
        ingres:
        - {}
    """), r"\(NetworkPolicy typo\): spec\.ingres: unknown or unsupported field",
        id="unknown-field"),
    pytest.param(np("typo-in-rule", """
        podSelector: {}
        ingress:
        - form:
          - podSelector: {}
    """), r"spec\.ingress\[0\]\.form: unknown or unsupported field", id="unknown-rule-field"),
    pytest.param(np("bad-types", """
        podSelector: {}
        policyTypes: [ingress]
    """), r"spec\.policyTypes: want a list of Ingress, Egress", id="bad-policyTypes"),
    pytest.param(np("bad-operator", """
        podSelector:
          matchExpressions:
          - {key: app, operator: Equals, values: [x]}
    """), r"spec\.podSelector\.matchExpressions\[0\]: want key and operator", id="bad-operator"),
    pytest.param(np("in-without-values", """
        podSelector:
          matchExpressions:
          - {key: app, operator: In}
    """), r"matchExpressions\[0\]\.values: In needs values", id="In-without-values"),
    pytest.param(np("empty-peer", """
        podSelector: {}
        ingress:
        - from:
          - {}
    """), r"from\[0\]: want podSelector, namespaceSelector or ipBlock", id="empty-peer"),
    pytest.param(cnp("deny", """
        endpointSelector: {}
        ingressDeny:
        - fromEntities: [world]
    """), r"\(CiliumNetworkPolicy deny\): spec\.ingressDeny: deny rules are not evaluated",
        id="cnp-deny-refused"),
    pytest.param(cnp("requires", """
        endpointSelector: {}
        ingress:
        - fromRequires: [{matchLabels: {env: prod}}]
    """), r"spec\.ingress\[0\]\.fromRequires: it narrows every rule of the selected pods",
        id="cnp-requires-refused"),
    pytest.param(cnp("entity", """
        endpointSelector: {}
        egress:
        - toEntities: [internet]
    """), r"spec\.egress\[0\]\.toEntities: unknown entity 'internet'", id="cnp-unknown-entity"),
    pytest.param(cnp("node-policy", """
        nodeSelector: {}
        ingress:
        - fromEntities: [world]
    """), r"spec\.endpointSelector: missing", id="cnp-node-selector"),
    pytest.param(cnp("cnp-typo", """
        endpointSelector: {}
        ingress:
        - fromEndpoint:
          - {}
    """), r"spec\.ingress\[0\]\.fromEndpoint: unknown or unsupported field",
        id="cnp-unknown-field"),
    pytest.param(cnp("cnp-port", """
        endpointSelector: {}
        ingress:
        - toPorts:
          - ports:
            - {port: "99999"}
    """), r"spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port: '99999' is not a port number",
        id="cnp-bad-port"),
    pytest.param("# nothing but a comment\n", r"^test\.yaml: no policy in it", id="empty-file"),
    pytest.param("- just\n- a list\n", r"document 1: want a mapping", id="not-a-mapping"),
    pytest.param("kind: List\nitems: {}\n", r"document 1: items: want a list", id="bad-list"),
]


@pytest.mark.parametrize(("text", "message"), ERROR_CASES)
def test_bad_policies_are_one_line_errors(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "test.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=message.replace(r"test\.yaml", re.escape(str(path)))
                       ) as raised:
        load_policies(path)
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith(str(path))


def test_a_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nope\.yaml: cannot read"):
        load_policies(tmp_path / "nope.yaml")


def test_policies_from_several_files_and_documents(tmp_path: Path) -> None:
    (tmp_path / "deny.yaml").write_text(DENY_INGRESS, encoding="utf-8")
    (tmp_path / "allow.yaml").write_text(docs(ALLOW_FRONTEND, CNP_SPECS), encoding="utf-8")
    loaded = load_policies([tmp_path / "deny.yaml", tmp_path / "allow.yaml"])
    assert [p.title for p in loaded] == ["default/deny-ingress", "default/allow-frontend",
                                         "default/split[0]", "default/split[1]"]
    assert loaded.titles() == ["default/deny-ingress (NetworkPolicy)",
                               "default/allow-frontend (NetworkPolicy)",
                               "default/split (CiliumNetworkPolicy)"]
    assert loaded.policies[2].origin.endswith("allow.yaml, document 2 (CiliumNetworkPolicy split)")
    assert parse(np("no-namespace", "podSelector: {}").replace("  namespace: default\n", ""))[
        0].namespace == "default"


# --- check: connections in a small frame ---------------------------------------------------------

def side(prefix: str, p: Peer) -> dict[str, Any]:
    """The frame columns of one end of a flow, back from the Peer built above."""
    label_text = None if p.labels is None else ",".join(sorted(
        f"{s}:{k}={v}" if v or s != "reserved" else f"{s}:{k}" for s, k, v in p.labels))
    return {f"{prefix}_namespace": p.namespace,
            f"{prefix}_pod": p.name.split("/")[-1] if p.is_pod else None,
            f"{prefix}_identity": IDENTITIES[p.name], f"{prefix}_ip": p.ip,
            f"{prefix}_labels": label_text}


IDENTITIES = {FRONTEND.name: 17629, NOT_FRONTEND.name: 36044, BACKEND.name: 48312,
              COREDNS.name: 102, WEB.name: 40001, PROMETHEUS.name: 50001, WORLD.name: 2,
              HOST.name: 1}


def flow(src: Peer, dst: Peer, port: int | None, *, t: float = 0, protocol: str = "TCP",
         verdict: str = "FORWARDED", reply: bool | None = False, direction: str | None = "INGRESS",
         event_type: int = 4, flags: str | None = None, drop_reason: str | None = None,
         ) -> dict[str, Any]:
    """One flow row between two of the peers above."""
    return {**side("src", src), **side("dst", dst), "time": t, "dst_port": port,
            "protocol": protocol, "verdict": verdict, "is_reply": reply,
            "traffic_direction": direction, "event_type": event_type,
            "tcp_flags": flags if protocol == "TCP" else None, "drop_reason": drop_reason}


def rows(result: Any) -> list[tuple[Any, ...]]:
    cols = ["source", "destination", "port", "protocol", "direction", "flows", "observed",
            "predicted", "change"]
    return [tuple(None if pd.isna(v) else v for v in r)
            for r in result.connections[cols].itertuples(index=False, name=None)]


def policy_set(*texts: str) -> PolicySet:
    return PolicySet(tuple(p for t in texts for p in parse(t)))


F, B = FRONTEND.name, BACKEND.name


def test_replies_are_not_connections() -> None:
    df = frame(
        flow(FRONTEND, BACKEND, 8080, t=0, flags="SYN"),
        flow(BACKEND, FRONTEND, 51518, t=0.001, reply=True, flags="SYN,ACK"),
        flow(FRONTEND, BACKEND, 8080, t=0.002, flags="ACK"),
        flow(BACKEND, FRONTEND, 51518, t=0.003, reply=True, flags="ACK"),
    )
    result = check(df, policy_set(DENY_INGRESS))
    assert rows(result) == [(F, B, 8080, "TCP", "ingress", 2, "allowed", "denied",
                             "would_break")]


def test_unknown_direction_counts_only_what_must_be_a_request() -> None:
    df = frame(
        flow(FRONTEND, BACKEND, 8080, t=0, reply=None, flags="SYN"),  # bare SYN: counts
        flow(FRONTEND, BACKEND, 8080, t=1, reply=None, flags="ACK"),  # could be either: not
        flow(BACKEND, FRONTEND, 51518, t=2, reply=None, flags="SYN,ACK"),  # a reply: not
        flow(NOT_FRONTEND, BACKEND, 8080, t=3, reply=None, event_type=5),  # policy verdict
        flow(WEB, BACKEND, 8080, t=4, reply=None, verdict="DROPPED",
             drop_reason="POLICY_DENIED", event_type=1, flags="ACK"),  # policy drop
        flow(PROMETHEUS, BACKEND, 8080, t=5, reply=None, verdict="DROPPED",
             drop_reason="CT_MAP_INSERTION_FAILED", event_type=1, flags="ACK"),  # other drop
    )
    result = check(df, policy_set(DENY_INGRESS, ALLOW_FRONTEND))
    assert sorted(rows(result)) == sorted([
        (F, B, 8080, "TCP", "ingress", 1, "allowed", "allowed", "unchanged"),
        (NOT_FRONTEND.name, B, 8080, "TCP", "ingress", 1, "allowed", "denied", "would_break"),
        (WEB.name, B, 8080, "TCP", "ingress", 1, "denied", "denied", "unchanged"),
    ])


def test_observed_is_the_newest_policy_outcome() -> None:
    df = frame(  # out of time order on purpose
        flow(FRONTEND, BACKEND, 8080, t=20, verdict="DROPPED",
             drop_reason="CT_MAP_INSERTION_FAILED", event_type=1, flags="SYN"),
        flow(FRONTEND, BACKEND, 8080, t=10, verdict="DROPPED", drop_reason="POLICY_DENIED",
             event_type=1, flags="SYN"),
        flow(FRONTEND, BACKEND, 8080, t=0, flags="SYN"),
        flow(NOT_FRONTEND, BACKEND, 8080, t=0, verdict="DROPPED", drop_reason="POLICY_DENIED",
             event_type=1, flags="SYN"),
        flow(NOT_FRONTEND, BACKEND, 8080, t=30, verdict="AUDIT", event_type=5),
    )
    result = check(df, policy_set(DENY_INGRESS, ALLOW_FRONTEND))
    assert sorted(rows(result)) == sorted([
        (F, B, 8080, "TCP", "ingress", 3, "denied", "allowed", "newly_allowed"),
        (NOT_FRONTEND.name, B, 8080, "TCP", "ingress", 2, "allowed", "denied", "would_break"),
    ])


def test_each_end_is_judged_and_outside_ends_are_not() -> None:
    df = frame(
        flow(FRONTEND, BACKEND, 8080, direction="EGRESS", flags="SYN"),
        flow(FRONTEND, BACKEND, 8080, direction="INGRESS", flags="SYN"),
        flow(FRONTEND, COREDNS, 53, protocol="UDP", direction=None),  # both ends
        flow(FRONTEND, WORLD, 443, direction="EGRESS", flags="SYN"),
        flow(HOST, BACKEND, 8080, direction="INGRESS", flags="SYN"),
    )
    result = check(df, policy_set(DENY_ALL))
    assert sorted(rows(result)) == sorted([
        (F, B, 8080, "TCP", "egress", 1, "allowed", "denied", "would_break"),
        (F, B, 8080, "TCP", "ingress", 1, "allowed", "denied", "would_break"),
        (F, COREDNS.name, 53, "UDP", "egress", 1, "allowed", "denied", "would_break"),
        (F, COREDNS.name, 53, "UDP", "ingress", 1, "allowed", "allowed", "unchanged"),
        (F, WORLD.name, 443, "TCP", "egress", 1, "allowed", "denied", "would_break"),
        ("host", B, 8080, "TCP", "ingress", 1, "allowed", "allowed", "unchanged"),
    ])


def test_summary_counts_every_change() -> None:
    df = frame(
        flow(FRONTEND, BACKEND, 8080, t=0, flags="SYN"),  # unchanged (allowed)
        flow(FRONTEND, BACKEND, 8080, t=1, flags="SYN"),
        flow(NOT_FRONTEND, BACKEND, 8080, t=2, flags="SYN"),  # would break
        flow(WEB, BACKEND, 8080, t=3, verdict="DROPPED", drop_reason="POLICY_DENIED",
             event_type=1, flags="SYN"),  # newly allowed by the named port, resolved below
        flow(PROMETHEUS, BACKEND, 9090, t=4, flags="SYN"),  # unknown: named port unresolved
        flow(TEXT_BACKEND, FRONTEND, 80, t=5, direction="EGRESS", flags="SYN"),  # no policy
    )
    named = np("metrics", """
        podSelector:
          matchLabels: {app: backend}
        ingress:
        - from:
          - namespaceSelector: {}
            podSelector:
              matchLabels: {app: prometheus}
          ports:
          - port: metrics
    """)
    web = np("web", """
        podSelector:
          matchLabels: {app: backend}
        ingress:
        - from:
          - podSelector:
              matchLabels: {app: web}
    """)
    result = check(df, policy_set(DENY_INGRESS, ALLOW_FRONTEND, named, web))
    assert result.summary == {"would_break": 1, "newly_allowed": 1, "unknown": 1,
                              "unchanged": 2}
    assert result.connections["change"].tolist() == ["would_break", "newly_allowed", "unknown",
                                                     "unchanged", "unchanged"]
    assert result.connections["flows"].tolist()[3] == 2  # most flows first within a change
    assert rows(result)[2][:2] == (PROMETHEUS.name, B)
    assert "named port metrics" in result.connections["reason"][2]
    assert list(result.changes().itertuples(index=False, name=None)) == [
        ("would_break", 1, 1), ("newly_allowed", 1, 1), ("unknown", 1, 1), ("unchanged", 2, 3)]
    as_json = result.to_dict()
    assert as_json["summary"] == result.summary
    assert as_json["connections"][1]["allowed_by"] == ["default/web ingress[0]"]
    resolved = check(df, policy_set(DENY_INGRESS, ALLOW_FRONTEND, named, web), {"metrics": 9090})
    assert resolved.summary == {"would_break": 1, "newly_allowed": 1, "unknown": 0,
                                "unchanged": 3}


def test_check_notes_a_policy_that_selects_no_pod() -> None:
    typo = np("typo", """
        podSelector:
          matchLabels: {app: backnd}
    """)
    df = frame(flow(FRONTEND, BACKEND, 8080, flags="SYN"))
    result = check(df, policy_set(typo, ALLOW_FRONTEND))
    assert result.notes == ("default/typo (NetworkPolicy) selects no pod in these flows "
                            "(selector app=backnd in namespace default)",)
    assert result.summary["unchanged"] == 1
    # A pod whose labels the input lacks may be selected: no note then.
    text = frame(flow(FRONTEND, TEXT_BACKEND, 8080, flags="SYN"))
    assert check(text, policy_set(typo)).notes == ()


def test_check_of_an_empty_frame() -> None:
    result = check(frame(), policy_set(DENY_ALL))
    assert len(result.connections) == 0
    assert result.summary == {"would_break": 0, "newly_allowed": 0, "unknown": 0, "unchanged": 0}
    assert result.notes == ("default/deny-all (NetworkPolicy) selects no pod in these flows "
                            "(selector {} in namespace default)",)
