"""Reading jsonpb in every form hubble writes, and bad input handled without losing anything."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pandas as pd
import pytest
from shared_data import SHARED

import flowlens
from flowlens.errors import BadInputError, InputError
from flowlens.frame import NAMES, lost_events
from flowlens.sources.batch import ReadReport

COVERAGE = SHARED / "reference-renderings" / "coverage.jsonl"
LAB = Path(__file__).resolve().parents[1] / "samples" / "lab.jsonpb"
REAL = sorted((SHARED / "real-flows" / "hubble-otel").glob("*.json"))


@pytest.fixture(scope="module")
def coverage() -> pd.DataFrame:
    return flowlens.read(COVERAGE)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_every_declared_column_with_its_dtype(coverage: pd.DataFrame) -> None:
    assert tuple(coverage.columns) == NAMES
    for col in flowlens.COLUMNS:
        assert str(coverage[col.name].dtype) == (
            "string[pyarrow]" if col.dtype == "string" else col.dtype), col.name


def test_counts_flows_and_lost_events(coverage: pd.DataFrame) -> None:
    records = [json.loads(line) for line in _lines(COVERAGE)]
    assert len(coverage) == sum("flow" in r for r in records)
    lost = lost_events(coverage)
    assert len(lost) == sum("lost_events" in r for r in records)
    assert lost["num_events_lost"].sum() == sum(
        int(r["lost_events"]["num_events_lost"]) for r in records if "lost_events" in r)


def test_values_match_the_records(coverage: pd.DataFrame) -> None:
    flows = [json.loads(line)["flow"] for line in _lines(COVERAGE) if '"flow"' in line]
    for i in (0, 1, 2, 100, len(flows) - 1):
        f, row = flows[i], coverage.iloc[i]
        assert row["verdict"] == f["verdict"]
        assert row["summary"] == f["Summary"]
        assert row["src_ip"] == f["IP"]["source"]
        assert row["src_identity"] == f["source"].get("identity", 0)
        assert row["time"] == pd.Timestamp(f["time"])
    dropped = [f for f in flows if f.get("drop_reason_desc")]
    assert (coverage["drop_reason"].dropna().tolist()
            == [f["drop_reason_desc"] for f in dropped])


def test_legacy_bare_flows_and_json_array_read_the_same(tmp_path: Path,
                                                         coverage: pd.DataFrame) -> None:
    records = [json.loads(line) for line in _lines(COVERAGE)]
    legacy = tmp_path / "legacy.json"
    legacy.write_text("".join(json.dumps(r.get("flow") or r["lost_events"]) + "\n"
                              for r in records))
    array = tmp_path / "array.json"
    array.write_text(json.dumps(records))
    for path in (legacy, array):
        df = flowlens.read(path)
        pd.testing.assert_frame_equal(df.drop(columns=["time", "node"]),
                                      coverage.drop(columns=["time", "node"]))
    assert len(lost_events(flowlens.read(legacy))) == len(lost_events(coverage))


def test_camel_case_keys_are_accepted(tmp_path: Path, coverage: pd.DataFrame) -> None:
    from google.protobuf import json_format

    from flowlens._proto.observer import observer_pb2

    camel = tmp_path / "camel.json"
    with camel.open("w") as out:
        for line in _lines(COVERAGE):
            msg = json_format.Parse(line, observer_pb2.GetFlowsResponse())
            out.write(json.dumps(json_format.MessageToDict(msg)) + "\n")
    assert '"nodeName"' in camel.read_text()
    pd.testing.assert_frame_equal(flowlens.read(camel), coverage)


def test_gzip_folder_and_stdin(tmp_path: Path) -> None:
    folder = tmp_path / "captures"
    folder.mkdir()
    (folder / "a.json.gz").write_bytes(gzip.compress(REAL[0].read_bytes()))
    (folder / "b.json").write_bytes(REAL[1].read_bytes())
    df = flowlens.read(folder)
    assert len(df) == len(_lines(REAL[0])) + len(_lines(REAL[1]))
    out = subprocess.run(
        [sys.executable, "-m", "flowlens", "tail", "--input-file", "-", "-o", "jsonpb"],
        input=REAL[0].read_bytes(), capture_output=True, check=True)
    assert len(out.stdout.splitlines()) == len(_lines(REAL[0]))


def test_bad_lines_are_skipped_counted_and_named(tmp_path: Path) -> None:
    good = _lines(REAL[0])
    path = tmp_path / "mixed.json"
    path.write_text("\n".join([good[0], "not json", good[1], '{"flow": 5}', good[2]]) + "\n")
    report = ReadReport()
    df = flowlens.read(path, report=report)
    assert len(df) == 3
    assert report.bad_lines == 2
    assert report.examples[0].startswith(f"{path}:2: ")
    assert report.examples[1].startswith(f"{path}:4: ")
    with pytest.raises(BadInputError, match=rf"{path}:2: "):
        flowlens.read(path, strict=True)


def test_truncated_last_line_is_reported_not_fatal(tmp_path: Path) -> None:
    text = REAL[0].read_text()
    path = tmp_path / "cut.json"
    path.write_text(text + text.splitlines()[0][:57])
    report = ReadReport()
    df = flowlens.read(path, report=report)
    assert len(df) == len(text.splitlines())
    assert report.truncated == [f"{path}:{len(text.splitlines()) + 1}"]
    assert report.bad_lines == 0


def test_a_gzip_cut_off_mid_write_reads_up_to_the_cut(tmp_path: Path) -> None:
    """A .gz whose writer stopped mid-stream (a capture still being compressed, a download cut
    off): the flows before the cut are read and its cut line is reported, as in a plain file;
    corrupt gzip data stays an error."""
    text = LAB.read_bytes()
    whole = gzip.compress(text)
    path = tmp_path / "cut.jsonpb.gz"
    path.write_bytes(whole[:len(whole) // 2])
    report = ReadReport()
    df = flowlens.read(path, report=report)
    readable = zlib.decompressobj(31).decompress(whole[:len(whole) // 2])
    lines = readable.count(b"\n")
    assert len(df) > 0 and len(df) + len(flowlens.lost_events(df)) == lines
    assert report.truncated == [f"{path}:{lines + 1}"] and report.bad_lines == 0
    done = subprocess.run([sys.executable, "-m", "flowlens", "tail", "--input-file", str(path),
                           "-o", "jsonpb"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == lines
    assert done.stderr == f"flowlens: {path}:{lines + 1}: last line is truncated (capture cut " \
                          "off mid-write), skipped\n"
    corrupt = bytearray(whole)
    corrupt[len(whole) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(InputError, match="unreadable gzip data"):
        flowlens.read(path)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty input"),
    (b"\x00\x01\x02\xff\xfe binary", "binary data"),
    (b"hello world\n", "not a Hubble flow export"),
    (b"\x1f\x8b\x08\x00garbage", "unreadable gzip"),
])
def test_unreadable_inputs_raise_one_clear_error(tmp_path: Path, content: bytes,
                                                 message: str) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        flowlens.read(path)


def test_missing_file_and_wrong_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        flowlens.read(tmp_path / "nope.json")
    with pytest.raises(InputError, match="no line could be read as compact"):
        flowlens.read(REAL[0], input_format="compact")


def test_streaming_batches_add_up_to_the_whole(coverage: pd.DataFrame) -> None:
    frames = list(flowlens.iter_frames(COVERAGE, batch_size=200))
    assert len(frames) > 5
    whole = flowlens.frame.concat(frames)
    pd.testing.assert_frame_equal(whole, coverage)
    pd.testing.assert_frame_equal(lost_events(whole), lost_events(coverage))


def test_l7_fields_belong_to_their_protocol(coverage: pd.DataFrame) -> None:
    dns = coverage[coverage["l7_protocol"] == "dns"]
    http_responses = coverage[(coverage["l7_protocol"] == "http")
                              & (coverage["l7_type"] == "RESPONSE")]
    assert len(dns) and len(http_responses)
    assert dns["http_code"].isna().all()
    assert http_responses["http_code"].notna().all()
    assert http_responses["dns_rcode"].isna().all()


def test_read_takes_hubble_filters_as_keywords(coverage: pd.DataFrame) -> None:
    denied = flowlens.read(COVERAGE, verdict="DROPPED", not_protocol="udp")
    expected = coverage[(coverage["verdict"] == "DROPPED") & (coverage["protocol"] != "UDP")]
    assert len(denied) == len(expected) > 0
    assert denied["uuid"].tolist() == expected["uuid"].tolist()
    # Lost events kept: those between the first and the last selected flow.
    rows = expected.index.to_numpy()
    at = lost_events(coverage)["position"]
    assert len(lost_events(denied)) == ((at >= rows[0]) & (at <= rows[-1])).sum() > 0
    last = flowlens.read(COVERAGE, last=5)
    assert last["uuid"].tolist() == coverage["uuid"].tail(5).tolist()  # in file order, as hubble
    streamed = flowlens.frame.concat(flowlens.iter_frames(COVERAGE, batch_size=300, verdict="DROPPED",
                                                          not_protocol="udp"))
    assert streamed["uuid"].tolist() == expected["uuid"].tolist()
    with pytest.raises(flowlens.UsageError, match="verdict"):
        flowlens.read(COVERAGE, verdict="nope")


def test_every_pandas_export_works_on_a_frame_as_read(tmp_path: Path) -> None:
    df = flowlens.read(Path(__file__).resolve().parents[1] / "samples" / "lab.jsonpb")
    assert len(flowlens.lost_events(df)) == 3
    df.to_parquet(tmp_path / "f.parquet")
    df.to_pickle(tmp_path / "f.pkl")
    df.to_csv(tmp_path / "f.csv")
    df.to_json(tmp_path / "f.json", orient="records", lines=True, date_format="iso")
    # Parquet and pickle bring the lost events back with the flows.
    for back in (pd.read_parquet(tmp_path / "f.parquet"), pd.read_pickle(tmp_path / "f.pkl")):
        pd.testing.assert_frame_equal(flowlens.lost_events(back), flowlens.lost_events(df))
    assert len(pd.read_csv(tmp_path / "f.csv")) == len(df)


SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_sources_of_different_formats_read_into_one_frame() -> None:
    """jsonpb gives lost-event times as RFC 3339 text, hubble text as nanoseconds: together they
    make one frame whose lost events keep their places and times."""
    jsonpb, compact = SAMPLES / "lab.jsonpb", SAMPLES / "lab.compact.txt"
    # A folder reads in name order: the compact text first.
    for sources, parts in (([jsonpb, compact], [jsonpb, compact]), (SAMPLES, [compact, jsonpb])):
        together = flowlens.read(sources)
        alone = [flowlens.read(p) for p in parts]
        assert len(together) == sum(len(f) for f in alone) == 2 * 3230
        lost = lost_events(together)
        second = lost_events(alone[1])
        second["position"] += len(alone[0])
        expected = pd.concat([lost_events(alone[0]), second], ignore_index=True)
        assert len(lost) == 6
        pd.testing.assert_frame_equal(lost.astype(str), expected.astype(str))
        # The same capture in both formats: the text's times are the jsonpb's to the millisecond.
        assert lost["time"][:3].dt.floor("ms").tolist() == lost["time"][3:].dt.floor("ms").tolist()


def test_lost_event_times_of_any_source_form_build_one_frame() -> None:
    from flowlens.frame import build_all
    from flowlens.sources.batch import FlowBatch

    record = {"source": "HUBBLE_RING_BUFFER", "num_events_lost": 2, "position": 0}
    batches = [FlowBatch(columns={}, size=0, lost_events=[{**record, "time": t, "first": t}])
               for t in ("2026-07-01T08:09:18.000295488Z", 1782893358000295488,
                         "2026-07-01T10:09:18.000295488+02:00", None)]
    lost = lost_events(build_all(batches))
    stamp = pd.Timestamp("2026-07-01T08:09:18.000295488Z")
    assert lost["time"].tolist()[:3] == [stamp] * 3 and pd.isna(lost["time"][3])
    assert lost["first"].tolist()[:3] == [stamp] * 3
