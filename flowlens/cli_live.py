"""The live side of the `flowlens` command: connection flags, `tail` from a relay, `status`,
`nodes` and serving a replay relay. `flowlens.cli` declares the commands; this does the work."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

import click

from flowlens import filters as _filters
from flowlens import frame as _frame
from flowlens._lazy import lazy
from flowlens.errors import RelayError, UsageError
from flowlens.load import ReadOptions
from flowlens.render.live import counted
from flowlens.render.sink import LineFile, bytes_to_stdout, to_stdout
from flowlens.sources.relay import DEFAULT_SERVER, SERVER_ENV, Connection

if TYPE_CHECKING:
    import pandas as pd

    from flowlens import live as _relay
    from flowlens._proto.observer import observer_pb2
    from flowlens.render import hubble as _hubble_text
    from flowlens.render import jsonpb as _jsonpb
    from flowlens.render import live as _live
    from flowlens.sources import native as _native
    from flowlens.sources import proto as _proto
    from flowlens.sources import protodict as _protodict
    from flowlens.sources.proto import DecodedBatch
    from flowlens.sources.relay import FlowStream
else:  # loaded by the commands that use them: `flowlens --help` needs none
    pd, observer_pb2 = lazy("pandas"), lazy("flowlens._proto.observer.observer_pb2")
    _relay, _hubble_text = lazy("flowlens.live"), lazy("flowlens.render.hubble")
    _jsonpb, _live = lazy("flowlens.render.jsonpb"), lazy("flowlens.render.live")
    _proto, _protodict = lazy("flowlens.sources.proto"), lazy("flowlens.sources.protodict")
    _native = lazy("flowlens.sources.native")

F = TypeVar("F", bound=Callable[..., Any])

_CONNECTION_PARAMS = ("server", "tls", "tls_allow_insecure", "tls_ca_cert_files",
                      "tls_client_cert_file", "tls_client_key_file", "tls_server_name",
                      "timeout")


_MAX_TIMEOUT = 24 * 3600.0  # seconds; grpc deadlines take no more than a few centuries


def _timeout(value: str) -> float:
    try:
        ns = _filters.parse_duration_ns(value) if not value.replace(".", "", 1).isdigit() \
            else float(value) * 1e9
    except (ValueError, OverflowError):
        ns = None
    if ns is None or not 1e6 <= ns <= _MAX_TIMEOUT * 1e9:
        raise UsageError(f"invalid value {value!r} for --timeout: want a duration from 1ms to "
                         "24h, like 5s")
    return ns / 1e9


def connection_options(f: F) -> F:
    """hubble's connection flags; the callback gets `connection` (a Connection)."""
    options = [
        click.option("--server", metavar="ADDRESS",
                     help=f"Address of hubble-relay (default {DEFAULT_SERVER}, env "
                          f"{SERVER_ENV}); a tls:// prefix turns TLS on."),
        click.option("--tls", is_flag=True, help="Use TLS to connect to the relay."),
        click.option("--tls-allow-insecure", is_flag=True,
                     help="Use TLS but accept any server certificate (no verification)."),
        click.option("--tls-ca-cert-files", multiple=True, metavar="FILE",
                     help="PEM CA certificates to verify the relay with (repeatable, or "
                          "comma-separated)."),
        click.option("--tls-client-cert-file", metavar="FILE",
                     help="PEM client certificate, for mTLS."),
        click.option("--tls-client-key-file", metavar="FILE", help="PEM client key, for mTLS."),
        click.option("--tls-server-name", metavar="NAME",
                     help="Name the relay's certificate must carry (default: the host)."),
        click.option("--timeout", default="5s", show_default=True, metavar="DURATION",
                     help="How long to wait for the relay when connecting."),
    ]

    @functools.wraps(f)
    def run(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _CONNECTION_PARAMS}
        files = tuple(p for item in values["tls_ca_cert_files"] for p in item.split(",") if p)
        connection = Connection.from_env(
            values["server"], tls=values["tls"], tls_allow_insecure=values["tls_allow_insecure"],
            tls_ca_cert_files=files, tls_client_cert_file=values["tls_client_cert_file"],
            tls_client_key_file=values["tls_client_key_file"],
            tls_server_name=values["tls_server_name"], timeout=_timeout(values["timeout"]))
        return f(*args, connection=connection, **kwargs)

    for option in reversed(options):
        run = option(run)
    return cast(F, run)


# --- tail from a relay ------------------------------------------------------------------------


def _jsonpb_lines(payloads: list[bytes]) -> list[bytes]:
    """hubble's jsonpb line of each response: in C where it can, else by the reference."""
    module = _native.native(proto=True)
    lines: list[bytes | None] = module.jsonpb(payloads, _native.message_index(
        "observer.GetFlowsResponse")) if module is not None else [None] * len(payloads)
    return [line if line is not None else _jsonpb_line(payload)
            for line, payload in zip(lines, payloads, strict=True)]


