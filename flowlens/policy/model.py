"""Network policies as flowlens evaluates them, read from the YAML users apply with kubectl.

Kubernetes NetworkPolicy (networking.k8s.io/v1) in full, and a documented subset of
CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy (README, "Policy lens"). A field flowlens
cannot evaluate is never ignored silently: deny rules are refused (they would turn an "allowed"
into a wrong answer), and allow rules it cannot decide (toFQDNs, toServices, ...) make the
verdicts they could change `unknown`.
"""

from __future__ import annotations

import ipaddress
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from flowlens.errors import InputError, UsageError

Direction = Literal["ingress", "egress"]
DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NETWORK_POLICY = "NetworkPolicy"
CILIUM_POLICY = "CiliumNetworkPolicy"
CILIUM_CLUSTERWIDE = "CiliumClusterwideNetworkPolicy"
KINDS = (NETWORK_POLICY, CILIUM_POLICY, CILIUM_CLUSTERWIDE)

# Label sources Cilium prefixes keys with (`k8s:app`); `any` matches every source.
LABEL_SOURCES = frozenset({"k8s", "reserved", "any", "container", "cidr", "fqdn", "unspec",
                           "cni"})
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
# Cilium entities (fromEntities/toEntities) and the reserved identities each covers.
ENTITIES: dict[str, frozenset[str]] = {
    "world": frozenset({"world", "world-ipv4", "world-ipv6"}),
    "world-ipv4": frozenset({"world", "world-ipv4"}),
    "world-ipv6": frozenset({"world", "world-ipv6"}),
    "host": frozenset({"host"}),
    "remote-node": frozenset({"remote-node"}),
    "health": frozenset({"health"}),
    "init": frozenset({"init"}),
    "unmanaged": frozenset({"unmanaged"}),
    "kube-apiserver": frozenset({"kube-apiserver"}),
    "ingress": frozenset({"ingress"}),
}
# `cluster` is everything but world; `all` is everything. Both are decided in Peer terms.
SPECIAL_ENTITIES = frozenset({"cluster", "all"})
PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})


class PolicyError(InputError):
    """A policy file that cannot be read or evaluated: names the file and the field."""


# --------------------------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------------------------

Labels = frozenset[tuple[str, str, str]]  # (source, key, value), e.g. ("k8s", "app", "x")


def split_key(key: str) -> tuple[str, str]:
    """`k8s:app` -> ("k8s", "app"); a key without a known source matches any source."""
    source, sep, rest = key.partition(":")
    if sep and source in LABEL_SOURCES:
        return source, rest
    return "any", key


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: frozenset[str] = frozenset()

    def matches(self, labels: Labels) -> bool:
        found = _values(labels, self.key)
        if self.operator == "In":
            return bool(found & self.values)
        if self.operator == "NotIn":
            return not found & self.values
        if self.operator == "Exists":
            return bool(found)
        return not found


