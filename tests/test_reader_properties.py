"""Readers never raise on damaged input, and account for every record.

Real lines from ../shared (hubble's own renderings and jsonpb), mutated — truncated, characters
inserted or deleted, random bytes — and random lines go to the compact, dict and table readers
and to the jsonpb reader. Each must not raise (the frame must build too), and each record must
come out exactly once: as a flow or a lost event, or counted in `report.bad_lines`,
`report.truncated` or `report.other_records`. A record is a non-blank line (compact, table rows,
jsonpb) or a block of `LABEL: value` lines (dict). Real records left intact must still be read.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shared_data import SHARED

from flowlens.frame import build, lost_events
from flowlens.sources.batch import FlowBatch, ReadReport
from flowlens.sources.files import Opened
from flowlens.sources.jsonpb import read_jsonpb
from flowlens.sources.text import read_text

REFERENCE = SHARED / "reference-renderings"
REAL = SHARED / "real-flows"

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _sample(path: Path, step: int = 7) -> list[bytes]:
    """Every `step`-th line: all kinds of records, few enough to draw from quickly."""
    return path.read_bytes().splitlines()[::step]


COMPACT = (_sample(REFERENCE / "coverage.compact.txt")
           + _sample(REFERENCE / "coverage.compact-node-name.txt", 31)
           + _sample(REFERENCE / "coverage.compact-policy-names.txt", 31)
           + _sample(REFERENCE / "coverage.compact-rfc3339milli.txt", 31)
           + _sample(REAL / "rendered" / "all.compact-rfc3339nano.txt", 31)
           + [b"Jan  1 00:20:34.567 EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1 (first: "
              b"Jan  1 00:20:30.567, last: Jan  1 00:20:38.567)",
              b"Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) -> [fd00::2]:8080 (ID:12345) "
              b"Policy denied DROPPED (IP Trace ID: 1234; TCP Flags: SYN; Auth: SPIRE)",
              b"Jan  2 12:51:20.053: 00:01:02:03:04:05 (unknown) <> fd00::2 (ID:1) "
              b"DBG_CAPTURE_FROM_LB FORWARDED (Kafka ^[[30m\\r)"])
DICT_SEPARATOR = b"-" * 12
DICT_BLOCKS = [block.strip(b"\n").split(b"\n") for block in
               (REFERENCE / "coverage.dict.txt").read_bytes().split(DICT_SEPARATOR + b"\n")[::5]]
_TABLE = (REFERENCE / "coverage.table.txt").read_bytes().splitlines()
TABLE_HEADER, TABLE_ROWS = _TABLE[0], _TABLE[1::5]
JSONPB = (_sample(REFERENCE / "coverage.jsonl", 13)
          + _sample(REAL / "hubble-otel" / "basic-sample-400-l7-redirected-flows.json", 13))


# --- inputs -------------------------------------------------------------------------------------

# Characters that mean something to the grammars, and random bytes.
_TEXT_NOISE = st.text(alphabet=" :()[]/,.-<>\t\r\x1b^\\\"{}0123456789ABZ\u00e9\u2028",
                      min_size=1, max_size=6).map(str.encode)
_NOISE = st.one_of(st.binary(min_size=1, max_size=8), _TEXT_NOISE)


@st.composite
def mutated(draw: st.DrawFn, line: bytes) -> bytes:
    """The line cut short, with bytes inserted, deleted or overwritten, or left as it is."""
    kind = draw(st.sampled_from(["truncate", "insert", "delete", "overwrite", "keep"]))
    at = draw(st.integers(0, len(line)))
    if kind == "truncate":
        return line[:at]
    if kind == "insert":
        return line[:at] + draw(_NOISE) + line[at:]
    if kind == "delete":
        return line[:at] + line[at + draw(st.integers(1, 12)):]
    if kind == "overwrite":
        patch = draw(_NOISE)
        return line[:at] + patch + line[at + len(patch):]
    return line


@st.composite
def document(draw: st.DrawFn, records: list[list[bytes]],
             joiner: bytes = b"") -> tuple[bytes, int]:
    """Some records, each intact or with one line mutated, plus random lines; returns the bytes
    and how many records were left intact."""
    chosen = draw(st.lists(st.sampled_from(records), min_size=1, max_size=12))
    out: list[bytes] = []
    intact = 0
    for lines in chosen:
        lines = list(lines)
        if draw(st.booleans()):
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = draw(mutated(lines[i]))
        else:
            intact += 1
        out.append(b"\n".join(lines))
        if draw(st.integers(0, 5)) == 0:
            out.append(b"".join(draw(st.lists(_NOISE, max_size=6))).replace(b"\n", b""))
    data = (b"\n" + joiner).join(out) + b"\n"
    if draw(st.booleans()):
        data = data[:-1]  # a last line without newline
    return data, intact


# --- reading --------------------------------------------------------------------------------------


def _read(reader: Callable[[Opened, ReadReport], Iterator[FlowBatch]],
          data: bytes) -> tuple[int, int, ReadReport]:
    """Flows and lost events read, and the report; the frames are built to check they build."""
    report = ReadReport()
    opened = Opened("t", io.BufferedReader(io.BytesIO(data)), None)
    flows = lost = 0
    for batch in reader(opened, report):
        frame = build(batch)
        flows += len(frame)
        lost += len(lost_events(frame))
    return flows, lost, report


def _text(fmt: str) -> Callable[[Opened, ReadReport], Iterator[FlowBatch]]:
    return lambda opened, report: read_text(opened, report, fmt, year=2026, batch_size=7)


def _jsonpb(opened: Opened, report: ReadReport) -> Iterator[FlowBatch]:
    return read_jsonpb(opened, report, batch_size=7)


def _accounted(report: ReadReport) -> int:
    return report.bad_lines + len(report.truncated) + report.other_records


def _lines(data: bytes) -> list[str]:
    """The lines as the text readers see them: split at LF, decoded, without CR or BOM."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    text = [line.decode("utf-8", "replace").removesuffix("\r") for line in lines]
    if text:
        text[0] = text[0].removeprefix("\ufeff")
    return text


