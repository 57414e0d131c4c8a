"""`flowlens policy check`: what a set of policies would do to the connections in the flows.

A connection is a source, a destination, the destination port and the protocol, seen from the
request side (replies ride on their connection's verdict). Cilium decides a connection twice,
at the source pod's egress and at the destination pod's ingress, and Hubble reports each end
as its own flows (`traffic_direction`), so each end is a row of its own: `direction` says
which. A row's `observed` verdict is the newest policy outcome among its flows (forwarded,
redirected or audited: allowed; dropped by policy: denied), so a capture that spans a policy
change tells what holds now; `predicted` is what the given policies would decide.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from flowlens.policy.evaluate import decide, selects
from flowlens.policy.model import DIRECTIONS, Direction, PolicySet
from flowlens.policy.peers import Peer, peer

CHANGES = ("would_break", "newly_allowed", "unknown", "unchanged")
CONNECTION_COLUMNS = ("source", "destination", "port", "protocol", "direction", "flows",
                      "observed", "predicted", "change", "allowed_by", "reason")
POLICY_DROPS = ("POLICY_DENIED", "POLICY_DENY", "AUTH_REQUIRED")  # dropped by a policy
ALLOWING = ("FORWARDED", "REDIRECTED", "AUDIT")  # verdicts of a flow a policy let through
_SIDE = ("namespace", "pod", "identity", "ip", "labels")
KEY = [*(f"src_{p}" for p in _SIDE), *(f"dst_{p}" for p in _SIDE), "dst_port", "protocol"]


@dataclass(frozen=True)
class PolicyCheck:
    """The answer: one row per connection end (CONNECTION_COLUMNS), would-break first."""

    connections: pd.DataFrame
    policies: PolicySet
    notes: tuple[str, ...] = field(default=())

    def count(self, change: str) -> int:
        return int((self.connections["change"] == change).sum())

    def flows(self, change: str) -> int:
        return int(self.connections.loc[self.connections["change"] == change, "flows"].sum())

    def changes(self) -> pd.DataFrame:
        """Connection ends and their flows per change, every change listed."""
        return pd.DataFrame({"change": list(CHANGES),
                             "connections": [self.count(c) for c in CHANGES],
                             "flows": [self.flows(c) for c in CHANGES]})

    def ends(self, change: str) -> pd.DataFrame:
        """The connection ends of one change, as a table to read (`reason` says why)."""
        picked = self.connections[self.connections["change"] == change]
        return picked[[c for c in CONNECTION_COLUMNS if c not in ("change", "allowed_by")]] \
            .reset_index(drop=True)

    @property
    def summary(self) -> dict[str, int]:
        """Connection ends per change: would_break, newly_allowed, unknown, unchanged."""
        return {change: self.count(change) for change in CHANGES}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (README, "Policy lens")."""
        rows = [{str(k): v for k, v in r.items()} for r in self.connections.to_dict("records")]
        for row in rows:
            row["port"] = None if pd.isna(row["port"]) else int(row["port"])
            row["flows"] = int(row["flows"])
            row["allowed_by"] = list(row["allowed_by"])
        return {"connections": rows, "summary": self.summary,
                "summary_flows": {change: self.flows(change) for change in CHANGES},
                "policies": self.policies.titles(), "notes": list(self.notes)}


def check(df: pd.DataFrame, policies: PolicySet,
          named_ports: Mapping[str, int] | None = None) -> PolicyCheck:
    """What `policies` (as if exactly these were applied) would do to each connection of
    `df`, next to what the flows observed."""
    return check_grouped(grouped_requests(df), policies, named_ports)


def grouped_requests(df: pd.DataFrame, part: int = 0) -> pd.DataFrame:
    """The connection requests of `df` per connection and traffic direction, as `check`
    takes them: flows, the newest outcome and its time, and where the group first comes in
    `check`'s order (`order_judged`, `order_time`, `order_seq`: part `part` of an input, its
    row). Parts of an input in order merge (`merge_grouped`)."""
    return _grouped(connection_requests(df), part)


