"""`flowlens policy suggest`: least-privilege NetworkPolicies from the traffic that was allowed.

One policy per workload (pods with the same workload labels in one namespace) and direction:
it selects the workload by those labels and allows, per destination port, the peers seen using
it: pods by their workload labels (never by name, so new replicas keep working), pods of other
namespaces with a namespace selector, outside addresses as /32 (/128) ipBlocks. Ports that share
the same peers share a rule. Connections from the pod's own node need no rule (always allowed);
what NetworkPolicy cannot say (ICMP, other nodes, health checks) is listed in `notes`, never
widened into an allow-all. `check` of the suggestion over the same flows allows exactly the
observed traffic.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import yaml

from flowlens.errors import UsageError
from flowlens.policy.check import connection_requests, seen_ends
from flowlens.policy.model import (
    NAMESPACE_LABEL,
    Direction,
    Requirement,
    Selector,
)
from flowlens.policy.peers import Peer

# Labels that tell pods apart rather than name their workload, or that Cilium adds itself.
_NOT_WORKLOAD_PREFIXES = ("io.cilium.", "io.kubernetes.")
_NOT_WORKLOAD = frozenset({
    "pod-template-hash", "controller-revision-hash", "pod-template-generation",
    "statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/controller-uid", "controller-uid",
})
_NAME_KEYS = ("app.kubernetes.io/name", "app", "k8s-app", "name")
Workload = tuple[str, tuple[tuple[str, str], ...]]  # namespace, workload labels


@dataclass(frozen=True)
class Suggestion:
    """Suggested NetworkPolicy manifests (as mappings) and what they could not express."""

    policies: tuple[dict[str, Any], ...]
    notes: tuple[str, ...] = ()

    def yaml(self) -> str:
        """The manifests as one multi-document YAML text, ready for kubectl apply -f."""
        header = "".join(f"# note: {n}\n" for n in self.notes)
        body = "---\n".join(yaml.safe_dump(p, sort_keys=False, default_flow_style=False)
                            for p in self.policies)
        return header + (body or "# no allowed traffic to write a policy for\n")


def parse_selector(text: str | None) -> Selector:
    """`app=backend,tier=web` (equality only, as in kubectl -l) as a selector."""
    if not text:
        return Selector()
    requirements = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"invalid value {text!r} for --selector: want key=value[,key=value]")
        requirements.append(Requirement(key.strip(), "In", frozenset({value.strip()})))
    return Selector(tuple(requirements))


def suggest(df: pd.DataFrame, *, namespace: str | None = None,
            selector: str | Selector | None = None,
            directions: tuple[Direction, ...] = ("ingress",)) -> Suggestion:
    """Policies that allow what `df` saw allowed, for the workloads in `namespace` whose
    labels `selector` matches (all when None), in each of `directions`."""
    chosen = parse_selector(selector) if not isinstance(selector, Selector) else selector
    requests = connection_requests(df)
    wanted: dict[tuple[Workload, Direction], dict[tuple[str, int], set[str]]] = defaultdict(
        lambda: defaultdict(set))
    terms: dict[str, dict[str, Any]] = {}
    notes: dict[str, None] = {}
    for seen in seen_ends(requests[requests["outcome"] == "allowed"]):
        src, dst, port, protocol = seen.src, seen.dst, seen.port, seen.protocol
        for direction in [d for d in directions if d in seen.directions]:
            pod, other = (dst, src) if direction == "ingress" else (src, dst)
            if not pod.is_pod or (namespace and pod.namespace != namespace):
                continue
            if pod.labels is None:
                notes[f"{pod.name}: labels unknown (text input); read jsonpb or a relay"] = None
                continue
            if not chosen.matches(pod.labels):
                continue
            if direction == "ingress" and other.entity == "host":
                continue  # a pod always accepts its own node
            term, why = _peer_term(other, pod)
            if term is None or port is None or protocol not in ("TCP", "UDP", "SCTP"):
                what = f"{protocol}" + (f" {port}" if port is not None else "")
                notes[f"{_arrow(src, dst)} {what}: "
                      f"{why or 'NetworkPolicy has no rule for this protocol'}; not allowed"] = None
                continue
            key = repr(term)
            terms[key] = term
            wanted[(_workload(pod), direction)][(str(protocol), int(port))].add(key)
    policies = [_policy(workload, direction, ports, terms)
                for (workload, direction), ports in sorted(wanted.items())]
    return Suggestion(_unique_names(policies), tuple(notes))


def _workload(pod: Peer) -> Workload:
    assert pod.labels is not None and pod.namespace is not None
    labels = sorted((k, v) for s, k, v in pod.labels
                    if s == "k8s" and k not in _NOT_WORKLOAD
                    and not k.startswith(_NOT_WORKLOAD_PREFIXES))
    return pod.namespace, tuple(labels)


def _peer_term(other: Peer, pod: Peer) -> tuple[dict[str, Any] | None, str]:
    """The `from`/`to` entry that selects `other` as seen by `pod`, or why there is none."""
    if other.is_pod:
        if other.labels is None:
            return None, f"labels of {other.name} unknown"
        namespace, labels = _workload(other)
        term: dict[str, Any] = {}
        if namespace != pod.namespace:
            term["namespaceSelector"] = {"matchLabels": {NAMESPACE_LABEL: namespace}}
        term["podSelector"] = {"matchLabels": dict(labels)}
        return term, ""
    address = other.address()
    if other.in_world and address is not None:
        return {"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}, ""
    return None, f"NetworkPolicy cannot select {other.name}"


def _policy(workload: Workload, direction: Direction,
            ports: Mapping[tuple[str, int], set[str]],
            terms: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    namespace, labels = workload
    by_peers: dict[frozenset[str], list[tuple[str, int]]] = defaultdict(list)
    for port, peers in sorted(ports.items()):
        by_peers[frozenset(peers)].append(port)
    peers_key = "from" if direction == "ingress" else "to"
    rules = [{peers_key: [terms[k] for k in sorted(peers)],
              "ports": [{"protocol": proto, "port": number} for proto, number in port_list]}
             for peers, port_list in sorted(by_peers.items(), key=lambda item: item[1])]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{_name(labels)}-allow-{direction}", "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": dict(labels)},
                 "policyTypes": [direction.capitalize()],
                 direction: rules},
    }


def _name(labels: tuple[tuple[str, str], ...], every: bool = False) -> str:
    found = dict(labels)
    value = next((found[k] for k in _NAME_KEYS if k in found and not every),
                 "-".join(v for _, v in labels) or "pods")
    return re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:40] or "pods"


def _unique_names(policies: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Workloads sharing an `app` label (v1 and v2 of one app) would share a policy name, and
    the second `kubectl apply` would replace the first: those are named by every label."""
    def key(p: dict[str, Any]) -> tuple[str, str]:
        return p["metadata"]["namespace"], p["metadata"]["name"]

    counts: dict[tuple[str, str], int] = defaultdict(int)
    for p in policies:
        counts[key(p)] += 1
    for p in policies:
        if counts[key(p)] > 1:
            labels = tuple(p["spec"]["podSelector"]["matchLabels"].items())
            direction = p["spec"]["policyTypes"][0].lower()
            p["metadata"]["name"] = f"{_name(labels, every=True)}-allow-{direction}"
    return tuple(policies)


def _arrow(src: Peer, dst: Peer) -> str:
    return f"{src.name} -> {dst.name}"
