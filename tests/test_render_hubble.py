"""flowlens prints what `hubble observe` v1.19.4 prints, byte for byte, from a flows frame.

The expected text is the real hubble CLI's output for the same inputs (../shared/real-flows/rendered
and ../shared/reference-renderings); the smaller cases restate ../shared/spec/hubble-api.md §3.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from shared_data import REFERENCE_BIN, REFERENCE_BIN_ABSENT, SHARED

from flowlens.load import read
from flowlens.render.hubble import TIME_FORMATS, compact, dict_, format_time, table

REAL = SHARED / "real-flows"
OTEL = sorted((REAL / "hubble-otel").glob("*.json"))
REFERENCE = SHARED / "reference-renderings"

Renderer = Callable[..., Iterator[str]]


def assert_renders(records: Iterable[str], expected: Path) -> None:
    """The rendered text equals the file; otherwise show the first differing lines."""
    got = "".join(records)
    want = expected.read_text(encoding="utf-8")
    if got == want:
        return
    got_lines, want_lines = got.splitlines(keepends=True), want.splitlines(keepends=True)
    differing = [i for i, (g, w) in enumerate(itertools.zip_longest(got_lines, want_lines))
                 if g != w]
    report = [f"{expected.name}: {len(differing)} differing lines "
              f"({len(got_lines)} rendered, {len(want_lines)} expected)"]
    for i in differing[:5]:
        g = got_lines[i] if i < len(got_lines) else "<no line>"
        w = want_lines[i] if i < len(want_lines) else "<no line>"
        report += [f"line {i + 1}:", f"  flowlens: {g!r}", f"  hubble:   {w!r}"]
    pytest.fail("\n".join(report), pytrace=False)


# --- real captures (hubble-otel) -------------------------------------------------------------


@pytest.mark.parametrize("capture", OTEL, ids=[p.stem for p in OTEL])
def test_compact_matches_hubble_for_each_real_capture(capture: Path) -> None:
    assert_renders(compact(read(capture)), REAL / "rendered" / f"{capture.stem}.compact.txt")


@pytest.fixture(scope="module")
def all_captures() -> pd.DataFrame:
    return read(OTEL)


@pytest.mark.parametrize(("rendered", "renderer", "options"), [
    ("all.dict.txt", dict_, {}),
    ("all.table.txt", table, {}),
    ("all.compact-node-name.txt", compact, {"node_name": True}),
    ("all.compact-rfc3339nano.txt", compact, {"time_format": "RFC3339Nano"}),
    ("all.compact-numeric.txt", compact, {"numeric": True}),
])
def test_all_real_captures_render_like_hubble(all_captures: pd.DataFrame, rendered: str,
                                              renderer: Renderer, options: dict[str, Any]) -> None:
    assert_renders(renderer(all_captures, **options), REAL / "rendered" / rendered)


# --- synthetic edge cases rendered by hubble (reference-renderings) --------------------------

# How each rendering the README lists was made: `-o <format>` and flags.
RENDERINGS: dict[str, tuple[Renderer, dict[str, Any]]] = {
    "compact": (compact, {}),
    "dict": (dict_, {}),
    "table": (table, {}),
    "compact-node-name": (compact, {"node_name": True}),
    "compact-policy-names": (compact, {"policy_names": True}),
    "compact-rfc3339milli": (compact, {"time_format": "RFC3339Milli"}),
}


def listed_renderings() -> list[tuple[str, str]]:
    """(input, rendering) for every `X.<rendering>.txt` the README lists, for each input X."""
    readme = (REFERENCE / "README.md").read_text(encoding="utf-8")
    inputs = re.findall(r"^\| `([\w-]+)\.jsonl` \|", readme, flags=re.MULTILINE)
    kinds = re.findall(r"`X\.([\w-]+)\.txt`", readme)
    return [(name, kind) for name in inputs for kind in kinds]


def test_the_readme_lists_only_renderings_we_know() -> None:
    listed = listed_renderings()
    assert {name for name, _ in listed} == {"coverage", "lab-small"}
    assert {kind for _, kind in listed} == set(RENDERINGS)


@pytest.fixture(scope="module")
def reference_frames() -> dict[str, pd.DataFrame]:
    return {name: read(REFERENCE / f"{name}.jsonl") for name in ("coverage", "lab-small")}


@pytest.mark.parametrize(("name", "kind"), listed_renderings(),
                         ids=[f"{n}.{k}" for n, k in listed_renderings()])
def test_reference_renderings(reference_frames: dict[str, pd.DataFrame], name: str,
                              kind: str) -> None:
    renderer, options = RENDERINGS[kind]
    assert_renders(renderer(reference_frames[name], **options), REFERENCE / f"{name}.{kind}.txt")


# --- timestamps (§3.2) -----------------------------------------------------------------------

EXAMPLE_TIME = "2024-01-26T09:07:03.396123456Z"


@pytest.mark.parametrize(("time_format", "expected"), [
    ("StampMilli", "Jan 26 09:07:03.396"),
    ("YearMonthDay", "2024-01-26"),
    ("YearMonthDayHour", "2024-01-26T09Z"),
    ("YearMonthDayHourMinute", "2024-01-26T09:07Z"),
    ("RFC3339", "2024-01-26T09:07:03Z"),
    ("RFC3339Milli", "2024-01-26T09:07:03.396Z"),
    ("RFC3339Micro", "2024-01-26T09:07:03.396123Z"),
    ("RFC3339Nano", "2024-01-26T09:07:03.396123456Z"),
    ("RFC1123Z", "Fri, 26 Jan 2024 09:07:03 +0000"),
])
def test_every_time_format_renders_the_spec_example(time_format: str, expected: str) -> None:
    assert format_time(pd.Timestamp(EXAMPLE_TIME), time_format) == expected
    assert format_time(EXAMPLE_TIME, time_format.upper()) == expected
    series = pd.Series(pd.to_datetime([EXAMPLE_TIME], utc=True), index=[7])
    assert format_time(series, time_format.lower()).to_dict() == {7: expected}


def test_time_formats_lists_every_format() -> None:
    assert TIME_FORMATS == (
        "StampMilli", "YearMonthDay", "YearMonthDayHour", "YearMonthDayHourMinute", "RFC3339",
        "RFC3339Milli", "RFC3339Micro", "RFC3339Nano", "RFC1123Z")


@pytest.mark.parametrize(("time", "time_format", "expected"), [
    ("2024-01-26T09:07:03.390000000Z", "RFC3339Milli", "2024-01-26T09:07:03.39Z"),
    ("2024-01-26T09:07:03.000999999Z", "RFC3339Milli", "2024-01-26T09:07:03Z"),
    ("2024-01-26T09:07:03.396100000Z", "RFC3339Micro", "2024-01-26T09:07:03.3961Z"),
    ("2024-01-26T09:07:03.000000500Z", "RFC3339Micro", "2024-01-26T09:07:03Z"),
    ("2024-01-26T09:07:03.100000000Z", "RFC3339Nano", "2024-01-26T09:07:03.1Z"),
    ("2024-01-26T09:07:00Z", "RFC3339Nano", "2024-01-26T09:07:00Z"),
    ("2024-01-26T09:07:10.000000010Z", "RFC3339Nano", "2024-01-26T09:07:10.00000001Z"),
])
def test_rfc3339_fractions_drop_trailing_zeros(time: str, time_format: str, expected: str) -> None:
    assert format_time(time, time_format) == expected


def test_fractions_are_truncated_not_rounded() -> None:
    time = "2024-12-31T23:59:59.999999999Z"
    assert format_time(time, "StampMilli") == "Dec 31 23:59:59.999"
    assert format_time(time, "RFC3339") == "2024-12-31T23:59:59Z"
    assert format_time(time, "RFC3339Micro") == "2024-12-31T23:59:59.999999Z"


def test_stamp_milli_pads_the_day_with_a_space() -> None:
    assert format_time("1970-01-01T00:20:34.5678Z") == "Jan  1 00:20:34.567"


def test_an_unknown_time_format_means_stamp_milli() -> None:
    assert format_time(EXAMPLE_TIME, "Kitchen") == "Jan 26 09:07:03.396"


def test_a_missing_time_prints_na() -> None:
    assert format_time(None) == "N/A"
    times = pd.to_datetime(pd.Series([EXAMPLE_TIME, None]), utc=True)
    assert format_time(times, "RFC3339").tolist() == ["2024-01-26T09:07:03Z", "N/A"]


# --- the printer examples of §3.3.9 ---------------------------------------------------------

# The flow of hubble's printer tests: time 1234.5678 s, node k8s1, 1.1.1.1:31793 (health) to
# 2.2.2.2:8080 (ID:12345), dropped with reason 133 (Policy denied).
BASE_FLOW: dict[str, Any] = {
    "time": "1970-01-01T00:20:34.567800Z", "verdict": "DROPPED",
    "IP": {"source": "1.1.1.1", "destination": "2.2.2.2"},
    "l4": {"TCP": {"source_port": 31793, "destination_port": 8080}},
    "source": {"identity": 4}, "destination": {"identity": 12345}, "Type": "L3_L4",
    "node_name": "k8s1", "event_type": {"type": 1, "sub_type": 133}, "is_reply": False,
    "Summary": "TCP Flags: SYN",
}
POLICY_VERDICT: dict[str, Any] = {"event_type": {"type": 5}, "is_reply": None}
MY_POLICY = {"name": "my-policy", "kind": "CiliumNetworkPolicy"}


def flows(tmp_path: Path, *changes: dict[str, Any],
          lost_events: Iterable[tuple[int, dict[str, Any]]] = ()) -> pd.DataFrame:
    """A frame read from jsonpb: BASE_FLOW with each change (a None value removes the key),
    lost-events responses inserted before the flow at their index."""
    lines: list[str] = []
    lost = dict(lost_events)
    for i, change in enumerate(changes):
        if i in lost:
            lines.append(json.dumps(lost.pop(i)))
        flow = {k: v for k, v in {**BASE_FLOW, **change}.items() if v is not None}
        lines.append(json.dumps({"flow": flow, "node_name": "k8s1", "time": flow.get("time")}))
    lines += [json.dumps(record) for record in lost.values()]
    path = tmp_path / "flows.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return read(path)


def compact_text(df: pd.DataFrame, **options: Any) -> list[str]:
    return list(compact(df, **options))


def test_compact_examples(tmp_path: Path) -> None:
    df = flows(tmp_path, {}, {"is_reply": True}, {"is_reply": None})
    assert compact_text(df) == [
        "Jan  1 00:20:34.567: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) "
        "Policy denied DROPPED (TCP Flags: SYN)\n",
        "Jan  1 00:20:34.567: 2.2.2.2:8080 (ID:12345) <- 1.1.1.1:31793 (health) "
        "Policy denied DROPPED (TCP Flags: SYN)\n",
        "Jan  1 00:20:34.567: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) "
        "Policy denied DROPPED (TCP Flags: SYN)\n",
    ]
    assert compact_text(df, node_name=True)[0].startswith("Jan  1 00:20:34.567 [k8s1]: 1.1.1.1")


def test_policy_verdicts_with_and_without_policy_names(tmp_path: Path) -> None:
    df = flows(
        tmp_path,
        {**POLICY_VERDICT, "traffic_direction": "EGRESS", "egress_denied_by": [MY_POLICY]},
        {**POLICY_VERDICT, "verdict": "FORWARDED", "traffic_direction": "INGRESS",
         "policy_match_type": 1, "ingress_allowed_by": [
             MY_POLICY, {"name": "my-policy-2", "kind": "CiliumClusterwideNetworkPolicy"}]},
        {**POLICY_VERDICT, "verdict": "AUDIT", "traffic_direction": "EGRESS",
         "egress_denied_by": [MY_POLICY]},
        {**POLICY_VERDICT, "verdict": "REDIRECTED", "traffic_direction": None},
    )
    prefix = "Jan  1 00:20:34.567: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) "
    suffix = " (TCP Flags: SYN)\n"
    assert compact_text(df) == [
        prefix + "policy-verdict:none EGRESS DENIED" + suffix,
        prefix + "policy-verdict:L3-Only INGRESS ALLOWED" + suffix,
        prefix + "policy-verdict:none EGRESS AUDITED" + suffix,
        prefix + "policy-verdict:none TRAFFIC_DIRECTION_UNKNOWN ALLOWED" + suffix,
    ]
    assert compact_text(df, policy_names=True) == [
        prefix + "policy-verdict:none EGRESS DENIED BY my-policy (CiliumNetworkPolicy)" + suffix,
        prefix + "policy-verdict:L3-Only INGRESS ALLOWED BY my-policy (CiliumNetworkPolicy), "
        "my-policy-2 (CiliumClusterwideNetworkPolicy)" + suffix,
        # v1.19.4 names no policies after AUDITED (cilium main does).
        prefix + "policy-verdict:none EGRESS AUDITED" + suffix,
        prefix + "policy-verdict:none TRAFFIC_DIRECTION_UNKNOWN ALLOWED" + suffix,
    ]


def test_summary_decorations(tmp_path: Path) -> None:
    df = flows(tmp_path, {"ip_trace_id": {"trace_id": "1234", "ip_option_type": 136}},
               {"auth_type": "SPIRE"}, {"Summary": None})
    assert [line.split(" DROPPED ")[1] for line in compact_text(df)] == [
        "(IP Trace ID: 1234; TCP Flags: SYN)\n", "(TCP Flags: SYN; Auth: SPIRE)\n", "()\n"]


def test_terminal_control_characters_are_neutralised_in_every_format(tmp_path: Path) -> None:
    summary = "Kafka request 1234 correlation id 1 topic 'my-topic\x1b[30mblack\x1b[0m\x1b\r'"
    escaped = "Kafka request 1234 correlation id 1 topic 'my-topic^[[30mblack^[[0m^[\\r'"
    df = flows(tmp_path, {"Summary": summary})
    assert compact_text(df)[0].endswith(f" Policy denied DROPPED ({escaped})\n")
    assert f"    SUMMARY: {escaped}\n" in "".join(dict_(df))
    assert list(table(df))[1].endswith(f"   {escaped}\n")


def test_hosts(tmp_path: Path) -> None:
    df = flows(
        tmp_path,
        # pod: the namespace is the service's when there is a service
        {"source": {"identity": 1, "namespace": "srcns", "pod_name": "srcpod"},
         "destination": {"identity": 2, "namespace": "default", "pod_name": "xwing"},
         "destination_service": {"name": "deathstar", "namespace": "empire"}},
        # service, then DNS names
        {"destination_service": {"name": "tiefighter", "namespace": "deathstar"},
         "source_names": ["a", "b"]},
        # IPv6 is bracketed before a port; port 0 is not printed
        {"IP": {"source": "fd00::1", "destination": "fd00::2"},
         "l4": {"TCP": {"source_port": 0, "destination_port": 8080}}},
        # ICMP has no port
        {"l4": {"ICMPv4": {"type": 8}}},
        # no identity is identity 0
        {"source": None, "destination": {"identity": 16777217}},
    )
    hosts = [" ".join(line.split(": ", 1)[1].split(" ")[:4]) for line in compact_text(df)]
    assert hosts == [
        "srcns/srcpod:31793 (host) -> empire/xwing:8080",
        "a,b:31793 (health) -> deathstar/tiefighter:8080",
        "fd00::1 (health) -> [fd00::2]:8080",
        "1.1.1.1 (health) -> 2.2.2.2",
        "1.1.1.1:31793 (unknown) -> 2.2.2.2:8080",
    ]
    assert [line.split(" (")[0] for line in compact_text(df, numeric=True)[:2]] == [
        "Jan  1 00:20:34.567: 1.1.1.1:31793"] * 2
    assert "(ID:16777217)" in compact_text(df)[4]


LOST: dict[str, Any] = {
    "lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "1", "cpu": 5},
    "node_name": "", "time": "1970-01-01T00:20:34.567800Z"}
LOST_WINDOW: dict[str, Any] = {
    "lost_events": {**LOST["lost_events"], "first": "1970-01-01T00:20:30.567800Z",
                    "last": "1970-01-01T00:20:38.567800Z"},
    "node_name": "k8s1", "time": "1970-01-01T00:20:34.567800Z"}


def test_lost_events_are_printed_where_they_came(tmp_path: Path) -> None:
    df = flows(tmp_path, {}, {}, lost_events=[(1, LOST), (2, LOST_WINDOW)])
    lines = compact_text(df, node_name=True)
    assert lines[1] == "Jan  1 00:20:34.567 EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1\n"
    assert lines[3] == ("Jan  1 00:20:34.567 EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1 "
                        "(first: Jan  1 00:20:30.567, last: Jan  1 00:20:38.567)\n")
    assert len(lines) == 4

    blocks = list(dict_(df, node_name=True))
    assert blocks[1] == (
        "------------\n"
        "  TIMESTAMP: Jan  1 00:20:34.567\n"
        "       NODE: -\n"
        "     SOURCE: HUBBLE_RING_BUFFER\n"
        "       TYPE: EVENTS LOST\n"
        "    VERDICT: -\n"
        "    SUMMARY: CPU(5) - 1\n")
    assert blocks[0].startswith("  TIMESTAMP: Jan  1 00:20:34.567\n       NODE: k8s1\n")


def test_table_aligns_over_all_records(tmp_path: Path) -> None:
    df = flows(tmp_path, {}, lost_events=[(1, LOST)])
    assert list(table(df)) == [
        "TIMESTAMP             SOURCE               DESTINATION    TYPE            VERDICT   "
        "SUMMARY\n",
        "Jan  1 00:20:34.567   1.1.1.1:31793        2.2.2.2:8080   Policy denied   DROPPED   "
        "TCP Flags: SYN\n",
        "Jan  1 00:20:34.567   HUBBLE_RING_BUFFER   -              EVENTS LOST     -         "
        "CPU(5) - 1\n",
    ]
    header = next(table(df, node_name=True))
    assert header.startswith("TIMESTAMP             NODE   SOURCE")


def test_no_records_print_nothing(tmp_path: Path) -> None:
    empty = flows(tmp_path, {}).iloc[0:0]
    assert list(compact(empty)) == list(dict_(empty)) == list(table(empty)) == []


# --- colour (§3.3.8): --color always ---------------------------------------------------------

CYAN, YELLOW, MAGENTA, GREEN, RED, RESET = (f"\x1b[{n}m" for n in (36, 33, 35, 32, 31, 0))


def test_colored_compact_is_the_spec_example(tmp_path: Path) -> None:
    df = flows(tmp_path, {})
    assert compact_text(df, color=True) == [
        f"Jan  1 00:20:34.567: {CYAN}1.1.1.1:{YELLOW}31793{RESET}{RESET} {MAGENTA}(health)"
        f"{RESET} -> {CYAN}2.2.2.2:{YELLOW}8080{RESET}{RESET} {MAGENTA}(ID:12345){RESET} "
        f"Policy denied {RED}DROPPED{RESET} (TCP Flags: SYN)\n"]


def test_colors_follow_the_verdict_and_auth(tmp_path: Path) -> None:
    verdicts = ["FORWARDED", "REDIRECTED", "ERROR", "AUDIT", "TRACED", "TRANSLATED",
                "VERDICT_UNKNOWN"]
    df = flows(tmp_path, *({"verdict": v} for v in verdicts),
               {**POLICY_VERDICT, "traffic_direction": "EGRESS", "egress_denied_by": [MY_POLICY]},
               {"auth_type": "SPIRE"}, {"auth_type": "TEST_ALWAYS_FAIL"},
               {"l4": {"ICMPv4": {"type": 8}}},
               {"IP": {"source": "fd00::1", "destination": "fd00::2"}},
               lost_events=[(0, LOST)])
    lines = compact_text(df, color=True, policy_names=True)
    assert lines[0] == "Jan  1 00:20:34.567 EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1\n"
    painted = [line.split(f"{RESET} Policy denied ")[-1] for line in lines[1:8]]
    assert painted == [f"{GREEN}FORWARDED{RESET} (TCP Flags: SYN)\n",
                       f"{GREEN}REDIRECTED{RESET} (TCP Flags: SYN)\n",
                       f"{RED}ERROR{RESET} (TCP Flags: SYN)\n",
                       f"{YELLOW}AUDIT{RESET} (TCP Flags: SYN)\n",
                       f"{YELLOW}TRACED{RESET} (TCP Flags: SYN)\n",
                       f"{YELLOW}TRANSLATED{RESET} (TCP Flags: SYN)\n",
                       "VERDICT_UNKNOWN (TCP Flags: SYN)\n"]
    assert lines[8].endswith(f" policy-verdict:none EGRESS {RED}DENIED BY my-policy "
                             f"(CiliumNetworkPolicy){RESET} (TCP Flags: SYN)\n")
    assert lines[9].endswith(f"(TCP Flags: SYN; Auth: {GREEN}SPIRE{RESET})\n")
    assert lines[10].endswith(f"(TCP Flags: SYN; Auth: {RED}TEST_ALWAYS_FAIL{RESET})\n")
    assert f"{CYAN}1.1.1.1{RESET} {MAGENTA}(health){RESET} -> {CYAN}2.2.2.2{RESET}" in lines[11]
    assert f"{CYAN}[fd00::2]:{YELLOW}8080{RESET}{RESET}" in lines[12]
    # Without colour, the same text.
    assert [re.sub(r"\x1b\[\d+m", "", line) for line in lines] == compact_text(
        df, policy_names=True)


def test_colored_dict_paints_hosts_and_verdict_only(tmp_path: Path) -> None:
    df = flows(tmp_path, {"is_reply": True}, lost_events=[(1, LOST)])
    blocks = list(dict_(df, color=True, node_name=True))
    assert blocks[0] == (
        "  TIMESTAMP: Jan  1 00:20:34.567\n"
        "       NODE: k8s1\n"
        f"     SOURCE: {CYAN}1.1.1.1:{YELLOW}31793{RESET}{RESET}\n"
        f"DESTINATION: {CYAN}2.2.2.2:{YELLOW}8080{RESET}{RESET}\n"
        "       TYPE: Policy denied\n"
        f"    VERDICT: {RED}DROPPED{RESET}\n"
        "    SUMMARY: TCP Flags: SYN\n")
    assert blocks[1] == list(dict_(df, node_name=True))[1]  # lost events: never coloured
    assert list(table(df, color=True)) == list(table(df))


def test_colour_never_lets_a_flow_write_escape_sequences(tmp_path: Path) -> None:
    """hubble v1.19.4 passes sequences from a flow that equal its own colour codes (such as
    ESC[0m) through raw when colouring; flowlens escapes every byte that came from a flow."""
    summary = "topic 'my-topic\x1b[31mred\x1b[0m\x1b]0;owned\x07\r'"
    df = flows(tmp_path, {"Summary": summary, "source": {"identity": 4, "pod_name": "p\x1b[0m"}})
    line = compact_text(df, color=True)[0]
    assert line.endswith("(topic 'my-topic^[[31mred^[[0m^[]0;owned\x07\\r')\n")
    assert f"{CYAN}p^[[0m:{YELLOW}31793{RESET}{RESET}" in line
    # The printer's own: the hosts' 2 x 4, the verdict's 2, in compact the identities' 2 x 2.
    for renderer, sequences in ((compact, 14), (dict_, 10)):
        colored = "".join(renderer(df, color=True))
        assert colored.count("\x1b") == sequences
        assert re.sub(r"\x1b\[\d+m", "", colored) == "".join(renderer(df))


@pytest.mark.skipif(REFERENCE_BIN is None, reason=REFERENCE_BIN_ABSENT)
@pytest.mark.parametrize(("fmt", "options", "flags"), [
    ("compact", {}, []),
    ("dict", {}, ["-o", "dict"]),
    ("compact", {"node_name": True, "policy_names": True},
     ["--print-node-name", "--print-policy-names"]),
])
def test_colors_match_hubble(fmt: str, options: dict[str, Any], flags: list[str],
                             tmp_path: Path) -> None:
    assert REFERENCE_BIN is not None
    renderer = compact if fmt == "compact" else dict_
    for capture in [REFERENCE / "coverage.jsonl", REFERENCE / "lab-small.jsonl", *OTEL]:
        expected = tmp_path / f"{capture.stem}.{fmt}.txt"
        expected.write_bytes(subprocess.run(
            [str(REFERENCE_BIN / "hubble"), "observe", "--input-file", str(capture),
             "--color", "always", *flags], capture_output=True, check=True).stdout)
        assert_renders(renderer(read(capture), color=True, **options), expected)
