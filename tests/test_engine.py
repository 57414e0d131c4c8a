"""Reports over a flow store, partition by partition (flowlens.engine): the JSON equals the
report over the whole store read into memory, key for key, on a multi-day store whose hour
edges cut through every kind of pair; on Dask (a real scheduler and two workers on loopback)
it equals the local engine; memory follows a partition, not the store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from process_limits import peak_rss_mb

import flowlens
from flowlens import analyses, engine
from flowlens import frame as F
from flowlens.analyses.parts import PAIRING_REACH
from flowlens.cli import main
from flowlens.filters import Filters, time_window
from flowlens.policy import load_policies
from flowlens.render import report_json
from flowlens.sources.batch import FlowBatch
from flowlens.store import Store
from flowlens.store.writer import StoreWriter, compact, create_store

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab.jsonpb"
POLICIES = sorted(str(p) for p in (ROOT / "samples" / "policies").glob("*.yaml"))
EDGE = pd.Timestamp("2026-07-04T10:00:00Z")  # the hour edge the hand-made flows cut through
HOUR = pd.Timedelta(hours=1)


def _shifted(lab: pd.DataFrame, by: pd.Timedelta, tag: str) -> pd.DataFrame:
    """The lab capture moved by `by`, with uuids of its own."""
    df = lab.copy()
    df["time"] = df["time"] + by
    df["uuid"] = pd.array([f"{u}-{tag}" for u in lab["uuid"]], dtype=F.empty()["uuid"].dtype)
    lost = F.lost_events(lab)
    lost["time"] = lost["time"] + by
    F.set_lost_events(df, lost)
    return df


def _at(moment: pd.Timestamp | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _flows(*rows: dict[str, Any], lost: tuple[dict[str, Any], ...] = ()) -> pd.DataFrame:
    """A typed frame of hand-made flows (`time` a Timestamp or None), as test_analyses builds
    them."""
    names = sorted({k for r in rows for k in r} | {"time", "uuid"})
    columns = {n: [_at(r.get("time")) if n == "time" else
                   (r.get("uuid") or f"edge-{i}") if n == "uuid" else r.get(n)
                   for i, r in enumerate(rows)] for n in names}
    return F.build(FlowBatch(columns=columns, size=len(rows), lost_events=list(lost)))


def _ip(pod: str) -> str:
    return f"10.1.{len(pod)}.{sum(map(ord, pod)) % 250}"


def _ends(src: str, sport: int, dst: str, dport: int) -> dict[str, Any]:
    return {"src_ip": _ip(src), "src_namespace": "default", "src_pod": src, "src_port": sport,
            "dst_ip": _ip(dst), "dst_namespace": "default", "dst_pod": dst, "dst_port": dport}


def _tcp(t: pd.Timedelta, flags: str, src: str, sport: int, dst: str, dport: int,
         **extra: Any) -> dict[str, Any]:
    return {"time": EDGE + t, "verdict": "FORWARDED", "protocol": "TCP", "tcp_flags": flags,
            "event_type": 4, "ip_version": "IPv4", **_ends(src, sport, dst, dport), **extra}


def _s(seconds: float) -> pd.Timedelta:
    return pd.Timedelta(seconds=seconds)


def _edge_flows() -> pd.DataFrame:
    """Flows whose pairs the hours 10:00, 11:00 and 12:00 of 2026-07-04 cut through."""
    http = {"event_type": 129, "l7_protocol": "http", "verdict": "FORWARDED"}
    dns = {"event_type": 129, "l7_protocol": "dns", "verdict": "FORWARDED",
           "dns_query": "db.example."}
    icmp = {"verdict": "FORWARDED", "protocol": "ICMPv4", "event_type": 4}
    denied = {"verdict": "DROPPED", "drop_reason": "POLICY_DENIED", "drop_reason_code": 133,
              "event_type": 5, "traffic_direction": "INGRESS", "protocol": "TCP",
              "tcp_flags": "SYN", "is_reply": False,
              "policies": "default/deny (NetworkPolicy)"}
    allowed = {"verdict": "FORWARDED", "event_type": 5, "traffic_direction": "INGRESS",
               "protocol": "TCP", "tcp_flags": "SYN", "is_reply": False}
    rows = [
        # a SYN answered across the edge, one answered before it was asked, one retransmitted
        # across the edge and never answered (one connection, two SYNs)
        _tcp(_s(-0.1), "SYN", "client", 40000, "server", 80),
        _tcp(_s(0.1), "SYN,ACK", "server", 80, "client", 40000),
        _tcp(_s(-30), "SYN,ACK", "server", 80, "client", 40001),
        _tcp(_s(30), "SYN", "client", 40001, "server", 80),
        _tcp(_s(-2), "SYN", "client", 40002, "server", 80),
        _tcp(_s(1), "SYN", "client", 40002, "server", 80),
        _tcp(_s(200), "SYN", "client", 40003, "server", 80),  # answered too late
        _tcp(_s(330), "SYN,ACK", "server", 80, "client", 40003),
        # a DNS query answered in the next hour
        {"time": EDGE - _s(30), "l7_type": "REQUEST", **dns, **_ends("client", 5353, "dns", 53)},
        {"time": EDGE + _s(30), "l7_type": "RESPONSE", "dns_rcode": 3, **dns,
         **_ends("dns", 53, "client", 5353)},
        # HTTP: the client's request before the edge, the server's response after it; four
        # responses in all (an even count: p50 falls between two)
        {"time": EDGE - _s(0.5), "l7_type": "REQUEST", "http_method": "GET", **http,
         **_ends("client", 41000, "server", 8080)},
        {"time": EDGE + _s(0.5), "l7_type": "RESPONSE", "http_code": 200, "latency_ns": 10**9,
         **http, **_ends("server", 8080, "client", 41000)},
        {"time": EDGE + HOUR - _s(1), "l7_type": "RESPONSE", "http_code": 503,
         "latency_ns": 3 * 10**8, **http, **_ends("server", 8080, "other", 41001)},
        {"time": EDGE + HOUR + _s(1), "l7_type": "RESPONSE", "http_code": 200,
         "latency_ns": 7 * 10**8, **http, **_ends("server", 8080, "other", 41002)},
        {"time": EDGE - HOUR + _s(5), "l7_type": "RESPONSE", "http_code": 200,
         "latency_ns": 2 * 10**8, **http, **_ends("server", 8080, "client", 41003)},
        # echo requests: replied across the edge in time, and too late
        {"time": EDGE - _s(5), "icmp_type": "EchoRequest", **icmp,
         **_ends("client", 0, "server", 0)},
        {"time": EDGE + _s(3), "icmp_type": "EchoReply", **icmp,
         **_ends("server", 0, "client", 0)},
        {"time": EDGE - _s(2), "icmp_type": "EchoRequest", **icmp,
         **_ends("client", 0, "dns", 0)},
        {"time": EDGE + _s(9), "icmp_type": "EchoReply", **icmp, **_ends("dns", 0, "client", 0)},
        # a connection end allowed, then denied across the edge, allowed again an hour later
        {"time": EDGE - _s(10), **allowed, **_ends("web", 42000, "api", 9000)},
        {"time": EDGE + _s(10), **denied, **_ends("web", 42001, "api", 9000)},
        {"time": EDGE + _s(20), **denied, **_ends("web", 42002, "api", 9000)},
        {"time": EDGE + HOUR + _s(10), **allowed, **_ends("web", 42003, "api", 9000)},
        # denied sources tied on flows, in different hours (--top 2 cuts between them)
        *({"time": EDGE + t, **denied, **_ends(name, 43000 + i, "api", 9001)}
          for i, (name, t) in enumerate([("alpha", -HOUR), ("alpha", HOUR), ("beta", _s(5)),
                                         ("beta", HOUR + _s(5)), ("gamma", _s(7)),
                                         ("gamma", -_s(7))])),
        # hubble text: a policy verdict without a drop reason just before 11:00, the drop
        # event of its packet just after
        {"time": EDGE + HOUR - _s(0.0002), "verdict": "DROPPED", "event_type": 5,
         "traffic_direction": "INGRESS", "protocol": "UDP",
         **_ends("mute", 44000, "api", 9002)},
        {"time": EDGE + HOUR + _s(0.0003), "verdict": "DROPPED", "event_type": 1,
         "drop_reason": "POLICY_DENIED", "drop_reason_code": 133, "protocol": "UDP",
         **_ends("mute", 44000, "api", 9002)},
        # a flow without a time (the store keeps it in the epoch's hour)
        {"time": None, **denied, **_ends("web", 42009, "api", 9000)},
    ]
    lost = tuple({"time": _at(EDGE + t), "node": "kind-worker", "source": "HUBBLE_RING_BUFFER",
                  "num_events_lost": n, "position": 0}
                 for t, n in ((-_s(1), 5), (_s(1), 7), (HOUR + _s(3), 11)))
    return _flows(*rows, lost=lost)


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four days: the lab capture across 09:00 on July 1st, across midnight into July 3rd and
    at 08:00 on July 3rd; the hand-made flows around 10:00 to 12:00 on July 4th. Several
    files per hour, some hours compacted."""
    lab = flowlens.read(LAB)
    root = create_store(tmp_path_factory.mktemp("days") / "store")
    writer = StoreWriter(root)
    for df in (_shifted(lab, pd.Timedelta(minutes=45), "a"),
               _shifted(lab, pd.Timedelta(days=1, hours=15, minutes=45), "b"),
               _shifted(lab, pd.Timedelta(days=2), "c"), _edge_flows()):
        half = len(df) // 2
        for rows in (range(half), range(half, len(df))):
            writer.add(F.take(df, rows))
            writer.flush()
    for hour in ("2026-07-01T09:00Z", "2026-07-04T10:00Z"):
        compact(root, pd.Timestamp(hour).value)
    return root


