"""protojson-shaped dicts <-> protobuf messages, faster than `google.protobuf.json_format`.

`json_format` walks every field in Python (about 180 us per flow both ways); a replay relay loads
hundreds of thousands of flows and `tail --save` writes every flow it receives. Here:

- dict -> message: the dict is rewritten into constructor keywords (timestamps split into
  seconds/nanos, wrappers boxed, 64-bit strings made ints) and upb builds the message in C;
- message -> dict: `ListFields()` (set fields only, in C) recursively, with timestamps as
  RFC 3339 text, wrappers unboxed and enums as numbers, the form
  `flowlens.render.jsonpb.encode_response` takes.

Anything unusual (an Any, a field json_format would coerce) falls back to json_format.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from flowlens._proto.observer import observer_pb2

__all__ = ["message_to_dict", "response_from_dict", "timestamp_text"]

_TIMESTAMP = "google.protobuf.Timestamp"
_ANY = "google.protobuf.Any"
_WRAPPERS = frozenset({
    "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
    "google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value", "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
})
_INT64 = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64,
                    FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_FIXED64,
                    FieldDescriptor.TYPE_SFIXED64})
_TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class _Unusual(Exception):
    """A value the fast path does not take: the caller falls back to json_format."""


def _parse_timestamp(text: Any) -> dict[str, int]:
    m = _TS.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise _Unusual
    seconds, fraction, zone = m.groups()
    moment = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    nanos = int((fraction or "")[:9].ljust(9, "0"))
    whole = (moment - _EPOCH) // _ONE_SECOND
    return {"seconds": whole, "nanos": nanos}


_ONE_SECOND = datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc) - _EPOCH


def _scalar_in(fd: FieldDescriptor) -> Callable[[Any], Any] | None:
    if fd.type in _INT64:
        return int
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return lambda v: base64.b64decode(v + "=" * (-len(v) % 4), altchars=b"-_"
                                          if ("-" in v or "_" in v) else None)
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float
    return None  # strings, bools, 32-bit ints and enum names go to the constructor as they are


def _message_in(desc: Descriptor) -> Callable[[Any], Any]:
    if desc.full_name == _TIMESTAMP:
        return _parse_timestamp
    if desc.full_name in _WRAPPERS:
        inner = _scalar_in(desc.fields_by_name["value"])
        return (lambda v: {"value": inner(v)}) if inner else (lambda v: {"value": v})
    if desc.full_name == _ANY or desc.full_name.startswith("google.protobuf."):
        def unusual(v: Any) -> Any:
            raise _Unusual
        return unusual
    return _kwargs_converter(desc)


_IN: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {}


def _kwargs_converter(desc: Descriptor) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function turning a protojson dict of `desc` into constructor keywords."""
    known = _IN.get(desc.full_name)
    if known is not None:
        return known
    plan: dict[str, tuple[str, Callable[[Any], Any] | None, bool]] = {}

    def convert(d: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in d.items():
            step = plan.get(key)
            if step is None:
                raise _Unusual
            name, conv, repeated = step
            if value is None or conv is None:
                out[name] = value
            elif repeated:
                out[name] = [conv(v) for v in value]
            else:
                out[name] = conv(value)
        return out

    _IN[desc.full_name] = convert
    for fd in desc.fields:
        conv = (_message_in(fd.message_type)  # type: ignore[arg-type]
                if fd.type == FieldDescriptor.TYPE_MESSAGE else _scalar_in(fd))
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            raise NotImplementedError("map fields")  # none in Hubble's messages
        step = (fd.name, conv, fd.is_repeated)
        plan[fd.name] = plan[fd.json_name] = step
    return convert


_RESPONSE_KWARGS = _kwargs_converter(
    observer_pb2.GetFlowsResponse.DESCRIPTOR)  # type: ignore[arg-type]


def response_from_dict(d: Mapping[str, Any]) -> observer_pb2.GetFlowsResponse:
    """A GetFlowsResponse from its protojson dict (proto or lowerCamelCase names)."""
    try:
        return observer_pb2.GetFlowsResponse(**_RESPONSE_KWARGS(d))
    except (_Unusual, ValueError, TypeError, KeyError, OverflowError, AttributeError):
        return json_format.ParseDict(dict(d), observer_pb2.GetFlowsResponse(),
                                     ignore_unknown_fields=True)


# --- message -> dict ------------------------------------------------------------------------


def timestamp_text(seconds: int, nanos: int) -> str:
    """RFC 3339 in UTC with 0, 3, 6 or 9 fraction digits, as protojson prints it."""
    text = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        frac = f"{nanos:09d}"
        frac = frac[:3] if frac.endswith("000000") else frac[:6] if frac.endswith("000") else frac
        text += "." + frac
    return text + "Z"


_OUT: dict[str, Callable[[Any], Any]] = {}


def _message_out(desc: Descriptor) -> Callable[[Any], Any]:
    name = desc.full_name
    if name == _TIMESTAMP:
        return lambda m: timestamp_text(m.seconds, m.nanos)
    if name in _WRAPPERS:
        if name == "google.protobuf.BytesValue":
            return lambda m: base64.b64encode(m.value).decode("ascii")
        return lambda m: m.value
    if name.startswith("google.protobuf."):
        return lambda m: json_format.MessageToDict(m, preserving_proto_field_name=True)
    return _dict_converter(desc)


def _dict_converter(desc: Descriptor) -> Callable[[Any], dict[str, Any]]:
    known = _OUT.get(desc.full_name)
    if known is not None:
        return known
    convs: dict[str, Callable[[Any], Any] | None] = {}

    def convert(m: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for fd, value in m.ListFields():
            conv = convs[fd.name]
            if conv is None:
                out[fd.name] = list(value) if fd.is_repeated else value
            elif fd.is_repeated:
                out[fd.name] = [conv(v) for v in value]
            else:
                out[fd.name] = conv(value)
        return out

    _OUT[desc.full_name] = convert
    for fd in desc.fields:
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            convs[fd.name] = _message_out(fd.message_type)  # type: ignore[arg-type]
        elif fd.type == FieldDescriptor.TYPE_BYTES:
            convs[fd.name] = lambda v: base64.b64encode(v).decode("ascii")
        else:
            convs[fd.name] = None
    return convert


def message_to_dict(message: Any) -> dict[str, Any]:
    """A message as a protojson-shaped dict for `encode_response`/`encode_message` (proto
    names; enums as numbers; 64-bit integers as ints; timestamps as text)."""
    return _dict_converter(message.DESCRIPTOR)(message)
