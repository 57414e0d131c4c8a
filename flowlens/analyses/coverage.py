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
    found: list[tuple[str, int, str]] = []
    reasonless, unnamed = reasonless_policy_verdicts(df)
    if reasonless:
        still = (f"; {unnamed:,} without one count as DROP_REASON_UNKNOWN" if unnamed else "")
        found.append(("drop reason of policy-verdict events", reasonless,
                      "Drop Reason and the denied pods take the reason of the drop event of "
                      f"the same packet{still}"))
    l7 = is_(df, "event_type", 129)
    verdict_events = is_(df, "event_type", 5) | l7
    _add(found, "traffic direction of policy-verdict and L7 events",
         verdict_events & _na(df, "traffic_direction"),
         "Policy verdicts show their direction as traffic_direction_unknown")
    _add(found, "L4 protocol of L7 events", l7 & _na(df, "protocol"),
         "Protocol usage and Top destination ports leave them out")
    if (l7 & _na(df, "is_reply")).any():  # jsonpb always has it on L7 events; dict/table never
        port_flows = is_(df, "verdict", "FORWARDED", "REDIRECTED") & ~_na(df, "protocol")
        _add(found, "reply flags (no arrow in hubble's dict and table)",
             port_flows & _na(df, "is_reply"),
             "Protocol usage and Top destination ports count replies too")
    _add(found, "IP addresses (pod names instead) of TCP flows",
         is_(df, "protocol", "TCP") & _na(df, "ip_version"),
         "TCP flags counts them under family unknown")
    _add(found, "security identities", _na(df, "src_identity") & _na(df, "dst_identity"),
         "peers without a pod are named by IP (not world, host, ...); Policy verdicts cannot "
         "leave out the host's")
    _add(found, "node names", _na(df, "node"),
         "Flows processed per node and lost events per node leave them out")
    return pd.DataFrame(found, columns=COLUMNS).astype({"flows": "int64"})


def _na(df: pd.DataFrame, column: str) -> np.ndarray:
    return df[column].isna().to_numpy()


def _add(found: list[tuple[str, int, str]], what: str, lacking: np.ndarray,
         effect: str) -> None:
    n = int(np.count_nonzero(lacking))
    if n:
        found.append((what, n, effect))
