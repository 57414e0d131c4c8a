"""The flow store's benchmark: `python bench/store.py [--flows N] [--rounds N]
[--only record|reports] [--stores FOLDER]`.

(a) bytes per flow on disk: the mixed generated capture (flowlens.synth: the lab scenario
    repeated, every kind of flow) written as `record` writes it (decoded runs, files of at most
    100,000 flows per hour), against the same flows as jsonpb (target <= 80 bytes/flow): as
    generated (the lab's pace, about 2 flows/s, so an hour's partition holds few flows), and
    re-timed to 50,000 flows/s (the live rate (b) is about: one partition, full files);
(b) `record` from ../shared/bin/flowsrv (a Go relay: the client is not capped by a Python
    server), or from the project's relay when flowsrv is absent (said so): sustained flows/s
    into a store (from the first roll to the last flow, the files of the flows before it
    written behind meanwhile; whole runs, with the closing write, printed too), against the
    same client receiving and decoding the same stream without writing (flowlens's FlowStream,
    as `iter_relay` uses it) over the same flows; medians of alternating rounds,
    each with the CPUs other processes kept busy, and this process's CPU per flow (target >=
    50,000 flows/s; under load the ratio is the robust figure: of the medians, the median of
    the rounds' own, and by CPU per flow with the relay's, what it is when the CPU is the
    limit). The capture is re-timed to 50,000 flows/s, as a relay that busy would send it. It
    says which decoder the client uses: a stale C extension measures the Python reference;
(c) where record's time goes: microseconds per flow of each step: receiving (from (b): the
    client's CPU less decoding), then on the same serialized flows in this process: the C split
    (bytes -> values), the Arrow columns, the table by hour, the Parquet file;
(d)-(f) reports over stores of 1M, 3M and 10M flows: see bench/store_reports.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from common import (  # bench/ is on sys.path as a script
    best_of,
    cpu_seconds,
    decoder_used,
    free_port,
    reference_bin,
    timed,
)
from store_reports import STORES, report_figures

from flowlens import frame
from flowlens.filters import Filters
from flowlens.live import relay_stream
from flowlens.render.jsonpb import encode_response_bytes
from flowlens.sources.proto import ProtoDecoder
from flowlens.sources.protodict import response_from_dict
from flowlens.sources.relay import Connection
from flowlens.store.record import Recorder
from flowlens.store.writer import DEFAULT_ROLL_FLOWS, StoreWriter, create_store
from flowlens.synth import generate_flows

RUN = 5_000  # the client's decoding run


def _serve(jsonpb: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """flowsrv serving the file, else `flowlens relay`; (process, address, what it is)."""
    address = f"127.0.0.1:{free_port()}"
    flowsrv = reference_bin("flowsrv")
    if flowsrv is not None:
        proc = subprocess.Popen([flowsrv, "-listen", address, "-in", str(jsonpb)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        what = f"flowsrv ({flowsrv})"
        ready = "ready"
    else:
        print("    ../shared/bin/flowsrv is ABSENT (not beside this checkout nor on PATH): "
              "measuring against the project's own relay (`flowlens relay`, Python), which "
              "caps the rate at its serving speed")
        proc = subprocess.Popen([sys.executable, "-m", "flowlens", "relay", str(jsonpb),
                                 "--listen", address], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        what, ready = "flowlens relay", "serving"
    out = proc.stdout if proc.stdout is not None else proc.stderr
    assert out is not None
    line = out.readline().decode()
    if ready not in line:
        proc.kill()
        raise SystemExit(f"{what} did not start: {line}")
    return proc, address, what


def _retimed(records: list[dict[str, Any]], per_second: int) -> list[dict[str, Any]]:
    """The records with times `1/per_second` apart from the first one's hour on."""
    start = pd.Timestamp(records[0]["flow"]["time"]).floor("h").value
    step = 1_000_000_000 // per_second
    out = []
    for i, record in enumerate(records):
        stamp = pd.Timestamp(start + i * step, tz="UTC").isoformat().replace("+00:00", "Z")
        out.append({**record, "time": stamp, "flow": {**record["flow"], "time": stamp}})
    return out


def _written(payloads: list[bytes], root: Path) -> tuple[int, int]:
    """Bytes and files of the flows as `record` writes them (runs of RUN, default roll)."""
    writer = StoreWriter(create_store(root))
    decoder = ProtoDecoder()
    for start in range(0, len(payloads), RUN):
        writer.add_batch(decoder.decode(payloads[start:start + RUN]).batch)
        if writer.due():
            writer.flush()
    writer.flush()
    return sum(p.stat().st_size for p in (root / "flows").rglob("*.parquet")), writer.stats.files


