"""Flows from a relay, for notebooks and the CLI: `read_relay` (one frame), `iter_relay`
(frames as they arrive, for --follow) and `read_window` (what a report reads)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flowlens import frame as _frame
from flowlens._lazy import lazy
from flowlens.filters import Filters, to_request
from flowlens.sources.proto import DecodedBatch
from flowlens.sources.relay import RUN_SIZE, Connection, FlowStream

if TYPE_CHECKING:
    import pandas as pd
else:  # `flowlens tail` from a relay prints without pandas
    pd = lazy("pandas")

__all__ = ["RelayWindow", "iter_relay", "read_relay", "read_window", "relay_stream"]

# Flows decoded together when they all go into one frame: the frame builder's work is per
# batch and per column (62 of them), and runs 4x a printing stream's halve it (measured on
# 200,000 flows: 0.24 s -> 0.11 s; peak RSS +30 MB, one run's payloads and split).
FRAME_RUN_SIZE = 20_000
_CONNECTION_KEYS = frozenset({
    "tls", "tls_allow_insecure", "tls_ca_cert_files", "tls_client_cert_file",
    "tls_client_key_file", "tls_server_name", "timeout",
})


def relay_stream(conn: Connection, filters: Filters, *, keep_payloads: bool = False,
                 now: datetime | pd.Timestamp | None = None,
                 on_event: Callable[[str], None] | None = None,
                 flush_interval: float = 0.2, run_size: int = RUN_SIZE, apart: bool = False,
                 meanwhile: Callable[[], object] | None = None) -> FlowStream:
    """The GetFlows stream for these filters (not yet connected)."""
    return FlowStream(conn, to_request(filters, now=now), keep_payloads=keep_payloads,
                      on_event=on_event, flush_interval=flush_interval, run_size=run_size,
                      apart=apart, meanwhile=meanwhile)


def _split(server: str | None, kwargs: dict[str, Any]) -> tuple[Connection, Filters]:
    conn_args = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONNECTION_KEYS}
    if isinstance(conn_args.get("tls_ca_cert_files"), str):
        conn_args["tls_ca_cert_files"] = (conn_args["tls_ca_cert_files"],)
    return Connection.from_env(server, **conn_args), Filters.from_kwargs(**kwargs)


def read_relay(server: str | None = None, **filters: Any) -> pd.DataFrame:
    """Flows from a relay as one frame, selected as `flowlens tail` selects them: filter flags
    as keywords (`verdict="DROPPED"`, `from_pod=...`, `since="5m"`, `last=1000`, `all=True`),
    plus connection keywords (`tls`, `tls_ca_cert_files`, `tls_server_name`, `timeout`, ...).
    Without a selection the relay sends its default 20 flows, as hubble does."""
    conn, flt = _split(server, dict(filters))
    if flt.follow:
        raise ValueError("read_relay returns one frame: use iter_relay to follow")
    return _read(conn, flt, None)


def iter_relay(server: str | None = None, **filters: Any) -> Iterator[pd.DataFrame]:
    """Frames of flows as they arrive (`follow=True` keeps the stream open); lost events in
    each frame's attrs. Closing the iterator ends the stream."""
    conn, flt = _split(server, dict(filters))
    for decoded in relay_stream(conn, flt):
        if decoded.batch.size or decoded.batch.lost_events:
            yield decoded_frame(decoded)


def decoded_frame(decoded: DecodedBatch) -> pd.DataFrame:
    return _frame.build(decoded.batch)


@dataclass(frozen=True)
class RelayWindow:
    """What a report reads from a relay: the window's flows, whether the relay already applied
    the filter flags to them, and the oldest and newest flow the relay holds."""

    flows: pd.DataFrame
    filtered: bool
    held: tuple[pd.Timestamp | None, pd.Timestamp | None]
    now: pd.Timestamp  # what --since/--until durations counted back from


def read_window(conn: Connection, filters: Filters,
                now: datetime | pd.Timestamp | None = None,
                on_event: Callable[[str], None] | None = None,
                meanwhile: Callable[[], object] | None = None) -> RelayWindow:
    """The flows of the --since/--until/--first/--last window, without following (every flow
    the relay holds when none selects: hubble would send only its last 20).

    The filter flags are left to the caller (`filtered=False`) when a frame can evaluate them
    and no --first/--last counts matches: the answers to the requests a filter selects come
    too. The relay's time range is the window's own when the window is every flow it holds,
    else two one-flow requests find it.

    The window is received apart (`FlowStream`'s `apart`: in a child process, when one can be
    forked) while this process builds the frame, after `meanwhile()` (the caller's imports)."""
    # (not pandas's clock: pandas loaded before the child is forked would run beside it)
    moment = datetime.now(timezone.utc) if now is None else now
    chosen = (filters.since, filters.until, filters.first, filters.last)
    if not filters.all and all(v is None for v in chosen):
        filters = replace(filters, all=True)
    local = filters.first is None and filters.last is None and _answerable_here(filters)
    asked = replace(filters, flags=(), allowlist=(), denylist=()) if local else filters
    everything = local and asked.all and all(v is None for v in chosen)
    flows = _read(conn, asked, moment, on_event, apart=True,
                  meanwhile=lambda: _prepare_frames(meanwhile, asking_more=not everything))
    if everything:  # (asking again would cost two connections: 4% of a 200,000-flow report)
        oldest = newest = flows
    else:
        oldest = _read(conn, Filters(first=1), moment)
        newest = _read(conn, Filters(last=1), moment)
    held = (oldest["time"].min() if len(oldest) else None,
            newest["time"].max() if len(newest) else None)
    return RelayWindow(flows, not local, held, pd.Timestamp(moment))


def _prepare_frames(then: Callable[[], object] | None, *, asking_more: bool) -> None:
    """What building frames from a relay loads (while a child receives), then `then`;
    `asking_more`: also gRPC, for requests after the window."""
    if asking_more:
        import grpc  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401
    if then is not None:
        then()


def _read(conn: Connection, filters: Filters, now: datetime | pd.Timestamp | None,
          on_event: Callable[[str], None] | None = None, *, apart: bool = False,
          meanwhile: Callable[[], object] | None = None) -> pd.DataFrame:
    stream = relay_stream(conn, filters, now=now, on_event=on_event, run_size=FRAME_RUN_SIZE,
                          apart=apart, meanwhile=meanwhile)
    return _frame.build_all(decoded.batch for decoded in stream)


def _answerable_here(filters: Filters) -> bool:
    """A frame evaluates every filter as the relay does, but CEL expressions: they see the
    whole flows, which only the relay has."""
    return not filters.has_cel
