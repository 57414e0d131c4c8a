"""The fast path (flowlens._native, in C) against the reference: the Python decoders and
renderers it stands in for. Same frames, same hubble text and jsonpb, byte for byte, on hubble's
own renderings, on generated flows and on hostile bytes; and what it cannot answer exactly it
hands back (a bail), never a different answer or a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import conftest
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_data import SHARED

import flowlens
from flowlens import frame
from flowlens._proto.observer import observer_pb2
from flowlens.errors import FlowlensError
from flowlens.render import hubble as text
from flowlens.render.jsonpb import encode_response_bytes
from flowlens.sources import jsonpb as jsonpb_reader
from flowlens.sources import native as fast
from flowlens.sources import text as text_reader
from flowlens.sources.proto import DecodedBatch, ProtoDecoder, merge_batches
from flowlens.sources.protodict import message_to_dict, response_from_dict
from flowlens.synth import generate_lab

ROOT = Path(__file__).resolve().parents[1]
RENDERINGS = SHARED / "reference-renderings"
OTEL = sorted((SHARED / "real-flows" / "hubble-otel").glob("*.json"))
RESPONSE = "observer.GetFlowsResponse"
# The variants of hubble's text: (format, options).
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("compact", {}), ("dict", {}), ("table", {}), ("compact", {"node_name": True}),
    ("compact", {"policy_names": True}), ("compact", {"numeric": True}),
    ("dict", {"node_name": True, "policy_names": True, "numeric": True}),
    ("table", {"node_name": True, "time_format": "RFC3339Nano"}),
    *[("compact", {"time_format": name}) for name in text.TIME_FORMATS],
]


@pytest.fixture(scope="module", autouse=True)
def native_module() -> Any:
    module = fast.native(proto=True)
    assert module is not None, f"flowlens._native is not built: {conftest.NATIVE_BUILD_ERROR}"
    return module


def payloads_of(path: Path) -> list[bytes]:
    return [response_from_dict(orjson.loads(line)).SerializeToString()
            for line in path.read_bytes().splitlines() if line.strip()]


def lab_payloads() -> list[bytes]:
    return [response_from_dict(r).SerializeToString() for r in generate_lab()]


def runs(payloads: list[bytes], size: int) -> list[list[bytes]]:
    return [payloads[i:i + size] for i in range(0, len(payloads), size)] or [[]]


def decode(payloads: list[bytes], size: int, *, fast: bool) -> list[DecodedBatch]:
    decoder = ProtoDecoder(fast=fast)
    return [decoder.decode(run, keep_payloads=True) for run in runs(payloads, size)]


def frame_of(decoded: list[DecodedBatch]) -> pd.DataFrame:
    return frame.build(merge_batches([d.batch for d in decoded]))


def reference_text(payloads: list[bytes], fmt: str, options: dict[str, Any]) -> str:
    df = frame_of(decode(payloads, 1000, fast=False))
    renderer = {"compact": text.compact, "dict": text.dict_, "table": text.table}[fmt]
    return "".join(renderer(df, **options))


def fast_text(decoded: list[DecodedBatch], fmt: str, options: dict[str, Any]) -> str | None:
    """hubble's text of the runs by the fast path alone; None if some run bailed."""
    options = {"time_format": "StampMilli", "node_name": False, "policy_names": False,
               "numeric": False, **options}
    table = fast.native().Table(node_name=options["node_name"]) if fmt == "table" else None
    out = b""
    for d in decoded:
        if d.native is None:
            return None
        got = d.native.render(fmt, separator=bool(out), table=table, **options)
        if got is None:
            return None
        out += got
    if table is not None:
        out += table.finish()
    return out.decode()


# --- hubble's own renderings ---------------------------------------------------------------

SHARED_CAPTURES = [RENDERINGS / "coverage.jsonl", RENDERINGS / "lab-small.jsonl"]


@pytest.mark.parametrize("name", ["coverage", "lab-small"])
def test_jsonpb_is_hubbles_own(native_module: Any, name: str) -> None:
    payloads = payloads_of(RENDERINGS / f"{name}.jsonl")
    lines = native_module.jsonpb(payloads, fast.message_index(RESPONSE))
    assert None not in lines
    assert b"".join(lines) == (RENDERINGS / f"{name}.hubble-jsonpb.jsonl").read_bytes()