def _in_memory(store: Path, filters: Filters, **kwargs: Any) -> str:
    """The report over every flow of the store read into memory; its `input.flows` the flows
    the engine reads: those within PAIRING_REACH of the window (every flow without one)."""
    df = flowlens.read(store)
    report = analyses.build_report(df, filters, sources=[str(store)], **kwargs)
    since, until = time_window(filters, report.input.last_flow)
    times = df["time"]
    read = int(((times >= (since or times.min()) - PAIRING_REACH)
                & (times <= (until or times.max()) + PAIRING_REACH)).sum())
    if since is None:
        read += int(times.isna().sum())  # the epoch's hour
    return report_json.render(replace(report, input=replace(report.input, flows=read)))


def _engine(store: Path | str, filters: Filters, **kwargs: Any) -> str:
    return report_json.render(engine.report_store(str(store), filters, **kwargs))


CASES = [
    [],
    [("since", "2026-07-04T10:00:20Z"), ("until", "2026-07-04T11:00:00.0001Z")],
    [("since", "2026-07-04T09:59:55Z"), ("until", "2026-07-04T10:00:00.2Z")],
    [("from-pod", "default/client")],
    [("verdict", "DROPPED")],
    [("verdict", "DROPPED"), ("since", "2026-07-04T09:00:00Z")],
    [("since", "30h")],
    [("to-pod", "default/api"), ("since", "2026-07-01T08:50:00Z"),
     ("until", "2026-07-03T00:05:00Z")],
    [("not", None), ("verdict", "FORWARDED"), ("until", "2026-07-04T10:00:00Z")],
]


