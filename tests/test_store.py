"""The flow store: partitioned Parquet that `convert -o STORE/` and `record` write and every
command reads; pruning proven by the files opened; exactly-once import; compaction,
retention, the writer lock; following a store."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import flowlens
from flowlens import frame as F
from flowlens.cli import main
from flowlens.errors import StoreError
from flowlens.sources.timerange import TimeRange
from flowlens.store import Store, read_partition
from flowlens.store.ingest import import_sources
from flowlens.store.writer import StoreLock, StoreWriter, compact, create_store, remove_before, tidy

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
LAB_TEXT = ROOT / "samples" / "lab.compact.txt"
HOURS = 6


def _run(*args: str, env: dict[str, str] | None = None) -> Any:
    done = CliRunner().invoke(main, list(args), env=env)
    assert done.exit_code == 0, done.output
    return done


def _uuids(df: pd.DataFrame) -> list[str]:
    return df["uuid"].astype(object).tolist()


@pytest.fixture(scope="module")
def lab() -> pd.DataFrame:
    return flowlens.read(LAB)


def _shifted(lab: pd.DataFrame, hours: int) -> pd.DataFrame:
    """The lab capture `hours` later, with uuids of its own (another half hour of flows)."""
    df = lab.copy()
    df["time"] = df["time"] + pd.Timedelta(hours=hours)
    df["uuid"] = _strings([f"{u}-{hours}" for u in lab["uuid"]])
    lost = F.lost_events(lab)
    lost["time"] = lost["time"] + pd.Timedelta(hours=hours)
    F.set_lost_events(df, lost)
    return df


def _strings(values: list[str]) -> Any:
    return pd.array(values, dtype=F.empty()["uuid"].dtype)


@pytest.fixture(scope="module")
def hours_store(lab: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six hours of the lab capture, one partition each, three files per hour."""
    root = create_store(tmp_path_factory.mktemp("hours") / "store")
    writer = StoreWriter(root)
    for hour in range(HOURS):
        df = _shifted(lab, hour)
        third = len(df) // 3
        for rows in (range(third), range(third, 2 * third), range(2 * third, len(df))):
            writer.add(F.take(df, rows))
            writer.flush()
    return root


