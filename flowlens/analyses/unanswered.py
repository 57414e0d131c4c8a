"""Asks without answers: SYNs without a SYN-ACK, echo requests without a reply, DNS queries
without a response — the "missing" panels, followed down to who asked whom.

The dashboards draw these as a difference of two rates (SYN - SYN-ACK, EchoRequest - EchoReply,
queries - responses). That difference also counts packets traced at more than one observation
point (a SYN leaving one node and entering another, its SYN-ACK traced once): flows pair each
ask with its answer instead. An answer has the ask's key read from the opposite side (its source
is the ask's destination); an ask is answered when its key has an answer, or, for keys that
repeat (ICMP has no id in a flow), when one follows within `within`.

Asks and answers are paired over every flow given, and only the asks of the `selected` flows
are counted: a filter that selects a client's requests does not hide the server's answers (a
filter selects the asks; their answers follow). A side is its IP, or `namespace/pod` where the
input names the pod instead (hubble's text).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def unanswered(asks: pd.DataFrame, answers: pd.DataFrame, keys: Sequence[str],
               answer_keys: Sequence[str], shown: Sequence[str], asked: str, *,
               within: pd.Timedelta | None = None, distinct: str | None = None,
               ) -> pd.DataFrame:
    """The asks no answer matched, counted per source, destination and `shown` columns.
    Columns: source, destination, *shown, [distinct: how many keys,] asked, first, last."""
    answered = (_answered_in_time(asks, answers, keys, answer_keys, within) if within
                else _answered_ever(asks, answers, keys, answer_keys))
    open_asks = asks[~answered]
    per_key = open_asks.groupby(list(keys), observed=True, sort=False).agg(
        **{asked: ("time", "size"), "first": ("time", "min"), "last": ("time", "max")},
        **{c: (c, "first") for c in _PEERS if c not in keys}).reset_index()
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


def _answered_ever(asks: pd.DataFrame, answers: pd.DataFrame, keys: Sequence[str],
                   answer_keys: Sequence[str]) -> pd.Series:
    asked = pd.MultiIndex.from_frame(_plain(asks, keys))
    got = pd.MultiIndex.from_frame(_plain(answers, answer_keys))
    return pd.Series(asked.isin(got), index=asks.index)


def _answered_in_time(asks: pd.DataFrame, answers: pd.DataFrame, keys: Sequence[str],
                      answer_keys: Sequence[str], within: pd.Timedelta) -> pd.Series:
    """Asks followed by an answer with their key no later than `within`."""
    left = _plain(asks, keys).assign(time=asks["time"].array, row=range(len(asks)))
    right = _plain(answers, answer_keys).set_axis(list(keys), axis=1)
    right = right.assign(time=answers["time"].array, answer=True)
    matched = pd.merge_asof(left.dropna().sort_values("time"), right.dropna().sort_values("time"),
                            on="time", by=list(keys), direction="forward", tolerance=within)
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
    out = unanswered(_tcp_flows(df, "SYN", selected), _tcp_flows(df, "SYN-ACK"),
                     _CONNECTION, _REVERSED, ["dst_port"], "syns", distinct="connections")
    return out.rename(columns={"dst_port": "port"}).head(top)


def echo_requests_without_reply(df: pd.DataFrame, top: int = 10,
                                selected: np.ndarray | None = None) -> pd.DataFrame:
    """Network > **Missing ICMP Echo-Reply** (EchoRequest - EchoReply of `hubble_icmp_total`,
    every ICMP flow), per request: echo requests with no echo reply back (same addresses,
    reversed) within ECHO_REPLY_TIMEOUT, per source and destination.
    Columns: source, destination, requests, first, last."""
    icmp = is_(df, "protocol", "ICMPv4", "ICMPv6")
    requests = flows_with_ends(df, icmp & is_(df, "icmp_type", "EchoRequest"), ["time"],
                               selected)
    replies = flows_with_ends(df, icmp & is_(df, "icmp_type", "EchoReply"), ["time"])
    return unanswered(requests, replies, ["src_end", "dst_end"], ["dst_end", "src_end"], [],
                      "requests", within=ECHO_REPLY_TIMEOUT).head(top)


def dns_queries_without_response(df: pd.DataFrame, top: int = 10,
                                 selected: np.ndarray | None = None) -> pd.DataFrame:
    """DNS > **Missing DNS responses** (`hubble_dns_queries_total` - `hubble_dns_responses_total`),
    per query: DNS requests with no response back to the same client port from the same server
    for the same name, per client, server and query. Columns: source, destination, query,
    queries, first, last."""
    dns = is_(df, "l7_protocol", "dns")
    columns = ["time", "src_port", "dst_port", "dns_query"]
    queries = flows_with_ends(df, dns & is_(df, "l7_type", "REQUEST"), columns, selected)
    responses = flows_with_ends(df, dns & is_(df, "l7_type", "RESPONSE"), columns)
    out = unanswered(queries, responses, ["src_end", "src_port", "dst_end", "dns_query"],
                     ["dst_end", "dst_port", "src_end", "dns_query"], ["dns_query"], "queries")
    return out.rename(columns={"dns_query": "query"}).head(top)


def answered_requests(requests: pd.DataFrame, responses: pd.DataFrame) -> np.ndarray:
    """For each response (from `flows_with_ends`), the row in `requests` it answers: the
    latest request before it on the same connection, the other way round; -1 for none."""
    left = _plain(responses, _REVERSED).set_axis(_CONNECTION, axis=1)
    left = left.assign(time=responses["time"].array, response=range(len(responses)))
    right = _plain(requests, _CONNECTION).assign(time=requests["time"].array,
                                                request=range(len(requests)))
    matched = pd.merge_asof(left.dropna().sort_values("time"),
                            right.dropna().sort_values("time"), on="time", by=_CONNECTION,
                            direction="backward")
    out = np.full(len(responses), -1, dtype=np.int64)
    found = matched["request"].notna().to_numpy()
    out[matched["response"].to_numpy()[found]] = matched["request"].to_numpy()[found]
    return out


__all__ = ["answered_requests", "dns_queries_without_response", "echo_requests_without_reply",
           "flows_with_ends", "syns_without_syn_ack", "unanswered"]
