"""The project's .proto files are Hubble's API: same names, numbers and declaration order.

Real hubble jsonpb output must parse strictly (no unknown field tolerated), and the generated
modules committed under flowlens/_proto must be exactly what scripts/gen_protos.py produces.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from shared_data import SHARED

from flowlens._proto.flow import flow_pb2
from flowlens._proto.observer import observer_pb2, observer_pb2_grpc
from flowlens._proto.peer import peer_pb2
from flowlens._proto.relay import relay_pb2

REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "flowlens" / "_proto"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_committed_generated_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    fresh, committed = _tree(out), _tree(GENERATED)
    assert sorted(fresh) == sorted(committed), "generated file set differs: rerun gen_protos.py"
    differing = [name for name in fresh if fresh[name] != committed[name]]
    assert differing == [], f"stale generated files (rerun scripts/gen_protos.py): {differing}"


def test_generated_package_documents_its_generator() -> None:
    init = (GENERATED / "__init__.py").read_text()
    assert "scripts/gen_protos.py" in init
    assert "grpcio-tools==" in init


def _jsonpb_files() -> list[Path]:
    files = sorted((SHARED / "real-flows" / "hubble-otel").glob("*.json"))
    files += sorted((SHARED / "reference-renderings").glob("*.jsonl"))
    return files


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line


JSONPB_FILES = _jsonpb_files()


def test_fixture_files_are_present() -> None:
    names = {p.name for p in JSONPB_FILES}
    assert "coverage.hubble-jsonpb.jsonl" in names
    assert "basic-sample-10-flows.json" in names
    assert len(JSONPB_FILES) >= 13


@pytest.mark.parametrize("path", JSONPB_FILES, ids=lambda p: p.name)
def test_every_hubble_jsonpb_line_parses_strictly(path: Path) -> None:
    count = 0
    for lineno, line in enumerate(_lines(path), 1):
        msg = observer_pb2.GetFlowsResponse()
        try:
            json_format.Parse(line, msg)  # strict: an unknown field name raises
        except json_format.ParseError as exc:  # pragma: no cover - message for the failure
            pytest.fail(f"{path.name}:{lineno}: {exc}")
        assert msg.WhichOneof("response_types") in {"flow", "lost_events", "node_status"}
        count += 1
    assert count > 0


@pytest.mark.parametrize("path", JSONPB_FILES, ids=lambda p: p.name)
def test_binary_round_trip_keeps_equality(path: Path) -> None:
    for line in _lines(path):
        msg = json_format.Parse(line, observer_pb2.GetFlowsResponse())
        again = observer_pb2.GetFlowsResponse.FromString(msg.SerializeToString())
        assert again == msg
        # and through JSON again, as hubble --input-file would read our output
        assert json_format.Parse(json_format.MessageToJson(again), type(msg)()) == msg


def _number(message: type, field: str) -> int:
    return int(message.DESCRIPTOR.fields_by_name[field].number)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        (flow_pb2.Flow, "Summary", 100000),
        (flow_pb2.Flow, "is_reply", 26),
        (flow_pb2.Flow, "reply", 16),
        (flow_pb2.Flow, "drop_reason", 3),
        (flow_pb2.Flow, "emitter", 41),
        (flow_pb2.Flow, "ip_trace_id", 40),
        (flow_pb2.Flow, "tunnel", 39),
        (flow_pb2.Flow, "extensions", 150000),
        (flow_pb2.Flow, "policy_log", 21006),
        (flow_pb2.Flow, "aggregate", 21007),
        (flow_pb2.FlowFilter, "drop_reason_desc", 33),
        (flow_pb2.FlowFilter, "uuid", 29),
        (flow_pb2.FlowFilter, "encrypted", 40),
        (flow_pb2.FlowFilter, "experimental", 999),
        (flow_pb2.FlowFilter.Experimental, "cel_expression", 1),
        (flow_pb2.IP, "source_xlated", 5),
        (flow_pb2.Endpoint, "cluster_name", 7),
        (flow_pb2.Layer7, "dns", 100),
        (flow_pb2.LostEvent, "cpu", 3),
        (observer_pb2.GetFlowsResponse, "lost_events", 3),
        (observer_pb2.GetFlowsResponse, "node_name", 1000),
        (observer_pb2.GetFlowsRequest, "field_mask", 10),
        (observer_pb2.GetFlowsRequest, "extensions", 150000),
        (observer_pb2.ServerStatusResponse, "flows_rate", 9),
        (observer_pb2.ExportEvent, "debug_event", 5),
        (relay_pb2.NodeStatusEvent, "node_names", 2),
        (peer_pb2.ChangeNotification, "tls", 4),
    ],
)
def test_field_numbers_match_the_spec(message: type, field: str, number: int) -> None:
    assert _number(message, field) == number


def test_flow_fields_are_declared_in_hubble_order() -> None:
    # Spec §2.1: declaration order is hubble's jsonpb key order.
    expected = [
        "time",
        "uuid",
        "emitter",
        "verdict",
        "drop_reason",
        "auth_type",
        "ethernet",
        "IP",
        "l4",
        "tunnel",
        "source",
        "destination",
        "Type",
        "node_name",
        "node_labels",
        "source_names",
        "destination_names",
        "l7",
        "reply",
        "event_type",
        "source_service",
        "destination_service",
        "traffic_direction",
        "policy_match_type",
        "trace_observation_point",
        "trace_reason",
        "file",
        "ip_trace_id",
        "drop_reason_desc",
        "is_reply",
        "debug_capture_point",
        "interface",
        "proxy_port",
        "trace_context",
        "sock_xlate_point",
        "socket_cookie",
        "cgroup_id",
        "Summary",
        "extensions",
        "egress_allowed_by",
        "ingress_allowed_by",
        "egress_denied_by",
        "ingress_denied_by",
        "policy_log",
        "aggregate",
    ]
    assert [f.name for f in flow_pb2.Flow.DESCRIPTOR.fields] == expected


def test_get_flows_response_declares_the_oneof_first() -> None:
    fields = observer_pb2.GetFlowsResponse.DESCRIPTOR.fields
    assert [f.name for f in fields] == ["flow", "node_status", "lost_events", "node_name", "time"]
    oneof = observer_pb2.GetFlowsResponse.DESCRIPTOR.oneofs_by_name["response_types"]
    assert [f.name for f in oneof.fields] == ["flow", "node_status", "lost_events"]


def test_enum_values_spot_checks() -> None:
    assert flow_pb2.TraceObservationPoint.Value("TO_ENDPOINT") == 101
    assert flow_pb2.EventType.Value("EventSample") == 9
    assert flow_pb2.DropReason.Value("DROP_PUNT_PROXY") == 205
    assert flow_pb2.DropReason.Value("CT_MISSING_TCP_ACK_FLAG") == 136
    assert 159 not in flow_pb2.DropReason.values()
    assert flow_pb2.IPVersion.Value("IPv6") == 2
    assert flow_pb2.Tunnel.Protocol.Value("GENEVE") == 2
    assert relay_pb2.NodeState.Value("NODE_ERROR") == 4
    assert flow_pb2.AgentEventType.Value("SERVICE_DELETED") == 12
    assert flow_pb2.DebugEventType.Value("DBG_LB6_LOOPBACK_SNAT_REV") == 68


def test_observer_service_is_complete() -> None:
    service = observer_pb2.DESCRIPTOR.services_by_name["Observer"]
    streaming = {m.name: m.server_streaming for m in service.methods}
    assert streaming == {
        "GetFlows": True,
        "GetAgentEvents": True,
        "GetDebugEvents": True,
        "GetNodes": False,
        "GetNamespaces": False,
        "ServerStatus": False,
    }
    assert service.full_name == "observer.Observer"
    assert hasattr(observer_pb2_grpc, "ObserverStub")
    assert peer_pb2.DESCRIPTOR.services_by_name["Peer"].methods_by_name["Notify"].server_streaming


def test_observer_reexports_flow_messages_like_import_public() -> None:
    assert observer_pb2.Flow is flow_pb2.Flow
    assert observer_pb2.DESCRIPTOR.public_dependencies[0].name == "flow/flow.proto"
