"""jsonpb reader: `hubble observe -o jsonpb` lines, Hubble exporter files, legacy bare-Flow lines
(`-o json` before hubble 0.11) and JSON arrays of either.

Blocks of lines are decoded by pyarrow's JSON reader straight into columns with the schema below
(only the fields the frame uses), and every column is derived with Arrow compute — no Python
object per flow. Blocks it cannot take whole (a bad line, lowerCamelCase keys, bare Flows, enum
numbers) go line by line through orjson first: bad lines are counted, the rest normalized and
decoded the same way, so there is one extraction for every input.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from google.protobuf import json_format

from flowlens import _hubble as H
from flowlens.errors import InputError
from flowlens.sources.batch import FlowBatch, ReadReport, paused_gc
from flowlens.sources.camel import flow_to_proto_names, lost_event_to_proto_names, to_proto_names
from flowlens.sources.files import DEFAULT_MAX_LINE, LineBlocks, Opened, is_stream, too_long
from flowlens.sources.native import Shapes, native
from flowlens.sources.protodict import response_from_dict
from flowlens.sources.timerange import TIME_RANGE as _TIME_RANGE

_S = pa.string()
_I = pa.int64()
_B = pa.bool_()


def _struct(**fields: pa.DataType) -> pa.StructType:
    return pa.struct(list(fields.items()))


_PORTS = _struct(source_port=_I, destination_port=_I)
_ICMP = _struct(type=_I, code=_I)
_ENDPOINT = _struct(identity=_I, cluster_name=_S, namespace=_S, labels=pa.list_(_S),
                    pod_name=_S, workloads=pa.list_(_struct(name=_S, kind=_S)))
_SERVICE = _struct(name=_S, namespace=_S)
_POLICIES = pa.list_(_struct(name=_S, kind=_S))
_FLOW = _struct(
    time=_S, uuid=_S, verdict=_S, drop_reason=_I, auth_type=_S,
    IP=_struct(source=_S, source_xlated=_S, destination=_S, ipVersion=_S, encrypted=_B),
    l4=_struct(TCP=_struct(source_port=_I, destination_port=_I,
                           flags=_struct(**dict.fromkeys(H.TCP_FLAG_ORDER, _B))),
               UDP=_PORTS, ICMPv4=_ICMP, ICMPv6=_ICMP, SCTP=_PORTS,
               VRRP=_struct(type=_I), IGMP=_struct(type=_I)),
    source=_ENDPOINT, destination=_ENDPOINT, Type=_S, node_name=_S, node_labels=pa.list_(_S),
    source_names=pa.list_(_S), destination_names=pa.list_(_S),
    l7=_struct(type=_S, latency_ns=_S,
               dns=_struct(query=_S, ips=pa.list_(_S), rcode=_I, qtypes=pa.list_(_S),
                           observation_source=_S),
               http=_struct(code=_I, method=_S, url=_S, protocol=_S,
                            headers=pa.list_(_struct(key=_S, value=_S))),
               kafka=_struct(topic=_S)),
    event_type=_struct(type=_I, sub_type=_I),
    source_service=_SERVICE, destination_service=_SERVICE,
    traffic_direction=_S, policy_match_type=_I, debug_capture_point=_S, sock_xlate_point=_S,
    ip_trace_id=_struct(trace_id=_S), drop_reason_desc=_S, is_reply=_B,
    interface=_struct(index=_I, name=_S), trace_context=_struct(parent=_struct(trace_id=_S)),
    Summary=_S,
    ingress_allowed_by=_POLICIES, egress_allowed_by=_POLICIES,
    ingress_denied_by=_POLICIES, egress_denied_by=_POLICIES,
)
_LOST = _struct(source=_S, num_events_lost=_S, cpu=_I, first=_S, last=_S)
SCHEMA = pa.schema([("flow", _FLOW), ("lost_events", _LOST), ("node_name", _S), ("time", _S)])
# At most this many lines per block: Arrow gives every row every field of the schema, so a
# block of tiny records (`{}`) would otherwise be gigabytes (flows are about 1 KB: 4 MiB holds
# some 3,000).
MAX_BLOCK_LINES = 8192
# The largest JSON array read (it is parsed whole; one record per line has no limit).
MAX_ARRAY = 256 << 20
# At most 4 MiB of text per batch (about 3,000 flows). A block's working set (Arrow's decoded
# table and the columns derived from it) is several times its text, and the allocators keep
# their high-water mark resident: 16 MiB blocks left ~150 MB beside the frame for the whole read
# (8 MiB: +25 MB peak at 1M flows for 5% less time; 2 MiB: -7 MB for 15% more).
MAX_BLOCK = 4 << 20
# Decoding a whole input at once: 4 MiB blocks measured 13% faster than Arrow's 1 MiB default.
BLOCKS = pj.ReadOptions(block_size=4 << 20)
# Decoding one MAX_BLOCK block: 2 MiB chunks, so that Arrow's threads share it (measured 1.7x
# faster than one thread; 1 MiB chunks no faster on two cores).
BLOCK_CHUNKS = pj.ReadOptions(block_size=2 << 20)
PARSE_OPTIONS = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")

# In a block's first line, these send it to the careful path: camelCase names, node status.
# (Other odd rows are caught after decoding: they are neither flow nor lost event.)
_CAREFUL = (b'"nodeName"', b'"eventType"', b'"isReply"', b'"lostEvents"', b'"node_status"',
            b'"nodeStatus"')
# Keys that only a bare Flow (legacy `-o json`) has at its top level.
_FLOW_KEYS = frozenset({"verdict", "Type", "IP", "l4", "source", "destination", "event_type",
                        "Summary", "uuid", "eventType", "nodeName"})


def read_jsonpb(opened: Opened, report: ReadReport, batch_size: int = 50_000,
                keep_raw: bool = False, max_line: int = DEFAULT_MAX_LINE,
                first_line: int = 1) -> Iterator[FlowBatch]:
    """Yield batches of flows from one jsonpb source; bad lines go to `report`. Lines longer
    than `max_line` bytes are bad lines, read through in bounded memory. `first_line`: the
    number of the stream's first line (a stream from the middle of a file of lines)."""
    head = opened.stream.peek(64).lstrip()  # type: ignore[attr-defined]
    if head[:1] == b"[" and first_line == 1:
        yield from _read_array(opened, report, batch_size, keep_raw, max_line)
        return
    position = 0
    long_lines: list[int] = []  # met while reading a block, reported when it is read
    blocks = LineBlocks(opened.stream, long_lines.append, min(batch_size * 1200, MAX_BLOCK),
                        max_line, min(batch_size, MAX_BLOCK_LINES), first_line=first_line)
    # The C fast path when built (flowlens.sources.native); Arrow below stays the reference.
    # From a file (not a pipe: blocks go on as they arrive) the next block is split ahead.
    fast = Shapes(json=True) if native() is not None and not keep_raw else None
    ahead = fast is not None and not is_stream(opened.stream)
    for block, at_end, split, skipped in _split_ahead(blocks, long_lines, fast, ahead):
        for line in skipped:
            report.bad(f"{opened.name}:{line}", too_long(max_line))
        where = _Where(opened.name, first_line)
        run = split.result() if split is not None else None
        first_line += run.newlines if run is not None else block.count(b"\n")
        if run is not None and fast is not None:
            batch = _fast_block(fast, run, block, position, report)
            if batch is not None:
                position += batch.size
                yield batch
                continue
        first = block[:block.find(b"\n")]
        if not keep_raw and not any(m in first for m in _CAREFUL):
            try:
                # Arrow's JSON reader lets invalid UTF-8 through; orjson, on the careful path,
                # names the line.
                _check_utf8(block)
                # Into the system allocator: mimalloc keeps the pages each of Arrow's reader
                # threads freed (measured: +25 MB peak at 1M flows).
                table = pj.read_json(pa.BufferReader(block), read_options=BLOCK_CHUNKS,
                                     parse_options=PARSE_OPTIONS,
                                     memory_pool=pa.system_memory_pool())
                batch = None
                if _all_known(table) and _problem(table) is None:
                    batch = _from_table(table, position, report)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
                batch = None
            if batch is not None:
                # Hand the block's Arrow working set back: mimalloc would keep it resident.
                del table
                pa.default_memory_pool().release_unused()
                position += batch.size
                yield batch
                continue
        # Lines end at "\n" only (bytes.splitlines would also split at "\r").
        lines = [line + b"\n" for line in block.split(b"\n")]
        lines[-1] = lines[-1][:-1]
        with paused_gc():  # a block of tiny records is a million small objects
            records = _decode_lines(lines, where, at_end, report)
            batch = _from_records(records, where, position, report, keep_raw)
            del records
        position += batch.size
        yield batch
    for line in long_lines:  # after the last block
        report.bad(f"{opened.name}:{line}", too_long(max_line))


