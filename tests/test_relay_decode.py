"""The live decoder: serialized GetFlowsResponse bytes give the same frame as the same flows
read as jsonpb, and the jsonpb written back from those bytes is hubble's, byte for byte."""

from __future__ import annotations

import itertools
from array import array
from pathlib import Path

import orjson
import pandas as pd
import pytest
from shared_data import SHARED

import flowlens
from flowlens import frame
from flowlens._proto.observer import observer_pb2
from flowlens.frame import lost_events
from flowlens.render.jsonpb import encode_response
from flowlens.render.live import go_duration, node_status_line
from flowlens.sources.native import Joined
from flowlens.sources.proto import NodeStatus, ProtoDecoder, decode_responses, merge_batches
from flowlens.sources.protodict import message_to_dict, response_from_dict

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = [
    ROOT / "samples" / "lab.jsonpb",
    SHARED / "reference-renderings" / "coverage.hubble-jsonpb.jsonl",
    SHARED / "reference-renderings" / "lab-small.hubble-jsonpb.jsonl",
    *sorted((SHARED / "real-flows" / "hubble-otel").glob("*.json")),
]


def _stream(path: Path) -> tuple[list[str], pd.DataFrame]:
    """The capture's lines (GetFlowsResponse jsonpb, flows and lost events in stream order,
    as a relay streams them) and the frame flowlens reads from the file."""
    lines = [line + "\n" for line in path.read_text().splitlines() if line.strip()]
    return lines, flowlens.read(path)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_bytes_give_the_frame_jsonpb_gives(path: Path) -> None:
    lines, expected = _stream(path)
    payloads = [response_from_dict(orjson.loads(line)).SerializeToString() for line in lines]
    got = frame.build(decode_responses(payloads, chunk=97))  # several runs, merged
    pd.testing.assert_frame_equal(got, expected, check_categorical=False)
    pd.testing.assert_frame_equal(lost_events(got), lost_events(expected),
                                  check_categorical=False)