def bytes_per_flow(records: list[dict[str, Any]], live: list[dict[str, Any]],
                   tmp: Path) -> None:
    n = len(records)
    jsonpb = sum(len(encode_response_bytes(r)) + 1 for r in records)
    for name, chosen in (("as generated", records), ("at 50,000/s", live)):
        payloads = [response_from_dict(r).SerializeToString() for r in chosen]
        on_disk, files = _written(payloads, tmp / name.replace(" ", "-"))
        per_flow = on_disk / n
        print(f"(a) store, {name:12s} {per_flow:7.1f} bytes/flow  ({n:,} flows, "
              f"{on_disk / 1e6:.1f} MB in {files} files; target <= 80: "
              f"{'ok' if per_flow <= 80 else 'MISSED'})")
    print(f"    jsonpb              {jsonpb / n:7.1f} bytes/flow  (baseline: the store is "
          f"{jsonpb / on_disk:.0f}x smaller)")


def _window(n: int) -> int:
    """Where the sustained window starts: after the first roll, so that it holds as many flows
    written behind as received; for runs shorter than two rolls, at the first flows."""
    return DEFAULT_ROLL_FLOWS if n >= 2 * DEFAULT_ROLL_FLOWS else 1


class _Window:
    """Flows and seconds from the window's start to the n-th flow."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.marks: list[tuple[int, float]] = []

    def passed(self, flows: int) -> bool:
        """Count the flows so far; True once n are in."""
        for threshold in (_window(self.n), self.n)[len(self.marks):]:
            if flows < threshold:
                break
            self.marks.append((flows, time.perf_counter()))
        return len(self.marks) == 2

    def rate(self) -> tuple[int, float]:
        (first, start), (last, end) = self.marks
        return last - first, end - start


def _record(address: str, n: int, root: Path) -> tuple[tuple[int, float], float]:
    """`record` until n flows are in a new store (timed by the caller, with the closing write
    of what is buffered); returns the sustained window and the seconds of the closing write."""
    shutil.rmtree(root, ignore_errors=True)
    recorder = Recorder(root, Connection(address))
    window = _Window(n)

    def watch(r: Recorder) -> None:
        if window.passed(r.writer.accepted_flows):
            r.stop()

    recorder.on_progress = watch
    summary = recorder.run()
    assert summary.written.flows >= n, summary
    return window.rate(), time.perf_counter() - window.marks[-1][1]


def _receive(address: str, n: int) -> tuple[tuple[int, float], float]:
    """The same client without writing: receive and decode until n flows."""
    stream = relay_stream(Connection(address), Filters(all=True, follow=True))
    window = _Window(n)
    got = 0
    for decoded in stream:
        got += decoded.batch.size
        if window.passed(got):
            stream.cancel()
            break
    return window.rate(), 0.0


def _sustained(run: tuple[float, float, Any]) -> float:
    """Flows/s of a timed `_record` or `_receive` in its sustained window."""
    (flows, seconds), _ = run[2]
    return float(flows / seconds)


def record_rate(jsonpb: Path, n: int, rounds: int, tmp: Path) -> float:
    """Prints (b); returns the client's CPU microseconds per flow receiving without writing."""
    server, address, what = _serve(jsonpb)
    print(f"(b) record from {what}; the client decodes with {decoder_used()}")
    try:
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("record", lambda: _record(address, n, tmp / "recorded")),
            ("receive", lambda: _receive(address, n)),
        ]
        runs: dict[str, list[tuple[float, float, Any]]] = {}
        cpu: dict[str, list[float]] = {}  # this process's CPU seconds per run
        served: list[float] = []  # the relay's
        for r in range(rounds):
            for name, fn in (steps if r % 2 == 0 else steps[::-1]):
                before, relay = time.process_time(), cpu_seconds(server.pid)
                runs.setdefault(name, []).append(timed(fn, [server.pid]))
                cpu.setdefault(name, []).append(time.process_time() - before)
                served.append(cpu_seconds(server.pid) - relay)
            print(f"    round {r + 1}: record {_sustained(runs['record'][-1]):,.0f}, receive "
                  f"only {_sustained(runs['receive'][-1]):,.0f} flows/s (other processes busy "
                  f"{runs['record'][-1][1]:.1f}, {runs['receive'][-1][1]:.1f} CPUs)")
    finally:
        server.terminate()
        server.wait(timeout=10)
    t = {name: statistics.median(s for s, _, _ in values) for name, values in runs.items()}
    us = {name: statistics.median(values) / n * 1e6 for name, values in cpu.items()}
    rate, base = (statistics.median(map(_sustained, runs[name])) for name in ("record", "receive"))
    whole, ratio = n / t["record"], t["receive"] / t["record"]
    closing = statistics.median(result[1] for _, _, result in runs["record"])
    on_disk = sum(p.stat().st_size for p in (tmp / "recorded").rglob("*.parquet"))
    print(f"    record              {rate:>10,.0f} flows/s sustained  ({n:,} flows, "
          f"{on_disk / n:.1f} bytes/flow; target >= 50,000: {'ok' if rate >= 50_000 else 'MISSED'}"
          f"; {us['record']:.1f} us of CPU per flow in this process)")
    print(f"    receive only        {base:>10,.0f} flows/s sustained  (baseline, same client "
          f"without writing: record runs at {rate / base:.2f}x it; {us['receive']:.1f} us of CPU "
          f"per flow)")
    # Other processes' load comes in bursts: each round's own ratio, and the ratio the CPU
    # costs per flow make when the CPU is the limit (the relay's share included), are steadier.
    own = statistics.median(_sustained(a) / _sustained(b)
                            for a, b in zip(runs["record"], runs["receive"], strict=True))
    relay_us = statistics.median(served) / n * 1e6
    by_cpu = (us["receive"] + relay_us) / (us["record"] + relay_us)
    print(f"    ratio record / receive only: {rate / base:.2f}x of the medians, {own:.2f}x the "
          f"median of the rounds' own, {by_cpu:.2f}x by CPU per flow (the relay's "
          f"{relay_us:.1f} us included)")
    print(f"    whole runs: record {t['record']:.3f} s, {whole:,.0f} flows/s ({ratio:.2f}x "
          f"receive only's {t['receive']:.3f} s), of which the closing write of the last file "
          f"{closing:.2f} s; sustained: from flow {_window(n):,} to flow {n:,}, the files of the "
          f"flows before written behind meanwhile")
    others = statistics.median(o for values in runs.values() for _, o, _ in values)
    print(f"    medians of {rounds} alternating rounds; load average {os.getloadavg()[0]:.2f}, "
          f"other processes kept {others:.1f} of {os.cpu_count()} CPUs busy")
    return us["receive"]


