"""What the input did not carry, and which panels that changes.

Hubble's text formats print less than its jsonpb: no drop reason on policy-verdict lines, no L4
protocol or direction on L7 lines, pod names instead of IPs, no node names unless asked, and
dict/table print no identities and no reply arrow. A report over such input says so, with the
number of flows concerned, instead of counting differently without a word. Every count here
adds up across parts of the input (a store's partitions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flowlens.analyses.drops import reasonless_policy_verdicts
from flowlens.analyses.labels import is_

COLUMNS = ["missing", "flows", "effect"]


def missing_fields(df: pd.DataFrame) -> pd.DataFrame:
    """The fields panels need that some flows of `df` lack, as the input could not carry them.
    Columns: missing (what), flows (how many flows lack it), effect (on which panels)."""
    return missing_table(missing_counts(df))


def missing_counts(df: pd.DataFrame, counted: np.ndarray | None = None) -> dict[str, int]:
    """What `missing_fields` counts, of the `counted` rows when given (the others only pair
    a policy verdict with the drop event of its packet): flows per lacking field (the keys of
    FIELDS), and `unnamed`, the reasonless policy verdicts no drop event named. Parts of an
    input add up."""
    reasonless, unnamed = reasonless_policy_verdicts(df, counted)
    if counted is not None:
        df = df[counted]
    l7 = is_(df, "event_type", 129)
    port_flows = is_(df, "verdict", "FORWARDED", "REDIRECTED") & ~_na(df, "protocol")
    return {"reasonless": reasonless, "unnamed": unnamed,
            "direction": _n(is_(df, "event_type", 5) | l7, _na(df, "traffic_direction")),
            "l7_protocol": _n(l7, _na(df, "protocol")),
            "l7_reply": _n(l7, _na(df, "is_reply")),
            "reply": _n(port_flows, _na(df, "is_reply")),
            "ip": _n(is_(df, "protocol", "TCP"), _na(df, "ip_version")),
            "identity": _n(_na(df, "src_identity"), _na(df, "dst_identity")),
            "node": _n(_na(df, "node"))}


FIELDS: tuple[tuple[str, str, str], ...] = (
    ("direction", "traffic direction of policy-verdict and L7 events",
     "Policy verdicts show their direction as traffic_direction_unknown"),
    ("l7_protocol", "L4 protocol of L7 events",
     "Protocol usage and Top destination ports leave them out"),
    ("reply", "reply flags (no arrow in hubble's dict and table)",
     "Protocol usage and Top destination ports count replies too"),
    ("ip", "IP addresses (pod names instead) of TCP flows",
     "TCP flags counts them under family unknown"),
    ("identity", "security identities",
     "peers without a pod are named by IP (not world, host, ...); Policy verdicts cannot "
     "leave out the host's"),
    ("node", "node names", "Flows processed per node and lost events per node leave them out"),
)


def missing_table(counts: dict[str, int]) -> pd.DataFrame:
    """The `missing_fields` table of (added up) `missing_counts`."""
    found: list[tuple[str, int, str]] = []
    if counts["reasonless"]:
        unnamed = counts["unnamed"]
        still = f"; {unnamed:,} without one count as DROP_REASON_UNKNOWN" if unnamed else ""
        found.append(("drop reason of policy-verdict events", counts["reasonless"],
                      "Drop Reason and the denied pods take the reason of the drop event of "
                      f"the same packet{still}"))
    for key, what, effect in FIELDS:
        # jsonpb always has reply flags on L7 events; dict/table never
        if counts[key] and (key != "reply" or counts["l7_reply"]):
            found.append((what, counts[key], effect))
    return pd.DataFrame(found, columns=COLUMNS).astype({"flows": "int64"})


def _na(df: pd.DataFrame, column: str) -> np.ndarray:
    return df[column].isna().to_numpy()


def _n(*masks: np.ndarray) -> int:
    """Rows in every mask."""
    return int(np.count_nonzero(np.logical_and.reduce(masks)))
