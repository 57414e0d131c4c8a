"""Saved jsonpb printed without a frame: what `flowlens tail --input-file` of a jsonpb file with
no flow filter prints from.

The file's blocks are split in C as `flowlens.sources.jsonpb` splits them; each new shape and
each lost event is read through protobuf, and hubble's text is rendered from the runs in C, as a
relay's flows are (`flowlens.sources.native`). Neither pandas nor Arrow is loaded: a small file
prints in about the time Python takes to start.

Only what is sure to print as the frame path prints it is taken here. A block the splitter
leaves to the reference, a record whose JSON is not exactly protobuf's JSON of the message read
from it (so that the frame path's Arrow reader and protobuf read the same values), a value the
frame cannot hold: any of these and `tail_runs` answers None before anything is printed, and the
caller reads the input through a frame instead; `tail_blocks` raises Unusable at that block,
and the frame path reads on from there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format

from flowlens.render.jsonpb import encode_response_bytes
from flowlens.sources.camel import to_proto_names
from flowlens.sources.files import DEFAULT_MAX_LINE, LineBlocks, Opened
from flowlens.sources.native import NativeRun, Shapes
from flowlens.sources.proto import lost_event, lost_problem, shape_columns, shape_problem
from flowlens.sources.protodict import message_to_dict, response_from_dict

__all__ = ["MOST", "Tail", "Unusable", "tail_blocks", "tail_runs"]

# Blocks of at most 4 MiB and 8,192 lines (any cut splits alike: the C code reads line by line;
# these keep a split's working set small, also for a file of tiny records).
_BLOCK_BYTES = 4 << 20
_BLOCK_LINES = 8192
# At most this many records are printed here (their blocks and text are held until printed);
# more go through the frame path, which prints a file part by part.
MOST = 20_000


class Unusable(Exception):
    """The frame path must read this input (from this block on)."""


@dataclass
class _Part:
    """A split block: its flows (`run`) and lost events (placed by flows before them)."""

    block: bytes
    run: Any
    lost: list[dict[str, Any]]

    @property
    def records(self) -> int:
        return int(self.run.rows) + len(self.lost)

    def lines(self) -> list[tuple[int, int]]:
        """Where each record's line is in the block, in file order."""
        run = self.run
        return sorted([run.source(row) for row in range(run.rows)]
                      + [(start, end) for start, end, _ in run.others])


@dataclass
class Tail:
    """The records `tail` prints of a jsonpb input, split: `runs` print hubble's text in C,
    `jsonpb` gives its `-o jsonpb` lines."""

    shapes: Shapes
    parts: list[_Part]

    def runs(self) -> list[NativeRun]:
        def never(sources: list[Any]) -> Any:  # frame columns: not from this path
            raise AssertionError("these runs are only printed")

        return [NativeRun(self.shapes, p.run, p.lost, never) for p in self.parts]

    @property
    def records(self) -> int:
        return sum(p.records for p in self.parts)

    @property
    def size(self) -> int:
        """Bytes of the input its records are (whole lines)."""
        return sum(len(p.block) for p in self.parts)

    @property
    def lines(self) -> int:
        return sum(p.block.count(b"\n") for p in self.parts)

    def jsonpb(self) -> bytes:
        """Each record as hubble writes it back (from what protobuf reads of it)."""
        return b"".join(encode_response_bytes(to_proto_names(orjson.loads(p.block[s:e]))) + b"\n"
                        for p in self.parts for s, e in p.lines())


def tail_runs(opened: Opened, *, first: int | None = None, last: int | None = None,
              max_line: int = DEFAULT_MAX_LINE, whole_messages: bool = False) -> Tail | None:
    """The records (flows and lost events, in file order) `hubble observe --input-file
    --first/--last N` shows of one jsonpb input, every record without N; None when the frame
    path must read the input, or when more than MOST records would print. With
    `whole_messages` (records printed as written: `-o jsonpb`) every line must be a message
    protobuf reads, as the frame path wants them then. Every block is split, also past the
    first N records: a block only the frame path reads decides for the whole input."""
    if (first or last or 0) > MOST:
        return None
    splitter = _Splitter(whole_messages)
    try:
        parts = _chosen(splitter, splitter.parts(opened, max_line), first, last)
    except Unusable:
        return None
    return Tail(splitter.shapes, parts)


