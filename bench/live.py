"""flowlens against the real hubble CLI from the same relay: `python bench/live.py`.

Generates a capture (--flows, default 200,000), serves it with ../shared/bin/flowsrv (a Go relay,
grpc-go as hubble-relay is) when it is there, else with `flowlens relay` (and says so), and:

1. runs `hubble observe --all -o FORMAT` and `flowlens tail --all -o FORMAT` alternately
   (--rounds, default 5; the order flips every round), for compact and jsonpb (--formats), and
   prints the medians, flowlens/hubble, and each tool's peak RSS; the outputs are compared byte
   for byte once;
2. `flowlens report --server ... --format json` against `tail -o compact`, alternately;
3. the same flows from the capture file: `hubble observe --input-file` against `flowlens tail
   --input-file` (-o compact), alternately, outputs compared;
4. `flowlens tail -f --all` over --follow-flows (default 600,000) flows: RSS sampled while
   following (target: flat, <= 150 MB);
5. startup: `flowlens --help`, `--version` and `tail --input-file samples/lab.jsonpb --last 5`
   (without and with a flow filter) beside `python -c pass`, importing what a frame needs, and
   hubble reading the same file.

The machine is shared: every timed round also says how many CPUs other processes kept busy
(their CPU time over the round, from /proc), and the figures that matter are the ratios of the
same run. Peak RSS is the child's own VmHWM, sampled from /proc (ru_maxrss would include the
peak of the process that started it). This process stays small (it imports no flowlens).
Timed as installed: flowlens's bytecode is written before the first run.
"""

from __future__ import annotations

import argparse
import compileall
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, busy_seconds, cpu_seconds, reference_bin

MB = 1_000_000
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
FLOWLENS = [sys.executable, "-m", "flowlens"]


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes
    others: float  # CPUs other processes kept busy meanwhile
    children_rss: int = 0  # bytes: the peak of the processes it started (report's receiver)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(argv: list[str], stdout: Path | None, servers: list[int],
        env: dict[str, str] = ENV) -> Run:
    """One timed run: seconds, peak RSS, and the CPUs others kept busy (not it, not our
    servers)."""
    peak, children = [0], [0]
    busy0 = busy_seconds()
    ours0 = sum(map(cpu_seconds, servers))
    start = time.perf_counter()
    with open(stdout or os.devnull, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                value = _status(proc.pid, "VmHWM")
                if value:
                    peak[0] = max(peak[0], value)
                children[0] = max([children[0], *(_status(child, "VmHWM") or 0
                                                  for child in _children(proc.pid))])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed with status {proc.returncode}")
    child_cpu = usage.ru_utime + usage.ru_stime
    others = busy_seconds() - busy0 - child_cpu - (sum(map(cpu_seconds, servers)) - ours0)
    return Run(elapsed, peak[0], max(others, 0.0) / elapsed, children[0])


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


def alternate(name_a: str, a: list[str], name_b: str, b: list[str], rounds: int,
              servers: list[int], outputs: Path | None = None) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {name_a: [], name_b: []}
    steps = [(name_a, a), (name_b, b)]
    for r in range(rounds):
        for name, argv in (steps if r % 2 == 0 else steps[::-1]):
            out = outputs / name if outputs is not None and r == 0 else None
            runs[name].append(run(argv, out, servers))
        print(f"    round {r + 1}: " + ", ".join(
            f"{name} {runs[name][-1].seconds:.2f} s" for name in runs) +
            f" (other processes kept {runs[name_a][-1].others:.1f}, "
            f"{runs[name_b][-1].others:.1f} CPUs busy)", flush=True)
    return runs


def median(runs: list[Run]) -> tuple[float, int, float]:
    return (statistics.median(r.seconds for r in runs), max(r.peak_rss for r in runs),
            statistics.median(r.others for r in runs))


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def generate(path: Path, n: int) -> None:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "from common import write_flows; write_flows(__import__('pathlib').Path("
                    "sys.argv[2]), int(sys.argv[3]))", str(ROOT / "bench"), str(path), str(n)],
                   check=True, env=ENV)
    print(f"generated {n:,} flows ({path.stat().st_size / MB:,.0f} MB of jsonpb) in "
          f"{time.perf_counter() - start:.0f} s", flush=True)


