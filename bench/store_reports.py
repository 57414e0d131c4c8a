"""Reports over a flow store, for bench/store.py (`--only reports`), which prints (d)-(f):

The stores are generated once into --stores (outside the checkout) and reused: the generated
capture at 10,000,000 flows a day (116/s), written as `record` writes it (a file a minute, each
hour compacted); every report runs in a fresh process (its time, and its peak RSS as the kernel
counts it):
(d) `flowlens report STORE` (the local engine, partition by partition) over stores of 1M, 3M
    and 10M flows (2.4, 7.2 and 24 hours): time per million flows should stay flat (linear) and
    the peak RSS too (target <= 1 GB at 10M); baseline, the same report over the whole store
    read into memory (`flowlens.read` + `build_report`) at 1M and 3M;
(e) the 10M store (a day): `--since 1h` against the full report (target <= 1/10 of its time);
(f) `--engine dask` with 2 local workers (a LocalCluster of two processes, one thread each)
    against the local engine on the 10M store, and each worker's peak RSS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from common import cpu_seconds  # bench/ is on sys.path as a script

from flowlens import frame
from flowlens.sources.batch import FlowBatch
from flowlens.sources.proto import ProtoDecoder
from flowlens.sources.protodict import response_from_dict
from flowlens.store.dataset import HOUR_NS
from flowlens.store.writer import StoreWriter, compact, create_store
from flowlens.synth import generate_flows

STORES = Path.home() / ".cache" / "flowlens-bench" / "stores"

PER_DAY = 10_000_000
SIZES = (1_000_000, 3_000_000, 10_000_000)
STORES_VERSION = "1"  # bump when what generate_store writes changes


def generate_store(root: Path, n: int, base: pa.Table) -> None:
    """n flows at PER_DAY a day from 2026-07-01T00:00Z, the rows of `base` over and over with
    times and uuids of their own, written as `record` writes them: a file a minute, each hour
    compacted when it is over."""
    step = 86_400_000_000_000 // PER_DAY
    start = pd.Timestamp("2026-07-01T00:00:00Z").value
    per_file = 60_000_000_000 // step
    shutil.rmtree(root, ignore_errors=True)
    writer = StoreWriter(create_store(root), roll_flows=1 << 40, roll_seconds=1e12)
    hour = None
    for done in range(0, n, per_file):
        size = min(per_file, n - done)
        rows = base.take(pa.array(np.arange(done, done + size) % base.num_rows))
        columns = {name: rows.column(name).combine_chunks() for name in rows.column_names}
        columns["time"] = pa.array(start + np.arange(done, done + size, dtype=np.int64) * step,
                                   pa.timestamp("ns", tz="UTC"))
        columns["uuid"] = pa.array([f"{i:032x}" for i in range(done, done + size)])
        writer.add_batch(FlowBatch(columns=columns, size=size))
        writer.flush()
        this_hour = (start + done * step) // HOUR_NS * HOUR_NS
        if hour is not None and this_hour != hour:
            compact(root, hour)
        hour = this_hour
    if hour is not None:
        compact(root, hour)
    (root / "bench-version").write_text(f"{STORES_VERSION} {n}\n")


def stores(folder: Path) -> dict[int, Path]:
    """The benchmark's stores, generated unless `folder` already holds them."""
    out = {n: folder / f"store-{n // 1_000_000}M" for n in SIZES}
    missing = [n for n, root in out.items() if not (root / "bench-version").exists()
               or (root / "bench-version").read_text() != f"{STORES_VERSION} {n}\n"]
    if missing:
        started = time.perf_counter()
        decoded = ProtoDecoder().decode([response_from_dict(r).SerializeToString()
                                         for r in generate_flows(200_000)]).batch
        base = frame.build_table(decoded)
        for n in missing:
            generate_store(out[n], n, base)
        print(f"    generated {', '.join(f'{n:,}' for n in missing)} flows into {folder} in "
              f"{time.perf_counter() - started:.0f} s (kept for the next run)")
    return out


