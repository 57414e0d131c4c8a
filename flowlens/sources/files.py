"""Opening what the user named: files (plain or gzip), folders, `-` for stdin; format detection."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import select
import stat
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from flowlens.errors import InputError, UsageError

FORMATS = ("jsonpb", "compact", "dict", "table", "parquet")
# Names users may also type for a format.
FORMAT_ALIASES = {"json": "jsonpb", "jsonl": "jsonpb", "tab": "table"}

_GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
STORE_FILE = "flowlens-store.json"  # marks a folder as a flow store
_COMPACT_START = re.compile(
    rb"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\.\d{3}|\d{4}-\d\d-\d\d\S*|[A-Z][a-z]{2}, \d\d |N/A)"
)


@dataclass
class Opened:
    """One readable input: a display name for messages, its bytes, and its modification time."""

    name: str
    stream: BinaryIO
    mtime: float | None


def normalize_format(name: str | None) -> str | None:
    if name is None:
        return None
    key = name.lower()
    key = FORMAT_ALIASES.get(key, key)
    if key not in FORMATS:
        raise InputError(f"unknown input format {name!r}: use one of {', '.join(FORMATS)}")
    return key


def expand(sources: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Files named, folders replaced by the files in them (sorted), `-` kept for stdin; a flow
    store (a folder with STORE_FILE) is kept whole."""
    out: list[str] = []
    for src in sources:
        text = os.fspath(src)
        if text == "-":
            out.append(text)
            continue
        path = Path(text)
        if is_store(text):
            out.append(text)  # a flow store is one source (flowlens.store)
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise InputError(f"{text}: folder has no files")
            out.extend(str(p) for p in files)
        elif path.exists():
            out.append(text)
        else:
            raise InputError(f"{text}: no such file or folder")
    if not out:
        raise InputError("no input given")
    return out


def is_store(path: str | os.PathLike[str]) -> bool:
    """Is this a flow store folder (flowlens.store), or an fsspec URL of one?"""
    if is_url(os.fspath(path)):
        from flowlens.store.dataset import location

        disk, root = location(path)
        return disk.exists(root / STORE_FILE)
    return (Path(path) / STORE_FILE).is_file()


def is_url(text: str) -> bool:
    """An fsspec URL (s3://bucket/flows, gs://..., file:///...), not a path."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.replace("+", "").isalnum()


def open_source(name: str) -> Opened:
    """Open one file or stdin, transparently un-gzipping by content (not by extension)."""
    if name == "-":
        raw: BinaryIO = sys.stdin.buffer
        mtime = None
        shown = "<stdin>"
    else:
        try:
            raw = open(name, "rb")  # noqa: SIM115 - closed by the reader
            mtime = os.path.getmtime(name)
        except OSError as exc:
            raise InputError(f"{name}: cannot open: {exc.strerror}") from exc
        shown = name
    buffered: Any = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
    with reading(shown):
        gzipped = buffered.peek(2)[:2] == _GZIP_MAGIC
    if gzipped:
        buffered = io.BufferedReader(_CheckedGzip(shown, buffered), buffer_size=1 << 20)
    return Opened(shown, buffered, mtime)


@contextlib.contextmanager
def reading(name: str) -> Iterator[None]:
    """An OSError while reading the source `name` (a failing disk, a file the kernel refuses
    to read) as one InputError naming it."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None


class _CheckedGzip(gzip.GzipFile):
    """A gzip stream whose corruption surfaces as an InputError naming the file. One that
    ends early (its writer stopped mid-stream) ends there: what it holds up to the cut is read,
    and a line cut off is reported as in a plain file."""

    def __init__(self, name: str, fileobj: BinaryIO) -> None:
        super().__init__(fileobj=fileobj, mode="rb")
        self._shown = name
        self._any = False

    def read(self, size: int | None = -1) -> bytes:
        try:
            # read1: one piece at a time, so that an early end loses none read before it
            data = super().read1(size) if size is not None and size > 0 else super().read(size)
            self._any = self._any or bool(data)
            return data
        except EOFError as exc:  # (raised once every byte before the cut has been returned)
            if self._any:
                return b""
            raise InputError(f"{self._shown}: unreadable gzip data ({exc})") from exc
        except (OSError, zlib.error) as exc:
            raise InputError(f"{self._shown}: unreadable gzip data ({exc})") from exc

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def detect_format(opened: Opened) -> str:
    """Tell jsonpb from hubble's compact, dict and table text, and Parquet, by the first
    bytes."""
    head = opened.stream.peek(4096)[:4096]  # type: ignore[attr-defined]
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start:
        raise InputError(f"{opened.name}: empty input")
    if start[:1] in (b"{", b"["):
        return "jsonpb"
    if start.startswith(b"TIMESTAMP:"):
        return "dict"
    if start.startswith(b"TIMESTAMP "):
        return "table"
    if _COMPACT_START.match(start):
        return "compact"
    if b"\x00" in head or not _is_text(head):
        raise InputError(f"{opened.name}: binary data, not a Hubble flow export")
    first = start.split(b"\n", 1)[0][:80].decode("utf-8", "replace")
    raise InputError(
        f"{opened.name}: not a Hubble flow export (jsonpb, compact, dict or table); "
        f"first line: {first!r}"
    )


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the 4 KiB peek is still text.
        return exc.start >= len(head) - 3
    return True


