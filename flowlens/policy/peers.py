"""The two ends of a connection as policies see them: pods with their labels and their
namespace's labels, or reserved identities (world, host, remote-node, ...) with their IP.

Everything comes from the flow: a pod's labels are the Cilium identity labels Hubble sends
(`k8s:app=backend`), and its namespace's labels ride along as
`k8s:io.cilium.k8s.namespace.labels.<key>=<value>`. Text exports carry no labels: their pods
have `labels=None`, and selectors over them cannot be decided.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from flowlens import _hubble as H
from flowlens.policy.model import NAMESPACE_LABEL, Labels

NAMESPACE_LABEL_PREFIX = "io.cilium.k8s.namespace.labels."
WORLD = frozenset({"world", "world-ipv4", "world-ipv6"})


@dataclass(frozen=True)
class Peer:
    name: str  # namespace/pod, a reserved identity's name, or the IP of a world peer
    namespace: str | None
    labels: Labels | None  # None: not known (text input)
    entity: str | None  # reserved identity name; None for pods and unknown peers
    ip: str | None

    @property
    def is_pod(self) -> bool:
        """A Kubernetes pod: the only kind of peer a policy can select."""
        return self.entity is None and self.namespace is not None

    @property
    def in_world(self) -> bool:
        return self.entity in WORLD

    def namespace_labels(self) -> Labels | None:
        """The labels of the pod's namespace (its name label always among them)."""
        if self.labels is None or self.namespace is None:
            return None
        found = {("k8s", k[len(NAMESPACE_LABEL_PREFIX):], v) for s, k, v in self.labels
                 if s == "k8s" and k.startswith(NAMESPACE_LABEL_PREFIX)}
        found.add(("k8s", NAMESPACE_LABEL, self.namespace))
        return frozenset(found)

    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.ip) if self.ip else None
        except ValueError:
            return None


def parse_labels(text: Any) -> Labels | None:
    """The frame's `src_labels`/`dst_labels` text (`k8s:app=x,reserved:world`) as labels."""
    if not isinstance(text, str) or not text:
        return None
    out = set()
    for label in text.split(","):
        source, _, rest = label.partition(":")
        key, _, value = rest.partition("=")
        out.add((source, key, value))
    return frozenset(out)


def peer(namespace: Any, pod: Any, identity: Any, ip: Any, labels: Any) -> Peer:
    """One end of a flow, from the frame's columns of that side."""
    parsed = parse_labels(labels)
    entity = _entity(identity, parsed)
    ip_text = ip if isinstance(ip, str) and ip else None
    if entity is None and isinstance(pod, str) and pod:
        ns = namespace if isinstance(namespace, str) and namespace else None
        name = f"{ns}/{pod}" if ns else pod
        return Peer(name, ns, parsed, None, ip_text)
    if entity in WORLD or entity is None:
        return Peer(ip_text or entity or "unknown", None, parsed, entity, ip_text)
    return Peer(entity, None, parsed, entity, ip_text)


def _entity(identity: Any, labels: Labels | None) -> str | None:
    if labels:
        reserved = sorted(k for s, k, _ in labels if s == "reserved")
        if reserved:
            return reserved[0]
    try:
        number = int(identity)
    except (TypeError, ValueError):
        return None
    return H.RESERVED_IDENTITIES.get(number) if number else None