def _jsonpb_line(payload: bytes) -> bytes:
    message = observer_pb2.GetFlowsResponse.FromString(payload)
    return _jsonpb.encode_response_bytes(_protodict.message_to_dict(message)) + b"\n"


@dataclass
class _Render:
    """How `tail` prints flows."""

    fmt: str
    time_format: str
    node_name: bool
    policy_names: bool
    numeric: bool
    color: bool

    def reference(self, df: pd.DataFrame) -> Iterator[str]:
        """The reference renderer's records (over a frame)."""
        renderer = {"compact": _hubble_text.compact, "dict": _hubble_text.dict_,
                    "table": _hubble_text.table}[self.fmt]
        return renderer(df, time_format=self.time_format, node_name=self.node_name,
                        policy_names=self.policy_names, numeric=self.numeric, color=self.color)


class Continued:
    """Text of several frames as one output: in hubble's dict format every block but the
    first of the whole output has a separator line, not the first of each frame."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.blocks = 0

    def __call__(self, blocks: Iterable[str]) -> Iterator[str]:
        for i, block in enumerate(blocks):
            if self.fmt == "dict" and i == 0 and self.blocks:
                block = "------------\n" + block
            self.blocks += 1
            yield block


class _Printer:
    """Writes what a stream delivers: flows to stdout in the chosen format, every flow to
    --save, node status to stderr; keeps the terminal status line out of the way.

    Runs the fast path decoded are printed by it without a frame (`NativeRun.render`); a
    table's records are aligned at the end by `_native.Table`. Other runs go through a frame
    and the reference renderer."""

    def __init__(self, stream: FlowStream, render: _Render, save: LineFile | None) -> None:
        self.stream = stream
        self.render = render
        self.save = save
        self.status = _live.StatusLine(sys.stderr, stream.stats) if is_tty(sys.stderr) \
            else None
        self.continued = Continued(render.fmt)  # (also counts the records printed)
        self.lock = threading.Lock()
        module = _native.native()
        self.table = module.Table(node_name=render.node_name) \
            if render.fmt == "table" and module is not None and not render.color else None
        self.held: list[DecodedBatch] = []  # a table's runs without the fast path: at the end

    def event(self, message: str) -> None:
        with self.lock:
            if self.status:
                self.status.clear()
            click.echo(f"flowlens: {message}", err=True)

    def node_status(self, decoded: DecodedBatch) -> None:
        for ns in decoded.node_status:
            if ns.state not in _live.SHOWN_NODE_STATES:
                continue
            if self.status:
                self.status.clear()
            sys.stderr.write(_live.node_status_line(ns, self.render.time_format))
        sys.stderr.flush()

    def write(self, decoded: DecodedBatch) -> None:
        with self.lock:
            if self.status:
                self.status.clear()
            payloads = decoded.payloads
            lines = _jsonpb_lines(payloads) if payloads is not None else None
            if self.save is not None and lines is not None:
                for line in lines:  # one flush per line: a killed process loses one at most
                    self.save.write(line)
            bytes_to_stdout(b"".join(lines) if self.render.fmt == "jsonpb" and lines is not None
                            else self._text(decoded))
            if self.status:
                self.status.update()

    def _text(self, decoded: DecodedBatch) -> bytes:
        r = self.render
        records = decoded.rows + len(decoded.lost_events)
        # Colours (--color always) come from the reference renderer only.
        if decoded.native is not None and not r.color and \
                (r.fmt != "table" or self.table is not None):
            text = decoded.native.render(r.fmt, time_format=r.time_format,
                                         node_name=r.node_name, policy_names=r.policy_names,
                                         numeric=r.numeric,
                                         separator=self.continued.blocks > 0, table=self.table)
            if text is not None:
                self.continued.blocks += records
                return text
        if r.fmt == "table":
            if self.table is None:
                self.held.append(decoded)
            else:
                for cells in _hubble_text.table_records(
                        _frame.build(decoded.batch), time_format=r.time_format,
                        node_name=r.node_name, policy_names=r.policy_names, numeric=r.numeric):
                    self.table.add(cells)
            return b""
        return "".join(self.continued(r.reference(_frame.build(decoded.batch)))).encode()

    def finish(self) -> None:
        """A table, aligned over every record, once the stream has ended."""
        if self.render.fmt != "table":
            return
        if self.table is not None:
            text = self.table.finish()
        else:
            merged = _proto.merge_batches([d.batch for d in self.held])
            text = "".join(self.render.reference(_frame.build(merged))).encode()
        bytes_to_stdout(text)

    def tick(self) -> None:
        if self.status:
            with self.lock:
                self.status.update()

    def close(self) -> None:
        if self.status:
            self.status.clear()


class Choice(click.Choice):
    """click's Choice, a value it refuses worded as every other flag value's: `invalid value
    'xml' for --output: want one of compact, ...` (click's own names the flag twice, quoted)."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            flag = max(param.opts, key=len) if param is not None else "a flag"
            raise click.UsageError(f"invalid value {value!r} for {flag}: want one of "
                                   f"{', '.join(map(str, self.choices))}", ctx) from None


def is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def tail_relay(connection: Connection, filters: _filters.Filters, *, fmt: str,
               time_format: str, node_name: bool, policy_names: bool, numeric: bool,
               color: bool, save: str | None) -> None:
    """`flowlens tail` without --input-file: stream from the relay and print as hubble does.
    Ctrl-C ends it with exit status 0 and a one-line summary on stderr."""
    keep = fmt == "jsonpb" or save is not None
    stream = _relay.relay_stream(connection, filters, keep_payloads=keep)
    saver = _open_save(save)
    printer = _Printer(stream, _Render(fmt, time_format, node_name, policy_names, numeric, color),
                       saver)
    stream.on_event = printer.event
    interrupted = False
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _interrupt)  # `kill`: end as cleanly as Ctrl-C
        stream.connect()
        if filters.follow and _from_now_on(filters):
            # A relay that replayed a saved capture at once has nothing newer: say why nothing
            # shows, once.
            printer.event("following from the newest flow: only flows that arrive from now on "
                          "are shown (--last N or --since TIME shows history first)")
        for decoded in stream:  # printed run by run: memory stays flat
            printer.node_status(decoded)
            if decoded.rows or decoded.lost_events:
                printer.write(decoded)
            else:
                printer.tick()
        printer.finish()
    except KeyboardInterrupt:
        interrupted = True
        stream.cancel()
    finally:
        signal.signal(signal.SIGTERM, previous)
        printer.close()
        if saver is not None:
            saver.close()
    stats = stream.stats
    if interrupted or filters.follow or stats.lost_events or stats.lost_records \
            or stats.bad_records \
            or is_tty(sys.stderr):
        sys.stderr.write(_live.summary_line(stats, connection.server))


