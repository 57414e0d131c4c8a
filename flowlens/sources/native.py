"""The fast path: `flowlens._native`, a C extension built at install (`setup.py`), when present.

It does the per-flow work of the live and file readers in C: serialized GetFlowsResponse
messages and jsonpb lines are split into the values that differ from flow to flow (time, uuid,
addresses, ports, L7 fields) and a key for the rest (the flow's "shape"); each new shape is
decoded once by the Python decoders, which stay the reference; and hubble's text and jsonpb are
rendered from those values. The C code answers only what it is sure to answer as the reference
does and hands anything else back ("bail"), so results are the same with or without it; the
tests hold the two paths against each other, on hostile input too.

`FLOWLENS_NATIVE=0` in the environment turns it off.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import itertools
import os
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, overload

from flowlens import _hubble as H
from flowlens._lazy import lazy
from flowlens.frame.schema import COLUMNS, Column
from flowlens.sources.batch import FlowBatch

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np, pa, pc = lazy("numpy"), lazy("pyarrow"), lazy("pyarrow.compute")

__all__ = ["PER_ROW", "Joined", "NativeRun", "Shapes", "message_index", "native"]

_SOURCES = Path(__file__).resolve().parents[1] / "_native"

# google.protobuf well-known types with their own JSON form (codes of native.h's WKT_*).
_WKT = {"google.protobuf.Timestamp": 1, "google.protobuf.BoolValue": 2,
        "google.protobuf.Int32Value": 3, "google.protobuf.UInt32Value": 4,
        "google.protobuf.Int64Value": 5, "google.protobuf.UInt64Value": 6,
        "google.protobuf.StringValue": 7}


def _source_digest() -> str | None:
    """The digest setup.py builds into the module, of the C sources beside this package (None
    in an installation without them)."""
    paths = sorted(_SOURCES.glob("*.[ch]"))
    if not paths:
        return None
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def native(proto: bool = False) -> ModuleType | None:
    """The C extension, ready to use (`proto`: for protobuf too, which loads the descriptor
    tables); None when it is not built, stale (built from other sources than these) or turned
    off."""
    if os.environ.get("FLOWLENS_NATIVE", "1") == "0":
        return None
    if proto:
        module = native()
        if module is not None:
            module.set_schema(*_schema())
        return module
    try:
        from flowlens import _native
    except ImportError:
        return None
    expected = _source_digest()
    if expected is not None and expected != _native.SOURCE:
        return None
    _native.set_render_tables(H.VERDICTS[0], H.POLICY_VERDICT_TEXT, H.TRAFFIC_DIRECTIONS[0],
                              H.RESERVED_IDENTITIES, tuple(sorted(H.PORT_PROTOCOLS)),
                              H.AUTH_TYPES[0])
    return _native


@functools.cache
def _schema() -> tuple[list[Any], list[Any]]:
    """Every message type of the observer API with its fields in declaration order, and every
    enum, as set_schema takes them."""
    from google.protobuf.descriptor import FieldDescriptor

    from flowlens._proto.observer import observer_pb2

    messages: dict[str, int] = {}
    enums: dict[str, int] = {}
    order: list[Any] = []
    enum_order: list[Any] = []

    def visit(desc: Any) -> int:
        if desc.full_name in messages:
            return messages[desc.full_name]
        messages[desc.full_name] = len(order)
        order.append(desc)
        for field in desc.fields:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                visit(field.message_type)
            elif field.type == FieldDescriptor.TYPE_ENUM and \
                    field.enum_type.full_name not in enums:
                enums[field.enum_type.full_name] = len(enum_order)
                enum_order.append(field.enum_type)
        return messages[desc.full_name]

    for name in ("GetFlowsResponse", "GetFlowsRequest", "ServerStatusResponse",
                 "GetNodesResponse"):
        visit(getattr(observer_pb2, name).DESCRIPTOR)
    table = []
    for desc in order:
        oneofs = {o.full_name: i for i, o in enumerate(desc.oneofs)
                  if not (len(o.fields) == 1 and o.name.startswith("_"))}  # not proto3 optional
        fields = [(f.number, f.name, f.type, int(f.is_repeated), int(f.has_presence),
                   oneofs.get(f.containing_oneof.full_name, -1) if f.containing_oneof else -1,
                   messages[f.message_type.full_name] if f.message_type else -1,
                   enums[f.enum_type.full_name] if f.enum_type else -1)
                  for f in desc.fields]
        wkt = _WKT.get(desc.full_name, 8 if desc.full_name.startswith("google.protobuf.") else 0)
        table.append((desc.full_name, wkt, fields))
    # One name per number: values_by_number holds the canonical one of aliases.
    enum_table = [sorted((n, v.name) for n, v in e.values_by_number.items())
                  for e in enum_order]
    return table, enum_table


@functools.cache
def message_index(full_name: str) -> int:
    """The index of a message type in the schema given to the extension."""
    return next(i for i, (name, _, _) in enumerate(_schema()[0]) if name == full_name)


# Frame columns whose values the C code reads per flow; every other column is the shape's.
# `summary` is per flow for L7 flows only (as in both reference decoders).
PER_ROW = frozenset({
    "time", "uuid", "src_ip", "dst_ip", "src_port", "dst_port", "trace_id", "summary",
    "l7_type", "l7_protocol", "http_method", "http_url", "http_code", "http_protocol",
    "http_headers", "dns_query", "dns_rcode", "dns_qtypes", "dns_ips", "latency_ns",
})
# The columns the renderer prints, in the order Splitter.set_view takes them.
_VIEW = ("node", "verdict", "event", "traffic_direction", "policies", "protocol", "summary",
         "auth_type", "src_namespace", "src_pod", "src_service", "src_names", "src_identity",
         "dst_namespace", "dst_pod", "dst_service", "dst_names", "dst_identity", "is_reply",
         "ip_trace_id")
# The shape columns a relay stream counts (RelayStats).
_COUNTED = ("verdict", "drop_reason")
_RENDER_FORMATS = {"compact": 0, "dict": 1, "table": 2}


def _values(column: Any, size: int) -> list[Any]:
    """A batch column (Arrow array, list, or None for all NA) as Python values."""
    if column is None:
        return [None] * size
    if isinstance(column, list):
        return column
    return list(column.to_pylist())


# The frame columns shapes give (per-row values come from the C code), as (name, dtype); the
# shape's summary serves the flows that are not L7.
_SHAPE_COLUMNS = tuple([*(c for c in COLUMNS if c.name not in PER_ROW),
                        Column("shape_summary", "string", "")])
_STRING_SHAPE_COLUMNS = frozenset(c.name for c in _SHAPE_COLUMNS
                                  if c.dtype in ("category", "string"))
_NUMPY = {"boolean": "bool", "UInt64": "uint64", "Int16": "int64", "Int32": "int64",
          "Int64": "int64", "UInt16": "int64", "UInt32": "int64"}


def _grown(array: Any, size: int, dtype: Any, fill: Any) -> Any:
    """`array` (or a new one) with room for `size` items, grown by half at least."""
    if array is not None and len(array) >= size:
        return array
    grown = np.full(max(size, 0 if array is None else len(array) * 3 // 2, 64), fill, dtype)
    if array is not None:
        grown[:len(array)] = array
    return grown


def _from_buffers(spec: tuple[str, Any, Any, bytes], size: int) -> Any:
    kind, validity, offsets, data = spec
    valid = None if validity is None else pa.py_buffer(validity)
    if kind == "string":
        return pa.Array.from_buffers(pa.string(), size,
                                     [valid, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pa.Array.from_buffers(getattr(pa, kind)(), size, [valid, pa.py_buffer(data)])


class Shapes:
    """What a `_native.Splitter`'s shapes hold, learnt from the reference decoders: for the
    protobuf splitter, at once, the shape columns the renderer prints (kept in C) and those the
    stream counts (`counted`); and the value of every frame column, decoded from a flow of the
    shape when a frame first needs it."""

    def __init__(self, json: bool = False) -> None:
        module = native(proto=not json)
        assert module is not None
        self.splitter = module.Splitter(json=json)
        self.generation = self.splitter.generation
        self._forget()

    def _forget(self) -> None:
        self.counted: list[tuple[Any, ...] | None] = []  # per shape, in _COUNTED order
        self.known: list[bool] = []
        # Per shape column, the value of each shape known: numbers as data and NA mask, strings
        # as codes (-1 for NA) into the column's distinct values.
        self.data: dict[str, Any] = {}
        self.mask: dict[str, Any] = {}
        self.codes: dict[str, Any] = {}
        self.values: dict[str, dict[Any, int]] = {name: {} for name in _STRING_SHAPE_COLUMNS}
        self._dictionaries: dict[str, Any] = {}

    def learn(self, run: Any, of: Callable[[Any], dict[str, Any]] | None) -> bool:
        """Takes the run's new shapes; `of(source)` gives the shape columns of the flow at a
        source (a payload's index). False when the run cannot be used after all."""
        if run.generation != self.generation:  # the splitter started over
            self._forget()
            self.generation = run.generation
        for shape, source in run.new_shapes:
            if shape != len(self.known):
                self.splitter.reset()
                return False
            values = of(source) if of is not None else None
            self.counted.append(None if values is None else tuple(values[c] for c in _COUNTED))
            self.known.append(False)
            if values is not None:
                # A value the renderer does not take leaves the view unset: runs with that
                # shape are rendered by the reference.
                with contextlib.suppress(TypeError, ValueError):
                    self.splitter.set_view(shape, tuple(values[c] for c in _VIEW))
        return True

    def _store(self, shapes: list[int], batch: FlowBatch) -> None:
        """The frame values of these shapes, from the reference's batch of one flow each."""
        top = max(shapes) + 1
        for c in _SHAPE_COLUMNS:
            source = "summary" if c.name == "shape_summary" else c.name
            values = _values(batch.columns.get(source), batch.size)
            if c.name in self.values:
                codes = self.codes[c.name] = _grown(self.codes.get(c.name), top, np.int32, -1)
                known = self.values[c.name]
                for shape, value in zip(shapes, values, strict=True):
                    if value is not None and value not in known:
                        known[value] = len(known)
                        self._dictionaries.pop(c.name, None)
                    codes[shape] = -1 if value is None else known[value]
                continue
            data = self.data[c.name] = _grown(self.data.get(c.name), top, _NUMPY[c.dtype], 0)
            mask = self.mask[c.name] = _grown(self.mask.get(c.name), top, np.bool_, True)
            for shape, value in zip(shapes, values, strict=True):
                mask[shape] = value is None
                data[shape] = 0 if value is None else value
        for shape in shapes:
            self.known[shape] = True

    def _dictionary(self, name: str) -> Any:
        dictionary = self._dictionaries.get(name)
        if dictionary is None:
            dictionary = self._dictionaries[name] = pa.array(list(self.values[name]),
                                                             type=pa.string())
        return dictionary

    def columns(self, run: Any, full: Callable[[list[Any]], FlowBatch]) -> dict[str, Any]:
        """The run's frame columns: its own per-row values, the rest from its shapes (those not
        known yet decoded by `full`, given the sources of one flow of each)."""
        size = run.rows
        if not size:
            return {}
        columns = {name: _from_buffers(spec, size) for name, spec in run.columns().items()}
        shapes, l7 = run.shapes()
        ids = np.frombuffer(shapes, dtype=np.int32)
        uniq, first = np.unique(ids, return_index=True)
        missing = [(shape, row) for shape, row in zip(uniq.tolist(), first.tolist(), strict=True)
                   if not self.known[shape]]
        if missing:
            batch = full([run.source(row) for _, row in missing])
            assert batch.size == len(missing), "the reference decoded another number of flows"
            self._store([shape for shape, _ in missing], batch)
        for c in _SHAPE_COLUMNS:
            if c.name in self.values:  # strings: dictionary-encoded, as the builder wants them
                codes = self.codes[c.name][ids]
                indices = pa.array(codes, mask=codes < 0)
                columns[c.name] = pa.DictionaryArray.from_arrays(indices,
                                                                 self._dictionary(c.name))
            else:
                columns[c.name] = pa.array(self.data[c.name][ids], mask=self.mask[c.name][ids])
        # L7 flows have their own summary; the others their shape's
        shape_summary = columns.pop("shape_summary").cast(pa.string())
        columns["summary"] = pc.if_else(pa.array(np.frombuffer(l7, dtype=np.bool_)),
                                        columns["summary"], shape_summary)
        return columns

    def counts(self, run: Any, column: str) -> dict[str, int] | None:
        """How many of the run's flows have each value of a column of _COUNTED (NA left out);
        None when the shapes' values are not known or the column is not counted."""
        if column not in _COUNTED:
            return None
        at = _COUNTED.index(column)
        counts: dict[str, int] = {}
        for shape, n in run.shape_counts():
            known = self.counted[shape]
            if known is None:
                return None
            value = known[at]
            if value is not None:
                counts[str(value)] = counts.get(str(value), 0) + n
        return counts


class Joined(Sequence[bytes]):
    """Payloads laid end to end in parts (bytes objects), payload j of part k at
    `parts[k][offsets[k][j]:offsets[k][j + 1]]` (as a child receiving them sends them,
    `flowlens.sources.apart`): the splitter reads them in place, without a bytes object per
    payload."""

    __slots__ = ("_ends", "offsets", "parts")

    def __init__(self, parts: Sequence[tuple[bytes, array[int]]]) -> None:
        assert all(o.typecode == "q" and len(o) >= 1 for _, o in parts)
        self.parts = tuple(data for data, _ in parts)
        self.offsets = tuple(offsets for _, offsets in parts)
        self._ends = list(itertools.accumulate(len(o) - 1 for o in self.offsets))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError("no such payload")
        index %= len(self)
        part = bisect.bisect_right(self._ends, index)
        at = index - (self._ends[part - 1] if part else 0)
        offsets = self.offsets[part]
        return self.parts[part][offsets[at]:offsets[at + 1]]


class NativeRun:
    """One decoded run of the fast path: renders hubble's text without a frame, and gives the
    frame's columns when asked (`full` decodes flows by their sources with the reference)."""

    def __init__(self, shapes: Shapes, run: Any, lost_events: list[dict[str, Any]],
                 full: Callable[[list[Any]], FlowBatch]) -> None:
        self.shapes = shapes
        self.run = run
        self.lost_events = lost_events
        self.full = full

    @property
    def rows(self) -> int:
        return int(self.run.rows)

    def batch(self) -> FlowBatch:
        return FlowBatch(columns=self.shapes.columns(self.run, self.full), size=self.rows,
                         lost_events=self.lost_events)

    def counts(self, column: str) -> dict[str, int] | None:
        return self.shapes.counts(self.run, column)

    def render(self, fmt: str, *, time_format: str, node_name: bool, policy_names: bool,
               numeric: bool, separator: bool = False, table: Any = None) -> bytes | None:
        """hubble's `fmt` text of the run (lost events included); None when the reference
        must render it. Table records go to `table` (a `_native.Table`)."""
        lost = [(e["position"], e["time"], e["node"], e["source"], e["cpu"],
                 e["num_events_lost"], e["first"], e["last"]) for e in self.lost_events]
        try:
            out: bytes | None = self.shapes.splitter.render(
                self.run, _RENDER_FORMATS[fmt], H.TIME_FORMATS.index(
                    H.time_format_name(time_format)), node_name, policy_names, numeric, lost,
                separator, table)
        except (TypeError, ValueError, OverflowError):
            return None
        return out
