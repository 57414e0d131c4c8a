"""flowlens against the replay relay over real gRPC on loopback: filters and selections mean the
same live and offline, follow, restarts, --save, lost events, status, nodes and bad input."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson
import pandas as pd
import pytest
from click.testing import CliRunner
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from shared_data import REFERENCE_BIN

import flowlens
from flowlens import filters as F
from flowlens._proto.observer import observer_pb2, observer_pb2_grpc
from flowlens.cli import main
from flowlens.frame import lost_events
from flowlens.relay_server import HEALTH_SERVICE, ReplayData, ReplayRelay, parse_speed
from flowlens.sources.protodict import response_from_dict

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"


@pytest.fixture(scope="module")
def lab() -> pd.DataFrame:
    return flowlens.read(LAB)


@pytest.fixture(scope="module")
def lab_data() -> ReplayData:
    return ReplayData.from_sources(LAB)


@pytest.fixture(scope="module")
def relay(lab_data: ReplayData) -> Iterator[ReplayRelay]:
    with ReplayRelay(lab_data, listen="127.0.0.1:0") as server:
        yield server


@pytest.fixture()
def server(relay: ReplayRelay) -> str:
    return f"127.0.0.1:{relay.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _uuids(df: pd.DataFrame) -> list[str]:
    return df["uuid"].astype(object).tolist()


# --- filters and selections: the same live and offline ------------------------------------

FILTER_CASES: list[dict[str, Any]] = [
    {"verdict": "DROPPED"},
    {"from_pod": "default/frontend"},
    {"to_pod": "default/backend", "not_verdict": "FORWARDED"},
    {"namespace": "kube-system"},
    {"protocol": "udp"},
    {"label": "k8s:app=backend"},
    {"to_port": "8080", "tcp_flags": "SYN"},
    {"http_status": "2+"},
    {"type": "policy-verdict"},
    {"drop_reason_desc": "POLICY_DENIED", "node_name": "kind-worker*"},
    {"ip": "10.244.0.0/16", "not_namespace": "default"},
    {"allowlist": '{"source_label":["k8s:app=frontend"]}{"verdict":["DROPPED"]}'},
]


@pytest.mark.parametrize("kwargs", FILTER_CASES, ids=lambda k: ",".join(k))
def test_filters_select_what_they_select_offline(server: str, lab: pd.DataFrame,
                                                 kwargs: dict[str, Any]) -> None:
    expected = F.select(F.Filters.from_kwargs(**kwargs), lab)
    got = flowlens.read_relay(server, all=True, **kwargs)
    assert len(expected) > 0
    assert _uuids(got) == _uuids(expected)


def test_everything_arrives_as_it_was(server: str, lab: pd.DataFrame) -> None:
    got = flowlens.read_relay(server, all=True)
    pd.testing.assert_frame_equal(got, lab, check_categorical=False)
    pd.testing.assert_frame_equal(lost_events(got), lost_events(lab),
                                  check_categorical=False)


def test_since_until_window(server: str, lab: pd.DataFrame) -> None:
    times = lab["time"]
    since = times.iloc[500].isoformat().replace("+00:00", "Z")
    until = times.iloc[1500].isoformat().replace("+00:00", "Z")
    flt = F.Filters.from_kwargs(since=since, until=until, verdict="FORWARDED")
    expected = lab.iloc[F.selected_rows(flt, lab)]
    got = flowlens.read_relay(server, since=since, until=until, verdict="FORWARDED")
    assert len(expected) > 100
    assert _uuids(got) == _uuids(expected)


def test_first_n_is_the_oldest(server: str, lab: pd.DataFrame) -> None:
    got = flowlens.read_relay(server, first=7, verdict="DROPPED")
    expected = F.select(F.Filters.from_kwargs(first=7, verdict="DROPPED"), lab)
    assert _uuids(got) == _uuids(expected)


def test_last_n_counts_per_node_as_hubble_relay_does(server: str, lab: pd.DataFrame) -> None:
    got = flowlens.read_relay(server, last=5)
    rows = sorted(i for node in lab["node"].cat.categories
                  for i in np.flatnonzero((lab["node"] == node).to_numpy())[-5:])
    assert len(got) == 15
    assert _uuids(got) == lab["uuid"].astype(object).iloc[rows].tolist()


def test_default_is_the_last_20_per_node(server: str) -> None:
    assert len(flowlens.read_relay(server)) == 60


def test_follow_streams_the_replay_as_it_arrives(lab_data: ReplayData, lab: pd.DataFrame
                                                 ) -> None:
    span = (lab["time"].max() - lab["time"].min()).total_seconds()
    with ReplayRelay(lab_data, listen="127.0.0.1:0", speed=span / 1.5) as paced:
        got: list[str] = []
        frames = flowlens.iter_relay(f"127.0.0.1:{paced.port}", follow=True,
                                     since="2000-01-01T00:00:00Z")
        deadline = time.monotonic() + 20
        for df in frames:
            got += _uuids(df)
            if len(got) >= len(lab) or time.monotonic() > deadline:
                break
        frames.close()  # type: ignore[attr-defined]
    assert got == _uuids(lab)


def test_follow_alone_only_shows_new_flows(server: str) -> None:
    # Everything was replayed already: nothing new comes, and the stream stays open.
    channel = grpc.insecure_channel(server)
    call = observer_pb2_grpc.ObserverStub(channel).GetFlows(
        observer_pb2.GetFlowsRequest(follow=True), timeout=1.0)
    kinds = []
    with pytest.raises(grpc.RpcError) as err:
        for response in call:
            kinds.append(response.WhichOneof("response_types"))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert kinds == ["node_status"]
    channel.close()


# --- the CLI against the relay ---------------------------------------------------------------


def _flow_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if " EVENTS LOST: " not in line]


def test_tail_prints_what_tail_on_the_file_prints(server: str) -> None:
    runner = CliRunner()
    args = ["--verdict", "DROPPED", "--since", "2026-07-01T08:10:00Z", "-o", "compact"]
    live = runner.invoke(main, ["tail", "--server", server, *args])
    offline = runner.invoke(main, ["tail", "--input-file", str(LAB), *args])
    assert live.exit_code == 0, live.output
    # Flows are the same; the relay sends the lost-event records of the time window only,
    # where a file keeps all of them.
    assert _flow_lines(live.stdout) == _flow_lines(offline.stdout)
    assert live.stdout.count("\n") > 100


@pytest.mark.parametrize("fmt", ["dict", "table"])
def test_tail_formats_match_the_file_path(server: str, fmt: str) -> None:
    runner = CliRunner()
    # A filter that keeps lost events: the file path filters them, the relay never does.
    args = ["--all", "--not", "--to-pod", "kube-system/", "-o", fmt]
    live = runner.invoke(main, ["tail", "--server", server, *args])
    offline = runner.invoke(main, ["tail", "--input-file", str(LAB), *args])
    assert live.exit_code == 0, live.output
    assert live.stdout == offline.stdout


def test_jsonpb_from_the_relay_is_the_source_byte_for_byte(server: str) -> None:
    result = CliRunner().invoke(main, ["tail", "--server", server, "--all", "-o", "jsonpb"])
    assert result.exit_code == 0
    assert result.stdout == LAB.read_text()


def test_lost_events_are_printed_and_reach_the_summary(server: str) -> None:
    result = CliRunner().invoke(main, ["tail", "--server", server, "--all"])
    assert result.exit_code == 0
    assert result.stdout.count(" EVENTS LOST: ") == 3
    lost = lost_events(flowlens.read(LAB))["num_events_lost"].sum()
    assert f"EVENTS LOST: {lost:,} in 3 records" in result.stderr
    assert "3,230 flows from" in result.stderr


def test_save_keeps_every_flow_readable(server: str, tmp_path: Path, lab: pd.DataFrame) -> None:
    out = tmp_path / "saved.jsonpb"
    result = CliRunner().invoke(main, ["tail", "--server", server, "--all", "--save", str(out),
                                       "-o", "compact"])
    assert result.exit_code == 0
    saved = flowlens.read(out)
    pd.testing.assert_frame_equal(saved, lab, check_categorical=False)
    assert out.read_text() == LAB.read_text()


def test_print_raw_filters_does_not_connect() -> None:
    result = CliRunner().invoke(main, [
        "tail", "--server", "127.0.0.1:1", "--print-raw-filters", "-t", "drop",
        "-n", "kube-system", "--not", "--label", "k8s:k8s-app=kube-dns"])
    assert result.exit_code == 0
    assert result.stdout == (
        "allowlist:\n"
        """    - '{"source_pod":["kube-system/"],"event_type":[{"type":1}]}'\n"""
        """    - '{"destination_pod":["kube-system/"],"event_type":[{"type":1}]}'\n"""
        "denylist:\n"
        """    - '{"source_label":["k8s:k8s-app=kube-dns"]}'\n"""
        """    - '{"destination_label":["k8s:k8s-app=kube-dns"]}'\n""")


def test_relay_down_is_one_line_within_the_timeout() -> None:
    address = f"127.0.0.1:{_free_port()}"
    start = time.monotonic()
    result = CliRunner().invoke(main, ["tail", "--server", address, "--timeout", "2s"])
    assert time.monotonic() - start < 2.5
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert address in lines[0] and "UNAVAILABLE" in lines[0]


def test_unresponsive_address_times_out() -> None:
    # A listening socket that never speaks HTTP/2: the connection attempt hangs.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        start = time.monotonic()
        result = CliRunner().invoke(main, ["tail", "--server", address, "--timeout", "1s"])
        assert time.monotonic() - start < 3
    assert result.exit_code == 1
    assert address in result.stderr and "DEADLINE_EXCEEDED" in result.stderr


def test_malformed_filter_is_rejected_before_connecting() -> None:
    start = time.monotonic()
    result = CliRunner().invoke(main, ["tail", "--server", "10.255.255.1:4245",
                                       "--verdict", "NOPE"])
    assert time.monotonic() - start < 1
    assert result.exit_code == 2
    assert "--verdict" in result.output and "NOPE" in result.output


def test_server_side_rejection_is_a_terminating_error(server: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A request the client would not build (an empty pod name, which hubble's server refuses).
    from flowlens import live

    def bad_request(*args: Any, **kwargs: Any) -> Any:
        request = F.to_request(*args, **kwargs)
        request.whitelist.add(source_pod=[""])
        return request

    monkeypatch.setattr(live, "to_request", bad_request)
    result = CliRunner().invoke(main, ["tail", "--server", server, "--verdict", "DROPPED"])
    assert result.exit_code == 1
    assert server in result.stderr and "INVALID_ARGUMENT" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def _timeless(payloads: list[bytes]) -> list[bytes]:
    """The responses, with the time the relay stamps its node status with when sent cleared."""
    responses = [observer_pb2.GetFlowsResponse.FromString(p) for p in payloads]
    for r in responses:
        if r.HasField("node_status"):
            r.ClearField("time")
    return [r.SerializeToString() for r in responses]


def test_the_lean_receive_gets_what_grpcio_gets(server: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """FlowStream receives past grpcio's per-message Python work (relay._messages): the same
    messages in the same order as grpcio's own iterator, and the same error for a request the
    relay refuses."""
    from flowlens.sources.relay import TESTED_GRPCIO, Connection, _messages, open_channel

    channel = open_channel(Connection(server))
    method = channel.unary_stream(
        "/observer.Observer/GetFlows",
        request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
        response_deserializer=None)
    every = observer_pb2.GetFlowsRequest(number=(1 << 64) - 1, first=True)
    refused = observer_pb2.GetFlowsRequest(number=5)
    refused.whitelist.add(source_pod=[""])
    try:
        theirs = list(method(every))
        with pytest.raises(grpc.RpcError) as their_error:
            list(method(refused))

        # On another grpcio, its iterator receives (its insides may have changed meaning).
        monkeypatch.setattr(grpc, "__version__", "1.999.0")
        assert _timeless(list(_messages(method(every)))) == _timeless(theirs)
        monkeypatch.undo()
        if not grpc.__version__.startswith(TESTED_GRPCIO):
            return  # a grpcio the lean receive does not know: its iterator receives, as above

        def not_grpcio(self: Any) -> Any:
            raise AssertionError("grpcio's iterator received")

        monkeypatch.setattr(grpc._channel._SingleThreadedRendezvous, "_next", not_grpcio)
        ours = list(_messages(method(every)))
        with pytest.raises(grpc.RpcError) as our_error:
            list(_messages(method(refused)))
    finally:
        channel.close()
    assert len(theirs) > 1000 and _timeless(ours) == _timeless(theirs)
    assert our_error.value.code() == their_error.value.code() == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert our_error.value.details() == their_error.value.details()


def test_status_prints_what_hubble_status_prints(server: str) -> None:
    result = CliRunner().invoke(main, ["status", "--server", server])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Healthcheck (via {server}): Ok"  # the relay's gRPC health check
    assert lines[1] == "Current/Max Flows: 3,230/3,230 (100.00%)"
    assert lines[2].startswith("Flows/s: ")
    assert lines[3] == "Connected Nodes: 3/3"
    if REFERENCE_BIN is not None:
        theirs = subprocess.run([str(REFERENCE_BIN / "hubble"), "status", "--server", server],
                                capture_output=True, text=True, timeout=60).stdout.splitlines()
        assert [line for line in theirs if not line.startswith("Flows/s: ")] == \
            [line for line in lines if not line.startswith("Flows/s: ")]
    as_json = orjson.loads(CliRunner().invoke(main, ["status", "--server", server,
                                                     "-o", "json"]).stdout)
    assert as_json["num_flows"] == "3230" and as_json["num_connected_nodes"] == 3
    for fmt in ("dict", "table", "tab", "jsonpb"):  # hubble status's other formats
        result = CliRunner().invoke(main, ["status", "--server", server, "-o", fmt])
        assert result.exit_code == 0, result.output
        assert ("3,230" if fmt != "jsonpb" else '"num_flows":"3230"') in result.stdout
        if REFERENCE_BIN is not None:
            theirs = subprocess.run([str(REFERENCE_BIN / "hubble"), "status", "--server",
                                     server, "-o", fmt], capture_output=True, text=True,
                                    timeout=60).stdout
            assert _timeless_status(result.stdout) == _timeless_status(theirs), fmt


def _timeless_status(text: str) -> list[list[str]]:
    """A status's cells without the uptime and the rate (they change while it is asked)."""
    if text.startswith("{"):
        return [sorted(k for k in orjson.loads(text) if k not in ("uptime_ns", "flows_rate"))]
    if ": " in text:
        return [line.split(": ") for line in text.splitlines()
                if not line.lstrip().startswith(("UPTIME", "FLOWS PER SECOND"))]
    rows = [re.split(r" {3,}", line) for line in text.splitlines()]
    return [[c for i, c in enumerate(row) if i not in (3, 4)] for row in rows]


