"""Benchmark of the report: `python bench/report.py [--flows N]` (default 1,000,000).

Generates N flows (flowlens.synth.generate_flows), writes them as hubble's jsonpb, then, in a
fresh process so that memory figures start clean, measures:

- ingest: `flowlens.read` of the jsonpb (time, and peak RSS above the RSS just before it, since
  Arrow's allocations are invisible to tracemalloc);
- analyses: `analyses.build_report` (time, and peak of the memory it allocates, by tracemalloc,
  in a second run so tracing does not slow the timed one);
- HTML: writing the self-contained page (time, size with and without plotly.js, peak memory).

Targets: analyses + HTML <= 50% of ingest time; HTML <= 1 MB plus plotly.js; peak memory while
reporting (the frame plus what analyses and HTML allocate) <= 1.5x the frame's size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from common import write_flows  # bench/ is on sys.path when run as a script

MB = 1_000_000


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise KeyError(key)


def _reset_peak_rss() -> int:
    """The RSS now, from which the peak (`_status("VmHWM")`) then counts (Linux only).

    Not ru_maxrss: a child started by subprocess inherits its parent's peak there (the kernel
    keeps the peak of the process image that exec replaced), so this benchmark's baseline was
    the generating parent's peak and ingest peaks came out too low, or hidden (measured: a 14 MB
    child of a 313 MB parent has ru_maxrss 313 MB). VmHWM is the child's own, and writing 5 to
    clear_refs resets it to the RSS now."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def measure(path: Path, html: Path) -> dict[str, Any]:
    """Run in a fresh process: every figure of the benchmark, as a dict."""
    import plotly.offline

    import flowlens
    from flowlens import analyses
    from flowlens.render import report_html
    from flowlens.render.report_formats import write_report

    report_html._plotlyjs()  # plotly.js is read once per process; not part of a report
    baseline = _reset_peak_rss()
    start = time.perf_counter()
    df = flowlens.read(path)
    ingest = time.perf_counter() - start
    ingest_peak = _status("VmHWM") - baseline
    frame = int(df.memory_usage(deep=True).sum())

    start = time.perf_counter()
    report = analyses.build_report(df, sources=[str(path)])
    analyse = time.perf_counter() - start
    start = time.perf_counter()
    with open(html, "w", encoding="utf-8") as out:
        write_report(report, out, "html")
    write = time.perf_counter() - start

    tracemalloc.start()
    report = analyses.build_report(df, sources=[str(path)])
    analyses_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    with open(html, "w", encoding="utf-8") as out:
        write_report(report, out, "html")
    html_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"flows": len(df), "ingest_s": ingest, "ingest_peak": ingest_peak, "frame": frame,
            "analyses_s": analyse, "analyses_peak": analyses_peak, "html_s": write,
            "html_peak": html_peak, "html_bytes": html.stat().st_size,
            "plotlyjs_bytes": len(plotly.offline.get_plotlyjs().encode())}


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def show(m: dict[str, Any], file_bytes: int) -> None:
    work = m["analyses_s"] + m["html_s"]
    page = m["html_bytes"] - m["plotlyjs_bytes"]
    reporting = m["frame"] + max(m["analyses_peak"], m["html_peak"])
    print(f"flows: {m['flows']:,}  jsonpb: {file_bytes / MB:,.0f} MB  "
          f"frame: {m['frame'] / MB:,.0f} MB ({m['frame'] / m['flows']:.0f} bytes/flow)")
    print(f"ingest (flowlens.read)  {m['ingest_s']:7.2f} s   peak RSS above baseline "
          f"{m['ingest_peak'] / MB:,.0f} MB ({m['ingest_peak'] / m['frame']:.2f}x frame)")
    print(f"analyses (all panels)   {m['analyses_s']:7.2f} s   peak allocated "
          f"{m['analyses_peak'] / MB:,.0f} MB")
    print(f"HTML write              {m['html_s']:7.2f} s   peak allocated "
          f"{m['html_peak'] / MB:,.0f} MB   size {m['html_bytes'] / MB:.2f} MB "
          f"(plotly.js {m['plotlyjs_bytes'] / MB:.2f} MB + {page / 1000:,.0f} kB)")
    print(f"analyses + HTML = {work / m['ingest_s']:.1%} of ingest "
          f"(target <= 50%: {_verdict(work <= 0.5 * m['ingest_s'])})")
    print(f"HTML without plotly.js {page / MB:.2f} MB (target <= 1 MB: {_verdict(page <= MB)})")
    print(f"peak while reporting: frame + {max(m['analyses_peak'], m['html_peak']) / MB:,.0f} MB"
          f" = {reporting / m['frame']:.2f}x frame "
          f"(target <= 1.5x: {_verdict(reporting <= 1.5 * m['frame'])})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--measure", metavar="JSONPB", help=argparse.SUPPRESS)
    parser.add_argument("--html", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), Path(args.html))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path, html = Path(tmp) / "flows.jsonpb", Path(tmp) / "report.html"
        start = time.perf_counter()
        write_flows(path, args.flows)
        print(f"generated {args.flows:,} flows in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
        child = subprocess.run([sys.executable, __file__, "--measure", str(path), "--html",
                                str(html)], check=True, capture_output=True, text=True,
                               env={**os.environ, "PYTHONHASHSEED": "0"})
        show(json.loads(child.stdout.splitlines()[-1]), path.stat().st_size)


if __name__ == "__main__":
    main()
