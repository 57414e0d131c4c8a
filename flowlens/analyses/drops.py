"""Drop and policy panels: drop reasons, the pods with denied packets, policy verdicts.

`hubble_drop_total` counts every flow whose verdict is DROPPED, whatever its event type: a
denied packet seen as a policy-verdict event and as a drop event counts twice, here as there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flowlens.analyses.buckets import Buckets, buckets_of
from flowlens.analyses.labels import (
    add_up,
    count,
    count_by_peer,
    drop_reason_name,
    given,
    is_,
    peer_columns,
    rows,
)
from flowlens.analyses.traffic import over_time


def _dropped(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return rows(df, is_(df, "verdict", "DROPPED"), columns)


def drop_reasons(df: pd.DataFrame) -> pd.DataFrame:
    """"Hubble Metrics and Monitoring" > Network > **Drop Reason** (total):
    `sum(hubble_drop_total) by (reason)` — flows with verdict DROPPED by DropReason name
    (`POLICY_DENIED`, ...). Columns: reason, flows."""
    counted = count(_dropped(df, ["drop_reason", "drop_reason_code"]),
                    ["drop_reason", "drop_reason_code"])
    named = pd.DataFrame({
        "reason": [drop_reason_name(r, c) for r, c in
                   zip(counted["drop_reason"], counted["drop_reason_code"], strict=True)],
        "flows": counted["flows"].to_numpy(),
    })
    return add_up(named, ["reason"])


def drop_reasons_over_time(df: pd.DataFrame, buckets: Buckets | None = None) -> pd.DataFrame:
    """Network > **Drop Reason**: `sum(rate(hubble_drop_total[1m])) by (reason)` — DROPPED
    flows by reason per time bucket. Columns: time, then one per reason."""
    dropped = _dropped(df, ["time", "drop_reason", "drop_reason_code"])
    reasons = dropped["drop_reason"].astype(object)
    unnamed = reasons.isna().to_numpy()
    if unnamed.any():
        reasons[unnamed] = [drop_reason_name(None, c)
                            for c in dropped["drop_reason_code"].to_numpy()[unnamed]]
    return over_time(dropped["time"], reasons, buckets or buckets_of(df))


def _policy_denied(df: pd.DataFrame, side: str) -> pd.DataFrame:
    keep = is_(df, "verdict", "DROPPED") & is_(df, "drop_reason", "POLICY_DENIED")
    return rows(df, keep, peer_columns(side))


def top_denied_sources(df: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Network Policy > **Top 10 Source Pods with Denied Packets**:
    `topk(10, sum(rate(hubble_drop_total{reason="POLICY_DENIED"}[1m])) by (source))` — DROPPED
    flows with reason POLICY_DENIED by source `namespace/pod` (peers without a pod by reserved
    identity name, else IP). Columns: source, flows."""
    return count_by_peer(_policy_denied(df, "src"), ["src"]).head(top)


def top_denied_destinations(df: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Network Policy > **Top 10 Destination Pods with Denied Packets**: the same by
    destination. Columns: destination, flows."""
    return count_by_peer(_policy_denied(df, "dst"), ["dst"]).head(top)


def policy_verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """"Cilium Policy Verdicts" > verdicts by direction, match type and action:
    `hubble_policy_verdicts_total by (direction, match, action)` — policy-verdict events
    (type 5) and L7 events (match `l7/<protocol>`), except those from the `host` identity (1);
    labels lower-case as the metric has them (`ingress`, `l3-l4`, `forwarded`).
    Columns: direction, match, action, flows."""
    keep = is_(df, "event_type", 5, 129)
    keep &= np.asarray(df["src_identity"].fillna(0) != 1, dtype=bool)
    keys = ["traffic_direction", "event_type", "policy_match", "l7_protocol", "verdict"]
    counted = count(rows(df, keep, keys), keys)
    labelled = pd.DataFrame({
        "direction": [_lower(d, "TRAFFIC_DIRECTION_UNKNOWN") for d in
                      counted["traffic_direction"]],
        "match": [_match(t, m, p) for t, m, p in zip(counted["event_type"],
                                                     counted["policy_match"],
                                                     counted["l7_protocol"], strict=True)],
        "action": [_lower(v, "VERDICT_UNKNOWN") for v in counted["verdict"]],
        "flows": counted["flows"].to_numpy(),
    })
    return add_up(labelled, ["direction", "match", "action"])


def _lower(value: Any, unknown: str) -> str:
    return (str(value) if given(value) else unknown).lower()


def _match(event_type: Any, match: Any, l7_protocol: Any) -> str:
    if event_type == 129:
        return "l7/" + _lower(l7_protocol, "unknown")
    return _lower(match, "none")