@pytest.mark.parametrize("name", ["coverage", "lab-small"])
@pytest.mark.parametrize(("kind", "fmt", "options"), [
    ("compact", "compact", {}), ("dict", "dict", {}), ("table", "table", {}),
    ("compact-node-name", "compact", {"node_name": True}),
    ("compact-policy-names", "compact", {"policy_names": True}),
    ("compact-rfc3339milli", "compact", {"time_format": "RFC3339Milli"}),
])
def test_text_is_hubbles_own(name: str, kind: str, fmt: str, options: dict[str, Any]) -> None:
    payloads = payloads_of(RENDERINGS / f"{name}.jsonl")
    for size in (len(payloads), 97):  # one run, and many (shapes kept across runs)
        got = fast_text(decode(payloads, size, fast=True), fmt, options)
        assert got == (RENDERINGS / f"{name}.{kind}.txt").read_text(), (kind, size)


@pytest.mark.parametrize(("rendered", "fmt", "options"), [
    ("all.dict.txt", "dict", {}), ("all.table.txt", "table", {}),
    ("all.compact-node-name.txt", "compact", {"node_name": True}),
    ("all.compact-rfc3339nano.txt", "compact", {"time_format": "RFC3339Nano"}),
    ("all.compact-numeric.txt", "compact", {"numeric": True}),
])
def test_real_captures_render_as_hubble_does(rendered: str, fmt: str,
                                             options: dict[str, Any]) -> None:
    payloads = [p for path in OTEL for p in payloads_of(path)]
    got = fast_text(decode(payloads, 500, fast=True), fmt, options)
    assert got == (SHARED / "real-flows" / "rendered" / rendered).read_text()


# --- the reference decoder and renderer ----------------------------------------------------

CAPTURES = {"lab": lab_payloads, **{p.stem: (lambda p=p: payloads_of(p))
                                    for p in [*SHARED_CAPTURES, *OTEL]}}


@pytest.mark.parametrize("name", list(CAPTURES))
def test_frames_equal_the_reference(name: str) -> None:
    payloads = CAPTURES[name]()
    decoded = decode(payloads, 211, fast=True)
    assert all(d.native is not None for d in decoded), "the fast path bailed on clean flows"
    got, want = frame_of(decoded), frame_of(decode(payloads, 211, fast=False))
    pd.testing.assert_frame_equal(got, want)
    assert got.attrs == want.attrs
    assert [d.payloads for d in decoded] == [d.payloads for d in decode(payloads, 211, fast=False)]


def test_every_variant_of_the_lab_renders_as_the_reference() -> None:
    payloads = lab_payloads()
    decoded = decode(payloads, 333, fast=True)
    for fmt, options in VARIANTS:
        assert fast_text(decoded, fmt, options) == reference_text(payloads, fmt, options), \
            (fmt, options)


def test_stream_counts_equal_the_columns() -> None:
    payloads = lab_payloads()
    for d in decode(payloads, 500, fast=True):
        reference = DecodedBatch(d.batch)  # counted from the columns
        for column in ("verdict", "drop_reason"):
            assert d.counts(column) == reference.counts(column)


def test_fields_no_column_uses_do_not_split_shapes() -> None:
    """Socket cookie and cgroup id are left out of a shape's key: the reference frame does not
    change with them (if it ever did, the fast path would have to keep them)."""
    base = observer_pb2.GetFlowsResponse.FromString(lab_payloads()[0])
    variants = []
    for cookie in (0, 1, 2**63):
        msg = observer_pb2.GetFlowsResponse()
        msg.CopyFrom(base)
        msg.flow.socket_cookie = cookie
        msg.flow.cgroup_id = cookie // 2
        variants.append(msg.SerializeToString())
    reference = frame_of(decode(variants, 10, fast=False))
    assert len(reference) == 3 and len(reference.drop_duplicates()) == 1
    decoder = fast.Shapes()
    run = decoder.splitter.split(variants)
    assert run is not None and len(run.new_shapes) == 1


# --- generated and hostile flows -----------------------------------------------------------

_TEXT = st.one_of(
    st.sampled_from(["", "default", "kube-system", "a/b", "/", "x/", "/y", "a/b/c", "10.0.0.1",
                     "fd00::1", "\x1b[31mred", "line\rback", "é", "<b>&amp;</b>", "\u2028",
                     "DROPPED", "policy-verdict:none", "k8s:app=web", "😀"]),
    st.text(max_size=12))
_U32 = st.one_of(st.sampled_from([0, 1, 2, 4, 53, 8080, 65535, 65536, 2**31, 2**32 - 1]),
                 st.integers(0, 2**32 - 1))
_SMALL = st.integers(0, 300)


