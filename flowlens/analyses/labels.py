"""The label values Hubble's metrics give a flow (../shared/spec/hubble-api.md §5), and the
counting helpers every panel shares.

Labels are computed per distinct value (a category, or a group of key columns), never per row:
a million flows have a few hundred distinct peers.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd

from flowlens import _hubble as H

# hubble_flows_processed_total `type` by monitor event type; anything else is "Unknown".
FLOW_TYPES: dict[int, str] = {1: "Drop", 3: "Capture", 4: "Trace", 5: "PolicyVerdict",
                              129: "L7"}
# The `protocol` / `subtype` label of L7 flows.
L7_PROTOCOLS: dict[str, str] = {"dns": "DNS", "http": "HTTP", "kafka": "Kafka"}
# hubble_dns_responses_total `rcode`.
DNS_RCODES: dict[int, str] = {0: "No Error", 1: "Format Error", 2: "Server Failure",
                              3: "Non-Existent Domain", 4: "Not Implemented",
                              5: "Query Refused"}

_PEER_PARTS = ("namespace", "pod", "identity", "ip")
SIDE_NAMES = {"src": "source", "dst": "destination"}  # a peer's column in a panel


_Fn = TypeVar("_Fn", bound=Callable[..., Any])
# What `shared` functions computed in the `sharing()` block running: (function, frame id,
# arguments) -> (a weak reference to the frame, the result).
_SHARED: ContextVar[dict[Any, tuple[weakref.ref[pd.DataFrame], Any]] | None] = ContextVar(
    "shared", default=None)


@contextmanager
def sharing() -> Iterator[None]:
    """Within, a `shared` function computes once per frame and arguments: a report's panels
    ask the same masks of the same frame many times. The frames must not change meanwhile."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared(fn: _Fn) -> _Fn:
    """`fn(df, *args)` (hashable args), computed once per frame and args inside `sharing()`;
    its result is shared, so callers never change it (arrays come read-only)."""
    @functools.wraps(fn)
    def once(df: pd.DataFrame, *args: Any) -> Any:
        memo = _SHARED.get()
        if memo is None:
            return fn(df, *args)
        key = (fn, id(df), args)
        hit = memo.get(key)
        if hit is None or hit[0]() is not df:  # (another frame may have the id of a gone one)
            result = fn(df, *args)
            if isinstance(result, np.ndarray):
                result.flags.writeable = False
            hit = memo[key] = (weakref.ref(df), result)
        return hit[1]
    return cast(_Fn, once)


@shared
def is_(df: pd.DataFrame, column: str, *values: Any) -> np.ndarray:
    """Rows whose `column` is one of `values` (NA is never one)."""
    series = df[column]
    if isinstance(series.dtype, pd.CategoricalDtype) and not any(pd.isna(v) for v in values):
        # Per category, not per row (isin hashes the codes): a report asks this ~70 times.
        hit = np.zeros(len(series.cat.categories) + 1, dtype=bool)  # the last: NA (code -1)
        hit[:-1] = series.cat.categories.isin(values)
        return hit[series.cat.codes.to_numpy()]
    return np.array(series.isin(values).fillna(False), dtype=bool)


def rows(df: pd.DataFrame, keep: np.ndarray | None, columns: Sequence[str]) -> pd.DataFrame:
    """Only the columns a panel needs, of the rows it counts (`keep`; None: all), without the
    frame's attrs (lost events), which pandas would compare on every merge."""
    picked = df[list(columns)] if keep is None else df.loc[keep, list(columns)]
    picked.attrs = {}
    return picked


def count(frame: pd.DataFrame, by: Sequence[str], name: str = "flows") -> pd.DataFrame:
    """Rows per distinct value of `by` (NA is a value of its own), largest first, ties in key
    order; a frame with the `by` columns and `name`."""
    keys = list(by)
    if frame.empty:
        return pd.DataFrame({**{k: pd.Series([], dtype=object) for k in keys},
                             name: pd.Series([], dtype="int64")})
    counted = frame.groupby(keys, observed=True, dropna=False, sort=True).size()
    out = counted.reset_index(name=name)
    return sort_largest(out, name, keys)


def sort_largest(frame: pd.DataFrame, column: str, keys: Sequence[str]) -> pd.DataFrame:
    """Largest `column` first; ties in the order of their `keys` (categories as text)."""
    ordered = frame.sort_values(list(keys), kind="stable", na_position="last", key=_as_text)
    ordered = ordered.sort_values(column, ascending=False, kind="stable")
    return ordered.reset_index(drop=True)


def _as_text(values: pd.Series) -> pd.Series:
    return values.astype(object) if isinstance(values.dtype, pd.CategoricalDtype) else values


def add_up(frame: pd.DataFrame, keys: Sequence[str], name: str = "flows") -> pd.DataFrame:
    """Counts of raw keys that got the same label, added up per label, largest first."""
    if frame.empty:
        return frame.reset_index(drop=True)
    summed = frame.groupby(list(keys), sort=True, dropna=False)[name].sum().reset_index()
    return sort_largest(summed, name, keys)


def relabel(frame: pd.DataFrame, column: str, label: Callable[[Any], str]) -> pd.DataFrame:
    """`column` as `label` of each distinct value (computed once per value), as plain objects."""
    values = frame[column].astype(object)
    names = {v: label(v) for v in pd.unique(values)}
    return frame.assign(**{column: values.map(names).astype(object)})


# --- metric labels ------------------------------------------------------------------------------

