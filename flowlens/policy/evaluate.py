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
    NAMESPACE_LABEL,
    UNDECIDED_PEERS,
    CidrPeer,
    Direction,
    EntityPeer,
    Labels,
    PeerRule,
    PodPeer,
    Policy,
    PortRule,
    Rule,
    Selector,
    split_key,
)
from flowlens.policy.peers import Peer

_ICMP = frozenset({"ICMPv4", "ICMPv6"})

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
    return _selected(policy.selector, endpoint.labels)


def decide(policies: Iterable[Policy], direction: Direction, endpoint: Peer, peer: Peer,
           port: int | None, protocol: str | None,
           named_ports: Mapping[str, int] | None = None) -> Decision:
    """The verdict for a connection between `endpoint` (the pod whose `direction` is checked)
    and `peer` on `port`/`protocol` (the destination port)."""
    if direction == "ingress" and peer.entity == "host":
        return Decision("allowed", (), "from the pod's own node (host): always allowed")
    # Policies that select the endpoint and either isolate it in this direction (default deny)
    # or bring allow rules for it (a Cilium policy may allow without isolating).
    isolating: list[Policy] = []
    unsure_isolating: list[Policy] = []
    contributing: list[Policy] = []
    unsure: list[Policy] = []
    for policy in policies:
        enforces = direction in policy.enforces
        if not enforces and not policy.rules_for(direction):
            continue
        chosen = selects(policy, endpoint)
        if chosen is False:
            continue
        (contributing if chosen else unsure).append(policy)
        if enforces:
            (isolating if chosen else unsure_isolating).append(policy)
    if not isolating and not unsure_isolating:
        return Decision("allowed", (), f"no policy selects {endpoint.name} for {direction}")
    allowed_by: list[str] = []
    doubts: list[str] = []
    for policy, sure in [(p, True) for p in contributing] + [(p, False) for p in unsure]:
        for rule in policy.rules_for(direction):
            hit = rule_matches(rule, peer, port, protocol, named_ports or {})
            if hit and sure:
                allowed_by.append(f"{policy.title} {direction}[{rule.index}]")
            elif hit is not False:  # a rule that may allow, or one of a policy that may apply
                doubts.append(_doubt(rule, policy, peer, named_ports or {}) if sure
                              else _unsure(endpoint, [policy]))
    if allowed_by:
        return Decision("allowed", tuple(allowed_by), "allowed by " + ", ".join(allowed_by))
    if not isolating:
        doubts.insert(0, _unsure(endpoint, unsure_isolating))
    if doubts:
        return Decision("unknown", (), "; ".join(dict.fromkeys(doubts)))
    return Decision("denied", (), f"{_names(isolating)} isolate{'s' * (len(isolating) == 1)} "
                    f"{endpoint.name} for {direction}; no rule allows it")


def _unsure(endpoint: Peer, policies: list[Policy]) -> str:
    return (f"labels of {endpoint.name} unknown: cannot tell whether {_names(policies)} "
            f"select{'s' * (len(policies) == 1)} it")


def rule_matches(rule: Rule, peer: Peer, port: int | None,
                 protocol: str | None, named_ports: Mapping[str, int]) -> bool | None:
    peers = (True if rule.peers is None
             else _any(peer_matches(p, peer) for p in rule.peers))
    if peers is False:
        # Only an undecided peer selector (toFQDNs, ...) may still select this peer.
        return None if UNDECIDED_PEERS & set(rule.undecided) else False
    ports = (True if rule.ports is None
             else _any(port_matches(p, port, protocol, named_ports) for p in rule.ports))
    if ports is False and protocol in _ICMP and "icmps" in rule.undecided:
        ports = None  # the rule's ICMP types are not evaluated
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
        # Every reserved label counts: the host may also be the kube-apiserver.
        reserved = {k for s, k, _ in peer.labels or () if s == "reserved"}
        if peer.entity is not None:
            reserved.add(peer.entity)
        return any(reserved & ENTITIES[e] for e in rule.entities if e in ENTITIES)
    return _pod_matches(rule, peer)


def _pod_matches(rule: PodPeer, peer: Peer) -> bool | None:
    if not peer.is_pod:
        return False
    if rule.namespaces is None and rule.namespace is not None \
            and peer.namespace != rule.namespace:
        return False
    namespaces = True if rule.namespaces is None else _namespace_selected(rule.namespaces, peer)
    if namespaces is False:
        return False
    pods = True if rule.pods is None else _selected(rule.pods, peer.labels)
    if pods is False:
        return False
    return None if namespaces is None or pods is None else True


def _selected(selector: Selector, labels: Labels | None) -> bool | None:
    """Whether `selector` matches `labels` (None: unknown labels; `{}` matches anyway)."""
    if not selector.requirements:
        return True
    return None if labels is None else selector.matches(labels)


def _namespace_selected(selector: Selector, peer: Peer) -> bool | None:
    labels = peer.namespace_labels()
    if labels is None and peer.namespace is not None \
            and all(split_key(r.key)[1] == NAMESPACE_LABEL for r in selector.requirements):
        # Without labels the namespace's name is still known, and it is all this one asks for.
        labels = frozenset({("k8s", NAMESPACE_LABEL, peer.namespace)})
    return _selected(selector, labels)


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