def merge_grouped(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """`grouped_requests` of parts of an input, in order, as of the whole: flows add up, the
    newest outcome wins (the later part on a tie), the first place is the earliest."""
    joined = pd.concat(parts, ignore_index=True)
    keys = [*KEY, "traffic_direction"]

    def groups(order: list[str]) -> Any:
        return joined.sort_values(order, kind="stable").groupby(keys, observed=True,
                                                                dropna=False, sort=False)

    added = groups(_ORDER).agg(flows=("flows", "sum"), at=("at", "max"),
                               **{c: (c, "first") for c in _ORDER})
    newest = groups(_LATEST).agg(outcome=("outcome", "last"),
                                 **{c: (c, "last") for c in _LATEST})
    return added.join(newest).reset_index()


def check_grouped(grouped: pd.DataFrame, policies: PolicySet,
                  named_ports: Mapping[str, int] | None = None) -> PolicyCheck:
    """`check` of an input's `grouped_requests`."""
    ends: dict[tuple[str, str, Any, Any], dict[Direction, _End]] = {}
    peers: dict[tuple[str, str, Any, Any], tuple[Peer, Peer]] = {}
    for seen in _seen(grouped):
        # One pod, one connection: its IPv4 and IPv6 flows go together.
        key = (seen.src.name, seen.dst.name, seen.port, seen.protocol)
        peers.setdefault(key, (seen.src, seen.dst))
        for direction in seen.directions:
            ends.setdefault(key, {}).setdefault(direction, _End()).add(seen)
    rows = []
    for key, by_direction in ends.items():
        src, dst = peers[key]
        _, _, port, protocol = key
        for direction, end in by_direction.items():
            endpoint, other = (dst, src) if direction == "ingress" else (src, dst)
            if not endpoint.is_pod:
                continue  # no policy selects a reserved identity or an outside address
            decision = decide(policies, direction, endpoint, other, port, protocol,
                              named_ports)
            rows.append({"source": src.name, "destination": dst.name,
                         "port": None if port is None else int(port), "protocol": protocol,
                         "direction": direction, "flows": end.flows,
                         "observed": end.outcome or "unknown", "predicted": decision.verdict,
                         "change": _change(end.outcome or "unknown", decision.verdict),
                         "allowed_by": decision.allowed_by, "reason": decision.reason})
    every_peer = [p for pair in peers.values() for p in pair]
    return PolicyCheck(_sorted(rows), policies, tuple(_notes(policies, every_peer)))


class Seen(NamedTuple):
    """Requests of one connection as seen at `directions` (one end, or both when the flows
    did not say), with the newest policy outcome among them and its time."""

    src: Peer
    dst: Peer
    port: int | None
    protocol: str | None
    directions: tuple[Direction, ...]
    flows: int
    outcome: str
    at: Any


def seen_ends(requests: pd.DataFrame) -> Iterator[Seen]:
    """`connection_requests` grouped by connection and traffic direction."""
    return _seen(_grouped(requests))


def _seen(grouped: pd.DataFrame) -> Iterator[Seen]:
    """`_grouped` rows in the order their groups first come, as `Seen`."""
    ordered = grouped.sort_values(_ORDER, kind="stable")[[*KEY, "traffic_direction", "flows",
                                                           "outcome", "at"]]
    peers: dict[tuple[Any, ...], Peer] = {}
    for row in ordered.itertuples(index=False):
        values = [None if _missing(v) else v for v in row]
        src = peers.setdefault(tuple(values[:5]), peer(*values[:5]))
        dst = peers.setdefault(tuple(values[5:10]), peer(*values[5:10]))
        seen_at, flows, outcome, at = row[len(KEY):]
        yield Seen(src, dst, values[10], values[11], _ENDS.get(seen_at, DIRECTIONS), int(flows),
                   outcome, at)


class _End:
    """The flows of a connection at one end, and the newest policy outcome among them."""

    def __init__(self) -> None:
        self.flows = 0
        self.outcome = ""
        self.at: Any = None

    def add(self, seen: Seen) -> None:
        self.flows += seen.flows
        if seen.outcome and (self.at is None or seen.at > self.at):
            self.outcome, self.at = seen.outcome, seen.at


def connection_requests(df: pd.DataFrame) -> pd.DataFrame:
    """Flows that go the connection's way (`request_flows`), with their policy outcome."""
    allowing = df["verdict"].isin(ALLOWING).fillna(False).to_numpy(dtype=bool)
    denied = (df["verdict"].eq("DROPPED").fillna(False)
              & df["drop_reason"].isin(POLICY_DROPS).fillna(False)).to_numpy(dtype=bool)
    keep = request_flows(df, denied)
    outcome = np.select([allowing, denied], ["allowed", "denied"], "")
    return df.loc[keep, [*KEY, "traffic_direction", "time"]].assign(outcome=outcome[keep])


def request_flows(df: pd.DataFrame, denied: np.ndarray) -> np.ndarray:
    """Which flows go the connection's way: not replies. A flow whose direction Hubble could
    not tell counts only when it must be a request: a policy verdict, a drop by policy
    (`denied`; policies judge new connections, never replies) or a bare SYN."""
    verdict_event = df["event_type"].eq(5).fillna(False).to_numpy(dtype=bool)
    syn = df["tcp_flags"].isin(["SYN"]).to_numpy(dtype=bool)
    reply = df["is_reply"]
    return np.where(reply.isna().to_numpy(), verdict_event | denied | syn,
                    ~reply.fillna(True).to_numpy(dtype=bool))


# A group's first and last row in judged, time (none last), row order: where it first comes,
# and whose outcome is its newest.
_ORDER = ["order_judged", "order_time", "order_seq"]
_LATEST = ["latest_judged", "latest_time", "latest_seq"]
_PART_ROWS = 1 << 40  # order_seq: part * _PART_ROWS + row


def _grouped(requests: pd.DataFrame, part: int = 0) -> pd.DataFrame:
    """Per connection (the KEY values) and traffic direction: flows, the newest outcome and
    the newest judged flow's time, and where the group's first and last rows come in judged,
    time, row order."""
    judged = (requests["outcome"] != "").to_numpy(dtype=bool)
    times = requests["time"]
    # Judged flows last, oldest first: each group's last row is its newest outcome, if any.
    ordered = requests.assign(
        judged_at=times.where(judged), order_judged=judged,
        order_time=np.where(times.isna().to_numpy(), np.iinfo(np.int64).max, times.array.asi8),
        order_seq=part * _PART_ROWS + np.arange(len(requests), dtype=np.int64),
    ).sort_values(["order_judged", "order_time"], kind="stable")
    groups = ordered.groupby([*KEY, "traffic_direction"], observed=True, dropna=False,
                             sort=False)
    return groups.agg(flows=("outcome", "size"), outcome=("outcome", "last"),
                      at=("judged_at", "last"),
                      **{c: (c, "first") for c in _ORDER},
                      **{latest: (c, "last") for latest, c in zip(_LATEST, _ORDER,
                                                                  strict=True)}).reset_index()


_ENDS: dict[Any, tuple[Direction, ...]] = {"INGRESS": ("ingress",), "EGRESS": ("egress",)}


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _sorted(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Would-break first, then newly allowed, unknown, unchanged; most flows first."""
    if not rows:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in CONNECTION_COLUMNS})
    frame = pd.DataFrame(rows, columns=list(CONNECTION_COLUMNS))
    frame["port"] = frame["port"].astype("Int64")
    order = frame["change"].map({c: i for i, c in enumerate(CHANGES)})
    return (frame.assign(_order=order)
            .sort_values(["_order", "flows", "source", "destination", "direction"],
                         ascending=[True, False, True, True, True], kind="stable")
            .drop(columns="_order").reset_index(drop=True))


def _change(observed: str, predicted: str) -> str:
    if "unknown" in (observed, predicted):
        return "unknown"
    if observed == predicted:
        return "unchanged"
    return "would_break" if predicted == "denied" else "newly_allowed"


def _notes(policies: PolicySet, peers: Any) -> list[str]:
    """What the user must know to trust the answer: policies that select no pod of the
    flows (a typo in a selector looks exactly like this)."""
    pods = [p for p in peers if p.is_pod]
    notes = []
    for policy in policies:
        if not any(selects(policy, p) is not False for p in pods):
            notes.append(f"{policy.title} ({policy.kind}) selects no pod in these flows "
                         f"(selector {policy.selects_text()})")
    return notes
