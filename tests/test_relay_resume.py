"""A relay restart during a bounded read (no --follow) is resumed as a follow stream is: every
flow exactly once; a relay that stays away is one line saying what is missing."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import orjson
import pytest

from flowlens import filters as F
from flowlens.errors import RelayError
from flowlens.live import relay_stream
from flowlens.relay_server import ReplayData, ReplayRelay
from flowlens.sources.relay import Connection, RetryPolicy
from flowlens.synth import generate_flows

FLOWS = 30_000  # some 22 MB: more than a client buffers, so a stop comes mid-stream


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReplayData, list[str]]:
    path = tmp_path_factory.mktemp("resume") / "capture.jsonpb"
    records = list(generate_flows(FLOWS))
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    uuids = [r["flow"]["uuid"] for r in records if "flow" in r]
    return ReplayData.from_sources(path), uuids


def _uuids(decoded: object) -> list[str]:
    column = decoded.batch.columns.get("uuid")  # type: ignore[attr-defined]
    return [] if column is None else column.to_pylist()


def test_a_restart_during_a_bounded_read_loses_and_repeats_nothing(
        capture: tuple[ReplayData, list[str]]) -> None:
    data, expected = capture
    listen = f"127.0.0.1:{_free_port()}"
    relays = [ReplayRelay(data, listen=listen).start()]
    stream = relay_stream(Connection(listen), F.Filters.from_kwargs(all=True))
    stream.run_size = 500
    stream.retry = RetryPolicy(initial=0.05, maximum=0.5, patience=60)
    got: list[str] = []
    try:
        for decoded in stream:
            got += _uuids(decoded)
            if len(relays) == 1:
                relays[0].stop()  # mid-stream: most flows are still to come
                time.sleep(1)  # away for a while, as a restarting relay is
                relays.append(ReplayRelay(data, listen=listen).start())
    finally:
        relays[-1].stop()
    assert stream.stats.reconnects >= 1
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == set(expected)


def test_a_relay_that_stays_away_is_one_line_saying_what_is_missing(
        capture: tuple[ReplayData, list[str]]) -> None:
    data, expected = capture
    listen = f"127.0.0.1:{_free_port()}"
    relay = ReplayRelay(data, listen=listen).start()
    stream = relay_stream(Connection(listen), F.Filters.from_kwargs(all=True))
    stream.run_size = 500
    stream.retry = RetryPolicy(initial=0.05, maximum=0.2, patience=1)
    got: list[str] = []
    with pytest.raises(RelayError) as raised:
        for decoded in stream:
            got += _uuids(decoded)
            relay.stop()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"relay {listen}: ")
    assert "gave up after" in message
    assert "the flows after 20" in message and "are missing" in message
    assert 0 < len(got) < len(expected)
    assert len(got) == len(set(got))


def test_a_follow_stream_holds_back_a_relay_faster_than_its_consumer(
        capture: tuple[ReplayData, list[str]]) -> None:
    """tail -f's receiving thread keeps at most a few runs of flows in hand: while the consumer
    dawdles, the rest waits in the relay (memory stays flat), and none is lost."""
    data, expected = capture
    listen = f"127.0.0.1:{_free_port()}"
    relay = ReplayRelay(data, listen=listen).start()
    stream = relay_stream(Connection(listen), F.Filters.from_kwargs(all=True, follow=True))
    stream.run_size = 200
    got: list[str] = []
    in_hand = []
    taken = 0  # responses handed over: flows, lost events, node status
    try:
        for decoded in stream:
            got += _uuids(decoded)
            taken += decoded.rows + len(decoded.lost_events) + len(decoded.node_status)
            if len(in_hand) < 3 and got:
                time.sleep(1)  # long enough to receive all 30,000 flows were nothing held back
                in_hand.append(stream._received - taken)
            if len(got) >= len(expected):
                break
    finally:
        stream.cancel()
        relay.stop()
    assert max(in_hand) <= 4 * 200 + 1, in_hand  # + the one the receiver holds, waiting
    assert len(got) == len(set(got)) == len(expected)


def _lines(pipe: object, count: int) -> Iterator[bytes]:
    for _ in range(count):
        line = pipe.readline()  # type: ignore[attr-defined]
        if not line:
            return
        yield line


def test_tail_all_resumes_across_a_restart(capture: tuple[ReplayData, list[str]]) -> None:
    """`flowlens tail --all -o jsonpb`: the relay restarts while tail is mid-way (tail waits on
    its full stdout pipe), and every flow comes out once."""
    data, expected = capture
    listen = f"127.0.0.1:{_free_port()}"
    relays = [ReplayRelay(data, listen=listen).start()]
    tail = subprocess.Popen([sys.executable, "-m", "flowlens", "tail", "--server", listen,
                             "--all", "-o", "jsonpb"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert tail.stdout is not None and tail.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(tail.stderr.read()))  # type: ignore
    reader.start()
    try:
        head = list(_lines(tail.stdout, 1000))  # tail now blocks on stdout, mid-stream
        relays[0].stop()
        time.sleep(4)  # longer than five quick reconnects take
        relays.append(ReplayRelay(data, listen=listen).start())
        rest = tail.stdout.read()
        tail.wait(timeout=120)
    finally:
        relays[-1].stop()
        if tail.poll() is None:
            tail.kill()
        reader.join(timeout=10)
    assert tail.returncode == 0, errors
    got = [orjson.loads(line)["flow"]["uuid"] for line in
           [*head, *rest.splitlines(keepends=True)] if b'"flow"' in line]
    assert len(got) == len(set(got)) == len(expected)
    assert b"reconnecting" in errors[0]
