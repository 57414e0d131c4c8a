"""Hubble's filter flags, defined once, with two back-ends.

`hubble observe` turns its filter flags into two lists of `flow.FlowFilter` (spec §4): a
whitelist (a flow must match ANY filter) and a blacklist (a flow matching ANY filter is dropped);
inside one filter every set field must match (AND) and the values of one field are alternatives
(OR). This module keeps that model:

    (flag, value) pairs, in command-line order ──► Filters ──► whitelist/blacklist
                                                                 │              │
                                         to_request(), raw_filters_yaml()    mask(), select()
                                         (GetFlowsRequest for a relay)       (a flows frame)

`FLAGS` is the single table of filter flags: each row names the FlowFilter field it writes into
the "left" and "right" filter (spec §4.1), how its value is parsed, and its help text. The
FlowFilters themselves are kept as protojson-shaped dicts (proto field names, enum names), so
the relay back-end converts them to protos and the frame back-end evaluates them field by field.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from flowlens import _hubble as H
from flowlens._lazy import lazy
from flowlens.errors import UsageError
from flowlens.sources.timerange import TIME_RANGE

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from google.protobuf import json_format

    from flowlens import _cel, _match
    from flowlens import frame as _frame
    from flowlens._proto.flow import flow_pb2
    from flowlens._proto.observer import observer_pb2
else:  # loaded when first used: `flowlens --help` needs none of them
    np, pd, json_format = lazy("numpy"), lazy("pandas"), lazy("google.protobuf.json_format")
    _frame = lazy("flowlens.frame")
    flow_pb2 = lazy("flowlens._proto.flow.flow_pb2")
    observer_pb2 = lazy("flowlens._proto.observer.observer_pb2")
    _cel, _match = lazy("flowlens._cel"), lazy("flowlens._match")

__all__ = [
    "FLAGS",
    "SELECTION_FLAGS",
    "FilterCommand",
    "Filters",
    "Originals",
    "Selection",
    "canonical_flag",
    "filter_options",
    "flow_filters",
    "lost_events_pass",
    "mask",
    "parse_duration",
    "parse_duration_ns",
    "parse_time",
    "raw_filters_yaml",
    "select",
    "selected_rows",
    "selection",
    "time_window",
    "to_request",
]

FlowFilterDict = dict[str, Any]
"""One FlowFilter as protojson with proto field names: field -> list of values."""

Parser = Callable[[str], Any]
"""Turns a flag's text into the value appended to a FlowFilter field; ValueError = bad value."""


# ---------------------------------------------------------------------------------------------
# Value parsers. Each returns the FlowFilter value in protojson form or raises ValueError(why).
# ---------------------------------------------------------------------------------------------

def _text(raw: str) -> str:
    return raw


def _ip_or_cidr(raw: str) -> str:
    try:
        if "/" in raw:
            ipaddress.ip_network(raw, strict=False)
        else:
            ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError("not an IP address or CIDR") from None
    return raw


def _ip_version(raw: str) -> str:
    low = raw.lower()
    if low in ("4", "v4", "ipv4", "ip4"):
        return "IPv4"
    if low in ("6", "v6", "ipv6", "ip6"):
        return "IPv6"
    return "IP_NOT_USED"


def _fqdn(raw: str) -> str:
    _match.fqdn_regex((raw,))
    return raw


def _node_name(raw: str) -> str:
    _match.node_name_regex((raw,))
    return raw


def _name(raw: str) -> str:
    if not raw:
        raise ValueError("name must not be empty")
    return raw


_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


def _go_uint(raw: str, bits: int, *, base0: bool = False) -> int:
    """strconv.ParseUint: decimal; with base0 also 0x/0o/0b prefixes, leading-0 octal and
    underscores between digits."""
    base, digits = 10, raw
    if base0:
        prefix = raw[:2].lower()
        if prefix in ("0x", "0o", "0b"):
            base, digits = {"0x": 16, "0o": 8, "0b": 2}[prefix], raw[2:]
        elif len(raw) > 1 and raw[0] == "0":
            base, digits = 8, raw[1:]
        if re.fullmatch(r"[^_]+(_[^_]+)+", digits):
            digits = digits.replace("_", "")
    if not digits or any(c not in _DIGITS[base] for c in digits):
        raise ValueError("not a number")
    value = int(digits, base)
    if value >= 1 << bits:
        raise ValueError(f"out of range (max {(1 << bits) - 1})")
    return value


def _port(raw: str) -> str:
    _go_uint(raw, 16)
    return raw


_IDENTITY_NAMES: dict[str, int] = {
    name: num for name, num in H.IDENTITY_FLAG_NAMES.items() if name != "unknown"
}


def _identity(raw: str) -> int:
    if raw in _IDENTITY_NAMES:
        return _IDENTITY_NAMES[raw]
    try:
        return _go_uint(raw, 32, base0=True)
    except ValueError as exc:
        names = ", ".join(_IDENTITY_NAMES)
        raise ValueError(f"{exc}: want a number or one of {names}") from None


def _workload(raw: str) -> dict[str, str]:
    kind, sep, name = raw.partition("/")
    if not sep:
        kind, name = "", raw
    if not kind and not name:
        raise ValueError("want NAME, KIND/NAME or KIND/")
    out = {}
    if name:
        out["name"] = name
    if kind:
        out["kind"] = kind
    return out


def _enum(names: Iterable[str], what: str) -> Parser:
    allowed = tuple(names)

    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"not a {what} (want one of {', '.join(allowed)})")
        return raw

    return parse


_verdict = _enum(H.VERDICTS, "verdict")
_drop_reason = _enum(H.DROP_REASON_NUMBERS, "drop reason")

# `--type agent:<sub>` names (monitor numbering, spec §2.4).
_AGENT_SUB_TYPES: tuple[str, ...] = (
    "unspecified", "message", "agent-started", "endpoint-regenerate-success",
    "endpoint-regenerate-failure", "policy-updated", "policy-deleted", "endpoint-created",
    "endpoint-deleted", "ipcache-upserted", "ipcache-deleted",
)
_SUB_TYPE_NAMES: dict[int, dict[str, int]] = {
    H.EVENT_TYPES["trace"]: {name: i for i, name in enumerate(H.TRACE_POINTS)},
    H.EVENT_TYPES["agent"]: {name: i for i, name in enumerate(_AGENT_SUB_TYPES)},
}