@dataclass(frozen=True)
class Selector:
    """A label selector (matchLabels and matchExpressions, ANDed); empty selects everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Labels) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def mentions(self, key: str) -> bool:
        return any(split_key(r.key)[1] == key for r in self.requirements)

    def text(self) -> str:
        if not self.requirements:
            return "{}"
        parts = []
        for r in self.requirements:
            if r.operator == "In" and len(r.values) == 1:
                parts.append(f"{r.key}={next(iter(r.values))}")
            elif r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(sorted(r.values))})")
            else:
                parts.append(r.key if r.operator == "Exists" else f"!{r.key}")
        return ",".join(parts)


def _values(labels: Labels, key: str) -> set[str]:
    source, name = split_key(key)
    return {v for s, k, v in labels if k == name and (source == "any" or s == source)}


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PodPeer:
    """Pods that `pods` selects in the namespaces `namespaces` selects; with no namespace
    selector, pods of `namespace` (the policy's own), or anywhere when that is None."""

    pods: Selector | None
    namespaces: Selector | None
    namespace: str | None


@dataclass(frozen=True)
class CidrPeer:
    """ipBlock / fromCIDR(Set) / toCIDR(Set): peers outside the cluster by IP."""

    network: Network
    excepts: tuple[Network, ...] = ()


@dataclass(frozen=True)
class EntityPeer:
    """fromEntities / toEntities."""

    entities: frozenset[str]


PeerRule = PodPeer | CidrPeer | EntityPeer


@dataclass(frozen=True)
class PortRule:
    """One port of a rule: `port` None means every port of `protocol` (`ANY`: of any
    protocol); `name` is a named port, which only a --named-port mapping can resolve."""

    protocol: str
    port: int | None = None
    end_port: int | None = None
    name: str | None = None

    def text(self) -> str:
        if self.name is not None:
            where = self.name
        elif self.port is None:
            where = "any port"
        else:
            where = str(self.port) + (f"-{self.end_port}" if self.end_port else "")
        return f"{self.protocol} {where}" if self.protocol != "ANY" else where


@dataclass(frozen=True)
class Rule:
    """One ingress or egress rule: any of `peers` (None: every peer) on any of `ports` (None:
    every port and protocol). `undecided` names features that may widen it but that flowlens
    cannot evaluate."""

    direction: Direction
    index: int
    peers: tuple[PeerRule, ...] | None
    ports: tuple[PortRule, ...] | None
    undecided: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    kind: str
    name: str
    namespace: str | None  # None: cluster-wide
    selector: Selector  # the pods (endpoints) the policy applies to
    enforces: frozenset[Direction]  # directions in which selected pods become default-deny
    rules: tuple[Rule, ...]
    origin: str  # "file.yaml, document 2": where messages point
    part: int | None = None  # the index in a Cilium `specs` list

    @property
    def full_name(self) -> str:
        """`namespace/name` as users name a policy (cluster-wide: the name)."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def title(self) -> str:
        """The full name; an entry of a Cilium `specs` list gets its index."""
        return self.full_name if self.part is None else f"{self.full_name}[{self.part}]"

    def rules_for(self, direction: Direction) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.direction == direction)

    def selects_text(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.selector.text()}{where}"


@dataclass(frozen=True)
class PolicySet:
    """The policies to evaluate: as if exactly these were applied, and no others."""

    policies: tuple[Policy, ...] = ()
    sources: tuple[str, ...] = field(default=())

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def titles(self) -> list[str]:
        """Every policy once, as `namespace/name (Kind)`."""
        return list(dict.fromkeys(f"{p.full_name} ({p.kind})" for p in self.policies))


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def load_policies(paths: str | Path | Iterable[str | Path]) -> PolicySet:
    """Every policy in the YAML files at `paths` (several documents per file, `kind: List`
    accepted). PolicyError names the file, the document and the field of anything wrong."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    policies: list[Policy] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PolicyError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from e
        policies += parse_policies(text, str(path))
    return PolicySet(tuple(policies), tuple(str(p) for p in paths))


POLICY_SUFFIXES = (".yaml", ".yml")


def split_paths(paths: Iterable[str]) -> tuple[list[str], tuple[str, ...]]:
    """`POLICY.yaml... [SOURCE]...` apart: YAML files, and folders holding only YAML files
    (their files, sorted), are policies; everything else is a flow source."""
    policies, sources = [], []
    for path in paths:
        target = Path(path)
        if target.suffix.lower() in POLICY_SUFFIXES:
            policies.append(path)
        elif target.is_dir() and _yaml_folder(target):
            policies += sorted(str(p) for p in target.iterdir()
                               if p.suffix.lower() in POLICY_SUFFIXES)
        else:
            sources.append(path)
    return policies, tuple(sources)


def _yaml_folder(folder: Path) -> bool:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return bool(files) and all(p.suffix.lower() in POLICY_SUFFIXES for p in files)


def parse_named_ports(pairs: Iterable[str]) -> dict[str, int]:
    """`--named-port http=8080` values as a name -> port mapping; UsageError if malformed."""
    out = {}
    for pair in pairs:
        name, _, number = pair.partition("=")
        if not name or not number.isdigit() or not 1 <= int(number) <= 65535:
            raise UsageError(f"invalid value {pair!r} for --named-port: want NAME=PORT")
        out[name] = int(number)
    return out


# YAML aliases may repeat a node (`<<: *defaults`), but the documents they expand to may hold at
# most this many nodes more than the text spells out: a few hundred bytes of nested aliases
# ("billion laughs") would otherwise expand to gigabytes.
MAX_ALIAS_EXPANSION = 100_000


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """yaml's safe loader (libyaml's C parser where installed: 10,000 policies load in a few
    seconds), refusing duplicate keys and alias bombs."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_shown(key_node.value)}",
                        key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(nodes with every alias expanded, distinct nodes) of a composed document."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack = [root]
    while stack:  # children before parents, each distinct node once
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        stack.extend(_children(node))
    for node in reversed(order):
        sizes[id(node)] = 1 + sum(max(sizes[id(c)], 0) for c in _children(node))
    return sizes[id(root)], len(sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _documents(text: str, origin: str) -> list[Any]:
    loader = _Loader(text)
    aliases = "*" in text  # an alias is `*name`: without one, nothing to expand
    try:
        documents: list[Any] = []
        while loader.check_node():
            node = loader.get_node()
            expanded, distinct = _expanded_size(node) if aliases else (0, 0)
            if expanded > distinct + MAX_ALIAS_EXPANSION:
                raise PolicyError(f"{origin}: document {len(documents) + 1}: its YAML aliases "
                                  f"expand to more than {MAX_ALIAS_EXPANSION:,} extra nodes")
            documents.append(loader.construct_document(node))
        return documents
    finally:
        loader.dispose()


def parse_policies(text: str, origin: str = "<policy>") -> list[Policy]:
    """The policies in one YAML text (`origin` names it in messages)."""
    try:
        documents = _documents(text, origin)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise PolicyError(f"{origin}:{where} not valid YAML: {problem}") from None
    out: list[Policy] = []
    for number, doc in enumerate(documents, 1):
        if doc is None:
            continue
        where = f"{origin}, document {number}"
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
        if not isinstance(items, list):
            raise PolicyError(f"{where}: items: want a list")
        for item in items:
            out += _policies(item, where)
    if not out:
        raise PolicyError(f"{origin}: no policy in it")
    return out


def _policies(doc: Any, where: str) -> list[Policy]:
    if not isinstance(doc, dict):
        raise PolicyError(f"{where}: want a mapping with kind, metadata and spec")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise PolicyError(f"{where}: kind {_shown(kind)} is not one of {', '.join(KINDS)}")
    meta = _mapping(doc.get("metadata"), where, "metadata")
    if meta.get("name") is None:
        raise PolicyError(f"{where}: metadata.name: missing")
    name = _dns_name(meta["name"], where, "metadata.name", _DNS_SUBDOMAIN, 253)
    where = f"{where} ({kind} {name})"
    namespace: str | None = None
    if kind != CILIUM_CLUSTERWIDE:
        namespace = "default" if meta.get("namespace") in (None, "") else _dns_name(
            meta["namespace"], where, "metadata.namespace", _DNS_LABEL, 63)
    if kind == NETWORK_POLICY:
        return [_network_policy(_mapping(doc.get("spec"), where, "spec"), name, namespace,
                                where)]
    specs: list[tuple[int | None, Mapping[str, Any]]] = []
    if "spec" in doc:
        specs.append((None, _mapping(doc["spec"], where, "spec")))
    if "specs" in doc:
        if not isinstance(doc["specs"], list):
            raise PolicyError(f"{where}: specs: want a list")
        specs += [(i, _mapping(s, where, f"specs[{i}]")) for i, s in enumerate(doc["specs"])]
    if not specs:
        raise PolicyError(f"{where}: spec: missing")
    return [_cilium_policy(s, kind, name, namespace, where, part) for part, s in specs]


# --- NetworkPolicy ------------------------------------------------------------------------------

def _network_policy(spec: Mapping[str, Any], name: str, namespace: str | None,
                    where: str) -> Policy:
    _known(spec, where, "spec", {"podSelector", "policyTypes", "ingress", "egress"})
    if "podSelector" not in spec:
        raise PolicyError(f"{where}: spec.podSelector: missing ({{}} selects every pod)")
    selector = _selector(spec["podSelector"], where, "spec.podSelector")
    types = spec.get("policyTypes")
    if types is None or types == []:  # Kubernetes' default: Ingress, and Egress when egress
        # rules are given (it defaults an empty list too)
        enforces: set[Direction] = {"ingress"}
        if spec.get("egress"):
            enforces.add("egress")
    else:
        if not isinstance(types, list) or not all(t in ("Ingress", "Egress") for t in types):
            raise PolicyError(f"{where}: spec.policyTypes: want a list of Ingress, Egress")
        enforces = {"ingress" if t == "Ingress" else "egress" for t in types}
    rules: list[Rule] = []
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, raw in enumerate(_list(spec.get(direction), where, f"spec.{direction}")):
            path = f"spec.{direction}[{i}]"
            rule = _mapping(raw, where, path)
            _known(rule, where, path, {peers_key, "ports"})
            peers = rule.get(peers_key)
            parsed = Rule(
                direction, i,  # type: ignore[arg-type]
                None if not peers else tuple(
                    _np_peer(p, namespace, where, f"{path}.{peers_key}[{j}]")
                    for j, p in enumerate(_list(peers, where, f"{path}.{peers_key}"))),
                _np_ports(rule.get("ports"), where, f"{path}.ports"))
            if direction in enforces:  # rules of a type policyTypes leaves out do nothing
                rules.append(parsed)
    return Policy(NETWORK_POLICY, name, namespace, selector, frozenset(enforces), tuple(rules),
                  where)


def _np_peer(raw: Any, namespace: str | None, where: str, path: str) -> PeerRule:
    peer = _mapping(raw, where, path)
    _known(peer, where, path, {"podSelector", "namespaceSelector", "ipBlock"})
    if "ipBlock" in peer:
        if len(peer) > 1:
            raise PolicyError(f"{where}: {path}: ipBlock cannot be combined with selectors")
        block = _mapping(peer["ipBlock"], where, f"{path}.ipBlock")
        _known(block, where, f"{path}.ipBlock", {"cidr", "except"})
        return _cidr(block.get("cidr"), block.get("except"), where, f"{path}.ipBlock")
    if not peer:
        raise PolicyError(f"{where}: {path}: want podSelector, namespaceSelector or ipBlock")
    pods = (_selector(peer["podSelector"], where, f"{path}.podSelector")
            if "podSelector" in peer else None)
    namespaces = (_selector(peer["namespaceSelector"], where, f"{path}.namespaceSelector")
                  if "namespaceSelector" in peer else None)
    return PodPeer(pods, namespaces, namespace)


def _np_ports(raw: Any, where: str, path: str) -> tuple[PortRule, ...] | None:
    if not raw:
        return None
    out = []
    for i, item in enumerate(_list(raw, where, path)):
        spec = _mapping(item, where, f"{path}[{i}]")
        _known(spec, where, f"{path}[{i}]", {"protocol", "port", "endPort"})
        protocol = spec.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            raise PolicyError(f"{where}: {path}[{i}].protocol: {_shown(protocol)} is not TCP, "
                              "UDP or SCTP")
        out.append(_port(protocol, spec.get("port"), spec.get("endPort"), where,
                         f"{path}[{i}]"))
    return tuple(out)


# --- CiliumNetworkPolicy (subset) -------------------------------------------------------------

_CILIUM_PEERS = {
    "ingress": ("fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities"),
    "egress": ("toEndpoints", "toCIDR", "toCIDRSet", "toEntities"),
}
# Allow-rule fields flowlens cannot decide from flows: a rule using them may allow more.
_UNDECIDED = {"toFQDNs", "toServices", "toGroups", "fromGroups", "icmps", "fromNodes",
              "toNodes", "authentication"}
# Those of them that select peers (the others restrict or add ports: icmps).
UNDECIDED_PEERS = frozenset({"toFQDNs", "toServices", "toGroups", "fromGroups", "fromNodes",
                             "toNodes"})
# Fields that narrow or deny what other rules allow: evaluating around them would be wrong.
_REFUSED = {"ingressDeny", "egressDeny"}
_REFUSED_IN_RULES = {"fromRequires", "toRequires"}


def _cilium_policy(spec: Mapping[str, Any], kind: str, name: str, namespace: str | None,
                   where: str, part: int | None) -> Policy:
    label = "spec" if part is None else f"specs[{part}]"
    refused = _REFUSED & set(spec)
    if refused:
        raise PolicyError(f"{where}: {label}.{sorted(refused)[0]}: deny rules are not "
                          "evaluated by flowlens")
    _known(spec, where, label, {"endpointSelector", "nodeSelector", "ingress", "egress",
                                "description", "labels", "enableDefaultDeny"})
    if "endpointSelector" not in spec:
        raise PolicyError(f"{where}: {label}.endpointSelector: missing (nodeSelector "
                          "policies are not evaluated)")
    selector = _selector(spec["endpointSelector"], where, f"{label}.endpointSelector")
    defaults = _mapping(spec.get("enableDefaultDeny") or {}, where, f"{label}.enableDefaultDeny")
    _known(defaults, where, f"{label}.enableDefaultDeny", set(DIRECTIONS))
    for direction, value in defaults.items():
        if not isinstance(value, bool):
            raise PolicyError(f"{where}: {label}.enableDefaultDeny.{direction}: want true or "
                              f"false, got {_kind(value)}")
    enforces: set[Direction] = set()
    rules: list[Rule] = []
    for direction in DIRECTIONS:
        raws = _list(spec.get(direction), where, f"{label}.{direction}")
        # Default deny where the policy has rules (an empty list is none), unless it says.
        if defaults.get(direction, bool(raws)):
            enforces.add(direction)
        for i, raw in enumerate(raws):
            rules.append(_cilium_rule(raw, direction, i, namespace, where,
                                      f"{label}.{direction}[{i}]"))
    return Policy(kind, name, namespace, selector, frozenset(enforces), tuple(rules), where,
                  part)


def _cilium_rule(raw: Any, direction: Direction, index: int, namespace: str | None, where: str,
                 path: str) -> Rule:
    rule = _mapping(raw, where, path)
    refused = _REFUSED_IN_RULES & set(rule)
    if refused:
        raise PolicyError(f"{where}: {path}.{sorted(refused)[0]}: it narrows every rule of the "
                          "selected pods and is not evaluated by flowlens")
    endpoints, cidrs, cidr_sets, entities = _CILIUM_PEERS[direction]
    _known(rule, where, path, {endpoints, cidrs, cidr_sets, entities, "toPorts"} | _UNDECIDED)
    undecided = tuple(sorted(_UNDECIDED & set(rule)))
    peers: list[PeerRule] = []
    given = False
    for i, raw_selector in enumerate(_list(rule.get(endpoints), where, f"{path}.{endpoints}")):
        given = True
        selector = _selector(raw_selector, where, f"{path}.{endpoints}[{i}]")
        # A Cilium endpoint selector stays in the policy's namespace unless it names one.
        scoped = None if selector.mentions(POD_NAMESPACE_LABEL) else namespace
        peers.append(PodPeer(selector, None, scoped))
    for i, cidr in enumerate(_list(rule.get(cidrs), where, f"{path}.{cidrs}")):
        given = True
        peers.append(_cidr(cidr, None, where, f"{path}.{cidrs}[{i}]"))
    for i, item in enumerate(_list(rule.get(cidr_sets), where, f"{path}.{cidr_sets}")):
        given = True
        block = _mapping(item, where, f"{path}.{cidr_sets}[{i}]")
        _known(block, where, f"{path}.{cidr_sets}[{i}]", {"cidr", "except"})
        peers.append(_cidr(block.get("cidr"), block.get("except"), where,
                           f"{path}.{cidr_sets}[{i}]"))
    names = _list(rule.get(entities), where, f"{path}.{entities}")
    if names:
        given = True
        unknown = [e for e in names if not isinstance(e, str)
                   or (e not in ENTITIES and e not in SPECIAL_ENTITIES)]
        if unknown:
            raise PolicyError(f"{where}: {path}.{entities}: unknown entity {_shown(unknown[0])}")
        peers.append(EntityPeer(frozenset(names)))
    # Cilium: a rule with ports (toPorts or icmps) but no peer selector applies to every peer;
    # a rule with neither selects nothing (`ingress: [{}]` is its documented default deny);
    # a rule whose only selectors are undecided selects no decidable peer.
    has_ports = bool(rule.get("toPorts")) or bool(rule.get("icmps"))
    any_peer = not given and has_ports and not UNDECIDED_PEERS & set(undecided)
    ports = _cilium_ports(rule.get("toPorts"), where, f"{path}.toPorts")
    if ports is None and rule.get("icmps") and not rule.get("toPorts"):
        ports = ()  # ICMP only: no TCP/UDP/SCTP port (the ICMP types are undecided)
    return Rule(direction, index, None if any_peer else tuple(peers), ports, undecided)


def _cilium_ports(raw: Any, where: str, path: str) -> tuple[PortRule, ...] | None:
    if not raw:
        return None
    out: list[PortRule] = []
    for i, item in enumerate(_list(raw, where, path)):
        entry = _mapping(item, where, f"{path}[{i}]")
        _known(entry, where, f"{path}[{i}]", {"ports", "rules", "terminatingTLS",
                                                "originatingTLS", "serverNames", "listener"})
        ports = _list(entry.get("ports"), where, f"{path}[{i}].ports")
        if not ports:
            return None  # toPorts without ports: every port (L7 rules are not evaluated)
        for j, p in enumerate(ports):
            spec = _mapping(p, where, f"{path}[{i}].ports[{j}]")
            _known(spec, where, f"{path}[{i}].ports[{j}]", {"port", "endPort", "protocol"})
            protocol = spec.get("protocol", "ANY")
            protocol = protocol.upper() if isinstance(protocol, str) else protocol
            if protocol not in PROTOCOLS | {"ANY"}:
                raise PolicyError(f"{where}: {path}[{i}].ports[{j}].protocol: "
                                  f"{_shown(protocol)} is not TCP, UDP, SCTP or ANY")
            port = spec.get("port")
            out.append(_port(protocol, None if port in (None, "0", 0) else port,
                             spec.get("endPort"), where, f"{path}[{i}].ports[{j}]"))
    return tuple(out)


# --- shared pieces ------------------------------------------------------------------------------

def _port(protocol: str, port: Any, end_port: Any, where: str, path: str) -> PortRule:
    named = isinstance(port, str) and not port.isdigit()
    if end_port is not None and (port is None or named):
        raise PolicyError(f"{where}: {path}.endPort: only with a numeric port")
    if port is None:
        return PortRule(protocol)
    if named:
        if not _PORT_NAME.fullmatch(port) or len(port) > 15:
            raise PolicyError(f"{where}: {path}.port: {_shown(port)} is not a port number or a "
                              "port name (up to 15 lowercase letters, digits and '-')")
        return PortRule(protocol, name=port)
    number = _port_number(port, where, f"{path}.port")
    end = None if end_port is None else _port_number(end_port, where, f"{path}.endPort")
    if end is not None and end < number:
        raise PolicyError(f"{where}: {path}.endPort: {end} is below port {number}")
    return PortRule(protocol, number, end)


# A named port (IANA service name): lowercase letters, digits and inner '-', one letter at least.
_PORT_NAME = re.compile(r"(?=[a-z0-9-]*[a-z])[a-z0-9]+(-[a-z0-9]+)*")


def _port_number(value: Any, where: str, path: str) -> int:
    # An int or a string of digits: not a bool (an int to Python), not 8080.9 (int() cuts it).
    number = value if isinstance(value, int) and not isinstance(value, bool) else \
        int(value) if isinstance(value, str) and value.isascii() and value.isdigit() \
        and len(value) <= 5 else -1
    if not 1 <= number <= 65535:
        raise PolicyError(f"{where}: {path}: {_shown(value)} is not a port number (1-65535)")
    return number


def _cidr(cidr: Any, excepts: Any, where: str, path: str) -> CidrPeer:
    if not isinstance(cidr, str):
        raise PolicyError(f"{where}: {path}.cidr: want a CIDR such as 10.0.0.0/8, got "
                          f"{_kind(cidr)}")
    network = _network(cidr, where, f"{path}.cidr")
    out = tuple(_network(e, where, f"{path}.except[{i}]")
                for i, e in enumerate(_list(excepts, where, f"{path}.except")))
    for e in out:
        if e.version != network.version or not e.subnet_of(network):  # type: ignore[arg-type]
            raise PolicyError(f"{where}: {path}.except: {e} is not inside {network}")
    return CidrPeer(network, out)


def _network(value: Any, where: str, path: str) -> Network:
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise PolicyError(f"{where}: {path}: {_shown(value)} is not a CIDR") from None


def _selector(raw: Any, where: str, path: str) -> Selector:
    spec = _mapping(raw if raw is not None else {}, where, path)
    _known(spec, where, path, {"matchLabels", "matchExpressions"})
    labels = _mapping(spec.get("matchLabels") or {}, where, f"{path}.matchLabels")
    requirements = [Requirement(_label_key(k, where, f"{path}.matchLabels"), "In",
                                frozenset({_text(v, where, f"{path}.matchLabels.{k}")}))
                    for k, v in labels.items()]
    for i, raw_expr in enumerate(_list(spec.get("matchExpressions"), where,
                                       f"{path}.matchExpressions")):
        at = f"{path}.matchExpressions[{i}]"
        expr = _mapping(raw_expr, where, at)
        _known(expr, where, at, {"key", "operator", "values"})
        operator, key = expr.get("operator"), expr.get("key")
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist") or not key:
            raise PolicyError(f"{where}: {at}: want key and operator In, NotIn, Exists or "
                              "DoesNotExist")
        key = _label_key(key, where, f"{at}.key")
        values = frozenset(_text(v, where, f"{at}.values[{j}]")
                           for j, v in enumerate(_list(expr.get("values"), where,
                                                       f"{at}.values")))
        if (operator in ("In", "NotIn")) != bool(values):
            raise PolicyError(f"{where}: {at}.values: {operator} "
                              f"{'needs' if operator in ('In', 'NotIn') else 'takes no'} values")
        requirements.append(Requirement(key, operator, values))
    return Selector(tuple(requirements))


# Kubernetes' names: a DNS label (namespaces), a DNS subdomain (object names), a label value.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL.pattern}(\.{_DNS_LABEL.pattern})*")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_LABEL_KEY_LENGTH = 317  # prefix (253) / name (63); Cilium's source (`k8s:`) on top
_LABEL_KEY = re.compile(r"[^\s\x00-\x1f\x7f]+")


def _dns_name(value: Any, where: str, path: str, pattern: re.Pattern[str], limit: int) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"{where}: {path}: want a string, got {_kind(value)}")
    if len(value) > limit or not pattern.fullmatch(value):
        raise PolicyError(f"{where}: {path}: {_shown(value)} is not a Kubernetes name (up to "
                          f"{limit} lowercase letters, digits and '-'"
                          f"{', ' + repr('.') if pattern is _DNS_SUBDOMAIN else ''})")
    return value


def _label_key(value: Any, where: str, path: str) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"{where}: {path}: label key {_shown(value)}: want a string")
    if len(split_key(value)[1]) > _LABEL_KEY_LENGTH or not _LABEL_KEY.fullmatch(value):
        raise PolicyError(f"{where}: {path}: {_shown(value)} is not a label key")
    return value


def _text(value: Any, where: str, path: str) -> str:
    """A label value. YAML reads `app: true` or `tier: 1` as bool/int: taken as written."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, int)):
        text = str(value)
    else:
        raise PolicyError(f"{where}: {path}: want a label value (a string), got {_kind(value)}")
    if len(text) > 63 or not _LABEL_VALUE.fullmatch(text):
        raise PolicyError(f"{where}: {path}: {_shown(text)} is not a label value (up to 63 "
                          "letters, digits, '-', '_' and '.')")
    return text


def _mapping(value: Any, where: str, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: {path}: want a mapping, got {_kind(value)}")
    return value


def _list(value: Any, where: str, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PolicyError(f"{where}: {path}: want a list, got {_kind(value)}")
    return value


def _known(spec: Mapping[str, Any], where: str, path: str, fields: set[str]) -> None:
    unknown = sorted(set(spec) - fields)
    if unknown:
        raise PolicyError(f"{where}: {path}.{unknown[0]}: unknown or unsupported field")


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


# Values from a policy file in messages: quoted, and cut short (a value can be megabytes).
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 2, 4, 4


def _shown(value: Any) -> str:
    return _SHOWN.repr(value)
