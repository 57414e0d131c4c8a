"""hubble's FlowFilter fields evaluated over a flows frame, as hubble evaluates them on files.

One matcher per FlowFilter field (proto field names). hubble reads a field of a flow through
getters that give the zero value when the field is absent, so an NA cell means what the zero
value means there (no verdict is VERDICT_UNKNOWN, no trace id is "", no IP header is not
encrypted). `validate` refuses, with hubble's reason, the filters hubble refuses to build
(malformed patterns and regular expressions, empty names, HTTP fields beside non-L7 event
types). `lost_event_matches` answers for a lost event, which `hubble observe --input-file`
filters as a flow that is not there: only the fields listed in `_LOST_EVENT` can match it.

Patterns follow hubble: regular expressions are Go's RE2 (Google's RE2 here, with the one
escape Go refuses, `\\C`, refused too); FQDN and node-name patterns are globs over lower-case
DNS names.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import numpy as np
import pandas as pd
import re2

from flowlens import _cel
from flowlens import _hubble as H

FlowFilterDict = dict[str, Any]
Bools = np.ndarray
Flows = Callable[[], Iterable[Any]]
"""Gives the rows' flow.Flow messages, for CEL (built only when an expression asks)."""


# ---------------------------------------------------------------------------------------------
# Patterns.
# ---------------------------------------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would log to stderr; the error is raised instead
_BACKSLASH_C = re.compile(r"(?<!\\)(?:\\\\)*\\C")


@functools.lru_cache(maxsize=256)
def go_regex(pattern: str) -> Any:
    """A compiled regular expression with Go's syntax; ValueError when Go refuses it."""
    if _BACKSLASH_C.search(pattern):  # RE2 takes \C (any byte); Go refuses it
        raise ValueError("error parsing regexp: invalid escape sequence: `\\C`")
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"error parsing regexp: {why}") from None


# An FQDN; a pattern's `*` matches within and across its labels, lower case only.
_FQDN = "(?:[-0-9_a-z]+(?:\\.[-0-9_a-z]+)*)"


def _fqdn_pattern(pattern: str) -> str:
    """One FQDN pattern as a regular expression: spaces and one trailing dot trimmed, lower
    case; ValueError for an empty pattern, a second trailing dot or another character."""
    text = pattern.strip().removesuffix(".").lower()
    if not text:
        raise ValueError("empty pattern")
    if text.endswith("."):
        raise ValueError("multiple trailing dots in pattern")
    out = []
    for ch in text:
        if ch == ".":
            out.append("\\.")
        elif ch == "*":
            out.append("[-.0-9a-z]*")
        elif ch in "-_" or "0" <= ch <= "9" or "a" <= ch <= "z":
            out.append(ch)
        else:
            raise ValueError(f"{ch!r}: invalid rune in pattern")
    return "".join(out)


@functools.lru_cache(maxsize=256)
def fqdn_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("(?:" + "|".join(_fqdn_pattern(p) for p in patterns) + ")")


def _node_name_pattern(pattern: str) -> str:
    """`node`, `cluster/node`, `cluster/`: each part an FQDN pattern, empty = any name."""
    if not pattern:
        raise ValueError("empty pattern")
    parts = pattern.split("/")
    if len(parts) > 2:
        raise ValueError("too many slashes in pattern")
    cluster, node = parts if len(parts) == 2 else ("", parts[0])
    return "/".join(_fqdn_pattern(p) if p else _FQDN for p in (cluster, node))


@functools.lru_cache(maxsize=256)
def node_name_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("(?:" + "|".join(_node_name_pattern(p) for p in patterns) + ")")


# A node name without a cluster is in Cilium's default cluster.
_DEFAULT_CLUSTER = "default"