def _int32(raw: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        raise ValueError("not a number")
    value = int(raw)
    if not -(1 << 31) <= value < 1 << 31:
        raise ValueError("out of range")
    return value


def _event_type(raw: str) -> dict[str, Any]:
    name, sep, sub = raw.partition(":")
    if name in H.EVENT_TYPES:
        etype = H.EVENT_TYPES[name]
    else:
        try:
            etype = _int32(name)
        except ValueError:
            raise ValueError(f"unknown type {name!r} (want a number or one of "
                             f"{', '.join(H.EVENT_TYPES)})") from None
    out: dict[str, Any] = {"type": etype}
    if sep:
        names = _SUB_TYPE_NAMES.get(etype, {})
        if sub in names:
            out["sub_type"] = names[sub]
        else:
            try:
                out["sub_type"] = _int32(sub)
            except ValueError:
                want = f"a number or one of {', '.join(names)}" if names else "a number"
                raise ValueError(f"unknown sub type {sub!r} (want {want})") from None
        out["match_sub_type"] = True
    return out


_PROTOCOLS = ("icmp", "icmpv4", "icmpv6", "tcp", "udp", "sctp", "vrrp", "igmp", "dns", "http",
              "kafka")


def _protocol(raw: str) -> str:
    if raw.lower() not in _PROTOCOLS:
        raise ValueError(f"unknown protocol (want one of {', '.join(_PROTOCOLS)})")
    return raw


_TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")


def _tcp_flags(raw: str) -> dict[str, bool]:
    flags = {}
    for part in raw.split(","):
        name = part.strip().upper()
        if name not in _TCP_FLAGS:
            raise ValueError(f"unknown TCP flag {part!r} (want {', '.join(_TCP_FLAGS)})")
        flags[name] = True
    return {name: True for name in _TCP_FLAGS if name in flags}


def _http_status(raw: str) -> str:
    try:
        _match.check_status(raw)
    except ValueError:
        raise ValueError("want a status code like 404 or a prefix like 5+ or 40+") from None
    return raw


def _regex(raw: str) -> str:
    _match.go_regex(raw)
    return raw


def _cel_expression(raw: str) -> str:
    try:
        _cel.compile_expression(raw)
    except ValueError as exc:
        raise ValueError(f"not a CEL expression over _flow ({exc})") from None
    return raw


def _http_header(raw: str) -> dict[str, str]:
    key, sep, value = raw.partition(":")
    if not sep:
        raise ValueError("want KEY:VALUE")
    return {"key": key, "value": value}


def _ip_trace_id(raw: str) -> int:
    value = _go_uint(raw, 64)
    if value == 0:
        raise ValueError("must be greater than 0")
    return value


def _direction(raw: str) -> str:
    if raw.lower() not in ("ingress", "egress"):
        raise ValueError("want ingress or egress")
    return raw.upper()


def _interface(raw: str) -> dict[str, str]:
    return {"name": raw}


def _selector(raw: str) -> str:
    _match.parse_selector(raw)
    return raw


# ---------------------------------------------------------------------------------------------
# The flag table.
# ---------------------------------------------------------------------------------------------

# Pseudo fields: namespace modifiers, applied when the filter is finished (spec §4.3).
_SRC_NS = "@source_namespace"
_DST_NS = "@destination_namespace"
_CEL = "experimental.cel_expression"


@dataclass(frozen=True)
class Flag:
    """One filter flag: what it writes into the left and right FlowFilter, and how."""

    name: str  # long name without dashes
    left: str  # FlowFilter field written into the left filter
    right: str  # ... and into the right one (the same field for one-sided flags)
    parse: Parser | None  # None: the flag takes no value and appends `const`
    help: str
    short: str | None = None
    metavar: str = ""
    const: Any = None

    @property
    def takes_value(self) -> bool:
        return self.parse is not None

    def value(self, raw: str | None) -> Any:
        """The parsed value; UsageError naming the flag for a malformed one."""
        if self.parse is None:
            return self.const
        if raw is None:
            raise UsageError(f"flag --{self.name} needs a value")
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise UsageError(f"invalid value {raw!r} for --{self.name}: {exc}") from None


def _one(name: str, fld: str, parse: Parser | None, help: str, *, short: str | None = None,
         metavar: str = "", const: Any = None) -> Flag:
    return Flag(name, fld, fld, parse, help, short, metavar, const)


def _sides(name: str, fld: str, parse: Parser | None, what: str, *, short: str | None = None,
           metavar: str = "", const: Any = None) -> tuple[Flag, ...]:
    """--NAME (source field left, destination field right) and --from-NAME / --to-NAME."""
    src, dst = f"source_{fld}", f"destination_{fld}"
    if fld == "namespace":
        src, dst = _SRC_NS, _DST_NS
    return (
        Flag(name, src, dst, parse, f"Show flows from or to {what}", short, metavar, const),
        Flag(f"from-{name}", src, src, parse, f"Show flows from {what}", None, metavar, const),
        Flag(f"to-{name}", dst, dst, parse, f"Show flows to {what}", None, metavar, const),
    )


FLAGS: tuple[Flag, ...] = (
    _one("uuid", "uuid", _text, "Show the flow with this UUID", metavar="UUID"),
    *_sides("ip", "ip", _ip_or_cidr, "this IP address or CIDR", metavar="IP"),
    _one("snat-ip", "source_ip_xlated", _ip_or_cidr,
         "Show flows whose post-SNAT source IP is this address or CIDR", metavar="IP"),
    _one("ipv4", "ip_version", None, "Show only IPv4 flows", short="4", const="IPv4"),
    _one("ipv6", "ip_version", None, "Show only IPv6 flows", short="6", const="IPv6"),
    _one("ip-version", "ip_version", _ip_version, "Show only flows of this IP version (4 or 6)",
         metavar="V"),
    *_sides("pod", "pod", _text, "the pod [NAMESPACE/]POD_PREFIX", metavar="POD"),
    *_sides("namespace", "namespace", _text, "pods in this namespace", short="n",
            metavar="NS"),
    *_sides("all-namespaces", "namespace", None, "pods in any namespace", short="A", const=""),
    *_sides("service", "service", _text, "the service [NAMESPACE/]SERVICE_PREFIX",
            metavar="SVC"),
    *_sides("fqdn", "fqdn", _fqdn, "this DNS name pattern (e.g. *.cilium.io)", metavar="FQDN"),
    *_sides("label", "label", _selector, "endpoints matching this label selector "
            "(e.g. k8s:app=web, reserved:world)", short="l", metavar="SELECTOR"),
    *_sides("identity", "identity", _identity, "this security identity (number or reserved "
            "name)", metavar="ID"),
    *_sides("workload", "workload", _workload, "this workload (NAME, KIND/NAME or KIND/)",
            metavar="WORKLOAD"),
    *_sides("cluster", "cluster_name", _name, "endpoints of this cluster", metavar="CLUSTER"),
    *_sides("port", "port", _port, "this port", metavar="PORT"),
    _one("node-name", "node_name", _node_name, "Show flows observed on nodes matching this "
         "pattern (e.g. k8s*, cluster/*.example.com, cluster/)", metavar="NODE"),
    _one("node-label", "node_labels", _selector,
         "Show flows observed on nodes matching this label selector", metavar="SELECTOR"),
    _one("verdict", "verdict", _verdict, "Show flows with this verdict (FORWARDED, DROPPED, "
         "AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED)", metavar="VERDICT"),
    _one("drop-reason-desc", "drop_reason_desc", _drop_reason,
         "Show drops with this reason (e.g. POLICY_DENIED)", metavar="REASON"),
    _one("type", "event_type", _event_type, "Show events of this type, optionally sub type "
         "(e.g. drop, trace:to-endpoint, l7)", short="t", metavar="TYPE[:SUB]"),
    _one("protocol", "protocol", _protocol, "Show flows of this L4 or L7 protocol (tcp, udp, "
         "icmp, dns, http, ...)", metavar="PROTO"),
    _one("tcp-flags", "tcp_flags", _tcp_flags,
         "Show TCP flows with all these flags set (e.g. SYN or SYN,ACK)", metavar="FLAGS"),
    _one("http-status", "http_status_code", _http_status,
         "Show HTTP responses with this status (404) or status prefix (5+, 40+)",
         metavar="CODE"),
    _one("http-method", "http_method", _text, "Show HTTP flows with this method",
         metavar="METHOD"),
    _one("http-path", "http_path", _regex, "Show HTTP flows whose path matches this regex",
         metavar="REGEX"),
    _one("http-url", "http_url", _regex, "Show HTTP flows whose URL matches this regex",
         metavar="REGEX"),
    _one("http-header", "http_header", _http_header, "Show HTTP flows with this header",
         metavar="KEY:VALUE"),
    _one("trace-id", "trace_id", _text, "Show flows with this trace-context trace ID",
         metavar="ID"),
    _one("ip-trace-id", "ip_trace_id", _ip_trace_id, "Show flows with this IP option trace ID",
         metavar="N"),
    _one("traffic-direction", "traffic_direction", _direction,
         "Show flows in this direction (ingress or egress)", metavar="DIR"),
    _one("interface", "interface", _interface, "Show flows seen on this network interface",
         metavar="IFACE"),
    _one("encrypted", "encrypted", None, "Show only encrypted flows", const=True),
    _one("unencrypted", "encrypted", None, "Show only unencrypted flows", const=False),
    _one("cel-expression", _CEL, _cel_expression,
         "Show flows for which this CEL expression over _flow (a flow.Flow) is true",
         metavar="EXPR"),
)

FLAGS_BY_NAME: dict[str, Flag] = {f.name: f for f in FLAGS}
# FlowFilter fields holding text that must parse (the rest is typed by protobuf, or any text).
_TEXT_PARSERS: dict[str, Parser] = {
    fld: f.parse for f in FLAGS for fld in (f.left, f.right)
    if f.parse in (_ip_or_cidr, _port, _fqdn, _node_name, _name, _selector, _http_status,
                   _regex)}
_SHORT: dict[str, str] = {f.short: f.name for f in FLAGS if f.short}

NOT = "not"
ALLOWLIST = "allowlist"
DENYLIST = "denylist"


@dataclass(frozen=True)
class SelectionFlag:
    name: str
    help: str
    metavar: str = ""
    short: str | None = None
    takes_value: bool = True


SELECTION_FLAGS: tuple[SelectionFlag, ...] = (
    SelectionFlag("since", "Show flows since this time: a duration back from the newest flow "
                  "(files) or now (relay), like 5m, 1h30m, 2d, or a date/RFC 3339 time",
                  "TIME"),
    SelectionFlag("until", "Show flows until this time (same forms as --since)", "TIME"),
    SelectionFlag("last", "Show the last N flows (of files, in file order; from a relay, the "
                  "newest N of each node)", "N"),
    SelectionFlag("first", "Show the first N flows (of files, in file order; from a relay, the "
                  "oldest N)", "N"),
    SelectionFlag("all", "Show all flows", takes_value=False),
    SelectionFlag("follow", "Keep showing new flows as they arrive", short="f",
                  takes_value=False),
)
_SELECTION_SHORT = {s.short: s.name for s in SELECTION_FLAGS if s.short}
_SELECTION_NAMES = frozenset(s.name for s in SELECTION_FLAGS)


def _slots(*names: str) -> tuple[frozenset[str], ...]:
    return tuple(frozenset({n}) for n in names)


# Incompatible flag groups (spec §4.1): two flags conflict when they sit in different slots of one
# group. Checked per tracker (allow/deny), against the flags set before.
_CONFLICTS: tuple[tuple[frozenset[str], ...], ...] = (
    _slots("from-fqdn", "from-ip", "ip", "fqdn", "from-namespace", "namespace",
           "from-all-namespaces", "all-namespaces"),
    _slots("from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"),
    _slots("to-fqdn", "to-ip", "ip", "fqdn", "to-namespace", "namespace", "to-all-namespaces",
           "all-namespaces"),
    _slots("to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"),
    (frozenset({"to-pod", "from-pod", "to-service", "from-service"}), frozenset({"namespace"}),
     frozenset({"all-namespaces"})),
    _slots("label", "from-label"), _slots("label", "to-label"),
    _slots("service", "from-service"), _slots("service", "to-service"),
    _slots("port", "to-port"), _slots("port", "from-port"),
    _slots("identity", "to-identity"), _slots("identity", "from-identity"),
    _slots("workload", "to-workload"), _slots("workload", "from-workload"),
    _slots("encrypted", "unencrypted"),
)


def _conflicts(a: str, b: str) -> bool:
    for group in _CONFLICTS:
        slot_a = next((i for i, s in enumerate(group) if a in s), None)
        slot_b = next((i for i, s in enumerate(group) if b in s), None)
        if slot_a is not None and slot_b is not None and slot_a != slot_b:
            return True
    return False


def canonical_flag(name: str) -> str:
    """'--from-pod', 'from-pod', 'from_pod', '-n' -> the long name without dashes."""
    if len(name) == 2 and name[0] == "-" and name[1] != "-":
        bare = _SHORT.get(name[1]) or _SELECTION_SHORT.get(name[1]) or name
    else:
        bare = name.lstrip("-").replace("_", "-")
    if bare in FLAGS_BY_NAME or bare in _SELECTION_NAMES or bare in (NOT, ALLOWLIST, DENYLIST):
        return bare
    raise UsageError(f"unknown filter flag {name!r}")


# ---------------------------------------------------------------------------------------------
# Filters: flags in order -> whitelist / blacklist.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One filter flag as given: parsed value and which list it went to."""

    flag: Flag
    raw: str | None
    value: Any
    negated: bool


class _Tracker:
    """One side (allow or deny) of hubble's filter assembly: a left and a right FlowFilter."""

    def __init__(self) -> None:
        self.left: FlowFilterDict = {}
        self.right: FlowFilterDict = {}
        self.seen: list[str] = []

    def add(self, flag: Flag, value: Any) -> None:
        for prev in self.seen:
            if prev != flag.name and _conflicts(prev, flag.name):
                raise UsageError(f"filters --{prev} and --{flag.name} cannot be combined")
        if flag.name not in self.seen:
            self.seen.append(flag.name)
        _append(self.left, flag.left, value)
        _append(self.right, flag.right, value)

    def filters(self) -> list[FlowFilterDict]:
        if not self.seen:
            return []
        left, right = _apply_namespaces(self.left), _apply_namespaces(self.right)
        return [left] if left == right else [left, right]


def _append(target: FlowFilterDict, path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    if rest:
        _append(target.setdefault(head, {}), rest, value)
    else:
        target.setdefault(head, []).append(value)


def _apply_namespaces(flt: FlowFilterDict) -> FlowFilterDict:
    """Spec §4.3: a side with a namespace modifier and no pod/service gets pod [""], then every
    pod/service entry without '/' becomes 'ns/entry' for each namespace."""
    out = dict(flt)
    for side, key in (("source", _SRC_NS), ("destination", _DST_NS)):
        namespaces = out.pop(key, None)
        if namespaces is None:
            continue
        pod, svc = f"{side}_pod", f"{side}_service"
        if not out.get(pod) and not out.get(svc):
            out[pod] = [""]
        for fld in (pod, svc):
            if fld in out:
                out[fld] = _qualify(out[fld], namespaces)
    return out


def _qualify(entries: list[str], namespaces: list[str]) -> list[str]:
    out: list[str] = []
    for entry in entries:
        if "/" not in entry:
            out.extend(f"{ns}/{entry}" for ns in namespaces)
            continue
        ns = entry.split("/", 1)[0]
        if "" not in namespaces and ns not in namespaces:
            raise UsageError(f"{entry!r} names namespace {ns!r}, which conflicts with namespace "
                             f"filter {', '.join(repr(n) for n in namespaces)}")
        out.append(entry)
    return out


def _uint(flag: str, raw: str | None) -> int:
    try:
        return _go_uint(raw or "", 64)
    except ValueError as exc:
        raise UsageError(f"invalid value {raw!r} for --{flag}: {exc}") from None


@dataclass(frozen=True)
class Filters:
    """hubble's filter and selection flags, validated.

    `flags` holds the filter flags in command-line order as (long name, value) pairs, with
    ("not", None) before each negated one; the FlowFilter lists are derived from it on creation,
    and every malformed value or combination raises UsageError then.
    """

    flags: tuple[tuple[str, str | None], ...] = ()
    allowlist: tuple[str, ...] = ()
    denylist: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    last: int | None = None
    first: int | None = None
    all: bool = False
    follow: bool = False
    entries: tuple[Entry, ...] = field(init=False, repr=False, compare=False)
    whitelist: tuple[FlowFilterDict, ...] = field(init=False, repr=False, compare=False)
    blacklist: tuple[FlowFilterDict, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        allow, deny = _Tracker(), _Tracker()
        entries = []
        negate = False
        for name, raw in self.flags:
            if name == NOT:
                if negate:
                    raise UsageError("--not --not is not allowed: --not negates the next "
                                     "filter flag")
                negate = True
                continue
            flag = FLAGS_BY_NAME.get(name)
            if flag is None:
                raise UsageError(f"unknown filter flag --{name}")
            value = flag.value(raw)
            (deny if negate else allow).add(flag, value)
            entries.append(Entry(flag, raw, value, negate))
            negate = False
        if negate:
            raise UsageError("--not must be followed by a filter flag")
        white = allow.filters() + [f for t in self.allowlist for f in _json_filters(ALLOWLIST, t)]
        black = deny.filters() + [f for t in self.denylist for f in _json_filters(DENYLIST, t)]
        for flt in (*white, *black):
            try:
                _match.validate(flt)
            except ValueError as exc:
                raise UsageError(f"invalid filter: {exc}") from None
        object.__setattr__(self, "entries", tuple(entries))
        object.__setattr__(self, "whitelist", tuple(white))
        object.__setattr__(self, "blacklist", tuple(black))
        self._check_selection()

    def _check_selection(self) -> None:
        given = [n for n, on in (("last", self.last is not None), ("first", self.first is not None),
                                 ("all", self.all), ("follow", self.follow)) if on]
        for a, b in (("first", "last"), ("first", "all"), ("first", "follow"), ("last", "all")):
            if a in given and b in given:
                raise UsageError(f"flags --{a} and --{b} cannot be combined")
        for name in ("last", "first"):
            n = getattr(self, name)
            if n is not None and not 0 <= n < 1 << 64:
                raise UsageError(f"invalid value {n!r} for --{name}: want a count >= 0")
        for name in ("since", "until"):
            text = getattr(self, name)
            if text is not None:
                parse_time(text, pd.Timestamp.now(tz="UTC"), flag=name)

    # ---- constructors ----

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str | None]]) -> Filters:
        """From (flag, value) pairs in command-line order; flag names with or without dashes,
        short forms allowed ('-n'); value None for flags that take none."""
        flags: list[tuple[str, str | None]] = []
        lists: dict[str, list[str]] = {ALLOWLIST: [], DENYLIST: []}
        sel: dict[str, Any] = {}
        for name, raw in pairs:
            flag = canonical_flag(name)
            if flag in lists:
                if raw is None:
                    raise UsageError(f"flag --{flag} needs a value")
                lists[flag].append(raw)
            elif flag in ("since", "until"):
                sel[flag] = raw
            elif flag in ("last", "first"):
                sel[flag] = _uint(flag, raw)
            elif flag in ("all", "follow"):
                sel[flag] = True
            elif flag == NOT:
                flags.append((NOT, None))
            else:
                takes = FLAGS_BY_NAME[flag].takes_value
                if takes and raw is None:
                    raise UsageError(f"flag --{flag} needs a value")
                flags.append((flag, raw if takes else None))
        return cls(flags=tuple(flags), allowlist=tuple(lists[ALLOWLIST]),
                   denylist=tuple(lists[DENYLIST]), **sel)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Filters:
        """The library form: `Filters.from_kwargs(from_pod="default/frontend",
        verdict=["DROPPED"], not_label="k8s:app=x", since="1h", last=10)`. Names are flag names
        with '_'; a `not_` prefix negates; values are a str, a list of them, an int for
        --last/--first, or True for flags without a value. Keyword order is flag order."""
        pairs: list[tuple[str, str | None]] = []
        for key, value in kwargs.items():
            negated = key.startswith("not_")
            name = canonical_flag(key[4:] if negated else key)
            if name == NOT:
                raise UsageError("use a not_ prefix, e.g. not_label=..., to negate a filter")
            if negated and name not in FLAGS_BY_NAME:
                raise UsageError(f"--{name} cannot be negated")
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                if v is None or v is False:
                    continue
                if negated:
                    pairs.append((NOT, None))
                pairs.append((name, None if v is True else str(v)))
        return cls.from_pairs(pairs)

    # ---- views ----

    def argv(self) -> list[str]:
        """The flags as a command line, e.g. for a report header."""
        out: list[str] = []
        for name, raw in self.flags:
            out.append(f"--{name}")
            if raw is not None:
                out.append(raw)
        for name in (ALLOWLIST, DENYLIST):
            for text in getattr(self, name):
                out += [f"--{name}", text]
        for name in ("since", "until", "last", "first"):
            if getattr(self, name) is not None:
                out += [f"--{name}", str(getattr(self, name))]
        out += [f"--{n}" for n in ("all", "follow") if getattr(self, n)]
        return out

    @property
    def has_cel(self) -> bool:
        """Some filter holds a CEL expression."""
        return any("experimental" in f for f in (*self.whitelist, *self.blacklist))

    @property
    def is_empty(self) -> bool:
        """No filter at all (selection flags aside)."""
        return not self.whitelist and not self.blacklist


