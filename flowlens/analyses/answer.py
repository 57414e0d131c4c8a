"""The answer a report opens with: which connections are denied by policy, by what, since when,
and whether it still happens; and where that changed in the window.

A connection end is a source, a destination, its port and protocol, and the end where Cilium
judged it: ingress at the destination or egress at the source (as `flowlens policy check`
has it). Its outcomes are its policy denials (DROPPED with a policy drop reason) and the
requests that show it passed that end (forwarded, redirected or audited there), in time order.

Everything here folds those outcomes per end in time order, so parts of an input (a store's
partitions, in time order) merge exactly: counts add, first and last are min and max, reasons
and policies are sets, and the flips of two consecutive parts are their own plus one where the
first part's last outcome differs from the second part's first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowlens.analyses.drops import dropped, same_packet
from flowlens.analyses.labels import is_, peer_columns, peer_names, row_keys, rows
from flowlens.policy.check import ALLOWING, POLICY_DROPS, request_flows

END = ["source", "destination", "port", "protocol", "direction"]
STILL_DENIED, ALLOWED_AGAIN = "still denied", "allowed again"
DENIED_COLUMNS = [*END, "reason", "policies", "flows", "first", "last", "status", "since",
                  "allowed_before", "allowed_again"]
CHANGE_COLUMNS = [*END, "change", "at", "before"]
# Where a flow without a traffic direction (hubble's text prints none on traces) was seen:
# delivered to the pod (to-endpoint) passed its ingress; leaving for the stack, the overlay or
# the network passed the sender's egress.
_INGRESS_POINTS = (0,)
_EGRESS_POINTS = (3, 4, 11)
_PLAIN = {"source": object, "destination": object}


@dataclass(frozen=True)
class Answer:
    """Who is denied now (`denied`), what changed (`changes`), how often a denied packet
    counts (`verdict_events`, `drop_events`: each denied packet is usually both) and the
    drops that are not policy denials (`other_drops`, by reason)."""

    denied: pd.DataFrame
    changes: pd.DataFrame
    verdict_events: int
    drop_events: int
    other_drops: pd.DataFrame

    @property
    def counted_twice(self) -> bool:
        """Denied packets appear as a policy-verdict event and as a drop event."""
        return self.verdict_events > 0 and self.drop_events > 0


def answer(df: pd.DataFrame, selected: np.ndarray | None = None,
           seen: np.ndarray | None = None) -> Answer:
    """The report's opening answer: the denials among the `selected` flows of `df` (default:
    all), and when their ends passed, told by the flows `seen` (default: all; a report gives
    its time window, whatever the filters select: `--verdict DROPPED` or a one-sided filter
    does not hide that a connection is allowed again)."""
    reasons = dropped(df, ["event_type"])
    ordered, flips = _flips(policy_outcomes(df, reasons, selected, seen))
    chosen = (np.ones(len(reasons), dtype=bool) if selected is None
              else selected[is_(df, "verdict", "DROPPED")])
    by_policy = reasons["reason"].isin(POLICY_DROPS).to_numpy()
    denied, others = reasons[by_policy & chosen], reasons[~by_policy & chosen]
    other_drops = (others.groupby("reason", observed=True).size().rename("flows")
                   .sort_values(ascending=False, kind="stable").reset_index())
    return Answer(_denied_connections(ordered, flips), _changes(ordered, flips),
                  int((denied["event_type"] == 5).sum()), int((denied["event_type"] == 1).sum()),
                  other_drops.astype({"reason": object}))


def policy_outcomes(df: pd.DataFrame, drops: pd.DataFrame | None = None,
                    selected: np.ndarray | None = None,
                    seen: np.ndarray | None = None) -> pd.DataFrame:
    """Every policy outcome of a connection end, oldest first, of the ends denied at least
    once: the denials among the `selected` flows and the passing among the flows `seen` (see
    `answer`; `drops`: `dropped(df)`, when already at hand). Columns: source, destination,
    port, protocol, direction (ingress, egress or unknown), time, denied, reason (denials),
    policies (the policies the flow names)."""
    drops = dropped(df) if drops is None else drops
    dropped_rows = np.flatnonzero(is_(df, "verdict", "DROPPED"))
    by_policy = drops["reason"].isin(POLICY_DROPS).to_numpy()
    if selected is not None:
        by_policy = by_policy & selected[dropped_rows]
    denied_rows = dropped_rows[by_policy]
    denied = np.zeros(len(df), dtype=bool)
    denied[denied_rows] = True
    # Only requests to a port and protocol some denial has can show a denied end passing.
    port = df["dst_port"].to_numpy(dtype=np.int32, na_value=-1)
    allowed = is_(df, "verdict", *ALLOWING) & np.isin(port, np.unique(port[denied_rows]))
    allowed &= is_(df, "protocol", *df["protocol"].iloc[denied_rows].dropna().unique())
    allowed &= request_flows(df, denied)
    if seen is not None:
        allowed &= seen
    direction = _directions(df, denied)
    keep = denied | (allowed & (direction > 0))
    kept = np.flatnonzero(keep)
    at = np.searchsorted(kept, denied_rows)  # the denials among the kept rows
    out = _connections(df, keep).assign(
        direction=pd.Categorical.from_codes(direction[kept], categories=pd.Index(_DIRECTIONS)),
        denied=denied[kept], reason=_placed(drops["reason"][by_policy], at, len(kept)),
        policies=_placed(df["policies"].iloc[denied_rows].astype("category"), at, len(kept)))
    end = row_keys(out, END)
    out = out[np.isin(end, end[out["denied"].to_numpy()])]
    return out.sort_values("time", kind="stable").reset_index(drop=True)


def _connections(df: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """The kept flows' source, destination, port, protocol and time."""
    flows = rows(df, keep, [*peer_columns("src"), *peer_columns("dst"), "dst_port", "protocol",
                            "time"])
    return pd.DataFrame({
        "source": peer_names(flows, "src"), "destination": peer_names(flows, "dst"),
        "port": flows["dst_port"].array, "protocol": flows["protocol"].array,
        "time": flows["time"].array})


