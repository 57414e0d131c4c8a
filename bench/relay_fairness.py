"""Does one heavy client hold up the others? `python bench/relay_fairness.py [--flows N]`.

Starts `flowlens relay` (its own process) on N generated flows and measures ServerStatus
latency from a second client: first with the relay idle (the baseline of the same run), then
while another client's GetFlows with the largest request the relay serves (1,000 filters,
10,000 values) is being matched, and while several such clients wait at once. Prints the
median, 99th percentile and maximum of each, and the machine's load (the machine is shared:
figures are noisy; the target is every ServerStatus under 100 ms while one client is heavy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from common import free_port, write_flows  # bench/ is on sys.path when run as a script

from flowlens._proto.observer import observer_pb2, observer_pb2_grpc
from flowlens.relay_server import MAX_REQUEST_FILTERS, MAX_REQUEST_VALUES


def _heavy_request() -> observer_pb2.GetFlowsRequest:
    request = observer_pb2.GetFlowsRequest(number=(1 << 64) - 1)
    per_filter = MAX_REQUEST_VALUES // MAX_REQUEST_FILTERS
    for i in range(MAX_REQUEST_FILTERS):
        request.whitelist.add(source_pod=[f"default/p{i}-{j}" for j in range(per_filter - 1)],
                              destination_label=[f"app=x{i}"])
    return request


def _latencies(stub: observer_pb2_grpc.ObserverStub, until: threading.Event | None,
               count: int = 50) -> list[float]:
    out = []
    while (until is None and len(out) < count) or (until is not None and not until.is_set()):
        start = time.perf_counter()
        stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=120)
        out.append((time.perf_counter() - start) * 1000)
        time.sleep(0.005)
    return out


def _summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return (f"{name:<34} n={len(values):>5}  median {statistics.median(values):7.1f} ms  "
            f"p99 {p99:7.1f} ms  max {values[-1]:7.1f} ms")


def _while_heavy(stub: observer_pb2_grpc.ObserverStub, clients: int) -> tuple[list[float], float]:
    request = _heavy_request()
    done = threading.Event()
    remaining = [clients]
    lock = threading.Lock()
    started = time.perf_counter()

    def heavy() -> None:
        list(stub.GetFlows(request, timeout=1800))
        with lock:
            remaining[0] -= 1
            if not remaining[0]:
                done.set()

    threads = [threading.Thread(target=heavy) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    latencies = _latencies(stub, done)
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flows", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        capture = Path(folder) / "capture.jsonpb"
        write_flows(capture, args.flows)
        listen = f"127.0.0.1:{free_port()}"
        relay = subprocess.Popen([sys.executable, "-m", "flowlens", "relay", str(capture),
                                  "--listen", listen], stderr=subprocess.PIPE, text=True)
        try:
            assert relay.stderr is not None
            print(relay.stderr.readline().strip())
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            with grpc.insecure_channel(listen) as channel:
                stub = observer_pb2_grpc.ObserverStub(channel)
                print(_summary("ServerStatus, relay idle", _latencies(stub, None)))
                for clients in (1, args.clients):
                    latencies, took = _while_heavy(stub, clients)
                    print(_summary(f"ServerStatus, {clients} heavy client(s)", latencies)
                          + f"  (heavy requests took {took:.1f} s)")
            print(f"load average {os.getloadavg()[0]:.1f}")
        finally:
            relay.terminate()
            relay.wait(timeout=30)


if __name__ == "__main__":
    main()
