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
    SIDE_NAMES,
    add_up,
    count,
    drop_reason_name,
    endpoint,
    given,
    is_,
    peer_columns,
    peer_names,
    row_keys,
    rows,
    shared,
    sort_largest,
)
from flowlens.analyses.traffic import over_time

# A policy-verdict event and the drop event of the same packet are emitted microseconds apart;
# retransmissions of a denied packet come a second or more later and are denied alike.
SAME_PACKET = pd.Timedelta(seconds=1)


def dropped(df: pd.DataFrame, columns: Sequence[str] = (),
            counted: np.ndarray | None = None) -> pd.DataFrame:
    """The DROPPED flows (of the `counted` rows, when given; the others are only paired
    with): their `columns` and `reason`, the `hubble_drop_total` reason label (DropReason
    name, categorical).

    hubble's text prints no drop reason on policy-verdict lines: such an event takes the reason
    of the drop event of the same packet (same peers, ports and protocol, within SAME_PACKET);
    one without any stays DROP_REASON_UNKNOWN (`reasonless_policy_verdicts` counts them)."""
    if counted is None:
        keep, reasons = _drop_reasons(df)
    else:  # (the reasons' categories are those of the counted rows)
        keep = is_(df, "verdict", "DROPPED")
        codes = _reason_codes(df, keep)[counted[keep]]
        keep = keep & counted
        reasons = _reason_labels(df["drop_reason"][keep], codes)
    out = rows(df, keep, list(columns))
    out["reason"] = reasons
    return out


@shared
def _drop_reasons(df: pd.DataFrame) -> tuple[np.ndarray, pd.Categorical]:
    """The DROPPED flows, and their `reason` labels."""
    keep = is_(df, "verdict", "DROPPED")
    return keep, _reason_labels(df["drop_reason"][keep], _reason_codes(df, keep))


def reasonless_policy_verdicts(df: pd.DataFrame, counted: np.ndarray | None = None
                               ) -> tuple[int, int]:
    """(policy-verdict drops read without a drop reason, how many of them no drop event of the
    same packet named), of the `counted` rows when given: what a report over hubble's text
    says about its Drop Reason panel."""
    keep = is_(df, "verdict", "DROPPED")
    missing = _reasonless(df, keep)
    if counted is not None:
        missing &= counted
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
    kept = np.flatnonzero(keep)
    column = df["drop_reason_code"]
    codes = column.iloc[kept].to_numpy(dtype=np.int64, na_value=-1)
    missing = _reasonless(df, keep)  # none in jsonpb: the pairing below is for text
    if missing.any():
        donors = keep & is_(df, "event_type", 1) & column.notna().to_numpy()
        donor = same_packet(df, missing, donors)
        found = column.iloc[np.maximum(donor, 0)].to_numpy(dtype=np.int64, na_value=-1)
        codes[np.searchsorted(kept, np.flatnonzero(missing))] = np.where(donor >= 0, found, -1)
    return codes


def same_packet(df: pd.DataFrame, asks: np.ndarray, donors: np.ndarray) -> np.ndarray:
    """For each `asks` row (in row order), the row of the nearest `donors` flow of the same
    packet (same peers, ports and protocol, within a second), or -1: a policy-verdict event and
    the drop event of one denied packet."""
    both = asks | donors
    flows = rows(df, both, ["time", *peer_columns("src"), *peer_columns("dst"), "src_port",
                            "dst_port", "protocol"])
    flows = flows.assign(src_end=endpoint(flows, "src"), dst_end=endpoint(flows, "dst"),
                         packet=lambda f: row_keys(f, ["src_end", "dst_end", "src_port",
                                                       "dst_port", "protocol"]),
                         row=np.flatnonzero(both))[["time", "packet", "row"]]
    # A flow without a time is no packet's other event (and merge_asof takes no NaT).
    left = flows[asks[both]].assign(ask=lambda f: np.arange(len(f))).dropna(subset="time")
    right = flows[donors[both]].rename(columns={"row": "donor"}).dropna(subset="time")
    left, right = left.sort_values("time"), right.sort_values("time")
    found = pd.merge_asof(left, right, on="time", by="packet", direction="nearest",
                          tolerance=SAME_PACKET)
    out = np.full(len(left), -1, dtype=np.int64)
    out[found["ask"].to_numpy()] = found["donor"].fillna(-1).to_numpy(dtype=np.int64)
    return out


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


