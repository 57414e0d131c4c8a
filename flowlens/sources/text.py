"""Reader for hubble's text output: `hubble observe -o compact | dict | table` (spec §3.2 to §3.5).

Grammar, one record per compact line:

    <TS>[ [<node>]]: <SRC> (<ID>) <ARROW> <DST> (<ID>) <TYPE> <VERDICT>[ BY <policies>] (<SUMMARY>)
    <TS> EVENTS LOST: <SOURCE> CPU(<cpu>) <n>[ (first: <TS>, last: <TS>)]

`-o dict` prints the same cells as `LABEL: value` lines (TIMESTAMP, [NODE], SOURCE, DESTINATION,
TYPE, VERDICT, SUMMARY; blocks separated by `------------`), `-o table` as columns under a header
row, aligned by tabwriter (cut at the header's column starts). Both omit identities and the arrow
and never swap replies; their lost events have TYPE `EVENTS LOST`, SUMMARY `CPU(<cpu>) - <n>[ …]`.

What a line carries is mapped back to the Flow's values. `<-` lines print a reply swapped, so the
reader swaps them back (source = the packet's sender); `->` is_reply False, `<>` NA (dict/table:
always NA). The TYPE label gives event_type/sub_type (trace point, drop text ⇒ drop reason,
`policy-verdict:<match> <DIRECTION>`, L7 `<proto>-<type>`, trace-sock, capture points); ALLOWED,
DENIED and AUDITED mean FORWARDED, DROPPED and AUDIT; the summary gives protocol, TCP flags, ICMP
type and the HTTP/DNS fields, and its `IP Trace ID: N; ` prefix and `; Auth: X` suffix become
ip_trace_id and auth_type. Hosts print `ns/name` for pods *and* services: the reader takes them as
pods. `^[` and `\\r` are unescaped back to ESC and CR.

Timestamps: every `--time-format` (StampMilli, YearMonthDay…, RFC3339[Milli|Micro|Nano], RFC1123Z,
`N/A`), told apart per line. StampMilli (`Jan  2 15:04:05.000`, the default) has no year: the first
one gets `year` if given, else the latest year that does not put it after the reference time
(`reference_time`, else the file's modification time, else now); after that the year steps forward
when the month jumps back by more than six (Dec → Jan: the file crossed New Year) and back when it
jumps forward by more than six (a line slightly out of order around New Year).

Speed: one compiled regex runs over a whole block of text (`findall`) and splits each line into six
keys — timestamp seconds, fraction+node, the first host printed, the link (identities, arrow and
second host), TYPE+VERDICT+SUMMARY, lost-event text. Each DISTINCT key is parsed once (with caches
across blocks) and Arrow `take` spreads the parsed values to the rows. Seconds and first hosts take
many values (a new second every few lines; the first host printed is mostly the client, with an
ephemeral port), so they are parsed in bulk: times of day and ports by Arrow, each date and each
host once in Python (other timestamp formats and IPv6 hosts go key by key). A reply's two ends are
swapped back as row indexes into one table of both ends. A block whose match count differs from
its line count is re-read line by line, to report each bad line as `name:lineno`.
"""

from __future__ import annotations

import calendar
import itertools
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from flowlens import _hubble as H
from flowlens.sources.batch import FlowBatch, ReadReport, paused_gc
from flowlens.sources.files import DEFAULT_MAX_LINE, LineBlocks, Opened, too_long
from flowlens.sources.native import native
from flowlens.sources.timerange import MAX_YEAR, MIN_YEAR, check_year
from flowlens.sources.timerange import TIME_RANGE as _TIME_RANGE

__all__ = ["read_text"]

T = TypeVar("T")
# One record: (timestamp seconds, fraction and node, first host, link, `<TYPE> <VERDICT>
# (<SUMMARY>)`, lost-event text), as printed. The link joins the first host to the tail: in compact
# `(<ID>) <ARROW> <HOST> (<ID>)`, in dict and table (no identities, no arrow) a tab and the
# destination. Flows leave the last part empty, lost events all but the first two and the last.
Row = tuple[str, str, str, str, str, str]

_BLOCK_BYTES = 4 << 20
_ROWS_PER_CHUNK = 50_000  # dict/table records converted together
_CACHE_LIMIT = 1_000_000  # distinct values kept per cache
_NS = 1_000_000_000

# --- line grammar -----------------------------------------------------------------------------

_SECONDS = (
    r"(N/A"
    r"|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"  # StampMilli
    r"|\d{4}-\d\d-\d\d(?:T\d\d(?::\d\d(?::\d\d)?)?)?"  # YearMonthDay[Hour[Minute]], RFC3339*
    r"|[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d)"  # RFC1123Z
)
# Possessive quantifiers and atomic groups (`*+`, `?+`, `(?>…)`) where no other split of a line
# could match: not backtracking there makes the block regex some 8% quicker.
_FRACTION_ZONE = r"(?:\.\d{1,9}+)?+(?:Z| \+0000)?+"
_IDENTITY = r"\((?>ID:\d+|[a-z0-9-]+)\)"
_LINK = rf"{_IDENTITY} (?:->|<-|<>) \S*+ {_IDENTITY}"
_COMPACT = re.compile(
    rf"^{_SECONDS}({_FRACTION_ZONE}(?: \[[^\]\n]*+\])?+)"
    rf"(?:: (\S*+) ({_LINK}) ([^\n]*\))| EVENTS LOST: ([^\n]*?))\r?$",
    re.MULTILINE,
)
_TIMESTAMP = re.compile(rf"{_SECONDS}({_FRACTION_ZONE})")
_NODE_STATUS = re.compile(
    rf"{_SECONDS}{_FRACTION_ZONE} \[[^\]]*\]: (?:Receiving flows from |\d+ nodes are unavailable: "
    r"|\d+ nodes removed from cluster: |Error \"|unknown node status event)"
)

_VERDICT_WORDS = ("FORWARDED|DROPPED|ERROR|AUDITED|AUDIT|REDIRECTED|TRACED|TRANSLATED"
                  "|VERDICT_UNKNOWN|ALLOWED|DENIED")
_POLICY = r"[^\s()]+ \([A-Za-z0-9]+\)"
# TYPE may hold spaces and parentheses, SUMMARY too: TYPE ends at the first verdict word that is
# followed by an optional policy list and the parenthesised summary running to the line's end.
_TAIL = re.compile(rf"(.*?) ({_VERDICT_WORDS})(?: BY ({_POLICY}(?:, {_POLICY})*))? \((.*)\)",
                   re.DOTALL)
_LOST = re.compile(r"(\S+) CPU\((-?\d+)\) (?:- )?(\d+)(?: \(first: (.+), last: (.+)\))?")

_POLICY_VERDICT_LABEL = re.compile(
    r"policy-verdict:(\S+)(?: (INGRESS|EGRESS|TRAFFIC_DIRECTION_UNKNOWN))?")
_L7_LABEL = re.compile(r"(http|dns|kafka|l7)-(request|response|sample|unknown_l7_type)(?: (.*))?",
                       re.DOTALL)
_DROP_CODE_LABEL = re.compile(r"(\d+), (\d+)")

