"""Numbers and times are checked, never wrapped: a value outside its field's range (or outside
what the frame's column holds) makes its line a bad line, in every reader."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from flowlens.frame import build, lost_events
from flowlens.sources.batch import ReadReport
from flowlens.sources.files import Opened
from flowlens.sources.jsonpb import read_jsonpb

ROOT_SAMPLE = "samples/lab.jsonpb"


def _first_flow() -> dict[str, Any]:
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / ROOT_SAMPLE
    with sample.open("rb") as f:
        return dict(json.loads(f.readline()))


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


def test_a_lost_event_count_above_int64_builds() -> None:
    from flowlens.frame import build_lost_events

    lost = build_lost_events([{"num_events_lost": (1 << 64) - 1, "position": 0}])
    assert int(lost["num_events_lost"][0]) == (1 << 64) - 1
