"""A replay relay: saved flows served over Hubble's real `observer.Observer` API.

    SOURCE... ──load──► ReplayData (frame + one serialized GetFlowsResponse per flow)
                              │ replayed into the buffer at --speed (max | realtime | factor)
                              ▼
    GetFlows(request) ──filters.mask on the frame, since/until, number/first──► bytes, as is

Every response is serialized once, at load, and sent with no serializer (a Python gRPC server
spends its time per message, not per byte). Filters are evaluated on the frame with the same
code `flowlens tail --input-file` uses, so a filter means the same offline and through the
relay. Like hubble-relay, `number` (last N) counts per node, lost events are sent whatever the
filters (a server does not filter them; `hubble observe --input-file` does), streams start with
a NODE_CONNECTED status, and the header `hubble-relay-version` is sent.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pandas as pd
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flowlens import filters as _filters
from flowlens._proto.flow import flow_pb2
from flowlens._proto.observer import observer_pb2
from flowlens._proto.relay import relay_pb2
from flowlens.errors import UsageError
from flowlens.frame import lost_events, set_lost_events
from flowlens.load import ReadOptions, Source, load
from flowlens.render.records import flow_responses, lost_responses
from flowlens.sources.files import expand
from flowlens.sources.protodict import response_from_dict
from flowlens.sources.relay import HEALTH_SERVICE, check_ca, check_key_pair, read_file

__all__ = [
    "HEALTH_SERVICE", "MAX_REQUEST_FILTERS", "MAX_REQUEST_VALUES", "MAX_VALUE_LENGTH",
    "RELAY_VERSION", "ReplayData", "ReplayRelay", "ServerTLS", "check_request", "check_serving",
    "parse_listen", "parse_speed", "serve_forever",
]

# The Hubble API version our protos follow (spec baseline); the hubble CLI compares it with its
# own and only warns.
RELAY_VERSION = "1.19.4"
_UINT64_MAX = (1 << 64) - 1
# What one GetFlows request may ask: every filter is compiled and matched against every flow,
# so an unbounded request would be an unbounded amount of work (INVALID_ARGUMENT beyond).
MAX_REQUEST_FILTERS = 1_000  # whitelist and blacklist together
MAX_REQUEST_VALUES = 10_000  # values in all its filters together
MAX_VALUE_LENGTH = 4_096  # characters of one value (a pod name, a regular expression, ...)
# Requests larger than this (serialized) are matched on their own worker thread, one at a time,
# so that many heavy requests cannot crowd out light ones (hubble observe sends a few filters).
_LIGHT_REQUEST = 4096
_WAIT = 0.25  # the replay clock's longest sleep
_POLL = 0.02  # how often a follow stream looks for replayed flows


MIN_SPEED, MAX_SPEED = 0.001, 1e6


def parse_speed(text: str | float) -> float | None:
    """--speed: `max` (None: load everything at once), `realtime` (1.0) or a factor > 0."""
    if isinstance(text, (int, float)):
        value = float(text)
    elif text.lower() == "max":
        return None
    elif text.lower() == "realtime":
        return 1.0
    else:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"invalid value {text!r} for --speed: want max, realtime or a "
                             "factor such as 60") from None
    if not MIN_SPEED <= value <= MAX_SPEED:  # (also NaN)
        raise UsageError(f"invalid value {text!r} for --speed: the factor must be from "
                         f"{MIN_SPEED} to {MAX_SPEED:,.0f}")
    return value


@dataclass
class ReplayData:
    """What a relay serves: the flows as a frame (for filters) and as serialized responses,
    lost-event records placed by flow position, and node status records."""

    frame: pd.DataFrame
    payloads: list[bytes]
    lost: list[tuple[int, int, bytes]]  # (position, time ns, payload), by position
    node_status: list[bytes] = field(default_factory=list)
    namespaces: list[tuple[str, str]] = field(default_factory=list)

    @property
    def times(self) -> np.ndarray:
        return _nanos(self.frame["time"])

    @classmethod
    def from_sources(cls, sources: Source | Iterable[Source],
                     options: ReadOptions | None = None) -> ReplayData:
        """Read files/folders/stdin in any format flowlens reads (jsonpb kept as it was)."""
        options = options or ReadOptions()
        names = expand(_as_list(sources))
        options.keep_raw = True  # serve jsonpb as written: every field, not just the frame's
        df, raw = load(names, options)
        statuses = [response_from_dict(r).SerializeToString() for r in options.report.node_status]
        return cls.from_frame(df, raw, statuses)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, raw: list[dict[str, Any]] | None = None,
                   node_status: Sequence[bytes] = ()) -> ReplayData:
        """From a flows frame, with the original GetFlowsResponse dicts when known."""
        order = np.argsort(_nanos(df["time"]), kind="stable")
        if not np.array_equal(order, np.arange(len(df))):  # a ring buffer is in time order
            lost_frame = lost_events(df)
            df = df.iloc[order].reset_index(drop=True)
            set_lost_events(df, _reposition(lost_frame, df))
            raw = [raw[i] for i in order] if raw is not None else None
        flow_dicts = raw if raw is not None else list(flow_responses(df))
        payloads = [response_from_dict(d).SerializeToString() for d in flow_dicts]
        lost_rows = lost_events(df)
        lost = []
        if len(lost_rows):
            positions = lost_rows["position"].tolist()
            times = _nanos(lost_rows["time"])
            for pos, t, d in zip(positions, times, lost_responses(df), strict=True):
                lost.append((int(pos), int(t), response_from_dict(d).SerializeToString()))
        return cls(df, payloads, lost, list(node_status), _namespaces(flow_dicts))


def _as_list(sources: Source | Iterable[Source]) -> list[Source]:
    return [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)


def _reposition(lost: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Lost events placed by time among re-ordered flows."""
    if not len(lost):
        return lost
    lost = lost.copy()
    lost["position"] = np.searchsorted(_nanos(df["time"]), _nanos(lost["time"]), side="right")
    return lost