def where_time_goes(payloads: list[bytes], repeat: int, tmp: Path,
                    receive_us: float) -> None:
    """Prints (c): each step on the same runs in this process (best of `repeat`; decoding by a
    decoder that has seen them, less its first pass), and receiving as (b) measured it (the
    client's CPU per flow less a first pass's decoding)."""
    runs = [payloads[i:i + RUN] for i in range(0, len(payloads), RUN)]
    n = len(payloads)

    decoder = ProtoDecoder()  # as the client's: its first pass learns each shape of flow

    def decode() -> list[Any]:
        return [decoder.decode(run).batch for run in runs]

    t_first, _ = best_of(1, decode)
    t_split, _ = best_of(repeat, lambda: [decoder.decode(run) for run in runs])
    t_columns, batches = best_of(repeat, decode)
    t_columns -= t_split

    def buffered() -> StoreWriter:  # the Arrow tables, by hour (one roll at a time)
        writer = StoreWriter(create_store(tmp / "steps"), roll_flows=n)
        for batch in batches:
            writer.add_batch(batch)
        return writer

    t_table, _ = best_of(repeat, buffered)
    t_write = float("inf")
    for _ in range(repeat):
        shutil.rmtree(tmp / "steps", ignore_errors=True)
        writer = buffered()
        start = time.perf_counter()
        writer.flush()
        t_write = min(t_write, time.perf_counter() - start)
    t_frame, _ = best_of(repeat, lambda: [frame.build(b) for b in batches])
    receiving = max(receive_us * n / 1e6 - t_first, 0.0)
    steps = (("receive (gRPC; from (b))", receiving),
             ("new shapes (Python, once each)", max(t_first - t_split - t_columns, 0.0)),
             ("split (C: bytes -> values)", t_split),
             ("columns (Arrow arrays)", t_columns),
             ("Arrow table, by hour", t_table),
             ("Parquet file (writer thread)", t_write))
    total = sum(seconds for _, seconds in steps)
    print(f"(c) where record's time goes, per flow ({n:,} flows, best of {repeat}; receiving "
          f"from (b), the rest in this process on one core):")
    for name, seconds in steps:
        print(f"    {name:30s} {seconds / n * 1e6:6.2f} us  {seconds / total:5.0%}")
    print("    (the Parquet file: dictionaries trimmed, encoded, zstd, written, fsync, renamed)")
    print(f"    (a pandas frame of the same batches would take {t_frame / n * 1e6:.2f} us more: "
          f"record makes one only to drop repeats after a restart)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=300_000, help="flows for (a), (b), (c)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds, for (b)")
    parser.add_argument("--repeat", type=int, default=3, help="best of, for (c)")
    parser.add_argument("--only", choices=("record", "reports"),
                        help="only (a)-(c), or only (d)-(f)")
    parser.add_argument("--stores", type=Path, default=STORES,
                        help="where the stores of (d)-(f) are generated once and kept")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")
    if args.only != "reports":
        record_figures(args)
    if args.only != "record":
        report_figures(args.stores)


def record_figures(args: argparse.Namespace) -> None:
    """(a)-(c)."""
    records = list(generate_flows(args.flows))
    live = _retimed(records, 50_000)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        bytes_per_flow(records, live, tmp)
        del records
        jsonpb = tmp / "flows.jsonpb"
        with open(jsonpb, "wb") as out:
            for record in live:
                out.write(encode_response_bytes(record) + b"\n")
        payloads = [response_from_dict(r).SerializeToString() for r in live]
        del live
        receive_us = record_rate(jsonpb, args.flows, args.rounds, tmp)
        where_time_goes(payloads, args.repeat, tmp, receive_us)


if __name__ == "__main__":
    main()