class _Unusable(Exception):
    """The fast path cannot read this block as the reference does."""


def _split_ahead(blocks: Iterable[tuple[bytes, bool]], long_lines: list[int],
                 fast: Shapes | None, ahead: bool
                 ) -> Iterator[tuple[bytes, bool, Future[Any] | None, list[int]]]:
    """The blocks, each with its split in C for the fast path (without the GIL, the next block
    while this one is made columns when `ahead`), and the long lines met while reading it (the
    caller reports them in their turn)."""
    with ThreadPoolExecutor(1, thread_name_prefix="flowlens-split") as pool:
        pending: deque[tuple[bytes, bool, Future[Any] | None, list[int]]] = deque()
        for block, at_end in blocks:
            split = None
            if fast is not None and not any(m in block[:block.find(b"\n")] for m in _CAREFUL):
                split = pool.submit(fast.splitter.split_json, block)
            pending.append((block, at_end, split, long_lines[:]))
            long_lines.clear()
            if len(pending) > ahead:
                yield pending.popleft()
        yield from pending


def _fast_block(fast: Shapes, run: Any, block: bytes, position: int,
                report: ReadReport) -> FlowBatch | None:
    """A block of flow lines split in C (`run`), each new shape read by the Arrow path below
    from one line of it; None when the reference must read the block (a lost event, a bad
    line, ...)."""
    if run is None or not fast.learn(run, None):
        return None

    def shape_lines(sources: list[tuple[int, int]]) -> FlowBatch:
        lines = b"\n".join(bytes(block[start:end]) for start, end in sources)
        table = pj.read_json(io.BytesIO(lines), read_options=BLOCKS, parse_options=PARSE_OPTIONS)
        if not _all_known(table) or _problem(table) is not None:
            raise _Unusable
        return _from_table(table, 0, report)

    try:
        columns = fast.columns(run, shape_lines)
        lost = []
        if run.others:  # lost-event records, read as the Arrow path reads them
            records = shape_lines([(start, end) for start, end, _ in run.others])
            if records.size or len(records.lost_events) != len(run.others):
                return None
            lost = [{**event, "position": position + before} for event, (_, _, before)
                    in zip(records.lost_events, run.others, strict=True)]
    except (_Unusable, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return FlowBatch(columns=columns, size=run.rows, lost_events=lost)


def _check_utf8(block: bytes) -> None:
    """UnicodeDecodeError unless the block is UTF-8, checked by Arrow in place (no copy)."""
    data = pa.py_buffer(block)
    offsets = pa.py_buffer(np.array([0, len(block)], dtype=np.int32).tobytes())
    try:
        pa.StringArray.from_buffers(1, offsets, data).validate(full=True)
    except pa.ArrowInvalid as exc:
        raise UnicodeDecodeError("utf-8", bytes(block), 0, 1, str(exc)) from None


class _Where:
    """Names line numbers of a block for messages."""

    def __init__(self, name: str, first_line: int) -> None:
        self.name = name
        self.first_line = first_line

    def __call__(self, index: int) -> str:
        return f"{self.name}:{self.first_line + index}"


def _all_known(table: pa.Table) -> bool:
    """Every row is a flow or a lost event (else some row needs the careful path)."""
    known = pc.or_(pc.is_valid(table["flow"]), pc.is_valid(table["lost_events"]))
    return bool(pc.all(known).as_py()) if len(table) else True


def _decode_lines(lines: list[bytes], where: Callable[[int], str], at_end: bool,
                  report: ReadReport) -> list[tuple[int, Any]]:
    out = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append((i, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            if i == last and at_end and not line.endswith(b"\n"):
                report.cut_off(where(i))
            else:
                report.bad(where(i), f"not JSON ({exc.args[0].split(':')[0]})")
    return out


def _read_array(opened: Opened, report: ReadReport, batch_size: int,
                keep_raw: bool, max_line: int) -> Iterator[FlowBatch]:
    """A JSON array is parsed whole: up to MAX_ARRAY bytes (or --max-line-size if larger)."""
    limit = max(MAX_ARRAY, max_line)
    text = opened.stream.read(limit + 1)
    if len(text) > limit:
        raise InputError(f"{opened.name}: a JSON array larger than {limit >> 20} MiB; write "
                         "one record per line instead (jq -c '.[]')")
    try:
        items = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        report.bad(opened.name, f"not a JSON array ({exc.args[0]})")
        return
    if not isinstance(items, list):
        report.bad(opened.name, "not a JSON array")
        return
    position = 0
    for start in range(0, len(items), batch_size):
        chunk = list(enumerate(items[start:start + batch_size]))
        def where(i: int, s: int = start) -> str:
            return f"{opened.name}[{s + i}]"

        batch = _from_records(chunk, where, position, report, keep_raw)
        position += batch.size
        yield batch


def normalize(rec: Any) -> dict[str, Any] | None:
    """A decoded record in GetFlowsResponse shape with proto names, or None if not a flow,
    lost event or node status."""
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    if any(k in rec for k in ("flow", "lost_events", "node_status", "lostEvents", "nodeStatus")):
        out = to_proto_names(rec)
        kinds = ("flow", "lost_events", "node_status")
        # `{"flow": null}` carries nothing either.
        return out if isinstance(out, dict) and any(isinstance(out.get(k), dict)
                                                    for k in kinds) else None
    if "num_events_lost" in rec or "numEventsLost" in rec:
        return {"lost_events": lost_event_to_proto_names(rec)}  # legacy `-o json` bare LostEvent
    if _FLOW_KEYS.intersection(rec):
        return {"flow": flow_to_proto_names(rec)}  # legacy `-o json` bare Flow
    return None


def _from_records(records: list[tuple[int, Any]], where: Callable[[int], str], position: int,
                  report: ReadReport, keep_raw: bool) -> FlowBatch:
    """The careful path: normalize each record, then decode them all as one block; when the
    block decoder rejects the block, the records it rejects one by one are counted as bad."""
    good: list[tuple[int, dict[str, Any], bytes]] = []
    for i, rec in records:
        try:
            norm = normalize(rec)
        except (ValueError, TypeError, AttributeError) as exc:
            report.bad(where(i), str(exc))
            continue
        if norm is None:
            report.bad(where(i), "not a Hubble record (no flow, lost_events or node_status)")
            continue
        # Records kept as written (to be written back or served) must be whole Hubble
        # messages, also in the fields the frame does not read.
        why = _not_a_message(norm) if keep_raw or "node_status" in norm else None
        if why is not None:
            report.bad(where(i), f"not a Hubble flow ({why})")
            continue
        if "node_status" in norm:
            report.add_node_status(norm)
            continue
        good.append((i, norm, orjson.dumps(norm)))
    table = _decode_block([line for _, _, line in good])
    if isinstance(table, str):  # some record has a malformed field: find it, line by line
        wrong = {}
        for i, _, line in good:
            alone = _decode_block([line])
            if isinstance(alone, str):
                wrong[i] = alone
        for i, why in sorted(wrong.items()):
            report.bad(where(i), f"not a Hubble flow ({why})")
        good = [g for g in good if g[0] not in wrong]
        table = _decode_block([line for _, _, line in good])
    batch = _from_table(table if not isinstance(table, str) else SCHEMA.empty_table(), position,
                        report)
    if keep_raw:
        batch.raw = [norm for _, norm, _ in good if "flow" in norm]
    return batch


def _not_a_message(record: dict[str, Any]) -> str | None:
    """Why protobuf cannot take the record as a GetFlowsResponse (as hubble reads it), if so."""
    try:
        response_from_dict(record)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        return str(exc)
    return None


def _decode_block(lines: list[bytes]) -> pa.Table | str:
    """The lines decoded as one table, or what is wrong with (the first of) them."""
    if not lines:
        return SCHEMA.empty_table()
    try:
        table = pj.read_json(io.BytesIO(b"\n".join(lines)), read_options=BLOCKS,
                             parse_options=PARSE_OPTIONS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return "a field has the wrong type"
    return _problem(table) or table


_UINT32 = (1 << 32) - 1
_INT32 = 1 << 31
# Numbers read, as (path in the table, what it is, lowest, highest): the range of the proto
# field, narrowed to the frame column that holds it. Anything outside is a bad line, never wrapped.
_RANGES = (
    *((("flow", "l4", p, f"{side}_port"), f"{side} port", 0, 65535)
      for p in sorted(H.PORT_PROTOCOLS) for side in ("source", "destination")),
    *((("flow", "l4", p, k), f"{p} {k}", 0, _UINT32)
      for p in ("ICMPv4", "ICMPv6") for k in ("type", "code")),
    (("flow", "l4", "VRRP", "type"), "VRRP type", 0, _UINT32),
    (("flow", "l4", "IGMP", "type"), "IGMP type", 0, _UINT32),
    (("flow", "source", "identity"), "source identity", 0, _UINT32),
    (("flow", "destination", "identity"), "destination identity", 0, _UINT32),
    (("flow", "drop_reason"), "drop_reason", 0, 65535),
    (("flow", "event_type", "type"), "event type", -(1 << 15), (1 << 15) - 1),
    (("flow", "event_type", "sub_type"), "event sub type", -(1 << 15), (1 << 15) - 1),
    (("flow", "policy_match_type"), "policy_match_type", 0, _UINT32),
    (("flow", "interface", "index"), "interface index", 0, _UINT32),
    (("flow", "l7", "http", "code"), "HTTP code", 0, _UINT32),
    (("flow", "l7", "dns", "rcode"), "DNS rcode", 0, _UINT32),
    (("lost_events", "cpu"), "lost-event cpu", -_INT32, _INT32 - 1),
)
_RESPONSE_CODES = ((("l7", "http", "code"), "HTTP code"), (("l7", "dns", "rcode"), "DNS rcode"))
# 64-bit numbers, which protojson writes as strings.
_UINT64_TEXT = (
    (("flow", "l7", "latency_ns"), "latency_ns"),
    (("flow", "ip_trace_id", "trace_id"), "trace_id"),
    (("lost_events", "num_events_lost"), "num_events_lost"),
)
_TIMES = ((("lost_events", "first"), "lost-event first"),
          (("lost_events", "last"), "lost-event last"))


def _problem(table: pa.Table) -> str | None:
    """What is wrong with the first malformed or out-of-range value of the table, if any:
    a number outside its field's range, a timestamp that is not RFC 3339 or outside what the
    frame holds."""
    try:
        _times(table)
    except pa.ArrowInvalid:
        return f"time is not RFC 3339 from {_TIME_RANGE}"
    columns = {name: table[name].combine_chunks() for name in ("flow", "lost_events")}
    for path, what, low, high in _RANGES:
        values = _field(columns[path[0]], *path[1:])
        outside = pc.or_(pc.less(values, low), pc.greater(values, high))
        if pc.any(outside).as_py():
            bad = values.filter(pc.fill_null(outside, False))[0].as_py()
            return f"{what} {bad} is outside {low}..{high}"
    response = pc.fill_null(pc.equal(_field(columns["flow"], "l7", "type"), "RESPONSE"), False)
    for path, what in _RESPONSE_CODES:  # the frame keeps them (as Int16) for responses
        values = pc.filter(_field(columns["flow"], *path), response)
        if pc.any(pc.greater(values, (1 << 15) - 1)).as_py():
            bad = values.filter(pc.fill_null(pc.greater(values, (1 << 15) - 1), False))[0]
            return f"{what} {bad.as_py()} is outside 0..32767"
    for path, what in _UINT64_TEXT:
        values = _field(columns[path[0]], *path[1:])
        try:
            pc.cast(values, pa.uint64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return f"{what} is not a number from 0 to {(1 << 64) - 1}"
    for path, what in _TIMES:
        try:
            pc.cast(_field(columns[path[0]], *path[1:]), pa.timestamp("ns", tz="UTC"))
        except pa.ArrowInvalid:
            return f"{what} is not RFC 3339 from {_TIME_RANGE}"
    return None


def _times(table: pa.Table) -> pa.Array:
    """Flow time (else the response's) as UTC nanoseconds; ArrowInvalid if one is malformed."""
    flow_time = _field(table["flow"].combine_chunks(), "time")
    time = pc.if_else(pc.is_valid(flow_time), flow_time, table["time"].combine_chunks())
    return pc.cast(time, pa.timestamp("ns", tz="UTC"))


# --- columns from an Arrow table --------------------------------------------------------------


def _field(arr: pa.Array, *path: str) -> pa.Array:
    for name in path:
        arr = pc.struct_field(arr, name)
    return arr


def _null_if_empty(arr: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)


def _null_if_zero(arr: pa.Array) -> pa.Array:
    # (0 of the array's own type: a plain 0 is int64, which a uint64 above 2**63 overflows)
    return pc.if_else(pc.equal(arr, pa.scalar(0, arr.type)), pa.scalar(None, arr.type), arr)


def _joined(arr: pa.Array, sep: str = ",") -> pa.Array:
    """A list<string> column joined with `sep`; empty or missing lists are null."""
    return _null_if_empty(pc.binary_join(arr, sep))


def _per_unique(fn: Callable[..., Any], out_type: pa.DataType, *arrays: pa.Array) -> pa.Array:
    """fn applied once per distinct combination of the arrays' values, spread back to rows."""
    if not len(arrays[0]):
        return pa.array([], type=out_type)
    # One string key per row ("\x00" stands for null), dictionary-encoded in C.
    parts = [pc.fill_null(pc.cast(a, _S), "\x00") for a in arrays]
    key = pc.binary_join_element_wise(*parts, "\x01") if len(parts) > 1 else parts[0]
    encoded = key.dictionary_encode()
    _, first = np.unique(encoded.indices.to_numpy(), return_index=True)
    values = [fn(*(a[int(i)].as_py() for a in arrays)) for i in first]
    return pc.take(pa.array(values, type=out_type), encoded.indices)


def _workloads(arr: pa.Array) -> pa.Array:
    """list<struct<name, kind>> as 'Kind/name' joined with ','."""
    flat = pc.list_flatten(arr)
    items = pc.binary_join_element_wise(pc.fill_null(_field(flat, "kind"), ""),
                                        pc.fill_null(_field(flat, "name"), ""), "/")
    return _joined(_renest(arr, items))


def _renest(lists: pa.ListArray, items: pa.Array) -> pa.ListArray:
    """`items` (one per element of the flattened `lists`) grouped back into the same lists."""
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    return pa.ListArray.from_arrays(offsets, items, mask=pc.is_null(lists))


def _headers(arr: pa.Array) -> pa.Array:
    """list<struct<key, value>> as 'Key: value' lines joined with '\n'."""
    flat = pc.list_flatten(arr)
    items = pc.binary_join_element_wise(pc.fill_null(_field(flat, "key"), ""),
                                        pc.fill_null(_field(flat, "value"), ""), ": ")
    return _joined(_renest(arr, items), "\n")


def _policies(arr: pa.Array) -> pa.Array:
    """list<struct<name, kind>> as 'name (Kind)' joined with ', '."""
    flat = pc.list_flatten(arr)
    items = pc.binary_join_element_wise(_field(flat, "name"), " (", _field(flat, "kind"), ")", "")
    return _joined(_renest(arr, items), ", ")


def _tcp_flags(flags: pa.Array) -> pa.Array:
    """The set flags joined with ',' in hubble's order (few distinct combinations)."""
    def join(*bits: bool | None) -> str | None:
        return ",".join(f for f, bit in zip(H.TCP_FLAG_ORDER, bits, strict=True) if bit) or None

    return _per_unique(join, _S, *(_field(flags, f) for f in H.TCP_FLAG_ORDER))


def _from_table(table: pa.Table, position: int, report: ReadReport) -> FlowBatch:
    table = table.combine_chunks()
    is_flow = pc.is_valid(table["flow"])
    lost_rows = pc.is_valid(table["lost_events"])
    lost = _lost_events(table, lost_rows, is_flow, position)
    # Filtering copies the table: only when some row is not a flow.
    flows = table if pc.all(is_flow).as_py() is not False else table.filter(is_flow)
    f = flows["flow"].combine_chunks() if flows.num_rows else pa.array([], type=_FLOW)
    if isinstance(f, pa.ChunkedArray):
        f = f.combine_chunks()
    n = len(f)
    return FlowBatch(columns=_columns(f, flows), size=n, lost_events=lost)


def _lost_events(table: pa.Table, lost_rows: pa.Array, is_flow: pa.Array,
                 position: int) -> list[dict[str, Any]]:
    if not pc.any(lost_rows).as_py():
        return []
    flows_before = pc.subtract(pc.cumulative_sum(pc.cast(is_flow, _I)), pc.cast(is_flow, _I))
    out = []
    for i in pc.indices_nonzero(lost_rows).to_pylist():
        ev = table["lost_events"][i].as_py()
        out.append({
            "time": table["time"][i].as_py(),
            "node": table["node_name"][i].as_py() or None,
            "source": ev.get("source") or "UNKNOWN_LOST_EVENT_SOURCE",
            "cpu": ev.get("cpu"),
            "num_events_lost": int(ev.get("num_events_lost") or 0),
            "first": ev.get("first"),
            "last": ev.get("last"),
            "position": position + flows_before[i].as_py(),
        })
    return out


def _side(f: pa.Array, key: str, port: pa.Array) -> dict[str, pa.Array]:
    """One endpoint's columns; `key` is "source" or "destination"."""
    ep = _field(f, key)
    svc = _field(f, f"{key}_service")
    service = pc.if_else(pc.is_valid(svc), pc.binary_join_element_wise(
        pc.fill_null(_field(svc, "namespace"), ""), pc.fill_null(_field(svc, "name"), ""), "/"),
        pa.scalar(None, _S))
    return {
        "cluster": _null_if_empty(_field(ep, "cluster_name")),
        "namespace": _null_if_empty(_field(ep, "namespace")),
        "pod": _null_if_empty(_field(ep, "pod_name")),
        "workload": _workloads(_field(ep, "workloads")),
        "service": service,
        # 0 when the endpoint is there without one, NA when there is no endpoint
        "identity": pc.if_else(pc.is_valid(ep), pc.fill_null(_field(ep, "identity"), 0),
                               pa.scalar(None, _I)),
        "labels": _joined(_field(ep, "labels")),
        "ip": _null_if_empty(_field(f, "IP", key)),
        "port": _null_if_zero(port),
        "names": _joined(_field(f, f"{key}_names")),
    }


def _columns(f: pa.Array, flows: pa.Table) -> dict[str, Any]:
    l4 = _field(f, "l4")
    protocol = pa.nulls(len(f), _S)
    sport = pa.nulls(len(f), _I)
    dport = pa.nulls(len(f), _I)
    for name in reversed(H.L4_PROTOCOLS):  # the first present one wins, as in the oneof
        body = _field(l4, name)
        present = pc.is_valid(body)
        protocol = pc.if_else(present, name, protocol)
        if name in H.PORT_PROTOCOLS:
            sport = pc.if_else(present, _field(body, "source_port"), sport)
            dport = pc.if_else(present, _field(body, "destination_port"), dport)

    summary = _field(f, "Summary")
    etype = pc.if_else(pc.is_valid(_field(f, "event_type")),
                       pc.fill_null(_field(f, "event_type", "type"), 0), pa.scalar(None, _I))
    esub = pc.if_else(pc.is_valid(etype), pc.fill_null(_field(f, "event_type", "sub_type"), 0),
                      pa.scalar(None, _I))
    l7 = _field(f, "l7")
    l7type = _field(l7, "type")
    l7proto = pc.if_else(pc.is_valid(_field(l7, "http")), "http",
                         pc.if_else(pc.is_valid(_field(l7, "dns")), "dns",
                                    pc.if_else(pc.is_valid(_field(l7, "kafka")), "kafka",
                                               pa.scalar(None, _S))))
    response = pc.fill_null(pc.equal(l7type, "RESPONSE"), False)
    match_type = _field(f, "policy_match_type")
    # An L7 record without a type is labelled with the type's zero name, as hubble does.
    labelled = pc.if_else(pc.is_valid(l7), pc.fill_null(l7type, "UNKNOWN_L7_TYPE"), l7type)
    event = _per_unique(H.event_label, _S, l7proto, labelled,
                        _field(l7, "dns", "observation_source"), etype, esub, match_type,
                        _field(f, "debug_capture_point"), _field(f, "sock_xlate_point"))
    is_policy_verdict = pc.fill_null(pc.equal(etype, 5), False)
    policy_match = pc.if_else(is_policy_verdict,
                              _per_unique(H.match_label, _S, match_type), pa.scalar(None, _S))

    verdict = pc.fill_null(_field(f, "verdict"), "VERDICT_UNKNOWN")
    desc = _field(f, "drop_reason_desc")
    code = _field(f, "drop_reason")
    code = pc.if_else(pc.is_valid(code), code, _per_unique(
        lambda d: H.DROP_REASON_NUMBERS.get(d) if d else None, _I, desc))
    desc = pc.if_else(pc.is_valid(desc), desc, _per_unique(
        lambda c: H.DROP_REASON_NAMES.get(c) if c else None, _S, code))
    direction = _field(f, "traffic_direction")
    direction = pc.if_else(pc.is_in(direction, pa.array(["INGRESS", "EGRESS"])), direction,
                           pa.scalar(None, _S))

    icmp = pa.nulls(len(f), _S)
    for name in ("ICMPv4", "ICMPv6"):
        prefix = name + " "
        hit = pc.and_(pc.equal(protocol, name), pc.starts_with(summary, prefix))
        icmp = pc.if_else(pc.fill_null(hit, False), pc.utf8_slice_codeunits(summary, len(prefix)),
                          icmp)

    http = _field(l7, "http")
    dns = _field(l7, "dns")
    none_i = pa.scalar(None, _I)
    allowed = pc.is_in(verdict, pa.array(["FORWARDED", "REDIRECTED"]))
    policies = pa.nulls(len(f), _S)
    for d, prefix in (("INGRESS", "ingress"), ("EGRESS", "egress")):
        picked = pc.if_else(allowed, _policies(_field(f, f"{prefix}_allowed_by")),
                            _policies(_field(f, f"{prefix}_denied_by")))
        policies = pc.if_else(pc.fill_null(pc.equal(direction, d), False), picked, policies)
    auth = _field(f, "auth_type")
    trace_id = pc.cast(_field(f, "ip_trace_id", "trace_id"), pa.uint64())

    src = _side(f, "source", sport)
    dst = _side(f, "destination", dport)
    node = pc.if_else(pc.is_valid(_field(f, "node_name")), _field(f, "node_name"),
                      flows["node_name"])

    columns: dict[str, Any] = {
        "time": _times(flows),
        "node": _null_if_empty(node),
        "node_labels": _joined(_field(f, "node_labels")),
        "verdict": verdict,
        "drop_reason": desc,
        "drop_reason_code": code,
        "event_type": etype,
        "event_subtype": esub,
        "event": event,
        "traffic_direction": direction,
        "is_reply": _field(f, "is_reply"),
        "policy_match": policy_match,
    }
    for prefix, side in (("src", src), ("dst", dst)):
        columns.update({f"{prefix}_{k}": v for k, v in side.items()})
    ip = _field(f, "IP")
    iface = _field(f, "interface")
    columns["src_ip_xlated"] = _null_if_empty(_field(ip, "source_xlated"))
    columns.update({
        "ip_version": _field(ip, "ipVersion"),
        "encrypted": pc.if_else(pc.is_valid(ip), pc.fill_null(_field(ip, "encrypted"), False),
                                pa.scalar(None, _B)),
        "protocol": protocol,
        "tcp_flags": _tcp_flags(_field(l4, "TCP", "flags")),
        "icmp_type": icmp,
        "l7_type": l7type,
        "l7_protocol": l7proto,
        "http_method": _field(http, "method"),
        "http_url": _field(http, "url"),
        "http_code": pc.if_else(pc.and_(response, pc.is_valid(http)),
                                pc.fill_null(_field(http, "code"), 0), none_i),
        "http_protocol": _field(http, "protocol"),
        "http_headers": _headers(_field(http, "headers")),
        "dns_query": _field(dns, "query"),
        "dns_rcode": pc.if_else(pc.and_(response, pc.is_valid(dns)),
                                pc.fill_null(_field(dns, "rcode"), 0), none_i),
        "dns_qtypes": _joined(_field(dns, "qtypes")),
        "dns_ips": _joined(_field(dns, "ips")),
        "latency_ns": pc.if_else(response, pc.fill_null(
            pc.cast(_field(l7, "latency_ns"), pa.uint64()), 0), pa.scalar(None, pa.uint64())),
        "auth_type": pc.if_else(pc.equal(auth, "DISABLED"), pa.scalar(None, _S), auth),
        "ip_trace_id": _null_if_zero(trace_id),
        "trace_id": _null_if_empty(_field(f, "trace_context", "parent", "trace_id")),
        "interface": _null_if_empty(_field(iface, "name")),
        "interface_index": pc.if_else(pc.is_valid(iface), pc.fill_null(_field(iface, "index"), 0),
                                      pa.scalar(None, _I)),
        "policies": policies,
        "summary": summary,
        "uuid": _field(f, "uuid"),
    })
    return columns
