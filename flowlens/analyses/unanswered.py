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
    either side, "forward" after)."""
    left = _plain(asks, keys).assign(time=asks["time"].array, row=range(len(asks)))
    right = _plain(answers, answer_keys).set_axis(list(keys), axis=1)
    right = right.assign(time=answers["time"].array, answer=True)
    matched = pd.merge_asof(left.dropna().sort_values("time"), right.dropna().sort_values("time"),
                            on="time", by=list(keys), direction=direction, tolerance=within)
    answered = pd.Series(False, index=asks.index)
    hit = matched.loc[matched["answer"].notna().to_numpy(), "row"].to_numpy()
    answered.iloc[hit] = True
    return answered


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
