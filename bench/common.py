"""What every benchmark shares."""

from __future__ import annotations

import gc
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest of `repeat` runs (the least disturbed by other load), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def write_flows(path: Path, n: int) -> None:
    """n generated flows (flowlens.synth) as hubble's jsonpb."""
    from flowlens.render.jsonpb import encode_response
    from flowlens.synth import generate_flows

    with open(path, "w", encoding="utf-8") as out:
        chunk: list[str] = []
        for record in generate_flows(n):
            chunk.append(encode_response(record))
            if len(chunk) == 10_000:
                out.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            out.write("\n".join(chunk) + "\n")


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process has used (user + system)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def reference_bin(name: str) -> str | None:
    """A program of ../shared/bin (the real hubble CLI, flowsrv), beside this checkout or on
    PATH; None when absent."""
    local = ROOT.parent / "shared" / "bin" / name
    return str(local) if local.exists() else shutil.which(name)


def timed(fn: Callable[[], Any], servers: list[int]) -> tuple[float, float, Any]:
    """Seconds, and the CPUs other processes (not this one, not our servers) kept busy."""
    gc.collect()
    ours = lambda: time.process_time() + sum(map(cpu_seconds, servers))  # noqa: E731
    busy, mine, start = busy_seconds(), ours(), time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    others = (busy_seconds() - busy) - (ours() - mine)
    return elapsed, max(others, 0.0) / elapsed, result


def free_port() -> int:
    """A TCP port free on loopback now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def decoder_used() -> str:
    """Which decoder flowlens uses here: the C fast path, or the Python reference and why (a
    checkout whose flowlens._native was built from other sources than its own measures the
    reference, several times slower)."""
    from flowlens.sources.native import _source_digest, native

    if native(proto=True) is not None:
        return "the C fast path (flowlens._native)"
    if os.environ.get("FLOWLENS_NATIVE", "1") == "0":
        why = "FLOWLENS_NATIVE=0"
    else:
        try:
            from flowlens import _native
        except ImportError:
            why = "flowlens._native is not built"
        else:
            why = f"flowlens._native is stale (built from {_native.SOURCE}, the sources are " \
                  f"{_source_digest()})"
    return f"the Python reference: {why}; `python setup.py build_ext --inplace` builds it"
