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
    return answer_of(answer_part(df, selected, seen))


@dataclass(frozen=True)
class AnswerPart:
    """What the answer needs of a part of an input: per connection end its runs of equal
    outcomes in time order (`runs`: END, untimed (flows without a time, which sort last), denied,
    flows, first and last (times of the run's first and last flow), low and high (its
    earliest and latest time)), its denials per reason and per policy (`names`: END, kind,
    name, flows), and the counts of denied and other drops. Parts in time order merge
    (`merge_answer_parts`)."""

    runs: pd.DataFrame
    names: pd.DataFrame
    verdict_events: int
    drop_events: int
    other_drops: pd.DataFrame


def answer_part(df: pd.DataFrame, selected: np.ndarray | None = None,
                seen: np.ndarray | None = None,
                counted: np.ndarray | None = None) -> AnswerPart:
    """The `AnswerPart` of the flows of `df` (`selected` and `seen` as `answer` takes them;
    of its `counted` rows, when given: the others only lend a drop reason or a direction to
    the counted ones)."""
    drops = dropped(df, ["event_type"])
    dropped_rows = is_(df, "verdict", "DROPPED")
    chosen = np.ones(len(drops), dtype=bool) if selected is None else selected[dropped_rows]
    by_policy = drops["reason"].isin(POLICY_DROPS).to_numpy()
    outcomes = _outcomes(df, drops, by_policy & chosen, seen, counted)
    if counted is not None:
        chosen = chosen & counted[dropped_rows]
    denied, others = drops[by_policy & chosen], drops[~by_policy & chosen]
    other_drops = (others.groupby("reason", observed=True).size().rename("flows")
                   .reset_index().astype({"reason": object}))
    return AnswerPart(_runs(outcomes), _names(outcomes), int((denied["event_type"] == 5).sum()),
                      int((denied["event_type"] == 1).sum()), other_drops)


def merge_answer_parts(parts: list[AnswerPart]) -> AnswerPart:
    """Parts of an input, in time order, as one: runs that meet with the same outcome join."""
    runs = pd.concat([p.runs for p in parts], ignore_index=True)
    order = np.lexsort((runs["untimed"].to_numpy(dtype=bool), row_keys(runs, END)))
    names = pd.concat([p.names for p in parts], ignore_index=True)
    names = names.groupby([*END, "kind", "name"], observed=True, dropna=False,
                          sort=False)["flows"].sum().reset_index()
    others = pd.concat([p.other_drops for p in parts], ignore_index=True)
    others = others.groupby("reason", sort=True)["flows"].sum().reset_index()
    return AnswerPart(_joined_runs(runs.iloc[order], ["untimed"]), names,
                      sum(p.verdict_events for p in parts), sum(p.drop_events for p in parts),
                      others)


def answer_of(part: AnswerPart) -> Answer:
    """The answer of an input from its (merged) part."""
    runs = part.runs
    end = row_keys(runs, END)
    runs = runs[np.isin(end, end[runs["denied"].to_numpy(dtype=bool)])]
    runs = _joined_runs(runs.assign(untimed=False), ["untimed"])
    other_drops = part.other_drops.sort_values("flows", ascending=False, kind="stable")
    return Answer(_denied_connections(runs, part.names), _changes(runs),
                  part.verdict_events, part.drop_events, other_drops.reset_index(drop=True))


def _outcomes(df: pd.DataFrame, drops: pd.DataFrame, by_policy: np.ndarray,
              seen: np.ndarray | None, counted: np.ndarray | None) -> pd.DataFrame:
    """Every policy outcome of a connection end (of the `counted` rows): its denials (the
    DROPPED flows `by_policy` marks) and the requests among the flows `seen` that show it
    passed an end (forwarded, redirected or audited there). Columns: source, destination,
    port, protocol, direction (ingress, egress or unknown), time, denied, reason (denials),
    policies (the policies the flow names). Over a whole input (no `counted`) only requests
    to a port and protocol some denial has: the others belong to ends never denied."""
    denied_rows = np.flatnonzero(is_(df, "verdict", "DROPPED"))[by_policy]
    denied = np.zeros(len(df), dtype=bool)
    denied[denied_rows] = True
    allowed = is_(df, "verdict", *ALLOWING) & request_flows(df, denied)
    if seen is not None:
        allowed &= seen
    if counted is None:
        port = df["dst_port"].to_numpy(dtype=np.int32, na_value=-1)
        allowed &= np.isin(port, np.unique(port[denied_rows]))
        allowed &= is_(df, "protocol", *df["protocol"].iloc[denied_rows].dropna().unique())
    direction = _directions(df, denied)
    keep = denied | (allowed & (direction > 0))
    if counted is not None:
        keep &= counted
    kept = np.flatnonzero(keep)
    at = np.searchsorted(kept, denied_rows[keep[denied_rows]])  # the denials among the kept
    reasons = drops["reason"][by_policy][keep[denied_rows]]
    return _connections(df, keep).assign(
        direction=pd.Categorical.from_codes(direction[kept], categories=pd.Index(_DIRECTIONS)),
        denied=denied[kept], reason=_placed(reasons, at, len(kept)),
        policies=_placed(df["policies"].iloc[denied_rows[keep[denied_rows]]]
                         .astype("category"), at, len(kept)))


def _runs(outcomes: pd.DataFrame) -> pd.DataFrame:
    """The runs of equal outcomes of each end, in time order (flows without a time last, as
    runs of their own)."""
    times = outcomes["time"]
    untimed = times.isna().to_numpy()
    ns = np.where(untimed, 0, times.array.asi8)
    order = np.lexsort((np.arange(len(outcomes)), ns, untimed, row_keys(outcomes, END)))
    ordered = outcomes.assign(untimed=untimed, flows=1, first=times, last=times, low=times,
                              high=times).iloc[order]
    return _joined_runs(ordered[RUN_COLUMNS], ["untimed"])


