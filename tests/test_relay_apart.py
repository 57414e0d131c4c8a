"""Receiving apart (flowlens.sources.apart): a report from a relay is received by a forked child
while the command builds the frame. Fork needs a process without gRPC loaded and without other
threads, which this one is not (its relays are served here), so the forking side runs in a
fresh interpreter and is held against the same work done here, in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowlens.cli import main
from flowlens.relay_server import ReplayData, ReplayRelay

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
# Run in the fresh interpreter before the script: counts the children forked to receive.
_COUNT_CHILDREN = """
import flowlens.sources.apart as _apart
FORKED = []
_init = _apart.Child.__init__
def _counted(self, work):
    _init(self, work)
    FORKED.append(self.pid)
_apart.Child.__init__ = _counted
"""


def python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _COUNT_CHILDREN + textwrap.dedent(script),
                           *args], env=ENV, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with ReplayRelay(ReplayData.from_sources(LAB), listen="127.0.0.1:0") as relay:
        yield f"127.0.0.1:{relay.port}"


_REPORT = """
import sys
from flowlens.cli import main
try:
    main(["report", *sys.argv[1:]])
except SystemExit as exc:
    sys.stderr.write(f"forked {len(FORKED)}\\n")
    raise
"""


def _without_the_clock(text: str) -> dict[str, Any]:
    """The report without what depends on when it was made."""
    doc = json.loads(text)
    window = doc["window"]
    moment = window.pop("anchored_at")
    asked = window.pop("asked", None) or {}  # --since/--until count back from the moment
    assert asked.get("until") in (None, moment)
    window.pop("covered", None)  # (of what was asked)
    return dict(doc)


@pytest.mark.parametrize("flags", [(), ("--from-pod", "default/frontend"),
                                   ("--verdict", "DROPPED", "--since", "365d")],
                         ids=["all", "filtered-here", "window"])
def test_a_relay_report_received_apart_is_the_one_received_here(server: str,
                                                                flags: tuple[str, ...]) -> None:
    argv = ["--server", server, "--format", "json", *flags]
    apart = python(_REPORT, *argv)
    assert apart.returncode == 0, apart.stderr
    assert apart.stderr.splitlines()[-1] == "forked 1"  # the window; not the one-flow asks
    here = CliRunner().invoke(main, ["report", *argv])  # (gRPC is loaded here: no fork)
    assert here.exit_code == 0, here.output
    assert _without_the_clock(apart.stdout) == _without_the_clock(here.stdout)


def test_the_parent_receives_nothing_itself(server: str) -> None:
    """The frame comes whole from a stream received apart, without gRPC loaded here."""
    done = python("""
        import sys
        import pandas as pd
        import flowlens
        from flowlens.filters import Filters
        from flowlens.frame import build_all, lost_events
        from flowlens.live import relay_stream
        from flowlens.sources.relay import Connection

        events = []
        stream = relay_stream(Connection(sys.argv[1]), Filters(all=True), apart=True,
                              run_size=1000, on_event=events.append)
        got = build_all(decoded.batch for decoded in stream)
        assert "grpc" not in sys.modules
        lab = flowlens.read(sys.argv[2])
        pd.testing.assert_frame_equal(got, lab, check_categorical=False)
        pd.testing.assert_frame_equal(lost_events(got), lost_events(lab),
                                      check_categorical=False)
        print(len(FORKED), len(got), stream.stats.flows, events)
    """, server, str(LAB))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "3230", "3230", "[]"]


def test_a_relay_that_is_down_is_the_same_one_line() -> None:
    argv = ["--server", "127.0.0.1:1", "--timeout", "1s", "--format", "json"]
    apart = python(_REPORT, *argv)
    here = CliRunner().invoke(main, ["report", *argv])
    assert apart.returncode == here.exit_code != 0 and apart.stdout == here.stdout == ""
    assert apart.stderr.splitlines() == [*here.stderr.splitlines(), "forked 1"]


# --- the pipe: runs, events, the end, errors, a bounded child ------------------------------

_PIPE = """
import os, sys
from flowlens.errors import RelayError
from flowlens.sources import apart

def outcome(work, size=3, read=None):
    if not apart.can_fork():
        return "cannot fork"
    child = apart.Child(work)
    events, runs = [], []
    try:
        for run in child.runs(size, events.append):
            runs.append(list(run))
            if read is not None and len(runs) == read:
                break
        return runs, events, child.result
    except Exception as exc:
        return type(exc).__name__, str(exc)
    finally:
        child.close()
"""


def _pipe(script: str) -> Any:
    done = python(_PIPE + textwrap.dedent(script))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_runs_come_whole_in_order_in_runs_of_their_size() -> None:
    got = _pipe("""
        import json
        def work(sender):
            sender.send_run([b"a", b"", b"bc"])
            sender.send_event("one")
            sender.send_run([b"d" * 300_000, b"e"])
            sender.send_run([])
            sender.send_run([b"f"])
            return 7
        runs, events, result = outcome(work)
        print(json.dumps([[[len(p), p[:2].decode()] for p in run] for run in runs] +
                         [events, result]))
    """)
    assert got == [[[1, "a"], [0, ""], [2, "bc"]], [[300_000, "dd"], [1, "e"], [1, "f"]],
                   ["one"], 7]


def test_errors_are_raised_again_in_the_parent() -> None:
    got = _pipe("""
        import json, threading
        def relay_error(sender):
            sender.send_run([b"x"])
            raise RelayError("the relay said no")
        def unpicklable(sender):
            raise ValueError(threading.Lock())
        def dies(sender):
            sender.send_run([b"x"])
            os._exit(3)
        print(json.dumps([outcome(relay_error), outcome(unpicklable)[0], outcome(dies)]))
    """)
    assert got == [["RelayError", "the relay said no"], "RelayError",
                   ["RelayError", "the process receiving the flows ended without a word"]]


def test_the_child_holds_at_most_its_buffer_and_ends_with_the_parent() -> None:
    """The parent reads nothing for a while: the child queues up to BUFFER_BYTES, then waits
    (and so would its relay); a parent that stops reading ends it."""
    got = _pipe("""
        import json, time
        apart.BUFFER_BYTES = 4 << 20
        def work(sender):
            most = 0
            for _ in range(200):  # 20 MB
                sender.send_run([b"z" * 100_000])
                most = max(most, sender.held)
            return most
        child = apart.Child(work)
        time.sleep(0.5)  # the child queues what the pipe does not take, up to its buffer
        runs = list(child.runs(10, print))
        child.close()
        most = child.result
        started = time.monotonic()
        second = apart.Child(work)
        first = next(second.runs(1, print))
        second.close()  # the child is still sending: it ends, and is reaped
        print(json.dumps([sum(map(len, runs)), most, len(first), time.monotonic() - started]))
    """)
    runs, most, first, took = got
    assert runs == 200 and first == 1
    assert (4 << 20) - 100_100 < most <= 4 << 20  # it queued to the brim, never past it
    assert took < 5