def _measure(how: str, store: str, flags: list[str]) -> None:
    """In a fresh process: one report, printed as JSON (seconds, peak RSS)."""
    import flowlens
    from flowlens import analyses, engine
    from flowlens.filters import Filters
    from flowlens.render import report_json

    filters = Filters.from_pairs(zip(flags[::2], flags[1::2], strict=True))
    start = time.perf_counter()
    if how == "memory":
        report = analyses.build_report(flowlens.read(store), filters, sources=[store])
    else:
        runner = engine.local if how == "local" else engine.on_dask(how)
        report = engine.report_store(store, filters, runner=runner)
    report_json.render(report)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "cpu": cpu_seconds(os.getpid()),
                      "peak": _peak_rss(os.getpid()), "flows": report.flows}))


def _report(how: str, store: Path, *flags: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, how, str(store), *flags],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"report ({how}) over {store} failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout)
    figures["load"] = os.getloadavg()[0]
    return figures


def _line(name: str, f: dict[str, Any]) -> None:
    per_m = 1e6 / f["flows"]
    print(f"    {name:32s} {f['seconds']:6.1f} s ({f['seconds'] * per_m:5.2f} s/M flows), CPU "
          f"{f['cpu']:6.1f} s ({f['cpu'] * per_m:5.2f} s/M), peak RSS {f['peak'] / 1e6:5.0f} MB "
          f"(load {f['load']:.1f})")


def report_figures(folder: Path) -> None:
    paths = stores(folder)
    print("(d) report over a store, local engine (one partition at a time), vs the whole store "
          "in memory:")
    local = {}
    for n, root in paths.items():
        local[n] = _report("local", root)
        _line(f"{n:,} flows, local engine", local[n])
    for n in SIZES[:2]:
        _line(f"{n:,} flows, in memory (baseline)", _report("memory", paths[n]))
    small, middle, large = (local[n] for n in SIZES)
    # CPU seconds: what other work on the machine changes least
    slopes = [(b["cpu"] - a["cpu"]) / (b["flows"] - a["flows"]) * 1e6
              for a, b in ((small, middle), (middle, large))]
    print(f"    CPU per added million flows: {slopes[0]:.2f} s from 1M to 3M, {slopes[1]:.2f} s "
          f"from 3M to 10M (linear: the same; ratio {slopes[1] / slopes[0]:.2f}); peak RSS at "
          f"10M / at 1M: {large['peak'] / small['peak']:.2f} (flat: 1); peak at 10M "
          f"{large['peak'] / 1e9:.2f} GB (target <= 1 GB: "
          f"{'ok' if large['peak'] <= 1e9 else 'MISSED'})")
    day = paths[SIZES[-1]]
    hour = _report("local", day, "--since", "1h")
    print("(e) the 10M store (a day): --since 1h against the full report")
    _line("--since 1h", hour)
    _line("full report (baseline)", large)
    ratio = hour["seconds"] / large["seconds"]
    print(f"    --since 1h takes {ratio:.3f} of the full report's time, "
          f"{hour['cpu'] / large['cpu']:.3f} of its CPU (target <= 0.1: "
          f"{'ok' if ratio <= 0.1 else 'MISSED'})")
    from distributed import Client, LocalCluster

    print("(f) the 10M store on Dask, 2 local workers (processes, a thread each), vs local")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid).values()
        idle = sum(cpu_seconds(pid) for pid in pids)
        dask = _report(cluster.scheduler_address, day)
        workers_cpu = sum(cpu_seconds(pid) for pid in pids) - idle
        peaks = [_peak_rss(pid) for pid in pids]
        again = _report("local", day)
    _line("--engine dask, 2 workers (client)", dask)
    _line("local engine (baseline)", again)
    print(f"    dask / local: {dask['seconds'] / again['seconds']:.2f} of the time (on "
          f"{os.cpu_count()} CPUs shared with other work); the workers' CPU "
          f"{workers_cpu:.1f} s (local: {again['cpu']:.1f} s); peak RSS of each worker: "
          f"{', '.join(f'{peak / 1e6:.0f} MB' for peak in peaks)}")


def _peak_rss(pid: int) -> int:
    """A process's peak resident memory in bytes, as the kernel counts it."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status
                    if line.startswith("VmHWM:"))


if __name__ == "__main__":  # python bench/store_reports.py HOW STORE [FLAG VALUE...]
    _measure(sys.argv[1], sys.argv[2], sys.argv[3:])
