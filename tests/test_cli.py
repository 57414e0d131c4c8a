"""The `flowlens` command as a newcomer meets it: any mix of sources, one meaning per flag,
messages that say what happened and what to do."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from click.testing import CliRunner, Result

import flowlens
from flowlens.cli import main
from flowlens.relay_server import ReplayData, ReplayRelay

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
LAB, LAB_TEXT = str(SAMPLES / "lab.jsonpb"), str(SAMPLES / "lab.compact.txt")


def run(*argv: str) -> Result:
    return CliRunner().invoke(main, list(argv), prog_name="flowlens")


def ok(*argv: str) -> Result:
    result = run(*argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception, result.output)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(("argv", "lost", "times"), [
    (("report", str(SAMPLES)), "lost events  2,910", 1),  # twice the 1,455 of one capture
    (("report", LAB, LAB_TEXT), "lost events  2,910", 1),
    (("policy", "check", str(SAMPLES / "policies"), LAB_TEXT, LAB), "lost events  2,910", 1),
    (("tail", "--input-file", str(SAMPLES)), "EVENTS LOST", 6),
    (("tail", "--input-file", LAB_TEXT, "--input-file", LAB, "-o", "jsonpb"), '"lost_events"', 6),
])
def test_jsonpb_and_text_with_lost_events_go_together(argv: tuple[str, ...], lost: str,
                                                       times: int) -> None:
    assert ok(*argv).stdout.count(lost) == times


def test_convert_joins_sources_of_different_formats(tmp_path: Path) -> None:
    out = tmp_path / "both.jsonpb"
    result = ok("convert", LAB, LAB_TEXT, "-o", str(out))
    assert "wrote 6,460 flows and 6 lost-event records" in result.stderr
    back = flowlens.read(out)
    assert len(back) == 6460 and len(flowlens.lost_events(back)) == 6


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_convert_says_what_a_file_of_rows_leaves_out(tmp_path: Path, suffix: str) -> None:
    """A CSV or JSON-lines row is a flow: the message does not claim lost events it dropped."""
    out = tmp_path / f"flows{suffix}"
    result = ok("convert", LAB, "-o", str(out))
    assert result.stderr == (f"flowlens: wrote 3,230 flows to {out}; the input's 3 lost-event "
                             "records are not in it (.parquet and .jsonpb keep them)\n")
    assert "RING_BUFFER" not in out.read_text(encoding="utf-8")


# --- one meaning of each flag --------------------------------------------------------------

@pytest.mark.parametrize(("name", "fmt", "starts"), [
    ("r.html", "html", "<!DOCTYPE html>"), ("r.MD", "md", "# "), ("r.json", "json", "{"),
    ("r.txt", "text", "flowlens report"),
    ("r.out", "text", "flowlens report"),  # no known extension: text
])
def test_report_format_follows_the_file_extension(tmp_path: Path, name: str, fmt: str,
                                                  starts: str) -> None:
    out = tmp_path / name
    result = ok("report", LAB, "-o", str(out))
    assert out.read_text(encoding="utf-8").startswith(starts)
    assert f"wrote the {fmt} report of 3,230 flows to {out}" in result.stderr


def test_policy_commands_name_the_file_they_wrote(tmp_path: Path) -> None:
    """As report does: the closing line on stderr says where the output went."""
    checked, suggested = tmp_path / "check.md", tmp_path / "backend.yaml"
    result = ok("policy", "check", str(SAMPLES / "policies"), LAB, "-o", str(checked))
    assert result.stderr.rstrip().endswith(f"12 unchanged; wrote the md check to {checked}")
    assert checked.read_text(encoding="utf-8").startswith("# flowlens policy check")
    result = ok("policy", "suggest", LAB, "--selector", "app=backend", "-o", str(suggested))
    assert result.stderr == f"flowlens: wrote 1 policy from 3,230 flows to {suggested}\n"
    assert "kind: NetworkPolicy" in suggested.read_text(encoding="utf-8")


def test_format_flag_wins_over_the_extension(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    ok("report", LAB, "--format", "md", "-o", str(out))
    assert out.read_text(encoding="utf-8").startswith("# ")
    checked = tmp_path / "check.html"
    ok("policy", "check", str(SAMPLES / "policies"), LAB, "-o", str(checked))
    assert checked.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("argv", [
    ("report", LAB, "-o", "json"),
    ("report", LAB, "-o", "HTML"),
    ("policy", "check", str(SAMPLES / "policies"), LAB, "-o", "md"),
    ("convert", LAB, "-o", "parquet"),
    ("policy", "suggest", LAB, "-o", "yaml"),
])
def test_a_format_name_is_no_output_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         argv: tuple[str, ...]) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(*argv)
    assert result.exit_code == 2
    name = argv[-1]
    assert f"-o {name} names no file" in result.stderr and f"-o ./{name}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_file_named_like_a_format_is_written_with_a_path(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ok("report", LAB, "-o", "./json")
    assert (tmp_path / "json").read_text(encoding="utf-8").startswith("flowlens report")


def test_tail_keeps_hubble_output_formats() -> None:
    line = ok("tail", "--input-file", LAB, "--last", "1", "-o", "json").stdout
    assert line.startswith('{"flow":{') and line.count("\n") == 1


@pytest.mark.parametrize("argv", [("report",), ("policy", "check")])
def test_one_window_commands_take_no_follow(argv: tuple[str, ...]) -> None:
    help_text = ok(*argv, "--help").stdout
    assert "--follow" not in help_text and "-f," not in help_text
    assert "--since" in help_text and "--last" in help_text
    for flag in ("-f", "--follow"):
        result = run(*argv, *((str(SAMPLES / "policies"),) if argv[-1] == "check" else ()),
                     LAB, flag)
        assert result.exit_code == 2 and f"No such option '{flag}'" in result.stderr
    assert "-f, --follow" in ok("tail", "--help").stdout


def test_policy_suggest_says_since_counts_from_now_on_a_relay(relay: str) -> None:
    """As every other command's --since help has it: from a relay a duration counts back from
    now (a saved capture replayed at once is older than 15 minutes: nothing)."""
    assert "(files) or now (relay)" in " ".join(ok("policy", "suggest", "--help").stdout.split())
    result = ok("policy", "suggest", "--server", relay, "--since", "15m")
    assert result.stderr == "flowlens: 0 policies from 0 flows\n"
    assert "from 1,573 flows" in ok("policy", "suggest", LAB, "--since", "15m").stderr


def test_policy_suggest_takes_n_as_every_command_does() -> None:
    short = ok("policy", "suggest", LAB, "-n", "default")
    assert short.stdout == ok("policy", "suggest", LAB, "--namespace", "default").stdout
    assert "kind: NetworkPolicy" in short.stdout


# Reading it fails (EIO) although it opens: what a failing disk does to a capture.
_FAILS_TO_READ = "/proc/self/mem"


@pytest.mark.parametrize("argv", [
    ("report", _FAILS_TO_READ),
    ("tail", "--input-file", _FAILS_TO_READ),  # printed without a frame when it can be
    ("tail", "--input-file", _FAILS_TO_READ, "--verdict", "DROPPED"),
    ("convert", _FAILS_TO_READ, "-o", "flows.parquet"),
    ("relay", _FAILS_TO_READ, "--listen", "127.0.0.1:0"),
])
def test_a_file_that_cannot_be_read_is_one_line(argv: tuple[str, ...], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(*argv)
    assert result.exit_code == 1
    assert result.stderr == f"flowlens: error: {_FAILS_TO_READ}: cannot read: Input/output error\n"


@pytest.mark.parametrize("source", [("--input-file", LAB), ("--server", "127.0.0.1:1")])
def test_a_table_does_not_follow_whatever_the_source(source: tuple[str, ...]) -> None:
    """As hubble refuses it: a file too (it printed the table), before reading or connecting."""
    result = run("tail", *source, "-o", "table", "--follow")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == ("flowlens: error: -o table cannot be used with --follow (a table "
                             "is aligned over all its rows, so it is printed at the end)\n")


def test_tail_of_a_file_names_input_file() -> None:
    result = run("tail", LAB)
    assert result.exit_code == 2
    assert f"tail reads saved flows with --input-file (flowlens tail --input-file {LAB})" \
        in result.stderr


def test_top_level_help_shows_whole_summaries() -> None:
    from flowlens.cli import main as group

    text = ok("--help").stdout
    commands = text.split("Commands:\n", 1)[1].splitlines()
    assert len(commands) == len(group.commands)
    for line, (name, command) in zip(commands, sorted(group.commands.items()), strict=True):
        assert line.split() == [name, *str(command.short_help).split()]
        assert len(line) <= 80 and "..." not in line
    assert "Print saved or live flows as hubble observe does, filtered." in text


@pytest.mark.parametrize(("argv", "usage"), [
    (("convert",), "convert [OPTIONS] SOURCE..."), (("relay",), "relay [OPTIONS] SOURCE..."),
    (("report",), "report [OPTIONS] [SOURCE]..."),
    (("policy", "check"), "check [OPTIONS] POLICY.yaml... [SOURCE]..."),
    (("policy", "suggest"), "suggest [OPTIONS] [SOURCE]...")])
def test_every_command_names_its_sources_as_its_help_does(argv: tuple[str, ...],
                                                          usage: str) -> None:
    help_text = ok(*argv, "--help").stdout
    assert help_text.splitlines()[0].endswith(usage) and "SOURCE..." in help_text
    assert "SOURCES" not in help_text


def test_last_and_first_count_in_file_order_as_their_help_says(tmp_path: Path) -> None:
    """A capture joined from several nodes is not in time order: --last N is the last N lines,
    not the newest N flows (as hubble observe --input-file has it)."""
    help_text = " ".join(ok("tail", "--help").stdout.split())
    assert "--last N Show the last N flows (of files, in file order;" in help_text
    assert "--first N Show the first N flows (of files, in file order;" in help_text
    backwards = tmp_path / "backwards.jsonpb"
    backwards.write_text("".join(reversed(Path(LAB).read_text().splitlines(keepends=True))))
    every = ok("tail", "--input-file", str(backwards)).stdout.splitlines(keepends=True)
    assert every[0].startswith("Jul  1 08:29:45.881") and every[-1].startswith("Jul  1 08:00:03")
    assert ok("tail", "--input-file", str(backwards), "--last", "2").stdout == "".join(every[-2:])
    assert ok("tail", "--input-file", str(backwards), "--first", "2").stdout == "".join(every[:2])


def test_color_as_hubble_has_it() -> None:
    argv = ("tail", "--input-file", LAB, "--verdict", "DROPPED", "--last", "1")
    plain = ok(*argv).stdout
    colored = ok(*argv, "--color", "always").stdout
    assert "\x1b[" not in plain
    assert ok(*argv, "--color", "never").stdout == plain
    assert ok(*argv, "--color", "auto").stdout == plain  # not a terminal here
    assert re.sub(r"\x1b\[\d+m", "", colored) == plain
    assert "\x1b[31mDROPPED\x1b[0m" in colored and "\x1b[36mdefault/" in colored
    # Table and jsonpb are never coloured, as with hubble.
    for fmt in ("table", "jsonpb"):
        assert ok(*argv, "-o", fmt, "--color", "always").stdout == ok(*argv, "-o", fmt).stdout
    assert run(*argv, "--color", "sometimes").exit_code == 2


def test_counts_in_messages_are_grammatical_and_grouped(tmp_path: Path) -> None:
    result = ok("policy", "suggest", LAB, "--selector", "app=backend")
    assert "flowlens: 1 policy from 3,230 flows" in result.stderr
    bad = tmp_path / "bad.jsonpb"
    lines = (SAMPLES / "lab.jsonpb").read_text(encoding="utf-8").splitlines(keepends=True)
    bad.write_text("".join(lines[:20]) + "not json\n" * 6 + "".join(lines[20:40]),
                   encoding="utf-8")
    result = ok("tail", "--input-file", str(bad))
    assert result.stderr.splitlines()[-1] == "flowlens: ... and 1 more unreadable line"


# --- a relay: what follows, and what was tried -----------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def relay() -> Iterator[str]:
    """`flowlens relay` at --speed max: everything it has is there before anyone follows."""
    with ReplayRelay(ReplayData.from_sources(LAB), listen="127.0.0.1:0") as server:
        yield f"127.0.0.1:{server.port}"


class _Lines(threading.Thread):
    """The lines of a pipe, read as they come."""

    def __init__(self, pipe: IO[str] | None) -> None:
        super().__init__(daemon=True)
        assert pipe is not None
        self.pipe, self.lines = pipe, list[str]()
        self.start()

    def run(self) -> None:
        self.lines.extend(self.pipe)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"waited {timeout}s for {count} lines, got {self.lines}")
            time.sleep(0.05)

    def text(self) -> str:
        self.join(timeout=15)
        return "".join(self.lines)


def _follow(server: str, *flags: str, stdout_lines: int = 0) -> tuple[str, str]:
    """Run `tail -f` until its first line on stderr (or `stdout_lines` flows), then Ctrl-C it:
    (stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "flowlens", "tail", "-f", "--server", server,
                             *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = _Lines(proc.stdout), _Lines(proc.stderr)
    try:
        if stdout_lines:
            out.wait_for(stdout_lines)
        else:
            err.wait_for(1)
        time.sleep(0.5)  # time for anything more to come
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    return out.text(), err.text()


def test_following_says_once_that_it_starts_at_the_newest_flow(relay: str) -> None:
    out, err = _follow(relay)
    hint = ("flowlens: following from the newest flow: only flows that arrive from now on are "
            "shown (--last N or --since TIME shows history first)")
    assert out == "" and err.count(hint) == 1
    out, err = _follow(relay, "--last", "2", stdout_lines=6)  # 2 of each of the 3 nodes
    assert out.count("\n") == 6 and "following from the newest flow" not in err


@pytest.mark.parametrize("argv", [
    ("report",), ("policy", "check", str(SAMPLES / "policies")), ("policy", "suggest")])
def test_without_source_the_relay_tried_is_named(argv: tuple[str, ...]) -> None:
    address = f"127.0.0.1:{_free_port()}"
    result = run(*argv, "--server", address, "--timeout", "1s")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"flowlens: error: no SOURCE given, so flows were asked of hubble-relay at {address} "
        f"(--server, $HUBBLE_SERVER): relay {address}: UNAVAILABLE")


