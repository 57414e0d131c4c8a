"""Memory and time stay bounded on endless or huge input: a line is capped (--max-line-size),
records that carry nothing are counted in bounded memory, stdin is read as a stream, and what a
read keeps beside the flows (node status, bad-line details) is bounded."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from process_limits import peak_rss_mb

import flowlens
from flowlens.errors import InputError
from flowlens.load import ReadOptions, iter_batches, load
from flowlens.sources import jsonpb as jsonpb_reader
from flowlens.sources.batch import MAX_NODE_STATUS, ReadReport
from flowlens.sources.files import DEFAULT_MAX_LINE, LineBlocks

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
LAB_TEXT = ROOT / "samples" / "lab.compact.txt"
FLOWLENS = [sys.executable, "-m", "flowlens"]
MIB = 1 << 20


def _lines(path: Path, n: int) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)[:n]


# --- the line cap -------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [LAB, LAB_TEXT], ids=["jsonpb", "compact"])
def test_a_line_over_the_cap_is_a_bad_line_read_through(tmp_path: Path, source: Path) -> None:
    first, second = _lines(source, 2)
    path = tmp_path / "long"
    path.write_bytes(first + b"x" * (DEFAULT_MAX_LINE + 10) + b"\n" + second)
    report = ReadReport()
    df = flowlens.read(path, report=report)
    assert len(df) == 2
    assert report.examples == [f"{path}:2: line longer than 16 MiB (--max-line-size)"]
    run = subprocess.run([*FLOWLENS, "tail", "--input-file", str(path), "--max-line-size",
                          "32MiB"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0
    assert "line longer than" not in run.stderr  # now read, and not a record
    assert f"skipped unreadable line {path}:2: " in run.stderr


def test_a_flow_just_under_the_cap_still_reads(tmp_path: Path) -> None:
    record = json.loads(_lines(LAB, 1)[0])
    record["flow"]["Summary"] = ""
    base = len(json.dumps(record).encode())
    record["flow"]["Summary"] = "s" * (MIB - base)
    under = json.dumps(record).encode()  # exactly the cap (the newline aside)
    record["flow"]["Summary"] += "s"
    over = json.dumps(record).encode()
    assert (len(under), len(over)) == (MIB, MIB + 1)
    path = tmp_path / "edge.jsonpb"
    path.write_bytes(b"\n".join([under, over, under]) + b"\n")
    options = ReadOptions(max_line=MIB)
    df, _ = load(path, options)
    assert len(df) == 2 and len(df["summary"][0]) == MIB - base
    assert options.report.examples == [f"{path}:2: line longer than 1 MiB (--max-line-size)"]


def test_max_line_size_is_range_checked() -> None:
    run = subprocess.run([*FLOWLENS, "tail", "--input-file", str(LAB), "--max-line-size", "12"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr == ("flowlens: error: invalid value '12' for --max-line-size: want a size "
                          "from 1KiB to 4GiB\n")


@pytest.mark.parametrize("fmt", ["jsonpb", "compact", "dict", "table"])
def test_an_endless_line_is_read_in_bounded_memory(fmt: str) -> None:
    """`tail --input-file /dev/zero` (one endless line) for some seconds, then killed."""
    run, peak = peak_rss_mb([*FLOWLENS, "tail", "--input-file", "/dev/zero", "--input-format",
                             fmt], timeout=8)
    assert run.returncode != 0  # killed: the line never ends
    assert peak < 400, f"peak RSS {peak:.0f} MB"


def test_line_blocks_keep_line_numbers_and_whole_lines() -> None:
    data = b"a\n" + b"x" * 5000 + b"\nbb\n" + b"y" * 3000 + b"\nlast"
    long_lines: list[int] = []
    blocks = list(LineBlocks(io.BufferedReader(io.BytesIO(data)), long_lines.append,
                             size=1024, max_line=2048))
    text = b"".join(b for b, _ in blocks)
    assert long_lines == [2, 4]
    assert text == b"a\n\nbb\n\nlast"
    assert [unterminated for _, unterminated in blocks][-1] is True
    assert all(b.endswith(b"\n") for b, last in blocks if not last)


def test_a_json_array_is_read_whole_up_to_its_cap(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "array.json"
    path.write_text("[" + ",".join(line.decode() for line in _lines(LAB, 50)) + "]")
    assert len(flowlens.read(path)) == 50
    monkeypatch.setattr(jsonpb_reader, "MAX_ARRAY", 1024)
    with pytest.raises(InputError, match=r"a JSON array larger than 1 MiB|larger than"):
        list(iter_batches(path, ReadOptions(max_line=1024)))


# --- records that carry nothing ------------------------------------------------------------------


def test_empty_records_are_bad_lines_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonpb"
    path.write_bytes(b"{}\n" * 300_000)
    run, peak = peak_rss_mb([*FLOWLENS, "tail", "--input-file", str(path)], timeout=300)
    assert run.returncode == 1
    assert run.stderr == f"flowlens: error: {path}: no line could be read\n"
    assert peak < 400, f"peak RSS {peak:.0f} MB"
    mixed = tmp_path / "mixed.jsonpb"
    mixed.write_bytes(b"".join(_lines(LAB, 3)) + b"{}\n" * 10 + b'{"foo": 1}\n')
    report = ReadReport()
    assert len(flowlens.read(mixed, report=report)) == 3
    assert report.bad_lines == 11
    assert report.examples[0] == (f"{mixed}:4: not a Hubble record (no flow, lost_events or "
                                  "node_status)")


def test_node_status_records_kept_are_bounded(tmp_path: Path) -> None:
    status = {"node_status": {"state_change": "NODE_CONNECTED", "node_names": ["n"]},
              "time": "2026-07-01T08:00:00Z"}
    path = tmp_path / "status.jsonpb"
    path.write_bytes(b"".join(_lines(LAB, 1)) + (json.dumps(status) + "\n").encode() * 5000)
    report = ReadReport()
    assert len(flowlens.read(path, report=report)) == 1
    assert report.node_status_seen == 5000
    assert len(report.node_status) == MAX_NODE_STATUS


# --- stdin as a stream --------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "fmt"), [(LAB, "compact"), (LAB_TEXT, "compact"),
                                             (LAB, "dict"), (LAB, "jsonpb"),
                                             (LAB_TEXT, "dict")])
def test_stdin_lines_are_printed_as_they_arrive(source: Path, fmt: str) -> None:
    """The first flow is printed while stdin is still open (the writer waits for it)."""
    tail = subprocess.Popen([*FLOWLENS, "tail", "--input-file", "-", "-o", fmt],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert tail.stdin is not None and tail.stdout is not None
    first = _lines(source, 1)[0]
    tail.stdin.write(first)
    tail.stdin.flush()
    printed: list[bytes] = []
    reader = threading.Thread(target=lambda: printed.append(tail.stdout.readline()))  # type: ignore
    reader.start()
    reader.join(timeout=120)
    try:
        assert printed and printed[0], "nothing printed before stdin ended"
        assert tail.poll() is None  # still reading
    finally:
        tail.stdin.close()
        tail.wait(timeout=60)
    assert tail.returncode == 0


@pytest.mark.parametrize("args", [["-o", "compact"], ["-o", "dict"], ["-o", "jsonpb"],
                                  ["--verdict", "DROPPED", "--print-node-name"],
                                  ["--since", "2026-07-01T08:10:00Z", "-o", "dict"]],
                         ids=["compact", "dict", "jsonpb", "dropped", "since"])
def test_streaming_prints_what_the_whole_input_prints(tmp_path: Path, args: list[str]) -> None:
    """One SOURCE is printed batch by batch; two sources are read whole first: the same lines
    (lost events included) come out either way."""
    lines = LAB.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "a.jsonpb", tmp_path / "b.jsonpb"
    first.write_bytes(b"".join(lines[:1500]))
    second.write_bytes(b"".join(lines[1500:]))
    whole = subprocess.run([*FLOWLENS, "tail", "--input-file", str(first), "--input-file",
                            str(second), *args], capture_output=True, timeout=300)
    assert whole.returncode == 0 and whole.stdout, whole.stderr
    for source in ("-", str(LAB)):  # batch by batch; in parts of 10,000 flows
        streamed = subprocess.run([*FLOWLENS, "tail", "--input-file", source, *args],
                                  input=LAB.read_bytes(), capture_output=True, timeout=300)
        assert streamed.returncode == 0, streamed.stderr
        assert streamed.stdout == whole.stdout


def test_ctrl_c_ends_a_stdin_stream_with_its_unreadable_lines_counted() -> None:
    """`kubectl logs -f ... | flowlens tail --input-file -` ends by Ctrl-C: as a relay's
    stream ends, exit status 0, and the lines it skipped are still named and counted."""
    tail = subprocess.Popen([*FLOWLENS, "tail", "--input-file", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tail.stdin is not None and tail.stdout is not None
    first, second = _lines(LAB, 2)
    tail.stdin.write(first + b"not a flow\n" + second)
    tail.stdin.flush()
    printed = [tail.stdout.readline() for _ in range(2)]  # the bad line was read before
    tail.send_signal(signal.SIGINT)
    try:
        _, err = tail.communicate(timeout=60)
    finally:
        tail.stdin.close()
    assert all(line.startswith(b"Jul  1 08:00:0") for line in printed), printed
    assert tail.returncode == 0, err
    assert err.decode().splitlines() == [
        "flowlens: skipped unreadable line <stdin>:2: not JSON (invalid literal)"]