def _placed(values: pd.Series, at: np.ndarray, size: int) -> pd.Categorical:
    """A categorical of `size` rows: `values` (categorical) at the rows `at`, NA elsewhere."""
    codes = np.full(size, -1, dtype=np.int32)
    codes[at] = values.cat.codes.to_numpy()
    return pd.Categorical.from_codes(codes, categories=values.cat.categories)


_DIRECTIONS = ["unknown", "ingress", "egress"]
_INGRESS, _EGRESS = 1, 2


def _directions(df: pd.DataFrame, denied: np.ndarray) -> np.ndarray:
    """The end each flow was judged or seen at (an index into _DIRECTIONS, 0: unknown): its
    traffic direction; else the trace point; else, for a drop event, the direction of the
    policy-verdict event of the same packet."""
    direction = np.zeros(len(df), dtype=np.int8)
    direction[is_(df, "traffic_direction", "INGRESS")] = _INGRESS
    direction[is_(df, "traffic_direction", "EGRESS")] = _EGRESS
    trace = (direction == 0) & is_(df, "event_type", 4)
    direction[trace & is_(df, "event_subtype", *_INGRESS_POINTS)] = _INGRESS
    direction[trace & is_(df, "event_subtype", *_EGRESS_POINTS)] = _EGRESS
    asks = denied & (direction == 0) & is_(df, "event_type", 1)
    if asks.any():
        donors = denied & (direction > 0) & is_(df, "event_type", 5)
        found = same_packet(df, asks, donors)
        direction[asks] = np.where(found >= 0, direction[np.maximum(found, 0)], 0)
    return direction


def _changes(ordered: pd.DataFrame, flips: np.ndarray) -> pd.DataFrame:
    """Where a connection end flipped: `change` is `denied` (it passed before) or `allowed
    again`, `at` the first flow of the new outcome, `before` the last flow of the old one."""
    picked = ordered[flips]
    out = picked[END].assign(
        change=np.where(picked["denied"].to_numpy(), "denied", ALLOWED_AGAIN),
        at=picked["time"].array,
        before=ordered["time"].shift(1)[flips].array)
    out = out[CHANGE_COLUMNS].sort_values(["at", *END], kind="stable")
    return out.astype(_PLAIN).reset_index(drop=True)


def _flips(outcomes: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The outcomes per end in time order, and which rows start a new outcome of their end."""
    keyed = outcomes.assign(end=row_keys(outcomes, END))
    ordered = keyed.sort_values(["end", "time"], kind="stable").reset_index(drop=True)
    end, denied = ordered["end"].to_numpy(), ordered["denied"].to_numpy(dtype=bool)
    flips = np.zeros(len(ordered), dtype=bool)
    flips[1:] = (end[1:] == end[:-1]) & (denied[1:] != denied[:-1])
    return ordered, flips


def _denied_connections(ordered: pd.DataFrame, flips: np.ndarray) -> pd.DataFrame:
    """Per connection end denied by policy: its drop reasons and the policies the flows name,
    its denied flows (policy-verdict and drop events both, as hubble_drop_total counts), the
    first and last denial, whether it is `still denied` (its newest outcome is a denial) or
    `allowed again`, `since` when the latest run of denials began, `allowed_before` when it
    last passed before that (NaT: never seen passing before), and `allowed_again` when it passed
    again after its last denial. Still denied first, then most flows."""
    denied = ordered["denied"].to_numpy(dtype=bool)
    run_start = ordered["time"].where(flips | ~ordered.duplicated("end"))
    grouped = ordered.assign(
        denied_at=ordered["time"].where(denied), denied_since=run_start.where(denied),
        passed_before=ordered["time"].shift(1).where(denied & flips),
        allowed_at=run_start.where(~denied & flips)).groupby("end", sort=False)
    per_end = grouped.agg(
        flows=("denied", "sum"), first=("denied_at", "min"), last=("denied_at", "max"),
        since=("denied_since", "max"), allowed_before=("passed_before", "max"),
        allowed_again=("allowed_at", "max"), newest_denied=("denied", "last"))
    denials = ordered[denied]
    names = denials.groupby("end", sort=False).agg(
        reason=("reason", _joined), policies=("policies", _joined)).astype(object)
    names = names.where(names.notna(), None)
    ends = ordered.drop_duplicates("end").set_index("end")[END]
    out = ends.join(names).join(per_end).reset_index(drop=True)
    still = out["newest_denied"].to_numpy(dtype=bool)
    out["status"] = np.where(still, STILL_DENIED, ALLOWED_AGAIN)
    out["allowed_again"] = out["allowed_again"].where(~still)
    out["flows"] = out["flows"].astype("int64")
    out = out.assign(_still=still).sort_values(
        ["_still", "flows", "source", "destination", "port", "direction"],
        ascending=[False, False, True, True, True, True], kind="stable")
    return out[DENIED_COLUMNS].astype(_PLAIN).reset_index(drop=True)


def _joined(values: pd.Series) -> str | None:
    """Distinct values, most frequent first, joined with ', '; None when there are none."""
    counted = values.value_counts(sort=True)
    counted = counted[counted > 0]
    return ", ".join(str(v) for v in counted.index) if len(counted) else None
