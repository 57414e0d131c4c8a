"""Accept lowerCamelCase jsonpb keys (protojson's default names) by mapping them to proto names,
message by message (one global table would be wrong: `ipVersion` is a proto name in `IP` and
the JSON name of FlowFilter's `ip_version`); and enum numbers, which protojson takes for names
as hubble does, as names."""

from __future__ import annotations

from functools import cache
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor


@cache
def _response() -> Descriptor:
    from flowlens._proto.observer import observer_pb2

    descriptor = cast(Descriptor, observer_pb2.GetFlowsResponse.DESCRIPTOR)
    return descriptor


@cache
def _fields(msg: Descriptor) -> dict[str, FieldDescriptor]:
    """Each field of a message by its proto name and by its JSON name."""
    out = {fd.json_name: fd for fd in msg.fields}
    out.update({fd.name: fd for fd in msg.fields})
    return out


def _enum_name(enum: EnumDescriptor, item: Any) -> Any:
    """An enum given by number as its name; an unknown number as its digits (as the protobuf
    decoder names it in the frame)."""
    if not isinstance(item, int) or isinstance(item, bool):
        return item
    value = enum.values_by_number.get(item)
    return value.name if value is not None else str(item)


def to_proto_names(value: Any, msg: Descriptor | None = None) -> Any:
    """A copy of a decoded GetFlowsResponse (or, with `msg`, any message) with proto names
    and enum names. Unknown keys are kept as they are."""
    msg = msg or _response()
    if not isinstance(value, dict):
        return value
    fields = _fields(msg)
    out: dict[str, Any] = {}
    for key, item in value.items():
        fd = fields.get(key)
        if fd is None:
            out[key] = item
            continue
        if fd.enum_type is not None:
            enum = fd.enum_type
            out[fd.name] = [_enum_name(enum, v) for v in item] if isinstance(item, list) \
                else _enum_name(enum, item)
            continue
        sub = fd.message_type
        if sub is None or sub.full_name.startswith("google.protobuf."):
            out[fd.name] = item
        elif isinstance(item, list):
            out[fd.name] = [to_proto_names(v, sub) for v in item]
        else:
            out[fd.name] = to_proto_names(item, sub)
    return out


def flow_to_proto_names(value: Any) -> Any:
    from flowlens._proto.flow import flow_pb2

    descriptor = cast(Descriptor, flow_pb2.Flow.DESCRIPTOR)
    return to_proto_names(value, descriptor)


def lost_event_to_proto_names(value: Any) -> Any:
    from flowlens._proto.flow import flow_pb2

    descriptor = cast(Descriptor, flow_pb2.LostEvent.DESCRIPTOR)
    return to_proto_names(value, descriptor)