def _joined(payloads: list[bytes], lead: bytes = b"", cut: int = 40) -> Joined:
    """The payloads end to end in parts of `cut` of them, each part opening with `lead`."""
    return Joined([(lead + b"".join(part), array("q", itertools.accumulate(
        map(len, part), initial=len(lead)))) for part in (payloads[i:i + cut]
                                                          for i in range(0, len(payloads), cut))])


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_payloads_end_to_end_decode_as_a_list_of_them(path: Path) -> None:
    """Runs laid end to end in one bytes object (as a receiving child sends them) are split in
    place by the C splitter, into the frame a list of the same payloads gives."""
    lines, _ = _stream(path)
    payloads = [response_from_dict(orjson.loads(line)).SerializeToString() for line in lines]
    status = observer_pb2.GetFlowsResponse(node_name="relay")
    status.node_status.state_change = 2
    payloads.insert(len(payloads) // 2, status.SerializeToString())
    runs = [payloads[i:i + 97] for i in range(0, len(payloads), 97)]
    listed, joined, reference = ProtoDecoder(), ProtoDecoder(), ProtoDecoder(fast=False)
    for run in runs:
        a = listed.decode(run, keep_payloads=True)
        for decoder in (joined, reference):
            b = decoder.decode(_joined(run, b"header"), keep_payloads=True)
            assert (b.native is not None) == (decoder is joined)  # the fast path took it
            assert (b.payloads, b.node_status, b.newest_ns) == (a.payloads, a.node_status,
                                                                 a.newest_ns)
            pd.testing.assert_frame_equal(frame.build(b.batch), frame.build(a.batch),
                                          check_categorical=decoder is joined)
            assert b.counts("verdict") == a.counts("verdict")


def test_offsets_out_of_their_data_are_refused() -> None:
    shapes = ProtoDecoder()._fast
    assert shapes is not None
    data = b"\x00" * 10
    for offsets, error in [(array("q", [0, 11]), ValueError), (array("q", [5, 4]), ValueError),
                           (array("q", [-1, 2]), ValueError), (array("q"), TypeError),
                           (array("i", [0, 1]), TypeError)]:
        with pytest.raises(error):
            shapes.splitter.split((b"", data), (array("q", [0]), offsets))
    for parts, offsets in [((bytearray(data),), (array("q", [0, 1]),)),
                           ((data, data), (array("q", [0, 1]),)), ([data], [array("q", [0])])]:
        with pytest.raises(TypeError):
            shapes.splitter.split(parts, offsets)
    joined = _joined([b"ab", b"", b"c", b"de"], b"xy", cut=3)
    assert len(joined) == 4 and len(joined.parts) == 2
    assert list(joined) == [b"ab", b"", b"c", b"de"] and joined[-1] == b"de"
    assert joined[1:3] == [b"", b"c"]


@pytest.mark.parametrize("path", CAPTURES[:3], ids=lambda p: p.name)
def test_bytes_back_to_hubble_jsonpb_exactly(path: Path) -> None:
    lines, _ = _stream(path)
    for line in lines:
        message = response_from_dict(orjson.loads(line))
        again = observer_pb2.GetFlowsResponse.FromString(message.SerializeToString())
        assert encode_response(message_to_dict(again)) + "\n" == line


def test_runs_keep_payloads_and_node_status_apart() -> None:
    status = observer_pb2.GetFlowsResponse(node_name="relay")
    status.node_status.state_change = 2
    status.node_status.node_names.extend(["kind-worker", "kind-worker2"])
    status.time.FromNanoseconds(1_700_000_000_123_000_000)
    lines, _ = _stream(CAPTURES[0])
    flows = [response_from_dict(orjson.loads(line)).SerializeToString() for line in lines[:50]]
    decoded = ProtoDecoder().decode([status.SerializeToString(), *flows], keep_payloads=True)
    assert decoded.payloads == flows
    assert decoded.batch.size == sum(1 for line in lines[:50] if line.startswith('{"flow"'))
    assert [ns.state for ns in decoded.node_status] == ["NODE_UNAVAILABLE"]
    assert node_status_line(decoded.node_status[0]) == \
        "Nov 14 22:13:20.123 [relay]: 2 nodes are unavailable: kind-worker, kind-worker2\n"


def test_node_status_names_are_cut_as_hubble_cuts_them() -> None:
    names = [f"node-number-{i:02d}" for i in range(6)]
    event = NodeStatus(None, "r", "NODE_ERROR", names, 'boom "x"')
    assert node_status_line(event) == (
        'N/A [r]: Error "boom \\"x\\"" on 6 nodes: node-number-00, node-number-01, '
        "node-number-02 (and 3 more)\n")


def test_empty_runs_merge_to_an_empty_frame() -> None:
    df = frame.build(merge_batches([ProtoDecoder().decode([]).batch]))
    assert len(df) == 0
    assert list(df.columns) == [c.name for c in flowlens.COLUMNS]


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0s"), (301_515_181_665, "5m1.515181665s"), (3_600_000_000_000, "1h0m0s"),
    (1_500_000, "1.5ms"), (999, "999ns"),
])
def test_go_durations(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_status_line_redraws_in_place_and_clears() -> None:
    import io

    from flowlens.render.live import StatusLine, summary_line
    from flowlens.sources.relay import StreamStats

    stats = StreamStats(flows=1500, lost_events=7, lost_records=1,
                        verdicts={"FORWARDED": 1000, "DROPPED": 500},
                        drop_reasons={"POLICY_DENIED": 450, "STALE_OR_UNROUTABLE_IP": 50})
    out = io.StringIO()
    line = StatusLine(out, stats)
    line.update(force=True)
    assert out.getvalue() == ("\r\x1b[K0 flows/s | 1,500 flows | 1,000 forwarded | 500 dropped"
                              " | top drop: POLICY_DENIED | lost: 7")
    line.clear()
    assert out.getvalue().endswith("\r\x1b[K")
    assert summary_line(stats, "relay:4245") == (
        "flowlens: 1,500 flows from relay:4245 (1,000 forwarded, 500 dropped; top drop reason "
        "POLICY_DENIED), EVENTS LOST: 7 in 1 record (the numbers above are incomplete)\n")
    one = StreamStats(flows=1, verdicts={"FORWARDED": 1}, reconnects=1, bad_records=1)
    assert summary_line(one, "relay:4245") == (
        "flowlens: 1 flow from relay:4245 (1 forwarded, 0 dropped), 1 reconnect, 1 record "
        "skipped (unreadable, or values out of range)\n")


def test_status_as_dict_and_table() -> None:
    """hubble status -o dict|table (spec §3.7): N/A for what the server did not send."""
    from google.protobuf import wrappers_pb2

    from flowlens.render.live import server_status_lines

    agent = observer_pb2.ServerStatusResponse(num_flows=2031, max_flows=4095, seen_flows=2348885,
                                              uptime_ns=301515181665, version="cilium v1.10.3")
    assert "".join(server_status_lines(agent, "dict")) == (
        "          NUM FLOWS: 2,031\n"
        "          MAX FLOWS: 4,095\n"
        "         SEEN FLOWS: 2,348,885\n"
        "   FLOWS PER SECOND: N/A\n"
        "             UPTIME: 5m1.515181665s\n"
        "NUM CONNECTED NODES: N/A\n"
        " NUM UNAVAIL. NODES: N/A\n"
        "            VERSION: cilium v1.10.3\n")
    relay = observer_pb2.ServerStatusResponse(
        num_flows=2771, max_flows=8190, seen_flows=2771, uptime_ns=301515181665,
        flows_rate=23.456, version="hubble-relay v1.15.0",
        num_connected_nodes=wrappers_pb2.UInt32Value(value=2),
        num_unavailable_nodes=wrappers_pb2.UInt32Value(value=0))
    assert server_status_lines(relay, "table") == [
        "NUM FLOWS   MAX FLOWS   SEEN FLOWS   FLOWS PER SECOND   UPTIME           "
        "NUM CONNECTED NODES   NUM UNAVAILABLE NODES   VERSION\n",
        "2,771       8,190       2,771        23.46              5m1.515181665s   "
        "2                     0                       hubble-relay v1.15.0\n"]


def test_read_relay_refuses_to_follow() -> None:
    with pytest.raises(ValueError, match="iter_relay"):
        flowlens.read_relay("127.0.0.1:1", follow=True)


# A flow with every field the filters of issue 13 need (clusters, node labels, SNAT, encryption,
# interface, trace context, HTTP headers), and one without any of them.
_FILTER_FIELDS = [
    {"flow": {
        "time": "2026-07-01T08:00:00.5Z", "verdict": "FORWARDED",
        "IP": {"source": "10.0.0.1", "source_xlated": "172.18.0.3", "destination": "1.1.1.1",
               "ipVersion": "IPv4", "encrypted": True},
        "l4": {"TCP": {"source_port": 40000, "destination_port": 80}},
        "source": {"identity": 1234, "cluster_name": "east", "namespace": "default",
                   "pod_name": "client"},
        "destination": {"identity": 2, "cluster_name": "west"},
        "Type": "L7", "node_name": "east/kind-worker",
        "node_labels": ["kubernetes.io/hostname=kind-worker", "zone=a"],
        "l7": {"type": "REQUEST", "http": {
            "method": "GET", "url": "http://x/%2e%2e/a", "protocol": "HTTP/1.1",
            "headers": [{"key": ":authority", "value": "x"}, {"key": "X-Id", "value": "a: b"}]}},
        "event_type": {"type": 129}, "traffic_direction": "EGRESS",
        "interface": {"index": 7, "name": "eth0"},
        "trace_context": {"parent": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}},
        "Summary": "HTTP/1.1 GET http://x/%2e%2e/a"},
     "node_name": "east/kind-worker", "time": "2026-07-01T08:00:00.5Z"},
    {"flow": {"time": "2026-07-01T08:00:01Z", "verdict": "DROPPED", "Type": "L3_L4",
              "interface": {}, "event_type": {"type": 1, "sub_type": 133}},
     "node_name": "kind-worker2", "time": "2026-07-01T08:00:01Z"},
]
_FILTER_COLUMNS = ["src_cluster", "dst_cluster", "node_labels", "src_ip_xlated", "encrypted",
                   "interface", "interface_index", "trace_id", "http_headers"]


