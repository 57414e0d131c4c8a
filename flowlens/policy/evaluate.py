"""The verdict a set of policies gives one connection at one end.

Kubernetes' rules: a pod selected by any policy that enforces a direction is default-deny in
that direction, and then allowed exactly what some rule of those policies allows (policies add
up, none subtracts). Replies of an allowed connection are allowed; callers pass requests only.
Cilium's own rule on top: a pod always accepts connections from its node (`host`), whatever
the policies say.

Every rule match is True, False or None (cannot tell: a named port nobody resolved, a peer
whose labels the input lacks, a Cilium field flowlens does not evaluate); an answer that rests
on a None is `unknown`, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from flowlens.policy.model import (
    ENTITIES,
    CidrPeer,
    Direction,
    EntityPeer,
    PeerRule,
    PodPeer,
    Policy,
    PortRule,
    Rule,
    Selector,
)
from flowlens.policy.peers import Peer

Verdict = Literal["allowed", "denied", "unknown"]
PORT_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    allowed_by: tuple[str, ...]  # "namespace/name ingress[0]" of every rule that allows it
    reason: str


def selects(policy: Policy, endpoint: Peer) -> bool | None:
    """Whether `policy` applies to `endpoint` (None: its labels are unknown)."""
    if not endpoint.is_pod:
        return False
    if policy.namespace is not None and endpoint.namespace != policy.namespace:
        return False
    if endpoint.labels is None:
        return None
    return policy.selector.matches(endpoint.labels)


def decide(policies: Iterable[Policy], direction: Direction, endpoint: Peer, peer: Peer,
           port: int | None, protocol: str | None,
           named_ports: Mapping[str, int] | None = None) -> Decision:
    """The verdict for a connection between `endpoint` (the pod whose `direction` is checked)
    and `peer` on `port`/`protocol` (the destination port)."""
    if direction == "ingress" and peer.entity == "host":
        return Decision("allowed", (), "from the pod's own node (host): always allowed")
    applying, unsure = [], []
    for policy in policies:
        if direction not in policy.enforces:
            continue
        chosen = selects(policy, endpoint)
        if chosen:
            applying.append(policy)
        elif chosen is None:
            unsure.append(policy)
    if unsure and not applying:
        return Decision("unknown", (), f"labels of {endpoint.name} unknown: cannot tell "
                        f"whether {_names(unsure)} select it")
    if not applying:
        return Decision("allowed", (), f"no policy selects {endpoint.name} for {direction}")
    allowed_by, doubts = [], []
    for policy in applying:
        for rule in policy.rules_for(direction):
            hit = rule_matches(rule, policy, peer, port, protocol, named_ports or {})
            if hit:
                allowed_by.append(f"{policy.title} {direction}[{rule.index}]")
            elif hit is None:
                doubts.append(_doubt(rule, policy, peer, named_ports or {}))
    if allowed_by:
        return Decision("allowed", tuple(allowed_by), "allowed by " + ", ".join(allowed_by))
    if doubts:
        return Decision("unknown", (), "; ".join(dict.fromkeys(doubts)))
    return Decision("denied", (), f"{_names(applying)} isolate{'s' * (len(applying) == 1)} "
                    f"{endpoint.name} for {direction}; no rule allows it")


def rule_matches(rule: Rule, policy: Policy, peer: Peer, port: int | None,
                 protocol: str | None, named_ports: Mapping[str, int]) -> bool | None:
    peers = (True if rule.peers is None
             else _any(peer_matches(p, peer) for p in rule.peers))
    if peers is False:
        return None if rule.undecided else False
    ports = (True if rule.ports is None
             else _any(port_matches(p, port, protocol, named_ports) for p in rule.ports))
    if peers and ports:
        return True
    if ports is False:
        return False
    return None


def peer_matches(rule: PeerRule, peer: Peer) -> bool | None:
    if isinstance(rule, CidrPeer):
        # Cilium's CIDR rules (and ipBlock) select peers outside the cluster, never a pod,
        # the host or another node by its IP.
        address = peer.address()
        if not peer.in_world or address is None or address.version != rule.network.version:
            return False
        return address in rule.network and not any(address in e for e in rule.excepts)
    if isinstance(rule, EntityPeer):
        if "all" in rule.entities:
            return True
        if "cluster" in rule.entities and not peer.in_world:
            return True
        return peer.entity is not None and any(peer.entity in ENTITIES[e]
                                               for e in rule.entities if e in ENTITIES)
    return _pod_matches(rule, peer)


def _pod_matches(rule: PodPeer, peer: Peer) -> bool | None:
    if not peer.is_pod:
        return False
    if rule.namespaces is None and rule.namespace is not None \
            and peer.namespace != rule.namespace:
        return False
    if peer.labels is None:
        return None
    if rule.namespaces is not None:
        labels = peer.namespace_labels()
        if labels is None or not rule.namespaces.matches(labels):
            return False
    return _selected(rule.pods, peer)


def _selected(selector: Selector | None, peer: Peer) -> bool:
    return selector is None or (peer.labels is not None and selector.matches(peer.labels))


def port_matches(rule: PortRule, port: int | None, protocol: str | None,
                 named_ports: Mapping[str, int]) -> bool | None:
    if protocol not in PORT_PROTOCOLS or (rule.protocol != "ANY" and rule.protocol != protocol):
        return False  # a port rule never matches ICMP (Kubernetes has no ICMP ports)
    if rule.name is not None:
        if rule.name not in named_ports:
            return None
        return port == named_ports[rule.name]
    if rule.port is None:
        return True
    if port is None:
        return False
    return rule.port <= port <= (rule.end_port or rule.port)


def _doubt(rule: Rule, policy: Policy, peer: Peer, named_ports: Mapping[str, int]) -> str:
    where = f"{policy.title} {rule.direction}[{rule.index}]"
    names = [p.name for p in rule.ports or () if p.name and p.name not in named_ports]
    if names:
        return f"{where} uses named port {', '.join(names)} (resolve with --named-port)"
    if rule.undecided:
        return f"{where} uses {', '.join(rule.undecided)}, which flowlens does not evaluate"
    return f"{where} selects by labels, and the labels of {peer.name} are unknown"


def _any(values: Iterable[bool | None]) -> bool | None:
    """True if any is True; else None if any is None; else False."""
    result: bool | None = False
    for value in values:
        if value:
            return True
        if value is None:
            result = None
    return result


def _names(policies: list[Policy]) -> str:
    return ", ".join(dict.fromkeys(p.title for p in policies))
