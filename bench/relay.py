"""The live path's benchmark: `python bench/relay.py [--flows N] [--e2e-flows N] [--rounds N]`.

(a) the client's own path, serialized GetFlowsResponse bytes -> frame, against parsing the same
    bytes with upb alone (same run; target >= 100,000 flows/s);
(b) end to end from the replay relay (its own process) into a frame, against a bare stub with
    the fast channel option receiving and parsing the same stream in the same run
    (target ratio <= 1.2);
(c) the replay relay's serving rate, measured by a client that only counts raw messages
    (target >= 15,000 flows/s), against a bare grpc.aio server writing the same bytes.

(b) and (c) are medians of alternating rounds (the machine is shared: each round also says how
many CPUs other processes kept busy). A Python gRPC server's rate is set by a round trip per
message through grpc core's completion queue and thread wake-ups, not by per-message Python
work, so the bare server is the ceiling the relay is held against.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental
from common import best_of, timed  # bench/ is on sys.path as a script

import flowlens
from flowlens import frame
from flowlens._proto.observer import observer_pb2
from flowlens.render.jsonpb import encode_response_bytes
from flowlens.sources.proto import decode_responses
from flowlens.sources.protodict import response_from_dict
from flowlens.synth import generate_flows

# The receiving clients: one thread (the fast option), and the deep receive window flowlens's
# own client asks for, so that (b) compares like with like and no client window holds a server.
FAST = [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
        ("grpc.http2.lookahead_bytes", 8 * 1024 * 1024)]
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


def _start(args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """A server process, once it says on stderr that it is serving."""
    server = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([sys.executable, *args, "--listen", server], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"{args[:2]} did not start: {line}")
    return proc, server


def serve_bare(path: str, listen: str) -> None:
    """The baseline server: grpc's asyncio server writing the same pre-serialized responses,
    with nothing else (no frame, no filters, no follow)."""
    import asyncio

    payloads = pickle.loads(Path(path).read_bytes())
    gc.collect()
    gc.freeze()  # as the relay does

    async def get_flows(request: Any, context: Any) -> None:
        for payload in payloads:
            await context.write(payload)

    async def serve() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "observer.Observer", {"GetFlows": grpc.unary_stream_rpc_method_handler(
                get_flows, request_deserializer=observer_pb2.GetFlowsRequest.FromString)}),))
        server.add_insecure_port(listen)
        await server.start()
        print("serving", file=sys.stderr, flush=True)
        await server.wait_for_termination()

    asyncio.run(serve())


def _call(server: str, deserialize: Callable[[bytes], Any] | None) -> Any:
    channel = grpc.insecure_channel(server, options=FAST)
    method = channel.unary_stream("/observer.Observer/GetFlows",
                                  request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
                                  response_deserializer=deserialize)
    return channel, method(observer_pb2.GetFlowsRequest(number=ALL))


def _count(server: str, deserialize: Callable[[bytes], Any] | None) -> int:
    """The receiving client: one thread (the fast channel option), nothing done per message
    but counting (and, for the stub, parsing)."""
    channel, call = _call(server, deserialize)
    count = sum(1 for _ in call)
    channel.close()
    return count


def end_to_end(n: int, rounds: int) -> None:
    records = list(generate_flows(n))
    payloads = [response_from_dict(r).SerializeToString() for r in records]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flows.jsonpb"
        with open(path, "wb") as out:
            for record in records:
                out.write(encode_response_bytes(record) + b"\n")
        (Path(tmp) / "payloads.pickle").write_bytes(pickle.dumps(payloads))
        del records
        relay, server = _start(["-m", "flowlens", "relay", str(path)])
        bare, bare_server = _start([__file__, "--serve-bare", str(Path(tmp) / "payloads.pickle")])
        try:
            channel, call = _call(server, None)
            got = list(call)
            channel.close()
            # The relay sends what was loaded, as it was: one response per flow, byte for byte.
            assert got[1:] == payloads, "the relay's responses differ from the loaded ones"
            del got
            gc.collect()
            gc.freeze()  # the client's collector need not walk the benchmark's own data
            pids = [relay.pid, bare.pid]
            load = [os.getloadavg()[0]]
            runs: dict[str, list[tuple[float, float, Any]]] = {}
            parse = observer_pb2.GetFlowsResponse.FromString
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("stub", lambda: _count(server, parse)),
                ("ours", lambda: flowlens.read_relay(server, all=True)),
                ("relay", lambda: _count(server, None)),
                ("bare", lambda: _count(bare_server, None)),
            ]
            for r in range(rounds):
                # Alternate the order so that neither side always runs right after the other.
                for name, fn in (steps if r % 2 == 0 else steps[::-1]):
                    runs.setdefault(name, []).append(timed(fn, pids))
                load.append(os.getloadavg()[0])
                print(f"    round {r + 1}: relay {n / runs['relay'][-1][0]:,.0f}, bare "
                      f"{n / runs['bare'][-1][0]:,.0f} msgs/s (other processes busy "
                      f"{runs['relay'][-1][1]:.1f}, {runs['bare'][-1][1]:.1f} CPUs)")
        finally:
            for proc in (relay, bare):
                proc.terminate()
                proc.wait(timeout=10)
    assert len(runs["ours"][-1][2]) == n and runs["stub"][-1][2] == n + 1  # + NODE_CONNECTED
    assert runs["relay"][-1][2] == n + 1 and runs["bare"][-1][2] == n
    t = {name: statistics.median(s for s, _, _ in values) for name, values in runs.items()}
    ratio = t["ours"] / t["stub"]
    print(f"(b) relay -> frame      {t['ours']:7.3f} s  {n / t['ours']:>10,.0f} flows/s  "
          f"{ratio:.2f}x a bare fast stub ({n / t['stub']:,.0f} msgs/s parsed; "
          f"target <= 1.2: {'ok' if ratio <= 1.2 else 'MISSED'})")
    rate, base = n / t["relay"], n / t["bare"]
    print(f"(c) relay serving rate  {t['relay']:7.3f} s  {rate:>10,.0f} flows/s  "
          f"(raw receive; target >= 15,000: {'ok' if rate >= 15_000 else 'MISSED'})")
    print(f"    bare grpc.aio server{t['bare']:7.3f} s  {base:>10,.0f} msgs/s   "
          f"(baseline, same bytes; the relay serves {rate / base:.2f}x it)")
    others = statistics.median(o for name in ("relay", "bare") for _, o, _ in runs[name])
    print(f"    medians of {rounds} alternating rounds; load average {min(load):.2f}-"
          f"{max(load):.2f}, other processes kept {others:.1f} of {os.cpu_count()} CPUs busy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=200_000, help="flows for (a)")
    parser.add_argument("--e2e-flows", type=int, default=50_000, help="flows for (b), (c)")
    parser.add_argument("--repeat", type=int, default=3, help="best of, for (a)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds, for (b), (c)")
    parser.add_argument("--serve-bare", metavar="PAYLOADS", help=argparse.SUPPRESS)
    parser.add_argument("--listen", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.listen)
        return
    print(f"python {sys.version.split()[0]}, grpcio {grpc.__version__}, {os.cpu_count()} CPUs")
    client_path(args.flows, args.repeat)
    end_to_end(args.e2e_flows, args.rounds)


if __name__ == "__main__":
    main()