def _mostly(draw: Any, usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> Any:
    """A value of `usual` about nine times in ten (hypothesis would favour extremes)."""
    return draw(rare if draw(st.integers(0, 9)) == 9 else usual)


@st.composite
def responses(draw: Any) -> observer_pb2.GetFlowsResponse:
    r = observer_pb2.GetFlowsResponse()
    kind = draw(st.sampled_from(["flow"] * 20 + ["lost", "status", "empty"]))
    if draw(st.booleans()):
        r.node_name = draw(_TEXT)
    if draw(st.booleans()):
        r.time.seconds = draw(st.integers(-2**40, 2**40))
        r.time.nanos = draw(st.integers(0, 999_999_999))
    if kind == "lost":
        r.lost_events.source = draw(st.integers(0, 5))
        r.lost_events.num_events_lost = draw(st.integers(0, 2**64 - 1))
        if draw(st.booleans()):
            r.lost_events.cpu.value = draw(st.integers(-5, 2**31 - 1))
        return r
    if kind == "status":
        r.node_status.state_change = draw(st.integers(0, 5))
        r.node_status.node_names.extend(draw(st.lists(_TEXT, max_size=3)))
        return r
    if kind == "empty":
        return r
    f = r.flow
    if draw(st.integers(0, 9)):  # mostly times a frame holds, sometimes any
        f.time.seconds = draw(st.integers(1_500_000_000, 2_000_000_000)
                              if draw(st.integers(0, 5)) else st.integers(-2**62, 2**62))
        f.time.nanos = draw(st.integers(0, 999_999_999))
    f.uuid = draw(_TEXT)
    f.verdict = draw(st.integers(0, 9))
    f.drop_reason = draw(st.sampled_from([0, 133, 181, 999]))
    f.drop_reason_desc = draw(st.sampled_from([0, 133, 181, 205, 999]))
    f.auth_type = draw(st.integers(0, 3))
    if draw(st.booleans()):
        f.IP.source = draw(_TEXT)
        f.IP.destination = draw(_TEXT)
        f.IP.ipVersion = draw(st.integers(0, 3))
        f.IP.encrypted = draw(st.booleans())
        f.IP.source_xlated = draw(_TEXT)
    protocol = draw(st.sampled_from(["TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6", "VRRP", "IGMP",
                                     None]))
    if protocol in ("TCP", "UDP", "SCTP"):
        body = getattr(f.l4, protocol)
        body.source_port = _mostly(draw, st.integers(0, 65535), _U32)
        body.destination_port = _mostly(draw, st.integers(0, 65535), _U32)
        if protocol == "TCP":
            for flag in ("SYN", "ACK", "FIN", "RST", "PSH"):
                setattr(body.flags, flag, draw(st.booleans()))
    elif protocol is not None:  # ICMP, VRRP, IGMP
        getattr(f.l4, protocol).type = draw(_SMALL)
    for ep in (f.source, f.destination):
        if draw(st.booleans()):
            ep.identity = _mostly(draw, st.integers(0, 12), _U32)
            ep.namespace = draw(_TEXT)
            ep.pod_name = draw(_TEXT)
            ep.cluster_name = draw(_TEXT)
            ep.labels.extend(draw(st.lists(_TEXT, max_size=3)))
            for _ in range(draw(st.integers(0, 2))):
                w = ep.workloads.add()
                w.name, w.kind = draw(_TEXT), draw(_TEXT)
    f.Type = draw(st.integers(0, 3))
    f.node_name = draw(_TEXT)
    f.node_labels.extend(draw(st.lists(_TEXT, max_size=2)))
    f.source_names.extend(draw(st.lists(_TEXT, max_size=2)))
    f.destination_names.extend(draw(st.lists(_TEXT, max_size=2)))
    if draw(st.integers(0, 3)) == 0:
        f.l7.type = draw(st.integers(0, 4))
        f.l7.latency_ns = draw(st.integers(0, 2**64 - 1))
        record = draw(st.sampled_from(["dns", "http", "kafka", None]))
        if record == "dns":
            f.l7.dns.query = draw(_TEXT)
            f.l7.dns.ips.extend(draw(st.lists(_TEXT, max_size=2)))
            f.l7.dns.qtypes.extend(draw(st.lists(_TEXT, max_size=2)))
            f.l7.dns.rcode = _mostly(draw, st.sampled_from([0, 3]), st.just(40000))
            f.l7.dns.observation_source = draw(_TEXT)
        elif record == "http":
            f.l7.http.code = _mostly(draw, st.sampled_from([0, 200, 404]), st.just(40000))
            f.l7.http.method = draw(_TEXT)
            f.l7.http.url = draw(_TEXT)
            f.l7.http.protocol = draw(_TEXT)
            for _ in range(draw(st.integers(0, 2))):
                h = f.l7.http.headers.add()
                h.key, h.value = draw(_TEXT), draw(_TEXT)
        elif record == "kafka":
            f.l7.kafka.topic = draw(_TEXT)
    if draw(st.booleans()):
        f.is_reply.value = draw(st.booleans())
    if draw(st.integers(0, 5)):
        f.event_type.type = _mostly(draw, st.sampled_from([1, 3, 4, 5, 7, 129]), st.just(40000))
        f.event_type.sub_type = _mostly(draw, st.sampled_from([0, 1, 3, 133, 255]),
                                        st.just(40000))
    for svc in (f.source_service, f.destination_service):
        if draw(st.integers(0, 3)) == 0:
            svc.name, svc.namespace = draw(_TEXT), draw(_TEXT)
    f.traffic_direction = draw(st.integers(0, 3))
    f.policy_match_type = draw(st.integers(0, 9))
    f.trace_observation_point = draw(st.sampled_from([0, 1, 5, 101, 300]))
    f.debug_capture_point = draw(st.integers(0, 3))
    f.sock_xlate_point = draw(st.integers(0, 5))
    if draw(st.integers(0, 4)) == 0:
        f.ip_trace_id.trace_id = draw(st.integers(0, 2**64 - 1))
    if draw(st.integers(0, 4)) == 0:
        f.interface.index = draw(_U32)
        f.interface.name = draw(_TEXT)
    if draw(st.integers(0, 4)) == 0:
        f.trace_context.parent.trace_id = draw(_TEXT)
    f.socket_cookie = draw(st.integers(0, 2**64 - 1))
    f.Summary = draw(_TEXT)
    for policies in (f.ingress_allowed_by, f.egress_allowed_by, f.ingress_denied_by,
                     f.egress_denied_by):
        for _ in range(draw(st.integers(0, 2))):
            p = policies.add()
            p.name, p.kind, p.namespace = draw(_TEXT), draw(_TEXT), draw(_TEXT)
            p.revision = draw(st.integers(0, 9))
    return r


def _outcome(fn: Any) -> Any:
    """What fn returns, or the type of the error it reports (both paths must agree on
    either); anything else raised is a crash, on both paths or not."""
    try:
        return ("ok", fn())
    except FlowlensError as exc:  # the error itself is what is compared
        return ("raised", type(exc))


def _frames(payloads: list[bytes], fast_path: bool) -> Any:
    return _outcome(lambda: frame_of(decode(payloads, 7, fast=fast_path)))


def assert_same_frames(payloads: list[bytes]) -> None:
    got, want = _frames(payloads, True), _frames(payloads, False)
    assert got[0] == want[0], (got, want)
    if got[0] == "ok":
        pd.testing.assert_frame_equal(got[1], want[1])
        assert got[1].attrs == want[1].attrs
    else:
        assert got[1] is want[1]


def assert_same_jsonpb(module: Any, payloads: list[bytes]) -> None:
    lines = module.jsonpb(payloads, fast.message_index(RESPONSE))
    for line, payload in zip(lines, payloads, strict=True):
        if line is None:
            continue
        reference = encode_response_bytes(message_to_dict(
            observer_pb2.GetFlowsResponse.FromString(payload))) + b"\n"
        assert line == reference


def assert_same_text(payloads: list[bytes]) -> None:
    try:
        decoded = decode(payloads, 5, fast=True)
    except Exception:  # the frames test holds the error to the reference's
        return
    for fmt, options in VARIANTS[:8]:
        got = fast_text(decoded, fmt, options)
        if got is not None:
            assert got == reference_text(payloads, fmt, options), (fmt, options)


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(st.lists(responses(), max_size=12))
def test_generated_flows_decode_and_render_as_the_reference(messages: list[Any]) -> None:
    payloads = [m.SerializeToString() for m in messages]
    assert_same_frames(payloads)
    assert_same_jsonpb(fast.native(proto=True), payloads)
    assert_same_text(payloads)


def _mutations(valid: list[bytes]) -> st.SearchStrategy[bytes]:
    """Valid responses cut, flipped, spliced and padded, and plain noise."""
    base = st.sampled_from(valid)
    cut = st.tuples(base, st.integers(0, 800)).map(lambda t: t[0][:t[1]])
    flip = st.tuples(base, st.integers(0, 2000), st.integers(1, 255)).map(
        lambda t: t[0][:t[1]] + bytes([t[0][t[1] % max(len(t[0]), 1)] ^ t[2]])
        + t[0][t[1] + 1:] if t[0] else t[0])
    splice = st.tuples(base, st.integers(0, 800), st.binary(max_size=12)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:])
    return st.one_of(cut, flip, splice, st.binary(max_size=64))