class _Opened:
    """Counts the Parquet files opened, those read from and the row groups decoded (pyarrow
    is patched)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: list[str] = []
        self.decoded: list[str] = []
        self.row_groups = 0
        original = pq.ParquetFile
        counter = self

        class Counting(original):  # type: ignore[misc, valid-type]
            def __init__(self, source: Any, *args: Any, **kwargs: Any) -> None:
                counter.files.append(str(source))
                self.counted_path = str(source)
                super().__init__(source, *args, **kwargs)

            def iter_batches(self, *args: Any, row_groups: Any = None,
                             **kwargs: Any) -> Iterator[Any]:
                counter.decoded.append(self.counted_path)
                counter.row_groups += len(row_groups) if row_groups is not None \
                    else self.num_row_groups
                return super().iter_batches(*args, row_groups=row_groups, **kwargs)

            def read_row_groups(self, *args: Any, **kwargs: Any) -> Any:
                counter.decoded.append(self.counted_path)
                return super().read_row_groups(*args, **kwargs)

        monkeypatch.setattr(pq, "ParquetFile", Counting)

    def folders(self, decoded: bool = False) -> set[str]:
        return {str(Path(f).parent) for f in (self.decoded if decoded else self.files)}


# --- layout and reading back ------------------------------------------------------------------


def test_import_writes_hourly_partitions_that_read_back(lab: pd.DataFrame,
                                                        tmp_path: Path) -> None:
    store = tmp_path / "store"
    done = _run("convert", str(LAB), "-o", f"{store}/")
    assert "added 3,230 of 3,230 flows (0 already in the store), 3 lost-event records" \
        in done.stderr
    meta = json.loads((store / "flowlens-store.json").read_text())
    assert meta["format"] == "flowlens-store" and meta["version"] == 1
    files = sorted(p.relative_to(store).as_posix() for p in store.rglob("*.parquet"))
    assert [f.rsplit("/", 1)[0] for f in files] == [
        "flows/date=2026-07-01/hour=08", "lost_events/date=2026-07-01/hour=08"]
    back = flowlens.read(store)
    pd.testing.assert_frame_equal(back, lab, check_categorical=False)
    pd.testing.assert_frame_equal(F.lost_events(back), F.lost_events(lab),
                                  check_categorical=False)
    # Every column of the frame is in the file, with the frame's types.
    schema = pq.read_schema(store / files[0])
    assert schema.names == list(F.NAMES)


@pytest.mark.parametrize("source", [LAB, LAB_TEXT], ids=lambda p: p.name)
def test_batches_written_without_a_frame_read_back_as_the_frame(source: Path,
                                                                tmp_path: Path) -> None:
    from flowlens.load import ReadOptions, iter_batches
    from flowlens.relay_server import ReplayData
    from flowlens.sources.proto import decode_responses

    data = ReplayData.from_sources(source, ReadOptions(year=2026))
    batches = [*iter_batches(source, ReadOptions(year=2026, batch_size=1000)),
               decode_responses(data.payloads)]  # as record receives them from a relay
    for i, batch in enumerate(batches):
        writer = StoreWriter(create_store(tmp_path / f"s{i}"))
        writer.add_batch(batch)
        writer.flush()
        expected, back = F.build(batch), flowlens.read(tmp_path / f"s{i}")
        pd.testing.assert_frame_equal(back, expected, check_categorical=False)
        pd.testing.assert_frame_equal(F.lost_events(back), F.lost_events(expected),
                                      check_categorical=False)
    assert sum(len(b.lost_events) for b in batches) == 3


def test_files_hold_only_the_values_they_use(lab: pd.DataFrame, tmp_path: Path) -> None:
    writer = StoreWriter(create_store(tmp_path / "s"))
    writer.add(F.take(lab, range(10)))  # the frame's categories name every pod of the capture
    writer.flush()
    [path] = (tmp_path / "s" / "flows").rglob("*.parquet")
    pods = pq.read_table(path, columns=["src_pod"]).column("src_pod").chunk(0)
    used = lab["src_pod"].iloc[:10].dropna().unique()
    assert len(pods.dictionary) == len(used) < len(lab["src_pod"].cat.categories)


def test_files_carry_statistics_of_times_and_numbers_not_strings(lab: pd.DataFrame,
                                                                  tmp_path: Path) -> None:
    writer = StoreWriter(create_store(tmp_path / "s"))
    writer.add(lab)
    writer.flush()
    for path in (tmp_path / "s" / "flows").rglob("*.parquet"):
        meta = pq.ParquetFile(path).metadata
        group = meta.row_group(0)
        stats = {group.column(i).path_in_schema: group.column(i).is_stats_set
                 for i in range(group.num_columns)}
        assert stats["time"] and stats["src_port"] and stats["latency_ns"]
        assert not stats["src_pod"] and not stats["uuid"] and not stats["summary"]


@pytest.mark.parametrize("source", [LAB, LAB_TEXT], ids=lambda p: p.name)
def test_importing_the_same_flows_twice_adds_none(source: Path, tmp_path: Path) -> None:
    store = f"{tmp_path / 'store'}/"
    _run("convert", str(source), "-o", store, "--year", "2026")
    again = _run("convert", str(source), "-o", store, "--year", "2026")
    assert "added 0 of 3,230 flows (3,230 already in the store), 0 lost-event records" \
        in again.stderr
    back = flowlens.read(store)
    expected = flowlens.read(source, year=2026)
    assert len(back) == len(expected) and len(F.lost_events(back)) == 3
    pd.testing.assert_frame_equal(back, expected, check_categorical=False)


def test_identical_text_lines_are_two_flows_and_stay_two(tmp_path: Path) -> None:
    line = LAB_TEXT.read_text().splitlines()[0] + "\n"
    twice = tmp_path / "twice.txt"
    twice.write_text(line * 2)
    store = f"{tmp_path / 'store'}/"
    _run("convert", str(twice), "-o", store, "--year", "2026")
    _run("convert", str(twice), "-o", store, "--year", "2026")
    assert len(flowlens.read(store)) == 2


def test_every_command_reads_a_store(lab: pd.DataFrame, tmp_path: Path) -> None:
    store = tmp_path / "store"
    import_sources(store, [LAB])
    assert _run("tail", "--input-file", str(store), "--last", "30").stdout == \
        _run("tail", "--input-file", str(LAB), "--last", "30").stdout
    from_store = json.loads(_run("report", str(store), "--format", "json").stdout)
    from_file = json.loads(_run("report", str(LAB), "--format", "json").stdout)
    from_store["input"].pop("sources"), from_file["input"].pop("sources")
    assert from_store == from_file
    policies = str(ROOT / "samples" / "policies")
    assert _run("policy", "check", policies, str(store), "--format", "json").stdout == \
        _run("policy", "check", policies, str(LAB), "--format", "json").stdout
    assert _run("policy", "suggest", str(store)).stdout == \
        _run("policy", "suggest", str(LAB)).stdout
    _run("convert", str(store), "-o", str(tmp_path / "out.parquet"))
    pd.testing.assert_frame_equal(flowlens.read(tmp_path / "out.parquet"), lab,
                                  check_categorical=False)
    from flowlens.relay_server import ReplayData, ReplayRelay

    with ReplayRelay(ReplayData.from_sources(store), listen="127.0.0.1:0") as relay:
        served = flowlens.read_relay(f"127.0.0.1:{relay.port}", all=True)
    assert _uuids(served) == _uuids(lab)


def test_store_is_the_default_source_and_the_header_says_so(tmp_path: Path) -> None:
    store = tmp_path / "store"
    import_sources(store, [LAB])
    env = {"FLOWLENS_STORE": str(store)}
    report = json.loads(_run("report", "--format", "json", env=env).stdout)
    assert report["input"]["sources"] == [f"flow store {store} (FLOWLENS_STORE)"]
    assert report["flows"] == 3230
    given = json.loads(_run("report", "--store", str(store), "--format", "json").stdout)
    assert given["input"]["sources"] == [f"flow store {store} (--store)"]
    assert _run("tail", "--last", "3", env=env).stdout == \
        _run("tail", "--input-file", str(LAB), "--last", "3").stdout
    assert "policy from 3,230 flows" in _run("policy", "suggest", env=env).stderr
    # --server names the relay: the store is not used (nothing listens there).
    done = CliRunner().invoke(main, ["report", "--server", "127.0.0.1:1", "--timeout", "1s"],
                              env=env)
    assert done.exit_code == 1 and "relay 127.0.0.1:1" in done.output
    bad = CliRunner().invoke(main, ["report"], env={"FLOWLENS_STORE": str(tmp_path)})
    assert bad.exit_code == 2 and "not a flow store" in bad.output


# --- pruning: partitions, row groups, columns -------------------------------------------------


def test_since_reads_only_the_newest_partition(hours_store: Path, lab: pd.DataFrame,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    opened = _Opened(monkeypatch)
    got = json.loads(_run("report", str(hours_store), "--since", "20m",
                          "--format", "json").stdout)
    day = hours_store / "flows" / "date=2026-07-01"
    last_hour, first_hour = day / f"hour={8 + HOURS - 1:02d}", day / "hour=08"
    # Data is read from the newest hour alone; footers of the oldest and newest hour say how
    # far the store reaches (durations count back from its newest flow).
    assert opened.folders(decoded=True) == {str(last_hour),
                                            str(last_hour).replace("flows", "lost_events")}
    assert opened.folders() == {str(first_hour), *opened.folders(decoded=True)}
    expected = flowlens.read(LAB, since="20m")
    assert got["flows"] == len(expected) > 0
    # The pruned report is the report over every flow, but for what it says it read.
    monkeypatch.undo()
    everything = hours_store.parent / "all.jsonpb"
    _run("convert", str(hours_store), "-o", str(everything))
    unpruned = json.loads(_run("report", str(everything), "--since", "20m",
                               "--format", "json").stdout)
    assert got.pop("input")["flows"] < unpruned.pop("input")["flows"]
    assert got == unpruned


def test_an_absolute_window_reads_only_its_hours(hours_store: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    opened = _Opened(monkeypatch)
    df = flowlens.read(hours_store, since="2026-07-01T10:05:00Z", until="2026-07-01T10:10:00Z")
    assert opened.folders(decoded=True) == {str(hours_store / table / "date=2026-07-01" /
                                                "hour=10") for table in ("flows", "lost_events")}
    assert len(df) > 0 and df["time"].min() >= pd.Timestamp("2026-07-01T10:05:00Z")
    everything = flowlens.read(hours_store)
    window = (everything["time"] >= pd.Timestamp("2026-07-01T10:05:00Z")) & \
        (everything["time"] <= pd.Timestamp("2026-07-01T10:10:00Z"))
    assert _uuids(df) == _uuids(everything[window])


def test_row_groups_outside_the_window_are_not_decoded(hours_store: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "copy"
    import_sources(store, [hours_store])  # a store is a source: copied exactly once
    hour = (pd.Timestamp("2026-07-01T13:00:00Z").value)
    assert len(Store(store).partition(hour).files["flows"]) >= 1
    writer = StoreWriter(store)
    for k in range(3):  # three more files in the last hour: compacted into row groups
        extra = _shifted(F.take(flowlens.read(LAB), range(k * 10, k * 10 + 10)), 5)
        extra["uuid"] = _strings([f"{u}x{k}" for u in extra["uuid"]])
        writer.add(extra)
        writer.flush()
    compact(store, hour)
    [merged] = Store(store).partition(hour).files["flows"]
    groups = pq.ParquetFile(merged.path).num_row_groups
    assert groups >= 2
    opened = _Opened(monkeypatch)
    df = flowlens.read(store, since="2026-07-01T13:29:00Z")
    assert opened.row_groups < groups  # groups of earlier minutes were skipped
    assert len(df) > 0


def test_only_the_columns_a_report_needs_are_read(hours_store: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []
    original = pq.ParquetFile.iter_batches

    def spy(self: Any, *args: Any, columns: Any = None, **kwargs: Any) -> Any:
        asked.append(columns)
        return original(self, *args, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    _run("report", str(hours_store), "--since", "10m")
    assert asked and all("uuid" not in cols and "summary" not in cols for cols in asked)
    asked.clear()
    _run("report", str(hours_store), "--since", "10m", "--uuid", "x")
    assert all("uuid" in cols for cols in asked)
    only = flowlens.read(hours_store, columns=["time", "verdict"], since="5m")
    assert only["src_pod"].isna().all() and only["verdict"].notna().all()


def test_per_partition_api(hours_store: Path) -> None:
    store = Store(hours_store)
    parts = store.partitions()
    assert [p.name for p in parts] == [f"date=2026-07-01/hour={8 + h:02d}" for h in range(HOURS)]
    rows, first, last = parts[2].stats()
    assert rows == 3230 and first is not None and last is not None
    assert parts[2].start_ns <= first <= last <= parts[2].end_ns
    frame = read_partition(parts[2], columns=["time", "verdict", "drop_reason"])
    assert len(frame) == rows and len(F.lost_events(frame)) == 3
    assert frame["src_ip"].isna().all()
    window = TimeRange(parts[2].start_ns, parts[3].end_ns)
    assert [p.start_ns for p in store.partitions(window)] == [parts[2].start_ns,
                                                              parts[3].start_ns]
    total = sum(len(read_partition(p)) for p in parts)
    everything = flowlens.read(hours_store)
    assert total == len(everything) == HOURS * 3230
    streamed = list(flowlens.iter_frames(hours_store, batch_size=1000,
                                         since="2026-07-01T12:30:00Z", verdict="DROPPED"))
    late = everything[(everything["time"] >= pd.Timestamp("2026-07-01T12:30:00Z")) &
                      (everything["verdict"] == "DROPPED")]
    assert sum(map(len, streamed)) == len(late) > 0


# --- the writer: temporary names, compaction, retention, the lock, a full disk ----------------


def test_readers_never_see_unfinished_or_replaced_files(hours_store: Path, tmp_path: Path,
                                                        lab: pd.DataFrame) -> None:
    store = tmp_path / "store"
    import_sources(store, [LAB])
    part = Store(store).partitions()[0]
    folder = part.folders["flows"]
    (folder / ".tmp-20260701T090000.000000000Z-dead-000001.parquet").write_bytes(b"PAR1 half")
    assert len(flowlens.read(store)) == 3230
    # Compaction interrupted after the merged file was renamed in, before the small files went.
    writer = StoreWriter(store)
    writer.add(F.take(lab, range(5)).assign(uuid=_strings([f"extra-{i}" for i in range(5)])))
    writer.flush()
    small = sorted(folder.glob("2026*.parquet"))
    assert len(small) == 2
    saved = {p: p.read_bytes() for p in small}
    compact(store, part.start_ns)
    for p, data in saved.items():  # as if the process died before deleting them
        p.write_bytes(data)
    assert len(flowlens.read(store)) == 3235
    with StoreLock(store, "test"):
        assert tidy(store) == 3  # the temporary file and the two replaced ones
    assert [p.name[:5] for p in folder.iterdir()] == ["hour-"]
    assert len(flowlens.read(store)) == 3235


def test_compaction_keeps_every_flow_once(hours_store: Path, tmp_path: Path) -> None:
    before = flowlens.read(hours_store)
    store = tmp_path / "store"
    import_sources(store, [hours_store])
    writer = StoreWriter(store, roll_flows=1000)
    lab = flowlens.read(LAB)
    for start in range(0, len(lab), 1000):
        writer.add(_shifted(F.take(lab, range(start, min(start + 1000, len(lab)))), 7))
        writer.flush()
    hour = pd.Timestamp("2026-07-01T15:00:00Z").value
    assert len(Store(store).partition(hour).files["flows"]) == 4
    assert compact(store, hour) == 6  # four flows files and two of lost events
    assert len(Store(store).partition(hour).files["flows"]) == 1
    after = flowlens.read(store)
    assert len(after) == len(before) + len(lab)
    assert sorted(_uuids(after)) == sorted(_uuids(before) + _uuids(_shifted(lab, 7)))


def test_retain_removes_old_hours(hours_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    import_sources(store, [hours_store])
    cutoff = pd.Timestamp("2026-07-01T11:00:00Z").value
    assert remove_before(store, cutoff) == 3
    left = flowlens.read(store)
    assert left["time"].min() >= pd.Timestamp("2026-07-01T11:00:00Z")
    assert len(left) == 3 * 3230


def test_one_writer_per_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    import_sources(store, [LAB])
    with StoreLock(store, "record"):
        done = CliRunner().invoke(main, ["convert", str(LAB), "-o", f"{store}/"])
        assert done.exit_code == 1
        assert done.output == f"flowlens: error: {store} is being written by flowlens " \
            f"record (pid {os.getpid()}): one writer per store\n"
    _run("convert", str(LAB), "-o", f"{store}/")  # free again
    not_a_store = tmp_path / "docs"
    not_a_store.mkdir()
    (not_a_store / "notes.txt").write_text("mine")
    refused = CliRunner().invoke(main, ["convert", str(LAB), "-o", f"{not_a_store}/"])
    assert refused.exit_code == 1 and "not a flow store, and not an empty folder" \
        in refused.output


def test_a_full_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "ParquetWriter", full)
    done = CliRunner().invoke(main, ["convert", str(LAB), "-o", f"{tmp_path / 's'}/"])
    assert done.exit_code == 1
    assert done.output.startswith("flowlens: error: cannot write ") and \
        done.output.endswith(": No space left on device\n")
    assert not list((tmp_path / "s").rglob("*.parquet")) and \
        not list((tmp_path / "s").rglob(".tmp-*"))
    with pytest.raises(StoreError):
        import_sources(tmp_path / "s", [LAB])
    # Written behind (as record writes): the failure surfaces at the next write or wait.
    writer = StoreWriter(tmp_path / "s")
    writer.add(flowlens.read(LAB))
    writer.flush_behind()
    with pytest.raises(StoreError, match="No space left on device"):
        writer.wait()


def test_flows_written_behind_stay_counted(lab: pd.DataFrame, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """record's status line counts flows a roll is writing behind (it dipped by a roll)."""
    from flowlens.store import writer as writing

    release = threading.Event()
    real = writing.write_file
    monkeypatch.setattr(writing, "write_file", lambda *a, **k: release.wait(10) and real(*a, **k))
    writer = StoreWriter(create_store(tmp_path / "s"))
    writer.add(lab)
    writer.flush_behind()
    assert (writer.pending_flows, writer.stats.flows, writer.accepted_flows) == (0, 0, len(lab))
    release.set()
    writer.wait()
    assert writer.stats.flows == writer.accepted_flows == len(lab)
    assert len(flowlens.read(tmp_path / "s")) == len(lab)


