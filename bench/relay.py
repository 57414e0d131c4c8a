"""The live path's benchmark: `python bench/relay.py [--flows N] [--e2e-flows N]`.

(a) the client's own path, serialized GetFlowsResponse bytes -> frame, against parsing the same
    bytes with upb alone (same run; target >= 100,000 flows/s);
(b) end to end from the replay relay (its own process) into a frame, against a bare stub with
    the fast channel option receiving and parsing the same stream in the same run
    (target ratio <= 1.2);
(c) the replay relay's serving rate, measured by a client that only counts raw messages
    (target >= 15,000 flows/s).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental
from common import best_of  # bench/ is on sys.path when run as a script

import flowlens
from flowlens import frame
from flowlens._proto.observer import observer_pb2
from flowlens.render.jsonpb import encode_response_bytes
from flowlens.sources.proto import decode_responses
from flowlens.sources.protodict import response_from_dict
from flowlens.synth import generate_flows

FAST = [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]
ALL = (1 << 64) - 1




def client_path(n: int, repeat: int) -> None:
    payloads = [response_from_dict(r).SerializeToString() for r in generate_flows(n)]
    mb = sum(map(len, payloads)) / 1e6
    parse = observer_pb2.GetFlowsResponse.FromString

    def parse_only() -> int:
        count = 0
        for p in payloads:
            parse(p)
            count += 1
        return count

    t_parse, _ = best_of(repeat, parse_only)
    t_frame, df = best_of(repeat, lambda: frame.build(decode_responses(payloads)))
    assert len(df) == n
    rate = n / t_frame
    print(f"(a) bytes -> frame      {t_frame:7.3f} s  {rate:>10,.0f} flows/s  "
          f"({n:,} flows, {mb:.0f} MB; target >= 100,000: {'ok' if rate >= 1e5 else 'MISSED'})")
    print(f"    upb parse only      {t_parse:7.3f} s  {n / t_parse:>10,.0f} msgs/s   "
          f"(baseline; bytes -> frame is {t_frame / t_parse:.2f}x it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_relay(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = f"127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "flowlens", "relay", str(path),
                             "--listen", server], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()  # "serving ..." once it listens
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"relay did not start: {line}")
    return proc, server


def _bare(server: str, deserialize: Callable[[bytes], Any] | None) -> int:
    channel = grpc.insecure_channel(server, options=FAST)
    method = channel.unary_stream("/observer.Observer/GetFlows",
                                  request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
                                  response_deserializer=deserialize)
    count = sum(1 for _ in method(observer_pb2.GetFlowsRequest(number=ALL)))
    channel.close()
    return count


def end_to_end(n: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flows.jsonpb"
        with open(path, "wb") as out:
            for record in generate_flows(n):
                out.write(encode_response_bytes(record) + b"\n")
        proc, server = _start_relay(path)
        try:
            parse = observer_pb2.GetFlowsResponse.FromString
            t_stub, got = best_of(repeat, lambda: _bare(server, parse))
            t_ours, df = best_of(repeat, lambda: flowlens.read_relay(server, all=True))
            t_raw, _ = best_of(repeat, lambda: _bare(server, None))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert len(df) == n and got == n + 1  # + the NODE_CONNECTED status
    ratio = t_ours / t_stub
    print(f"(b) relay -> frame      {t_ours:7.3f} s  {n / t_ours:>10,.0f} flows/s  "
          f"{ratio:.2f}x a bare fast stub ({n / t_stub:,.0f} msgs/s parsed; "
          f"target <= 1.2: {'ok' if ratio <= 1.2 else 'MISSED'})")
    rate = n / t_raw
    print(f"(c) relay serving rate  {t_raw:7.3f} s  {rate:>10,.0f} flows/s  "
          f"(raw receive; target >= 15,000: {'ok' if rate >= 15_000 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=200_000, help="flows for (a)")
    parser.add_argument("--e2e-flows", type=int, default=100_000, help="flows for (b), (c)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, grpcio {grpc.__version__}, {os.cpu_count()} CPUs")
    client_path(args.flows, args.repeat)
    end_to_end(args.e2e_flows, max(1, args.repeat - 1))


if __name__ == "__main__":
    main()