def _json_filters(flag: str, text: str) -> list[FlowFilterDict]:
    """--allowlist/--denylist: one or more concatenated protojson FlowFilters."""
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        try:
            obj, pos = decoder.raw_decode(text, pos)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            message = json_format.ParseDict(obj, flow_pb2.FlowFilter())
        except (ValueError, json_format.ParseError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"invalid value for --{flag}: not a FlowFilter in JSON ({why})"
                             ) from None
        flt = _protojson(message, native_ints=True)
        _check_text_values(flag, flt)
        out.append(flt)
    if not out:
        raise UsageError(f"invalid value for --{flag}: empty")
    return out


def _check_text_values(flag: str, flt: FlowFilterDict) -> None:
    """Values a FlowFilter holds as text (IPs, ports, patterns...) checked as the flags check
    them: protobuf takes any string, the filter could not be evaluated."""
    for fld, values in flt.items():
        parse = _TEXT_PARSERS.get(fld)
        if parse is None:
            continue
        for value in values:
            try:
                parse(value)
            except ValueError as exc:
                shown = repr(value) if len(value) <= 60 else repr(value[:60]) + "..."
                raise UsageError(f"invalid value for --{flag}: {fld} {shown}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Back-end 1: the GetFlowsRequest a relay gets, and --print-raw-filters.
# ---------------------------------------------------------------------------------------------

UINT64_MAX = (1 << 64) - 1
DEFAULT_NUMBER = 20


def _protojson(message: Any, *, native_ints: bool = False) -> dict[str, Any]:
    """A message as protojson with proto field names, in declaration order (like Go's protojson);
    64-bit integers as strings unless native_ints."""
    out: dict[str, Any] = {}
    for fd in message.DESCRIPTOR.fields:
        value = getattr(message, fd.name)
        if fd.is_repeated:
            if len(value):
                out[fd.name] = [_scalar(fd, v, native_ints) for v in value]
        elif fd.type == fd.TYPE_MESSAGE:
            if message.HasField(fd.name):
                out[fd.name] = _protojson(value, native_ints=native_ints)
        elif value:
            out[fd.name] = _scalar(fd, value, native_ints)
    return out


def _scalar(fd: Any, value: Any, native_ints: bool) -> Any:
    if fd.type == fd.TYPE_MESSAGE:
        return _protojson(value, native_ints=native_ints)
    if fd.type == fd.TYPE_ENUM:
        known = fd.enum_type.values_by_number.get(value)
        return known.name if known is not None else value
    if fd.type in (fd.TYPE_UINT64, fd.TYPE_INT64, fd.TYPE_FIXED64, fd.TYPE_SINT64,
                   fd.TYPE_SFIXED64) and not native_ints:
        return str(value)
    return value


def _to_proto(flt: FlowFilterDict) -> flow_pb2.FlowFilter:
    return json_format.ParseDict(flt, flow_pb2.FlowFilter())


def flow_filters(filters: Filters
                 ) -> tuple[list[flow_pb2.FlowFilter], list[flow_pb2.FlowFilter]]:
    """(whitelist, blacklist) as flow.FlowFilter messages."""
    return ([_to_proto(f) for f in filters.whitelist], [_to_proto(f) for f in filters.blacklist])


def to_request(filters: Filters, *, now: datetime | pd.Timestamp | None = None,
               field_mask: Sequence[str] = ()) -> observer_pb2.GetFlowsRequest:
    """The observer.GetFlowsRequest `hubble observe` sends for these flags (spec §4.4):
    number from --last/--first/--all (default 20 unless following or given a time range),
    follow, since/until (durations count back from `now`; --until is dropped when following)."""
    req = observer_pb2.GetFlowsRequest()
    white, black = flow_filters(filters)
    req.whitelist.extend(white)
    req.blacklist.extend(black)
    if filters.first is not None:
        req.number = filters.first
        req.first = True
    elif filters.last is not None:
        req.number = filters.last
    elif filters.all:
        req.number = UINT64_MAX
    elif not filters.follow and filters.since is None and filters.until is None:
        req.number = DEFAULT_NUMBER
    req.follow = filters.follow
    if filters.since is not None or filters.until is not None:  # (pandas only for a window)
        since, until = time_window(filters, now)
        if since is not None:
            req.since.FromNanoseconds(since.value)
        if until is not None and not filters.follow:
            req.until.FromNanoseconds(until.value)
    if field_mask:
        req.field_mask.paths.extend(field_mask)
    return req


def _yaml_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def raw_filters_yaml(filters: Filters) -> str:
    """What `hubble observe --print-raw-filters` prints: the allow and deny lists as YAML, one
    JSON-encoded FlowFilter per item."""
    lines = []
    for key, flts in (("allowlist", filters.whitelist), ("denylist", filters.blacklist)):
        if not flts:
            lines.append(f"{key}: []")
            continue
        lines.append(f"{key}:")
        for flt in flts:
            text = json.dumps(_protojson(_to_proto(flt)), separators=(",", ":"),
                              ensure_ascii=False)
            lines.append(f"    - {_yaml_quote(text)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Back-end 2: the same filters over a flows frame (flowlens._match evaluates each field).
# ---------------------------------------------------------------------------------------------

Originals = Sequence[Mapping[str, Any]] | Sequence[bytes]
"""The responses a frame was read from, one per row: GetFlowsResponse protojson dicts (proto
field names) or serialized messages. CEL expressions see these whole; without them, the flows
the frame's rows rebuild."""


def _flows(df: pd.DataFrame, originals: Originals | None) -> _match.Flows:
    def messages() -> Iterator[flow_pb2.Flow]:
        from flowlens.render.records import flow_responses
        from flowlens.sources.protodict import response_from_dict

        if originals is None:
            for d in flow_responses(df):
                yield response_from_dict(d).flow
            return
        for item in originals:
            if isinstance(item, bytes):
                yield observer_pb2.GetFlowsResponse.FromString(item).flow
            else:
                yield response_from_dict(dict(item)).flow
    return messages


def mask(filters: Filters, df: pd.DataFrame, originals: Originals | None = None) -> pd.Series:
    """Which rows the filters keep: any whitelist filter matches (or there is none) and no
    blacklist filter does. `originals` (one per row) give CEL expressions the whole flows."""
    flows = _flows(df, originals)
    keep = np.ones(len(df), dtype=bool)
    if filters.whitelist:
        keep = np.zeros(len(df), dtype=bool)
        for flt in filters.whitelist:
            keep |= _match.filter_mask(df, flt, flows)
    for flt in filters.blacklist:
        keep &= ~_match.filter_mask(df, flt, flows)
    return pd.Series(keep, index=df.index, dtype=bool)


def lost_events_pass(filters: Filters) -> bool:
    """Whether `hubble observe --input-file` keeps lost events under these filters: it filters
    each as a flow that is not there (negative selectors, `--unencrypted` and `--not` filters
    keep it; most positive filters drop it)."""
    empty = flow_pb2.Flow()
    if filters.whitelist and not any(_match.lost_event_matches(f, empty)
                                     for f in filters.whitelist):
        return False
    return not any(_match.lost_event_matches(f, empty) for f in filters.blacklist)


# ---------------------------------------------------------------------------------------------
# Time: --since / --until, and selection over a frame.
# ---------------------------------------------------------------------------------------------

_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
       "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h|d)")


def parse_duration(text: str) -> pd.Timedelta | None:
    """A Go duration (`300ms`, `1.5h`, `1h30m`, `-5m`) plus `d` for days; None if not one,
    ValueError if it is beyond ±292 years (as in Go)."""
    ns = parse_duration_ns(text)
    return None if ns is None else pd.Timedelta(ns, unit="ns")


def parse_duration_ns(text: str) -> int | None:
    """`parse_duration` in nanoseconds (without pandas)."""
    body, sign = text, 1
    if body[:1] in ("+", "-"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if body == "0":
        return 0
    if not body:
        return None
    total, pos = Fraction(0), 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            return None
        try:
            total += Fraction(Decimal(m[1])) * _NS[m[2]]
        except InvalidOperation:
            return None
        pos = m.end()
    if abs(total) >= 1 << 63:
        raise ValueError("out of range")
    return int(sign * total)


_DATE = r"(\d{4})-(\d{2})-(\d{2})"
_ZONE = r"(Z|[+-]\d{2}:\d{2})"
_FRACTION = r"(?:[.,](\d+))?"
_DAY = re.compile(_DATE)
_HOUR = re.compile(rf"{_DATE}T(\d{{2}}){_ZONE}")
_MINUTE = re.compile(rf"{_DATE}T(\d{{2}}):(\d{{2}}){_ZONE}")
_RFC3339 = re.compile(rf"{_DATE}T(\d{{2}}):(\d{{2}}):(\d{{2}}){_FRACTION}{_ZONE}")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_RFC1123Z = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (" + "|".join(_MONTHS)
                       + rf") (\d{{4}}) (\d{{2}}):(\d{{2}}):(\d{{2}}){_FRACTION} ([+-]\d{{4}})")


def _zone(text: str) -> timezone:
    if text == "Z":
        return timezone.utc
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"time zone offset {text} is outside -23:59..+23:59")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)


