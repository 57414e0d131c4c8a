"""A Parquet file (flowlens convert, df.to_parquet) and a folder of them are SOURCEs like any
other: read back to the identical frame, and every command takes them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import flowlens
from flowlens.cli import main
from flowlens.relay_server import ReplayData, ReplayRelay
from flowlens.sources.parquet import read_parquet
from flowlens.sources.timerange import TimeRange

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
LAB_TEXT = ROOT / "samples" / "lab.compact.txt"


def _run(*args: str) -> str:
    done = CliRunner().invoke(main, list(args))
    assert done.exit_code == 0, done.output
    return done.stdout


@pytest.fixture(scope="module")
def lab() -> pd.DataFrame:
    return flowlens.read(LAB)


@pytest.fixture(scope="module")
def lab_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pq") / "lab.parquet"
    _run("convert", str(LAB), "-o", str(path))
    return path


@pytest.mark.parametrize("source", [LAB, LAB_TEXT], ids=lambda p: p.name)
def test_convert_to_parquet_reads_back_to_the_identical_frame(source: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "flows.parquet"
    _run("convert", str(source), "-o", str(out), "--year", "2026")
    original = flowlens.read(source, year=2026)
    back = flowlens.read(out)
    pd.testing.assert_frame_equal(back, original)
    assert back.attrs == original.attrs and len(flowlens.lost_events(back)) == 3


def test_a_frame_written_by_pandas_reads_back(lab: pd.DataFrame, tmp_path: Path) -> None:
    lab.to_parquet(tmp_path / "mine.parquet")
    back = flowlens.read(tmp_path / "mine.parquet")
    pd.testing.assert_frame_equal(back, lab)
    assert back.attrs == lab.attrs


def test_batches_and_a_folder_of_parquet_files(lab: pd.DataFrame, tmp_path: Path) -> None:
    half = len(lab) // 2
    flowlens.frame.take(lab, range(half)).to_parquet(tmp_path / "a.parquet")
    flowlens.frame.take(lab, range(half, len(lab))).to_parquet(tmp_path / "b.parquet")
    back = flowlens.read(tmp_path)
    pd.testing.assert_frame_equal(back, lab, check_categorical=False)
    assert flowlens.lost_events(back).equals(flowlens.lost_events(lab))
    parts = list(flowlens.iter_frames(tmp_path / "a.parquet", batch_size=500))
    assert [len(p) for p in parts] == [500] * (half // 500) + [half % 500]


def test_an_older_file_without_a_column_reads_it_as_na(lab: pd.DataFrame,
                                                       lab_parquet: Path,
                                                       tmp_path: Path) -> None:
    older = tmp_path / "older.parquet"
    pq.write_table(pq.read_table(lab_parquet).drop_columns(["src_names", "latency_ns"]), older)
    back = flowlens.read(older)
    assert list(back.columns) == list(lab.columns)
    assert back["src_names"].isna().all() and back["latency_ns"].isna().all()
    assert str(back["latency_ns"].dtype) == "UInt64"
    kept = [c for c in lab.columns if c not in ("src_names", "latency_ns")]
    pd.testing.assert_frame_equal(back[kept], lab[kept])


def test_every_command_takes_parquet(lab_parquet: Path) -> None:
    for command in (["report"], ["policy", "check", str(ROOT / "samples" / "policies")]):
        from_jsonpb = json.loads(_run(*command, str(LAB), "--format", "json"))
        from_parquet = json.loads(_run(*command, str(lab_parquet), "--format", "json"))
        if command == ["report"]:  # the input names differ, nothing else
            assert from_parquet["input"].pop("sources") == [str(lab_parquet)]
            from_jsonpb["input"].pop("sources")
        assert from_parquet == from_jsonpb
    for fmt in ("compact", "dict"):
        assert _run("tail", "--input-file", str(lab_parquet), "-o", fmt, "--last", "50") == \
            _run("tail", "--input-file", str(LAB), "-o", fmt, "--last", "50")
    assert _run("policy", "suggest", str(lab_parquet)) == _run("policy", "suggest", str(LAB))


def test_parquet_converts_to_jsonpb_and_is_served_by_the_relay(lab: pd.DataFrame,
                                                               lab_parquet: Path,
                                                               tmp_path: Path) -> None:
    _run("convert", str(lab_parquet), "-o", str(tmp_path / "back.jsonpb"))
    pd.testing.assert_frame_equal(flowlens.read(tmp_path / "back.jsonpb"), lab)
    with ReplayRelay(ReplayData.from_sources(lab_parquet), listen="127.0.0.1:0") as relay:
        got = flowlens.read_relay(f"127.0.0.1:{relay.port}", all=True)
    pd.testing.assert_frame_equal(got, lab, check_categorical=False)


def test_row_groups_outside_the_window_are_not_decoded(lab: pd.DataFrame,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.Table.from_pandas(lab, preserve_index=False), path, row_group_size=500)
    times = lab["time"].astype("int64").to_numpy()
    since, until = int(times[1200]), int(times[1300])
    rows = sum(b.size for b in read_parquet(str(path), 10_000,
                                            window=TimeRange(since, until)))
    assert rows == 500  # only the third row group holds flows 1200..1300
    everything = sum(b.size for b in read_parquet(str(path), 10_000))
    assert everything == len(lab)
    only = next(read_parquet(str(path), 10_000, columns=["time", "verdict"]))
    assert set(only.columns) == {"time", "verdict"}


def test_a_broken_parquet_file_is_one_line(lab_parquet: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(lab_parquet.read_bytes()[:2000])
    done = CliRunner().invoke(main, ["report", str(broken)])
    assert done.exit_code == 1
    assert done.output.startswith(f"flowlens: error: {broken}: unreadable Parquet file")
    assert "Traceback" not in done.output and len(done.output.splitlines()) == 1
