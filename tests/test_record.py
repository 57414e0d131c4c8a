"""`flowlens record` against the project's own relay (a real gRPC server on loopback): every
flow, lost event and node status event once, across SIGINT, SIGTERM and kill -9."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import flowlens
from flowlens import frame as F
from flowlens.relay_server import ReplayData, ReplayRelay
from flowlens.store import Store
from flowlens.store.ingest import import_sources

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"


@pytest.fixture(scope="module")
def lab() -> pd.DataFrame:
    return flowlens.read(LAB)


@pytest.fixture(scope="module")
def lab_data() -> ReplayData:
    return ReplayData.from_sources(LAB)


@pytest.fixture()
def relay(lab_data: ReplayData) -> Iterator[str]:
    with ReplayRelay(lab_data, listen="127.0.0.1:0") as server:
        yield f"127.0.0.1:{server.port}"


def _record(store: Path, server: str, *args: str, stderr: int = subprocess.PIPE
            ) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "flowlens", "record", str(store),
                             "--server", server, "--timeout", "30s", *args],
                            stdout=subprocess.PIPE, stderr=stderr)


def _stored(store: Path) -> int:
    try:
        return len(flowlens.read(store, columns=["time"]))
    except flowlens.FlowlensError:
        return 0


def _wait_for(store: Path, flows: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (n := _stored(store)) < flows and time.monotonic() < deadline:
        time.sleep(0.2)
    return n


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return err.decode()


def _uuids(df: pd.DataFrame) -> list[str]:
    return sorted(df["uuid"].astype(object))


def test_record_keeps_everything_and_stops_cleanly(relay: str, lab: pd.DataFrame,
                                                   tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = _record(store, relay, "--roll", "300ms")
    assert _wait_for(store, len(lab), 30) == len(lab)
    err = _stop(proc)
    assert proc.returncode == 0, err
    assert err.splitlines()[-1].startswith(
        f"flowlens: recorded 3,230 flows, 3 lost-event records and 1 node status event from "
        f"{relay} into {store}: ")
    got = flowlens.read(store)
    pd.testing.assert_frame_equal(got, lab, check_categorical=False)
    pd.testing.assert_frame_equal(F.lost_events(got), F.lost_events(lab),
                                  check_categorical=False)
    statuses = Store(store).partitions()[-1].records("node_status")
    assert [s["state"] for s in statuses] == ["NODE_CONNECTED"]
    assert not list(store.rglob(".tmp-*"))
    # Started again: resumes after the newest flow stored, drops the repeats, adds nothing.
    again = _record(store, relay)
    time.sleep(3)
    err = _stop(again, signal.SIGTERM)
    assert again.returncode == 0, err
    assert "recorded 0 flows, 0 lost-event records and 1 node status event from" in err
    assert "resumed after 2026-07-01T08:29:45.881272993Z" in err
    assert _uuids(flowlens.read(store)) == _uuids(lab)


def test_kill_9_and_restart_lose_and_repeat_nothing(lab_data: ReplayData, lab: pd.DataFrame,
                                                    tmp_path: Path) -> None:
    span = (lab["time"].max() - lab["time"].min()).total_seconds()
    store = tmp_path / "store"
    # Paced: the capture takes about 8 s, so the recorder is killed mid-way.
    with ReplayRelay(lab_data, listen="127.0.0.1:0", speed=span / 8) as server:
        address = f"127.0.0.1:{server.port}"
        first = _record(store, address, "--roll", "200ms")
        written = _wait_for(store, 500, 30)
        first.kill()  # SIGKILL: no flush, buffered flows are gone from this process
        first.communicate(timeout=10)
        assert 500 <= written < len(lab)
        second = _record(store, address, "--roll", "200ms")
        assert _wait_for(store, len(lab), 60) == len(lab)
        time.sleep(1)  # nothing more may come
        err = _stop(second)
    assert second.returncode == 0, err
    assert re.search(r"resumed after \S+ \([0-9,]+ repeats? dropped\)", err), err
    got = flowlens.read(store)
    assert _uuids(got) == _uuids(lab)  # every flow exactly once
    assert len(F.lost_events(got)) == 3


def test_a_second_recorder_on_the_same_store_refuses(relay: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = _record(store, relay)
    try:
        deadline = time.monotonic() + 20
        while not (store / ".lock").exists() or not (store / ".lock").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-m", "flowlens", "record", str(store),
                                 "--server", relay], capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert second.stderr == f"flowlens: error: {store} is being written by flowlens " \
            f"record (pid {first.pid}): one writer per store\n"
    finally:
        _stop(first)
    assert first.returncode == 0


def test_status_line_on_a_terminal(relay: str, tmp_path: Path) -> None:
    main_fd, child_fd = pty.openpty()
    proc = _record(tmp_path / "store", relay, stderr=child_fd)
    os.close(child_fd)
    seen = b""
    deadline = time.monotonic() + 20
    try:
        while b"lag" not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(main_fd, 4096)
            except OSError:  # the recorder is gone: the assertions below say what it printed
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        os.close(main_fd)
    assert proc.returncode == 0, seen
    line = seen.decode().split("\r\x1b[K")[-1]
    assert "flows/s | " in line and " flows | " in line and " files | " in line
    assert "lag " in line and "lost: " in line


def test_compaction_and_retention_while_recording(lab: pd.DataFrame,
                                                  tmp_path: Path) -> None:
    later = lab.copy()
    later["time"] = later["time"] + pd.Timedelta(hours=1)
    later["uuid"] = pd.array([f"{u}-later" for u in lab["uuid"]], dtype=lab["uuid"].dtype)
    F.set_lost_events(later, None)
    two_hours = ReplayData.from_frame(F.concat([lab, later]))
    store = tmp_path / "store"
    old = lab.copy()
    old["time"] = old["time"] - pd.Timedelta(days=400)
    old.attrs = {"lost_events": []}
    old.to_parquet(tmp_path / "old.parquet")
    import_sources(store, [tmp_path / "old.parquet"])
    assert len(Store(store).partitions()) == 1
    span = (later["time"].max() - lab["time"].min()).total_seconds()
    with ReplayRelay(two_hours, listen="127.0.0.1:0", speed=span / 6) as server:
        proc = _record(store, f"127.0.0.1:{server.port}", "--roll", "200ms,500",
                       "--retain", "300d")
        assert _wait_for(store, 2 * len(lab), 30) >= 2 * len(lab)
        time.sleep(1)
        err = _stop(proc)
    assert proc.returncode == 0, err
    parts = Store(store).partitions()
    assert [p.name for p in parts][:2] == ["date=2026-07-01/hour=08", "date=2026-07-01/hour=09"]
    # The hour that is over is one file; the old partition went with --retain.
    assert [f.name[:5] for f in parts[0].files["flows"]] == ["hour-"]
    assert len(parts[0].files["flows"][0].originals) >= 7  # 3,230 flows in files of <= 500
    assert "files compacted" in err and "1 hour removed (--retain)" in err
    got = flowlens.read(store)
    assert _uuids(got) == _uuids(F.concat([lab, later]))


def test_a_write_that_fails_leaves_no_gap_to_resume_over(relay: str, lab: pd.DataFrame,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """A full disk fails a roll written behind: nothing newer may be written after it (the
    roll buffered meanwhile neither, on the way out), since a resume starts from the newest
    flow stored and would step over what failed. Started again with room, every flow of the
    relay is stored exactly once."""
    from flowlens.errors import StoreError
    from flowlens.sources.relay import Connection
    from flowlens.store import writer as writing
    from flowlens.store.record import Recorder

    real = writing.write_file
    flows_files: list[Path] = []

    def filling(path: Path, *args: object, **kwargs: object) -> int:
        if "/flows/" in str(path):
            flows_files.append(path)
            if len(flows_files) == 2:  # the second roll of flows: the disk is full
                raise StoreError(f"cannot write {path}: No space left on device")
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writing, "write_file", filling)
    store = tmp_path / "store"
    first = Recorder(store, Connection(relay), roll_flows=500)
    with pytest.raises(StoreError, match="No space left on device"):
        first.run()  # at once, also when the failed roll was the last (the relay is quiet)
    held = flowlens.read(store)
    assert 0 < len(held) < len(lab) and len(flows_files) == 2
    missing = lab[~lab["uuid"].isin(set(held["uuid"]))]
    assert held["time"].max() <= missing["time"].min()  # what is stored has no gap

    monkeypatch.setattr(writing, "write_file", real)
    second = Recorder(store, Connection(relay), roll_flows=500)
    second.on_progress = lambda r: r.stop() if r.stream is not None and \
        _stored(store) + r.writer.accepted_flows >= len(lab) + 50 else None
    timer = threading.Timer(20, second.stop)  # (whatever happens: the relay has no more)
    timer.start()
    try:
        second.run()
    finally:
        timer.cancel()
    assert _uuids(flowlens.read(store)) == _uuids(lab)