def peer_name(namespace: Any, pod: Any, identity: Any, ip: Any) -> str:
    """The `source` / `destination` context label of a flow's peer: `namespace/pod` for pods;
    otherwise a reserved identity's name (world, host, health, ...), else the IP."""
    if given(pod):
        return f"{namespace}/{pod}" if given(namespace) else str(pod)
    if given(identity) and int(identity) in H.RESERVED_IDENTITIES:
        return H.RESERVED_IDENTITIES[int(identity)]
    if given(ip):
        return str(ip)
    return "unknown"


def given(value: Any) -> bool:
    """Not None, NA or empty."""
    return value is not None and not pd.isna(value) and value != ""


def endpoint(frame: pd.DataFrame, side: str) -> pd.Series:
    """Who one side of each flow is, to pair a packet with another: its IP, or `namespace/pod`
    where the input names the pod instead (hubble's text prints names). `frame` has the side's
    peer columns."""
    ips = frame[f"{side}_ip"]
    unnamed = np.flatnonzero(ips.isna().to_numpy())
    if not len(unnamed):
        return ips
    out = objects(ips)
    namespaces = objects(frame[f"{side}_namespace"].iloc[unnamed])
    pods = objects(frame[f"{side}_pod"].iloc[unnamed])
    out[unnamed] = [f"{ns}/{pod}" if given(pod) else None
                    for ns, pod in zip(namespaces, pods, strict=True)]
    return pd.Series(out, index=frame.index)


def objects(values: pd.Series) -> np.ndarray:
    """A column as an array of Python objects, None where missing."""
    out = values.astype(object).to_numpy(copy=True)
    missing = values.isna().to_numpy()
    if missing.any():
        out[missing] = None
    return out


def row_keys(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One small int per row (0 .. distinct rows - 1), equal for rows with equal values in
    `columns` (NA is a value)."""
    key, bound = np.zeros(len(frame), dtype=np.int64), 1
    for column in columns:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes, size = values.cat.codes.to_numpy(), len(values.cat.categories) + 1
        else:
            codes, uniques = pd.factorize(values)
            size = len(uniques) + 1
        if bound * size >= 1 << 62:  # compact the key before it could overflow
            key = np.unique(key, return_inverse=True)[1].reshape(-1)
            bound = int(key.max()) + 1 if len(key) else 1
        key = key * size + codes.astype(np.int64) + 1
        bound *= size
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def peer_names(frame: pd.DataFrame, side: str) -> pd.Categorical:
    """`peer_name` of each row's `side` (a frame with its peer columns), computed once per
    distinct peer."""
    columns = peer_columns(side)
    _, first, which = np.unique(row_keys(frame, columns), return_index=True,
                                return_inverse=True)
    named = [peer_name(*peer) for peer in frame[columns].iloc[first].itertuples(index=False)]
    names, name_of = np.unique(np.asarray(named, dtype=object), return_inverse=True)
    return pd.Categorical.from_codes(name_of[which.reshape(-1)], categories=pd.Index(names))


def peer_columns(side: str) -> list[str]:
    return [f"{side}_{part}" for part in _PEER_PARTS]


def flow_type(event_type: Any) -> str:
    """hubble_flows_processed_total `type` of a monitor event type."""
    if not given(event_type):
        return "Unknown"
    return FLOW_TYPES.get(int(event_type), "Unknown")


def flow_subtype(event_type: Any, event_subtype: Any, l7_protocol: Any) -> str:
    """hubble_flows_processed_total `subtype`: the trace point for Trace, DNS/HTTP/Kafka for L7,
    the numeric type for Unknown, else empty."""
    kind = flow_type(event_type)
    if kind == "Trace":
        point = int(event_subtype) if given(event_subtype) else 0
        return H.TRACE_POINTS[point] if point < len(H.TRACE_POINTS) else str(point)
    if kind == "L7":
        return L7_PROTOCOLS.get(str(l7_protocol), "Unknown L7") if given(l7_protocol) else ""
    if kind == "Unknown":
        return str(int(event_type)) if given(event_type) else ""
    return ""


def drop_reason_name(reason: Any, code: Any) -> str:
    """hubble_drop_total `reason`: the DropReason enum name; a code without a name as its
    number (as Go prints an unnamed enum value)."""
    if given(reason):
        return str(reason)
    if given(code):
        return H.DROP_REASON_NAMES.get(int(code), str(int(code)))
    return H.DROP_REASON_NAMES[0]


def metric_protocol(event_type: Any, protocol: Any, l7_protocol: Any) -> str:
    """The `protocol` label: DNS/HTTP/Kafka for L7 events, the L4 protocol otherwise."""
    if given(event_type) and int(event_type) == 129:
        return L7_PROTOCOLS.get(str(l7_protocol), "Unknown L7") if given(l7_protocol) \
            else "Unknown L7"
    return str(protocol) if given(protocol) else "Unknown flow"


def dns_rcode_name(rcode: Any) -> str:
    code = int(rcode) if given(rcode) else 0
    return DNS_RCODES.get(code, str(code))


def tcp_flag_labels(flags: str) -> list[str]:
    """hubble_tcp_flags_total `flag` labels of a flag set such as "SYN,ACK": SYN (without ACK),
    SYN-ACK, FIN, RST; other flags have none."""
    parts = set(flags.split(","))
    out = []
    if "SYN" in parts:
        out.append("SYN-ACK" if "ACK" in parts else "SYN")
    out += [flag for flag in ("FIN", "RST") if flag in parts]
    return out