@pytest.mark.parametrize("flags", CASES, ids=lambda f: " ".join(f"{k}={v}" for k, v in f))
def test_the_engine_reports_a_store_as_the_whole_store_read_into_memory(
        days: Path, flags: list[tuple[str, str | None]]) -> None:
    filters = Filters.from_pairs(flags)
    policies = load_policies(POLICIES)
    for kwargs in ({}, {"top": 2, "bucket": pd.Timedelta("1h"), "policies": policies}):
        expected = _in_memory(days, filters, **kwargs)
        assert _engine(days, filters, **kwargs) == expected


def test_the_hand_made_pairs_are_cut_by_hour_edges(days: Path) -> None:
    """What the test above proves rests on these: the pairs lie in different partitions,
    and a part that saw nothing beyond its hour would count differently."""
    hours = {p.start_ns for p in Store(days).partitions() if p.stats()[0]}
    for edge in (EDGE, EDGE + HOUR):
        assert {(edge - HOUR).value, edge.value} <= hours
    doc = json.loads(_engine(days, Filters()))
    mine = {(r["source"], r["destination"], r["port"]): (r["connections"], r["syns"])
            for r in doc["syns_without_syn_ack"] if r["source"] == "default/client"}
    assert mine == {("default/client", "default/server", 80): (2, 3)}  # 40002 (twice), 40003
    assert doc["echo_requests_without_reply"][0]["destination"] == "default/dns"
    assert [r["query"] for r in doc["dns_queries_without_response"]] == []
    assert doc["drop_reasons"]["POLICY_DENIED"] >= 11
    web = [r for r in doc["summary"]["changes"] if r["source"] == "default/web"]
    assert [(r["change"], r["at"]) for r in web] == [  # the flow without a time comes last
        ("denied", "2026-07-04T10:00:10Z"), ("allowed again", "2026-07-04T11:00:10Z"),
        ("denied", None)]
    # --verdict DROPPED selects the denials; the window's flows still tell web passed again
    dropped = json.loads(_engine(days, Filters.from_pairs([("verdict", "DROPPED"),
                                                           ("since", "2026-07-04T09:00:00Z")])))
    assert [r["status"] for r in dropped["summary"]["denied"]
            if r["source"] == "default/web"] == ["allowed again"]
    chosen = json.loads(_engine(days, Filters.from_pairs([("from-pod", "default/client")])))
    assert chosen["http_latency"][0]["responses"] == 1  # the answer to its request, at 10:00