def _stamp(year: str, month: str, day: str, hour: str = "0", minute: str = "0",
           second: str = "0", fraction: str | None = None, zone: str = "Z") -> pd.Timestamp:
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                      tzinfo=_zone(zone))
    stamp = pd.Timestamp(moment).tz_convert("UTC")
    if fraction:
        stamp += pd.Timedelta(int(fraction[:9].ljust(9, "0")), unit="ns")
    return stamp


def _absolute(text: str) -> pd.Timestamp | None:
    """The absolute forms of spec §4.4; None if `text` is none of them."""
    if m := _DAY.fullmatch(text):
        return _stamp(*m.groups())
    if m := _HOUR.fullmatch(text):
        year, month, day, hour, zone = m.groups()
        return _stamp(year, month, day, hour, zone=zone)
    if m := _MINUTE.fullmatch(text):
        year, month, day, hour, minute, zone = m.groups()
        return _stamp(year, month, day, hour, minute, zone=zone)
    if m := _RFC3339.fullmatch(text):
        return _stamp(*m.groups())
    if m := _RFC1123Z.fullmatch(text):
        day, month_name, year, hour, minute, second, fraction, zone = m.groups()
        month = str(_MONTHS.index(month_name) + 1)
        return _stamp(year, month, day, hour, minute, second, fraction, zone)
    return None


