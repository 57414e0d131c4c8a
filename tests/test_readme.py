"""The README's "Two commands" and "A short tour" run as written, so that they cannot rot: every
shell line of the tour (the relay's too, over loopback) and its Python block, in a folder that
holds only the project's samples."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEFAULT_RELAY = "localhost:4245"


def _section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _commands(block: str) -> list[str]:
    """The block's command lines, without their trailing comments."""
    return [re.split(r"\s+#\s", line)[0].strip() for line in block.splitlines() if line.strip()]


TWO_COMMANDS = [c for block in _blocks(_section("Two commands"), "sh") for c in _commands(block)]
TOUR = _commands(_blocks(_section("A short tour"), "sh")[0])
TOUR_PYTHON = _blocks(_section("A short tour"), "python")[0]


def test_the_sections_hold_what_is_run() -> None:
    assert TWO_COMMANDS == [
        "pip install . && flowlens report samples/lab.jsonpb --format html -o report.html",
        "./scripts/test"]
    assert len(TOUR) >= 9 and all(c.startswith("flowlens ") for c in TOUR)
    assert sum(c.endswith("&") for c in TOUR) == 1  # the relay


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A folder with the samples and a `flowlens` on PATH that runs this checkout."""
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "flowlens"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m flowlens "$@"\n')
    wrapper.chmod(0o755)
    return tmp_path


def _env(folder: Path) -> dict[str, str]:
    path = os.pathsep.join([str(folder / "bin"), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(command: str, folder: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=folder,
                          env=_env(folder), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (command, done.stderr)
    assert "Traceback" not in done.stderr and "error" not in done.stderr, (command, done.stderr)
    return done


def _output_file(command: str) -> str | None:
    found = re.search(r"\s-o (\S+)", command)
    return found.group(1) if found and not command.startswith("flowlens tail") else None


def _check_output(command: str, done: subprocess.CompletedProcess[str], folder: Path) -> None:
    """What the command was for is there: the file it names, or what it printed."""
    out = _output_file(command)
    if out is not None:
        assert (folder / out).stat().st_size > 0, command
    else:
        assert done.stdout.strip(), command


def test_the_report_of_two_commands(folder: Path) -> None:
    command = TWO_COMMANDS[0].split(" && ", 1)[1]  # after `pip install .`
    _run(command, folder)
    assert (folder / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_every_command_of_the_tour(folder: Path) -> None:
    """In order, as a reader would type them; the relay on a free loopback port instead of
    4245 (other suites may hold it), which the commands after it ask."""
    address = f"127.0.0.1:{_free_port()}"
    relay: subprocess.Popen[str] | None = None
    try:
        for command in TOUR:
            if command.endswith("&"):
                relay = subprocess.Popen(
                    [*command.rstrip("&").split(), "--listen", address], cwd=folder,
                    env=_env(folder), stderr=subprocess.PIPE, text=True)
                assert relay.stderr is not None
                assert "flowlens: serving 3,230 flows" in relay.stderr.readline()
                continue
            command = command.replace(DEFAULT_RELAY, address)
            if "| jq " in command and shutil.which("jq") is None:
                # jq is not flowlens's: without it, check what it would print is there.
                command, key = command.split(" | jq .")
                done = _run(command, folder)
                assert json.loads(done.stdout)[key]
                continue
            _check_output(command, _run(command, folder), folder)
    finally:
        if relay is not None:
            relay.send_signal(signal.SIGINT)
            relay.wait(timeout=15)
    assert relay is not None and relay.returncode == 0
    assert (folder / "live.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_the_python_of_the_tour(folder: Path) -> None:
    done = subprocess.run([sys.executable, "-c", TOUR_PYTHON + "\nprint(len(df), len(denied))"],
                          cwd=folder, env=_env(folder), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3230", "387"]  # not-frontend: 384 denied by policy, 3 other drops


def test_the_report_answer_shown_is_what_the_report_prints(folder: Path) -> None:
    """The answer the README quotes under `flowlens report` is the lab's, line for line."""
    section = README.split("### `flowlens report`\n", 1)[1].split("\n### ", 1)[0]
    quoted = re.findall(r"\n```\n(== Who is denied.*?\n)```", section, flags=re.DOTALL)[0]
    printed = _run("flowlens report samples/lab.jsonpb", folder).stdout
    assert quoted in printed


def test_the_python_of_keeping_history(folder: Path) -> None:
    """The store's Python block, over a store of the lab (the block's /var/lib/flows), reads
    what the text after it says: only the named columns, the frame keeping every column."""
    section = _section("Keeping history")
    block = next(b for b in _blocks(section, "python") if "read_partition" in b)
    store = folder / "flows"
    _run(f"flowlens convert samples/lab.jsonpb -o {store}/", folder)
    code = ("import flowlens\n" + block.replace("/var/lib/flows", str(store)) +
            "\nnamed = sorted(c for c in df.columns if df[c].notna().any())"
            "\nprint(len(df.columns) == len(flowlens.COLUMNS), named, len(recent), "
            "type(report).__name__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=_env(folder),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "True ['drop_reason', 'time', 'verdict'] 3230 Report"
    assert "the frame still has every\ncolumn (the others NA)" in section
