"""Drop and policy panels: drop reasons, the pods with denied packets, policy verdicts.

`hubble_drop_total` counts every flow whose verdict is DROPPED, whatever its event type: a
denied packet seen as a policy-verdict event and as a drop event counts twice, here as there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from flowlens.analyses.buckets import Buckets, buckets_of
from flowlens.analyses.labels import (
    add_up,
    count,
    count_by_peer,
    drop_reason_name,
    endpoint,
    given,
    is_,
    objects,
    peer_columns,
    rows,
)
from flowlens.analyses.traffic import over_time

# A policy-verdict event and the drop event of the same packet are emitted microseconds apart;
# retransmissions of a denied packet come a second or more later and are denied alike.
_SAME_PACKET = pd.Timedelta(seconds=1)


def dropped(df: pd.DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The DROPPED flows: their `columns` and `reason`, the `hubble_drop_total` reason label
    (DropReason name, categorical).

    hubble's text prints no drop reason on policy-verdict lines: such an event takes the reason
    of the drop event of the same packet (same peers, ports and protocol, within a second);
    one without any stays DROP_REASON_UNKNOWN (`reasonless_policy_verdicts` counts them)."""
    keep = is_(df, "verdict", "DROPPED")
    out = rows(df, keep, list(columns))
    out["reason"] = _reason_labels(df["drop_reason"][keep], _reason_codes(df, keep))
    return out


def reasonless_policy_verdicts(df: pd.DataFrame) -> tuple[int, int]:
    """(policy-verdict drops read without a drop reason, how many of them no drop event of the
    same packet named): what a report over hubble's text says about its Drop Reason panel."""
    keep = is_(df, "verdict", "DROPPED")
    missing = _reasonless(df, keep)
    if not missing.any():
        return 0, 0
    unnamed = int(np.count_nonzero(_reason_codes(df, keep)[missing[keep]] < 0))
    return int(np.count_nonzero(missing)), unnamed


def _reasonless(df: pd.DataFrame, keep: np.ndarray) -> np.ndarray:
    return (keep & is_(df, "event_type", 5) & df["drop_reason"].isna().to_numpy()
            & df["drop_reason_code"].isna().to_numpy())


def _reason_codes(df: pd.DataFrame, keep: np.ndarray) -> np.ndarray:
    """The drop reason code of every kept flow (-1: none), reasonless policy-verdict events
    completed from the drop event of their packet."""
    codes = df["drop_reason_code"].to_numpy(dtype=np.int64, na_value=-1)
    missing = _reasonless(df, keep)  # none in jsonpb: the pairing below is for text
    if missing.any():
        donors = keep & is_(df, "event_type", 1) & (codes >= 0)
        asks = pd.DataFrame({"time": df["time"].to_numpy()[missing],
                             "packet": _packet_keys(df, missing),
                             "row": np.flatnonzero(missing)}).sort_values("time")
        known = pd.DataFrame({"time": df["time"].to_numpy()[donors],
                              "packet": _packet_keys(df, donors),
                              "code": codes[donors]}).sort_values("time")
        found = pd.merge_asof(asks, known, on="time", by="packet", direction="nearest",
                              tolerance=_SAME_PACKET)
        codes = codes.copy()
        codes[found["row"].to_numpy()] = found["code"].fillna(-1).to_numpy(dtype=np.int64)
    return codes[keep]


def _packet_keys(df: pd.DataFrame, keep: np.ndarray) -> list[str]:
    """Peers, ports and protocol of the kept flows, one string each."""
    flows = rows(df, keep, [*peer_columns("src"), *peer_columns("dst"), "src_port",
                            "dst_port", "protocol"])
    parts = [endpoint(flows, "src"), endpoint(flows, "dst")]
    parts += [objects(flows[c]) for c in ("src_port", "dst_port", "protocol")]
    return ["|".join(map(str, p)) for p in zip(*parts, strict=True)]


_CODES = 1 << 17  # room for every drop reason code, and -1 (none), as one int64 key


def _reason_labels(reasons: pd.Series, codes: np.ndarray) -> pd.Categorical:
    """drop_reason_name of every (reason, code), computed once per distinct pair."""
    names = [None, *reasons.cat.categories]
    pairs = (reasons.cat.codes.to_numpy().astype(np.int64) + 1) * _CODES + (codes + 1)
    distinct, which = np.unique(pairs, return_inverse=True)
    labels = np.asarray([drop_reason_name(names[p // _CODES],
                                          p % _CODES - 1 if p % _CODES else None)
                         for p in distinct.tolist()], dtype=object)
    categories, label_of = np.unique(labels, return_inverse=True)
    return pd.Categorical.from_codes(label_of[which], categories=pd.Index(categories))


def drop_reasons(df: pd.DataFrame) -> pd.DataFrame:
    """"Hubble Metrics and Monitoring" > Network > **Drop Reason** (total):
    `sum(hubble_drop_total) by (reason)` — flows with verdict DROPPED by DropReason name
    (`POLICY_DENIED`, ...). Columns: reason, flows."""
    return count(dropped(df), ["reason"])


def drop_reasons_over_time(df: pd.DataFrame, buckets: Buckets | None = None) -> pd.DataFrame:
    """Network > **Drop Reason**: `sum(rate(hubble_drop_total[1m])) by (reason)` — DROPPED
    flows by reason per time bucket. Columns: time, then one per reason."""
    flows = dropped(df, ["time"])
    return over_time(flows["time"], flows["reason"], buckets or buckets_of(df))


def _policy_denied(df: pd.DataFrame, side: str) -> pd.DataFrame:
    flows = dropped(df, peer_columns(side))
    return flows[(flows["reason"] == "POLICY_DENIED").to_numpy()]


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
    (type 5) except those from the `host` identity (1), and every L7 event (match
    `l7/<protocol>`, whatever its source); labels lower-case as the metric has them (`ingress`,
    `l3-l4`, `forwarded`). Columns: direction, match, action, flows."""
    from_host = np.asarray(df["src_identity"].fillna(0) == 1, dtype=bool)
    keep = (is_(df, "event_type", 5) & ~from_host) | is_(df, "event_type", 129)
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