def _go_url_path(url: str) -> str | None:
    """The decoded path of a URL as Go's url.Parse gives it (none for an opaque URL such as
    `mailto:x`); None where Go fails to parse (control characters, malformed %-escapes in the
    path or fragment)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return None
    parts = urlsplit(url)
    if not (_valid_escapes(parts.path) and _valid_escapes(parts.fragment)):
        return None
    if _SCHEME.match(url) and not parts.path.startswith("/") and not parts.netloc:
        return ""
    return unquote_to_bytes(parts.path).decode("utf-8", "replace")


_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def _valid_escapes(text: str) -> bool:
    return _ESCAPE.search(text) is None


# ---------------------------------------------------------------------------------------------
# Kubernetes label selectors over Cilium labels (`source:key=value`).
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Requirement:
    source: str | None  # None = any source
    key: str
    op: str  # exists, !exists, in, notin
    values: frozenset[str] = frozenset()

    def matches(self, labels: Sequence[tuple[str, str, str]]) -> bool:
        found = [v for s, k, v in labels
                 if k == self.key and (self.source is None or s == self.source)]
        if self.op == "exists":
            return bool(found)
        if self.op == "!exists":
            return not found
        hit = any(v in self.values for v in found)
        return hit if self.op == "in" else not hit


_KEY = r"[A-Za-z0-9_.\-/:]+"
_VALUE = r"[A-Za-z0-9_.\-/:]*"
_REQ_NOT = re.compile(rf"!\s*({_KEY})")
_REQ_CMP = re.compile(rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})")
_REQ_SET = re.compile(rf"({_KEY})\s+(in|notin)\s*\(\s*({_VALUE}(?:\s*,\s*{_VALUE})*)\s*\)")
_REQ_HAS = re.compile(_KEY)


def _split_key(key: str) -> tuple[str | None, str]:
    source, sep, rest = key.partition(":")
    if not sep:
        return None, key
    return (None if source == "any" else source), rest


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ')'")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError("unbalanced '('")
    parts.append(text[start:])
    return parts


@functools.lru_cache(maxsize=256)
def parse_selector(text: str) -> tuple[_Requirement, ...]:
    """`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`; comma = AND; an empty
    selector selects everything. A key may carry a label source (`k8s:app`,
    `reserved:world`); without one, or with `any:`, it matches labels of every source."""
    if not text.strip():
        return ()
    reqs = []
    for part in _split_top_level(text):
        part = part.strip()
        if m := _REQ_NOT.fullmatch(part):
            reqs.append(_Requirement(*_split_key(m[1]), "!exists"))
        elif m := _REQ_SET.fullmatch(part):
            values = frozenset(v.strip() for v in m[3].split(","))
            reqs.append(_Requirement(*_split_key(m[1]), m[2], values))
        elif m := _REQ_CMP.fullmatch(part):
            reqs.append(_Requirement(*_split_key(m[1]), "notin" if m[2] == "!=" else "in",
                                     frozenset({m[3]})))
        elif _REQ_HAS.fullmatch(part):
            reqs.append(_Requirement(*_split_key(part), "exists"))
        else:
            raise ValueError(f"cannot parse label selector requirement {part!r}")
    return tuple(reqs)


def _parse_labels(joined: str | None) -> list[tuple[str, str, str]]:
    """'k8s:app=x,reserved:world' -> [(source, key, value), ...]."""
    out = []
    for label in (joined or "").split(","):
        if not label:
            continue
        source, sep, rest = label.partition(":")
        if not sep:
            source, rest = "unspec", label
        key, _, value = rest.partition("=")
        out.append((source, key, value))
    return out


def _selected(selectors: Sequence[tuple[_Requirement, ...]], joined: str | None) -> bool:
    labels = _parse_labels(joined)
    return any(all(r.matches(labels) for r in sel) for sel in selectors)


# ---------------------------------------------------------------------------------------------
# Building: what hubble refuses.
# ---------------------------------------------------------------------------------------------

_HTTP_FIELDS = {"http_status_code": "http status code", "http_method": "http method",
                "http_path": "http path", "http_url": "http url", "http_header": "http headers"}
_STATUS_FULL = re.compile(r"[1-5][0-9]{2}")
_STATUS_PREFIX = re.compile(r"[1-5][0-9]?\+")
_L7_EVENT = H.EVENT_TYPES["l7"]


def check_status(value: str) -> bool:
    """A status (100-599) or a prefix (`5+`, `40+`)."""
    if not (_STATUS_FULL.fullmatch(value) or _STATUS_PREFIX.fullmatch(value)):
        raise ValueError(f"invalid status code prefix: {value!r}")
    return True


def _check_names(values: list[Any]) -> None:
    if "" in values:
        raise ValueError("a pod or service name must not be empty")


# What the flags' parsers (and filters' checks of raw FlowFilters' text values) leave to check.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "source_pod": _check_names, "destination_pod": _check_names,
    "source_service": _check_names, "destination_service": _check_names,
    "dns_query": lambda v: [go_regex(e) for e in v],  # (no flag writes it)
    "experimental": lambda v: [_cel.compile_expression(e) for e in _cel_expressions(v)],
}


def validate(flt: FlowFilterDict) -> None:
    """ValueError with hubble's reason when hubble would refuse to build this filter (beyond
    malformed values, which the flags' parsers refuse)."""
    types = flt.get("event_type") or []
    for fld, what in _HTTP_FIELDS.items():
        if flt.get(fld) and types and not any(t.get("type") == _L7_EVENT for t in types):
            raise ValueError(f"filtering by {what} requires the event type filter to only "
                             "match 'l7' events")
    for fld, values in flt.items():
        check = _CHECKS.get(fld)
        if check is not None and values:
            check(values)