def test_status_of_a_relay_that_is_not_healthy(tmp_path: Path) -> None:
    """As hubble status: the health check's answer, then one line on stderr, exit status 1."""
    checked = health.HealthServicer()
    checked.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(checked, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = CliRunner().invoke(main, ["status", "--server", f"127.0.0.1:{port}"])
    finally:
        server.stop(None)
    assert result.exit_code == 1
    assert result.stdout == f"Healthcheck (via 127.0.0.1:{port}): Unavailable: NOT_SERVING\n"
    assert result.stderr == f"flowlens: error: relay 127.0.0.1:{port}: not healthy (NOT_SERVING)\n"


def test_nodes_lists_every_node(server: str, lab: pd.DataFrame) -> None:
    result = CliRunner().invoke(main, ["nodes", "--server", server])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == sorted(lab["node"].cat.categories)
    assert all("NODE_CONNECTED" in line for line in result.stdout.splitlines()[1:])


def test_namespaces_health_and_version_header(server: str, lab: pd.DataFrame) -> None:
    channel = grpc.insecure_channel(server)
    stub = observer_pb2_grpc.ObserverStub(channel)
    namespaces, call = stub.GetNamespaces.with_call(observer_pb2.GetNamespacesRequest(),
                                                    timeout=5)
    names = {n.namespace for n in namespaces.namespaces}
    expected = set(lab["src_namespace"].dropna()) | set(lab["dst_namespace"].dropna())
    assert names == expected
    assert ("hubble-relay-version", "1.19.4") in call.initial_metadata()
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    channel.close()


def test_node_unavailable_is_shown_on_stderr(tmp_path: Path) -> None:
    status = {"node_status": {"state_change": "NODE_UNAVAILABLE", "node_names": ["kind-worker"]},
              "node_name": "relay", "time": "2026-07-01T08:00:00Z"}
    source = tmp_path / "with-status.jsonpb"
    head = b"".join(LAB.read_bytes().splitlines(keepends=True)[:100])
    source.write_bytes(orjson.dumps(status) + b"\n" + head)
    with ReplayRelay(ReplayData.from_sources(source), listen="127.0.0.1:0") as r:
        result = CliRunner().invoke(main, ["tail", "--server", f"127.0.0.1:{r.port}"])
    assert result.exit_code == 0
    assert "Jul  1 08:00:00.000 [relay]: 1 nodes are unavailable: kind-worker\n" \
        in result.stderr
    assert "nodes are unavailable" not in result.stdout


def test_speed_values() -> None:
    assert parse_speed("max") is None
    assert parse_speed("realtime") == 1.0
    assert parse_speed("60") == 60.0
    with pytest.raises(flowlens.UsageError):
        parse_speed("fast")


# --- a relay that restarts mid-stream -------------------------------------------------------


def _wait_for_lines(path: Path, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = path.read_bytes().count(b"\n") if path.exists() else 0
        if count >= n:
            return count
        time.sleep(0.05)
    return count


def test_restart_mid_stream_loses_and_repeats_nothing(lab_data: ReplayData, lab: pd.DataFrame,
                                                      tmp_path: Path) -> None:
    port = _free_port()
    listen = f"127.0.0.1:{port}"
    span = (lab["time"].max() - lab["time"].min()).total_seconds()
    saved = tmp_path / "saved.jsonpb"
    total = len(lab_data.payloads) + len(lab_data.lost)
    # Slow enough that the stream is mid-way when the relay stops, even on a loaded machine.
    first = ReplayRelay(lab_data, listen=listen, speed=span / 8).start()
    env = {**os.environ, "HUBBLE_SERVER": listen}
    tail = subprocess.Popen(
        [sys.executable, "-m", "flowlens", "tail", "-f", "--since", "2000-01-01T00:00:00Z",
         "--save", str(saved), "-o", "jsonpb"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        assert _wait_for_lines(saved, 300, 15) >= 300
        first.stop()  # mid-stream: the replay is far from done
        middle = _wait_for_lines(saved, total, 0.5)
        assert middle < total
        second = ReplayRelay(lab_data, listen=listen).start()  # everything at once
        try:
            assert _wait_for_lines(saved, total, 20) == total
            time.sleep(0.3)  # nothing more (no repeats) may come
        finally:
            tail.send_signal(signal.SIGINT)
            _, err = tail.communicate(timeout=10)
            second.stop()
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 0, err
    summary = err.decode().splitlines()
    assert any("reconnecting" in line for line in summary)
    assert summary[-1].startswith("flowlens: 3,230 flows from")
    assert saved.read_text() == LAB.read_text()
    again = flowlens.read(saved)
    assert _uuids(again) == _uuids(lab)


def test_stream_api_counts_reconnects(lab_data: ReplayData) -> None:
    from flowlens.live import relay_stream
    from flowlens.sources.relay import Connection, RetryPolicy

    port = _free_port()
    server = ReplayRelay(lab_data, listen=f"127.0.0.1:{port}").start()
    stream = relay_stream(Connection(f"127.0.0.1:{port}"),
                          F.Filters.from_kwargs(follow=True, since="2000-01-01T00:00:00Z"))
    stream.retry = RetryPolicy(initial=0.05, maximum=0.2)
    flows = 0
    restarted = False
    deadline = time.monotonic() + 20
    for decoded in stream:
        flows += decoded.batch.size
        if (restarted and stream.stats.duplicates) or time.monotonic() > deadline:
            break
        if flows >= len(lab_data.payloads) and not restarted:
            server.stop()
            server = ReplayRelay(lab_data, listen=f"127.0.0.1:{port}").start()
            restarted = True
    server.stop()
    assert flows == len(lab_data.payloads)
    assert stream.stats.reconnects >= 1
    assert stream.stats.duplicates >= 1
    assert np.isclose(stream.stats.flows, len(lab_data.payloads))


def test_responses_built_from_dicts_round_trip() -> None:
    line = LAB.read_text().splitlines()[0]
    message = response_from_dict(orjson.loads(line))
    assert message.flow.uuid
    assert observer_pb2.GetFlowsResponse.FromString(message.SerializeToString()) == message


def test_the_relay_command_serves_through_its_asyncio_server() -> None:
    """`flowlens relay` runs grpc's asyncio server (the fixture above, the threaded one):
    the same bytes come out of it, and it stops cleanly on SIGINT."""
    listen = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "flowlens", "relay", str(LAB), "--listen",
                             listen], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert "flowlens: serving 3,230 flows" in proc.stderr.readline()
        result = CliRunner().invoke(main, ["tail", "--server", listen, "--all", "-o", "jsonpb"])
        assert result.exit_code == 0, result.output
        assert result.stdout == LAB.read_text()
        dropped = CliRunner().invoke(main, ["tail", "--server", listen, "--verdict", "DROPPED",
                                            "--first", "5", "-o", "jsonpb"])
        assert [orjson.loads(line)["flow"]["verdict"] for line in dropped.stdout.splitlines()] \
            == ["DROPPED"] * 5
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0


# hubble observe v1.19.4's default mask for its text formats (spec §3.1).
HUBBLE_TEXT_MASK = ["time", "verdict", "ethernet", "IP", "l4", "source.identity",
                    "source.namespace", "source.pod_name", "destination.identity",
                    "destination.namespace", "destination.pod_name", "Type", "node_name", "l7",
                    "event_type", "source_service", "destination_service", "is_reply",
                    "Summary", "ip_trace_id"]


def test_field_mask_keeps_only_the_masked_paths(server: str) -> None:
    channel = grpc.insecure_channel(server)
    stub = observer_pb2_grpc.ObserverStub(channel)
    request = observer_pb2.GetFlowsRequest(
        number=50, first=True, field_mask=field_mask_pb2.FieldMask(paths=HUBBLE_TEXT_MASK))
    flows = [r.flow for r in stub.GetFlows(request, timeout=10) if r.HasField("flow")]
    full = [r.flow for r in stub.GetFlows(observer_pb2.GetFlowsRequest(number=50, first=True),
                                          timeout=10) if r.HasField("flow")]
    assert len(flows) == len(full) == 50
    for masked, whole in zip(flows, full, strict=True):
        assert masked.time == whole.time and masked.verdict == whole.verdict
        assert masked.source.pod_name == whole.source.pod_name
        assert masked.source.identity == whole.source.identity
        assert not masked.source.labels and not masked.uuid and not masked.traffic_direction
        assert masked.Summary == whole.Summary and masked.l4 == whole.l4
    assert any(w.source.labels for w in full) and any(w.uuid for w in full)

    bad = observer_pb2.GetFlowsRequest(number=1, field_mask=field_mask_pb2.FieldMask(
        paths=["source.no_such_field"]))
    with pytest.raises(grpc.RpcError) as err:
        list(stub.GetFlows(bad, timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "source.no_such_field" in (err.value.details() or "")
    channel.close()