def parse_time(text: str, anchor: datetime | pd.Timestamp, *, flag: str = "since"
               ) -> pd.Timestamp:
    """--since/--until: a duration back from `anchor`, else an absolute time (spec §4.4)."""
    anchor_ts = pd.Timestamp(anchor)
    if anchor_ts.tzinfo is None:
        anchor_ts = anchor_ts.tz_localize("UTC")
    try:
        duration = parse_duration(text)
        if duration is not None:
            return anchor_ts.tz_convert("UTC") - duration
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        raise UsageError(f"invalid value {text!r} for --{flag}: out of range") from None
    try:
        stamp = _absolute(text)
    except ValueError as exc:
        raise UsageError(f"invalid value {text!r} for --{flag}: {exc}") from None
    if stamp is None:
        raise UsageError(
            f"invalid value {text!r} for --{flag}: want a duration like 5m, 1h30m or 2d, or a "
            "time like 2024-01-26, 2024-01-26T09:07:03Z or 'Fri, 26 Jan 2024 09:07:03 +0000'")
    if not pd.Timestamp.min <= stamp.tz_localize(None) <= pd.Timestamp.max:  # (as UTC)
        raise UsageError(f"invalid value {text!r} for --{flag}: out of range (times from "
                         f"{TIME_RANGE})")
    return stamp


