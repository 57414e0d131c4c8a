"""Asks without answers: SYNs without a SYN-ACK, echo requests without a reply, DNS queries
without a response — the "missing" panels, followed down to who asked whom.

The dashboards draw these as a difference of two rates (SYN - SYN-ACK, EchoRequest - EchoReply,
queries - responses). That difference also counts packets traced at more than one observation
point (a SYN leaving one node and entering another, its SYN-ACK traced once): flows pair each
ask with its answer instead. An answer has the ask's key read from the opposite side (its source
is the ask's destination); an ask is answered when an answer of its key comes within
ANSWER_WINDOW either side of it (an echo request: a reply within ECHO_REPLY_TIMEOUT after it, as
ICMP has no id in a flow and its keys repeat).

Asks and answers are paired over every flow given, and only the asks of the `selected` flows
are counted: a filter that selects a client's requests does not hide the server's answers (a
filter selects the asks; their answers follow). A side is its IP, or `namespace/pod` where the
input names the pod instead (hubble's text).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from flowlens.analyses.labels import (
    endpoint,
    is_,
    peer_columns,
    peer_names,
    rows,
    sort_largest,
    tcp_flag_labels,
)

_PEERS = [*peer_columns("src"), *peer_columns("dst")]
# How long a ping waits for its reply by default.
ECHO_REPLY_TIMEOUT = pd.Timedelta(seconds=10)
# An answer pairs with an ask of its key no more than this before or after it: a SYN-ACK with
# its SYNs (Linux gives up a connect after 127 s of retransmitted SYNs), a DNS response with
# its query, an HTTP response with its request. Every pairing rule is bounded in time, so a
# report over parts of its input (a store's partitions, or a window) pairs exactly when each
# part sees that far beyond its edges (flowlens.analyses.parts.PAIRING_REACH).
ANSWER_WINDOW = pd.Timedelta(minutes=2)
Direction = Literal["nearest", "forward"]


def unanswered(asks: pd.DataFrame, answers: pd.DataFrame, keys: Sequence[str],
               answer_keys: Sequence[str], shown: Sequence[str], asked: str, *,
               within: pd.Timedelta = ANSWER_WINDOW, direction: Direction = "nearest",
               distinct: str | None = None) -> pd.DataFrame:
    """The asks no answer matched, counted per source, destination and `shown` columns.
    Columns: source, destination, *shown, [distinct: how many keys,] asked, first, last."""
    return by_peers(open_asks(asks, answers, keys, answer_keys, asked, within=within,
                              direction=direction), shown, asked, distinct)


def open_asks(asks: pd.DataFrame, answers: pd.DataFrame, keys: Sequence[str],
              answer_keys: Sequence[str], asked: str, *, within: pd.Timedelta = ANSWER_WINDOW,
              direction: Direction = "nearest") -> pd.DataFrame:
    """The asks no answer matched (an answer with their key within `within`, `direction`
    "nearest" either side, "forward" after), per key: how many, the first and last, and each
    peer column's first value. Parts of an input in order add up (`merge_open_asks`)."""
    answered = _answered_in_time(asks, answers, keys, answer_keys, within, direction)
    return asks[~answered].groupby(list(keys), observed=True, sort=False).agg(
        **{asked: ("time", "size"), "first": ("time", "min"), "last": ("time", "max")},
        **{c: (c, "first") for c in _PEERS if c not in keys}).reset_index()


def merge_open_asks(parts: Sequence[pd.DataFrame], keys: Sequence[str],
                    asked: str) -> pd.DataFrame:
    """`open_asks` of consecutive parts of an input, in order, as of the whole."""
    joined = pd.concat(parts, ignore_index=True)
    peers = [c for c in joined.columns if c not in (*keys, asked, "first", "last")]
    return joined.groupby(list(keys), sort=False).agg(
        **{asked: (asked, "sum"), "first": ("first", "min"), "last": ("last", "max")},
        **{c: (c, "first") for c in peers}).reset_index()