@shared
def _policy_denied(df: pd.DataFrame, side: str) -> pd.DataFrame:
    return policy_denied(dropped(df, ["time", *peer_columns(side)]), side)


def policy_denied(flows: pd.DataFrame, side: str) -> pd.DataFrame:
    """The time and the `side` peer's name (column `source`/`destination`) of every flow of
    `flows` (`dropped`, with the time and the side's peer columns) with reason
    POLICY_DENIED."""
    flows = flows[(flows["reason"] == "POLICY_DENIED").to_numpy()]
    return pd.DataFrame({SIDE_NAMES[side]: peer_names(flows, side), "time": flows["time"].array})


@shared
def _top_denied(df: pd.DataFrame, side: str, top: int) -> pd.DataFrame:
    peer = SIDE_NAMES[side]
    return top_denied(denied_tally(_policy_denied(df, side), peer), peer, top)


def denied_tally(flows: pd.DataFrame, peer: str) -> pd.DataFrame:
    """Per peer of `policy_denied` flows: flows, first, last (parts of an input add up)."""
    return flows.groupby(peer, sort=True, observed=True).agg(
        flows=("time", "size"), first=("time", "min"), last=("time", "max")).reset_index()


def merge_denied_tallies(parts: Sequence[pd.DataFrame], peer: str) -> pd.DataFrame:
    """`denied_tally` of parts of an input, as of the whole."""
    return pd.concat(parts, ignore_index=True).astype({peer: object}).groupby(
        peer, sort=True).agg(flows=("flows", "sum"), first=("first", "min"),
                             last=("last", "max")).reset_index()


def top_denied(tally: pd.DataFrame, peer: str, top: int) -> pd.DataFrame:
    """The `top` peers of a `denied_tally`, most flows first."""
    return sort_largest(tally.astype({peer: object}), "flows", [peer]).head(top)


def top_denied_sources(df: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Network Policy > **Top 10 Source Pods with Denied Packets**:
    `topk(10, sum(rate(hubble_drop_total{reason="POLICY_DENIED"}[1m])) by (source))` — DROPPED
    flows with reason POLICY_DENIED by source `namespace/pod` (peers without a pod by reserved
    identity name, else IP), with the first and last of them. Columns: source, flows, first,
    last."""
    return _top_denied(df, "src", top).copy()  # (the over-time panel shares it)


def top_denied_destinations(df: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Network Policy > **Top 10 Destination Pods with Denied Packets**: the same by
    destination. Columns: destination, flows, first, last."""
    return _top_denied(df, "dst", top).copy()


def _denied_over_time(df: pd.DataFrame, side: str, buckets: Buckets | None,
                      top: int) -> pd.DataFrame:
    peer = SIDE_NAMES[side]
    flows = _policy_denied(df, side)
    tops = _top_denied(df, side, top)[peer].tolist()
    names = flows[peer].cat.set_categories(tops)  # the others are NA: not drawn
    return over_time(flows["time"], pd.Series(names), buckets or buckets_of(df))


def denied_sources_over_time(df: pd.DataFrame, buckets: Buckets | None = None,
                             top: int = 10) -> pd.DataFrame:
    """**Top 10 Source Pods with Denied Packets** as the dashboard draws it, over time: the
    `top` sources' POLICY_DENIED drops per time bucket (the top over the whole window; Grafana
    picks the top at each step). Columns: time, then one per source."""
    return _denied_over_time(df, "src", buckets, top)


def denied_destinations_over_time(df: pd.DataFrame, buckets: Buckets | None = None,
                                  top: int = 10) -> pd.DataFrame:
    """**Top 10 Destination Pods with Denied Packets** over time: the same by destination.
    Columns: time, then one per destination."""
    return _denied_over_time(df, "dst", buckets, top)


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
