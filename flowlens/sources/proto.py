"""Serialized `observer.GetFlowsResponse` messages (what a relay streams) -> FlowBatch.

The live path must keep up with a busy cluster, so this decoder avoids a Python object per flow
beyond the parsed message itself: each message is parsed by upb and read with attribute access
in one tight loop. Most of a flow repeats from flow to flow (verdict, event type, both endpoints,
services, node...), so those fields are read into one "shape" key and every derived column
(event label, drop reason name, labels joined, ...) is computed once per distinct shape and
spread back to the rows with Arrow `take`. Per flow only time, uuid, addresses, ports and
summary are kept; rarer parts (L7, DNS names, policies, trace ids) are stored sparsely.

Columns mean exactly what `flowlens.sources.jsonpb` derives from the same flows as jsonpb; a test
decodes the same captures both ways and compares the frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

from flowlens import _hubble as H
from flowlens._lazy import lazy
from flowlens._proto.flow import flow_pb2
from flowlens._proto.observer import observer_pb2
from flowlens._proto.relay import relay_pb2
from flowlens.sources.batch import FlowBatch, paused_gc
from flowlens.sources.native import Joined, NativeRun, Shapes, native

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:  # only to build columns: `flowlens tail` prints without them (flowlens.sources.native)
    np, pa, pc = lazy("numpy"), lazy("pyarrow"), lazy("pyarrow.compute")

__all__ = ["DecodedBatch", "NodeStatus", "ProtoDecoder", "decode_responses", "merge_batches"]

_Response = observer_pb2.GetFlowsResponse


def _enum_names(enum: Any) -> dict[int, str]:
    return {v.number: v.name for v in enum.DESCRIPTOR.values}


_VERDICT = _enum_names(flow_pb2.Verdict)
_DROP_REASON = _enum_names(flow_pb2.DropReason)
_AUTH = _enum_names(flow_pb2.AuthType)
_DIRECTION = _enum_names(flow_pb2.TrafficDirection)
_IP_VERSION = _enum_names(flow_pb2.IPVersion)
_L7_TYPE = _enum_names(flow_pb2.L7FlowType)
_CAPTURE = _enum_names(flow_pb2.DebugCapturePoint)
_SOCK = _enum_names(flow_pb2.SocketTranslationPoint)
_LOST_SOURCE = _enum_names(flow_pb2.LostEventSource)
_NODE_STATE = _enum_names(relay_pb2.NodeState)
_TCP_FLAG_FIELDS = H.TCP_FLAG_ORDER


def _name(names: dict[int, str], number: int) -> str | None:
    """An enum value as protojson prints it: None for 0 (omitted), the number for unknowns."""
    if not number:
        return None
    return names.get(number, str(number))


@dataclass
class NodeStatus:
    """A relay's node status event (NODE_CONNECTED, NODE_UNAVAILABLE, ...)."""

    time_ns: int | None
    node: str
    state: str
    node_names: list[str]
    message: str


@dataclass
class DecodedBatch:
    """One decoded run of responses: the flows (rows in stream order, lost events placed by
    position), node status events, and per row the payload it came from when kept. From the
    fast path (`native`) the columns are built when `batch` is first read."""

    _batch: FlowBatch | None
    node_status: list[NodeStatus] = field(default_factory=list)
    payloads: list[bytes] | None = None
    newest_ns: int | None = None
    native: NativeRun | None = None

    @property
    def batch(self) -> FlowBatch:
        if self._batch is None:
            assert self.native is not None
            self._batch = self.native.batch()
        return self._batch

    @property
    def rows(self) -> int:
        return self.native.rows if self.native is not None else self.batch.size

    @property
    def lost_events(self) -> list[dict[str, Any]]:
        return self.native.lost_events if self.native is not None else self.batch.lost_events

    def counts(self, column: str) -> dict[str, int]:
        """How many flows have each value of a shape column (NA left out)."""
        fast = self.native.counts(column) if self.native is not None else None
        if fast is not None:
            return fast
        counts: dict[str, int] = {}
        if self.batch.size:
            for item in pa.array(self.batch.columns[column]).value_counts().to_pylist():
                if item["values"] is not None:
                    key = str(item["values"])
                    counts[key] = counts.get(key, 0) + int(item["counts"])
        return counts
    bad: list[str] = field(default_factory=list)  # why each flow skipped was (out of range)


def _timestamp_ns(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos)


def _joined(values: Iterable[str], sep: str = ",") -> str | None:
    return sep.join(values) or None


