"""`flowlens report`: the lab's story in the JSON report, every format's layout, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from shared_data import SHARED

from flowlens.analyses import PANELS
from flowlens.cli import main

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
LAB = str(SAMPLES / "lab.jsonpb")
DESIGN_KEYS = ("window", "flows", "lost_events", "verdicts", "drop_reasons",
               "forwarded_vs_dropped", "top_denied_sources", "top_denied_destinations",
               "policy_verdicts")


def run(*argv: str) -> Result:
    return CliRunner().invoke(main, ["report", *argv])


@pytest.fixture(scope="module")
def lab_json() -> dict[str, Any]:
    result = run(LAB, "--format", "json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_json_has_the_design_keys_and_every_panel(lab_json: dict[str, Any]) -> None:
    for key in (*DESIGN_KEYS, *(p.key for p in PANELS)):
        assert key in lab_json, key
    assert set(lab_json["window"]) >= {"since", "until", "first_flow", "last_flow", "anchor"}
    assert lab_json["window"]["anchor"] == "data"
    assert lab_json["window"]["first_flow"].startswith("2026-07-01T08:00:03.2")
    assert lab_json["window"]["last_flow"].endswith("Z")
    assert lab_json["flows"] == 3230
    assert lab_json["lost_events"] == 1207 + 211 + 37


def test_json_tells_the_lab_story(lab_json: dict[str, Any]) -> None:
    sources = lab_json["top_denied_sources"]
    assert sources[0]["source"].startswith("default/not-frontend-")
    assert sources[0]["flows"] > sources[1]["flows"] > 0
    assert sources[1]["source"].startswith("default/frontend-")
    assert lab_json["top_denied_destinations"][0]["destination"].startswith("default/backend-")
    reasons = lab_json["drop_reasons"]
    assert max(reasons, key=reasons.get) == "POLICY_DENIED"
    allowed = [v for v in lab_json["policy_verdicts"]
               if (v["direction"], v["match"], v["action"]) == ("ingress", "l3-l4", "forwarded")]
    assert allowed and allowed[0]["flows"] > 0
    assert {"direction": "ingress", "match": "none", "action": "dropped"}.items() <= next(
        v for v in lab_json["policy_verdicts"] if v["action"] == "dropped").items()
    over_time = lab_json["forwarded_vs_dropped"]
    assert sum(b["DROPPED"] for b in over_time) == lab_json["verdicts"]["DROPPED"]
    first_drop = next(b["time"] for b in over_time if b["DROPPED"] >= 10)
    assert first_drop.startswith("2026-07-01T08:10:")  # backend-ingress-deny applied


def test_the_window_selects_flows_and_says_what_it_counted_back_from() -> None:
    result = run(LAB, "--format", "json", "--since", "5m", "--from-pod", "default/not-frontend")
    doc = json.loads(result.stdout)
    assert doc["window"]["since"] == "2026-07-01T08:24:45.881272993Z"
    assert doc["window"]["anchored_at"] == "2026-07-01T08:29:45.881272993Z"
    assert doc["window"]["requested"] == {"since": "5m", "until": None}
    assert [s["source"][:21] for s in doc["top_denied_sources"]] == ["default/not-frontend-"]
    assert doc["lost_events"] == 37  # only the loss reported inside the window
    assert doc["input"]["flows"] == 3230 and doc["flows"] < 200


def test_bucket_and_top_flags() -> None:
    doc = json.loads(run(LAB, "--format", "json", "--bucket", "5m", "--top", "1").stdout)
    assert doc["bucket"] == "5m"
    assert len(doc["forwarded_vs_dropped"]) == 6
    assert len(doc["top_denied_sources"]) == 1 and len(doc["top_dns_queries"]) == 1


def test_text_fits_100_columns_and_shows_control_characters_escaped() -> None:
    result = run(LAB)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "\x1b" not in result.stdout
    assert "INCOMPLETE DATA" in result.stdout
    assert any(line.startswith("== Network: Forwarded vs Dropped") for line in lines)


def test_markdown_escapes_flow_strings() -> None:
    result = run(LAB, "--format", "md")
    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith("# flowlens report")
    assert "<script>" not in text and r"\<script\>" in text
    assert "| reason | flows |" in text


def test_an_empty_window_says_so_and_shows_the_input_range() -> None:
    result = run(LAB, "--since", "2020-01-01T00:00:00Z", "--until", "2020-01-02T00:00:00Z")
    assert result.exit_code == 0
    assert ("No flows between 2020-01-01 00:00:00 and 2020-01-02 00:00:00 UTC; the input has "
            "flows from 2026-07-01 08:00:03.200 to") in " ".join(result.stdout.split())
    doc = json.loads(run(LAB, "--format", "json", "--since", "2020-01-01",
                         "--until", "2020-01-02").stdout)
    assert doc["flows"] == 0 and doc["top_denied_sources"] == []
    assert doc["input"]["first_flow"].startswith("2026-07-01T08:00:03")


@pytest.mark.parametrize(("argv", "message"), [
    (("--format", "pdf"), "invalid value 'pdf' for --format"),
    (("--bucket", "0s"), "invalid value '0s' for --bucket"),
    (("--bucket", "fortnight"), "invalid value 'fortnight' for --bucket"),
    (("--bucket", "1s", "--until", "2026-07-03T00:00:00Z"), "buckets"),
    (("--top", "none"), "invalid value 'none' for --top"),
    (("--plotlyjs", "local"), "invalid value 'local' for --plotlyjs"),
    (("-o", "/nonexistent-folder/report.html"), "cannot write /nonexistent-folder/report.html"),
])
def test_bad_flags_are_one_line_and_a_non_zero_exit(argv: tuple[str, ...], message: str) -> None:
    result = run(LAB, *argv)
    assert result.exit_code != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_an_unwritable_output_file(tmp_path: Path) -> None:
    folder = tmp_path / "report.html"
    folder.mkdir()
    result = run(LAB, "--format", "html", "-o", str(folder))
    assert result.exit_code != 0 and "cannot write" in result.stderr
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = run(LAB, "-o", str(locked / "r.txt"))
        assert result.exit_code != 0 and "permission denied" in result.stderr


def test_without_source_the_report_reads_the_relay() -> None:
    from flowlens.relay_server import ReplayData, ReplayRelay

    with ReplayRelay(ReplayData.from_sources(LAB), listen="127.0.0.1:0") as relay:
        result = run("--server", f"127.0.0.1:{relay.port}", "--format", "json",
                     "--verdict", "DROPPED")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["window"]["anchor"] == "now"
    assert doc["input"]["sources"] == [f"hubble-relay 127.0.0.1:{relay.port}"]
    assert doc["flows"] == 574 and doc["verdicts"] == {"DROPPED": 574}  # every flow it holds
    assert doc["top_denied_sources"][0]["source"].startswith("default/not-frontend-")


def test_a_relay_that_is_down_is_one_line() -> None:
    result = run("--server", "127.0.0.1:1", "--timeout", "1s", "--format", "json")
    assert result.exit_code != 0 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "127.0.0.1:1" in result.stderr


def test_output_file_and_message(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = run(LAB, "--format", "json", "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert f"wrote the json report of 3,230 flows to {out}" in result.stderr
    assert json.loads(out.read_text())["flows"] == 3230


def _frontend(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["source"].startswith("default/frontend-")]


@pytest.mark.parametrize("selection", [
    ("--from-pod", "default/frontend"), ("--pod", "default/frontend"),
    ("--to-pod", "default/backend"), ("--from-pod", "default/frontend", "--verdict", "FORWARDED"),
])
def test_a_filter_selects_requests_without_hiding_their_answers(
        lab_json: dict[str, Any], selection: tuple[str, ...]) -> None:
    """The answers to the selected requests come from every flow read: frontend's missing
    SYN-ACKs, DNS responses and HTTP latency are the same however frontend was selected."""
    doc = json.loads(run(LAB, "--format", "json", *selection).stdout)
    assert _frontend(doc["syns_without_syn_ack"]) == _frontend(lab_json["syns_without_syn_ack"])
    assert sum(r["syns"] for r in _frontend(doc["syns_without_syn_ack"])) == 23
    assert doc["dns_queries_without_response"] == []
    assert doc["echo_requests_without_reply"] == []
    if "--to-pod" not in selection:
        frontend = json.loads(run(LAB, "--format", "json", "--to-pod", "default/frontend",
                                  "--type", "l7").stdout)
        assert doc["http_latency"] == frontend["http_latency"]
        assert doc["http_latency"][0]["responses"] == 51


def test_a_text_capture_counts_as_its_jsonpb_and_says_what_it_could_not_carry(
        lab_json: dict[str, Any]) -> None:
    doc = json.loads(run(str(SAMPLES / "lab.compact.txt"), "--format", "json").stdout)
    def without_times(value: Any) -> Any:  # text has milliseconds
        if not isinstance(value, list):
            return value
        return [{k: v for k, v in r.items() if k not in ("first", "last")} for r in value]

    for key in ("verdicts", "drop_reasons", "top_denied_sources", "top_denied_destinations",
                "syns_without_syn_ack", "flows_by_type"):
        assert without_times(doc[key]) == without_times(lab_json[key]), key

    def by_flag(rows: list[dict[str, Any]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in rows:
            out[r["flag"]] = out.get(r["flag"], 0) + r["flows"]
        return out

    assert by_flag(doc["tcp_flags"]) == by_flag(lab_json["tcp_flags"])
    missing = {m["missing"]: m["flows"] for m in doc["input"]["missing"]}
    assert missing == {"drop reason of policy-verdict events": 284,
                       "traffic direction of policy-verdict and L7 events": 908,
                       "L4 protocol of L7 events": 908,
                       "IP addresses (pod names instead) of TCP flows": 1417,
                       "node names": 3230}
    assert lab_json["input"]["missing"] == []
    text = run(str(SAMPLES / "lab.compact.txt")).stdout
    assert "DROP_REASON_UNKNOWN" not in text
    header = " ".join(text.split("== Network", 1)[0].split())
    assert ("Not in the input: - drop reason of policy-verdict events (284 flows): Drop Reason "
            "and the denied pods take the reason of the drop event of the same packet.") in header


@pytest.fixture(scope="module")
def lab_relay() -> Iterator[str]:
    from flowlens.relay_server import ReplayData, ReplayRelay

    with ReplayRelay(ReplayData.from_sources(LAB), listen="127.0.0.1:0") as relay:
        yield f"127.0.0.1:{relay.port}"


def test_a_relay_report_ends_at_the_newest_flow_received(lab_relay: str,
                                                         lab_json: dict[str, Any]) -> None:
    doc = json.loads(run("--server", lab_relay, "--format", "json").stdout)
    assert doc["window"]["until"] == doc["window"]["last_flow"] == lab_json["window"]["until"]
    assert doc["bucket"] == "30s" and len(doc["forwarded_vs_dropped"]) == 60
    assert doc["forwarded_vs_dropped"] == lab_json["forwarded_vs_dropped"]


def test_a_relay_report_pairs_answers_the_filters_leave_out(lab_relay: str,
                                                            lab_json: dict[str, Any]) -> None:
    doc = json.loads(run("--server", lab_relay, "--format", "json", "--from-pod",
                         "default/frontend").stdout)
    assert doc["syns_without_syn_ack"] == _frontend(lab_json["syns_without_syn_ack"])
    assert doc["dns_queries_without_response"] == []
    assert doc["input"]["flows"] == 3230 and doc["flows"] < 1500


def test_since_reaching_before_the_relay_holds_flows_says_so(lab_relay: str) -> None:
    doc = json.loads(run("--server", lab_relay, "--format", "json", "--since", "365d").stdout)
    window = doc["window"]
    asked_since, now = (pd.Timestamp(window["asked"][k]) for k in ("since", "until"))
    assert now == pd.Timestamp(window["anchored_at"]) and now - asked_since == pd.Timedelta(days=365)
    oldest = pd.Timestamp(window["held"]["first_flow"])
    assert window["held"]["first_flow"].startswith("2026-07-01T08:00:03.2")
    assert window["covered"] == pytest.approx((now - oldest) / pd.Timedelta(days=365))
    assert window["since"] == window["held"]["first_flow"]  # the window starts where flows do
    assert doc["flows"] == 3230 and doc["bucket"] == "30s"
    text = " ".join(run("--server", lab_relay, "--since", "365d").stdout.split())
    assert "--since 365d asked for" in text
    assert "the relay holds flows from 2026-07-01 08:00:03.200 on: this report covers" in text


@pytest.mark.parametrize(("since", "reads"), [(None, 1), ("365d", 3)])
def test_the_relays_time_range_is_asked_only_of_a_window_short_of_everything(
        lab_relay: str, monkeypatch: pytest.MonkeyPatch, since: str | None, reads: int) -> None:
    """A window of every flow the relay holds is its time range; any other asks two more
    one-flow requests (the oldest and the newest flow)."""
    import flowlens.live as live
    from flowlens.filters import Filters
    from flowlens.sources.relay import Connection

    asked: list[Filters] = []
    read = live._read
    monkeypatch.setattr(live, "_read", lambda conn, filters, *a, **k: (
        asked.append(filters), read(conn, filters, *a, **k))[1])
    window = live.read_window(Connection(lab_relay), Filters(since=since))
    assert len(asked) == reads
    lab = pd.Timestamp("2026-07-01T08:00:03.200", tz="UTC")
    assert window.held[0] is not None and window.held[0].floor("ms") == lab
    assert window.held == (window.flows["time"].min(), window.flows["time"].max())


def test_an_empty_relay_answer_names_the_relays_time_range(lab_relay: str) -> None:
    result = run("--server", lab_relay, "--since", "1h")
    assert result.exit_code == 0
    assert ("the relay holds flows from 2026-07-01 08:00:03.200 to 2026-07-01 08:29:45.881 "
            "UTC") in " ".join(result.stdout.split())
    assert "the input has no flows" not in result.stdout


HOSTILE = "\x1b]0;owned\x07\x1b[2J\rX\x08|`[a](b)<b>"
_RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _hostile_report() -> Any:
    from flowlens import analyses
    from flowlens.frame import build
    from flowlens.sources.batch import FlowBatch

    denied = {"verdict": "DROPPED", "drop_reason": "POLICY_DENIED", "drop_reason_code": 133,
              "event_type": 1, "traffic_direction": "INGRESS", "protocol": "TCP",
              "src_namespace": "ns", "src_pod": f"pod{HOSTILE}", "dst_namespace": "ns",
              "dst_pod": "server", "dst_port": 8080, "policies": f"deny{HOSTILE} (Np)"}
    rows = [
        {"time": "2026-07-01T08:00:00Z", "verdict": f"FORWARDED{HOSTILE}", "node": f"n{HOSTILE}",
         "event_type": 4},
        {**denied, "time": "2026-07-01T08:00:01Z", "node": "plain"},
        {**denied, "time": "2026-07-01T08:00:02Z", "node": "plain",
         "drop_reason": f"REASON{HOSTILE}", "drop_reason_code": 999},
    ]
    names = sorted({k for r in rows for k in r})
    batch = FlowBatch(columns={n: [r.get(n) for r in rows] for n in names}, size=len(rows),
                      lost_events=[])
    return analyses.build_report(build(batch), sources=[f"in{HOSTILE}"])


@pytest.mark.parametrize("fmt", ["text", "md"])
def test_no_flow_string_reaches_a_terminal_raw(fmt: str) -> None:
    """Verdict names, drop reasons, pod and node names (column headers of the over-time
    panels), policies, the input's name and the answer: ESC and CR as tail shows them (^[,
    \\r), other control characters as \\x.."""
    from flowlens.render.report_formats import report_chunks

    out = "".join(report_chunks(_hostile_report(), fmt))
    assert not _RAW_CONTROL.search(out), repr(_RAW_CONTROL.findall(out)[:5])
    shown = re.sub(r"\\([\\`*_\[\]<>|&#!~])", r"\1", out) if fmt == "md" else out
    escaped = "^[]0;owned\\x07^[[2J\\rX\\x08|`[a](b)<b>"
    for where in ("in", "FORWARDED", "n", "pod", "REASON", "deny"):
        assert where + escaped in shown, where
    if fmt == "md":  # Markdown and HTML in flow strings stay text
        assert "|`[a](b)<b>" not in out and r"\|\`\[a\](b)\<b\>" in out


def test_no_flow_string_reaches_a_page_raw() -> None:
    """In HTML, table cells and the column headers of the over-time panels alike: escaped as
    HTML, control characters shown as in text (a page saved and `cat` stays harmless)."""
    from flowlens.render.report_formats import report_chunks

    out = "".join(report_chunks(_hostile_report(), "html", plotlyjs="cdn"))
    assert not _RAW_CONTROL.search(out), repr(_RAW_CONTROL.findall(out)[:5])
    assert "<b>" not in out
    for where in ("<th>", "<td>"):
        assert f"{where}ns/pod^[]0;owned\\x07^[[2J\\rX\\x08|`[a](b)&lt;b&gt;" in out, where


def test_every_format_opens_with_the_answer(lab_json: dict[str, Any]) -> None:
    summary = lab_json["summary"]
    assert next(iter(lab_json)) == "summary"
    still, stopped = summary["denied"]
    assert still["source"].startswith("default/not-frontend-") and still["port"] == 8080
    assert (still["status"], still["since"][:23], still["reason"], still["policies"]) == (
        "still denied", "2026-07-01T08:10:05.336", "POLICY_DENIED",
        "backend-ingress-deny (NetworkPolicy)")
    assert stopped["source"].startswith("default/frontend-")
    assert (stopped["status"], stopped["allowed_again"][:23]) == ("allowed again",
                                                                  "2026-07-01T08:20:01.954")
    assert [c["change"] for c in summary["changes"]] == ["denied", "denied", "allowed again"]
    assert summary["denied_flows"] == 568 == lab_json["drop_reasons"]["POLICY_DENIED"]
    assert (summary["policy_verdict_events"], summary["drop_events"]) == (284, 284)
    assert summary["counted_twice"] is True

    text = run(LAB).stdout
    answer = text.index("== Who is denied, by what, since when")
    assert answer < text.index("INCOMPLETE DATA") < text.index("== Network")
    assert "still denied, since 08:10:05.336 (forwarded until 08:09:42.331)" in \
        " ".join(text[answer:].split())
    assert "counted twice" not in text and "policy-verdict event and as a drop event" in text
    md = run(LAB, "--format", "md").stdout
    assert md.index("## Who is denied") < md.index("INCOMPLETE DATA") < md.index("## Network")


@pytest.mark.parametrize("fmt", ["text", "md"])
def test_the_answer_of_denials_that_name_no_policy(fmt: str) -> None:
    """Drops whose flows name no policy say the reason alone (not "by nan"), and one flow is
    one flow."""
    result = run(str(SHARED / "reference-renderings" / "coverage.jsonl"), "--format", fmt,
                 "--top", "100")
    assert result.exit_code == 0, result.output
    answer = result.stdout.split("Who is denied")[1].split("Changes in the window")[0]
    sentences = " ".join(answer.split()).split(" - ")[1:]
    denials = [re.search(r"; (\d+) (flows?); (\S+?)( by .+)?\.$", s) for s in sentences]
    assert len(denials) == 81 and all(denials) and "nan" not in answer
    assert {(d[1] == "1", d[2]) for d in denials if d} == {(True, "flow"), (False, "flows")}
    assert sum(d[4] is None for d in denials if d) == 50  # the reason alone


@pytest.mark.parametrize("fmt", ["text", "md"])
def test_since_says_a_denial_may_have_begun_before_the_window(fmt: str) -> None:
    """With --since the flows before the window are not read: not-frontend, denied since
    08:10:05, is first seen denied at 08:20:04 in the last 10 minutes, and the answer says so."""
    answer = " ".join(run(LAB, "--since", "10m", "--format", fmt).stdout.split())
    assert ("still denied, since 08:20:04.033 at the latest (the window starts at "
            "08:19:45.881), last at 08:29:43.699; 192 flows;") in answer
    whole = " ".join(run(LAB, "--format", fmt).stdout.split())
    assert "at the latest" not in whole  # every flow read: it passed until 08:09:42.331


def test_the_text_report_puts_long_time_tables_last() -> None:
    titles = [line for line in run(LAB).stdout.splitlines() if line.startswith("== ")]
    over_time = {p.title for p in PANELS if p.series}
    kinds = [any(t in line for t in over_time) for line in titles]
    assert titles[0].startswith("== Who is denied")
    assert kinds == sorted(kinds) and sum(kinds) == len(over_time)


@pytest.mark.parametrize("selection", [("--verdict", "DROPPED"),
                                       ("--from-pod", "default/frontend"),
                                       ("--to-pod", "default/backend", "--type", "drop")])
def test_the_answer_does_not_depend_on_how_the_denials_were_selected(
        lab_json: dict[str, Any], selection: tuple[str, ...]) -> None:
    """A filter that keeps only the drops (or one side) still sees when a connection passed
    again: frontend is allowed again at 08:20:01.954 however it was selected."""
    doc = json.loads(run(LAB, "--format", "json", *selection).stdout)
    (got,) = _frontend(doc["summary"]["denied"])
    (everything,) = _frontend(lab_json["summary"]["denied"])
    # To the millisecond: a drop event comes microseconds after its packet's policy verdict.
    for key in ("status", "since", "allowed_before", "allowed_again"):
        assert (got[key] or "")[:23] == (everything[key] or "")[:23], key
    assert got["flows"] == (92 if "drop" in selection else 184)  # the selected denials


def test_text_tables_show_times_in_one_precision_and_each_heading_once() -> None:
    """A jsonpb and a text capture of the same flows: the text lost events have whole seconds,
    the jsonpb ones sub-millisecond parts; one column still lines up (milliseconds always)."""
    result = run(str(SAMPLES))
    assert result.exit_code == 0, result.output
    headings = re.findall(r"^== (.+?) =+$", result.stdout, re.M)
    assert "General: Lost events" in headings
    assert all(len(set(h.split(": "))) == 2 for h in headings if ": " in h), headings
    lost = result.stdout.split("== General: Lost events")[1].split("\n== ")[0]
    times = re.findall(r"^(?:first|last) +(.+)$", lost, re.M)
    assert len(times) >= 4
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", t) for t in times), times


_WITH_TEARDOWN_SAID = ("import atexit, sys; atexit.register(lambda: sys.stderr.write('teardown\\n'));"
                       " sys.argv[0] = 'flowlens'; from flowlens.cli import run; run()")


def _run_flowlens(*argv: str) -> subprocess.CompletedProcess[str]:
    """`flowlens ARGV` in a process of its own, saying on stderr when Python's teardown runs."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-c", _WITH_TEARDOWN_SAID, *argv], env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_report_ends_at_once_after_writing_everything(tmp_path: Path) -> None:
    """A report that succeeded ends without Python's teardown (unloading pandas and the rest),
    its output whole; a failed one, and other commands, end as usual."""
    expected = run(LAB, "--format", "json").stdout
    done = _run_flowlens("report", LAB, "--format", "json")
    assert (done.returncode, done.stdout, done.stderr) == (0, expected, "")
    out = tmp_path / "r.json"
    done = _run_flowlens("report", LAB, "--format", "json", "-o", str(out))
    assert done.returncode == 0 and "teardown" not in done.stderr
    assert out.read_text() == expected
    failed = _run_flowlens("report", str(tmp_path / "missing.jsonpb"))
    assert failed.returncode == 1 and failed.stderr.endswith("teardown\n")
    tail = _run_flowlens("tail", "--input-file", LAB, "--last", "1")
    assert tail.returncode == 0 and tail.stdout and tail.stderr == "teardown\n"
