"""Hostile or damaged Parquet, alone or in a flow store: a file whose pages do not decode, of
another schema, with values no frame column holds, or with lost-event records that are not
records. Each is one line naming the file, a non-zero exit, no traceback; a row whose value
is out of range is an unreadable line, skipped and counted (`--strict` stops), never wrapped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

import flowlens
from flowlens.cli import main
from flowlens.errors import InputError
from flowlens.sources.parquet import LOST_EVENTS_METADATA

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
POLICIES = ROOT / "samples" / "policies"


def _invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lab.parquet and a store of the lab, made once; tests damage copies."""
    base = tmp_path_factory.mktemp("made")
    for out in (base / "lab.parquet", f"{base / 'store'}/"):
        assert _invoke("convert", LAB, "-o", out).exit_code == 0
    return base


def _scrambled(path: Path) -> None:
    """Bytes flipped in the data pages, the footer left whole: it opens, and fails to decode."""
    data = bytearray(path.read_bytes())
    for i in range(200, len(data) // 2, 7):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _commands(source: Path, tmp_path: Path) -> list[list[object]]:
    return [["tail", "--input-file", source], ["tail", "--input-file", source, "--last", "1"],
            ["tail", "--input-file", source, "--verdict", "DROPPED"],
            ["report", source, "--format", "json"], ["report", source, "--since", "5m"],
            ["policy", "check", POLICIES, source], ["convert", source, "-o",
                                                    tmp_path / "out.parquet"]]


def _one_line(done: Result, message: str, code: int = 1) -> None:
    assert done.exit_code == code, (done.output, done.exception)
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    assert done.stderr.startswith(f"flowlens: error: {message}"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize("where", ["file", "store"])
def test_pages_that_do_not_decode_are_one_line(made: Path, tmp_path: Path, where: str) -> None:
    if where == "file":
        source = shutil.copy(made / "lab.parquet", tmp_path / "lab.parquet")
        damaged = Path(source)
    else:
        source = shutil.copytree(made / "store", tmp_path / "store")
        damaged = next((tmp_path / "store" / "flows").glob("*/*/*.parquet"))
    _scrambled(damaged)
    for args in _commands(Path(source), tmp_path):
        _one_line(_invoke(*args), f"{damaged}: unreadable Parquet file (")
    assert not (tmp_path / "out.parquet").exists()


def _write(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


def test_a_file_of_another_schema_is_no_flows_file(tmp_path: Path) -> None:
    other = _write(tmp_path / "other.parquet", pa.table({"a": [1, 2], "b": ["x", "y"]}))
    for args in _commands(other, tmp_path):
        _one_line(_invoke(*args), f"{other}: not a Parquet file of flows (none of the columns "
                                  "of a flows frame)")
    text_times = _write(tmp_path / "t.parquet", pa.table({"time": ["now", "then"]}))
    _one_line(_invoke("report", text_times), f"{text_times}: column time is string, not a "
                                             "timestamp")
    text_ports = _write(tmp_path / "p.parquet", pa.table({
        "time": pa.array([1, 2], pa.timestamp("ns", "UTC")), "src_port": ["80", "x"]}))
    _one_line(_invoke("tail", "--input-file", text_ports), f"{text_ports}: column src_port is "
                                                           "string, not an integer")


def test_a_store_file_of_another_schema_is_one_line(made: Path, tmp_path: Path) -> None:
    store = Path(shutil.copytree(made / "store", tmp_path / "store"))
    hour = next((store / "flows").glob("*/*"))
    stranger = _write(hour / "zz-stranger.parquet", pa.table({"a": [1]}))
    _one_line(_invoke("report", store), f"{stranger}: not a Parquet file of flows")


def test_values_out_of_range_are_unreadable_rows_never_wrapped(tmp_path: Path) -> None:
    times = pa.array([1_000_000_000 * s for s in (1, 2, 3, 4)], pa.timestamp("ns", "UTC"))
    table = pa.table({"time": times, "src_port": pa.array([70000, 80, -1, 443], pa.int64()),
                      "src_identity": pa.array([2, 2**40, 3, 4], pa.int64())})
    path = _write(tmp_path / "wide.parquet", table)
    df = flowlens.read(path)
    assert df["src_port"].tolist() == [443]  # 70000 was 4464, -1 was 65535, 2**40 was 0
    assert df["src_identity"].tolist() == [4]
    done = _invoke("tail", "--input-file", path, "-o", "jsonpb")
    assert done.exit_code == 0 and done.stdout.count("\n") == 1, done.output
    assert done.stderr.splitlines() == [
        f"flowlens: skipped unreadable line {path}: row 1: src_port 70000 is outside 0..65535",
        f"flowlens: skipped unreadable line {path}: row 2: src_identity 1099511627776 is "
        "outside 0..4294967295",
        f"flowlens: skipped unreadable line {path}: row 3: src_port -1 is outside 0..65535"]
    strict = _invoke("report", path, "--strict")
    _one_line(strict, f"{path}: row 1: src_port 70000 is outside 0..65535", code=2)
    # A time in seconds the frame's nanoseconds cannot hold; the row before it still reads.
    far = _write(tmp_path / "far.parquet", pa.table({"time": pa.array(
        [1, 10**11], pa.timestamp("s"))}))
    with pytest.raises(InputError, match=r"far.parquet: row 2: time is outside 1677-09-21"):
        flowlens.read(far, strict=True)
    assert len(flowlens.read(far)) == 1


def test_values_at_the_limits_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "limits.parquet", pa.table({
        "time": pa.array([0, 2**63 - 1], pa.timestamp("ns", "UTC")),
        "src_port": pa.array([0, 65535], pa.int64()),
        "latency_ns": pa.array([0, 2**64 - 1], pa.uint64()),
        "event_type": pa.array([-(2**15), 2**15 - 1], pa.int32())}))
    df = flowlens.read(path)
    assert df["src_port"].tolist() == [0, 65535]
    assert df["latency_ns"].tolist() == [0, 2**64 - 1]
    assert df["event_type"].tolist() == [-(2**15), 2**15 - 1]


@pytest.mark.parametrize("records", [b"{not json", b'{"a": 1}', b"[1]",
                                     b'[{"time": 5, "position": 0}]',
                                     b'[{"time": "yesterday", "position": 0}]',
                                     b'[{"num_events_lost": -1, "position": 0}]',
                                     b'[{"num_events_lost": 3}]'],
                         ids=["json", "object", "number", "int-time", "word-time", "negative",
                              "no-position"])
def test_lost_event_records_that_are_not_records(made: Path, tmp_path: Path,
                                                 records: bytes) -> None:
    table = pq.read_table(made / "lab.parquet")
    meta = {**table.schema.metadata, LOST_EVENTS_METADATA: records}
    path = _write(tmp_path / "meta.parquet", table.replace_schema_metadata(meta))
    for args in _commands(path, tmp_path)[:4]:
        _one_line(_invoke(*args), f"{path}: unreadable lost-event records in its metadata (")


def test_a_frame_saved_by_pandas_with_odd_attrs(tmp_path: Path) -> None:
    df = flowlens.read(LAB)
    df.attrs = {"lost_events": "not a list"}
    df.to_parquet(tmp_path / "attrs.parquet")
    _one_line(_invoke("report", tmp_path / "attrs.parquet"), f"{tmp_path / 'attrs.parquet'}: "
                                                            "unreadable lost-event records")
    df.attrs = {"note": "no lost events here"}
    df.to_parquet(tmp_path / "fine.parquet")
    assert len(pd.read_parquet(tmp_path / "fine.parquet")) == len(flowlens.read(
        tmp_path / "fine.parquet"))
