"""Traffic panels: verdicts over time, flow types, flows per node, protocols and ports.

All count `hubble_flows_processed_total` or `hubble_port_distribution_total` exactly as the
metric handlers do (../shared/spec/hubble-api.md §5), one flow at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from flowlens.analyses.buckets import Buckets, buckets_of
from flowlens.analyses.labels import (
    add_up,
    count,
    flow_subtype,
    flow_type,
    given,
    is_,
    rows,
    tcp_flag_labels,
)


def over_time(times: pd.Series, keys: pd.Series, buckets: Buckets) -> pd.DataFrame:
    """Rows per time bucket and key: a `time` column (bucket start, every bucket, empty ones
    as 0) and one column per key seen, largest total first. NA keys are not counted."""
    categories = keys if isinstance(keys.dtype, pd.CategoricalDtype) else keys.astype("category")
    codes = np.asarray(categories.cat.codes, dtype=np.int64)
    slot = buckets.of(times)
    keep = (slot >= 0) & (codes >= 0)
    width = len(categories.cat.categories)
    counts = np.bincount(slot[keep] * width + codes[keep],
                         minlength=buckets.count * width).reshape(buckets.count, width)
    totals = counts.sum(axis=0)
    names_all = [str(c) for c in categories.cat.categories]
    order = sorted((i for i in range(width) if totals[i] > 0),
                   key=lambda i: (-totals[i], names_all[i]))
    names = [names_all[i] for i in order]
    out = pd.DataFrame(counts[:, order], columns=names)
    out.insert(0, "time", buckets.starts())
    return out


def merge_over_time(parts: Sequence[pd.DataFrame],
                    keep: Sequence[str] | None = None) -> pd.DataFrame:
    """`over_time` frames of parts of an input (the same buckets), as of the whole: counts
    added per key, only the keys in `keep` when given, largest total first."""
    added: dict[str, np.ndarray] = {}
    for part in parts:
        for name in part.columns[1:]:
            counts = part[name].to_numpy(dtype=np.int64)
            added[name] = added[name] + counts if name in added else counts
    totals = {name: int(counts.sum()) for name, counts in added.items()
              if keep is None or name in keep}
    names = sorted((n for n, total in totals.items() if total > 0),
                   key=lambda n: (-totals[n], n))
    times = parts[0]["time"]
    matrix = (np.column_stack([added[n] for n in names]) if names
              else np.zeros((len(times), 0), dtype=np.int64))
    out = pd.DataFrame(matrix, columns=names)
    out.insert(0, "time", times.reset_index(drop=True))
    return out


def verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """Every flow by verdict: the totals of the Forwarded vs Dropped panel.
    Columns: verdict, flows."""
    return count(rows(df, None, ["verdict"]), ["verdict"])


def forwarded_vs_dropped(df: pd.DataFrame, buckets: Buckets | None = None) -> pd.DataFrame:
    """"Hubble Metrics and Monitoring" > Network > **Forwarded vs Dropped**:
    `sum(rate(hubble_flows_processed_total[1m])) by (verdict)` — every flow, by verdict, per
    time bucket. Columns: time, then one per verdict (FORWARDED, DROPPED, ...)."""
    return over_time(df["time"], df["verdict"], buckets or buckets_of(df))


def flows_by_type(df: pd.DataFrame) -> pd.DataFrame:
    """General > **Flow types** and **L7 / Trace flow distribution**:
    `hubble_flows_processed_total by (type, subtype)` — every flow; type from the monitor
    event type (Trace, Drop, PolicyVerdict, L7, Capture, else Unknown: trace-sock events too),
    subtype the trace point for Trace, DNS/HTTP/Kafka for L7, the event type's number for
    Unknown. Columns: type, subtype, flows."""
    counted = _event_key_counts(df)
    keys = zip(counted["event_type"], counted["event_subtype"], counted["l7_protocol"],
               strict=True)
    typed = pd.DataFrame({
        "type": [flow_type(t) for t in counted["event_type"]],
        "subtype": [flow_subtype(t, s, p) for t, s, p in keys],
        "flows": counted["flows"],
    })
    return add_up(typed, ["type", "subtype"])


def _event_key_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Flows per distinct (event_type, event_subtype, l7_protocol), NA as None: one int64 key
    per flow instead of a groupby over three columns (a third of the memory)."""
    kinds = _int16_slots(df["event_type"]).astype(np.int64)
    kinds *= _INT16_SLOTS
    kinds += _int16_slots(df["event_subtype"])
    width = len(df["l7_protocol"].cat.categories) + 1
    kinds *= width
    kinds += df["l7_protocol"].cat.codes.to_numpy() + 1
    keys, counts = np.unique(kinds, return_counts=True)
    l7_names = [None, *df["l7_protocol"].cat.categories]
    return pd.DataFrame({
        "event_type": _int16_values(keys // width // _INT16_SLOTS),
        "event_subtype": _int16_values(keys // width % _INT16_SLOTS),
        "l7_protocol": [l7_names[int(c)] for c in keys % width],
        "flows": counts.astype(np.int64),
    })


# An Int16 value or NA as a slot in 0 .. 2**16 (NA is slot 0).
_INT16_SLOTS = (1 << 16) + 1
_INT16_OFFSET = (1 << 15) + 1


def _int16_slots(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype=np.int32, na_value=-_INT16_OFFSET) + _INT16_OFFSET


def _int16_values(slots: np.ndarray) -> list[int | None]:
    return [None if s == 0 else int(s) - _INT16_OFFSET for s in slots]


def flows_by_node(df: pd.DataFrame, buckets: Buckets | None = None) -> pd.DataFrame:
    """General > **Flows processed per node**: `sum(rate(hubble_flows_processed_total)) by
    (pod)` (the agent pod, i.e. the node) — every flow by the node that observed it, per time
    bucket. Columns: time, then one per node."""
    return over_time(df["time"], df["node"], buckets or buckets_of(df))


def _port_flows(df: pd.DataFrame) -> pd.DataFrame:
    """What hubble_port_distribution_total counts: FORWARDED or REDIRECTED flows with an L4
    protocol that are not replies (an unknown reply flag counts, as in the handler)."""
    keep = is_(df, "verdict", "FORWARDED", "REDIRECTED") & df["protocol"].notna().to_numpy()
    keep &= ~np.asarray(df["is_reply"].fillna(False), dtype=bool)
    return rows(df, keep, ["protocol", "dst_port"])


def protocols(df: pd.DataFrame) -> pd.DataFrame:
    """Network > **Protocol usage**: `hubble_port_distribution_total by (protocol)` —
    forwarded/redirected non-reply flows by L4 protocol. Columns: protocol, flows."""
    return count(_port_flows(df)[["protocol"]], ["protocol"])


def top_destination_ports(df: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Network > **Top 10 port distribution**: `topk(10, hubble_port_distribution_total
    {port!="0"}) by (protocol, port)` — forwarded/redirected non-reply flows by destination
    port (ICMP has port 0 and is left out). Columns: protocol, port, flows."""
    flows = _port_flows(df)
    flows = flows[flows["dst_port"].fillna(0).to_numpy() != 0]
    counted = count(flows, ["protocol", "dst_port"]).rename(columns={"dst_port": "port"})
    counted["port"] = counted["port"].astype("int64")
    return counted.head(top)



def tcp_flags(df: pd.DataFrame) -> pd.DataFrame:
    """Network > **TCPv4 / TCPv6 flags**: `hubble_tcp_flags_total by (family, flag)` —
    FORWARDED TCP flows by flag: SYN (without ACK), SYN-ACK, FIN, RST (a flow with FIN and RST
    counts under both; `unknown` family where the input carries no IP, as hubble's text
    printing pod names). Columns: family, flag, flows."""
    keep = is_(df, "verdict", "FORWARDED") & is_(df, "protocol", "TCP")
    keep &= df["tcp_flags"].notna().to_numpy()
    counted = count(rows(df, keep, ["ip_version", "tcp_flags"]), ["ip_version", "tcp_flags"])
    labelled = pd.DataFrame(
        [(family if given(family) else "unknown", flag, n)
         for family, flags, n in counted.itertuples(index=False)
         for flag in tcp_flag_labels(str(flags))],
        columns=["family", "flag", "flows"])
    return add_up(labelled, ["family", "flag"])
