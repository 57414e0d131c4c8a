"""flowlens writes jsonpb lines byte for byte as ``hubble observe -o jsonpb`` does.

The oracle is the real hubble CLI: ``X.hubble-jsonpb.jsonl`` is what hubble v1.19.4 printed for
``X.jsonl``, and the real captures are hubble's own output, so re-encoding must not change them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format, timestamp_pb2
from shared_data import SHARED

from flowlens._proto.flow import flow_pb2
from flowlens._proto.observer import observer_pb2
from flowlens.render.jsonpb import (
    encode_flow,
    encode_message,
    encode_response,
    encode_response_bytes,
)

RENDERINGS = SHARED / "reference-renderings"
REAL_FLOWS = sorted((SHARED / "real-flows" / "hubble-otel").glob("*.json"))


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def _pairs(name: str) -> Iterator[tuple[int, bytes, bytes]]:
    inputs = _lines(RENDERINGS / f"{name}.jsonl")
    expected = _lines(RENDERINGS / f"{name}.hubble-jsonpb.jsonl")
    assert len(inputs) == len(expected) > 0
    for number, (line, want) in enumerate(zip(inputs, expected, strict=True), 1):
        yield number, line, want


def _response(line: bytes | str) -> Any:
    return json_format.Parse(line, observer_pb2.GetFlowsResponse())


@pytest.mark.parametrize("name", ["coverage", "lab-small"])
def test_reference_inputs_encode_exactly_as_hubble_printed_them(name: str) -> None:
    for number, line, want in _pairs(name):
        got = encode_response(orjson.loads(line))
        assert got.encode() == want, f"{name}.jsonl line {number}"
        assert encode_response_bytes(orjson.loads(line)) == want


@pytest.mark.parametrize("name", ["coverage", "lab-small"])
def test_lower_camel_case_input_encodes_identically(name: str) -> None:
    for number, line, want in _pairs(name):
        msg = _response(line)
        camel = json_format.MessageToDict(msg)  # default: json names (sourcePort, isReply …)
        assert encode_response(camel).encode() == want, f"{name}.jsonl line {number}"
        numeric = json_format.MessageToDict(msg, use_integers_for_enums=True)
        assert encode_response(numeric).encode() == want, f"{name}.jsonl line {number} (enums)"


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def test_input_key_order_does_not_matter() -> None:
    rng = random.Random(1234)
    for number, line, want in _pairs("coverage"):
        shuffled = _shuffled(orjson.loads(line), rng)
        assert encode_response(shuffled).encode() == want, f"coverage.jsonl line {number}"


@pytest.mark.parametrize("path", REAL_FLOWS, ids=lambda p: p.name)
def test_real_flows_reencode_to_equal_protos(path: Path) -> None:
    lines = _lines(path)
    assert lines
    for number, line in enumerate(lines, 1):
        got = encode_response(orjson.loads(line))
        assert _response(got) == _response(line), f"{path.name}:{number}"
        # These files are hubble's own jsonpb, so they are already canonical.
        assert got.encode() == line, f"{path.name}:{number}"


def test_matches_protobuf_json_values_for_every_fixture_line() -> None:
    # Independent check of omission, int64-as-string, enum names and timestamp digits.
    files = [*REAL_FLOWS, RENDERINGS / "coverage.jsonl", RENDERINGS / "lab-small.jsonl"]
    for path in files:
        for line in _lines(path):
            want = json_format.MessageToDict(_response(line), preserving_proto_field_name=True)
            assert orjson.loads(encode_response(orjson.loads(line))) == want


# Verbatim output lines from the spec (§3.6, hubble's printer tests).
SPEC_FLOW = (
    '{"flow":{"time":"1970-01-01T00:20:34.567800Z","verdict":"DROPPED","IP":{"source":"1.1.1.1",'
    '"destination":"2.2.2.2"},"l4":{"TCP":{"source_port":31793,"destination_port":8080}},'
    '"source":{"identity":4},"destination":{"identity":12345},"Type":"L3_L4","node_name":"k8s1",'
    '"event_type":{"type":1,"sub_type":133},"is_reply":false,"Summary":"TCP Flags: SYN"}}'
)
SPEC_LOST = (
    '{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"1","cpu":5,'
    '"first":"1970-01-01T00:20:30.567800Z","last":"1970-01-01T00:20:38.567800Z"},'
    '"node_name":"node-name","time":"1970-01-01T00:20:34.567800Z"}'
)
SPEC_DEBUG = (
    '{"debug_event":{"type":"DBG_CT_VERDICT","source":{"ID":690,"identity":1332,'
    '"namespace":"cilium-test","labels":["k8s:io.cilium.k8s.policy.cluster=default",'
    '"k8s:io.cilium.k8s.policy.serviceaccount=default","k8s:io.kubernetes.pod.namespace=cilium-test",'
    '"k8s:name=pod-to-a-denied-cnp"],"pod_name":"pod-to-a-denied-cnp-75cb89dfd-vqhd9"},'
    '"hash":180354257,"arg1":0,"arg2":0,"arg3":0,"message":"CT verdict: New, revnat=0","cpu":1},'
    '"node_name":"k8s1","time":"1970-01-01T00:20:34.567800Z"}'
)
SPEC_STATUS = (
    '{"num_flows":"2031","max_flows":"4095","seen_flows":"2348885","uptime_ns":"301515181665",'
    '"version":"cilium v1.15.0+g4145278","flows_rate":23.456}'
)


@pytest.mark.parametrize("line", [SPEC_FLOW, SPEC_LOST], ids=["flow", "lost_events"])
def test_spec_examples_are_fixed_points(line: str) -> None:
    assert encode_response(orjson.loads(line)) == line
    camel = json_format.MessageToDict(_response(line))
    assert encode_response(camel) == line


def test_spec_examples_of_other_responses() -> None:
    assert encode_message(orjson.loads(SPEC_DEBUG), "observer.GetDebugEventsResponse") == SPEC_DEBUG
    assert encode_message(orjson.loads(SPEC_STATUS), "observer.ServerStatusResponse") == SPEC_STATUS


def test_legacy_bare_flow_is_the_inner_object() -> None:
    inner = orjson.loads(SPEC_FLOW)["flow"]
    assert encode_flow(inner) == orjson.dumps(inner).decode()


def test_legacy_reply_and_drop_reason_are_kept_in_declaration_order() -> None:
    flow = {
        "reply": True,
        "Summary": "x",
        "drop_reason": 133,
        "verdict": 2,
        "drop_reason_desc": 133,
    }
    assert encode_flow(flow) == (
        '{"verdict":"DROPPED","drop_reason":133,"reply":true,'
        '"drop_reason_desc":"POLICY_DENIED","Summary":"x"}'
    )


def test_defaults_are_omitted_but_wrappers_and_set_messages_are_kept() -> None:
    response = {
        "flow": {
            "verdict": "VERDICT_UNKNOWN",
            "drop_reason": 0,
            "uuid": "",
            "source_names": [],
            "reply": False,
            "Type": 0,
            "l7": None,
            "l4": {},
            "is_reply": False,
            "source": {"ID": 0, "identity": "0", "labels": []},
            "trace_observation_point": "UNKNOWN_POINT",
        },
        "node_name": "",
    }
    assert encode_response(response) == '{"flow":{"l4":{},"source":{},"is_reply":false}}'
    lost = {"lost_events": {"cpu": 0, "num_events_lost": 0, "source": 0}}
    assert encode_response(lost) == '{"lost_events":{"cpu":0}}'


def test_enum_numbers_become_names_and_unknown_numbers_stay_numbers() -> None:
    flow = {"verdict": 99, "drop_reason_desc": 159, "traffic_direction": 2, "Type": "L7"}
    assert encode_flow(flow) == (
        '{"verdict":99,"Type":"L7","traffic_direction":"EGRESS","drop_reason_desc":159}'
    )
    # repeated enums keep zero values: every element is printed
    ff = encode_message({"verdict": [0, "DROPPED", 42]}, "flow.FlowFilter")
    assert ff == '{"verdict":["VERDICT_UNKNOWN","DROPPED",42]}'


def test_64_bit_integers_are_decimal_strings() -> None:
    flow = {
        "ip_trace_id": {"trace_id": 1234, "ip_option_type": 136},
        "l7": {"type": 1, "latency_ns": 10},
        "socket_cookie": "18446744073709551615",
        "cgroup_id": "0",
    }
    assert encode_flow(flow) == (
        '{"l7":{"type":"REQUEST","latency_ns":"10"},'
        '"ip_trace_id":{"trace_id":"1234","ip_option_type":136},'
        '"socket_cookie":"18446744073709551615"}'
    )


def test_unknown_fields_are_dropped() -> None:
    line = {"flow": {"verdict": "FORWARDED", "ext_error": "x", "chunkType": 3}, "future": 1}
    assert encode_response(line) == '{"flow":{"verdict":"FORWARDED"}}'


@pytest.mark.parametrize(
    ("given", "printed"),
    [
        ("2024-01-26T09:07:03.396123456Z", "2024-01-26T09:07:03.396123456Z"),
        ("2024-01-26T09:07:03.3961Z", "2024-01-26T09:07:03.396100Z"),
        ("2024-01-26T09:07:03.39Z", "2024-01-26T09:07:03.390Z"),
        ("2024-01-26T09:07:03.5Z", "2024-01-26T09:07:03.500Z"),
        ("2024-01-26T09:07:03.000Z", "2024-01-26T09:07:03Z"),
        ("2024-01-26T09:07:03.100000000Z", "2024-01-26T09:07:03.100Z"),
        ("2024-01-26T09:07:03.000000001Z", "2024-01-26T09:07:03.000000001Z"),
        ("2024-01-26T11:07:03.5+02:00", "2024-01-26T09:07:03.500Z"),
        ("2024-01-01T00:30:00+01:00", "2023-12-31T23:30:00Z"),
        ("2023-12-31T23:30:00.25-01:00", "2024-01-01T00:30:00.250Z"),
    ],
)
def test_timestamps_are_utc_with_0_3_6_or_9_fraction_digits(given: str, printed: str) -> None:
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(given)
    assert ts.ToJsonString() == printed  # protobuf's own formatter agrees
    out = encode_response({"time": given, "flow": {"time": given}})
    assert out == f'{{"flow":{{"time":"{printed}"}},"time":"{printed}"}}'


def test_invalid_timestamp_is_an_error() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        encode_response({"time": "yesterday"})


def test_strings_are_escaped_like_protojson_then_go_html_escape() -> None:
    summary = 'a<b>&c\u2028d\u2029e\x1b[0m\r\n\t\x08\x0c\x00\x1f\x7f"\\ é😀'
    out = encode_flow({"Summary": summary})
    assert out == (
        '{"Summary":"a\\u003cb\\u003e\\u0026c\\u2028d\\u2029e\\u001b[0m\\r\\n\\t\\b\\f'
        '\\u0000\\u001f\x7f\\"\\\\ é😀"}'
    )
    assert json_format.Parse(out, flow_pb2.Flow()).Summary == summary


def test_spec_kafka_fragment_escaping() -> None:
    flow = {
        "l7": {
            "type": "REQUEST",
            "latency_ns": "10",
            "kafka": {
                "api_key": "1234",
                "correlation_id": 1,
                "topic": "my-topic\x1b[30mblack\x1b[0m\x1b\r",
            },
        }
    }
    assert encode_flow(flow) == (
        '{"l7":{"type":"REQUEST","latency_ns":"10","kafka":{"api_key":"1234","correlation_id":1,'
        '"topic":"my-topic\\u001b[30mblack\\u001b[0m\\u001b\\r"}}}'
    )


@pytest.mark.parametrize(
    ("rate", "printed"),
    [
        (23.456, "23.456"),
        (5.0, "5"),
        ("2.5", "2.5"),
        (0.0, None),
        ("NaN", '"NaN"'),
        # protojson's float rule: %e outside [1e-6, 1e21), exponent e+XX / e-X
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (1e20, "100000000000000000000"),
    ],
)
def test_doubles_print_like_protojson(rate: Any, printed: str | None) -> None:
    out = encode_message({"flows_rate": rate}, "observer.ServerStatusResponse")
    assert out == ("{}" if printed is None else f'{{"flows_rate":{printed}}}')


def test_relay_node_status_and_wrapped_zero_counts() -> None:
    status = {"nodeStatus": {"stateChange": 2, "nodeNames": ["a", "b"]}, "nodeName": "relay"}
    assert encode_response(status) == (
        '{"node_status":{"state_change":"NODE_UNAVAILABLE","node_names":["a","b"]},'
        '"node_name":"relay"}'
    )
    counts = {"num_connected_nodes": 0, "num_unavailable_nodes": "3", "unavailable_nodes": ["x"]}
    assert encode_message(counts, "observer.ServerStatusResponse") == (
        '{"num_connected_nodes":0,"num_unavailable_nodes":3,"unavailable_nodes":["x"]}'
    )


def test_any_extensions_keep_type_url_first() -> None:
    url = "type.googleapis.com/flow.Service"
    flow = {"extensions": {"namespace": "ns", "@type": url, "name": "svc"}}
    out = encode_flow(flow)
    assert out == f'{{"extensions":{{"@type":"{url}","name":"svc","namespace":"ns"}}}}'
    assert json_format.Parse(out, flow_pb2.Flow()).extensions.type_url == url