def _cel_expressions(experimental: Any) -> list[str]:
    """The expressions of a FlowFilter.Experimental (protojson dict)."""
    return list(experimental.get("cel_expression", [])) if isinstance(experimental, dict) else []


# ---------------------------------------------------------------------------------------------
# Matching.
# ---------------------------------------------------------------------------------------------

def _per_value(col: pd.Series, pred: Callable[[Any], bool]) -> Bools:
    """pred evaluated once per distinct value (None for NA) and mapped onto the rows."""
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    hits = np.fromiter((pred(u) for u in uniques), dtype=bool, count=len(uniques))
    out = np.full(len(col), pred(None), dtype=bool)
    valid = codes >= 0
    out[valid] = hits[codes[valid]]
    return out


def _ints(col: pd.Series, na: int = -1) -> np.ndarray:
    return np.asarray(col.astype("Int64").fillna(na).to_numpy(dtype="int64"))


Matcher = Callable[[pd.DataFrame, list[Any]], Bools]


def _namespaced(value: str) -> tuple[str, str]:
    """[ns/]prefix -> (namespace, '' for any, prefix); no '/' means namespace default."""
    ns, sep, prefix = value.partition("/")
    return (ns, prefix) if sep else ("default", value)


def _pods(side: str) -> Matcher:
    """Pods by [namespace/]name prefix; an endpoint with neither (world, host, ...) is never
    one, also not for an any-namespace entry (`/name`, `/`)."""
    def match(df: pd.DataFrame, values: list[Any]) -> Bools:
        wanted = [_namespaced(v) for v in values]

        def pred(key: tuple[Any, Any]) -> bool:
            ns, pod = ("" if pd.isna(k) else k for k in key)
            if not ns and not pod:
                return False
            return any((not prefix or pod.startswith(prefix)) and (not wns or wns == ns)
                       for wns, prefix in wanted)
        return _per_pair(df[f"{side}_namespace"], df[f"{side}_pod"], pred)
    return match