def _nanos(times: pd.Series) -> np.ndarray:
    """UTC nanoseconds; missing times sort first."""
    values = times.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT"))
    out = values.astype(np.int64)
    out[np.isnat(values)] = np.iinfo(np.int64).min
    return out


def _namespaces(flow_dicts: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    for d in flow_dicts:
        flow = d.get("flow") or {}
        for side in ("source", "destination"):
            ep = flow.get(side) or {}
            if ep.get("namespace"):
                seen.add((ep.get("cluster_name") or "", ep["namespace"]))
    return sorted(seen)


# --- the buffer and the replay clock ------------------------------------------------------


class _Buffer:
    """How much of the data has been "replayed" so far; streams wait on it."""

    def __init__(self, data: ReplayData, speed: float | None) -> None:
        self.data = data
        self.times = data.times
        self.speed = speed
        self.available = len(self.times) if speed is None else 0
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.started = time.monotonic()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.speed is not None and len(self.times):
            self._thread = threading.Thread(target=self._replay, name="flowlens-replay",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        with self.changed:
            self.changed.notify_all()

    def _replay(self) -> None:
        """Advance `available` by the flows' own timestamps, `speed` times real time."""
        valid = self.times[self.times != np.iinfo(np.int64).min]
        first = int(valid[0]) if len(valid) else 0
        speed = self.speed or 1.0
        while not self.stopping.is_set() and self.available < len(self.times):
            replayed = first + int((time.monotonic() - self.started) * speed * 1e9)
            now = int(np.searchsorted(self.times, replayed, side="right"))
            if now > self.available:
                with self.changed:
                    self.available = now
                    self.changed.notify_all()
            if now < len(self.times):
                due = (int(self.times[now]) - replayed) / speed / 1e9
                self.stopping.wait(min(max(due, 0.001), _WAIT))


# --- request evaluation -------------------------------------------------------------------


def check_request(request: observer_pb2.GetFlowsRequest) -> None:
    """UsageError for a request beyond the bounds above."""
    filters = [*request.whitelist, *request.blacklist]
    if len(filters) > MAX_REQUEST_FILTERS:
        raise UsageError(f"{len(filters):,} filters in one request: at most "
                         f"{MAX_REQUEST_FILTERS:,} are served")
    values = 0
    for flt in filters:
        for value in _leaves(flt):
            values += 1
            if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
                raise UsageError(f"a filter value of {len(value):,} characters: at most "
                                 f"{MAX_VALUE_LENGTH:,} are served")
        if values > MAX_REQUEST_VALUES:
            raise UsageError(f"more than {MAX_REQUEST_VALUES:,} filter values in one request")


def _leaves(message: Any) -> Iterator[Any]:
    """Every scalar value set in a message, nested messages and repeated fields included."""
    for fd, value in message.ListFields():
        items = value if fd.is_repeated else (value,)
        for item in items:
            if fd.message_type is not None:
                yield from _leaves(item)
            else:
                yield item


def _filters_of(request: observer_pb2.GetFlowsRequest) -> _filters.Filters:
    def as_json(flts: Iterable[Any]) -> tuple[str, ...]:
        return tuple(json_format.MessageToJson(f, preserving_proto_field_name=True, indent=None)
                     for f in flts)

    return _filters.Filters(allowlist=as_json(request.whitelist),
                            denylist=as_json(request.blacklist))


def _ns(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos)


@dataclass
class _Plan:
    """What one GetFlows call sends: matching flows, its first batch, then (follow) more."""

    keep: np.ndarray  # filters and since (and until unless following), per flow
    first_batch: np.ndarray  # flow indices sent at once
    start: int  # with follow: flows from this index on are sent as they arrive
    since: int | None
    until: int | None


def _plan(request: observer_pb2.GetFlowsRequest, buffer: _Buffer) -> _Plan:
    data = buffer.data
    if request.first and request.follow:
        raise UsageError("first and follow cannot be combined")
    # CEL expressions see the flows as served (every field of a jsonpb source).
    keep = _filters.mask(_filters_of(request), data.frame, data.payloads).to_numpy(copy=True)
    since = _ns(request.since) if request.HasField("since") else None
    until = _ns(request.until) if request.HasField("until") and not request.follow else None
    if since is not None:
        keep &= buffer.times >= since
    if until is not None:
        keep &= buffer.times <= until
    available = buffer.available
    candidates = np.flatnonzero(keep[:available])
    number = request.number
    if request.follow and number == 0 and since is None:
        candidates = candidates[:0]  # follow alone: only what arrives from now on
    elif number and number != _UINT64_MAX:
        candidates = candidates[:number] if request.first else _last_per_node(
            candidates, data.frame, number)
    return _Plan(keep, candidates, available, since, until)


def _last_per_node(candidates: np.ndarray, frame: pd.DataFrame, number: int) -> np.ndarray:
    """The newest `number` flows of each node (hubble-relay asks every node for N)."""
    nodes = frame["node"].cat.codes.to_numpy()[candidates]
    parts = [candidates[nodes == code][-number:] for code in np.unique(nodes)]
    return np.sort(np.concatenate(parts)) if parts else candidates


def _lost_between(data: ReplayData, low: int, high: int, since: int | None,
                  until: int | None) -> list[tuple[int, bytes]]:
    """Lost-event records placed at flow positions low..high, inside the time window."""
    out = []
    for position, t, payload in data.lost:
        if low <= position <= high and (since is None or t >= since) \
                and (until is None or t <= until):
            out.append((position, payload))
    return out


def _interleave(indices: np.ndarray, payloads: list[bytes], lost: list[tuple[int, bytes]]
                ) -> Iterator[bytes]:
    li = 0
    for i in indices.tolist():
        while li < len(lost) and lost[li][0] <= i:
            yield lost[li][1]
            li += 1
        yield payloads[i]
    for _, payload in lost[li:]:
        yield payload


def _masker(request: observer_pb2.GetFlowsRequest) -> Callable[[bytes], bytes] | None:
    """With a field_mask (hubble observe sends one for its text formats), each flow keeps only
    the masked paths, as Hubble's server does; the full flows are sent otherwise."""
    mask = request.field_mask
    if not request.HasField("field_mask") or not mask.paths:
        return None
    flow_message: Any = flow_pb2.Flow.DESCRIPTOR  # upb's descriptor type; the stubs want another
    if not mask.IsValidForDescriptor(flow_message):
        raise UsageError(f"invalid field_mask paths for flow.Flow: {', '.join(mask.paths)}")

    def masked(payload: bytes) -> bytes:
        response = observer_pb2.GetFlowsResponse.FromString(payload)
        if not response.HasField("flow"):
            return payload
        kept = flow_pb2.Flow()
        mask.MergeMessage(response.flow, kept)
        response.flow.CopyFrom(kept)
        return response.SerializeToString()

    return masked


# --- the service --------------------------------------------------------------------------


class _Observer:
    """observer.Observer over a replay buffer. The answers are computed here once; two thin
    handler sets serve them: threads (`grpc.server`, for a relay in the background) and asyncio
    (`grpc.aio`, for `flowlens relay`, which serves about 1.5x the messages/s by awaiting each
    write)."""

    def __init__(self, buffer: _Buffer, address: str, tls_name: str | None) -> None:
        self.buffer = buffer
        self.address = address
        self.tls_name = tls_name
        names = buffer.data.frame["node"].dropna().unique().tolist()
        self.nodes = sorted(str(n) for n in names)

    def responses(self, request: observer_pb2.GetFlowsRequest) -> Iterator[bytes | None]:
        """What GetFlows sends, in order; None means "nothing yet" (a follow stream waits a
        moment and asks again). UsageError for a request that cannot be served, raised here:
        the request is checked and its filters matched against every flow now (the slow part,
        which the asyncio server runs off its event loop), the iterator only sends."""
        check_request(request)
        masked = _masker(request)
        try:
            plan = _plan(request, self.buffer)
        except (ValueError, TypeError, KeyError, OverflowError, re.error) as exc:
            # A malformed value a raw client sent (a bad CIDR, port or pattern).
            raise UsageError(f"invalid filter: {exc}") from None
        sent = self._responses(request, plan)
        return sent if masked is None else (None if p is None else masked(p) for p in sent)

    def _responses(self, request: observer_pb2.GetFlowsRequest, plan: _Plan
                   ) -> Iterator[bytes | None]:
        data = self.buffer.data
        yield self._connected()
        yield from data.node_status
        sent = plan.first_batch
        if len(sent):
            lost = _lost_between(data, int(sent[0]), int(sent[-1]), plan.since, plan.until)
        elif request.number == 0 and (plan.since is not None or plan.until is not None):
            lost = _lost_between(data, 0, plan.start, plan.since, plan.until)
        else:
            lost = []
        yield from _interleave(sent, data.payloads, lost)
        if request.follow:
            lost_from = max(position for position, _ in lost) + 1 if lost else plan.start
            yield from self._follow(plan, max(lost_from, plan.start))

    def _follow(self, plan: _Plan, lost_from: int) -> Iterator[bytes | None]:
        data = self.buffer.data
        done = plan.start
        while not self.buffer.stopping.is_set():
            available = self.buffer.available
            if available <= done:
                yield None
                continue
            fresh = done + np.flatnonzero(plan.keep[done:available])
            lost = _lost_between(data, lost_from, available, plan.since, None)
            yield from _interleave(fresh, data.payloads, lost)
            done = available
            lost_from = available + 1

    def _connected(self) -> bytes:
        response = observer_pb2.GetFlowsResponse(
            node_status=relay_pb2.NodeStatusEvent(state_change=relay_pb2.NODE_CONNECTED,
                                                  node_names=self.nodes))
        response.time.GetCurrentTime()
        return response.SerializeToString()

    def server_status(self) -> observer_pb2.ServerStatusResponse:
        uptime = time.monotonic() - self.buffer.started
        available = self.buffer.available
        response = observer_pb2.ServerStatusResponse(
            num_flows=available, max_flows=len(self.buffer.times), seen_flows=available,
            uptime_ns=int(uptime * 1e9), unavailable_nodes=[],
            version=f"flowlens-relay (hubble API {RELAY_VERSION})",
            flows_rate=available / uptime if uptime > 0 else 0.0)
        response.num_connected_nodes.value = len(self.nodes)
        response.num_unavailable_nodes.value = 0
        return response

    def get_nodes(self) -> observer_pb2.GetNodesResponse:
        node_column = self.buffer.data.frame["node"]
        codes = node_column.cat.codes.to_numpy()
        # Counted by code in one pass (a comparison per node would be nodes x flows).
        total = np.bincount(codes[codes >= 0], minlength=len(node_column.cat.categories))
        seen_all = codes[:self.buffer.available]
        seen = np.bincount(seen_all[seen_all >= 0], minlength=len(total))
        index = {str(name): i for i, name in enumerate(node_column.cat.categories)}
        uptime_ns = int((time.monotonic() - self.buffer.started) * 1e9)
        response = observer_pb2.GetNodesResponse()
        for name in self.nodes:
            i = index[name]
            node = response.nodes.add(
                name=name, version=RELAY_VERSION, address=self.address,
                state=relay_pb2.NODE_CONNECTED, uptime_ns=uptime_ns, num_flows=int(seen[i]),
                max_flows=int(total[i]), seen_flows=int(seen[i]))
            node.tls.enabled = self.tls_name is not None
            node.tls.server_name = self.tls_name or ""
        return response

    def get_namespaces(self) -> observer_pb2.GetNamespacesResponse:
        response = observer_pb2.GetNamespacesResponse()
        for cluster, namespace in self.buffer.data.namespaces:
            response.namespaces.add(cluster=cluster, namespace=namespace)
        return response

    # ---- handlers ----

    def _unary(self) -> dict[str, tuple[Callable[[], Any], Any, Any]]:
        o = observer_pb2
        return {
            "ServerStatus": (self.server_status, o.ServerStatusRequest,
                             o.ServerStatusResponse),
            "GetNodes": (self.get_nodes, o.GetNodesRequest, o.GetNodesResponse),
            "GetNamespaces": (self.get_namespaces, o.GetNamespacesRequest,
                              o.GetNamespacesResponse),
        }

    def thread_handler(self) -> grpc.GenericRpcHandler:
        def get_flows(request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
            context.send_initial_metadata(_HEADER)
            try:
                for payload in self.responses(request):
                    if payload is not None:
                        yield payload
                    elif not context.is_active():
                        return
                    else:
                        self.buffer.stopping.wait(_POLL)
            except UsageError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

        def unary(answer: Callable[[], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
            def handle(request: Any, context: grpc.ServicerContext) -> Any:
                context.send_initial_metadata(_HEADER)
                return answer()
            return handle

        return self._handler(get_flows, unary)

    def aio_handler(self) -> grpc.GenericRpcHandler:
        # Requests are matched on worker threads: a heavy one must not hold up the event loop
        # (every other client), nor the light ones queued behind it.
        light = futures.ThreadPoolExecutor(2, thread_name_prefix="flowlens-light")
        heavy = futures.ThreadPoolExecutor(1, thread_name_prefix="flowlens-heavy")

        async def get_flows(request: Any, context: Any) -> None:
            await context.send_initial_metadata(_HEADER)
            pool = light if request.ByteSize() <= _LIGHT_REQUEST else heavy
            try:
                responses = await asyncio.get_running_loop().run_in_executor(
                    pool, self.responses, request)
            except UsageError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            for payload in responses:
                if payload is not None:
                    await context.write(payload)
                elif context.done():
                    return
                else:
                    await asyncio.sleep(_POLL)

        def unary(answer: Callable[[], Any]) -> Callable[[Any, Any], Any]:
            async def handle(request: Any, context: Any) -> Any:
                await context.send_initial_metadata(_HEADER)
                return answer()
            return handle

        return self._handler(get_flows, unary)

    def _handler(self, get_flows: Any, unary: Any) -> grpc.GenericRpcHandler:
        handlers = {
            # No response_serializer: GetFlows sends pre-serialized bytes.
            "GetFlows": grpc.unary_stream_rpc_method_handler(
                get_flows, request_deserializer=observer_pb2.GetFlowsRequest.FromString),
        }
        for name, (answer, request, response) in self._unary().items():
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                unary(answer), request_deserializer=request.FromString,
                response_serializer=response.SerializeToString)
        return grpc.method_handlers_generic_handler("observer.Observer", handlers)


_HEADER = (("hubble-relay-version", RELAY_VERSION),)


@dataclass(frozen=True)
class ServerTLS:
    """Server certificate and key (PEM files), and a client CA to require client certificates
    (mTLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class ReplayRelay:
    """The replay relay in the background: `start()` binds and serves on grpc's thread pool,
    `stop()` ends it; `port` is the bound port (listen on port 0 to get a free one).
    `serve_forever` is the faster foreground form `flowlens relay` uses."""

    def __init__(self, data: ReplayData, *, listen: str = "127.0.0.1:4245",
                 speed: float | None = None, tls: ServerTLS | None = None,
                 max_workers: int = 32) -> None:
        self.data = data
        self.listen = listen
        self.tls = tls
        self.buffer = _Buffer(data, speed)
        self.port = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                   options=_SERVER_OPTIONS,
                                   maximum_concurrent_rpcs=max_workers - 2)
        self._health = health.HealthServicer()

    def start(self) -> ReplayRelay:
        observer = _Observer(self.buffer, self.listen, "relay" if self.tls else None)
        self._server.add_generic_rpc_handlers((observer.thread_handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.port = _bind(self._server, self.listen, self.tls)
        self._server.start()
        self.buffer.start()
        for service in (HEALTH_SERVICE, ""):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return self

    def stop(self, grace: float | None = None) -> None:
        self._health.enter_graceful_shutdown()
        self.buffer.stop()
        self._server.stop(grace).wait()

    def __enter__(self) -> ReplayRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# One server per port: grpc would otherwise share a port in use (SO_REUSEPORT), and clients
# would get either server's capture.
_SERVER_OPTIONS = (("grpc.so_reuseport", 0),)


def parse_listen(listen: str) -> tuple[str, int]:
    """--listen HOST:PORT ([v6]:PORT; an empty host is every interface) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or len(port) > 5 \
            or int(port) > 65535:
        raise UsageError(f"invalid value {listen!r} for --listen: want HOST:PORT with a port "
                         "from 0 to 65535")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _check_free(listen: str) -> None:
    """UsageError naming the address if it cannot be listened on: in use, not this machine's,
    not allowed. grpc's own bind error says only "Failed to bind"."""
    host, port = parse_listen(listen)
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {listen}: {exc.strerror}") from None
    problems = []
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds
            try:
                probe.bind(address)
                probe.listen()
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise UsageError(f"cannot listen on {listen}: address in use") from None
                problems.append(exc.strerror or str(exc))
    if problems and len(problems) == len(addresses):
        raise UsageError(f"cannot listen on {listen}: {problems[0]}")


def _check_tls(tls: ServerTLS) -> tuple[bytes, bytes, bytes | None]:
    """The certificate, key and client CA (PEM), checked: UsageError naming the file that is
    not what it should be (grpc would say only "Failed to bind")."""
    cert = read_file(tls.cert_file, "--tls-cert file")
    key = read_file(tls.key_file, "--tls-key file")
    ca = read_file(tls.client_ca_file, "--tls-client-ca file") if tls.client_ca_file else None
    check_key_pair(tls.cert_file, tls.key_file,
                   f"--tls-cert {tls.cert_file} and --tls-key {tls.key_file}")
    if tls.client_ca_file:
        check_ca(tls.client_ca_file, "--tls-client-ca")
    return cert, key, ca


def check_serving(listen: str, tls: ServerTLS | None) -> None:
    """UsageError, before anything is loaded, if the relay could not serve on `listen` with
    these certificates."""
    _check_free(listen)
    if tls is not None:
        _check_tls(tls)


def _bind(server: Any, listen: str, tls: ServerTLS | None) -> int:
    _check_free(listen)
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            cert, key, ca = _check_tls(tls)
            credentials = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
            port = server.add_secure_port(listen, credentials)
    except RuntimeError as exc:
        raise UsageError(f"cannot listen on {listen}: {exc}") from None
    if not port:
        raise UsageError(f"cannot listen on {listen}")
    return int(port)


def serve_forever(data: ReplayData, *, listen: str = "127.0.0.1:4245",
                  speed: float | None = None, tls: ServerTLS | None = None,
                  on_ready: Callable[[int], None] | None = None) -> None:
    """Serve on grpc's asyncio server in the calling (main) thread until SIGINT or SIGTERM."""
    # The loaded data never becomes garbage: keep the collector from walking it again and
    # again while serving (it costs a fifth of the serving rate).
    gc.collect()
    gc.freeze()
    asyncio.run(_serve_aio(data, listen, speed, tls, on_ready or (lambda port: None)))


async def _serve_aio(data: ReplayData, listen: str, speed: float | None,
                     tls: ServerTLS | None, on_ready: Callable[[int], None]) -> None:
    buffer = _Buffer(data, speed)
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    observer = _Observer(buffer, listen, "relay" if tls else None)
    server.add_generic_rpc_handlers((observer.aio_handler(),))
    checks = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    port = _bind(server, listen, tls)
    await server.start()
    buffer.start()
    for service in (HEALTH_SERVICE, ""):
        await checks.set(service, health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    on_ready(port)
    await stop.wait()
    await checks.enter_graceful_shutdown()
    buffer.stop()
    await server.stop(0.5)