_TRACE_ID = re.compile(r"IP Trace ID: (\d+); ")
_AUTH = re.compile(r"; Auth: ([A-Z_]+)$")
_HTTP_REQUEST = re.compile(r"(\S+) (\S+) (.+)", re.DOTALL)
_HTTP_RESPONSE = re.compile(r"(\S+) (\d+) (\d+)ms \((\S+) (.+)\)", re.DOTALL)
_DNS_QUERY = re.compile(r"DNS Query (\S*) (\S*)")
_DNS_ANSWER = re.compile(r"DNS Answer (.*) TTL: \d+ \((?:Proxy|Query) (\S*) (\S*)\)", re.DOTALL)
_DNS_IPS = re.compile(r'"([^"]*)"')

_MONTHS = {name: i for i, name in enumerate(calendar.month_abbr) if name}
_MAX_DAY = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_VERDICT_TEXT = {"ALLOWED": "FORWARDED", "DENIED": "DROPPED", "AUDITED": "AUDIT"}
_IS_REPLY: dict[str, bool | None] = {"->": False, "<-": True, "<>": None}
_RCODES = {"No Error": 0, "Format Error": 1, "Server Failure": 2, "Non-Existent Domain": 3,
           "Not Implemented": 4, "Query Refused": 5}
_L3_L4_PROTOCOLS = ("TCP", "UDP", "SCTP")
_TYPED_PROTOCOLS = ("ICMPv4", "ICMPv6", "VRRP", "IGMP")


class _Invalid(ValueError):
    """A record that does not follow hubble's text grammar."""


def _unescape(text: str) -> str:
    """Undo the printer's escaping of ESC (`^[`) and CR (`\\r`)."""
    if "^[" in text or "\\r" in text:
        return text.replace("^[", "\x1b").replace("\\r", "\r")
    return text


def _number(text: str, high: int) -> int | None:
    """A decimal number up to `high` (what its column holds), else None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        return None
    number = int(text)
    return number if number <= high else None


_MAX_SUBTYPE = (1 << 15) - 1  # event_subtype is Int16
_MAX_U64 = (1 << 64) - 1


# --- TYPE labels ------------------------------------------------------------------------------


class _Event(NamedTuple):
    event: str
    type: int | None
    subtype: int | None
    drop_reason: str | None = None
    drop_reason_code: int | None = None
    direction: str | None = None
    policy_match: str | None = None
    l7_type: str | None = None
    l7_protocol: str | None = None


def _drop_event(label: str, code: int) -> _Event:
    # Code 0 ("Success") is the enum's zero value: jsonpb omits it, so it carries no reason.
    name = H.DROP_REASON_NAMES.get(code) if code else None
    return _Event(label, 1, code, name, code or None)


def _static_labels() -> dict[str, _Event]:
    labels: dict[str, _Event] = {"UNKNOWN": _Event("UNKNOWN", None, None)}
    # Low codes first so that a text shared with a DropReason ("Invalid packet": 2 and 134)
    # reads as the enum value.
    drop_texts = {**{t: c for c, t in H.LOW_DROP_TEXTS.items()},
                  **{H.drop_text(c): c for c in H.DROP_REASONS if c}}
    labels.update({text: _drop_event(text, code) for text, code in drop_texts.items()})
    labels.update({p: _Event(p, 4, i) for i, p in enumerate(H.TRACE_POINTS)})
    labels.update({p: _Event(p, 3, n) for n, p in H.DEBUG_CAPTURE_POINTS.items()})
    labels.update({p: _Event(p, 7, i) for i, p in enumerate(H.SOCK_XLATE_POINTS)})
    return labels


_LABELS = _static_labels()


def _event(label: str) -> _Event:
    """event, event_type/sub_type and what else the TYPE label tells."""
    known = _LABELS.get(label)
    if known is not None:
        return known
    if m := _POLICY_VERDICT_LABEL.fullmatch(label):
        match, direction = m.groups()
        if direction == "TRAFFIC_DIRECTION_UNKNOWN":
            direction = None
        return _Event(f"policy-verdict:{match}", 5, 0, direction=direction, policy_match=match)
    if m := _L7_LABEL.fullmatch(label):
        proto, kind, _source = m.groups()
        return _Event(label, 129, 0, l7_type=kind.upper(),
                      l7_protocol=None if proto == "l7" else proto)
    m = _DROP_CODE_LABEL.fullmatch(label)
    code = _number(m[1] if m else label, _MAX_SUBTYPE)
    if m and code is not None:
        return _drop_event(label, code)
    if code is not None:
        return _Event(label, 4, code)  # a trace point without a name
    return _Event(label, None, None)  # a label this hubble version does not print: keep it


# --- SUMMARY ----------------------------------------------------------------------------------


class _Tail(NamedTuple):
    """Everything `<TYPE> <VERDICT>[ BY …] (<SUMMARY>)` carries, named as the frame's columns."""

    verdict: str
    drop_reason: str | None
    drop_reason_code: int | None
    event_type: int | None
    event_subtype: int | None
    event: str
    traffic_direction: str | None
    policy_match: str | None
    protocol: str | None
    tcp_flags: str | None
    icmp_type: str | None
    l7_type: str | None
    l7_protocol: str | None
    http_method: str | None
    http_url: str | None
    http_code: int | None
    http_protocol: str | None
    dns_query: str | None
    dns_rcode: int | None
    dns_qtypes: str | None
    dns_ips: str | None
    latency_ns: int | None
    auth_type: str | None
    ip_trace_id: int | None
    policies: str | None
    summary: str | None


class _Packet(NamedTuple):
    protocol: str | None = None
    tcp_flags: str | None = None
    icmp_type: str | None = None


class _L7(NamedTuple):
    http_method: str | None = None
    http_url: str | None = None
    http_code: int | None = None
    http_protocol: str | None = None
    dns_query: str | None = None
    dns_rcode: int | None = None
    dns_qtypes: str | None = None
    dns_ips: str | None = None
    latency_ns: int | None = None


_NO_PACKET = _Packet()
_NO_L7 = _L7()


def _packet(summary: str) -> _Packet:
    """L4 protocol, TCP flags and ICMP type from an L3/L4 summary."""
    if summary.startswith("TCP Flags: "):
        flags = set(summary[11:].split(", "))
        return _Packet("TCP", ",".join(f for f in H.TCP_FLAG_ORDER if f in flags) or None)
    if summary in _L3_L4_PROTOCOLS:
        return _Packet(summary)
    name, _, rest = summary.partition(" ")
    if name in _TYPED_PROTOCOLS and rest:
        return _Packet(name, None, rest if name.startswith("ICMP") else None)
    return _NO_PACKET