def time_window(filters: Filters, newest: datetime | pd.Timestamp | None
                ) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """(since, until) as UTC timestamps; durations count back from `newest` (None = now)."""
    anchor = pd.Timestamp.now(tz="UTC") if newest is None or pd.isna(newest) else newest
    since = None if filters.since is None else parse_time(filters.since, anchor, flag="since")
    until = None if filters.until is None else parse_time(filters.until, anchor, flag="until")
    return since, until


@dataclass(frozen=True)
class Selection:
    """What `hubble observe --input-file` shows of a frame: flow rows and lost-event records
    (positions in `_frame.lost_events(df)`), both ascending."""

    rows: np.ndarray
    lost: np.ndarray


def _in_window(times: pd.Series, since: pd.Timestamp | None, until: pd.Timestamp | None
               ) -> np.ndarray:
    """Times inside [since, until]; hubble takes a record without a time as the Unix epoch."""
    filled = times.fillna(pd.Timestamp(0, tz="UTC"))
    keep = np.ones(len(times), dtype=bool)
    if since is not None:
        keep &= np.asarray(filled >= since, dtype=bool)
    if until is not None:
        keep &= np.asarray(filled <= until, dtype=bool)
    return keep


# hubble's --last on files keeps a ring buffer of at most this many records.
MAX_LAST = 1_000_000