def test_filter_fields_decode_alike_from_jsonpb_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "fields.jsonpb"
    path.write_text("".join(orjson.dumps(r).decode() + "\n" for r in _FILTER_FIELDS))
    from_jsonpb = flowlens.read(path)
    payloads = [response_from_dict(r).SerializeToString() for r in _FILTER_FIELDS]
    from_bytes = frame.build(decode_responses(payloads))
    pd.testing.assert_frame_equal(from_bytes, from_jsonpb, check_categorical=False)
    rows = from_jsonpb[_FILTER_COLUMNS].astype(object).where(from_jsonpb[_FILTER_COLUMNS].notna(),
                                                             None).to_dict("records")
    assert rows == [
        {"src_cluster": "east", "dst_cluster": "west",
         "node_labels": "kubernetes.io/hostname=kind-worker,zone=a",
         "src_ip_xlated": "172.18.0.3", "encrypted": True, "interface": "eth0",
         "interface_index": 7, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
         "http_headers": ":authority: x\nX-Id: a: b"},
        {"src_cluster": None, "dst_cluster": None, "node_labels": None, "src_ip_xlated": None,
         "encrypted": None, "interface": None, "interface_index": 0, "trace_id": None,
         "http_headers": None},
    ]


def test_filter_fields_survive_the_frame_back_to_flows(tmp_path: Path) -> None:
    from flowlens.render.records import flow_responses

    path = tmp_path / "fields.jsonpb"
    path.write_text("".join(orjson.dumps(r).decode() + "\n" for r in _FILTER_FIELDS))
    df = flowlens.read(path)
    again = frame.build(decode_responses(
        [response_from_dict(r).SerializeToString() for r in flow_responses(df)]))
    # Rows always get an IP message back (hubble names endpoints only for flows with one), so
    # "no IP header" comes back as "not encrypted".
    expected = df[_FILTER_COLUMNS].assign(encrypted=df["encrypted"].fillna(False))
    pd.testing.assert_frame_equal(again[_FILTER_COLUMNS], expected, check_categorical=False)