def _per_pair(a: pd.Series, b: pd.Series, pred: Callable[[tuple[Any, Any]], bool]) -> Bools:
    """pred evaluated once per distinct (a, b) pair."""
    codes_a, uniq_a = pd.factorize(a, use_na_sentinel=True)
    codes_b, uniq_b = pd.factorize(b, use_na_sentinel=True)
    key = (codes_a.astype(np.int64) + 1) * (len(uniq_b) + 1) + (codes_b + 1)
    pairs, inverse = np.unique(key, return_inverse=True)
    values_a = [None, *uniq_a]
    values_b = [None, *uniq_b]
    hits = np.fromiter((pred((values_a[k // (len(uniq_b) + 1)], values_b[k % (len(uniq_b) + 1)]))
                        for k in pairs.tolist()), dtype=bool, count=len(pairs))
    return hits[inverse.reshape(-1)] if len(a) else np.zeros(0, dtype=bool)


def _services(side: str) -> Matcher:
    def match(df: pd.DataFrame, values: list[Any]) -> Bools:
        wanted = [_namespaced(v) for v in values]

        def pred(u: str | None) -> bool:
            if u is None:
                return False
            ns, _, name = u.rpartition("/")
            return any((not wns or wns == ns) and name.startswith(p) for wns, p in wanted)
        return _per_value(df[f"{side}_service"], pred)
    return match


def _ips(column: str) -> Matcher:
    """An address is the same text (`fd00::1` is not `fd00:0::1`); a CIDR contains it."""
    def match(df: pd.DataFrame, values: list[Any]) -> Bools:
        texts = {v for v in values if "/" not in v}
        nets = [ipaddress.ip_network(v, strict=False) for v in values if "/" in v]

        def pred(u: str | None) -> bool:
            if not u:
                return False
            if u in texts:
                return True
            try:
                addr = ipaddress.ip_address(u)
            except ValueError:
                return False
            return any(addr.version == n.version and addr in n for n in nets)
        return _per_value(df[column], pred)
    return match


def _fqdns(side: str) -> Matcher:
    def match(df: pd.DataFrame, values: list[Any]) -> Bools:
        rx = fqdn_regex(tuple(values))
        return _per_value(df[f"{side}_names"], lambda u: any(
            rx.fullmatch(n) for n in (u or "").split(",") if n))
    return match


def _selectors(column: str) -> Matcher:
    def match(df: pd.DataFrame, values: list[Any]) -> Bools:
        selectors = [parse_selector(v) for v in values]
        return _per_value(df[column], functools.partial(_selected, selectors))
    return match


def _workloads(side: str) -> Matcher:
    def match(df: pd.DataFrame, values: list[Any]) -> Bools:
        wanted = [(w.get("kind", ""), w.get("name", "")) for w in values]

        def pred(u: str | None) -> bool:
            have = [tuple(item.partition("/")[::2]) for item in (u or "").split(",") if item]
            return any((not k or k == hk) and (not n or n == hn)
                       for k, n in wanted for hk, hn in have)
        return _per_value(df[f"{side}_workload"], pred)
    return match


def _equal(column: str, zero: Any = None, convert: Callable[[Any], Any] = str) -> Matcher:
    """The column's value is one of the values; NA counts as `zero` (None: never matches)."""
    def match(df: pd.DataFrame, values: list[Any]) -> Bools:
        wanted = {convert(v) for v in values}
        return _per_value(df[column], lambda u: (zero if u is None else convert(u)) in wanted)
    return match


def _drop_reasons(df: pd.DataFrame, values: list[Any]) -> Bools:
    """Drops with this reason (a drop without one: DROP_REASON_UNKNOWN)."""
    names = {v if isinstance(v, str) else H.DROP_REASON_NAMES.get(v, str(v)) for v in values}
    reason = _per_value(df["drop_reason"], lambda u: (u or "DROP_REASON_UNKNOWN") in names)
    return reason & np.asarray(df["verdict"] == "DROPPED", dtype=bool)


def _event_types(df: pd.DataFrame, values: list[Any]) -> Bools:
    etype, esub = _ints(df["event_type"]), _ints(df["event_subtype"])
    acc = np.zeros(len(df), dtype=bool)
    for v in values:
        hit = (etype == v["type"]) if v.get("type") else (etype >= 0)
        if v.get("match_sub_type"):
            hit &= esub == v.get("sub_type", 0)
        acc |= hit
    return acc & (etype >= 0)


def _http_statuses(df: pd.DataFrame, values: list[Any]) -> Bools:
    full = [v for v in values if not v.endswith("+")]
    prefixes = [v[:-1] for v in values if v.endswith("+")]

    def pred(u: Any) -> bool:
        if u is None or not u:
            return False
        code = f"{int(u):03d}"
        return code in full or any(code.startswith(p) for p in prefixes)
    return _per_value(df["http_code"], pred)


_L4_NAMES = {"tcp": {"TCP"}, "udp": {"UDP"}, "sctp": {"SCTP"}, "vrrp": {"VRRP"},
             "igmp": {"IGMP"}, "icmpv4": {"ICMPv4"}, "icmpv6": {"ICMPv6"},
             "icmp": {"ICMPv4", "ICMPv6"}}


def _protocols(df: pd.DataFrame, values: list[Any]) -> Bools:
    wanted = {v.lower() for v in values}
    l4 = set().union(*(_L4_NAMES.get(w, set()) for w in wanted))
    l7 = wanted & {"dns", "http", "kafka"}
    return (np.asarray(df["protocol"].isin(list(l4)), dtype=bool)
            | np.asarray(df["l7_protocol"].isin(list(l7)), dtype=bool))


def _reply(df: pd.DataFrame, values: list[Any]) -> Bools:
    """is_reply; a drop that does not say is not a reply (hubble's reading)."""
    wanted = {bool(v) for v in values}
    known = np.asarray(df["is_reply"].notna() | (df["verdict"] == "DROPPED"), dtype=bool)
    reply = np.asarray(df["is_reply"].fillna(False), dtype=bool)
    return known & np.isin(reply, list(wanted))


def _regexes(column: str, part: Callable[[str], str | None] = lambda text: text) -> Matcher:
    """Unanchored search (Go's regexp) over the column, or `part` of it."""
    def match(df: pd.DataFrame, values: list[Any]) -> Bools:
        rxs = [go_regex(v) for v in values]

        def pred(u: str | None) -> bool:
            text = part(u) if u else None  # an empty value is not there
            return text is not None and any(rx.search(text) for rx in rxs)
        return _per_value(df[column], pred)
    return match


def _http_methods(df: pd.DataFrame, values: list[Any]) -> Bools:
    wanted = {v.upper() for v in values}
    return _per_value(df["http_method"], lambda u: u is not None and u.upper() in wanted)


def _http_headers(df: pd.DataFrame, values: list[Any]) -> Bools:
    """A header with exactly this key and value."""
    wanted = {f"{h.get('key', '')}: {h.get('value', '')}" for h in values}
    return _per_value(df["http_headers"], lambda u: u is not None and any(
        line in wanted for line in u.split("\n")))


def _tcp_flag_sets(df: pd.DataFrame, values: list[Any]) -> Bools:
    wanted = [frozenset(k for k, on in v.items() if on) for v in values]

    def pred(u: str | None) -> bool:
        have = set((u or "").split(","))
        return u is not None and any(w <= have for w in wanted)
    return _per_value(df["tcp_flags"], pred)


def _node_names(df: pd.DataFrame, values: list[Any]) -> Bools:
    rx = node_name_regex(tuple(values))

    def pred(u: str | None) -> bool:
        if not u:
            return False
        return rx.fullmatch(u if "/" in u else f"{_DEFAULT_CLUSTER}/{u}") is not None
    return _per_value(df["node"], pred)


def _interfaces(df: pd.DataFrame, values: list[Any]) -> Bools:
    wanted = [(int(v.get("index", 0)), v.get("name", "")) for v in values]
    index = _ints(df["interface_index"])
    name = df["interface"].astype(object).where(df["interface"].notna(), "").to_numpy()
    acc = np.zeros(len(df), dtype=bool)
    for idx, nm in wanted:
        hit = index >= 0
        if idx:
            hit &= index == idx
        if nm:
            hit &= name == nm
        acc |= hit
    return acc


def _encrypted(df: pd.DataFrame, values: list[Any]) -> Bools:
    have = df["encrypted"].fillna(False).to_numpy(dtype=bool)
    wanted = {bool(v) for v in values}
    return np.isin(have, list(wanted))


_MATCHERS: dict[str, Matcher] = {
    "uuid": _equal("uuid", ""),
    "source_ip": _ips("src_ip"),
    "destination_ip": _ips("dst_ip"),
    "source_ip_xlated": _ips("src_ip_xlated"),
    "source_pod": _pods("src"),
    "destination_pod": _pods("dst"),
    "source_service": _services("src"),
    "destination_service": _services("dst"),
    "source_fqdn": _fqdns("src"),
    "destination_fqdn": _fqdns("dst"),
    "source_label": _selectors("src_labels"),
    "destination_label": _selectors("dst_labels"),
    "node_labels": _selectors("node_labels"),
    "source_workload": _workloads("src"),
    "destination_workload": _workloads("dst"),
    "source_cluster_name": _equal("src_cluster"),
    "destination_cluster_name": _equal("dst_cluster"),
    "source_identity": _equal("src_identity", None, int),
    "destination_identity": _equal("dst_identity", None, int),
    "source_port": _equal("src_port", None, int),
    "destination_port": _equal("dst_port", None, int),
    "traffic_direction": _equal("traffic_direction", "TRAFFIC_DIRECTION_UNKNOWN"),
    "verdict": _equal("verdict", "VERDICT_UNKNOWN"),
    "drop_reason_desc": _drop_reasons,
    "event_type": _event_types,
    "http_status_code": _http_statuses,
    "protocol": _protocols,
    "reply": _reply,
    "dns_query": _regexes("dns_query"),
    "http_method": _http_methods,
    "http_path": _regexes("http_url", _go_url_path),
    "http_url": _regexes("http_url"),
    "http_header": _http_headers,
    "tcp_flags": _tcp_flag_sets,
    "node_name": _node_names,
    "ip_version": _equal("ip_version", "IP_NOT_USED"),
    "trace_id": _equal("trace_id", ""),
    "ip_trace_id": _equal("ip_trace_id", 0, int),
    "interface": _interfaces,
    "encrypted": _encrypted,
}


def filter_mask(df: pd.DataFrame, flt: FlowFilterDict, flows: Flows) -> Bools:
    """Rows that match every field of one FlowFilter."""
    acc = np.ones(len(df), dtype=bool)
    for fld, values in flt.items():
        if fld == "experimental":
            expressions = _cel_expressions(values)
            if expressions:
                acc &= _cel.matches(expressions, flows())
        elif values:
            acc &= _MATCHERS[fld](df, values)
    return acc


# A lost event read from a file is filtered as a Flow that is not there: hubble's filters see
# no value, and only these fields match it (the others need the flow to exist).
_LOST_EVENT: dict[str, Callable[[list[Any]], bool]] = {
    "source_label": lambda v: _selected([parse_selector(s) for s in v], None),
    "destination_label": lambda v: _selected([parse_selector(s) for s in v], None),
    "node_labels": lambda v: _selected([parse_selector(s) for s in v], None),
    "trace_id": lambda v: "" in v,
    "ip_trace_id": lambda v: 0 in [int(x) for x in v],
    "encrypted": lambda v: False in v,
}


def lost_event_matches(flt: FlowFilterDict, empty_flow: Any) -> bool:
    """Does one FlowFilter match a lost event (`empty_flow`: an empty flow.Flow, what CEL
    expressions see)?"""
    for fld, values in flt.items():
        if fld == "experimental":
            expressions = _cel_expressions(values)
            if expressions and not _cel.matches(expressions, [empty_flow])[0]:
                return False
        elif values and not _LOST_EVENT.get(fld, lambda _: False)(values):
            return False
    return True
