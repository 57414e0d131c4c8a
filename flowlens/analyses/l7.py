"""DNS and HTTP panels, from the L7 records of Cilium's proxies (event type 129).

They count what `hubble_dns_*` and `hubble_http_*` count. Latency quantiles are exact: the
dashboard interpolates them from histogram buckets, flows carry every latency.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flowlens.analyses.labels import add_up, count, dns_rcode_name, is_, relabel, rows
from flowlens.analyses.unanswered import answered_requests, flows_with_ends

LATENCY_QUANTILES = (0.5, 0.95, 0.99)


def _l7(df: pd.DataFrame, protocol: str, kind: str, columns: list[str]) -> pd.DataFrame:
    keep = is_(df, "l7_protocol", protocol) & is_(df, "l7_type", kind)
    return rows(df, keep, columns)


def top_dns_queries(df: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """"Hubble Metrics and Monitoring" > DNS > **Top 10 DNS queries**:
    `topk(10, hubble_dns_queries_total) by (query)` — DNS requests, and DNS records dropped
    (the metric counts both), by query name. Columns: query, queries."""
    dns = is_(df, "l7_protocol", "dns")
    keep = dns & (is_(df, "l7_type", "REQUEST") | is_(df, "verdict", "DROPPED"))
    return count(rows(df, keep, ["dns_query"]), ["dns_query"], "queries").rename(
        columns={"dns_query": "query"}).head(top)


def dns_errors(df: pd.DataFrame) -> pd.DataFrame:
    """DNS > **DNS errors**: `hubble_dns_responses_total{rcode!="No Error"} by (rcode)` — DNS
    responses by rcode name (Non-Existent Domain, Server Failure, ...), "No Error" left out.
    Columns: rcode, responses."""
    responses = _l7(df, "dns", "RESPONSE", ["dns_rcode"])
    errors = responses[responses["dns_rcode"].fillna(0).to_numpy() != 0]
    counted = count(errors, ["dns_rcode"], "responses")
    named = relabel(counted, "dns_rcode", dns_rcode_name).rename(columns={"dns_rcode": "rcode"})
    return add_up(named, ["rcode"], "responses")


def http_requests(df: pd.DataFrame) -> pd.DataFrame:
    """HTTP > **Requests by method**: `hubble_http_requests_total by (method)` — HTTP request
    records by method. Columns: method, requests."""
    requests = _l7(df, "http", "REQUEST", ["http_method"])
    return count(requests, ["http_method"], "requests").rename(columns={"http_method": "method"})


def http_responses(df: pd.DataFrame) -> pd.DataFrame:
    """HTTP > **Responses by status**: `hubble_http_responses_total by (status)` — HTTP response
    records by status code. Columns: status, responses."""
    responses = _l7(df, "http", "RESPONSE", ["http_code"])
    counted = count(responses, ["http_code"], "responses").rename(columns={"http_code": "status"})
    counted["status"] = counted["status"].astype("Int64")
    return counted


def http_latency(df: pd.DataFrame, selected: np.ndarray | None = None) -> pd.DataFrame:
    """HTTP > **Request duration p50 / p95 / p99** (`histogram_quantile` over
    `hubble_http_request_duration_seconds`, observed on responses from `latency_ns`): exact
    quantiles of the responses' latency. With `selected`, the exchanges whose response or
    request is selected (a response answers the latest request before it on its connection,
    within ANSWER_WINDOW), so that selecting a client's requests keeps the server's responses.
    Columns: quantile (p50, p95, p99), seconds, responses."""
    return latency_quantiles(latencies(df, selected))


def latencies(df: pd.DataFrame, selected: np.ndarray | None = None,
              counted: np.ndarray | None = None) -> pd.DataFrame:
    """The latencies `http_latency` takes its quantiles of, as how many responses had each
    (`counted`: only of these rows' responses). Columns: latency_ns (ascending), responses.
    Parts of an input add up (`merge_latencies`)."""
    http = is_(df, "l7_protocol", "http")
    responding = http & is_(df, "l7_type", "RESPONSE")
    if selected is None:
        chosen = np.ones(np.count_nonzero(responding), dtype=bool)
    else:
        responses = flows_with_ends(df, responding, ["time", "src_port", "dst_port"])
        requests = flows_with_ends(df, http & is_(df, "l7_type", "REQUEST"),
                                   ["time", "src_port", "dst_port"])
        asked = answered_requests(requests, responses)
        answered = asked >= 0
        chosen = selected[responding].copy()
        chosen[answered] |= selected[http & is_(df, "l7_type", "REQUEST")][asked[answered]]
    if counted is not None:
        chosen &= counted[responding]
    column = df["latency_ns"]
    chosen &= column.notna().to_numpy()[responding]
    values = column.to_numpy(dtype=np.uint64, na_value=0)[responding][chosen]
    found, counts = np.unique(values, return_counts=True)
    return pd.DataFrame({"latency_ns": found, "responses": counts.astype(np.int64)})


def merge_latencies(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """`latencies` of parts of an input, as of the whole."""
    joined = pd.concat(parts, ignore_index=True)
    summed = joined.groupby("latency_ns", sort=True)["responses"].sum()
    return pd.DataFrame({"latency_ns": summed.index.to_numpy(dtype=np.uint64),
                         "responses": summed.to_numpy(dtype=np.int64)})


def latency_quantiles(counted: pd.DataFrame) -> pd.DataFrame:
    """The `http_latency` panel of `latencies`: each quantile interpolated linearly between
    the two latencies around its rank, as numpy's default method."""
    values = counted["latency_ns"].to_numpy(dtype=np.uint64)
    ends = np.cumsum(counted["responses"].to_numpy(dtype=np.int64))
    n = int(ends[-1]) if len(ends) else 0
    seconds = []
    for q in LATENCY_QUANTILES:
        if not n:
            seconds.append(np.nan)
            continue
        rank = (n - 1) * q
        below = int(np.floor(rank))
        low, high = (float(values[np.searchsorted(ends, r, side="right")]) / 1e9
                     for r in (below, min(below + 1, n - 1)))
        seconds.append(low + (high - low) * (rank - below))
    return pd.DataFrame({
        "quantile": [f"p{round(q * 100)}" for q in LATENCY_QUANTILES],
        "seconds": np.asarray(seconds, dtype=np.float64),
        "responses": n,
    })


def http_success_rate(df: pd.DataFrame) -> pd.DataFrame:
    """"Hubble L7 HTTP Metrics by Workload" > **Success rate**: the share of HTTP responses
    that are not 5xx. Columns: responses, server_errors, success_rate (NaN with no response)."""
    codes = _l7(df, "http", "RESPONSE", ["http_code"])["http_code"]
    total = len(codes)
    errors = int((codes.fillna(0) >= 500).sum())
    rate = (total - errors) / total if total else np.nan
    return pd.DataFrame({"responses": [total], "server_errors": [errors],
                         "success_rate": [rate]})
