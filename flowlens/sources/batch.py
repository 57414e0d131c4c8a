"""What every source yields: a batch of flows as columns of plain Python values, plus lost events.

Sources never import pandas; `flowlens.frame` turns batches into the typed frame.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flowlens._hubble import visible
from flowlens.errors import BadInputError

# How many bad lines are shown with file:line before only the count is reported.
SHOWN_BAD_LINES = 5
MAX_REASON = 200  # characters of why a line is bad
MAX_NODE_STATUS = 1000  # node status records kept (a long capture may hold one a second)


@dataclass
class FlowBatch:
    """Flows as columns named as in `flowlens.frame.schema` (a missing column is all NA).

    `time` holds either RFC 3339 strings or integer nanoseconds since the epoch (UTC).
    `raw` keeps the original GetFlowsResponse dicts, one per row, when the source had them.
    A lost event's `position` counts the flows of its source before it (across batches).
    """

    columns: dict[str, list[Any]]
    size: int
    lost_events: list[dict[str, Any]] = field(default_factory=list)
    raw: list[dict[str, Any]] | None = None


@dataclass
class ReadReport:
    """Lines a read skipped, counted and described (the first few with file:line)."""

    strict: bool = False
    bad_lines: int = 0
    examples: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    other_records: int = 0
    # Node status records (the relay serves them): the newest MAX_NODE_STATUS, and how many.
    node_status: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_NODE_STATUS))
    node_status_seen: int = 0

    def add_node_status(self, record: dict[str, Any]) -> None:
        self.node_status.append(record)
        self.node_status_seen += 1

    def bad(self, where: str, why: str) -> None:
        """Count one unreadable line; under --strict it stops the read instead."""
        if len(why) > MAX_REASON:  # reasons may quote the line, which may be megabytes
            why = why[:MAX_REASON] + "..."
        why = visible(why)
        message = f"{where}: {why}"
        if self.strict:
            raise BadInputError(message)
        self.bad_lines += 1
        if len(self.examples) < SHOWN_BAD_LINES:
            self.examples.append(message)

    def cut_off(self, where: str) -> None:
        """A last line without newline that does not parse: a capture cut off mid-write."""
        self.truncated.append(where)

    def summary_lines(self) -> list[str]:
        lines = [f"skipped unreadable line {e}" for e in self.examples]
        hidden = self.bad_lines - len(self.examples)
        if hidden > 0:
            lines.append(f"... and {hidden:,} more unreadable line{'' if hidden == 1 else 's'}")
        lines += [f"{w}: last line is truncated (capture cut off mid-write), skipped"
                  for w in self.truncated]
        return lines


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small containers.

    Decoding flows allocates millions of dicts and tuples and no cycles; without this, CPython's
    collector walks the growing batch again and again (measured: 7x slower reads)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