# Enums by number, as protojson (and hubble) reads them: known numbers and one newer than the
# enum (hubble writes those as numbers).
_ENUM_NUMBERS = [
    {"flow": {"time": "2024-01-01T00:00:00Z", "verdict": 2, "drop_reason_desc": 133,
              "traffic_direction": 1, "Type": 1, "event_type": {"type": 1},
              "IP": {"source": "10.0.0.1", "destination": "10.0.0.2", "ipVersion": 1},
              "l4": {"TCP": {"source_port": 1, "destination_port": 80}}}},
    {"flow": {"time": "2024-01-01T00:00:01Z", "verdict": 99, "debug_capture_point": 77,
              "auth_type": 1, "Type": 2,
              "l7": {"type": 2, "http": {"code": 200, "method": "GET", "url": "http://a/"}}}},
    {"lost_events": {"source": 1, "num_events_lost": "3"}, "time": "2024-01-01T00:00:02Z"},
]


def test_enum_numbers_decode_alike_from_jsonpb_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "numbers.jsonpb"
    path.write_text("".join(orjson.dumps(r).decode() + "\n" for r in _ENUM_NUMBERS))
    report = flowlens.ReadReport()
    from_jsonpb = flowlens.read(path, report=report)
    assert report.bad_lines == 0
    payloads = [response_from_dict(r).SerializeToString() for r in _ENUM_NUMBERS]
    from_bytes = frame.build(decode_responses(payloads))
    pd.testing.assert_frame_equal(from_bytes, from_jsonpb, check_categorical=False)
    pd.testing.assert_frame_equal(lost_events(from_bytes), lost_events(from_jsonpb),
                                  check_categorical=False)
    assert list(from_jsonpb["verdict"].astype(str)) == ["DROPPED", "99"]


def test_enum_numbers_written_back_as_hubble_writes_them(tmp_path: Path) -> None:
    """`tail -o jsonpb` of the records above prints protojson of the message protobuf reads
    from each (an unknown number stays a number)."""
    from click.testing import CliRunner

    from flowlens.cli import main

    path = tmp_path / "numbers.jsonpb"
    path.write_text("".join(orjson.dumps(r).decode() + "\n" for r in _ENUM_NUMBERS))
    done = CliRunner().invoke(main, ["tail", "--input-file", str(path), "-o", "jsonpb"])
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == [encode_response(message_to_dict(response_from_dict(r)))
                                        for r in _ENUM_NUMBERS]
    assert '"verdict":99' in done.stdout


def test_l7_records_without_a_type_are_labelled_as_hubble_labels_them(tmp_path: Path) -> None:
    """An `l7` record is labelled `<proto>-<type>` even when its type is absent (the zero
    name, `unknown_l7_type`; spec 3.3.5), by both readers."""
    records = [{"flow": {"l7": {"http": {}}}}, {"flow": {"l7": {}}},
               {"flow": {"l7": {"dns": {}}, "event_type": {"type": 4}}}]
    path = tmp_path / "l7.jsonpb"
    path.write_text("".join(orjson.dumps(r).decode() + "\n" for r in records))
    payloads = [response_from_dict(r).SerializeToString() for r in records]
    for df in (flowlens.read(path), frame.build(decode_responses(payloads))):
        assert list(df["event"].astype(str)) == ["http-unknown_l7_type", "l7-unknown_l7_type",
                                                 "dns-unknown_l7_type "]


@pytest.mark.parametrize("fast", [True, False])
def test_lost_events_at_times_a_frame_cannot_hold_are_bad_records(fast: bool) -> None:
    """A lost-event record dated past 2262 (or before 1677) is skipped and named, as a flow
    would be; the frame is built from the rest."""
    from flowlens.sources.proto import ProtoDecoder

    lost = observer_pb2.GetFlowsResponse()
    lost.lost_events.num_events_lost = 3
    lost.time.seconds = 2**40
    flow = response_from_dict({"flow": {"time": "2024-01-01T00:00:00Z", "verdict": "DROPPED"}})
    decoded = ProtoDecoder(fast=fast).decode([lost.SerializeToString(),
                                              flow.SerializeToString()])
    assert decoded.bad == ["lost events: time is outside 1677-09-21 to 2262-04-11"]
    df = frame.build(decoded.batch)
    assert len(df) == 1 and len(lost_events(df)) == 0
