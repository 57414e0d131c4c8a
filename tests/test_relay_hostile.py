"""The replay relay serves everyone: bad records are skipped and named at start, a request is
bounded, malformed filters are INVALID_ARGUMENT, one heavy client does not hold up the others,
a port in use and a garbage certificate are one clear line."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import json_format

import flowlens
from flowlens._proto.flow import flow_pb2
from flowlens._proto.observer import observer_pb2, observer_pb2_grpc
from flowlens.errors import UsageError
from flowlens.relay_server import (
    MAX_REQUEST_FILTERS,
    MAX_REQUEST_VALUES,
    MAX_VALUE_LENGTH,
    ReplayData,
    ReplayRelay,
    ServerTLS,
)

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
ALL = (1 << 64) - 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab_data() -> ReplayData:
    return ReplayData.from_sources(LAB)


@pytest.fixture(scope="module")
def stub(lab_data: ReplayData) -> Iterator[observer_pb2_grpc.ObserverStub]:
    with ReplayRelay(lab_data, listen="127.0.0.1:0") as relay, \
            grpc.insecure_channel(f"127.0.0.1:{relay.port}") as channel:
        yield observer_pb2_grpc.ObserverStub(channel)


def _get_flows(stub: observer_pb2_grpc.ObserverStub,
               request: observer_pb2.GetFlowsRequest) -> list[observer_pb2.GetFlowsResponse]:
    return list(stub.GetFlows(request, timeout=60))


def _status(call: Iterator[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        list(call)
    error: grpc.Call = raised.value  # type: ignore[assignment]
    return error.code(), error.details() or ""


# --- bounded requests, malformed filters --------------------------------------------------------


def test_requests_beyond_the_bounds_are_invalid_argument(
        stub: observer_pb2_grpc.ObserverStub) -> None:
    many = observer_pb2.GetFlowsRequest(number=ALL)
    for i in range(MAX_REQUEST_FILTERS + 1):
        many.whitelist.add(source_pod=[f"default/p{i}"])
    code, details = _status(stub.GetFlows(many, timeout=60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "1,001 filters in one request: at most 1,000 are served"

    values = observer_pb2.GetFlowsRequest(number=ALL)
    values.whitelist.add(source_pod=[f"default/p{i}" for i in range(MAX_REQUEST_VALUES + 1)])
    code, details = _status(stub.GetFlows(values, timeout=60))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "more than 10,000 filter values in one request")

    long = observer_pb2.GetFlowsRequest(number=ALL)
    long.blacklist.add(http_path=["a" * (MAX_VALUE_LENGTH + 1)])
    code, details = _status(stub.GetFlows(long, timeout=60))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "a filter value of 4,097 characters: at most 4,096 are served")


def test_requests_at_the_bounds_are_served(stub: observer_pb2_grpc.ObserverStub,
                                           lab_data: ReplayData) -> None:
    request = observer_pb2.GetFlowsRequest(number=ALL)
    per_filter = MAX_REQUEST_VALUES // MAX_REQUEST_FILTERS
    for i in range(MAX_REQUEST_FILTERS):
        request.blacklist.add(source_pod=[f"nowhere/p{i}-{j}" for j in range(per_filter)])
    flows = [r for r in _get_flows(stub, request) if r.HasField("flow")]
    assert len(flows) == len(lab_data.payloads)


@pytest.mark.parametrize("flt", [
    flow_pb2.FlowFilter(source_ip=["10.0.0.0/33"]),
    flow_pb2.FlowFilter(destination_ip=["not-an-ip"]),
    flow_pb2.FlowFilter(source_port=["99999"]),
    flow_pb2.FlowFilter(destination_port=["-1"]),
    flow_pb2.FlowFilter(http_path=["(unclosed"]),
    flow_pb2.FlowFilter(source_label=["a in (b"]),
    flow_pb2.FlowFilter(http_status_code=["9x9"]),
], ids=["cidr", "ip", "port-99999", "port--1", "regex", "label", "http-status"])
def test_malformed_filters_are_invalid_argument(stub: observer_pb2_grpc.ObserverStub,
                                                flt: flow_pb2.FlowFilter) -> None:
    request = observer_pb2.GetFlowsRequest(number=ALL, whitelist=[flt])
    code, details = _status(stub.GetFlows(request, timeout=60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details and "\n" not in details


# --- one heavy client, everyone else served -------------------------------------------------------


def test_a_heavy_request_does_not_hold_up_other_clients(tmp_path: Path) -> None:
    """`flowlens relay` (the asyncio server) answers ServerStatus while it matches one
    request's 10,000 filter values: answers arrive before the heavy request ends."""
    listen = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "flowlens", "relay", str(LAB), "--listen",
                             listen], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert "serving" in proc.stderr.readline()
        with grpc.insecure_channel(listen) as channel:
            stub = observer_pb2_grpc.ObserverStub(channel)
            heavy = observer_pb2.GetFlowsRequest(number=ALL)
            for i in range(MAX_REQUEST_FILTERS):
                heavy.whitelist.add(source_pod=[f"default/p{i}-{j}" for j in range(9)],
                                    destination_label=[f"app=x{i}"])
            finished = threading.Event()
            answered_before = []
            answers = []

            def run_heavy() -> None:
                answers.extend(stub.GetFlows(heavy, timeout=600))
                finished.set()

            thread = threading.Thread(target=run_heavy)
            thread.start()
            while not finished.is_set() and len(answered_before) < 5:
                stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=60)
                if not finished.is_set():
                    answered_before.append(1)
            thread.join(timeout=600)
            assert len(answered_before) >= 5, "ServerStatus waited for the heavy request"
            assert finished.is_set() and answers  # served, not refused
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- bad records at start ---------------------------------------------------------------------