def _endpoint(ep: Any, present: bool) -> tuple[Any, ...]:
    """(cluster, namespace, pod, workload, identity, labels) of an Endpoint, as the jsonpb
    reader derives them (identity NA without an endpoint)."""
    workloads = _joined(f"{w.kind}/{w.name}" for w in ep.workloads)
    return (ep.cluster_name or None, ep.namespace or None, ep.pod_name or None, workloads,
            ep.identity if present else None, _joined(ep.labels))


def _service(svc: Any) -> str:
    return f"{svc.namespace}/{svc.name}"


def _tcp_flags(flags: Any) -> str | None:
    return _joined(name for name in _TCP_FLAG_FIELDS if getattr(flags, name))


def _policies(policies: Any) -> str | None:
    """'name (Kind)' joined with ', '; None (as the Arrow path gives) if a name or kind is empty."""
    items = []
    for p in policies:
        if not p.name or not p.kind:
            return None
        items.append(f"{p.name} ({p.kind})")
    return ", ".join(items) or None


_SHAPE_COLUMNS = (
    "verdict", "drop_reason", "drop_reason_code", "event_type", "event_subtype", "event",
    "traffic_direction", "is_reply", "policy_match", "node", "ip_version", "protocol",
    "tcp_flags", "auth_type", "policies",
    "src_cluster", "src_namespace", "src_pod", "src_workload", "src_identity", "src_labels",
    "src_service", "src_names",
    "dst_cluster", "dst_namespace", "dst_pod", "dst_workload", "dst_identity", "dst_labels",
    "dst_service", "dst_names", "summary", "icmp_type", "ip_trace_id",
    "node_labels", "src_ip_xlated", "encrypted", "interface", "interface_index",
)
# Arrow types (pyarrow function names) of the shape and sparse columns that are not strings.
_SHAPE_TYPES = {"is_reply": "bool_", "src_identity": "int64", "dst_identity": "int64",
                "ip_trace_id": "uint64", "encrypted": "bool_", "interface_index": "int64",
                "drop_reason_code": "int64", "event_type": "int64", "event_subtype": "int64"}
_SPARSE_COLUMNS = (
    "summary", "l7_type", "l7_protocol", "http_method", "http_url",
    "http_code", "http_protocol", "http_headers", "dns_query", "dns_rcode", "dns_qtypes",
    "dns_ips", "latency_ns", "trace_id",
)
_SPARSE_TYPES = {"ip_trace_id": "uint64", "latency_ns": "uint64", "http_code": "int64",
                 "dns_rcode": "int64"}
# Shapes remembered across runs of one stream; past this many the cache starts over.
_MAX_SHAPES = 100_000


_MIN_NS, _MAX_NS = -(1 << 63) + 1, (1 << 63) - 1  # what datetime64[ns] holds (NaT aside)
_INT16 = range(-(1 << 15), 1 << 15)
_RESPONSE = flow_pb2.L7FlowType.Value("RESPONSE")


def shape_problem(f: Any) -> str | None:
    """Why a flow's shared fields do not fit the frame's columns, if they do not."""
    if f.event_type.type not in _INT16 or f.event_type.sub_type not in _INT16:
        return f"event type {f.event_type.type}:{f.event_type.sub_type} is outside -32768..32767"
    if f.drop_reason > 65535:
        return f"drop_reason {f.drop_reason} is outside 0..65535"
    return None


def _flow_problem(f: Any, t: int | None, sport: int, dport: int) -> str | None:
    """Why a flow's own values do not fit the frame's columns, if they do not."""
    if sport > 65535 or dport > 65535:
        return f"port {max(sport, dport)} is outside 0..65535"
    if t is not None and not _MIN_NS <= t <= _MAX_NS:
        return "time is outside 1677-09-21 to 2262-04-11"
    # (codes are kept for responses only)
    if f.HasField("l7") and f.l7.type == _RESPONSE and (f.l7.http.code > 32767
                                                       or f.l7.dns.rcode > 32767):
        return f"HTTP code {f.l7.http.code} or DNS rcode {f.l7.dns.rcode} is outside 0..32767"
    return None