def _blank(line: str) -> bool:
    return not line or line.isspace()


# --- compact --------------------------------------------------------------------------------------


@SETTINGS
@given(document([[line] for line in COMPACT]))
def test_compact_reads_or_reports_every_line(doc: tuple[bytes, int]) -> None:
    data, intact = doc
    flows, lost, report = _read(_text("compact"), data)
    records = sum(not _blank(line) for line in _lines(data))
    assert flows + lost + _accounted(report) == records, report.summary_lines()
    assert flows + lost >= intact


@SETTINGS
@given(st.lists(st.text(max_size=60), max_size=20), st.booleans())
def test_compact_random_text(lines: list[str], newline_at_end: bool) -> None:
    data = "\n".join(lines).encode() + (b"\n" if newline_at_end else b"")
    flows, lost, report = _read(_text("compact"), data)
    assert flows + lost + _accounted(report) == sum(not _blank(x) for x in _lines(data))


# --- dict -------------------------------------------------------------------------------------------

_DICT_TIMESTAMP = re.compile(r" *TIMESTAMP:")


def _dict_records(data: bytes) -> int:
    """Blocks: non-blank lines up to a separator line or to the next TIMESTAMP line."""
    blocks = 0
    open_block = False
    for line in _lines(data):
        if _blank(line):
            continue
        if line == DICT_SEPARATOR.decode():
            open_block = False
            continue
        if not open_block or _DICT_TIMESTAMP.match(line):
            blocks += 1
            open_block = True
    return blocks


@SETTINGS
@given(document(DICT_BLOCKS, DICT_SEPARATOR + b"\n"))
def test_dict_reads_or_reports_every_block(doc: tuple[bytes, int]) -> None:
    data, intact = doc
    flows, lost, report = _read(_text("dict"), data)
    assert flows + lost + _accounted(report) == _dict_records(data), report.summary_lines()
    assert flows + lost >= intact


# --- table ------------------------------------------------------------------------------------------

_TABLE_HEADER = re.compile(r"TIMESTAMP +(?:NODE +)?SOURCE +DESTINATION +TYPE +VERDICT +SUMMARY *")


@SETTINGS
@given(document([[row] for row in TABLE_ROWS]), st.booleans())
def test_table_reads_or_reports_every_row(doc: tuple[bytes, int], header: bool) -> None:
    data, intact = doc
    if header:
        data = TABLE_HEADER + b"\n" + data
    flows, lost, report = _read(_text("table"), data)
    rows = sum(not _blank(line) and not _TABLE_HEADER.fullmatch(line) for line in _lines(data))
    assert flows + lost + _accounted(report) == rows, report.summary_lines()
    if header:
        assert flows + lost >= intact


# --- jsonpb -----------------------------------------------------------------------------------------


@SETTINGS
@given(document([[line] for line in JSONPB]))
def test_jsonpb_reads_or_reports_every_line(doc: tuple[bytes, int]) -> None:
    data, intact = doc
    assume(not data.lstrip().startswith(b"["))  # that is a JSON array, read as a whole
    flows, lost, report = _read(_jsonpb, data)
    records = sum(line.strip() != b"" for line in data.split(b"\n"))  # lines end at LF only
    accounted = _accounted(report) + report.node_status_seen
    assert flows + lost + accounted == records, report.summary_lines()
    assert flows + lost >= intact


def test_jsonpb_invalid_utf8_inside_a_string_is_a_bad_line() -> None:
    line = JSONPB[0].replace(b'"source":"', b'"source":"\x80', 1)
    flows, lost, report = _read(_jsonpb, line + b"\n")
    assert (flows, lost, report.bad_lines) == (0, 0, 1)