def selection(filters: Filters, df: pd.DataFrame, newest: datetime | pd.Timestamp | None = None,
              originals: Originals | None = None, *, with_lost: bool = True) -> Selection:
    """The flows (and with `with_lost` the lost events) `hubble observe --input-file` shows:
    those the filters keep (a lost event as a flow that is not there), inside
    --since/--until (durations count back from `newest`, by default the newest flow; a lost
    event by its own time), then the first/last N of them in file order (lost events count
    among the N, as hubble counts them). Without a selection flag, all of them."""
    keep = mask(filters, df, originals).to_numpy(copy=True)
    records = _frame.lost_events(df).iloc[:None if with_lost else 0]
    keep_lost = np.full(len(records), with_lost and lost_events_pass(filters), dtype=bool)
    if filters.since is not None or filters.until is not None:
        anchor = df["time"].max() if newest is None else newest
        since, until = time_window(filters, anchor)
        keep &= _in_window(df["time"], since, until)
        keep_lost &= _in_window(records["time"], since, until)
    rows, lost = np.flatnonzero(keep), np.flatnonzero(keep_lost)
    n = filters.first if filters.first is not None else filters.last
    if filters.last is not None and with_lost and filters.last > MAX_LAST:
        raise UsageError(f"--last must be <= {MAX_LAST:_}, got {filters.last}")
    if not n or n >= len(rows) + len(lost):  # hubble reads N = 0 as "no limit"
        return Selection(rows, lost)
    # Stream order: a lost-event record comes before the flow at its position.
    positions = records["position"].to_numpy(dtype=np.int64)[lost]
    order = np.concatenate([2 * rows + 1, 2 * positions])
    ranked = np.argsort(order, kind="stable")
    chosen = ranked[:n] if filters.first is not None else ranked[len(ranked) - n:]
    return Selection(rows[np.sort(chosen[chosen < len(rows)])],
                     lost[np.sort(chosen[chosen >= len(rows)] - len(rows))])