@pytest.mark.parametrize(("argv", "message", "where"), [
    (("report", LAB, "-f"), "No such option '-f'", "flowlens report"),
    (("--bogus",), "No such option '--bogus'", "flowlens"),
    (("policy", "check", "--bogus"), "No such option '--bogus'", "flowlens policy check"),
    (("tail", "--input-file", LAB, "--verdict", "FOO"), "invalid value 'FOO' for --verdict",
     "flowlens tail"),
    (("tail", "--input-file", LAB, "--from-pod", ""),
     "invalid filter: a pod or service name must not be empty", "flowlens tail"),
    (("tail", LAB), "tail reads saved flows with --input-file", "flowlens tail"),
    # A value out of a fixed list reads as every other bad value does.
    (("tail", "--input-file", LAB, "-o", "xml"), "invalid value 'xml' for --output: want one "
     "of compact, dict, table, tab, jsonpb, json", "flowlens tail"),
    (("report", LAB, "--input-format", "xml"), "invalid value 'xml' for --input-format: want "
     "one of jsonpb, compact, dict, table, parquet", "flowlens report"),
    (("policy", "suggest", LAB, "--direction", "up"), "invalid value 'up' for --direction: want "
     "one of ingress, egress, both", "flowlens policy suggest"),
])
def test_usage_errors_are_one_line_saying_where_help_is(
        argv: tuple[str, ...], message: str, where: str) -> None:
    """click's own usage errors read as flowlens's: one line on stderr, exit 2."""
    result = run(*argv)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.rstrip("\n")], result.stderr
    assert result.stderr.startswith("flowlens: error: ") and message in result.stderr
    assert result.stderr.rstrip().endswith(f"(see {where} --help)")
