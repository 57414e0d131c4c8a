"""Opening what the user named: files (plain or gzip), folders, `-` for stdin; format detection."""

from __future__ import annotations

import gzip
import io
import os
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from flowlens.errors import InputError

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
        if is_store(path):
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
    """Is this a flow store folder (flowlens.store)?"""
    return (Path(path) / STORE_FILE).is_file()


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
    if buffered.peek(2)[:2] == _GZIP_MAGIC:
        buffered = io.BufferedReader(_CheckedGzip(shown, buffered), buffer_size=1 << 20)
    return Opened(shown, buffered, mtime)


class _CheckedGzip(gzip.GzipFile):
    """A gzip stream whose corruption surfaces as an InputError naming the file."""

    def __init__(self, name: str, fileobj: BinaryIO) -> None:
        super().__init__(fileobj=fileobj, mode="rb")
        self._shown = name

    def read(self, size: int | None = -1) -> bytes:
        try:
            return super().read(size)
        except (OSError, EOFError, zlib.error) as exc:
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


def iter_lines(stream: BinaryIO) -> Iterator[bytes]:
    yield from stream