def _shape_values(f: Any, node: str, l7key: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """The shape columns (in _SHAPE_COLUMNS order) of a flow whose per-flow fields were
    cleared; `node` is the node name to use, `l7key` (protocol, type, DNS source) or None."""
    verdict = _VERDICT.get(f.verdict, str(f.verdict)) if f.verdict else "VERDICT_UNKNOWN"
    desc = _name(_DROP_REASON, f.drop_reason_desc)
    code = f.drop_reason or (H.DROP_REASON_NUMBERS.get(desc) if desc else None)
    if desc is None and code:
        desc = H.DROP_REASON_NAMES.get(code)
    etype = f.event_type.type if f.HasField("event_type") else None
    esub = (f.event_type.sub_type or 0) if etype is not None else None
    l7proto, l7type, dns_source = l7key if l7key is not None else (None, None, None)
    match = f.policy_match_type or None
    event = H.event_label(l7proto, l7type, dns_source, etype, esub, match,
                         _name(_CAPTURE, f.debug_capture_point),
                         _name(_SOCK, f.sock_xlate_point))
    direction = _DIRECTION.get(f.traffic_direction)
    if direction not in ("INGRESS", "EGRESS"):
        direction = None
    protocol = f.l4.WhichOneof("protocol")
    flags = _tcp_flags(f.l4.TCP.flags) if protocol == "TCP" else None
    summary = f.Summary or None
    icmp = None
    if protocol in ("ICMPv4", "ICMPv6") and summary is not None \
            and summary.startswith(protocol + " "):
        icmp = summary[len(protocol) + 1:]
    policies = None
    if direction is not None:
        policies = _policies(_chosen_policies(f, f.traffic_direction, f.verdict))
    return (
        verdict, desc, code, etype, esub, event, direction,
        f.is_reply.value if f.HasField("is_reply") else None,
        H.match_label(match) if etype == 5 else None,
        node or None,
        _name(_IP_VERSION, f.IP.ipVersion),
        protocol, flags, _name(_AUTH, f.auth_type), policies,
        *_endpoint(f.source, f.HasField("source")),
        _service(f.source_service) if f.HasField("source_service") else None,
        _joined(f.source_names),
        *_endpoint(f.destination, f.HasField("destination")),
        _service(f.destination_service) if f.HasField("destination_service") else None,
        _joined(f.destination_names),
        summary, icmp, f.ip_trace_id.trace_id or None,  # rare: fine in the shape
        _joined(f.node_labels), f.IP.source_xlated or None,
        f.IP.encrypted if f.HasField("IP") else None,
        f.interface.name or None, f.interface.index if f.HasField("interface") else None,
    )


class ProtoDecoder:
    """Decodes runs of serialized GetFlowsResponse messages; keeps its shape cache across runs
    (a stream's shapes repeat)."""

    def __init__(self, *, fast: bool = True) -> None:
        self._shapes: dict[Any, int] = {}
        self._shape_values: list[tuple[Any, ...]] = []
        # The C fast path when built (flowlens.sources.native); this class stays the reference.
        self._fast = Shapes() if fast and native(proto=True) is not None else None
        self._bad_shapes: dict[int, str] = {}  # shapes with a value the frame cannot hold
        self._fast_bad: set[int] = set()  # the same, among the fast path's shapes
        self._fast_generation: Any = None

    def decode(self, payloads: Sequence[bytes], *, keep_payloads: bool = False
               ) -> DecodedBatch:
        """Decode one run of serialized responses."""
        if self._fast is not None:
            decoded = self._decode_fast(self._fast, payloads, keep_payloads)
            if decoded is not None:
                return decoded
        if len(self._shapes) > _MAX_SHAPES:
            self._shapes.clear()
            self._shape_values.clear()
            self._bad_shapes.clear()
        with paused_gc():
            return self._decode(payloads, keep_payloads)

    def _decode_fast(self, shapes: Shapes, payloads: Sequence[bytes],
                     keep_payloads: bool) -> DecodedBatch | None:
        """The run split in C, each new shape decoded by the reference; None when the
        reference must decode the whole run."""
        run = shapes.splitter.split(payloads.parts, payloads.offsets) \
            if isinstance(payloads, Joined) else shapes.splitter.split(payloads)
        if run is None or not shapes.learn(run, lambda index: shape_columns(payloads[index])):
            return None
        if self._out_of_range(run, payloads):
            return None  # the reference skips those flows as bad records
        lost: list[dict[str, Any]] = []
        node_status: list[NodeStatus] = []
        dropped: set[int] = set()  # responses not kept: node status and empty ones
        for index, position in run.others:
            r = _Response.FromString(payloads[index])
            kind = r.WhichOneof("response_types")
            if kind == "lost_events":
                if lost_problem(r) is not None:
                    return None  # the reference skips it as a bad record
                lost.append(lost_event(r, position))
                continue
            if kind == "node_status":
                node_status.append(_node_status(r))
            dropped.add(index)
        kept = None
        if keep_payloads:
            kept = [p for i, p in enumerate(payloads) if i not in dropped] if dropped \
                else list(payloads)
        def full(indexes: list[int]) -> FlowBatch:
            return ProtoDecoder(fast=False).decode([payloads[i] for i in indexes]).batch

        return DecodedBatch(None, node_status, kept, run.newest,
                            NativeRun(shapes, run, lost, full))

    def _out_of_range(self, run: Any, payloads: Sequence[bytes]) -> bool:
        """Whether a flow of the fast path's run has a shared value the frame cannot hold (the
        C code leaves runs with such per-flow values to the reference itself)."""
        if run.generation != self._fast_generation:  # the splitter started over
            self._fast_bad.clear()
            self._fast_generation = run.generation
        for shape, source in run.new_shapes:
            if shape_problem(_Response.FromString(payloads[source]).flow) is not None:
                self._fast_bad.add(shape)
        return bool(self._fast_bad) and any(shape in self._fast_bad
                                            for shape, _ in run.shape_counts())

    def _decode(self, payloads: Sequence[bytes], keep_payloads: bool) -> DecodedBatch:
        # One long loop on purpose: this is the hot path (see the module docstring). The fields
        # that differ from flow to flow are read, then cleared; the rest, serialized, is the
        # flow's shape key.
        from_string = _Response.FromString
        shapes = self._shapes
        shape_values = self._shape_values
        rows: list[tuple[Any, ...]] = []
        add_row = rows.append
        sparse: dict[str, list[tuple[int, Any]]] = {c: [] for c in _SPARSE_COLUMNS}
        lost: list[dict[str, Any]] = []
        node_status: list[NodeStatus] = []
        kept: list[bytes] | None = [] if keep_payloads else None
        bad: list[str] = []
        bad_shapes = self._bad_shapes
        port_protocols = H.PORT_PROTOCOLS
        row = 0
        for payload in payloads:
            try:
                r = from_string(payload)
            except DecodeError:  # (a hostile relay)
                bad.append("not a GetFlowsResponse: its bytes do not parse")
                continue
            # Field 1 (flow) comes first as servers write it: one byte tells, else ask upb.
            kind = "flow" if payload[:1] == b"\n" else r.WhichOneof("response_types")
            if kind != "flow":
                if kind == "lost_events":
                    why = lost_problem(r)
                    if why is not None:
                        bad.append(why)
                        continue
                    lost.append(lost_event(r, row))
                    if kept is not None:
                        kept.append(payload)
                elif kind == "node_status":
                    node_status.append(_node_status(r))
                continue
            f = r.flow
            ts = f.time
            t: int | None = ts.seconds * 1_000_000_000 + ts.nanos
            if not t and not f.HasField("time"):
                t = _timestamp_ns(r.time) if r.HasField("time") else None
            uuid = f.uuid or None
            ip = f.IP
            src_ip = ip.source or None
            dst_ip = ip.destination or None
            if src_ip or dst_ip:
                ip.source = ip.destination = ""
            l4 = f.l4
            protocol = l4.WhichOneof("protocol")
            sport = dport = 0
            if protocol in port_protocols:
                body = getattr(l4, protocol)
                sport = body.source_port
                dport = body.destination_port
                body.source_port = body.destination_port = 0
            # A value the frame cannot hold makes the flow a bad record, never wrapped.
            has_l7 = f.HasField("l7")
            if sport > 65535 or dport > 65535 or not _MIN_NS <= (t or 0) <= _MAX_NS or has_l7:
                why = _flow_problem(f, t, sport, dport)
                if why is not None:
                    bad.append(why)
                    continue
            f.ClearField("time")
            f.ClearField("uuid")
            if f.HasField("trace_context"):  # per request: kept sparsely
                sparse["trace_id"].append((row, f.trace_context.parent.trace_id or None))
                f.ClearField("trace_context")
            l7key = None
            if has_l7:
                # L7 parts and summaries differ per flow; other summaries are few and stay in
                # the shape.
                l7key = _l7(f.l7, row, sparse)
                sparse["summary"].append((row, f.Summary or None))
                f.ClearField("l7")
                f.ClearField("Summary")
                key: Any = (f.SerializeToString(), l7key)
            else:
                key = f.SerializeToString()
            if not f.node_name:
                key = (key, r.node_name)
            code = shapes.get(key)
            if code is None:
                code = shapes[key] = len(shape_values)
                shape_values.append(_shape_values(f, f.node_name or r.node_name, l7key))
                why = shape_problem(f)
                if why is not None:
                    bad_shapes[code] = why
            if code in bad_shapes:
                bad.append(bad_shapes[code])
                for items in sparse.values():  # what this row put there already
                    while items and items[-1][0] == row:
                        items.pop()
                continue
            add_row((code, t, uuid, src_ip, dst_ip, sport, dport))
            if kept is not None:
                kept.append(payload)
            row += 1
        columns = self._columns(rows, sparse)
        newest = pc.max(columns["time"]).as_py() if row else None
        return DecodedBatch(FlowBatch(columns=columns, size=row, lost_events=lost),
                            node_status, kept, newest, bad=bad)

    def _columns(self, rows: list[tuple[Any, ...]],
                 sparse: dict[str, list[tuple[int, Any]]]) -> dict[str, Any]:
        """Per-flow columns as read, shape columns spread to rows, sparse ones filled in."""
        size = len(rows)
        if not size:
            return {}
        codes, times, uuids, src_ips, dst_ips, sports, dports = zip(*rows, strict=True)
        out: dict[str, Any] = {
            "time": pa.array(times, type=pa.int64()),
            "uuid": pa.array(uuids, type=pa.string()),
            "src_ip": pa.array(src_ips, type=pa.string()),
            "dst_ip": pa.array(dst_ips, type=pa.string()),
            "src_port": _null_if_zero(pa.array(sports, type=pa.int64())),
            "dst_port": _null_if_zero(pa.array(dports, type=pa.int64())),
        }
        uniq, inverse = np.unique(np.asarray(codes, dtype=np.int64), return_inverse=True)
        per_shape = [self._shape_values[i] for i in uniq.tolist()]
        indices = pa.array(inverse.astype(np.int32))
        for i, name in enumerate(_SHAPE_COLUMNS):
            values = [v[i] for v in per_shape]
            kind = _SHAPE_TYPES.get(name)
            if kind is not None:
                out[name] = pa.array(values, type=getattr(pa, kind)()).take(indices)
            else:  # strings: dictionary-encoded already, so the frame builder need not
                encoded = _array(values).dictionary_encode()
                out[name] = pa.DictionaryArray.from_arrays(encoded.indices.take(indices),
                                                           encoded.dictionary)
        for name, items in sparse.items():
            filled = _spread(items, size, getattr(pa, _SPARSE_TYPES.get(name, "string"))())
            out[name] = pc.coalesce(filled, out[name]) if name in out else filled
        return out


def shape_columns(payload: bytes) -> dict[str, Any]:
    """The shape columns of one flow response, as `ProtoDecoder.decode` derives them (what
    the fast path prints from)."""
    r = _Response.FromString(payload)
    f = r.flow
    l7key = None
    if f.HasField("l7"):  # L7 flows keep their summary per flow
        l7key = _l7(f.l7, 0, {c: [] for c in _SPARSE_COLUMNS})
        f.ClearField("Summary")
    return dict(zip(_SHAPE_COLUMNS, _shape_values(f, f.node_name or r.node_name, l7key),
                    strict=True))


def _array(values: list[Any]) -> pa.Array:
    return pa.array(values) if any(v is not None for v in values) \
        else pa.nulls(len(values), pa.string())


def _null_if_zero(arr: pa.Array) -> pa.Array:
    # (0 of the array's own type: a plain 0 is int64, which a uint64 above 2**63 overflows)
    return pc.if_else(pc.equal(arr, pa.scalar(0, arr.type)), pa.scalar(None, arr.type), arr)


def _spread(items: list[tuple[int, Any]], size: int, kind: pa.DataType) -> pa.Array:
    """A column of `size` rows, null except at the given (row, value) items."""
    if not items:
        return pa.nulls(size, kind)
    rows, values = zip(*items, strict=True)
    if kind == pa.uint64():
        values = tuple(None if v is None else int(v) for v in values)
    where = np.full(size, len(values), dtype=np.int32)  # the extra last value is the null
    where[np.asarray(rows, dtype=np.int64)] = np.arange(len(values), dtype=np.int32)
    return pa.array([*values, None], type=kind).take(pa.array(where))


def _chosen_policies(f: Any, direction: int, verdict: int) -> Any:
    """The policy list the frame shows: allowed-by for FORWARDED/REDIRECTED, else denied-by,
    of the flow's direction (1 ingress, 2 egress)."""
    allowed = verdict in (1, 5)
    if direction == 1:
        return f.ingress_allowed_by if allowed else f.ingress_denied_by
    return f.egress_allowed_by if allowed else f.egress_denied_by


def _l7(l7: Any, row: int, sparse: dict[str, list[tuple[int, Any]]]) -> tuple[Any, ...]:
    """Stores the L7 columns of one row; returns (l7 protocol, type, DNS source) for the label."""
    record = l7.WhichOneof("record")
    l7type = _name(_L7_TYPE, l7.type)
    response = l7type == "RESPONSE"
    sparse["l7_type"].append((row, l7type))
    sparse["l7_protocol"].append((row, record))
    if response:
        sparse["latency_ns"].append((row, l7.latency_ns))
    dns_source = None
    if record == "http":
        http = l7.http
        for col, value in (("http_method", http.method), ("http_url", http.url),
                           ("http_protocol", http.protocol),
                           ("http_headers", _joined((f"{h.key}: {h.value}" for h in http.headers),
                                                    "\n"))):
            if value:
                sparse[col].append((row, value))
        if response:
            sparse["http_code"].append((row, http.code))
    elif record == "dns":
        dns = l7.dns
        dns_source = dns.observation_source or None
        if dns.query:
            sparse["dns_query"].append((row, dns.query))
        if dns.qtypes:
            sparse["dns_qtypes"].append((row, ",".join(dns.qtypes)))
        if dns.ips:
            sparse["dns_ips"].append((row, ",".join(dns.ips)))
        if response:
            sparse["dns_rcode"].append((row, dns.rcode))
    # An L7 record without a type is labelled with the type's zero name, as hubble does.
    return (record, l7type or "UNKNOWN_L7_TYPE", dns_source)


def lost_problem(r: Any) -> str | None:
    """Why a lost-event record's times do not fit the frame's, if they do not."""
    ev = r.lost_events
    for ts, given in ((r.time, r.HasField("time")), (ev.first, ev.HasField("first")),
                      (ev.last, ev.HasField("last"))):
        if given and not _MIN_NS <= _timestamp_ns(ts) <= _MAX_NS:
            return "lost events: time is outside 1677-09-21 to 2262-04-11"
    return None


def lost_event(r: Any, position: int) -> dict[str, Any]:
    ev = r.lost_events
    return {
        "time": _timestamp_ns(r.time) if r.HasField("time") else None,
        "node": r.node_name or None,
        "source": _LOST_SOURCE.get(ev.source, str(ev.source)),
        "cpu": ev.cpu.value if ev.HasField("cpu") else None,
        "num_events_lost": int(ev.num_events_lost),
        "first": _timestamp_ns(ev.first) if ev.HasField("first") else None,
        "last": _timestamp_ns(ev.last) if ev.HasField("last") else None,
        "position": position,
    }


def _node_status(r: Any) -> NodeStatus:
    ev = r.node_status
    return NodeStatus(
        time_ns=_timestamp_ns(r.time) if r.HasField("time") else None,
        node=r.node_name,
        state=_NODE_STATE.get(ev.state_change, str(ev.state_change)),
        node_names=list(ev.node_names),
        message=ev.message,
    )


def merge_batches(batches: list[FlowBatch]) -> FlowBatch:
    """Batches of this decoder as one (Arrow columns joined; lost-event positions shifted), so
    a frame is built once instead of concatenating many."""
    batches = [b for b in batches if b.size or b.lost_events]
    if len(batches) == 1:
        return batches[0]
    lost: list[dict[str, Any]] = []
    offset = 0
    for b in batches:
        lost.extend({**ev, "position": ev["position"] + offset} for ev in b.lost_events)
        offset += b.size
    flowing = [b for b in batches if b.size]
    columns: dict[str, Any] = {}
    if flowing:
        for name in flowing[0].columns:
            parts: list[Any] = [b.columns[name] for b in flowing]
            kind = next((p.type for p in parts if p.type != pa.null()), parts[0].type)
            columns[name] = pa.concat_arrays([p.cast(kind) for p in parts])
    return FlowBatch(columns=columns, size=offset, lost_events=lost)


def decode_responses(payloads: list[bytes], chunk: int = 20_000) -> FlowBatch:
    """Serialized GetFlowsResponse messages -> one FlowBatch (lost events included)."""
    decoder = ProtoDecoder()
    return merge_batches([decoder.decode(payloads[i:i + chunk]).batch
                          for i in range(0, max(len(payloads), 1), chunk)])
