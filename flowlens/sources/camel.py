"""Accept lowerCamelCase jsonpb keys (protojson's default names) by mapping them to proto names."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _json_to_proto() -> dict[str, str]:
    from flowlens._proto.flow import flow_pb2
    from flowlens._proto.observer import observer_pb2
    from flowlens._proto.relay import relay_pb2

    mapping: dict[str, str] = {}
    seen: set[str] = set()
    todo = [m for pb in (flow_pb2, observer_pb2, relay_pb2)
            for m in pb.DESCRIPTOR.message_types_by_name.values()]
    while todo:
        msg = todo.pop()
        if msg.full_name in seen:
            continue
        seen.add(msg.full_name)
        todo.extend(msg.nested_types)
        for fd in msg.fields:
            if fd.json_name != fd.name:
                mapping[fd.json_name] = fd.name
            if fd.message_type is not None:
                todo.append(fd.message_type)
    return mapping


def to_proto_names(value: Any) -> Any:
    """A copy of a decoded jsonpb value with every lowerCamelCase key renamed to its proto name."""
    if isinstance(value, dict):
        names = _json_to_proto()
        return {names.get(k, k): to_proto_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_proto_names(v) for v in value]
    return value