def serve(path: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """The relay serving `path`: flowsrv when present, else flowlens's own."""
    address = f"127.0.0.1:{_free_port()}"
    flowsrv = reference_bin("flowsrv")
    if flowsrv is not None:
        proc = subprocess.Popen([flowsrv, "-listen", address, "-in", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        what = "flowsrv (Go, grpc-go)"
        ready = b"ready"
    else:
        print("../shared/bin/flowsrv is absent: measuring against flowlens's own relay",
              flush=True)
        proc = subprocess.Popen([*FLOWLENS, "relay", str(path), "--listen", address],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        what = "flowlens relay (Python)"
        ready = b"serving"
    stream = proc.stdout if proc.stdout is not None else proc.stderr
    assert stream is not None
    line = stream.readline()
    if ready not in line:
        proc.kill()
        raise SystemExit(f"the relay did not start: {line!r}")
    return proc, address, what


def live(args: argparse.Namespace, tmp: Path) -> None:
    capture = tmp / "flows.jsonpb"
    generate(capture, args.flows)
    hubble = reference_bin("hubble")
    proc, address, what = serve(capture)
    servers = [proc.pid]
    try:
        print(f"relay: {what} on {address}; {args.rounds} alternating rounds, medians")
        results = []
        for fmt in args.formats.split(","):
            tail = [*FLOWLENS, "tail", "--server", address, "--all", "-o", fmt]
            print(f"-o {fmt}:", flush=True)
            if hubble is None:
                runs = {"flowlens": [run(tail, None, servers) for _ in range(args.rounds)]}
            else:
                observe = [hubble, "observe", "--server", address, "--all", "-o", fmt]
                runs = alternate("hubble", observe, "flowlens", tail, args.rounds, servers, tmp)
                same = (tmp / "hubble").read_bytes() == (tmp / "flowlens").read_bytes()
                print(f"    output identical to hubble's: {'yes' if same else 'NO'}")
            results.append((fmt, runs))
        if "compact" in args.formats.split(","):
            tail = [*FLOWLENS, "tail", "--server", address, "--all", "-o", "compact"]
            report = [*FLOWLENS, "report", "--server", address, "--format", "json"]
            print("report --server --format json against tail -o compact:", flush=True)
            results.append(("report", alternate("tail", tail, "report", report, args.rounds,
                                                servers)))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    if hubble is not None:  # the same flows from the file: printed block by block, no frame
        print("from the file, -o compact:", flush=True)
        runs = alternate("hubble", [hubble, "observe", "--input-file", str(capture)], "flowlens",
                         [*FLOWLENS, "tail", "--input-file", str(capture)], args.rounds, [],
                         tmp)
        same = (tmp / "hubble").read_bytes() == (tmp / "flowlens").read_bytes()
        print(f"    output identical to hubble's: {'yes' if same else 'NO'}")
        results.append(("file", runs))
    print()
    print(f"{args.flows:,} flows from {what}     time        peak RSS   other load (CPUs)")
    for fmt, runs in results:
        if fmt == "report":
            t, rss, load = median(runs["report"])
            base = median(runs["tail"])[0]
            child = max(r.children_rss for r in runs["report"])
            print(f"  report --format json  {t:6.2f} s  {rss / MB:7.0f} MB   {load:4.1f}   "
                  f"{t / base:.2f}x tail -o compact ({base:.2f} s; target <= 1.2: "
                  f"{_verdict(t <= 1.2 * base)}); its receiving child's peak RSS "
                  f"{child / MB:.0f} MB")
            continue
        t, rss, load = median(runs["flowlens"])
        label = "tail --input-file  " if fmt == "file" else f"tail -o {fmt:8s}    "
        line = f"  {label}  {t:6.2f} s  {rss / MB:7.0f} MB   {load:4.1f}"
        if "hubble" in runs:
            ht, hrss, _ = median(runs["hubble"])
            line += f"   hubble {ht:.2f} s, {hrss / MB:.0f} MB: {t / ht:.2f}x"
            if fmt != "file":  # (the targets are the relay's)
                line += (f" (target <= 1.0: {_verdict(t <= ht)}; moonshot 0.7) RSS target "
                         f"<= 150 MB: {_verdict(rss <= 150 * MB)}")
        print(line)


def follow(args: argparse.Namespace, tmp: Path) -> None:
    capture = tmp / "follow.jsonpb"
    generate(capture, args.follow_flows)
    proc, address, what = serve(capture)
    out = tmp / "follow.out"
    samples: list[int] = []
    try:
        with open(out, "wb") as sink:
            tail = subprocess.Popen([*FLOWLENS, "tail", "--server", address, "-f", "--all"],
                                    stdout=sink, stderr=subprocess.PIPE, env=ENV)
            size, still, start = -1, 0.0, time.perf_counter()
            while still < 2.0:  # until the output has not grown for 2 s: all received
                time.sleep(0.25)
                rss = _status(tail.pid, "VmRSS")
                if rss:
                    samples.append(rss)
                now = out.stat().st_size
                still = still + 0.25 if now == size else 0.0
                size = now
            elapsed = time.perf_counter() - start - still
            tail.send_signal(signal.SIGINT)
            _, err = tail.communicate(timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = sum(chunk.count(b"\n") for chunk in _chunks(out))
    steady = samples[len(samples) // 5:] or samples  # after the first fifth: the plateau
    print(f"tail -f --all over {args.follow_flows:,} flows from {what}: {lines:,} lines in "
          f"{elapsed:.1f} s; RSS while following min {min(steady) / MB:.0f}, median "
          f"{statistics.median(steady) / MB:.0f}, max {max(samples) / MB:.0f} MB "
          f"({len(samples)} samples; target flat <= 150 MB: "
          f"{_verdict(max(samples) <= 150 * MB)})")
    print("   " + err.decode().strip().splitlines()[-1] if err else "")


def _status(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _chunks(path: Path) -> list[bytes]:
    with open(path, "rb") as f:
        return list(iter(lambda: f.read(1 << 20), b""))


def startup(args: argparse.Namespace) -> None:
    lab = ROOT / "samples" / "lab.jsonpb"
    cases = [("python -c pass", [sys.executable, "-c", "pass"], None),
             # What a frame needs loaded: the floor of `tail` of a file with a flow filter.
             ("import pandas, pyarrow", [sys.executable, "-c", "import pandas, pyarrow.compute, "
                                         "pyarrow.json"], None),
             ("flowlens --help", [*FLOWLENS, "--help"], 0.150),
             ("flowlens --version", [*FLOWLENS, "--version"], 0.150),
             ("tail --input-file lab --last 5",
              [*FLOWLENS, "tail", "--input-file", str(lab), "--last", "5"], 0.4),
             ("... --verdict DROPPED (a frame)",
              [*FLOWLENS, "tail", "--input-file", str(lab), "--last", "5", "--verdict",
               "DROPPED"], None)]
    hubble = reference_bin("hubble")
    if hubble is not None:  # the same in Go, for scale
        cases.append(("hubble observe --input-file lab", [hubble, "observe", "--input-file",
                                                          str(lab), "--last", "5"], None))
    # As installed (pip compiles the modules to bytecode): with PYTHONDONTWRITEBYTECODE set, as
    # it may be here, every changed module would be compiled again in each timed run.
    env = {k: v for k, v in ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}
    print(f"startup (median of {args.startup_runs}, after a run that writes the bytecode):")
    for name, argv, target in cases:
        run(argv, None, [], env)
        runs = [run(argv, None, [], env) for _ in range(args.startup_runs)]
        t, rss, load = median(runs)
        goal = f" (target <= {target * 1000:.0f} ms: {_verdict(t <= target)})" if target else ""
        print(f"  {name:32s} {t * 1000:5.0f} ms  {rss / MB:4.0f} MB  others kept {load:.1f} "
              f"CPUs busy{goal}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--formats", default="compact,jsonpb",
                        help="comma-separated: compact, jsonpb, dict, table")
    parser.add_argument("--follow-flows", type=int, default=600_000)
    parser.add_argument("--startup-runs", type=int, default=7)
    parser.add_argument("--skip", default="", help="comma-separated: live, follow, startup")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; hubble: "
          f"{reference_bin('hubble') or 'absent'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if "startup" not in skip:
            startup(args)
        # As installed: the package's bytecode written first (with PYTHONDONTWRITEBYTECODE
        # set, as it may be here, every run would compile what it imports, and `report`
        # imports more of flowlens than `tail`: about 0.08 s more).
        compileall.compile_dir(str(ROOT / "flowlens"), quiet=1)
        if "live" not in skip:
            live(args, Path(tmp))
        if "follow" not in skip:
            follow(args, Path(tmp))


if __name__ == "__main__":
    main()