def _from_now_on(filters: _filters.Filters) -> bool:
    """Whether a request asks for no flow the relay already holds."""
    return (filters.last is None and filters.first is None and filters.since is None
            and not filters.all)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _open_save(path: str | None) -> LineFile | None:
    if path is None:
        return None
    try:
        return LineFile(path, "--save file")
    except OSError as exc:
        raise UsageError(f"cannot write --save file {path}: {exc.strerror}") from None


# --- status and nodes -------------------------------------------------------------------------


def print_status(connection: Connection, output: str) -> None:
    from flowlens.sources.relay import server_health, server_status

    timeout = max(connection.timeout, 1.0)
    if output == "compact":  # as hubble status: is the relay's Observer service up, then its status
        health = server_health(connection, timeout=timeout)
        healthy = health == "SERVING"
        to_stdout([f"Healthcheck (via {connection.target}): "
                   f"{'Ok' if healthy else f'Unavailable: {health}'}\n"])
        if not healthy:
            raise RelayError(f"relay {connection.server}: not healthy ({health})")
    status = server_status(connection, timeout=timeout)
    if output == "json":
        to_stdout([_jsonpb.encode_message(_protodict.message_to_dict(status),
                                          "observer.ServerStatusResponse") + "\n"])
        return
    to_stdout(_live.server_status_lines(status, output))


def print_nodes(connection: Connection, output: str) -> None:
    from flowlens.sources.relay import get_nodes

    response = get_nodes(connection, timeout=max(connection.timeout, 1.0))
    if output == "json":
        to_stdout([_jsonpb.encode_message(_protodict.message_to_dict(response),
                                          "observer.GetNodesResponse") + "\n"])
        return
    to_stdout(_live.nodes_table(response.nodes))


# --- the replay relay -------------------------------------------------------------------------


def serve_relay(sources: tuple[str, ...], options: ReadOptions, *, listen: str, speed: str,
                tls_cert: str | None, tls_key: str | None, tls_client_ca: str | None,
                on_loaded: Callable[[], None] = lambda: None) -> None:
    """Load SOURCE... and serve them until Ctrl-C (exit status 0); `on_loaded` runs between
    (to report unreadable lines before serving)."""
    from flowlens.relay_server import (
        ReplayData,
        ServerTLS,
        check_serving,
        parse_speed,
        serve_forever,
    )

    pace = parse_speed(speed)
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    tls = ServerTLS(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    check_serving(listen, tls)  # before a long load
    data = ReplayData.from_sources(sources, options)
    on_loaded()
    how = "mTLS" if tls and tls.client_ca_file else "TLS" if tls else "plaintext"

    def ready(port: int) -> None:
        click.echo(f"flowlens: serving {counted(len(data.payloads), 'flow')} and "
                   f"{counted(len(data.lost), 'lost-event record')} on "
                   f"{listen.rsplit(':', 1)[0]}:{port} ({how}, speed {speed})", err=True)

    serve_forever(data, listen=listen, speed=pace, tls=tls, on_ready=ready)
    click.echo("flowlens: relay stopped", err=True)