def test_a_part_that_sees_nothing_beyond_its_hour_would_count_differently(
        days: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "PAIRING_REACH", pd.Timedelta(0))
    expected = _in_memory(days, Filters())
    doc, wrong = json.loads(expected), json.loads(_engine(days, Filters()))
    differs = {k for k in doc if doc[k] != wrong[k]}
    assert {"syns_without_syn_ack", "dns_queries_without_response",
            "echo_requests_without_reply", "drop_reasons"} <= differs


def test_report_and_policy_check_over_a_store_run_on_the_engine(days: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["report", str(days), "--format", "json", "--since", "40h"])
    assert done.exit_code == 0, done.output
    assert done.stdout == _in_memory(days, Filters.from_pairs([("since", "40h")]))
    done = runner.invoke(main, ["policy", "check", *POLICIES, str(days), "--format", "json"])
    assert done.exit_code == 0, done.output
    expected = analyses.build_report(flowlens.read(days), panels=(),
                                     policies=load_policies(POLICIES))
    assert expected.policy is not None
    assert json.loads(done.stdout) == expected.policy.to_dict()
    for flags, message in ((["--engine", "dask"], "--engine dask needs --scheduler"),
                           (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler goes with"),
                           ([str(LAB), "--engine", "dask", "--scheduler", "tcp://x:1"],
                            "runs a report over a flow store")):
        done = runner.invoke(main, ["report", *([] if flags[0] == str(LAB) else [str(days)]),
                                    *flags])
        assert done.exit_code == 2 and message in done.output, done.output


def test_the_python_api_reaches_the_engine(days: Path) -> None:
    report = engine.report(str(days), since="2026-07-04T09:00:00Z", top=3)
    expected = _in_memory(days, Filters.from_pairs([("since", "2026-07-04T09:00:00Z")]), top=3)
    assert report_json.render(report) == expected


def _uniform_store(root: Path, hours: int, per_hour: int) -> Path:
    """`hours` hours of the lab capture's flows repeated, `per_hour` flows each."""
    lab = flowlens.read(LAB)
    create_store(root)
    writer = StoreWriter(root)
    for h in range(hours):
        rows = [i % len(lab) for i in range(per_hour)]
        df = F.take(lab, rows)
        df["time"] = pd.Timestamp("2026-07-01T00:00:00Z") + h * HOUR + pd.to_timedelta(
            range(per_hour), unit="ms") * (3_600_000 // per_hour)
        writer.add(df)
        writer.flush()
    return root


def test_memory_follows_the_largest_partition_not_the_store(tmp_path: Path) -> None:
    small = _uniform_store(tmp_path / "small", 2, 60_000)
    large = _uniform_store(tmp_path / "large", 8, 60_000)
    peaks = {}
    for store in (small, large):
        run, peaks[store] = peak_rss_mb([sys.executable, "-m", "flowlens", "report", str(store),
                                         "--format", "json", "-o", str(store) + ".json"],
                                        timeout=600)
        assert run.returncode == 0, run.stderr
    growth = peaks[large] - peaks[small]
    assert growth < 0.25 * peaks[small], peaks  # four times the flows: not four times the peak


# --- Dask ------------------------------------------------------------------------------------


def _dask(*args: str) -> subprocess.Popen[bytes]:
    """`dask scheduler` or `dask worker` (as `python -m distributed.cli.…`), its own process
    group."""
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(processes: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, sig)
    for process in processes:
        process.wait(timeout=60)


@contextlib.contextmanager
def _cluster(folder: Path, workers: int) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A real Dask scheduler and `workers` workers (with their nannies), each its own process,
    on loopback: the scheduler's address and the workers' processes."""
    from distributed import Client

    address_file = folder / "scheduler.json"
    scheduler = _dask("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                      "--no-dashboard", "--scheduler-file", str(address_file))
    started = [scheduler]
    try:
        for _ in range(600):
            if address_file.exists() and address_file.stat().st_size:
                break
            assert scheduler.poll() is None, "dask scheduler ended"
            time.sleep(0.1)
        address = json.loads(address_file.read_text())["address"]
        hands = [_dask("distributed.cli.dask_worker", address, "--nthreads", "1",
                       "--no-dashboard", "--host", "127.0.0.1") for _ in range(workers)]
        started += hands
        with Client(address, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address, hands
    finally:
        _stop(started[::-1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two workers (the test extra installs flowlens[dask])."""
    with _cluster(tmp_path_factory.mktemp("dask"), 2) as (address, _):
        yield address


@pytest.mark.parametrize("flags", [CASES[0], CASES[1], CASES[3], CASES[6]],
                         ids=["all", "window", "from-pod", "to-pod-window"])
def test_dask_reports_every_key_as_the_local_engine(days: Path, cluster: str,
                                                    flags: list[tuple[str, str | None]]) -> None:
    filters = Filters.from_pairs(flags)
    policies = load_policies(POLICIES)
    local = json.loads(_engine(days, filters, policies=policies))
    for store in (str(days), days.as_uri()):  # a path every worker sees, an fsspec URL
        remote = json.loads(_engine(store, filters, policies=policies,
                                    runner=engine.on_dask(cluster)))
        if store != str(days):
            local["input"]["sources"] = [store]
        assert remote.keys() == local.keys()
        for key in local:
            assert remote[key] == local[key], key


def test_report_engine_dask_from_the_command_line(days: Path, cluster: str) -> None:
    done = subprocess.run([sys.executable, "-m", "flowlens", "report", days.as_uri(),
                           "--engine", "dask", "--scheduler", cluster, "--format", "json",
                           "--since", "2026-07-03T00:00:00Z"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    expected = json.loads(_engine(days, Filters.from_pairs([("since",
                                                             "2026-07-03T00:00:00Z")])))
    expected["input"]["sources"] = [days.as_uri()]
    assert json.loads(done.stdout) == expected


def _report_on(days: Path, scheduler: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"}
    return subprocess.run([sys.executable, "-m", "flowlens", "report", str(days), "--engine",
                           "dask", "--scheduler", scheduler, "--format", "json"],
                          capture_output=True, text=True, timeout=300, check=False, env=env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("scheduler", "status", "message"), [
    ("nonsense::", 2, "--scheduler nonsense::: invalid address"),
    ("127.0.0.1", 2, "missing port number"),
    ("tcp://127.0.0.1:{port}", 1, "Timed out trying to connect"),  # nothing listens there
])
def test_a_scheduler_that_is_not_there_is_one_line(days: Path, scheduler: str, status: int,
                                                   message: str) -> None:
    done = _report_on(days, scheduler.format(port=_free_port()))
    assert done.returncode == status and done.stdout == "", done.stderr
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr


def test_a_cluster_that_lost_its_workers_is_one_line(days: Path, tmp_path: Path) -> None:
    with _cluster(tmp_path, 1) as (address, hands):
        _stop(hands, signal.SIGKILL)  # the worker and its nanny, killed
        done = _report_on(days, address)
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert done.stderr.splitlines() == [
        f"flowlens: error: --scheduler {address}: the Dask cluster has no workers (none for 3 s: "
        "none started, or all lost)"], done.stderr


def test_a_worker_lost_during_a_report_costs_time_not_flows(days: Path, tmp_path: Path) -> None:
    """A worker killed (with its nanny) while it computes a partition: Dask computes it again
    on the other, and the report is the same."""
    from distributed import Client

    with _cluster(tmp_path, 2) as (address, _):
        report = subprocess.Popen([sys.executable, "-m", "flowlens", "report", str(days),
                                   "--engine", "dask", "--scheduler", address, "--format",
                                   "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        with Client(address, set_as_default=False) as client:
            pids = client.run(os.getpid)
            deadline = time.monotonic() + 120
            busy: list[str] = []
            while not busy and time.monotonic() < deadline:
                busy = [w for w, keys in client.processing().items() if keys]
                time.sleep(0.02)
            assert busy and report.poll() is None, "the worker was to die during the report"
            os.killpg(os.getpgid(pids[busy[0]]), signal.SIGKILL)  # its nanny's group
        out, err = report.communicate(timeout=300)
    assert report.returncode == 0, err
    assert json.loads(out) == json.loads(_engine(days, Filters()))
