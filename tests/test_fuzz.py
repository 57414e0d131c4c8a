"""A fuzz pass: random and mutated input to every reader, the policy loader and the relay's
request handling. Each must answer or refuse in its own words (a bad line counted, an
InputError, a PolicyError, INVALID_ARGUMENT), never raise anything else; what is read must build
a frame whose numbers are in range. Examples are bounded so that CI runs it every time."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowlens
from flowlens._proto.flow import flow_pb2
from flowlens._proto.observer import observer_pb2, observer_pb2_grpc
from flowlens.errors import FlowlensError, UsageError
from flowlens.frame import build
from flowlens.policy import PolicyError
from flowlens.policy.model import parse_policies
from flowlens.relay_server import ReplayData, ReplayRelay, _Buffer, _Observer
from flowlens.sources.batch import ReadReport
from flowlens.sources.files import Opened
from flowlens.sources.jsonpb import read_jsonpb
from flowlens.sources.proto import ProtoDecoder
from flowlens.sources.protodict import response_from_dict

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
LINES = LAB.read_text().splitlines()[::97]
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _in_range(frame: Any) -> None:
    """Numbers in the frame are what their columns may hold (nothing wrapped on the way)."""
    for column, low, high in (("src_port", 1, 65535), ("dst_port", 1, 65535),
                              ("event_type", -(1 << 15), (1 << 15) - 1),
                              ("http_code", 0, (1 << 15) - 1)):
        values = frame[column].dropna()
        assert values.empty or (low <= values.min() and values.max() <= high), column


# --- jsonpb: any JSON where a flow's values go ----------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats()
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8)


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from _paths(inner, (*prefix, key))


@st.composite
def _records(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        record = json.loads(draw(st.sampled_from(LINES)))
        for _ in range(draw(st.integers(0, 3))):
            path = draw(st.sampled_from(list(_paths(record))))
            at = record
            for key in path[:-1]:
                at = at[key]
            at[path[-1]] = draw(_JSON)
        lines.append(json.dumps(record, allow_nan=True).encode())
    return b"\n".join(lines) + b"\n"


@FUZZ
@given(_records(), st.booleans())
def test_jsonpb_with_any_value_anywhere(data: bytes, keep_raw: bool) -> None:
    report = ReadReport()
    rows = 0
    for batch in read_jsonpb(Opened("f", io.BufferedReader(io.BytesIO(data)), None), report,
                             batch_size=3, keep_raw=keep_raw):
        frame = build(batch)
        _in_range(frame)
        rows += len(frame) + len(batch.lost_events)
    assert rows + report.bad_lines + len(report.truncated) + report.node_status_seen \
        == data.count(b"\n")


# --- any bytes, any format ------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400) | st.builds(lambda parts: b"\n".join(parts),
                                           st.lists(st.binary(max_size=60), max_size=8)),
       st.sampled_from([None, "jsonpb", "compact", "dict", "table", "parquet"]))
def test_any_bytes_read_or_refused(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                                   fmt: str | None) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "input"
    path.write_bytes(data)
    try:
        frame = flowlens.read(path, input_format=fmt, report=ReadReport())
    except FlowlensError:
        return
    _in_range(frame)


# --- relay input: any protobuf bytes --------------------------------------------------------------

_PAYLOADS = [response_from_dict(json.loads(line)).SerializeToString() for line in LINES]


@st.composite
def _payload(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(_PAYLOADS)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, max(len(base) - 1, 0)))
        base[at:at + 1] = draw(st.binary(min_size=0, max_size=3))
    return bytes(base)


@FUZZ
@given(st.lists(_payload() | st.binary(max_size=80), min_size=1, max_size=8), st.booleans())
def test_relay_input_decodes_or_skips(payloads: list[bytes], fast: bool) -> None:
    parsed = []
    for payload in payloads:
        try:
            observer_pb2.GetFlowsResponse.FromString(payload)
        except Exception:  # protobuf's DecodeError: grpc would not deliver it
            continue
        parsed.append(payload)
    decoded = ProtoDecoder(fast=fast).decode(parsed)
    frame = build(decoded.batch)
    _in_range(frame)


# --- the policy loader ----------------------------------------------------------------------------

_POLICY = (ROOT / "samples" / "policies" / "backend-allow-ingress-frontend.yaml").read_text()


@FUZZ
@given(st.data())
def test_policy_files_load_or_are_one_policy_error(data: st.DataObject) -> None:
    doc = yaml.safe_load(_POLICY)
    for _ in range(data.draw(st.integers(0, 4))):
        path = data.draw(st.sampled_from(list(_paths(doc))))
        at = doc
        for key in path[:-1]:
            at = at[key]
        at[path[-1]] = data.draw(_JSON)
    text = data.draw(st.sampled_from([
        yaml.safe_dump(doc),
        yaml.safe_dump(doc)[:data.draw(st.integers(0, 400))],
        data.draw(st.text(max_size=200)),
    ]))
    try:
        parse_policies(text, "p.yaml")
    except PolicyError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 1000


# --- the relay's request handling -----------------------------------------------------------------


def _field_values(fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(fd.message_type, depth + 1) if depth < 2 else st.none()
    if fd.type == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=12) | st.sampled_from(
            ["10.0.0.0/33", "default/", "k8s:app=x", "5+", "80", "99999", "(", "a in (b", ""])
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return st.integers(0, 200)
    if fd.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, (1 << 32) - 1)
    if fd.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, (1 << 64) - 1)
    return st.integers(-(1 << 31), (1 << 31) - 1)


def _message(desc: Any, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    fields = {fd.name: (st.lists(_field_values(fd, depth), max_size=3)
                        if fd.is_repeated else _field_values(fd, depth))
              for fd in desc.fields}
    return st.fixed_dictionaries({}, optional=fields)


def _filter(values: dict[str, Any]) -> flow_pb2.FlowFilter:
    message = flow_pb2.FlowFilter()
    _fill(message, values)
    return message


def _fill(message: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        fd = message.DESCRIPTOR.fields_by_name[name]
        if value is None:
            continue
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            items = value if fd.is_repeated else [value]
            for item in items:
                if item is None:
                    continue
                target = getattr(message, name).add() if fd.is_repeated else getattr(message, name)
                _fill(target, item)
        elif fd.is_repeated:
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)


@pytest.fixture(scope="module")
def observer() -> _Observer:
    data = ReplayData.from_sources(LAB)
    return _Observer(_Buffer(data, None), "127.0.0.1:0", None)


@FUZZ
@given(st.lists(_message(flow_pb2.FlowFilter.DESCRIPTOR), max_size=3),
       st.lists(_message(flow_pb2.FlowFilter.DESCRIPTOR), max_size=2),
       st.integers(0, (1 << 64) - 1), st.booleans())
def test_any_request_is_answered_or_invalid_argument(observer: _Observer,
                                                      whitelist: list[dict[str, Any]],
                                                      blacklist: list[dict[str, Any]],
                                                      number: int, first: bool) -> None:
    request = observer_pb2.GetFlowsRequest(number=number, first=first,
                                           whitelist=[_filter(f) for f in whitelist],
                                           blacklist=[_filter(f) for f in blacklist])
    try:
        answers = observer.responses(request)
    except UsageError as exc:  # INVALID_ARGUMENT
        assert "\n" not in str(exc)
        return
    for _ in zip(range(50), answers, strict=False):
        pass


def test_requests_through_a_real_server_never_end_unknown() -> None:
    """A few hostile requests over gRPC: each is answered or INVALID_ARGUMENT."""
    requests = [
        observer_pb2.GetFlowsRequest(whitelist=[flow_pb2.FlowFilter(source_ip=["x/99"])]),
        observer_pb2.GetFlowsRequest(blacklist=[flow_pb2.FlowFilter(verdict=[99])]),
        observer_pb2.GetFlowsRequest(whitelist=[flow_pb2.FlowFilter(
            event_type=[flow_pb2.EventTypeFilter(type=-5, match_sub_type=True, sub_type=9999)])]),
        observer_pb2.GetFlowsRequest(number=(1 << 64) - 1, first=True),
        observer_pb2.GetFlowsRequest(whitelist=[flow_pb2.FlowFilter(http_path=["(?P<"])]),
    ]
    with ReplayRelay(ReplayData.from_sources(LAB), listen="127.0.0.1:0") as relay, \
            grpc.insecure_channel(f"127.0.0.1:{relay.port}") as channel:
        stub = observer_pb2_grpc.ObserverStub(channel)
        for request in requests:
            try:
                list(stub.GetFlows(request, timeout=60))
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, exc)  # type: ignore[attr-defined]