def _http(summary: str, response: bool) -> _L7:
    if response:
        if m := _HTTP_RESPONSE.fullmatch(summary):
            proto, code, ms, method, url = m.groups()
            millis = _number(ms, _MAX_U64 // 1_000_000)
            return _L7(method, url, _number(code, (1 << 15) - 1), proto,
                       latency_ns=None if millis is None else millis * 1_000_000)
    elif m := _HTTP_REQUEST.fullmatch(summary):
        proto, method, url = m.groups()
        return _L7(method, url, None, proto)
    return _NO_L7


def _dns(summary: str) -> _L7:
    if m := _DNS_QUERY.fullmatch(summary):
        return _L7(dns_query=m[1] or None, dns_qtypes=m[2] or None)
    if m := _DNS_ANSWER.fullmatch(summary):
        answer, query, qtypes = m.groups()
        if answer.startswith("RCode: "):
            rcode, ips = _RCODES.get(answer[7:]), None
        else:
            ips_match = _DNS_IPS.match(answer)
            rcode, ips = 0, (ips_match[1] or None) if ips_match else None
        return _L7(dns_query=query or None, dns_rcode=rcode, dns_qtypes=qtypes or None,
                   dns_ips=ips)
    return _NO_L7


def _l7(summary: str, ev: _Event) -> _L7:
    if ev.l7_protocol == "http":
        return _http(summary, ev.l7_type == "RESPONSE")
    if ev.l7_protocol == "dns":
        return _dns(summary)
    return _NO_L7


def _decorations(summary: str) -> tuple[int | None, str, str | None]:
    """Split the CLI's `IP Trace ID: N; ` prefix and `; Auth: X` suffix off Flow.Summary."""
    trace_id = auth = None
    if (m := _TRACE_ID.match(summary)) and (trace_id := _number(m[1], _MAX_U64)) is not None:
        summary = summary[m.end():]
    if m := _AUTH.search(summary):
        auth, summary = m[1], summary[:m.start()]
    return trace_id, summary, auth


_NO_TAIL = _Tail._make([None] * len(_Tail._fields))  # what a lost event's row holds


def _parse_tail(text: str) -> _Tail:
    """`<TYPE> <VERDICT>[ BY <policies>] (<SUMMARY>)`, parsed into column values."""
    if not text:
        return _NO_TAIL
    m = _TAIL.fullmatch(_unescape(text))
    if m is None:
        raise _Invalid("no '<TYPE> <VERDICT> (<SUMMARY>)'")
    label, verdict, policies, decorated = m.groups()
    ev = _event(label)
    trace_id, summary, auth = _decorations(decorated)
    packet = _NO_PACKET if ev.type == 129 else _packet(summary)
    return _Tail(
        _VERDICT_TEXT.get(verdict, verdict), ev.drop_reason, ev.drop_reason_code, ev.type,
        ev.subtype, ev.event, ev.direction, ev.policy_match, *packet, ev.l7_type,
        ev.l7_protocol, *_l7(summary, ev), auth, trace_id, policies, summary or None,
    )


# --- hosts and identities ---------------------------------------------------------------------


class _Host(NamedTuple):
    """A host as printed, without its port: `ns/pod`, an IP, DNS names, a MAC or nothing."""

    namespace: str | None = None
    pod: str | None = None
    ip: str | None = None
    names: str | None = None
    ip_version: str | None = None


class _Side(NamedTuple):
    """An endpoint as printed, with its port."""

    namespace: str | None
    pod: str | None
    ip: str | None
    port: int | None
    names: str | None
    ip_version: str | None


_NO_HOST = _Host()
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
_IPV6 = re.compile(r"[0-9a-fA-F:.]*:[0-9a-fA-F:.]*")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_HOSTS: dict[str, _Host] = {}


def _parse_host(host: str) -> _Host:
    if not host or _MAC.fullmatch(host):
        return _NO_HOST  # no IP message: hubble prints the MAC address or nothing
    if _IPV4.fullmatch(host):
        return _Host(ip=host, ip_version="IPv4")
    if _IPV6.fullmatch(host) and ("::" in host or host.count(":") == 7):
        return _Host(ip=host, ip_version="IPv6")
    if ":" in host or " " in host:
        raise _Invalid(f"bad host {host!r}")
    namespace, slash, pod = _unescape(host).partition("/")
    if slash:
        if not namespace or not pod or "/" in pod:
            raise _Invalid(f"bad host {host!r}")
        return _Host(namespace, pod)
    return _Host(names=namespace)


def _host(host: str) -> _Host:
    known = _HOSTS.get(host)
    if known is None:
        if len(_HOSTS) >= _CACHE_LIMIT:
            _HOSTS.clear()
        known = _HOSTS[host] = _parse_host(host)
    return known


def _parse_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise _Invalid(f"bad port {text!r}")
    return int(text)


def _parse_identity(token: str) -> int | None:
    """The number inside an identity token `(ID:n)` or `(name)`."""
    if not (token.startswith("(") and token.endswith(")")):
        raise _Invalid(f"bad identity {token!r}")
    token = token[1:-1]
    if token.startswith("ID:"):
        number = int(token[3:])
        if number >= 1 << 32:
            raise _Invalid(f"identity {number} out of range")
        return number
    return H.RESERVED_IDENTITY_NUMBERS.get(token)  # a reserved name this table lacks: unknown


def _memo(parse: Callable[[str], T]) -> Callable[[str], T]:
    """`parse` remembering its results (for low-cardinality tokens: ports, identities)."""
    known: dict[str, T] = {}

    def cached(text: str) -> T:
        value = known.get(text, known)
        if value is known:
            if len(known) >= _CACHE_LIMIT:
                known.clear()
            value = known[text] = parse(text)
        return value  # type: ignore[return-value]

    return cached


_port = _memo(_parse_port)
_identity = _memo(_parse_identity)


def _parse_side(token: str) -> _Side:
    """`ns/pod[:port]`, `ip[:port]`, `[ipv6]:port`, DNS names[:port], a bare IPv6 address."""
    port = None
    if token.startswith("["):
        address, sep, port_text = token[1:].partition("]:")
        host = _host(address)
        if not sep or host.ip_version != "IPv6":
            raise _Invalid(f"bad host {token!r}")
        port = _port(port_text)
    else:
        name, colon, port_text = token.rpartition(":")
        if colon and ":" not in name:  # one colon: a port; more: a bare IPv6 address
            token, port = name, _port(port_text)
        host = _host(token)
    return _Side(host.namespace, host.pod, host.ip, port, host.names, host.ip_version)


_side = _memo(_parse_side)


class _Link(NamedTuple):
    """What joins a record's first host to its tail: identities, is_reply, the second host."""

    first_identity: int | None
    second_identity: int | None
    is_reply: bool | None
    second: _Side


_NO_SIDE = _Side(None, None, None, None, None, None)
_NO_LINK = _Link(None, None, None, _NO_SIDE)  # what a lost event's row holds


def _parse_link(key: str) -> _Link:
    """`(<ID>) <ARROW> <HOST> (<ID>)` (compact), or a tab and the destination (dict, table)."""
    if not key:
        return _NO_LINK
    if key.startswith("\t"):
        return _Link(None, None, None, _side(key[1:]))
    parts = key.split(" ")
    if len(parts) != 4 or parts[1] not in _IS_REPLY:
        raise _Invalid("bad hosts")
    left_id, arrow, right, right_id = parts
    right_side = _side(right)  # hosts before identities: the first error is a host's
    return _Link(_identity(left_id), _identity(right_id), _IS_REPLY[arrow], right_side)


# --- timestamps -------------------------------------------------------------------------------

# The seconds of a timestamp: absolute nanoseconds, (month, day, hour, minute, second) for the
# year-less StampMilli, or None for `N/A`.
Stamp = int | tuple[int, int, int, int, int] | None


class _Suffix(NamedTuple):
    """What follows the seconds: the fraction (as nanoseconds) and the `[node]`."""

    nanos: int
    node: str | None


def _absolute(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise _Invalid(str(exc)) from exc
    ns = _nanos_in(year, (month, day, hour, minute, second))
    if ns is None:
        raise _Invalid(f"{year:04d}-{month:02d}-{day:02d} is outside {_TIME_RANGE}")
    return ns


def _clock_fields(hms: str) -> tuple[int, int, int]:
    return int(hms[0:2]), int(hms[3:5]), int(hms[6:8])


def _month(name: str) -> int:
    month = _MONTHS.get(name)
    if month is None:
        raise _Invalid(f"bad month {name!r}")
    return month


def _parse_stamp(key: str) -> Stamp:
    if key == "N/A":
        return None
    if key[0].isdigit():  # 2006-01-02[T15[:04[:05]]]
        hour = int(key[11:13]) if len(key) > 10 else 0
        minute = int(key[14:16]) if len(key) > 13 else 0
        second = int(key[17:19]) if len(key) > 16 else 0
        return _absolute(int(key[0:4]), int(key[5:7]), int(key[8:10]), hour, minute, second)
    if key[3] == ",":  # Mon, 02 Jan 2006 15:04:05
        return _absolute(int(key[12:16]), _month(key[8:11]), int(key[5:7]),
                         *_clock_fields(key[17:25]))
    month, day = _month(key[0:3]), int(key[4:6])  # Jan _2 15:04:05
    hour, minute, second = _clock_fields(key[7:15])
    if not (1 <= day <= _MAX_DAY[month] and hour < 24 and minute < 60 and second < 60):
        raise _Invalid(f"bad date {key!r}")
    return month, day, hour, minute, second


def _fraction_ns(text: str) -> int:
    """`.123`, `.123456789Z`, `Z`, ` +0000` or nothing, as nanoseconds."""
    digits = text[1:].rstrip("Z") if text.startswith(".") else ""
    return int(digits) * 10 ** (9 - len(digits)) if digits else 0


def _parse_suffix(key: str) -> _Suffix:
    node = None
    if key.endswith("]"):
        cut = key.find(" [")
        key, node = key[:cut], _unescape(key[cut + 2:-1])
    return _Suffix(_fraction_ns(key), node or None)


# StampMilli seconds, in ASCII digits (the block regex's `\d` takes others too: key by key).
_STAMP_MILLI = r"^[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-5][0-9]:[0-5][0-9]$"


class _MilliStamps(NamedTuple):
    """Distinct StampMilli seconds parsed in bulk: each one's date and second of the day."""

    dates: list[tuple[int, int]]  # (month, day)
    date: pa.Array  # each one's index into dates
    second: pa.Array  # of the day


def _milli_stamps(keys: list[str]) -> _MilliStamps | None:
    """Distinct seconds parsed in bulk when all are valid StampMilli: the time of day by Arrow,
    each date once. None otherwise: the caller then parses each alone, which also says why."""
    stamps = pa.array(keys, _STRING)
    if not pc.all(pc.match_substring_regex(stamps, _STAMP_MILLI)).as_py():
        return None
    date = pc.utf8_slice_codeunits(stamps, 0, 6).dictionary_encode()
    dates = []
    for text in date.dictionary.to_pylist():
        month, day = _MONTHS.get(text[:3]), int(text[4:6])
        if month is None or not 1 <= day <= _MAX_DAY[month]:
            return None
        dates.append((month, day))
    hour, minute, second = (pc.cast(pc.utf8_slice_codeunits(stamps, i, i + 2), _INT)
                            for i in (7, 10, 13))
    if pc.max(hour).as_py() > 23:
        return None
    seconds = pc.add(pc.multiply(pc.add(pc.multiply(hour, 60), minute), 60), second)
    return _MilliStamps(dates, date.indices, seconds)


class _Clock:
    """Turns timestamps into nanoseconds, giving year-less StampMilli stamps their year. A
    stamp with no time in the year it gets (Feb 29 of a year that is not a leap year, a time
    outside what the frame holds) has none (null): `problem` says why."""

    def __init__(self, year: int | None, reference: float) -> None:
        check_year(year)
        self.given = year
        self.reference = reference
        self.year: int | None = None  # year of the last StampMilli stamp
        self.month = 0  # its month
        self.problem = ""
        self._absolute: dict[tuple[int, tuple[int, ...]], int | None] = {}

    def state(self) -> tuple[int | None, int]:
        return self.year, self.month

    def restore(self, state: tuple[int | None, int]) -> None:
        self.year, self.month = state

    def seconds(self, stamps: list[Stamp], index: pa.Array) -> pa.Array:
        """Nanoseconds of each row's seconds (index into `stamps`), in row order."""
        months = {s[0] for s in stamps if isinstance(s, tuple)}
        if months:
            if self.year is None:
                first = next(s for s in map(stamps.__getitem__, index.to_pylist())
                             if isinstance(s, tuple))
                self.year, self.month = self._infer(first), first[0]
            if months != {self.month}:
                return self._walk(stamps, index)
        year = self.year or 0
        values = [self._at(year, s) if isinstance(s, tuple) else s for s in stamps]
        return pc.take(pa.array(values, pa.int64()), index)

    def milli(self, stamps: _MilliStamps, index: pa.Array) -> pa.Array | None:
        """`seconds` for StampMilli seconds parsed in bulk; None when the block changes month
        (for `seconds` to walk it row by row)."""
        months = {month for month, _ in stamps.dates}
        if len(months) > 1 or (self.year is not None and months != {self.month}):
            return None
        if self.year is None:
            first = index[0].as_py()
            month, day = stamps.dates[stamps.date[first].as_py()]
            hour, rest = divmod(stamps.second[first].as_py(), 3600)
            self.year, self.month = self._infer((month, day, hour, *divmod(rest, 60))), month
        # timegm is linear in the time of day: each date's midnight, plus the seconds.
        midnights = [self._at(self.year, (*d, 0, 0, 0)) for d in stamps.dates]
        if None in midnights or None in (self._at(self.year, (*d, 23, 59, 59))
                                         for d in stamps.dates):
            return None  # a date with no time in that year: stamp by stamp, to name them
        midnight = pa.array(midnights, _INT)
        nanos = pc.add(pc.take(midnight, stamps.date), pc.multiply(stamps.second, _NS))
        return pc.take(nanos, index)

    def instant(self, text: str) -> int | None:
        """One timestamp (lost-event first/last), read in the year of the stamps around it."""
        m = _TIMESTAMP.fullmatch(text)
        if m is None:
            raise _Invalid(f"bad timestamp {text!r}")
        stamp = _parse_stamp(m[1])
        if isinstance(stamp, tuple):
            year = self._year_near(stamp[0]) if self.year else self._infer(stamp)
            stamp = self._at(year, stamp)
            if stamp is None:
                raise _Invalid(self.problem)
        return None if stamp is None else stamp + _fraction_ns(m[2])

    def _walk(self, stamps: list[Stamp], index: pa.Array) -> pa.Array:
        """Row by row, for blocks where the month changes."""
        out: list[int | None] = []
        for stamp in map(stamps.__getitem__, index.to_pylist()):
            if isinstance(stamp, tuple):
                self.year, self.month = self._year_near(stamp[0]), stamp[0]
                stamp = self._at(self.year, stamp)
            out.append(stamp)
        return pa.array(out, pa.int64())

    def _year_near(self, month: int) -> int:
        year = self.year or 0
        if month - self.month < -6:
            return year + 1  # crossed New Year
        if month - self.month > 6:
            return year - 1  # a line from just before New Year
        return year

    def _infer(self, stamp: tuple[int, int, int, int, int]) -> int:
        if self.given is not None:
            return self.given
        top = time.gmtime(self.reference).tm_year
        for year in range(top, top - 8, -1):
            if stamp[:2] == (2, 29) and not calendar.isleap(year):
                continue
            if calendar.timegm((year, *stamp)) <= self.reference:
                return max(MIN_YEAR, min(year, MAX_YEAR))
        return max(MIN_YEAR, min(top - 1, MAX_YEAR))

    def _at(self, year: int, stamp: tuple[int, int, int, int, int]) -> int | None:
        """The stamp in `year`, in nanoseconds; None (and `problem`) if it has none."""
        key = (year, stamp)
        if key in self._absolute:
            ns = self._absolute[key]
        else:
            if len(self._absolute) >= _CACHE_LIMIT:
                self._absolute.clear()
            ns = self._absolute[key] = _nanos_in(year, stamp)
        if ns is None:
            month, day = stamp[:2]
            self.problem = (f"{calendar.month_abbr[month]} {day} is not a day of {year}"
                            if day > calendar.monthrange(year, month)[1] else
                            f"{calendar.month_abbr[month]} {day} {year} is outside "
                            f"{_TIME_RANGE}")
        return ns




def _nanos_in(year: int, stamp: tuple[int, int, int, int, int]) -> int | None:
    """Nanoseconds since the epoch of a month-day-time in `year`, if that day exists and the
    frame can hold it."""
    month, day = stamp[:2]
    if not 1 <= year <= 9999 or day > calendar.monthrange(year, month)[1]:
        return None
    ns = calendar.timegm((year, *stamp)) * _NS
    return ns if -(1 << 63) + _NS <= ns < (1 << 63) - _NS else None  # (with its fraction)



def _reference(reference_time: datetime | float | None, mtime: float | None) -> float:
    if isinstance(reference_time, datetime):
        if reference_time.tzinfo is None:
            reference_time = reference_time.replace(tzinfo=timezone.utc)
        return reference_time.timestamp()
    if reference_time is not None:
        return float(reference_time)
    return mtime if mtime is not None else time.time()


# --- lost events --------------------------------------------------------------------------------


class _Lost(NamedTuple):
    source: str
    cpu: int
    num_events_lost: int
    first: str | None
    last: str | None


def _parse_lost(text: str) -> _Lost:
    m = _LOST.fullmatch(text)
    if m is None:
        raise _Invalid("bad EVENTS LOST record")
    source, cpu, count, first, last = m.groups()
    for stamp in (first, last):
        if stamp is not None:
            parts = _TIMESTAMP.fullmatch(stamp)
            if parts is None:
                raise _Invalid(f"bad timestamp {stamp!r}")
            _parse_stamp(parts[1])
    number = _number(count, (1 << 63) - 1)
    if number is None or not -(1 << 31) <= int(cpu) < 1 << 31:
        raise _Invalid("EVENTS LOST numbers out of range")
    return _Lost(source, int(cpu), number, first, last)


# --- rows to columns ----------------------------------------------------------------------------

_STRING, _INT, _BOOL = pa.string(), pa.int64(), pa.bool_()
# Categorical columns leave as dictionary arrays: the frame builder then takes them as they are.
_CATEGORY = pa.dictionary(pa.int32(), pa.string())
_TAIL_TYPES = {name: (_INT if name in ("drop_reason_code", "event_type", "event_subtype",
                                       "http_code", "dns_rcode")
                      else pa.uint64() if name in ("latency_ns", "ip_trace_id")
                      else _STRING if name in ("policies", "summary") else _CATEGORY)
               for name in _Tail._fields}
_SIDE_TYPES = {"namespace": _CATEGORY, "pod": _CATEGORY, "ip": _CATEGORY, "port": _INT,
               "names": _CATEGORY}
# Every column a text record can fill, with its Arrow type.
_TYPES: dict[str, pa.DataType] = {
    "time": _INT, "node": _CATEGORY, "is_reply": _BOOL, "ip_version": _CATEGORY,
    **{f"{p}_{k}": t for p in ("src", "dst") for k, t in _SIDE_TYPES.items()},
    "src_identity": _INT, "dst_identity": _INT,
    **_TAIL_TYPES,
}
# Columns text never carries: handed to the frame builder as typed nulls, ready to use.
_NEVER = {**dict.fromkeys(("src_workload", "src_service", "src_labels", "dst_workload",
                           "dst_service", "dst_labels"), _CATEGORY), "uuid": _STRING}


def _parse_or_none(parse: Callable[[str], T]) -> Callable[[str], T | None]:
    """`parse`, except that the empty key (the part a record does not have) is None."""
    return lambda key: parse(key) if key else None


class _Keys:
    """The distinct keys of one column, each row's index into them, and their parsed values."""

    @classmethod
    def encoded(cls, codes: bytes, keys: list[str]) -> _Keys:
        """Keys encoded elsewhere (the C tokenizer): each row's index, as int32 bytes."""
        self = cls.__new__(cls)
        self.values = []
        self.keys = keys
        self.index = pa.Array.from_buffers(pa.int32(), len(codes) // 4, [None, pa.py_buffer(codes)])
        return self

    def __init__(self, keys: Sequence[str]) -> None:
        self.values: list[Any] = []
        if not any(keys):  # only "" (the lost-event text of flows): quicker
            self.index = pa.repeat(pa.scalar(0, pa.int32()), len(keys))
            self.keys = [""]
            return
        # Each new key gets the next number on first sight, in one pass in C.
        numbers: defaultdict[str, int] = defaultdict(itertools.count().__next__)
        self.index = pa.array(list(map(numbers.__getitem__, keys)), pa.int32())
        self.keys = list(numbers)

    def parse(self, cache: dict[str, Any], parse: Callable[[str], Any]) -> bool:
        """Parse each distinct key (through `cache`); False when one does not parse."""
        self.values = [_lookup(k, cache, parse) for k in self.keys]
        return not any(isinstance(v, _Invalid) for v in self.values)

    def keep(self, rows: pa.Array) -> None:
        """Keep only these rows (a boolean mask)."""
        self.index = pc.filter(self.index, rows)

    def spread(self, values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array | None:
        """Per-distinct `values` as a column; None when every value is None."""
        if all(v is None for v in values):
            return None
        if arrow_type == _CATEGORY:
            return pc.take(pa.array(values, _STRING).dictionary_encode(), self.index)
        return pc.take(pa.array(values, arrow_type), self.index)


# An end's values as columns, one row per distinct end.
_END_TYPES = {"namespace": _STRING, "pod": _STRING, "ip": _STRING, "port": _INT,
              "names": _STRING, "ip_version": _STRING}


def _ends(sides: Sequence[_Side]) -> dict[str, pa.Array]:
    """Parsed ends as columns."""
    return {name: pa.array(values, _END_TYPES[name])
            for name, values in zip(_Side._fields, zip(*sides, strict=True), strict=True)}


# A host without `:` or `[` (a pod, an IPv4 address, DNS names), maybe with a port.
_PLAIN_END = r"^(?P<host>[^:\[]*)(?::(?P<port>[0-9]{1,5}))?$"


def _parse_ends(tokens: list[str], hosts: dict[str, Any],
                sides: dict[str, Any]) -> dict[str, pa.Array] | None:
    """Distinct ends parsed in bulk: for `host[:port]`, each distinct host once and the ports by
    Arrow; others (IPv6) one by one. None when one does not parse: the caller then parses each end
    alone, which also says why."""
    parts = pc.extract_regex(pa.array(tokens, _STRING), _PLAIN_END)
    host, digits = parts.flatten()  # null where an end is not `host[:port]`
    host = host.dictionary_encode()
    parsed = [_lookup(h, hosts, _parse_host) for h in host.dictionary.to_pylist()]
    if any(isinstance(h, _Invalid) for h in parsed):
        return None
    port = pc.cast(pc.if_else(pc.equal(digits, ""), pa.scalar(None, _STRING), digits), _INT)
    span = pc.min_max(port).as_py()
    if span["min"] is not None and not (span["min"] > 0 and span["max"] < 65536):
        return None
    columns = {name: pc.take(pa.array([h[i] for h in parsed], _STRING), host.indices)
               for i, name in enumerate(_Host._fields)}
    columns["port"] = port
    if parts.null_count:  # not `host[:port]`: parsed alone, in place of what the above made
        odd = parts.is_null()
        others = [_lookup(t, sides, _parse_side)
                  for t in itertools.compress(tokens, odd.to_pylist())]
        if any(isinstance(side, _Invalid) for side in others):
            return None
        columns = {name: pc.replace_with_mask(column, odd, _ends(others)[name])
                   for name, column in columns.items()}
    return columns


def _categorical(codes: pa.Array, names: pa.Array) -> pa.Array:
    """Rows' codes into `names` as a dictionary array of only the names the rows use, in order of
    first use: what encoding the column itself gives, without hashing its strings."""
    used = codes.dictionary_encode()
    return pa.DictionaryArray.from_arrays(used.indices, pc.take(names, used.dictionary))


def _lookup(key: str, cache: dict[str, Any], parse: Callable[[str], Any]) -> Any:
    """The parsed key, or the _Invalid saying why it does not parse."""
    value = cache.get(key, cache)
    if value is cache:
        try:
            value = parse(key)
        except ValueError as exc:  # _Invalid, or int() of a digit run it cannot take
            value = exc if isinstance(exc, _Invalid) else _Invalid(str(exc))
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value
    return value


@dataclass
class _Chunk:
    """Arrow columns of some flows, and the lost events among them."""

    columns: dict[str, pa.Array]
    size: int
    lost_events: list[dict[str, Any]] = field(default_factory=list)
    flush: bool = False  # the input paused here: hand on what was read (stdin, pipes)


class _Converter:
    """Rows to columns for one source, parsing each distinct key once across the source."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock
        self.flows = 0  # flows converted so far: lost-event positions count across batches
        self._caches: list[dict[str, Any]] = [{}, {}, {}, {}, {}, {}]
        self._parsers: list[Callable[[str], Any]] = [
            _parse_stamp, _parse_suffix, _parse_side, _parse_link, _parse_tail,
            _parse_or_none(_parse_lost)]
        self._hosts: dict[str, Any] = {}

    def problem(self, row: Row) -> str | None:
        """Why the row does not parse, or None."""
        for key, cache, parse in zip(row, self._caches, self._parsers, strict=True):
            value = _lookup(key, cache, parse)
            if isinstance(value, _Invalid):
                return str(value)
        return None

    def convert(self, rows: list[Row], bad: Callable[[int, str], None]) -> _Chunk:
        """Columns for the rows; a row with a part that does not parse goes to `bad(i, why)`."""
        if not rows:
            return _Chunk({}, 0)
        chunk = self._from_keys([_Keys(k) for k in zip(*rows, strict=True)], rows, bad)
        assert chunk is not None
        return chunk

    def convert_keys(self, keys: list[_Keys]) -> _Chunk | None:
        """Columns for rows given as their six keys (the C tokenizer's); None when one does not
        parse: the caller converts the rows one by one then."""
        return self._from_keys(keys, None, lambda i, why: None)

    def _from_keys(self, keys: list[_Keys], rows: list[Row] | None,
                   bad: Callable[[int, str], None]) -> _Chunk | None:
        seconds, suffix, firsts, links, tails, lost = keys
        # Seconds and first hosts are mostly distinct (ephemeral ports): parsed in bulk when they
        # are of the usual kinds, else key by key like the other parts.
        stamps = _milli_stamps(seconds.keys)
        ends = _parse_ends(firsts.keys, self._hosts, self._caches[2])
        c, p = self._caches, self._parsers
        valid = ((stamps is not None or seconds.parse(c[0], p[0])) and suffix.parse(c[1], p[1])
                 and (ends is not None or firsts.parse(c[2], p[2]))
                 and links.parse(c[3], p[3]) and tails.parse(c[4], p[4])
                 and lost.parse(c[5], p[5]))
        if not valid:
            if rows is None:
                return None
            good = []
            for i, row in enumerate(rows):
                why = self.problem(row)
                if why is None:
                    good.append(row)
                else:
                    bad(i, why)
            return self.convert(good, bad)
        state = self.clock.state()
        nanos = None if stamps is None else self.clock.milli(stamps, seconds.index)
        if nanos is None:  # not parsed in bulk, or the month changes: stamp by stamp
            if not seconds.values:
                seconds.parse(c[0], p[0])
            nanos = self.clock.seconds(seconds.values, seconds.index)
            given = pc.take(pa.array([v is not None for v in seconds.values], _BOOL),
                            seconds.index)
            wrong = pc.and_(given, pc.is_null(nanos))  # a stamp with no time in its year
            if pc.any(wrong).as_py():
                self.clock.restore(state)
                if rows is None:
                    return None
                for i in pc.indices_nonzero(wrong).to_pylist():
                    bad(i, self.clock.problem)
                kept = pc.indices_nonzero(pc.invert(wrong)).to_pylist()
                return self.convert([rows[i] for i in kept],
                                    lambda i, why: bad(kept[i], why))
        if ends is None:
            ends = _ends(firsts.values)
        return self._columns(nanos, suffix, links, tails, lost, firsts.index, ends)

    def _columns(self, seconds: pa.Array, suffix: _Keys, links: _Keys, tails: _Keys,
                 lost: _Keys, firsts: pa.Array, ends: dict[str, pa.Array]) -> _Chunk:
        """Columns from the rows' seconds, keys and first hosts (indexes into `ends`)."""
        nanos = pc.add(seconds, pc.take(pa.array([s.nanos for s in suffix.values], _INT),
                                        suffix.index))
        lost_events: list[dict[str, Any]] = []
        if any(v is not None for v in lost.values):
            is_flow = pc.take(pa.array([v is None for v in lost.values], _BOOL), lost.index)
            lost_events = self._lost_events(lost, is_flow, nanos, suffix)
            nanos = pc.filter(nanos, is_flow)
            firsts = pc.filter(firsts, is_flow)
            for keys in (suffix, links, tails):
                keys.keep(is_flow)
        size = len(nanos)
        self.flows += size
        cols: dict[str, pa.Array | None] = {"time": nanos}
        cols["node"] = suffix.spread([s.node for s in suffix.values], _CATEGORY)
        first_identity, second_identity, is_reply, second_hosts = zip(*links.values, strict=True)
        cols["is_reply"] = links.spread(is_reply, _BOOL)
        identities = [pc.take(pa.array(ids, _INT), links.index)
                      for ids in (first_identity, second_identity)]
        # Both ends in one table, the first hosts then the links' second hosts, and each row's
        # index into it for either end: a reply (printed destination first) swaps them back.
        offset = pa.scalar(len(ends["port"]), pa.int32())  # where the second hosts start
        more = _ends(second_hosts)
        ends = {name: pa.concat_arrays([column, more[name]]) for name, column in ends.items()}
        indexes = [firsts, pc.add(links.index, offset)]
        if any(is_reply):
            swap = pc.fill_null(cols["is_reply"], False)
            for pair in (identities, indexes):
                pair[:] = pc.if_else(swap, pair[1], pair[0]), pc.if_else(swap, pair[0], pair[1])
        cols["src_identity"], cols["dst_identity"] = identities
        for name, column in ends.items():
            if column.null_count == len(column):
                continue
            if name == "port":
                cols["src_port"], cols["dst_port"] = (pc.take(column, i) for i in indexes)
                continue
            # Categories: only the names the column uses, in order of first use.
            names = column.dictionary_encode()
            src, dst = (pc.take(names.indices, i) for i in indexes)
            if name == "ip_version":  # the flow's, from whichever end has an IP
                cols[name] = _categorical(pc.coalesce(src, dst), names.dictionary)
            else:
                cols[f"src_{name}"] = _categorical(src, names.dictionary)
                cols[f"dst_{name}"] = _categorical(dst, names.dictionary)
        for name, values in zip(_Tail._fields, zip(*tails.values, strict=True), strict=True):
            cols[name] = tails.spread(values, _TAIL_TYPES[name])
        return _Chunk({k: v for k, v in cols.items() if v is not None}, size, lost_events)

    def _lost_events(self, lost: _Keys, is_flow: pa.Array, nanos: pa.Array,
                     suffix: _Keys) -> list[dict[str, Any]]:
        flows_before = pc.subtract(pc.cumulative_sum(pc.cast(is_flow, _INT)),
                                   pc.cast(is_flow, _INT))
        events = []
        for i in pc.indices_nonzero(pc.invert(is_flow)).to_pylist():
            record: _Lost = lost.values[lost.index[i].as_py()]
            events.append({
                "time": nanos[i].as_py(),
                "node": suffix.values[suffix.index[i].as_py()].node,
                "source": record.source,
                "cpu": record.cpu,
                "num_events_lost": record.num_events_lost,
                "first": None if record.first is None else self.clock.instant(record.first),
                "last": None if record.last is None else self.clock.instant(record.last),
                "position": self.flows + flows_before[i].as_py(),
            })
        return events


# --- input --------------------------------------------------------------------------------------


def _blocks(blocks: LineBlocks) -> Iterator[tuple[str, bool]]:
    """The input as text in pieces of whole lines; True marks a last line without newline."""
    first = True
    for data, unterminated in blocks:
        text = data.decode("utf-8", "replace")
        if first:
            text, first = text.removeprefix("\ufeff"), False
        yield text, unterminated


# What `_lines` yields at the end of a block after which the input paused.
_PAUSE = (0, "", False)


def _lines(blocks: LineBlocks) -> Iterator[tuple[int, str, bool]]:
    """(line number, line without its newline or CR, is an unterminated last line); `_PAUSE`
    where the input paused."""
    lineno = 0
    for text, unterminated in _blocks(blocks):
        lines = text.split("\n")
        if not unterminated:
            lines.pop()
        for line in lines:
            lineno += 1
            yield lineno, line.removesuffix("\r"), unterminated
        if blocks.paused:
            yield _PAUSE


def _blank(line: str) -> bool:
    return not line or line.isspace()


class _Reader:
    """One source's records as chunks of columns; bad records go to the report."""

    def __init__(self, opened: Opened, report: ReadReport, clock: _Clock,
                 max_line: int) -> None:
        self.name = opened.name
        self.report = report
        self.rows = _Converter(clock)
        self.blocks = LineBlocks(opened.stream, self._too_long, _BLOCK_BYTES, max_line)

    def _too_long(self, lineno: int) -> None:
        self.report.bad(f"{self.name}:{lineno}", too_long(self.blocks.max_line))

    def _bad(self, lineno: int, why: str, unterminated: bool) -> None:
        if unterminated:
            self.report.cut_off(f"{self.name}:{lineno}")
        else:
            self.report.bad(f"{self.name}:{lineno}", why)

    def _convert(self, rows: list[Row], linenos: Sequence[int], unterminated: bool) -> _Chunk:
        last = linenos[-1] if linenos else 0

        def bad(i: int, why: str) -> None:
            self._bad(linenos[i], why, unterminated and linenos[i] == last)

        with paused_gc():
            return self.rows.convert(rows, bad)

    # compact

    def compact(self) -> Iterator[_Chunk]:
        lineno = 0
        for text, unterminated in _blocks(self.blocks):
            lines = text.count("\n")
            if not unterminated:
                with paused_gc():
                    chunk = self._fast_compact(text)
                    if chunk is None:
                        rows = _COMPACT.findall(text)
                        if len(rows) == lines:
                            chunk = self._convert(rows, range(lineno + 1, lineno + lines + 1),
                                                  False)
                        del rows  # before the collector resumes: it would walk every row again
                if chunk is not None:
                    chunk.flush = self.blocks.paused
                    yield chunk
                    lineno += lines
                    continue
            chunk = self._compact_lines(text, lineno, unterminated)
            chunk.flush = self.blocks.paused
            yield chunk
            lineno += lines + unterminated

    def _fast_compact(self, text: str) -> _Chunk | None:
        """A block's records by the C tokenizer (it splits lines as `_COMPACT` does) when built;
        None when the regex must (a line it does not match, a part that does not parse)."""
        module = native()
        keys = module.compact_keys(text) if module is not None else None
        if keys is None:
            return None
        return self.rows.convert_keys([_Keys.encoded(codes, k) for codes, k in keys])

    def _compact_lines(self, text: str, lineno: int, unterminated: bool) -> _Chunk:
        """The careful path: line by line, reporting each line that is not a record."""
        rows: list[Row] = []
        linenos: list[int] = []
        lines = text.split("\n")
        if not unterminated:
            lines.pop()
        for number, line in enumerate(lines, lineno + 1):
            if _blank(line):
                continue
            m = _COMPACT.match(line)
            if m is not None:
                rows.append(m.groups(default=""))  # type: ignore[arg-type]
                linenos.append(number)
            elif _NODE_STATUS.match(line):
                self.report.other_records += 1
            else:
                self._bad(number, "not a hubble compact line", unterminated)
        return self._convert(rows, linenos, unterminated)

    # dict and table

    def _chunks(self, records: Iterator[tuple[int, Row | None, bool]]) -> Iterator[_Chunk]:
        rows: list[Row] = []
        linenos: list[int] = []
        cut = False
        for lineno, row, unterminated in records:
            if row is None:  # the input paused
                chunk = self._convert(rows, linenos, cut)
                chunk.flush = True
                yield chunk
                rows, linenos = [], []
                continue
            rows.append(row)
            linenos.append(lineno)
            cut = unterminated
            if len(rows) >= _ROWS_PER_CHUNK:
                yield self._convert(rows, linenos, cut)
                rows, linenos = [], []
        yield self._convert(rows, linenos, cut)

    def dict_blocks(self) -> Iterator[_Chunk]:
        return self._chunks(self._dict_records())

    def _dict_records(self) -> Iterator[tuple[int, Row | None, bool]]:
        block: list[tuple[str, str]] = []
        start = 0
        cut = False
        for lineno, line, unterminated in _lines(self.blocks):
            if not lineno:  # the input paused: a whole record waits for no separator
                if [label for label, _ in block] in (*_DICT_LABELS, *_DICT_LOST_LABELS):
                    yield from self._dict_block(block, start, cut)
                    block = []
                yield 0, None, False
                continue
            if _blank(line):
                continue
            if line == _DICT_SEPARATOR:
                yield from self._dict_block(block, start, cut)
                block = []
                continue
            m = _DICT_LINE.fullmatch(line)
            label, value = (m[1], m[2]) if m else ("", line)
            if label == "TIMESTAMP" and block:
                yield from self._dict_block(block, start, cut)
                block = []
            if not block:
                start = lineno
            if len(block) <= _MAX_DICT_LINES:  # (more is a bad record: keep it bounded)
                block.append((label, value))
            cut = unterminated
        yield from self._dict_block(block, start, cut)

    def _dict_block(self, block: list[tuple[str, str]], lineno: int,
                    cut: bool) -> Iterator[tuple[int, Row, bool]]:
        if not block:
            return
        cells = dict(block)
        if "STATE" in cells:  # a node status record
            self.report.other_records += 1
            return
        lost = cells.get("TYPE") == "EVENTS LOST"
        if [label for label, _ in block] not in (_DICT_LOST_LABELS if lost else _DICT_LABELS):
            self._bad(lineno, "not a hubble dict record", cut)
            return
        try:
            yield lineno, _record(cells["TIMESTAMP"], cells.get("NODE", ""), cells["SOURCE"],
                                  cells.get("DESTINATION", ""), cells["TYPE"],
                                  cells["VERDICT"], cells["SUMMARY"]), cut
        except _Invalid as exc:
            self._bad(lineno, str(exc), cut)

    def table(self) -> Iterator[_Chunk]:
        return self._chunks(self._table_records())

    def _table_records(self) -> Iterator[tuple[int, Row | None, bool]]:
        starts: list[int] | None = None
        for lineno, line, unterminated in _lines(self.blocks):
            if not lineno:  # the input paused
                yield 0, None, False
                continue
            if _blank(line):
                continue
            if _TABLE_HEADER.fullmatch(line):
                starts = [m.start() for m in re.finditer(r"\S+", line)]
                continue
            try:
                if starts is None:
                    raise _Invalid("no table header before this line")
                cells = _table_cells(line, starts)
                if len(cells) == 6:
                    cells.insert(1, "")  # no NODE column
                yield lineno, _record(*cells), unterminated
            except _Invalid as exc:
                self._bad(lineno, str(exc), unterminated)


_DICT_SEPARATOR = "-" * 12
_DICT_LINE = re.compile(r" *([A-Z]+): ?(.*)")
_FLOW_LABELS = ["TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]
_LOST_LABELS = ["TIMESTAMP", "SOURCE", "TYPE", "VERDICT", "SUMMARY"]
_DICT_LABELS = (_FLOW_LABELS, ["TIMESTAMP", "NODE", *_FLOW_LABELS[1:]])
_DICT_LOST_LABELS = (_LOST_LABELS, ["TIMESTAMP", "NODE", *_LOST_LABELS[1:]], *_DICT_LABELS)
_MAX_DICT_LINES = max(map(len, _DICT_LOST_LABELS))
_TABLE_HEADER = re.compile(r"TIMESTAMP +(?:NODE +)?SOURCE +DESTINATION +TYPE +VERDICT +SUMMARY *")


def _record(timestamp: str, node: str, source: str, destination: str, kind: str, verdict: str,
            summary: str) -> Row:
    """A dict block's or table row's cells as a row."""
    m = _TIMESTAMP.fullmatch(timestamp)
    if m is None:
        raise _Invalid(f"bad timestamp {timestamp!r}")
    node = "" if node == "-" else node
    suffix = m[2] + (f" [{node}]" if node else "")
    if kind == "EVENTS LOST":
        return m[1], suffix, "", "", "", f"{source} {summary}"
    if "\t" in source + destination:
        raise _Invalid("tab in a host")
    return m[1], suffix, source, f"\t{destination}", f"{kind} {verdict} ({summary})", ""


def _table_cells(line: str, starts: list[int]) -> list[str]:
    """Cut a table row at the header's column starts (tabwriter pads every cell but the last)."""
    for start in starts[1:]:
        if len(line) > start and line[start - 1] != " ":
            raise _Invalid("cells not aligned with the header")
    cells = [line[a:b].rstrip(" ") for a, b in itertools.pairwise(starts)]
    return [*cells, line[starts[-1]:]]


# --- batches ------------------------------------------------------------------------------------


def _batches(chunks: Iterable[_Chunk], size: int) -> Iterator[FlowBatch]:
    """Regroup chunks into batches of `size` flows; a lost event rides with the flows before it."""
    size = max(1, size)
    pending: list[_Chunk] = []
    count = 0  # flows pending
    emitted = 0  # flows already yielded
    for chunk in chunks:
        pending.append(chunk)
        count += chunk.size
        while count >= size:
            batch, rest = _cut(_joined(pending, count), size, emitted + size)
            yield batch
            pending, count, emitted = [rest], rest.size, emitted + size
        if chunk.flush and (count or any(c.lost_events for c in pending)):
            batch, rest = _cut(_joined(pending, count), count, None)
            yield batch
            pending, count, emitted = [], 0, emitted + count
    if count or any(c.lost_events for c in pending):
        yield _cut(_joined(pending, count), count, None)[0]


def _joined(chunks: list[_Chunk], size: int) -> _Chunk:
    if len(chunks) == 1:
        return chunks[0]
    names = {name for c in chunks for name in c.columns}
    columns = {name: pa.concat_arrays([c.columns.get(name, pa.nulls(c.size, _TYPES[name]))
                                       for c in chunks]) for name in names}
    return _Chunk(columns, size, [e for c in chunks for e in c.lost_events])


def _cut(chunk: _Chunk, size: int, last: int | None) -> tuple[FlowBatch, _Chunk]:
    """The first `size` flows as a batch with the lost events up to position `last` (None: all),
    and the rest."""
    mine = [e for e in chunk.lost_events if last is None or e["position"] <= last]
    columns = {n: chunk.columns[n].slice(0, size) if n in chunk.columns else pa.nulls(size, t)
               for n, t in _TYPES.items()}
    columns.update({n: pa.nulls(size, t) for n, t in _NEVER.items()})
    batch = FlowBatch(columns=columns, size=size, lost_events=mine)
    rest = _Chunk({n: a.slice(size) for n, a in chunk.columns.items()}, chunk.size - size,
                  chunk.lost_events[len(mine):])
    return batch, rest


def read_text(opened: Opened, report: ReadReport, fmt: str, *, year: int | None = None,
              batch_size: int = 50_000, reference_time: datetime | float | None = None,
              max_line: int = DEFAULT_MAX_LINE) -> Iterator[FlowBatch]:
    """Yield batches of flows from hubble's compact, dict or table text; bad lines go to `report`.

    `year` is the year of the first year-less (StampMilli) timestamp; without it the year is
    inferred against `reference_time` (a datetime or POSIX seconds), else the file's mtime.
    Lost events' `position` counts the source's flows before them, across batches.
    """
    clock = _Clock(year, _reference(reference_time, opened.mtime))
    reader = _Reader(opened, report, clock, max_line)
    readers = {"compact": reader.compact, "dict": reader.dict_blocks, "table": reader.table}
    if fmt not in readers:
        raise ValueError(f"read_text reads compact, dict or table, not {fmt!r}")
    yield from _batches(readers[fmt](), batch_size)