VALID = lab_payloads()[:200:7]


@SETTINGS
@given(st.lists(_mutations(VALID), min_size=1, max_size=6))
def test_hostile_bytes_get_the_reference_answer(payloads: list[bytes]) -> None:
    assert_same_frames(payloads)
    assert_same_jsonpb(fast.native(proto=True), payloads)
    assert_same_text(payloads)


# --- jsonpb files ---------------------------------------------------------------------------


def _read(data: bytes, tmp: Path, fast_path: bool) -> Any:
    """(frame, what the read report says), or the type of what the read raised."""
    path = tmp / "flows.jsonpb"
    path.write_bytes(data)
    report = flowlens.ReadReport()
    saved = jsonpb_reader.native
    if not fast_path:
        jsonpb_reader.native = lambda: None  # type: ignore[assignment]
    try:
        return _outcome(lambda: (flowlens.read(path, report=report), report.bad_lines,
                                 report.examples, report.truncated, report.other_records))
    finally:
        jsonpb_reader.native = saved


def _assert_same_outcome(got: Any, want: Any) -> None:
    """The fast path's read equals the reference's: the same frame, attrs and bad lines, or
    the same exception."""
    assert got[0] == want[0], (got, want)
    if got[0] == "raised":
        assert got[1] is want[1]
        return
    pd.testing.assert_frame_equal(got[1][0], want[1][0])
    assert got[1][0].attrs == want[1][0].attrs
    assert got[1][1:] == want[1][1:]


