"""Readers never raise on random or mutated lines, and account for every non-blank line: it is
read (a flow or a lost event) or counted as bad or truncated."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlens.sources.batch import ReadReport
from flowlens.sources.files import Opened
from flowlens.sources.jsonpb import read_jsonpb
from flowlens.sources.text import read_text

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "reference-renderings"
COMPACT = (SHARED / "coverage.compact.txt").read_bytes().splitlines(keepends=True)[:300]
JSONPB = (SHARED / "coverage.jsonl").read_bytes().splitlines(keepends=True)[:300]


@st.composite
def mutated(draw: st.DrawFn, lines: list[bytes]) -> bytes:
    line = bytearray(draw(st.sampled_from(lines)).rstrip(b"\n"))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["cut", "insert", "delete", "flip"]))
        if not line:
            break
        at = draw(st.integers(0, len(line) - 1))
        if kind == "cut":
            del line[at:]
        elif kind == "insert":
            line[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del line[at]
        else:
            line[at] = draw(st.integers(0, 255))
    return bytes(line).replace(b"\n", b" ") + b"\n"


def _account(data: bytes, read: str) -> None:
    report = ReadReport()
    opened = Opened("input", io.BufferedReader(io.BytesIO(data)), None)  # type: ignore[arg-type]
    if read == "jsonpb":
        batches = list(read_jsonpb(opened, report))
    else:
        batches = list(read_text(opened, report, read, year=2026))
    got = sum(b.size + len(b.lost_events) for b in batches)
    lines = [line for line in data.split(b"\n") if line.strip()]
    assert got + report.bad_lines + len(report.truncated) + report.other_records == len(lines)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(mutated(COMPACT), st.sampled_from(COMPACT)), min_size=1, max_size=20))
def test_compact_reader_accounts_for_every_line(lines: list[bytes]) -> None:
    _account(b"".join(lines), "compact")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(mutated(JSONPB), st.sampled_from(JSONPB)), min_size=1, max_size=20))
def test_jsonpb_reader_accounts_for_every_line(lines: list[bytes]) -> None:
    _account(b"".join(lines), "jsonpb")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    for fmt in ("jsonpb", "compact"):
        report = ReadReport()
        opened = Opened("input", io.BufferedReader(io.BytesIO(data)), None)  # type: ignore[arg-type]
        reader = (read_jsonpb(opened, report) if fmt == "jsonpb"
                  else read_text(opened, report, fmt, year=2026))
        for _ in reader:
            pass