RUN_COLUMNS = [*END, "untimed", "denied", "flows", "first", "last", "low", "high"]


def _joined_runs(runs: pd.DataFrame, also: list[str]) -> pd.DataFrame:
    """Consecutive rows (runs, or single outcomes) of the same end, outcome and `also`
    columns joined into one run."""
    runs = runs.reset_index(drop=True)
    if runs.empty:
        return runs
    key = row_keys(runs, [*END, *also, "denied"])
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    stops = np.r_[starts[1:], len(runs)] - 1
    run = np.repeat(np.arange(len(starts)), stops - starts + 1)
    return runs.iloc[starts][[*END, *also, "denied"]].reset_index(drop=True).assign(
        flows=np.add.reduceat(runs["flows"].to_numpy(dtype=np.int64), starts),
        first=runs["first"].iloc[starts].array, last=runs["last"].iloc[stops].array,
        low=runs["low"].groupby(run, sort=False).min().array,
        high=runs["high"].groupby(run, sort=False).max().array)


def _names(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Denials per end and reason, and per end and policies. Columns: END, kind, name,
    flows."""
    denials = outcomes[outcomes["denied"].to_numpy(dtype=bool)]
    parts = []
    for kind in ("reason", "policies"):
        named = denials[denials[kind].notna().to_numpy()]
        counted = named.groupby([*END, kind], observed=True, dropna=False,
                                sort=False).size().rename("flows").reset_index()
        parts.append(counted.rename(columns={kind: "name"}).assign(kind=kind).astype(
            {"name": object}))
    return pd.concat(parts, ignore_index=True)[[*END, "kind", "name", "flows"]]


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


def _changes(runs: pd.DataFrame) -> pd.DataFrame:
    """Where a connection end flipped: `change` is `denied` (it passed before) or `allowed
    again`, `at` the first flow of the new outcome, `before` the last flow of the old one."""
    end = row_keys(runs, END)
    flips = np.zeros(len(runs), dtype=bool)
    flips[1:] = end[1:] == end[:-1]
    picked = runs[flips]
    out = picked[END].assign(
        change=np.where(picked["denied"].to_numpy(dtype=bool), "denied", ALLOWED_AGAIN),
        at=picked["first"].array, before=runs["last"].shift(1)[flips].array)
    out = out[CHANGE_COLUMNS].astype(_PLAIN).astype({"protocol": object})
    return out.sort_values(["at", *END], kind="stable").reset_index(drop=True)


def _denied_connections(runs: pd.DataFrame, names: pd.DataFrame) -> pd.DataFrame:
    """Per connection end denied by policy: its drop reasons and the policies the flows name,
    its denied flows (policy-verdict and drop events both, as hubble_drop_total counts), the
    first and last denial, whether it is `still denied` (its newest outcome is a denial) or
    `allowed again`, `since` when the latest run of denials began, `allowed_before` when it
    last passed before that (NaT: never seen passing before), and `allowed_again` when it passed
    again after its last denial. Still denied first, then most flows."""
    ends = row_keys(pd.concat([runs[END], names[END]], ignore_index=True), END)
    end, named = ends[:len(runs)], ends[len(runs):]
    denied = runs["denied"].to_numpy(dtype=bool)
    flips = np.r_[False, end[1:] == end[:-1]] if len(runs) else denied
    grouped = runs.assign(
        end=end, denied_flows=np.where(denied, runs["flows"].to_numpy(dtype=np.int64), 0),
        denied_low=runs["low"].where(denied), denied_high=runs["high"].where(denied),
        denied_since=runs["first"].where(denied),
        passed_before=runs["last"].shift(1).where(denied & flips),
        allowed_at=runs["first"].where(~denied & flips)).groupby("end", sort=False)
    out = grouped.agg(
        **{c: (c, "first") for c in END},
        flows=("denied_flows", "sum"), first=("denied_low", "min"), last=("denied_high", "max"),
        since=("denied_since", "max"), allowed_before=("passed_before", "max"),
        allowed_again=("allowed_at", "max"), newest_denied=("denied", "last"))
    for kind in ("reason", "policies"):
        joined = _joined(names.assign(end=named), kind)
        out[kind] = [joined.get(e) for e in out.index]
    still = out["newest_denied"].to_numpy(dtype=bool)
    out["status"] = np.where(still, STILL_DENIED, ALLOWED_AGAIN)
    out["allowed_again"] = out["allowed_again"].where(~still)
    out["flows"] = out["flows"].astype("int64")
    out = out.assign(_still=still, _protocol=out["protocol"].astype(object)).sort_values(
        ["_still", "flows", "source", "destination", "port", "_protocol", "direction"],
        ascending=[False, False, True, True, True, True, True], kind="stable")
    return out[DENIED_COLUMNS].astype(_PLAIN).reset_index(drop=True)


def _joined(names: pd.DataFrame, kind: str) -> dict[int, str]:
    """Per end (column `end`), its distinct `kind` names, most denials first (then by name),
    joined with ', '."""
    picked = names[(names["kind"] == kind).to_numpy()]
    picked = picked.groupby(["end", "name"], sort=False)["flows"].sum().reset_index()
    picked = picked.assign(name=picked["name"].astype(str)).sort_values(
        ["flows", "name"], ascending=[False, True], kind="stable")
    return picked.groupby("end", sort=False)["name"].agg(", ".join).to_dict()
