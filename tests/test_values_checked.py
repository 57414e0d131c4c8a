"""Numbers and times are checked, never wrapped: a value outside its field's range (or outside
what the frame's column holds) makes its line a bad line, in every reader."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowlens.frame import build, lost_events
from flowlens.sources.batch import ReadReport
from flowlens.sources.files import Opened
from flowlens.sources.jsonpb import read_jsonpb

ROOT_SAMPLE = "samples/lab.jsonpb"


def _first_flow_line() -> str:
    sample = Path(__file__).resolve().parents[1] / ROOT_SAMPLE
    with sample.open() as f:
        return f.readline()


def _first_flow() -> dict[str, Any]:
    return dict(json.loads(_first_flow_line()))


def _read_jsonpb(data: bytes) -> tuple[int, int, ReadReport]:
    report = ReadReport()
    flows = lost = 0
    for batch in read_jsonpb(Opened("t", io.BufferedReader(io.BytesIO(data)), None), report):
        frame = build(batch)
        flows += len(frame)
        lost += len(lost_events(frame))
    return flows, lost, report


def _set(record: dict[str, Any], path: tuple[str, ...], value: Any) -> bytes:
    out = json.loads(json.dumps(record))
    at = out
    for key in path[:-1]:
        at = at.setdefault(key, {})
    at[path[-1]] = value
    return json.dumps(out).encode() + b"\n"


_LOST = {"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "3", "cpu": 1},
         "node_name": "n", "time": "2026-03-14T15:13:03.725Z"}

BAD_VALUES: list[tuple[str, Callable[[dict[str, Any]], bytes], str]] = [
    ("port -1", lambda f: _set(f, ("flow", "l4", "UDP", "source_port"), -1),
     "source port -1 is outside 0..65535"),
    ("port 99999999999", lambda f: _set(f, ("flow", "l4", "UDP", "destination_port"),
                                        99999999999),
     "destination port 99999999999 is outside 0..65535"),
    ("identity -5", lambda f: _set(f, ("flow", "source", "identity"), -5),
     "source identity -5 is outside 0..4294967295"),
    ("event type", lambda f: _set(f, ("flow", "event_type", "type"), 70000),
     "event type 70000 is outside"),
    ("interface index", lambda f: _set(f, ("flow", "interface"), {"index": -1, "name": "eth0"}),
     "interface index -1"),
    ("drop reason", lambda f: _set(f, ("flow", "drop_reason"), 1 << 20), "drop_reason"),
    ("latency", lambda f: _set(f, ("flow", "l7"), {"type": "RESPONSE", "latency_ns": "-5",
                                                   "http": {"code": 200}}), "latency_ns"),
    ("http code", lambda f: _set(f, ("flow", "l7"), {"type": "RESPONSE", "http": {"code": -2}}),
     "HTTP code -2"),
    ("trace id", lambda f: _set(f, ("flow", "ip_trace_id"), {"trace_id": "x"}), "trace_id"),
    ("year 9999", lambda f: _set(f, ("flow", "time"), "9999-01-01T00:00:00Z"), "time"),
    ("year 1600", lambda f: _set(f, ("flow", "time"), "1600-01-01T00:00:00Z"), "time"),
    ("Feb 29 of 2026", lambda f: _set(f, ("flow", "time"), "2026-02-29T00:00:00Z"), "time"),
    ("offset +25:00", lambda f: _set(f, ("flow", "time"), "2026-03-01T00:00:00+25:00"), "time"),
    ("lost time", lambda f: _set(_LOST, ("time",), "026-03-14T15:13:03.725Z"), "time"),
    ("lost first", lambda f: _set(_LOST, ("lost_events", "first"), "2026-13-01T00:00:00Z"),
     "lost-event first"),
    ("lost count -3", lambda f: _set(_LOST, ("lost_events", "num_events_lost"), "-3"),
     "num_events_lost"),
    ("lost count x", lambda f: _set(_LOST, ("lost_events", "num_events_lost"), "x"),
     "num_events_lost"),
    ("lost cpu", lambda f: _set(_LOST, ("lost_events", "cpu"), 1 << 40), "lost-event cpu"),
]


@pytest.mark.parametrize(("make", "message"), [(m, s) for _, m, s in BAD_VALUES],
                         ids=[name for name, _, _ in BAD_VALUES])
@pytest.mark.parametrize("where", ["alone", "after a flow", "before a flow"])
def test_jsonpb_out_of_range_values_are_bad_lines(make: Callable[[dict[str, Any]], bytes],
                                                  message: str, where: str) -> None:
    good = json.dumps(_first_flow()).encode() + b"\n"
    bad = make(_first_flow())
    data = {"alone": bad, "after a flow": good + bad, "before a flow": bad + good}[where]
    flows, lost, report = _read_jsonpb(data)
    assert (flows, lost, report.bad_lines) == (0 if where == "alone" else 1, 0, 1)
    assert message in report.examples[0]
    line = 2 if where == "after a flow" else 1
    assert report.examples[0].startswith(f"t:{line}: ")


def test_jsonpb_values_at_their_limits_still_read() -> None:
    flow = _first_flow()
    data = (_set(flow, ("flow", "l4", "UDP", "source_port"), 65535)
            + _set(flow, ("flow", "source", "identity"), (1 << 32) - 1)
            + _set(flow, ("flow", "time"), "2262-04-11T00:00:00Z")
            + _set(flow, ("flow", "time"), "1677-09-22T00:00:00Z"))
    flows, _, report = _read_jsonpb(data)
    assert (flows, report.bad_lines) == (4, 0)


# --- hubble's text: times checked against the year they get ---------------------------------------

_TEXT_LINE = ("{stamp}: 10.0.0.1:1 (world) -> 10.0.0.2:80 (host) to-endpoint FORWARDED "
              "(TCP Flags: SYN)")


def _read_text(stamps: list[str], year: int) -> tuple[list[str], list[str]]:
    from flowlens.sources.text import read_text

    data = "\n".join(_TEXT_LINE.format(stamp=s) for s in stamps).encode() + b"\n"
    report = ReadReport()
    times = []
    for batch in read_text(Opened("t", io.BufferedReader(io.BytesIO(data)), None), report,
                           "compact", year=year):
        times += [t.isoformat() for t in build(batch)["time"]]
    return times, report.examples


def test_feb_29_of_a_year_that_is_not_leap_is_a_bad_line() -> None:
    stamps = ["Feb 28 23:59:59.000", "Feb 29 00:00:01.000", "Mar  1 00:00:01.000"]
    times, bad = _read_text(stamps, 2026)
    assert times == ["2026-02-28T23:59:59+00:00", "2026-03-01T00:00:01+00:00"]
    assert bad == ["t:2: Feb 29 is not a day of 2026"]
    times, bad = _read_text(stamps, 2024)
    assert len(times) == 3 and times[1] == "2024-02-29T00:00:01+00:00" and not bad


def test_new_year_near_the_limits_steps_the_right_way() -> None:
    times, bad = _read_text(["Dec 31 23:59:59.000", "Jan  1 00:00:01.000",
                             "May  1 00:00:01.000"], 2261)
    assert times == ["2261-12-31T23:59:59+00:00", "2262-01-01T00:00:01+00:00"]
    assert bad == ["t:3: May 1 2262 is outside 1677-09-21 to 2262-04-11"]
    times, bad = _read_text(["Jan  1 00:00:01.000", "Dec 31 23:59:59.000"], 1678)
    assert times == ["1678-01-01T00:00:01+00:00", "1677-12-31T23:59:59+00:00"] and not bad


# --- relay input ----------------------------------------------------------------------------------


RELAY_BAD = [
    ("port", lambda f: f["l4"]["UDP"].update(source_port=99999), "port 99999 is outside"),
    ("event type", lambda f: f["event_type"].update(type=70000), "event type 70000:0"),
    ("drop reason", lambda f: f.update(drop_reason=70000), "drop_reason 70000"),
    ("time", lambda f: f.update(time="9999-01-01T00:00:00Z"), "time is outside"),
    ("http code", lambda f: f.update(l7={"type": "RESPONSE", "http": {"code": 40000}}),
     "HTTP code 40000"),
]


@pytest.mark.parametrize(("mutate", "message"), [(m, s) for _, m, s in RELAY_BAD],
                         ids=[name for name, _, _ in RELAY_BAD])
@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "reference"])
def test_relay_flows_out_of_range_are_skipped_and_named(mutate: Callable[[dict[str, Any]], Any],
                                                        message: str, fast: bool) -> None:
    from flowlens.sources.proto import ProtoDecoder
    from flowlens.sources.protodict import response_from_dict

    record = _first_flow()
    good = response_from_dict(record).SerializeToString()
    mutate(record["flow"])
    bad = response_from_dict(record).SerializeToString()
    decoded = ProtoDecoder(fast=fast).decode([good, bad, good])
    frame = build(decoded.batch)
    assert len(frame) == 2
    assert len(decoded.bad) == 1 and message in decoded.bad[0]
    assert frame["src_port"].tolist() == [43914, 43914]


def test_a_report_over_centuries(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from flowlens.cli import main

    first, second = (json.loads(line) for line in
                     (_first_flow_line(), _first_flow_line()))
    first["flow"]["time"], second["flow"]["time"] = "1700-01-01T00:00:00Z", "2200-01-01T00:00:00Z"
    path = tmp_path / "centuries.jsonpb"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    for fmt in ("text", "md", "json", "html"):
        result = CliRunner().invoke(main, ["report", str(path), "--format", fmt])
        assert result.exit_code == 0, (fmt, result.stderr)
    result = CliRunner().invoke(main, ["report", str(path), "--format", "json"])
    report = json.loads(result.stdout)
    assert report["window"]["first_flow"] == "1700-01-01T00:00:00Z"
    assert sum(r.get("FORWARDED", 0) for r in report["forwarded_vs_dropped"]) == 2


def test_a_lost_event_count_above_int64_builds() -> None:
    from flowlens.frame import build_lost_events

    lost = build_lost_events([{"num_events_lost": (1 << 64) - 1, "position": 0}])
    assert int(lost["num_events_lost"][0]) == (1 << 64) - 1