def by_peers(per_key: pd.DataFrame, shown: Sequence[str], asked: str,
             distinct: str | None = None) -> pd.DataFrame:
    """`open_asks` per source, destination and `shown` columns, most asks first."""
    out = pd.DataFrame({
        "source": np.asarray(peer_names(per_key, "src"), dtype=object),
        "destination": np.asarray(peer_names(per_key, "dst"), dtype=object),
        **{c: per_key[c].to_numpy() for c in shown},
        "keys": 1,
        asked: per_key[asked].to_numpy(),
        "first": per_key["first"].array,
        "last": per_key["last"].array,
    })
    groups = ["source", "destination", *shown]
    summed = out.groupby(groups, sort=True, dropna=False).agg(
        keys=("keys", "sum"), **{asked: (asked, "sum")},
        first=("first", "min"), last=("last", "max")).reset_index()
    summed = sort_largest(summed, asked, groups)
    return summed.rename(columns={"keys": distinct}) if distinct else summed.drop(columns="keys")


def _answered_in_time(asks: pd.DataFrame, answers: pd.DataFrame, keys: Sequence[str],
                      answer_keys: Sequence[str], within: pd.Timedelta,
                      direction: Direction) -> pd.Series:
    """Asks with an answer of their key no further than `within` (`direction`: "nearest"
    either side, "forward" after): an answer whose time is in the ask's range. Asks and
    answers without a time or with an NA key pair with nothing."""
    ask_key, answer_key = _joint_keys(asks, keys, answers, answer_keys)
    ask_ns, untimed = _nanoseconds(asks["time"])
    answer_ns, answer_untimed = _nanoseconds(answers["time"])
    ask_key[untimed] = -1
    answer_key[answer_untimed] = -1
    reach = within.as_unit("ns").value
    low = ask_ns - (reach if direction == "nearest" else 0)
    high = ask_ns + reach
    # Times as dense ranks, so that a key and a time sort as one int64: key * span + rank.
    times, ranks = np.unique(np.concatenate([answer_ns, low, high]), return_inverse=True)
    span, n, m = len(times), len(answer_ns), len(ask_ns)
    ranks = ranks.reshape(-1)
    usable = answer_key >= 0
    placed = np.sort(answer_key[usable] * span + ranks[:n][usable])
    start = np.searchsorted(placed, ask_key * span + ranks[n:n + m], side="left")
    stop = np.searchsorted(placed, ask_key * span + ranks[n + m:], side="right")
    return pd.Series((ask_key >= 0) & (stop > start), index=asks.index)


def _nanoseconds(times: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Times as int64 nanoseconds (0 where missing), and where they are missing."""
    missing = times.isna().to_numpy()
    return np.where(missing, 0, times.array.as_unit("ns").asi8), missing


def _joint_keys(left: pd.DataFrame, left_columns: Sequence[str], right: pd.DataFrame,
               right_columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """One int64 per row of `left` and of `right`, equal where the rows' values (as plain
    objects) in `left_columns` and in `right_columns`, pairwise, are equal; -1 where one of
    them is NA."""
    left_key = np.zeros(len(left), dtype=np.int64)
    right_key = np.zeros(len(right), dtype=np.int64)
    left_na, right_na = np.zeros(len(left), dtype=bool), np.zeros(len(right), dtype=bool)
    bound = 1
    for a, b in zip(left_columns, right_columns, strict=True):
        codes_a, codes_b, size = _joint_codes(left[a], right[b])
        left_na |= codes_a < 0
        right_na |= codes_b < 0
        if bound * size >= 1 << 62:  # compact both keys before they could overflow
            both = np.unique(np.concatenate([left_key, right_key]), return_inverse=True)[1]
            left_key, right_key = both[:len(left)], both[len(left):]
            bound = int(both.max()) + 1 if len(both) else 1
        left_key = left_key * size + np.maximum(codes_a, 0)
        right_key = right_key * size + np.maximum(codes_b, 0)
        bound *= size
    left_key[left_na] = -1
    right_key[right_na] = -1
    return left_key, right_key


def _joint_codes(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes of `a` and of `b` into their values together (compared as plain objects), -1 for
    NA, and how many values there are."""
    if all(_small_integers(c) for c in (a, b)):  # ports: the numbers are codes already
        missing_a, missing_b = a.isna().to_numpy(), b.isna().to_numpy()
        numbers_a = a.to_numpy(dtype=np.int64, na_value=0)
        numbers_b = b.to_numpy(dtype=np.int64, na_value=0)
        given = np.concatenate([numbers_a[~missing_a], numbers_b[~missing_b]])
        low, high = (int(given.min()), int(given.max())) if len(given) else (0, 0)
        return (np.where(missing_a, -1, numbers_a - low), np.where(missing_b, -1, numbers_b - low),
                high - low + 1)
    codes_a, values_a = _codes(a)
    codes_b, values_b = _codes(b)
    values = values_a.append(values_b).unique()
    at_a = np.append(values.get_indexer(values_a), -1)  # code -1 looks up -1
    at_b = np.append(values.get_indexer(values_b), -1)
    return at_a[codes_a], at_b[codes_b], len(values)