def assert_same_read(data: bytes, tmp: Path) -> None:
    _assert_same_outcome(_read(data, tmp, True), _read(data, tmp, False))


JSONPB_FILES = [ROOT / "samples" / "lab.jsonpb", *SHARED_CAPTURES,
                RENDERINGS / "coverage.hubble-jsonpb.jsonl", *OTEL]


@pytest.mark.parametrize("path", JSONPB_FILES, ids=lambda p: p.name)
def test_jsonpb_files_read_as_the_reference_reads_them(path: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []
    block = jsonpb_reader._fast_block

    def spy(*args: Any) -> Any:
        batch = block(*args)
        taken.append(batch is not None)
        return batch

    monkeypatch.setattr(jsonpb_reader, "_fast_block", spy)
    assert_same_read(path.read_bytes(), tmp_path)
    assert taken and all(taken), "the fast path left a block of a clean capture to the reference"


def test_a_fresh_process_reads_jsonpb_by_the_fast_path() -> None:
    """The jsonpb splitter needs no protobuf descriptor tables: reading a file first works."""
    probe = ("import flowlens; from flowlens.sources import jsonpb as j; taken = []; b = "
             "j._fast_block; j._fast_block = lambda *a: taken.append(b(*a)) or taken[-1]; "
             "flowlens.read(__import__('sys').argv[1]); "
             "print(len(taken), sum(t is not None for t in taken))")
    done = subprocess.run([sys.executable, "-c", probe, str(ROOT / "samples" / "lab.jsonpb")],
                          capture_output=True, text=True, check=True)
    blocks, fast_blocks = map(int, done.stdout.split())
    assert blocks and fast_blocks == blocks


_JSON_EDITS = st.sampled_from([
    (b'"uuid":"', b'"uuid":"\\u00e9\\n'), (b'"source":"', b'"source":"\\ud83d\\ude00'),
    (b'":', b'" :'), (b',"', b', "'), (b'{"flow":{', b'{"flow":{"time":"x",'),
    (b'"source_port":', b'"source_port":-'), (b'"destination_port":', b'"destination_port":7'),
    (b'"time":"2', b'"time":"1'), (b'Z"', b'+00:00"'), (b'"l7":{', b'"l7":{"type":"RESPONSE",'),
    (b'"code":', b'"code":4'), (b'"latency_ns":"', b'"latency_ns":"0'),
    (b'"flow":', b'"lost_events":{"num_events_lost":"3"},"flow":'), (b'"IP":{', b'"IP":null,"x":{'),
    (b'"uuid":', b'"uuid":1,"y":'), (b'"TCP":{', b'"UDP":{},"TCP":{'), (b'true', b'"true"'),
    (b'"Summary":"', b'"Summary":"\\u001b\\r'), (b'\n', b'\n\n'), (b'\n', b'\r\n'),
    (b'"trace_context":', b'"trace_context":{},"z":'), (b'"qtypes":[', b'"qtypes":[null,'),
])


def _edited(draw: Any, data: bytes, edits: Any) -> bytes:
    """`data` with up to three of `edits` applied where drawn, and now and then some noise."""
    for old, new in draw(st.lists(edits, max_size=3)):
        at = data.find(old, draw(st.integers(0, max(len(data) - 1, 0))))
        if at >= 0:
            data = data[:at] + new + data[at + len(old):]
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=6)) + data[at:]
    return data


@st.composite
def jsonpb_lines(draw: Any) -> bytes:
    lines = []
    for message in draw(st.lists(responses(), min_size=1, max_size=8)):
        try:  # (times hubble cannot print as RFC 3339 have no jsonpb)
            lines.append(encode_response_bytes(message_to_dict(message)) + b"\n")
        except (ValueError, OSError, OverflowError):
            continue
    data = b"".join(lines)
    return _edited(draw, data, _JSON_EDITS)