# --- following a store ------------------------------------------------------------------------


class _Lines:
    """Lines of a child's stdout as they come (read on a thread)."""

    def __init__(self, stream: Any) -> None:
        import queue
        import threading

        self.queue: queue.Queue[bytes] = queue.Queue()
        self.thread = threading.Thread(target=lambda: [self.queue.put(line) for line in stream],
                                       daemon=True)
        self.thread.start()

    def take(self, n: int, timeout: float) -> list[bytes]:
        import queue

        lines: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(lines) < n:
            try:
                lines.append(self.queue.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                break
        return lines


@pytest.mark.parametrize("fmt", ["compact", "dict"])
def test_tail_follows_a_store_as_files_arrive(lab: pd.DataFrame, tmp_path: Path,
                                              fmt: str) -> None:
    store = tmp_path / "store"
    import_sources(store, [LAB])
    shown = _run("tail", "--input-file", str(LAB), "--last", "2", "-o", fmt).stdout
    tail = subprocess.Popen([sys.executable, "-m", "flowlens", "tail", "--input-file",
                             str(store), "-f", "--last", "2", "-o", fmt],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = _Lines(tail.stdout)
    try:
        first = lines.take(shown.count("\n"), 20)
        later = _shifted(lab, 1)
        writer = StoreWriter(store)
        writer.add(F.take(later, range(100)))
        writer.flush()
        writer.add(F.take(later, range(100, 150)))
        writer.flush()
        expected = _run("tail", "--input-file", str(store), "--since", "2026-07-01T09:00:00Z",
                        "-o", fmt).stdout
        if fmt == "dict":  # one stream of blocks: the separator before the first new one
            expected = "------------\n" + expected
        new = lines.take(expected.count("\n"), 20)
        compact(store, pd.Timestamp("2026-07-01T09:00:00Z").value)  # seen: not printed again
        time.sleep(1.5)
    finally:
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=10)
    lines.thread.join(timeout=5)
    rest = lines.take(1000, 0.1)
    assert tail.returncode == 0, err
    assert rest == []
    assert b"".join(first).decode() == shown
    assert b"".join(new).decode() == expected


def test_a_follower_waits_for_the_flows_written_just_after_their_lost_events(
        lab: pd.DataFrame, tmp_path: Path) -> None:
    """record renames an hour's lost-event file a moment before its flows file: a follower
    that lists the store between the two still places the lost event among its flows."""
    from flowlens.store.dataset import StoreFollower

    store = tmp_path / "store"
    create_store(store)
    follower = StoreFollower(Store(store))
    follower.skip_existing()
    writer = StoreWriter(store)
    writer.add(F.take(_shifted(lab, 1), range(800, 1300)))  # a lost event among 500 flows
    written = writer.flush()
    flows_file = next(p for p in written if "flows" in p.parts)
    aside = flows_file.with_name("aside.tmp")
    flows_file.rename(aside)  # as if listed between the two renames
    threading.Timer(0.3, aside.rename, (flows_file,)).start()
    batches = list(follower.new())
    assert sum(b.size for b in batches) == 500
    positions = [e["position"] for b in batches for e in b.lost_events]
    assert len(positions) == 1 and 0 < positions[0] < 500


def test_tail_follow_filters_lost_events_as_tail_on_files(lab: pd.DataFrame,
                                                          tmp_path: Path) -> None:
    """A lost event is filtered as a flow that is not there (hubble's rule, as tail on files
    applies it), not kept for lying between two selected flows: --verdict DROPPED drops it,
    --not --verdict FORWARDED keeps it."""
    store = tmp_path / "store"
    import_sources(store, [LAB])
    later = _shifted(lab, 1)
    added = F.take(later, range(800, 1300))  # a lost event between DROPPED flows
    assert len(F.lost_events(added)) == 1
    for flags, lost_shown in ((["--verdict", "DROPPED"], False),
                              (["--not", "--verdict", "FORWARDED"], True)):
        tail = subprocess.Popen([sys.executable, "-m", "flowlens", "tail", "--input-file",
                                 str(store), "-f", *flags],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = _Lines(tail.stdout)
        try:
            time.sleep(1.5)  # following: what is there now is not printed
            writer = StoreWriter(store)
            writer.add(added)
            writer.flush()
            expected = _run("tail", "--input-file", str(store), "--since",
                            "2026-07-01T09:00:00Z", *flags).stdout
            new = lines.take(expected.count("\n"), 20)
        finally:
            tail.send_signal(signal.SIGINT)
            _, err = tail.communicate(timeout=10)
        assert tail.returncode == 0, err
        assert ("EVENTS LOST" in expected) is lost_shown
        assert b"".join(new).decode() == expected
        for path in (store / "flows").rglob("*.parquet"):  # the next round adds them again
            if "hour=09" in str(path):
                path.unlink()
        for path in (store / "lost_events").rglob("*.parquet"):
            if "hour=09" in str(path):
                path.unlink()


def test_a_windowed_report_says_its_count_is_what_was_read(tmp_path: Path) -> None:
    """Over a store, --since reads the window's hours and the minutes around it: the header
    says the count is what was read, beside the range the whole store holds."""
    store = tmp_path / "store"
    import_sources(store, [LAB])
    done = _run("report", str(store), "--since", "5m", "--format", "json")
    read = json.loads(done.stdout)["input"]["flows"]
    assert 0 < read < 3230
    header = " ".join(_run("report", str(store), "--since", "5m").stdout.split())
    assert (f"{read:,} flows read; it holds 2026-07-01 08:00:03.200 to 2026-07-01 08:29:45.881"
            in header)