def test_the_relay_skips_and_names_bad_records_at_start(tmp_path: Path) -> None:
    lines = LAB.read_text().splitlines()
    broken = json.loads(lines[0])
    broken["flow"]["source"]["ID"] = -1  # a field the frame does not read, out of range
    ported = json.loads(lines[1])
    ported["flow"]["l4"] = {"TCP": {"source_port": 99999999999, "destination_port": 80}}
    capture = tmp_path / "capture.jsonpb"
    capture.write_text("\n".join([json.dumps(broken), json.dumps(ported), *lines[2:]]) + "\n")
    listen = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "flowlens", "relay", str(capture),
                             "--listen", listen], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first, second, serving = (proc.stderr.readline() for _ in range(3))
        assert first.startswith(f"flowlens: skipped unreadable line {capture}:1: ")
        assert "ID field" in first
        assert second.startswith(f"flowlens: skipped unreadable line {capture}:2: ")
        assert "99999999999" in second
        total = sum('"flow"' in line for line in lines[2:])
        assert serving.startswith(f"flowlens: serving {total:,} flows")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- ports and certificates -------------------------------------------------------------------


def test_a_port_in_use_is_refused(lab_data: ReplayData) -> None:
    with ReplayRelay(lab_data, listen="127.0.0.1:0") as first:
        listen = f"127.0.0.1:{first.port}"
        with pytest.raises(UsageError, match=f"^cannot listen on {listen}: address in use$"):
            ReplayRelay(lab_data, listen=listen).start()
        run = subprocess.run([sys.executable, "-m", "flowlens", "relay", str(LAB), "--listen",
                              listen], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr == f"flowlens: error: cannot listen on {listen}: address in use\n"


@pytest.mark.parametrize(("listen", "message"), [
    (":99999", "invalid value ':99999' for --listen: want HOST:PORT with a port from 0 to "
               "65535"),
    ("127.0.0.1", "invalid value '127.0.0.1' for --listen: want HOST:PORT with a port from 0 "
                  "to 65535"),
    ("127.0.0.1:-1", "invalid value '127.0.0.1:-1' for --listen: want HOST:PORT with a port "
                     "from 0 to 65535"),
    ("nosuchhost.invalid:4245", "cannot listen on nosuchhost.invalid:4245: "),
])
def test_listen_addresses_are_checked(listen: str, message: str) -> None:
    run = subprocess.run([sys.executable, "-m", "flowlens", "relay", str(LAB), "--listen",
                          listen], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.startswith(f"flowlens: error: {message}")
    assert run.stderr.count("\n") == 1


def _self_signed(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


def test_garbage_or_mismatched_certificates_say_so(tmp_path: Path, lab_data: ReplayData) -> None:
    good = _self_signed(tmp_path / "good.pem")
    other = _self_signed(tmp_path / "other.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    cases = [
        (ServerTLS(str(garbage), str(good.with_suffix(".key"))),
         f"--tls-cert {garbage} and --tls-key {good.with_suffix('.key')}: not a PEM "
         "certificate and its unencrypted key"),
        (ServerTLS(str(good), str(other.with_suffix(".key"))),
         f"--tls-cert {good} and --tls-key {other.with_suffix('.key')}: not a PEM certificate "
         "and its unencrypted key (key values mismatch)"),
        (ServerTLS(str(good), str(good.with_suffix(".key")), str(garbage)),
         f"--tls-client-ca {garbage}: not a PEM CA certificate"),
    ]
    for tls, message in cases:
        with pytest.raises(UsageError) as raised:
            ReplayRelay(lab_data, listen="127.0.0.1:0", tls=tls).start()
        assert str(raised.value).startswith(message)
    run = subprocess.run([sys.executable, "-m", "flowlens", "relay", str(LAB), "--listen",
                          "127.0.0.1:0", "--tls-cert", str(garbage), "--tls-key",
                          str(good.with_suffix(".key"))], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2
    assert run.stderr.startswith(f"flowlens: error: --tls-cert {garbage} and --tls-key")
    assert "Failed to bind" not in run.stderr and run.stderr.count("\n") == 1


@pytest.fixture
def garbling_relay() -> Iterator[int]:
    """A relay whose stream holds a message that is not a GetFlowsResponse between two flows,
    and then ends (a follower reconnects); its port."""
    lines = LAB.read_text().splitlines()[:2]
    good = [json_format.Parse(line, observer_pb2.GetFlowsResponse()).SerializeToString()
            for line in lines]
    corrupt = b"\x0a\xff\xff\xff\x0f"  # field 1, a length far past the end

    def get_flows(request: Any, context: Any) -> Iterator[bytes]:
        yield from (good[0], corrupt, good[1])

    handler = grpc.method_handlers_generic_handler("observer.Observer", {
        "GetFlows": grpc.unary_stream_rpc_method_handler(
            get_flows, request_deserializer=observer_pb2.GetFlowsRequest.FromString)})
    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None)


def test_a_relay_sending_bytes_that_do_not_parse(garbling_relay: int) -> None:
    """`tail` from a relay whose stream holds a message that is not a GetFlowsResponse:
    the flows around it print, it is skipped and counted, no traceback."""
    for native in ("1", "0"):
        run = subprocess.run([sys.executable, "-m", "flowlens", "tail", "--server",
                              f"127.0.0.1:{garbling_relay}", "--all"], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "FLOWLENS_NATIVE": native})
        assert run.returncode == 0, run.stderr
        assert len(run.stdout.splitlines()) == 2
        assert "Traceback" not in run.stderr
        assert "skipped a flow the relay sent: not a GetFlowsResponse" in run.stderr
        assert "1 record skipped (unreadable" in run.stderr


@pytest.mark.parametrize("command", ["record", "tail"])
def test_reconnecting_after_bytes_that_do_not_parse(garbling_relay: int, tmp_path: Path,
                                                    command: str) -> None:
    """A follower reconnects from the newest flow it received, looking back at what it
    received: the message that did not parse is not a flow to resume from (it was a
    traceback); Ctrl-C ends it as usual, the good flows kept."""
    store = tmp_path / "store"
    args = [str(store)] if command == "record" else ["-f", "--all", "-o", "jsonpb"]
    follower = subprocess.Popen([sys.executable, "-m", "flowlens", command, *args, "--server",
                                 f"127.0.0.1:{garbling_relay}"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    assert follower.stderr is not None and follower.stdout is not None
    printed = [follower.stdout.readline() for _ in range(2)] if command == "tail" else []
    seen = []
    for line in follower.stderr:  # the stream ended, then was opened again and ended again
        seen.append(line)
        if sum("reconnecting in" in s for s in seen) >= 2 or "Traceback" in line:
            break
    follower.send_signal(signal.SIGINT)
    out, err = follower.communicate(timeout=60)
    err = "".join(seen) + err
    assert "Traceback" not in err and follower.returncode == 0, err
    assert "skipped" in err  # (named, or counted in tail's summary)
    kept = len(flowlens.read(store)) if command == "record" else len(printed + out.split())
    assert kept == 2