@SETTINGS
@given(jsonpb_lines())
def test_generated_and_hostile_jsonpb_reads_as_the_reference(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        assert_same_read(data, Path(tmp))


# --- tail of a jsonpb file: printed from C runs, against the frame path ----------------------


def _tail(path: Path, args: list[str], *, from_runs: bool,
          monkeypatch: pytest.MonkeyPatch) -> tuple[int, bytes, str, Any]:
    """`flowlens tail --input-file path args` in this process: exit code, stdout, stderr, and
    what it printed from C runs (without a frame; None: nothing)."""
    from click.testing import CliRunner

    from flowlens import cli

    taken = []
    without_frame = cli._tail_without_frame

    def spy(*a: Any, **k: Any) -> Any:
        printed = without_frame(*a, **k) if from_runs else None
        taken.append(printed)
        return printed

    with monkeypatch.context() as m:
        m.setattr(cli, "_tail_without_frame", spy)
        done = CliRunner().invoke(cli.main, ["tail", "--input-file", str(path), *args])
    return done.exit_code, done.stdout_bytes, done.stderr, next(filter(None, taken), None)


def assert_tail_as_the_frame_path(path: Path, args: list[str],
                                  monkeypatch: pytest.MonkeyPatch) -> bool:
    """The same exit code and output both ways; whether the C runs printed all of it."""
    return _printed_from_runs(path, args, monkeypatch) == "all"


def _printed_from_runs(path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The same exit code and output both ways; what the C runs printed: "all", "part" (the
    frame path the rest) or "none"."""
    *got, printed = _tail(path, args, from_runs=True, monkeypatch=monkeypatch)
    *want, _ = _tail(path, args, from_runs=False, monkeypatch=monkeypatch)
    assert got == want, args
    return "none" if printed is None else "all" if printed.whole else "part"


TAIL_ARGS = [["--last", "5"], [], ["--first", "7", "-o", "dict"], ["--last", "40", "-o", "table"],
             ["--last", "0"], ["--first", "1", "--print-node-name", "--numeric"],
             ["-o", "jsonpb"], ["--last", "3", "-o", "jsonpb"],
             ["--last", "30", "--print-policy-names", "--time-format", "RFC3339Nano", "-o", "dict"]]


@pytest.mark.parametrize("path", JSONPB_FILES, ids=lambda p: p.name)
def test_tail_of_jsonpb_files_prints_what_the_frame_path_prints(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = [assert_tail_as_the_frame_path(path, args, monkeypatch) for args in TAIL_ARGS]
    if path.name != "coverage.jsonl":  # (node status records: a frame reads those)
        assert all(taken), "a clean capture was left to the frame path"


@pytest.fixture(scope="module")
def long_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Over 8,192 lines (two blocks), with lost events here and there, one the very first."""
    lines = (ROOT / "samples" / "lab.jsonpb").read_bytes().splitlines(keepends=True) * 3
    lost = (RENDERINGS / "coverage.hubble-jsonpb.jsonl").read_bytes().splitlines(keepends=True)
    lost = [line for line in lost if line.startswith(b'{"lost_events"')]
    assert lost
    for at in (0, 1, 2_999, 8_191, 8_192, 9_000, len(lines)):
        lines.insert(at, lost[at % len(lost)])
    path = tmp_path_factory.mktemp("long") / "long.jsonpb"
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize("args", [
    ["--last", "9000"], ["--last", "1"], ["--last", "1700"], ["--first", "8193"],
    ["--first", "1"], ["--first", "3000", "-o", "dict"], ["--last", "8200", "-o", "table"],
    ["--last", "8199", "-o", "jsonpb"],
    ["--last", "20000"], [],
])
def test_tail_cuts_runs_at_any_record(long_capture: Path, args: list[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert assert_tail_as_the_frame_path(long_capture, args, monkeypatch)


def test_tail_of_many_records_prints_them_block_by_block(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every record of a file prints from runs block by block, any number; --first/--last N
    and tables (held until printed) up to MOST records, past them the frame path prints."""
    from flowlens.sources.jsonpb_runs import MOST

    lines = (ROOT / "samples" / "lab.jsonpb").read_bytes().splitlines(keepends=True)
    path = tmp_path / "many.jsonpb"
    path.write_bytes(b"".join(lines * (MOST // len(lines) + 1)))
    assert assert_tail_as_the_frame_path(path, [], monkeypatch)
    assert not assert_tail_as_the_frame_path(path, ["-o", "table"], monkeypatch)
    assert not assert_tail_as_the_frame_path(path, ["--last", str(MOST + 1)], monkeypatch)
    assert assert_tail_as_the_frame_path(path, ["--last", str(MOST)], monkeypatch)


def _hostile_capture(long_capture: Path, tmp_path: Path, at: int, line: bytes) -> Path:
    lines = long_capture.read_bytes().splitlines(keepends=True)
    lines.insert(at, line)
    path = tmp_path / "hostile.jsonpb"
    path.write_bytes(b"".join(lines))
    return path


_NODE_STATUS = (b'{"node_status":{"state_change":"NODE_CONNECTED","node_names":["n1"],'
                b'"message":"m"},"node_name":"n1","time":"2026-07-01T08:10:00Z"}\n')


@pytest.mark.parametrize("line", [b"not json\n", b'{"flow": {"time": "never"}}\n', _NODE_STATUS,
                                  b'{"flow": {"verdict": "FORWARDED", "x": "' + b"y" * 5000
                                  + b'"}}\n'],
                         ids=["not-json", "bad-time", "node-status", "long-line"])
@pytest.mark.parametrize("at", [0, 1, 4_000, 9_699])
@pytest.mark.parametrize("args", [[], ["-o", "dict"], ["-o", "jsonpb"],
                                  ["--print-node-name", "--numeric"]], ids=" ".join)
def test_a_block_only_a_frame_reads_takes_over_where_runs_stop(
        long_capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: bytes,
        at: int, args: list[str]) -> None:
    """Blocks before one only the frame path reads print from runs; the frame path prints
    the rest as it would: the same records, separators, bad-line numbers and summary."""
    from flowlens.sources import jsonpb_runs

    path = _hostile_capture(long_capture, tmp_path, at, line)
    monkeypatch.setattr(jsonpb_runs, "_BLOCK_LINES", 1_000)
    printed = _printed_from_runs(path, [*args, "--max-line-size", "4KiB"], monkeypatch)
    assert printed == ("none" if at < 1_000 else "part")


def test_a_gzip_file_hands_over_to_the_frame_path_too(
        long_capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from flowlens.sources import jsonpb_runs

    hostile = _hostile_capture(long_capture, tmp_path, 5_000, b"not json\n")
    path = tmp_path / "hostile.jsonpb.gz"
    path.write_bytes(gzip.compress(hostile.read_bytes()))
    monkeypatch.setattr(jsonpb_runs, "_BLOCK_LINES", 1_000)
    assert _printed_from_runs(path, ["-o", "dict"], monkeypatch) == "part"


def test_tail_of_a_large_file_holds_a_block_at_a_time(tmp_path: Path) -> None:
    """Printed block by block: a file ten times larger takes about the same memory."""
    from process_limits import peak_rss_mb

    lines = (ROOT / "samples" / "lab.jsonpb").read_bytes().splitlines(keepends=True)
    peaks = []
    for copies in (1, 12):  # 4.4 and 53 MB
        path = tmp_path / f"x{copies}.jsonpb"
        path.write_bytes(b"".join(lines) * copies)
        done, peak = peak_rss_mb([sys.executable, "-m", "flowlens", "tail", "--input-file",
                                  str(path)], timeout=120)
        assert done.returncode == 0 and done.stdout.count("\n") == len(lines) * copies
        peaks.append(peak)
    assert peaks[1] - peaks[0] < 25, peaks


@SETTINGS
@given(jsonpb_lines(), st.sampled_from(TAIL_ARGS))
def test_tail_of_generated_and_hostile_jsonpb_is_the_frame_paths(data: bytes,
                                                                 args: list[str]) -> None:
    from flowlens.sources import jsonpb_runs

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as monkeypatch:
        path = Path(tmp) / "flows.jsonpb"
        path.write_bytes(data)
        monkeypatch.setattr(jsonpb_runs, "_BLOCK_LINES", 3)  # (the frame path takes over anywhere)
        assert_tail_as_the_frame_path(path, args, monkeypatch)


# --- the command: the fast path against FLOWLENS_NATIVE=0, from a relay ------------------------


@pytest.fixture(scope="module")
def relay() -> Iterator[str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listen = f"127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "flowlens", "relay",
                             str(RENDERINGS / "coverage.jsonl"), "--listen", listen],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    assert "serving" in proc.stderr.readline()
    yield listen
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.parametrize("args", [
    ["--all", "-o", "compact"], ["--all", "-o", "dict"], ["--all", "-o", "table"],
    ["--all", "-o", "jsonpb"],
    ["--all", "--print-node-name", "--print-policy-names", "--time-format", "RFC3339"],
    ["--all", "-o", "dict", "--numeric"], ["--last", "7", "-o", "dict"],
])
def test_tail_prints_what_the_reference_path_prints(relay: str, args: list[str],
                                                    tmp_path: Path) -> None:
    outputs = []
    for switch in ("1", "0"):
        save = tmp_path / f"save-{switch}.jsonpb"
        done = subprocess.run([sys.executable, "-m", "flowlens", "tail", "--server", relay, *args,
                               "--save", str(save)], capture_output=True, check=True,
                              env={**os.environ, "FLOWLENS_NATIVE": switch})
        outputs.append((done.stdout, save.read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][0] and outputs[0][1]


def test_tail_from_a_relay_loads_no_pandas(relay: str) -> None:
    """The fast path prints without a frame: pandas, pyarrow and numpy stay unloaded."""
    probe = ("import sys, contextlib, io; from flowlens.cli import main\n"
             "with contextlib.redirect_stdout(io.TextIOWrapper(io.BytesIO())):\n"
             "    try: main(sys.argv[1:])\n"
             "    except SystemExit: pass\n"
             "print(sorted({'pandas', 'pyarrow', 'numpy'} & set(sys.modules)))")
    for fmt in ("compact", "dict", "jsonpb"):
        done = subprocess.run([sys.executable, "-c", probe, "tail", "--server", relay, "--all",
                               "-o", fmt], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "[]", (fmt, done.stdout, done.stderr[-500:])


# --- hubble's compact text ----------------------------------------------------------------

COMPACT_FILES = [ROOT / "samples" / "lab.compact.txt",
                 *sorted(RENDERINGS.glob("*.compact*.txt")),
                 *sorted((SHARED / "real-flows" / "rendered").glob("*compact*.txt"))]


def _read_compact(data: bytes, tmp: Path, fast_path: bool) -> Any:
    path = tmp / "flows.txt"
    path.write_bytes(data)
    report = flowlens.ReadReport()
    saved = text_reader.native
    if not fast_path:
        text_reader.native = lambda: None  # type: ignore[assignment]
    try:
        return _outcome(lambda: (flowlens.read(path, report=report, year=2026,
                                               input_format="compact"),
                                 report.bad_lines, report.examples, report.truncated,
                                 report.other_records))
    finally:
        text_reader.native = saved


def assert_same_compact(data: bytes, tmp: Path) -> None:
    _assert_same_outcome(_read_compact(data, tmp, True), _read_compact(data, tmp, False))


@pytest.mark.parametrize("path", COMPACT_FILES, ids=lambda p: p.name)
def test_compact_files_read_as_the_reference_reads_them(path: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []
    convert = text_reader._Converter.convert_keys

    def spy(self: Any, keys: Any) -> Any:
        chunk = convert(self, keys)
        taken.append(chunk is not None)
        return chunk

    monkeypatch.setattr(text_reader._Converter, "convert_keys", spy)
    assert_same_compact(path.read_bytes(), tmp_path)
    assert taken and all(taken), "the C tokenizer left a block of clean text to the regex"


# Edits of rendered lines toward what the tokenizer must refuse or take exactly as the regex:
# Python's other spaces and digits, identities, carriage returns, lost events, other times.
_TEXT_EDITS = st.sampled_from([
    (b":", b":\\xc2\\xa0"), (b" ", b"\\xe2\\x80\\x83"), (b" ", b"\\x1f"), (b"(ID:", b"(ID:\\xd9\\xa1"),
    (b"(ID:", b"(id:"), (b"(", b"(x-1"), (b")\\n", b")\\r\\n"), (b")\\n", b") \\r\\n"),
    (b"\\n", b"\\r\\r\\n"), (b" -> ", b" <> "), (b" -> ", b" => "), (b": ", b" [node-1]: "),
    (b"Jul  1", b"2026-07-01T08"), (b".", b".\\xd9\\xa3"), (b".", b".1234567890"),
    (b"\\n", b"\\nJul  1 08:00:00.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 5\\r\\n"),
    (b"\\n", b"\\nN/A: a (world) -> b (host) to-stack FORWARDED ()\\n"), (b"\\n", b"\\n\\n"),
    (b"FORWARDED", b"FORWARDED BY default/x (NetworkPolicy)"), (b")", b"))"),
    (b" (", b"\\xe3\\x80\\x80("), (b"default", b"d\\xc3\\xa9faut"),
])


@st.composite
def compact_text(draw: Any) -> bytes:
    messages = draw(st.lists(responses(), min_size=1, max_size=8))
    try:
        df = frame_of(decode([m.SerializeToString() for m in messages], 8, fast=False))
    except Exception:  # (flows the reference itself refuses have no text)
        df = frame_of(decode(lab_payloads()[:8], 8, fast=False))
    data = "".join(text.compact(df)).encode()
    return _edited(draw, data, _TEXT_EDITS)


@SETTINGS
@given(compact_text())
def test_generated_and_hostile_compact_text_reads_as_the_reference(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        assert_same_compact(data, Path(tmp))