def tail_blocks(opened: Opened, *, max_line: int = DEFAULT_MAX_LINE,
                whole_messages: bool = False) -> Iterator[Tail]:
    """Every record of one jsonpb input, as `tail_runs` without N takes them but in bounded
    memory and any number: a Tail per block, as it is split. Raises Unusable at a block only
    the frame path reads: the records before it are those of the Tails given so far."""
    splitter = _Splitter(whole_messages)
    for part in splitter.parts(opened, max_line):
        yield Tail(splitter.shapes, [part])


class _Splitter:
    """Blocks of jsonpb lines into parts, the shapes' printed values learnt through
    protobuf."""

    def __init__(self, whole_messages: bool) -> None:
        self.shapes = Shapes(json=True)
        self.whole_messages = whole_messages

    def parts(self, opened: Opened, max_line: int) -> Iterator[_Part]:
        long_lines: list[int] = []
        for block, _ in LineBlocks(opened.stream, long_lines.append, _BLOCK_BYTES, max_line,
                                   _BLOCK_LINES):
            if long_lines:
                raise Unusable
            yield self.split(bytes(block))

    def split(self, block: bytes) -> _Part:
        run = self.shapes.splitter.split_json(block)
        if run is None or not self.shapes.learn(run, lambda at: _shape_values(block, at)):
            raise Unusable
        lost = [_lost_event(_message(block[start:end]), before)
                for start, end, before in run.others]
        if self.whole_messages:
            for row in range(run.rows):
                start, end = run.source(row)
                _readable(block[start:end])
        return _Part(block, run, lost)

    def cut(self, part: _Part, start: int, end: int) -> _Part:
        """The part's records start..end-1 alone, split again from their lines."""
        lines = part.lines()[start:end]
        return self.split(part.block[lines[0][0]:lines[-1][1]])


def _chosen(splitter: _Splitter, parts: Iterator[_Part], first: int | None,
            last: int | None) -> list[_Part]:
    """The parts holding the first/last N records (all without N: hubble reads 0 so too),
    the outer one cut down to exactly N."""
    if first:
        kept: list[_Part] = []
        total = 0
        for part in parts:
            if total < first:
                kept.append(part)
                total += part.records
        if total > first:
            kept[-1] = splitter.cut(kept[-1], 0, kept[-1].records - (total - first))
        return kept
    if last:
        tail: deque[_Part] = deque()
        total = 0
        for part in parts:
            tail.append(part)
            total += part.records
            while total - tail[0].records >= last:
                total -= tail.popleft().records
        if total > last:
            tail[0] = splitter.cut(tail[0], total - last, tail[0].records)
        return list(tail)
    whole = []
    total = 0
    for part in parts:
        whole.append(part)
        total += part.records
        if total > MOST:
            raise Unusable
    return whole


_UNREADABLE = (orjson.JSONDecodeError, json_format.ParseError, ValueError, TypeError,
               AttributeError, KeyError, OverflowError)


def _readable(line: bytes) -> tuple[dict[str, Any], Any]:
    """A line's record and the GetFlowsResponse protobuf reads of it."""
    try:
        record = orjson.loads(line)
        return record, response_from_dict(record)
    except _UNREADABLE:
        raise Unusable from None


def _message(line: bytes) -> Any:
    """The GetFlowsResponse of a line, when its JSON is exactly protobuf's JSON of it."""
    record, message = _readable(line)
    try:
        again = orjson.loads(encode_response_bytes(message_to_dict(message)))
    except _UNREADABLE:
        raise Unusable from None
    if again != record:
        raise Unusable
    return message


def _lost_event(message: Any, position: int) -> dict[str, Any]:
    if lost_problem(message) is not None:
        raise Unusable
    return lost_event(message, position)


def _shape_values(block: bytes, at: tuple[int, int]) -> dict[str, Any]:
    message = _message(block[at[0]:at[1]])
    if message.WhichOneof("response_types") != "flow" or shape_problem(message.flow):
        raise Unusable
    return shape_columns(message.SerializeToString())
