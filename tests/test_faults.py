"""Faults of the machine: a full disk is one line naming the file, exit status 1, and what was
written before stays readable; an output is never written over one of its sources."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from process_limits import SmallDisk

import flowlens
from flowlens.relay_server import ReplayData, ReplayRelay

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
FLOWLENS = [sys.executable, "-m", "flowlens"]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    small = SmallDisk(tmp_path / "small", 64 * 1024)  # far less than any output of the lab
    yield small
    small.close()


def _one_error_line(run: subprocess.CompletedProcess[str], path: object) -> None:
    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert errors == [line for line in errors if line.startswith(
        f"flowlens: error: cannot write {path}: ")] and len(errors) == 1, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("suffix", [".jsonpb", ".parquet", ".csv", ".jsonl"])
def test_convert_on_a_full_disk_leaves_the_previous_file(disk: SmallDisk, suffix: str) -> None:
    out = disk.path / f"flows{suffix}"
    one = disk.path / "one.jsonpb"
    one.write_text(LAB.read_text().splitlines()[0] + "\n")
    fits = disk.run([*FLOWLENS, "convert", str(one), "-o", str(out)])
    assert fits.returncode == 0, fits.stderr
    before = out.read_bytes()
    run = disk.run([*FLOWLENS, "convert", str(LAB), "-o", str(out)])  # does not fit
    _one_error_line(run, out)
    assert out.read_bytes() == before  # what was there before, as it was
    if suffix in (".jsonpb", ".parquet"):
        assert len(flowlens.read(out)) == 1
    assert sorted(p.name for p in disk.path.iterdir()) == sorted([out.name, one.name])


def test_a_report_on_a_full_disk(disk: SmallDisk) -> None:
    out = disk.path / "report.html"
    run = disk.run([*FLOWLENS, "report", str(LAB), "--format", "html", "-o", str(out)])
    _one_error_line(run, out)
    assert list(disk.path.iterdir()) == []


@pytest.mark.parametrize("args", [["tail", "--input-file", str(LAB)], ["report", str(LAB)],
                                  ["tail", "--input-file", str(LAB), "-o", "jsonpb"]],
                         ids=["tail", "report", "tail-jsonpb"])
def test_stdout_on_a_full_device(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        run = subprocess.run([*FLOWLENS, *args], stdout=full, stderr=subprocess.PIPE,
                             text=True, timeout=300)
    _one_error_line(run, "standard output")
    assert run.stderr.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_save_on_a_full_disk_keeps_whole_lines(disk: SmallDisk) -> None:
    saved = disk.path / "saved.jsonpb"
    with ReplayRelay(ReplayData.from_sources(LAB), listen="127.0.0.1:0") as relay:
        run = disk.run([*FLOWLENS, "tail", "--server", f"127.0.0.1:{relay.port}", "--all",
                        "--save", str(saved)])
    _one_error_line(run, f"--save file {saved}")
    data = saved.read_bytes()
    assert data and data.endswith(b"\n")  # cut back to the last whole line
    report = flowlens.ReadReport()
    df = flowlens.read(saved, report=report)
    assert len(df) == data.count(b"\n") - len(df.attrs["lost_events"])
    assert report.bad_lines == 0 and not report.truncated


def test_an_output_is_never_written_over_a_source(tmp_path: Path) -> None:
    source = tmp_path / "capture.jsonpb"
    source.write_bytes(LAB.read_bytes())
    policy = tmp_path / "deny.yaml"
    policy.write_text("kind: NetworkPolicy\nmetadata: {name: deny}\nspec: {podSelector: {}}\n")
    os.chdir(tmp_path)
    cases = [
        ["report", str(source), "-o", str(source)],
        ["report", "capture.jsonpb", "-o", "./capture.jsonpb"],
        ["report", str(tmp_path), "-o", "capture.jsonpb"],  # a folder of sources
        ["convert", str(source), "-o", str(source)],
        ["policy", "check", str(policy), str(source), "-o", str(policy)],
        ["policy", "suggest", str(source), "-o", str(source)],
    ]
    for args in cases:
        run = subprocess.run([*FLOWLENS, *args], capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, (args, run.stderr)
        assert run.stderr.startswith("flowlens: error: refusing to write ")
        assert "it is a source of this command" in run.stderr
    assert source.read_bytes() == LAB.read_bytes()
    assert policy.read_text().startswith("kind: NetworkPolicy")


def test_outputs_are_written_whole_with_usual_permissions(tmp_path: Path) -> None:
    out = tmp_path / "flows.parquet"
    run = subprocess.run([*FLOWLENS, "convert", str(LAB), "-o", str(out)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert len(flowlens.read(out)) == 3230


def test_an_output_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    """A name longer than the filesystem takes, or a folder where no file can be made (/proc):
    one line naming it, before or after reading, never a traceback."""
    long_name = tmp_path / ("a" * 300)
    for args in (["convert", str(LAB), "-o", f"{long_name}.parquet"],
                 ["report", str(LAB), "-o", f"{long_name}.html"],
                 ["policy", "suggest", str(LAB), "-o", f"{long_name}.yaml"],
                 ["convert", str(LAB), "-o", "/proc/flows.parquet"],
                 ["report", str(LAB), "-o", "/proc/report.html"]):
        run = subprocess.run([*FLOWLENS, *args], capture_output=True, text=True, timeout=300)
        assert run.returncode in (1, 2), (args, run.stderr)
        assert run.stderr.startswith(f"flowlens: error: cannot write {args[-1]}: "), run.stderr
        assert run.stderr.count("\n") == 1, run.stderr
    assert list(tmp_path.iterdir()) == []