def _small_integers(column: pd.Series) -> bool:
    """Integers that fit int64 with room: UInt16 ports, not UInt64."""
    return column.dtype.kind in "iu" and getattr(column.dtype, "itemsize", 8) <= 4


def _codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """A column as codes (-1 for NA) into its distinct values, as plain objects."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy().astype(np.int64)
        return codes, pd.Index(np.asarray(column.cat.categories, dtype=object), dtype=object)
    codes, uniques = pd.factorize(column)
    return codes.astype(np.int64), pd.Index(np.asarray(uniques, dtype=object), dtype=object)


def _plain(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Key columns as plain objects, so keys read from different columns compare equal."""
    return frame[list(keys)].astype(object).reset_index(drop=True)


def flows_with_ends(df: pd.DataFrame, keep: np.ndarray, columns: Sequence[str],
                    selected: np.ndarray | None = None) -> pd.DataFrame:
    """The kept (and selected) flows' `columns`, the peer columns and each side's `src_end` /
    `dst_end` (see `endpoint`)."""
    if selected is not None:
        keep = keep & selected
    out = rows(df, keep, [*columns, *(c for c in _PEERS if c not in columns)])
    out["src_end"] = endpoint(out, "src")
    out["dst_end"] = endpoint(out, "dst")
    return out


_CONNECTION = ["src_end", "src_port", "dst_end", "dst_port"]
_REVERSED = ["dst_end", "dst_port", "src_end", "src_port"]


def _tcp_flows(df: pd.DataFrame, kind: str, selected: np.ndarray | None = None
               ) -> pd.DataFrame:
    """FORWARDED TCP flows of one `kind`: "SYN" or "SYN-ACK"."""
    keep = is_(df, "verdict", "FORWARDED") & is_(df, "protocol", "TCP")
    keep &= is_(df, "tcp_flags", *_flag_sets(df, kind))
    return flows_with_ends(df, keep, ["time", "src_port", "dst_port"], selected)


def _flag_sets(df: pd.DataFrame, kind: str) -> list[str]:
    """The flag-set categories that hubble_tcp_flags_total counts as `kind`."""
    return [flags for flags in df["tcp_flags"].cat.categories
            if kind in tcp_flag_labels(str(flags))]


def syns_without_syn_ack(df: pd.DataFrame, top: int = 10,
                         selected: np.ndarray | None = None) -> pd.DataFrame:
    """"Hubble Metrics and Monitoring" > Network > **Missing TCP SYN-ACKs** (SYN - SYN-ACK of
    `hubble_tcp_flags_total`, FORWARDED TCP flows), per connection: the connections (client IP
    and port, server IP and port) with a SYN and no SYN-ACK back, per client, server and port.
    Columns: source, destination, port, connections, syns (their SYN flows), first, last."""
    return SYNS.panel(SYNS.open_asks(df, selected)).head(top)


def echo_requests_without_reply(df: pd.DataFrame, top: int = 10,
                                selected: np.ndarray | None = None) -> pd.DataFrame:
    """Network > **Missing ICMP Echo-Reply** (EchoRequest - EchoReply of `hubble_icmp_total`,
    every ICMP flow), per request: echo requests with no echo reply back (same addresses,
    reversed) within ECHO_REPLY_TIMEOUT, per source and destination.
    Columns: source, destination, requests, first, last."""
    return ECHOES.panel(ECHOES.open_asks(df, selected)).head(top)


def dns_queries_without_response(df: pd.DataFrame, top: int = 10,
                                 selected: np.ndarray | None = None) -> pd.DataFrame:
    """DNS > **Missing DNS responses** (`hubble_dns_queries_total` - `hubble_dns_responses_total`),
    per query: DNS requests with no response back to the same client port from the same server
    for the same name, per client, server and query. Columns: source, destination, query,
    queries, first, last."""
    return QUERIES.panel(QUERIES.open_asks(df, selected)).head(top)