# The longest line a reader takes (--max-line-size): a longer one is a bad line, read through
# in bounded memory (an endless line, `/dev/zero`, would otherwise fill memory).
DEFAULT_MAX_LINE = 16 << 20
# From a pipe, a block is handed on when no more input comes for STREAM_PAUSE seconds, or
# STREAM_LATENCY seconds after its first line at the latest: lines show as they arrive, and a
# fast producer still fills large blocks.
STREAM_PAUSE, STREAM_LATENCY = 0.02, 0.2


def parse_size(text: str, flag: str = "--max-line-size") -> int:
    """A size such as 16MiB, 512KiB, 1GiB or 1000000 (bytes): from 1 KiB to 4 GiB."""
    m = re.fullmatch(r"(\d{1,12})\s*([KMG]i?B?|B)?", text.strip(), re.IGNORECASE)
    if m is None:
        raise UsageError(f"invalid value {text!r} for {flag}: want a size like 16MiB")
    unit = (m[2] or "B").upper().rstrip("B").removesuffix("I")
    size = int(m[1]) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]
    if not 1 << 10 <= size <= 4 << 30:
        raise UsageError(f"invalid value {text!r} for {flag}: want a size from 1KiB to 4GiB")
    return size


@dataclass
class LineBlocks:
    """A stream as blocks of whole lines, in bounded memory.

    Each block (bytes) holds whole lines ending with "\n", about `size` bytes or `max_lines`
    lines at most; the last block may end with a line without newline (`unterminated`). A line
    longer than `max_line` bytes is read through without being kept, replaced by an empty line
    (line numbers stay true), and `on_long(line number)` names it. From a pipe or a terminal a
    block ends as soon as no more input is ready, so lines are handed on as they arrive;
    `paused` tells, after each block, whether the input paused there."""

    stream: BinaryIO
    on_long: Callable[[int], None]
    size: int = 4 << 20
    max_line: int = DEFAULT_MAX_LINE
    max_lines: int | None = None
    paused: bool = False
    first_line: int = 1  # the number of the stream's first line

    def __iter__(self) -> Iterator[tuple[bytes, bool]]:
        self._pending = bytearray()  # the start of a line not yet ended
        self._skipping = False  # inside a line too long to keep
        self._lines = self.first_line - 1  # lines handed on so far (before: not ours)
        streaming = is_stream(self.stream)
        read1 = getattr(self.stream, "read1", self.stream.read)
        eof = False
        while not eof:
            block = bytearray()
            self.paused = False
            due = None  # when a block from a stream is handed on, ready or not
            while len(block) < self.size:
                chunk = read1(max(self.size - len(block), 1 << 16))
                if not chunk:
                    eof = True
                    break
                self._take(chunk, block)
                if block and streaming:
                    due = due or time.monotonic() + STREAM_LATENCY
                    wait = min(STREAM_PAUSE, due - time.monotonic())
                    if wait <= 0 or not _ready(self.stream, wait):
                        self.paused = True  # hand on what arrived
                        break
            if block:
                yield from self._split(self._check_lines(block))
        self.paused = False
        if self._skipping:
            yield b"\n", False
        elif self._pending:
            yield bytes(self._pending), True

    def _take(self, chunk: bytes, block: bytearray) -> None:
        """Whole lines of `chunk` onto `block`, the rest kept (or skipped, if too long)."""
        if self._skipping:
            ends = chunk.find(b"\n")
            if ends < 0:
                return
            chunk, self._skipping = chunk[ends + 1:], False
            block += b"\n"  # the long line, left empty
        end = chunk.rfind(b"\n")
        if end < 0:
            self._pending += chunk
        else:
            block += self._pending
            block += memoryview(chunk)[:end + 1]
            self._pending[:] = memoryview(chunk)[end + 1:]
        if len(self._pending) > self.max_line:
            self.on_long(self._lines + block.count(b"\n") + 1)
            self._skipping = True
            self._pending.clear()

    def _split(self, block: bytes) -> Iterator[tuple[bytes, bool]]:
        """The block in pieces of at most `max_lines` lines."""
        lines = block.count(b"\n")
        if self.max_lines is None or lines <= self.max_lines:  # (the usual case: no search)
            self._lines += lines
            yield block, False
            return
        start = 0
        while start < len(block):
            at = start
            for _ in range(self.max_lines):
                at = block.find(b"\n", at) + 1
                if not at:
                    break
            end = at or len(block)
            self._lines += block.count(b"\n", start, end)
            yield block[start:end], False
            start = end

    def _check_lines(self, block: bytearray) -> bytes:
        """The block with lines longer than max_line emptied (a block longer than the cap may
        hold one that came in one chunk)."""
        if len(block) <= self.max_line:
            return bytes(block)
        parts = bytes(block).split(b"\n")
        for i, part in enumerate(parts):
            if len(part) > self.max_line:
                self.on_long(self._lines + i + 1)
                parts[i] = b""
        return b"\n".join(parts)


def too_long(max_line: int) -> str:
    """Why a line longer than `max_line` bytes is a bad line."""
    size = f"{max_line >> 20} MiB" if not max_line % (1 << 20) else f"{max_line:,} bytes"
    return f"line longer than {size} (--max-line-size)"


def is_stream(stream: BinaryIO) -> bool:
    """A pipe, terminal or socket (input arrives over time), not a regular file."""
    try:
        return not stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def _ready(stream: BinaryIO, wait: float) -> bool:
    """More input comes on the descriptor within `wait` seconds."""
    try:
        return bool(select.select([stream.fileno()], [], [], wait)[0])
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
