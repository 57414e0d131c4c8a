"""The live source: `observer.GetFlows` from hubble-relay (or a Hubble server), as batches.

    Connection ──open_channel──► grpc.Channel ──probe (ServerStatus, --timeout)──► FlowStream
                                                                                       │
        serialized GetFlowsResponse bytes, in runs ──► ProtoDecoder ──► DecodedBatch ◄─┘

- The request comes from `flowlens.filters.to_request`, so a filter means the same live and
  offline. Responses are received as bytes (no deserializer) on a channel with
  `SingleThreadedUnaryStream` (about 8x the messages/s of grpcio's default), and decoded in runs.
- A stream survives: retryable errors reopen it with exponential backoff and jitter; the new
  request asks from the last flow seen, and the flows it repeats are dropped (by uuid, or by
  time and content when a flow has none). Terminating errors (bad credentials, bad argument, a
  TLS failure) raise RelayError with one line naming the address and the status.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flowlens import _hubble as H
from flowlens._lazy import lazy
from flowlens.errors import RelayError, UsageError
from flowlens.sources import apart as _apart
from flowlens.sources.batch import SHOWN_BAD_LINES

if TYPE_CHECKING:
    import grpc
    import grpc.experimental as grpc_experimental
    from google.protobuf import message as protobuf_message

    from flowlens._proto.observer import observer_pb2, observer_pb2_grpc
    from flowlens.sources import proto as _proto
    from flowlens.sources.proto import DecodedBatch
else:  # loaded when a stream opens: Connection and the defaults serve the CLI's flags
    grpc, grpc_experimental = lazy("grpc"), lazy("grpc.experimental")
    observer_pb2 = lazy("flowlens._proto.observer.observer_pb2")
    observer_pb2_grpc = lazy("flowlens._proto.observer.observer_pb2_grpc")
    _proto = lazy("flowlens.sources.proto")
    protobuf_message = lazy("google.protobuf.message")

__all__ = [
    "DEFAULT_SERVER",
    "HEALTH_SERVICE",
    "Connection",
    "FlowStream",
    "RetryPolicy",
    "StreamStats",
    "get_nodes",
    "open_channel",
    "server_health",
    "server_status",
]

DEFAULT_SERVER = "localhost:4245"
HEALTH_SERVICE = "hubble.server.Observer"  # the service a relay's gRPC health check names
SERVER_ENV = "HUBBLE_SERVER"
UNARY_TIMEOUT = 12.0  # hubble's --request-timeout default
PATIENCE = 30.0  # seconds a bounded read waits for a relay that went away to come back
RUN_SIZE = 5_000  # flows decoded (and printed) together
_APART_RECORD = 2_000  # flows a receiving child writes together

# Status codes (by name) after which a stream is reopened.
RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "RESOURCE_EXHAUSTED",
                       "ABORTED", "UNKNOWN"})
# Words in a status's details that mean the TLS layer failed: retrying cannot fix that.
_TLS_WORDS = ("ssl", "tls", "handshake", "certificate", "x509")


@dataclass(frozen=True)
class Connection:
    """Where and how to reach the relay; field names follow hubble's flags."""

    server: str = DEFAULT_SERVER
    tls: bool = False
    tls_allow_insecure: bool = False
    tls_ca_cert_files: tuple[str, ...] = ()
    tls_client_cert_file: str | None = None
    tls_client_key_file: str | None = None
    tls_server_name: str | None = None
    timeout: float = 5.0

    def __post_init__(self) -> None:
        # grpc would take host:99999 as port 34463 (modulo 65536).
        port = self.target.rpartition(":")[2]
        if port.isascii() and port.isdigit() and not 1 <= int(port) <= 65535:
            raise UsageError(f"invalid server address {self.server!r}: port {int(port)} is "
                             "outside 1..65535")

    @classmethod
    def from_env(cls, server: str | None = None, **kwargs: Any) -> Connection:
        """--server, else $HUBBLE_SERVER, else localhost:4245."""
        return cls(server=server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER, **kwargs)

    @property
    def target(self) -> str:
        """The address to dial: the server without a tls:// prefix."""
        return self.server.removeprefix("tls://")

    @property
    def uses_tls(self) -> bool:
        return (self.tls or self.server.startswith("tls://") or self.tls_allow_insecure
                or bool(self.tls_ca_cert_files) or self.tls_client_cert_file is not None)