def _echo_requests(df: pd.DataFrame, selected: np.ndarray | None = None) -> pd.DataFrame:
    icmp = is_(df, "protocol", "ICMPv4", "ICMPv6")
    return flows_with_ends(df, icmp & is_(df, "icmp_type", "EchoRequest"), ["time"], selected)


def _echo_replies(df: pd.DataFrame) -> pd.DataFrame:
    icmp = is_(df, "protocol", "ICMPv4", "ICMPv6")
    return flows_with_ends(df, icmp & is_(df, "icmp_type", "EchoReply"), ["time"])


def _dns_flows(df: pd.DataFrame, kind: str, selected: np.ndarray | None = None
               ) -> pd.DataFrame:
    keep = is_(df, "l7_protocol", "dns") & is_(df, "l7_type", kind)
    return flows_with_ends(df, keep, ["time", "src_port", "dst_port", "dns_query"], selected)


@dataclass(frozen=True)
class Pairing:
    """One "missing answers" panel: its asks (of the selected flows) and answers, the key
    an answer has read from the opposite side, and how long an answer may be away."""

    asks: Callable[[pd.DataFrame, np.ndarray | None], pd.DataFrame]
    answers: Callable[[pd.DataFrame], pd.DataFrame]
    keys: tuple[str, ...]
    answer_keys: tuple[str, ...]
    shown: tuple[str, ...]
    asked: str
    within: pd.Timedelta = ANSWER_WINDOW
    direction: Direction = "nearest"
    distinct: str | None = None
    renamed: tuple[tuple[str, str], ...] = ()

    def open_asks(self, df: pd.DataFrame, selected: np.ndarray | None = None) -> pd.DataFrame:
        """The unanswered asks per key (`open_asks`) of the selected flows of `df`."""
        return open_asks(self.asks(df, selected), self.answers(df), self.keys,
                         self.answer_keys, self.asked, within=self.within,
                         direction=self.direction)

    def merge(self, parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
        return merge_open_asks(parts, self.keys, self.asked)

    def panel(self, per_key: pd.DataFrame) -> pd.DataFrame:
        """The panel's rows, most asks first (every row: the caller takes its top)."""
        out = by_peers(per_key, self.shown, self.asked, self.distinct)
        return out.rename(columns=dict(self.renamed))


SYNS = Pairing(lambda df, selected: _tcp_flows(df, "SYN", selected),
               lambda df: _tcp_flows(df, "SYN-ACK"), tuple(_CONNECTION), tuple(_REVERSED),
               ("dst_port",), "syns", distinct="connections", renamed=(("dst_port", "port"),))
ECHOES = Pairing(_echo_requests, _echo_replies, ("src_end", "dst_end"), ("dst_end", "src_end"),
                 (), "requests", within=ECHO_REPLY_TIMEOUT, direction="forward")
QUERIES = Pairing(lambda df, selected: _dns_flows(df, "REQUEST", selected),
                  lambda df: _dns_flows(df, "RESPONSE"),
                  ("src_end", "src_port", "dst_end", "dns_query"),
                  ("dst_end", "dst_port", "src_end", "dns_query"), ("dns_query",), "queries",
                  renamed=(("dns_query", "query"),))


def answered_requests(requests: pd.DataFrame, responses: pd.DataFrame) -> np.ndarray:
    """For each response (from `flows_with_ends`), the row in `requests` it answers: the
    latest request before it on the same connection, the other way round, no more than
    ANSWER_WINDOW before; -1 for none."""
    left = _plain(responses, _REVERSED).set_axis(_CONNECTION, axis=1)
    left = left.assign(time=responses["time"].array, response=range(len(responses)))
    right = _plain(requests, _CONNECTION).assign(time=requests["time"].array,
                                                request=range(len(requests)))
    matched = pd.merge_asof(left.dropna().sort_values("time"),
                            right.dropna().sort_values("time"), on="time", by=_CONNECTION,
                            direction="backward", tolerance=ANSWER_WINDOW)
    out = np.full(len(responses), -1, dtype=np.int64)
    found = matched["request"].notna().to_numpy()
    out[matched["response"].to_numpy()[found]] = matched["request"].to_numpy()[found]
    return out


__all__ = ["ANSWER_WINDOW", "ECHOES", "QUERIES", "SYNS", "Pairing",
           "answered_requests", "by_peers", "dns_queries_without_response",
           "echo_requests_without_reply", "flows_with_ends", "merge_open_asks", "open_asks",
           "syns_without_syn_ack", "unanswered"]