def selected_rows(filters: Filters, df: pd.DataFrame,
                  newest: datetime | pd.Timestamp | None = None) -> np.ndarray:
    """Positions (ascending) of the flows `selection` gives, lost events left out (--first/
    --last count flows only)."""
    return selection(filters, df, newest, with_lost=False).rows


def select(filters: Filters, df: pd.DataFrame,
           newest: datetime | pd.Timestamp | None = None) -> pd.DataFrame:
    """The rows of `selected_rows`, in their order, lost events kept beside them."""
    return _frame.take(df, selected_rows(filters, df, newest))


# ---------------------------------------------------------------------------------------------
# click: the same flags on a command, with their order kept.
# ---------------------------------------------------------------------------------------------

_PARAM_PREFIX = "filter_"
_META_KEY = "flowlens.filters"
_ENV = {ALLOWLIST: "HUBBLE_ALLOWLIST", DENYLIST: "HUBBLE_DENYLIST"}


def _param_name(flag: str) -> str:
    return _PARAM_PREFIX + flag.replace("-", "_")


def _option(f: Flag | SelectionFlag) -> click.Option:
    decls = [f"--{f.name}", _param_name(f.name)]
    if f.short:
        decls.insert(0, f"-{f.short}")
    if f.takes_value:
        return click.Option(decls, multiple=True, metavar=f.metavar, help=f.help)
    return click.Option(decls, is_flag=True, help=f.help)


def _options() -> list[click.Option]:
    opts = [_option(f) for f in FLAGS]
    opts.append(click.Option(["--not", _param_name(NOT)], is_flag=True,
                             help="Negate the next filter flag (e.g. --not --from-ip 10.0.0.1)"))
    for name in (ALLOWLIST, DENYLIST):
        side = "allowed" if name == ALLOWLIST else "denied"
        opts.append(click.Option([f"--{name}", _param_name(name)], multiple=True,
                                 metavar="JSON",
                                 help=f"Flows matching this JSON FlowFilter are {side} "
                                      f"(env {_ENV[name]})"))
    opts += [_option(s) for s in SELECTION_FLAGS]
    return opts


_PARAM_TO_FLAG: dict[str, str] = {
    _param_name(n): n
    for n in [*FLAGS_BY_NAME, NOT, ALLOWLIST, DENYLIST, *_SELECTION_NAMES]
}

F = TypeVar("F", bound=Callable[..., Any])


def filter_options(f: F) -> F:
    """Add every filter and selection flag to a click command; the callback gets `filters`
    (a Filters) instead of the individual flags. The command must be a FilterCommand, which
    keeps the flags' order (`@click.command(cls=FilterCommand)`)."""

    @functools.wraps(f)
    def run(*args: Any, **kwargs: Any) -> Any:
        for name in _PARAM_TO_FLAG:
            kwargs.pop(name, None)
        filters = click.get_current_context().meta.get(_META_KEY)
        if filters is None:
            raise RuntimeError("filter_options needs a FilterCommand: "
                               "@click.command(cls=FilterCommand)")
        return f(*args, filters=filters, **kwargs)

    params = getattr(run, "__click_params__", [])
    params.extend(reversed(_options()))  # click reverses decorator-added params
    run.__click_params__ = params  # type: ignore[attr-defined]
    return cast(F, run)


def ordered_pairs(opts: Mapping[str, Any], order: Sequence[click.Parameter],
                  environ: Mapping[str, str] = os.environ) -> list[tuple[str, str | None]]:
    """(flag, value) pairs in command-line order from click's parser output."""
    taken: dict[str, int] = {}
    pairs: list[tuple[str, str | None]] = []
    for param in order:
        name = param.name or ""
        flag = _PARAM_TO_FLAG.get(name)
        if flag is None:
            continue
        value = opts.get(name)
        if isinstance(value, (list, tuple)):
            i = taken.get(name, 0)
            taken[name] = i + 1
            pairs.append((flag, str(value[i])))
        else:
            pairs.append((flag, None))
    for name, var in _ENV.items():  # the flag, when given, wins over the environment
        if _param_name(name) not in taken and environ.get(var):
            pairs.append((name, environ[var]))
    return pairs


class FilterCommand(click.Command):
    """A click command that records the order of filter flags (click keeps values per option,
    which loses how `--not` interleaves with them) and builds the command's Filters."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        argv = list(args)
        rest = super().parse_args(ctx, args)
        opts, _, order = self.make_parser(ctx).parse_args(args=argv)
        try:
            ctx.meta[_META_KEY] = Filters.from_pairs(ordered_pairs(opts, order))
        except UsageError as exc:
            if not ctx.resilient_parsing:
                raise click.UsageError(str(exc), ctx) from exc
        return rest