def read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


def check_key_pair(cert_file: str, key_file: str, flags: str) -> None:
    """UsageError naming `flags` unless the files are a PEM certificate and its unencrypted
    key (grpc would log its complaint on stderr and fail each connection)."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # A password callback: an encrypted key fails here instead of prompting.
        context.load_cert_chain(cert_file, key_file, password=lambda: "")
    except ssl.SSLError as exc:
        raise UsageError(f"{flags}: not a PEM certificate and its unencrypted key"
                         f"{_ssl_reason(exc)}") from None


def check_ca(path: str, flag: str) -> None:
    """UsageError naming `flag` and the file unless it holds PEM CA certificates."""
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(path)
    except ssl.SSLError as exc:
        raise UsageError(f"{flag} {path}: not a PEM CA certificate{_ssl_reason(exc)}") from None


def _ssl_reason(exc: Any) -> str:
    return f" ({exc.reason.lower().replace('_', ' ')})" if exc.reason else ""


def _credentials(conn: Connection) -> tuple[grpc.ChannelCredentials, list[tuple[str, Any]]]:
    if (conn.tls_client_cert_file is None) != (conn.tls_client_key_file is None):
        raise UsageError("--tls-client-cert-file and --tls-client-key-file go together")
    roots = b"".join(read_file(p, "CA certificate file") for p in conn.tls_ca_cert_files) or None
    for path in conn.tls_ca_cert_files:
        check_ca(path, "--tls-ca-cert-files")
    key = read_file(conn.tls_client_key_file, "client key file") if conn.tls_client_key_file \
        else None
    chain = read_file(conn.tls_client_cert_file, "client certificate file") \
        if conn.tls_client_cert_file else None
    if conn.tls_client_cert_file and conn.tls_client_key_file:
        check_key_pair(conn.tls_client_cert_file, conn.tls_client_key_file,
                       f"--tls-client-cert-file {conn.tls_client_cert_file} and "
                       f"--tls-client-key-file {conn.tls_client_key_file}")
    options: list[tuple[str, Any]] = []
    name = conn.tls_server_name
    if conn.tls_allow_insecure:
        # grpcio cannot switch verification off: trust whatever certificate the server shows.
        roots, shown_name = _presented_certificate(conn.target, conn.timeout)
        name = name or shown_name
    if name:
        options.append(("grpc.ssl_target_name_override", name))
    return grpc.ssl_channel_credentials(roots, key, chain), options


def _presented_certificate(target: str, timeout: float) -> tuple[bytes, str | None]:
    """The server's certificate (PEM) and a name it is valid for, fetched without checks."""
    host, _, port = target.rpartition(":")
    import socket  # only for --tls-allow-insecure
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock, \
                context.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError) as exc:
        raise RelayError(f"relay {target}: TLS connection failed: {exc}") from None
    if der is None:
        raise RelayError(f"relay {target}: the server showed no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode(), _certificate_name(der)


def _certificate_name(der: bytes) -> str | None:
    try:
        from cryptography import x509
    except ImportError:
        return None
    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns = names.value.get_values_for_type(x509.DNSName)
        if dns:
            return str(dns[0])
    except x509.ExtensionNotFound:
        pass
    common = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(common[0].value) if common else None


def open_channel(conn: Connection) -> grpc.Channel:
    """A channel to the relay: TLS as asked, and the single-threaded streaming option that
    lets Python receive a busy stream at full speed."""
    options: list[tuple[str, Any]] = [
        (grpc_experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        # A deep receive window: the relay keeps sending while a run of flows is decoded.
        ("grpc.http2.lookahead_bytes", 8 * 1024 * 1024),
    ]
    if not conn.uses_tls:
        return grpc.insecure_channel(conn.target, options=options)
    credentials, tls_options = _credentials(conn)
    return grpc.secure_channel(conn.target, credentials, options=options + tls_options)


def _is_tls_failure(err: grpc.RpcError) -> bool:
    details = (_details(err) or "").lower()
    return any(word in details for word in _TLS_WORDS)


def _details(err: grpc.RpcError) -> str:
    details = getattr(err, "details", None)
    return (details() if callable(details) else "") or ""


def _code(err: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(err, "code", None)
    return code() if callable(code) else grpc.StatusCode.UNKNOWN


def describe(conn: Connection, err: grpc.RpcError) -> str:
    """One line naming the address and the gRPC status (and what it likely means)."""
    code = _code(err)
    details = H.visible(" ".join(_details(err).split()))  # the server's words
    hint = ""
    if _is_tls_failure(err) or (code == grpc.StatusCode.UNAVAILABLE and conn.uses_tls):
        hint = " (TLS: check --tls-ca-cert-files, --tls-server-name, client certificates, and " \
               "that the relay serves TLS)"
    elif code == grpc.StatusCode.UNAVAILABLE:
        hint = " (is the relay running there, and does it expect TLS?)"
    return f"relay {conn.server}: {code.name}: {details}{hint}"


def _unary(conn: Connection, call: Callable[[grpc.Channel], Any]) -> Any:
    channel = open_channel(conn)
    try:
        return call(channel)
    except grpc.RpcError as err:
        raise RelayError(describe(conn, err)) from None
    finally:
        channel.close()


def server_health(conn: Connection, timeout: float = UNARY_TIMEOUT) -> str:
    """The relay's gRPC health check of HEALTH_SERVICE, as `hubble status` asks it: the
    status's name (SERVING, NOT_SERVING, ...); RelayError when the check fails."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    response = _unary(conn, lambda channel: health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=timeout))
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def server_status(conn: Connection, timeout: float = UNARY_TIMEOUT
                  ) -> observer_pb2.ServerStatusResponse:
    """ServerStatus; RelayError naming the address and status when it fails."""
    return _unary(conn, lambda channel: observer_pb2_grpc.ObserverStub(channel).ServerStatus(
        observer_pb2.ServerStatusRequest(), timeout=timeout))


def get_nodes(conn: Connection, timeout: float = UNARY_TIMEOUT) -> observer_pb2.GetNodesResponse:
    return _unary(conn, lambda channel: observer_pb2_grpc.ObserverStub(channel).GetNodes(
        observer_pb2.GetNodesRequest(), timeout=timeout))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter between reopen attempts; a stream gives up after
    `attempts` reconnects in a row, or `patience` seconds, without receiving anything (None:
    never)."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    attempts: int | None = None
    patience: float | None = None

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.maximum, self.initial * self.multiplier ** attempt))


@dataclass
class StreamStats:
    """What a stream has seen so far (read by the status line and the summary)."""

    flows: int = 0
    lost_events: int = 0  # events the relay reports lost (sum of num_events_lost)
    lost_records: int = 0
    reconnects: int = 0
    duplicates: int = 0
    bad_records: int = 0  # records skipped: unreadable, or a value the frame cannot hold
    verdicts: dict[str, int] = field(default_factory=dict)
    drop_reasons: dict[str, int] = field(default_factory=dict)


class _Resume:
    """Where a reopened stream continues: since the newest flow received, dropping what it
    repeats: flows at that time already received (by uuid, or by their bytes when they have
    none) and lost-event records already received."""

    def __init__(self) -> None:
        # The last payloads received, parsed only when the stream breaks (cheap to keep).
        self.recent: deque[bytes] = deque(maxlen=4096)
        self.since_ns: int | None = None
        self.seen: set[Any] = set()

    def newest(self) -> int | None:
        """The time of the newest flow received (None: none yet)."""
        times = [t for kind, t, _ in map(_identity, self.recent) if kind == "flow" and t]
        return max(times) if times else self.since_ns

    def reopen(self) -> int | None:
        """Start dropping repeats; returns the time to ask from (None: nothing seen yet)."""
        parsed = [_identity(p) for p in self.recent]
        flow_times = [t for kind, t, _ in parsed if kind == "flow" and t is not None]
        if not flow_times:
            return self.since_ns
        newest = max(flow_times)
        self.since_ns = newest
        self.seen = {key for kind, t, key in parsed
                     if t is not None and (t == newest if kind == "flow" else t >= newest)}
        return newest

    def is_repeat(self, payload: bytes) -> bool:
        """During the catch-up after a reopen: is this something already received?"""
        if self.since_ns is None:
            return False
        kind, t, key = _identity(payload)
        if kind != "flow" or t is None:
            return key in self.seen
        if t > self.since_ns:
            self.since_ns = None  # past the resume point: no more repeats possible
            return False
        return t < self.since_ns or key in self.seen


def _identity(payload: bytes) -> tuple[str | None, int | None, Any]:
    """(kind, time ns, key) of a response: flows are keyed by uuid, else by their bytes. A
    message that does not parse (skipped when it came) is nothing to resume from."""
    try:
        r = observer_pb2.GetFlowsResponse.FromString(payload)
    except protobuf_message.DecodeError:
        return None, None, payload
    kind = r.WhichOneof("response_types")
    if kind == "flow":
        f = r.flow
        t = f.time.seconds * 1_000_000_000 + f.time.nanos if f.HasField("time") else None
        return kind, t, f.uuid or payload
    t = r.time.seconds * 1_000_000_000 + r.time.nanos if r.HasField("time") else None
    return kind, t, payload


# The grpcio releases whose insides `_messages` was written and tested against
# (tests/test_relay.py holds it to grpcio's iterator); add one once the test passes with it.
TESTED_GRPCIO = ("1.85.",)


def _messages(call: Any) -> Iterator[bytes]:
    """The messages of a streaming call on a `SingleThreadedUnaryStream` channel, received as
    grpcio's iterator receives them without its per-message Python work (locks and its state
    machine: a third of the receive time, measured with flowsrv); ends as that iterator ends:
    at status OK, or raising the call (a grpc.RpcError). Whatever is not the usual event, one
    message, goes to grpcio's own handler; when grpcio's insides are not the ones known here,
    its iterator receives (and so for a grpcio not in TESTED_GRPCIO: its insides may keep
    their names and change their meaning)."""
    from grpc import __version__ as grpcio_version
    from grpc import _channel

    if not grpcio_version.startswith(TESTED_GRPCIO):
        yield from call
        return
    cygrpc: Any = getattr(_channel, "cygrpc", None)
    known = (getattr(_channel, "_SingleThreadedRendezvous", None),
             getattr(_channel, "_handle_event", None), getattr(call, "_state", None),
             getattr(call, "_call", None), getattr(cygrpc, "ReceiveMessageOperation", None))
    if not isinstance(call, known[0] or ()) or None in known:
        yield from call
        return
    state, segregated, handle = call._state, call._call, _channel._handle_event
    receiving = cygrpc.OperationType.receive_message
    receive = (cygrpc.ReceiveMessageOperation(0),)  # (no flags)
    while True:
        with state.condition:
            if state.code is not None:
                break
            state.due.add(receiving)  # before the operation, as grpcio does
            if not segregated.operate(receive, None):
                state.due.discard(receiving)
                break
        message = None
        while True:
            event = segregated.next_event()
            ops = event.batch_operations
            if len(ops) == 1 and ops[0].type() == receiving:
                state.due.discard(receiving)
                message = ops[0].message()
                break
            with state.condition:
                callbacks = handle(event, state, None)
            for callback in callbacks:
                callback()
            if receiving not in state.due:
                message, state.response = state.response, None
                break
        if message is None:  # the stream ended: its status follows
            break
        yield message
    while state.code is None and state.due:
        event = segregated.next_event()
        with state.condition:
            callbacks = handle(event, state, None)
        for callback in callbacks:
            callback()
    if state.code is not grpc.StatusCode.OK:
        raise call


class FlowStream:
    """GetFlows as an iterator of DecodedBatch, reopened after retryable errors.

    Bounded requests are received on the calling thread (fastest), or with `apart` in a
    child process when one can be forked (`flowlens.sources.apart`): then this process decodes
    while the child receives, and runs `meanwhile` (imports, say) first. A follow stream is
    received on a helper thread, so that flows arriving one by one are handed over within
    `flush_interval` instead of waiting for a full run. `cancel()` ends it from any thread."""

    def __init__(self, conn: Connection, request: observer_pb2.GetFlowsRequest, *,
                 keep_payloads: bool = False, retry: RetryPolicy | None = None,
                 run_size: int = RUN_SIZE, flush_interval: float = 0.2,
                 on_event: Callable[[str], None] | None = None, apart: bool = False,
                 meanwhile: Callable[[], object] | None = None) -> None:
        self.conn = conn
        self.request = request
        self.keep_payloads = keep_payloads
        # A bounded read resumes as a follow stream does, but gives up on a relay that stays
        # away: then it has what it received, and says what is missing.
        self.retry = retry or RetryPolicy(patience=None if request.follow else PATIENCE)
        self.run_size = run_size
        self.flush_interval = flush_interval
        self.on_event = on_event or (lambda message: None)
        self.apart = apart
        self.meanwhile = meanwhile
        self.stats = StreamStats()
        self.server_version: str | None = None
        self._decoder = _proto.ProtoDecoder()
        self._resume = _Resume()
        self._received = 0  # flows and lost events received (for bounded requests' number)
        self._cancelled = threading.Event()
        self._call: Any = None
        self._channel: grpc.Channel | None = None

    # ---- connecting ----

    def connect(self) -> None:
        """Open the channel and check the relay answers within --timeout (RelayError if not)."""
        self._channel = open_channel(self.conn)
        stub = observer_pb2_grpc.ObserverStub(self._channel)
        try:
            stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=self.conn.timeout)
        except grpc.RpcError as err:
            if _code(err) != grpc.StatusCode.UNIMPLEMENTED:  # a server without it may stream
                self.close()
                raise RelayError(describe(self.conn, err)) from None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def cancel(self) -> None:
        """End the stream now (idempotent, any thread)."""
        self._cancelled.set()
        call = self._call
        if call is not None:
            call.cancel()

    def _open(self, request: observer_pb2.GetFlowsRequest) -> Any:
        assert self._channel is not None
        method = self._channel.unary_stream(
            "/observer.Observer/GetFlows",
            request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
            response_deserializer=None)  # bytes: decoded in runs, not one by one
        self._call = method(request)
        return self._call

    def _reopen_request(self) -> observer_pb2.GetFlowsRequest:
        request = observer_pb2.GetFlowsRequest()
        request.CopyFrom(self.request)
        since = self._resume.reopen()
        if since is None:
            return request
        request.since.FromNanoseconds(since)
        if request.number and request.number != (1 << 64) - 1:
            # The rest of a bounded request: the oldest ones after what was received.
            request.number = max(request.number - self._received, 0) + len(self._resume.seen)
            request.first = True
        if request.follow:
            request.number = 0
        return request

    # ---- receiving ----

    def _payloads(self) -> Iterator[bytes]:
        """Every payload of the stream, across reopens; raises RelayError when it must stop."""
        request = self.request
        attempt = 0
        since_progress = time.monotonic()
        resume = self._resume
        recent = resume.recent
        while not self._cancelled.is_set():
            call = self._open(request)
            received = self._received
            try:
                for payload in _messages(call):  # (once per flow: kept lean)
                    if resume.since_ns is not None and resume.is_repeat(payload):
                        self.stats.duplicates += 1
                        continue
                    self._received += 1
                    recent.append(payload)
                    yield payload
                if not self.request.follow:
                    return
                problem = "the relay ended the stream"  # a follow stream never ends by itself
            except grpc.RpcError as err:
                if self._cancelled.is_set():
                    return
                code = _code(err)
                retryable = (code.name in RETRYABLE or code == grpc.StatusCode.CANCELLED) \
                    and not _is_tls_failure(err)
                if not retryable:
                    raise RelayError(describe(self.conn, err)) from None
                problem = describe(self.conn, err)
            if self._received > received:  # this call brought flows: patience starts over
                attempt = 0
                since_progress = time.monotonic()
            waited = time.monotonic() - since_progress
            if (self.retry.attempts is not None and attempt >= self.retry.attempts) or \
                    (self.retry.patience is not None and waited >= self.retry.patience):
                raise RelayError(f"{problem}; gave up after {attempt} reconnects in "
                                 f"{waited:.0f}s: {self._missing()}")
            delay = self.retry.delay(attempt)
            attempt += 1
            self.stats.reconnects += 1
            self.on_event(f"{problem}; reconnecting in {delay:.1f}s")
            if self._cancelled.wait(delay):
                return
            request = self._reopen_request()

    def _missing(self) -> str:
        """What a stream that gave up did not receive, in words."""
        newest = self._resume.newest()
        if newest is None:
            return "no flow was received"
        stamp = datetime.fromtimestamp(newest // 1_000_000_000, timezone.utc)
        return (f"{self._received:,} records were received; the flows after "
                f"{stamp:%Y-%m-%dT%H:%M:%S}.{newest % 1_000_000_000:09d}Z are missing")

    def __iter__(self) -> Iterator[DecodedBatch]:
        child = None
        if self.apart and not self.request.follow and self._channel is None and \
                _apart.can_fork():
            child = _apart.Child(self._receive_apart)
        elif self._channel is None:
            self.connect()
        try:
            runs: Iterable[Sequence[bytes]]
            if child is not None:
                if self.meanwhile is not None:
                    self.meanwhile()
                runs = child.runs(self.run_size, self.on_event)
            else:
                runs = self._threaded_runs() if self.request.follow else \
                    self._inline_runs()
            for run in runs:
                yield self._decode(run)
            if child is not None:
                self.stats.reconnects, self.stats.duplicates = child.result
        finally:
            if child is not None:
                child.close()
            self.cancel()
            self.close()

    def _receive_apart(self, sender: _apart.Sender) -> tuple[int, int]:
        """The child's work: the stream to the parent, in records of at most _APART_RECORD
        flows that end where each run of `run_size` ends (bigger ones would cost page faults
        on both sides); its counts of reconnects and repeats."""
        self.on_event = sender.send_event
        self.connect()
        record: list[bytes] = []
        in_run = 0  # flows of the current run sent
        for payload in self._payloads():
            record.append(payload)
            if len(record) == _APART_RECORD or in_run + len(record) == self.run_size:
                sender.send_run(record)
                in_run = (in_run + len(record)) % self.run_size
                record = []
        if record:
            sender.send_run(record)
        return self.stats.reconnects, self.stats.duplicates

    def _decode(self, run: Sequence[bytes]) -> DecodedBatch:
        decoded = self._decoder.decode(run, keep_payloads=self.keep_payloads)
        self._count(decoded)
        return decoded

    def _count(self, decoded: DecodedBatch) -> None:
        stats = self.stats
        for why in decoded.bad[:max(SHOWN_BAD_LINES - stats.bad_records, 0)]:
            self.on_event(f"skipped a flow the relay sent: {why}")
        stats.bad_records += len(decoded.bad)
        stats.flows += decoded.rows
        for event in decoded.lost_events:
            stats.lost_records += 1
            stats.lost_events += int(event["num_events_lost"] or 0)
        if decoded.rows:
            for name, counts in (("verdict", stats.verdicts), ("drop_reason", stats.drop_reasons)):
                for key, n in decoded.counts(name).items():
                    counts[key] = counts.get(key, 0) + n

    def _inline_runs(self) -> Iterator[list[bytes]]:
        run: list[bytes] = []
        for payload in self._payloads():
            run.append(payload)
            if len(run) >= self.run_size:
                yield run
                run = []
        if run:
            yield run

    def _threaded_runs(self) -> Iterator[list[bytes]]:
        # Received but not yet taken is bounded: when the consumer falls behind, the receiver
        # waits, and gRPC's flow control holds the relay back (memory stays flat). The
        # handover is a deque (appends and pops are thread-safe): no lock taken per flow.
        pending: deque[bytes] = deque()
        limit = 4 * self.run_size
        ready = threading.Event()  # a run's worth waits, or the stream ended
        room = threading.Event()  # the consumer took what waited
        stopped = threading.Event()
        done: list[BaseException | None] = []

        def receive() -> None:
            try:
                for payload in self._payloads():
                    if len(pending) >= limit:
                        room.clear()
                        while len(pending) >= limit and not stopped.is_set():
                            room.wait(0.05)
                        if stopped.is_set():
                            return
                    pending.append(payload)
                    if len(pending) >= self.run_size and not ready.is_set():
                        ready.set()
                done.append(None)
            except BaseException as exc:  # handed to the consumer thread
                done.append(exc)
            ready.set()

        thread = threading.Thread(target=receive, name="flowlens-relay-stream", daemon=True)
        thread.start()
        try:
            while True:
                ready.wait(self.flush_interval)
                ready.clear()
                ended = bool(done)  # (before taking: all the stream held is then taken)
                run = [pending.popleft() for _ in range(len(pending))]
                room.set()
                yield run  # also when empty: the consumer may refresh a status line
                if ended:
                    if done[0] is not None:
                        raise done[0]
                    return
        finally:
            stopped.set()
            self.cancel()
            thread.join(timeout=2)
