"""Receiving in a forked child process, so that the parent's work on what arrives (decoding,
building a frame, importing what a report needs) runs on another core meanwhile.

A thread cannot do it: the receive loop is Python once per message and hands the GIL away
at each wait in gRPC, and a busy thread beside it then holds the GIL for a switch interval
each time (measured: 50x slower). A child process has its own.

    child: the work (receive) ──send_run / send_event──► pipe ──► parent: Child.runs()

The pipe carries records: a run's payloads (count, their lengths, their bytes), an event line,
the end with what the work returns, or the exception it raised (pickled, raised again in the
parent). The child never blocks on a full pipe while it holds less than BUFFER_BYTES (so the
parent may import for a while); past that it waits, and so does its relay (gRPC's flow
control): memory stays bounded.
"""

from __future__ import annotations

import itertools
import os
import pickle
import select
import signal
import struct
import sys
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from flowlens.errors import RelayError
from flowlens.sources.native import Joined

__all__ = ["BUFFER_BYTES", "Child", "Sender", "can_fork"]

# What the child holds that the parent has not read yet, at most (then it waits). A report of
# 200,000 flows from a Go relay, quiet, 8 alternating rounds: 2.12 s with 16 MB, the child
# peaking at 79 MB; 2.08 s with 64 MB, at 125 MB.
BUFFER_BYTES = 16 << 20
_PIPE_BYTES = 1 << 20  # the pipe's own buffer (Linux's default most for a user)
_RECORD = struct.Struct("=cQ")  # kind, length of what follows
_COUNT = struct.Struct("=I")
_RUN, _EVENT, _END, _ERROR = b"R", b"E", b"D", b"X"


def can_fork() -> bool:
    """Whether this process may fork a receiver: a POSIX system, gRPC not loaded (its core
    does not survive a fork), and no other Python thread (a fork copies only the calling one:
    a lock another holds would stay held in the child). The idle pools of numpy's OpenBLAS and
    of Arrow may run (both prepare for a fork), and the child uses neither."""
    return hasattr(os, "fork") and "grpc" not in sys.modules and threading.active_count() == 1


class Sender:
    """The child's end of the pipe: records queued, written as the pipe takes them."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.queued: deque[bytes] = deque()
        self.held = 0  # bytes queued, not yet written
        self.offset = 0  # written of queued[0]

    def send_run(self, payloads: list[bytes]) -> None:
        lengths = array("I", map(len, payloads))
        self._send(_RUN, b"".join([_COUNT.pack(len(payloads)), lengths.tobytes(), *payloads]))

    def send_event(self, text: str) -> None:
        self._send(_EVENT, text.encode("utf-8", "replace"))

    def end(self, result: Any = None, error: BaseException | None = None) -> None:
        """The last record: what the work returned, or the exception it raised; then waits
        until the pipe took everything."""
        if error is None:
            self._send(_END, pickle.dumps(result))
        else:
            try:
                body = pickle.dumps(error)
            except Exception:  # an exception that does not pickle: its words do
                body = pickle.dumps(RelayError(f"receiving failed: {error}"))
            self._send(_ERROR, body)
        self._flush(everything=True)

    def _send(self, kind: bytes, body: bytes) -> None:
        self.queued.append(_RECORD.pack(kind, len(body)) + body)
        self.held += len(self.queued[-1])
        self._flush(everything=self.held > BUFFER_BYTES)

    def _flush(self, everything: bool) -> None:
        """Writes what the pipe takes now; `everything`: waits until it took it all."""
        while self.queued:
            head = self.queued[0]
            try:
                written = os.write(self.fd, memoryview(head)[self.offset:])
            except BlockingIOError:
                if not everything:
                    return
                select.select([], [self.fd], [])
                continue
            self.offset += written
            self.held -= written
            if self.offset == len(head):
                self.queued.popleft()
                self.offset = 0


class Child:
    """A forked child running `work(sender)`, and the parent's end of its pipe. Use only when
    `can_fork()`; `close()` (or the end of `runs`) ends and reaps it."""

    def __init__(self, work: Callable[[Sender], Any]) -> None:
        read, write = os.pipe()
        try:
            import fcntl
            fcntl.fcntl(write, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
        except (ImportError, OSError):
            pass  # a smaller pipe: the child queues more often
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            os.close(read)
            _run_child(work, write)
        os.close(write)
        self._pipe = open(read, "rb", buffering=_PIPE_BYTES)  # noqa: SIM115 (closed by close)
        self.result: Any = None

    def runs(self, size: int, on_event: Callable[[str], None]) -> Iterator[Joined]:
        """The payloads the child sends, in runs of `size` (the last one shorter; the child
        sends each run in records that end where it ends); its events to `on_event`; its
        exception raised here. The child's result is then in `result`."""
        parts: list[tuple[bytes, array[int]]] = []
        held = 0
        while True:
            kind, length = _RECORD.unpack(self._read(_RECORD.size))
            body = self._read(length)
            if kind == _RUN:
                parts.append(_payloads(body))
                held += len(parts[-1][1]) - 1
                if held >= size:
                    yield Joined(parts)
                    parts, held = [], 0
            elif kind == _EVENT:
                on_event(body.decode("utf-8"))
            elif kind == _ERROR:
                raise pickle.loads(body)
            else:
                self.result = pickle.loads(body)
                if parts:
                    yield Joined(parts)
                return

    def _read(self, size: int) -> bytes:
        data = self._pipe.read(size)
        if len(data) != size:
            raise RelayError("the process receiving the flows ended without a word")
        return data

    def close(self) -> None:
        """Closes the pipe, ends the child if it still runs, and reaps it."""
        self._pipe.close()
        pid, _ = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)


def _payloads(body: bytes) -> tuple[bytes, array[int]]:
    """A record's payloads where they are in it (after their count and lengths): the record
    and their offsets, as `Joined` takes a part."""
    (count,) = _COUNT.unpack_from(body)
    lengths = array("I")
    start = _COUNT.size + lengths.itemsize * count
    lengths.frombytes(body[_COUNT.size:start])
    return body, array("q", itertools.accumulate(lengths, initial=start))


def _run_child(work: Callable[[Sender], Any], fd: int) -> None:
    """The child's life: the work, its end sent, then out without the parent's exit handlers
    or buffered output (those are the parent's)."""
    status = 0
    try:
        sender = Sender(fd)
        try:
            sender.end(work(sender))
        except BaseException as exc:  # raised again in the parent
            sender.end(error=exc)
    except BaseException:  # the parent went away (a broken pipe), or an interrupt
        status = 1
    finally:
        os._exit(status)
