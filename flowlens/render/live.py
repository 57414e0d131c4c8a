"""Text for live sessions: node status lines (as hubble prints them), the status line on a
terminal, the end-of-stream summary, and `hubble status` / node listings."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from flowlens import _hubble as H
from flowlens._lazy import lazy

if TYPE_CHECKING:
    import pandas as pd

    from flowlens.render import hubble as _hubble_text
    from flowlens.sources.proto import NodeStatus
    from flowlens.sources.relay import StreamStats
else:  # node status lines are rare: `flowlens tail` loads no pandas for the others
    pd, _hubble_text = lazy("pandas"), lazy("flowlens.render.hubble")

# hubble prints only these node states unless --debug.
SHOWN_NODE_STATES = frozenset({"NODE_UNAVAILABLE", "NODE_ERROR"})
_NAMES_WIDTH = 50


def _names(names: list[str]) -> str:
    """Names joined by ', ' while the running length (name + 2 each) stays <= 50; the first
    always; then ' (and N more)'."""
    kept: list[str] = []
    length = 0
    for name in names:
        length += len(name) + 2
        if kept and length > _NAMES_WIDTH:
            break
        kept.append(name)
    more = len(names) - len(kept)
    return ", ".join(kept) + (f" (and {more} more)" if more else "")


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def _go_quote(text: str) -> str:
    """Go's strconv.Quote (hubble prints an error message with %q): no control character
    reaches the terminal."""
    out = []
    for c in text:
        if c in _GO_ESCAPES:
            out.append(_GO_ESCAPES[c])
        elif c.isprintable() or c == " ":
            out.append(c)
        else:
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x80 else f"\\u{ord(c):04x}"
                       if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


def node_status_line(event: NodeStatus, time_format: str = "StampMilli") -> str:
    """`<TS> [<node>]: <text>` as hubble prints a relay node status event (spec §3.3.10)."""
    when = pd.Timestamp(event.time_ns, tz="UTC") if event.time_ns is not None else None
    stamp = _hubble_text.format_time(when, time_format)
    n = len(event.node_names)
    names = _names([H.visible(name) for name in event.node_names])
    text = {
        "NODE_CONNECTED": f"Receiving flows from {n} nodes: {names}",
        "NODE_UNAVAILABLE": f"{n} nodes are unavailable: {names}",
        "NODE_GONE": f"{n} nodes removed from cluster: {names}",
        "NODE_ERROR": f"Error {_go_quote(event.message)} on {n} nodes: {names}",
    }.get(event.state, f"unknown node status event: {H.visible(event.state)} {names}")
    return f"{stamp} [{H.visible(event.node)}]: {text}\n"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`1 flow`, `3,230 flows`: a count for a message, with thousands separators."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _top(counts: dict[str, int]) -> str | None:
    return max(counts, key=lambda k: counts[k]) if counts else None


def summary_line(stats: StreamStats, server: str) -> str:
    """The one line a live session ends with."""
    forwarded = stats.verdicts.get("FORWARDED", 0)
    dropped = stats.verdicts.get("DROPPED", 0)
    parts = [f"{counted(stats.flows, 'flow')} from {server} ({forwarded:,} forwarded, "
             f"{dropped:,} dropped"]
    top = _top(stats.drop_reasons)
    parts.append(f"; top drop reason {top})" if top else ")")
    if stats.lost_events or stats.lost_records:
        parts.append(f", EVENTS LOST: {stats.lost_events:,} in "
                     f"{counted(stats.lost_records, 'record')} (the numbers above are incomplete)")
    if stats.reconnects:
        parts.append(f", {counted(stats.reconnects, 'reconnect')}")
    if stats.bad_records:
        parts.append(f", {counted(stats.bad_records, 'record')} skipped (unreadable, or values "
                     "out of range)")
    return "flowlens: " + "".join(parts) + "\n"


class StatusLine:
    """A one-line live summary redrawn in place on a terminal's stderr (flows/s, forwarded,
    dropped, top drop reason, lost), at most every `interval` seconds."""

    def __init__(self, out: IO[str], stats: StreamStats, interval: float = 0.5) -> None:
        self.out = out
        self.stats = stats
        self.interval = interval
        self._last = 0.0
        self._last_flows = 0
        self._shown = False
        self._rate = 0.0

    def clear(self) -> None:
        if self._shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._shown = False

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        flows = self._flows()
        if self._last:
            self._rate = (flows - self._last_flows) / (now - self._last)
        self._last, self._last_flows = now, flows
        self.out.write(f"\r\x1b[K{self._rate:,.0f} flows/s | {self._text()}")
        self.out.flush()
        self._shown = True

    def _flows(self) -> int:
        return self.stats.flows

    def _text(self) -> str:
        s = self.stats
        top = _top(s.drop_reasons) or "-"
        return (f"{s.flows:,} flows | {s.verdicts.get('FORWARDED', 0):,} forwarded | "
                f"{s.verdicts.get('DROPPED', 0):,} dropped | top drop: {top} | "
                f"lost: {s.lost_events:,}")


class RecordStatusLine(StatusLine):
    """`flowlens record`'s status line: flows/s, flows, files and bytes written, how far the
    newest flow is behind the clock, events lost."""

    def __init__(self, out: IO[str], recorder: Any, interval: float = 0.5) -> None:
        from flowlens.sources.relay import StreamStats  # (the recorder has loaded it)

        super().__init__(out, StreamStats(), interval)  # its numbers come from the recorder
        self.recorder = recorder

    def _flows(self) -> int:
        return int(self.recorder.writer.accepted_flows)

    def _text(self) -> str:
        r = self.recorder
        w = r.writer.stats
        lag = r.lag_ns
        behind = "-" if lag is None else go_duration(max(lag, 0) // 1_000_000 * 1_000_000)
        lost = r.stream.stats.lost_events if r.stream is not None else 0
        return (f"{self._flows():,} flows | {w.files:,} files | {size_text(w.bytes)} | "
                f"lag {behind} | lost: {lost:,}")


def size_text(n: int) -> str:
    """A byte count for people: 137.1 KB, 2.6 MB."""
    value, unit = float(n), "B"
    for bigger in ("KB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{n} B" if unit == "B" else f"{value:,.1f} {unit}"


def go_duration(ns: int) -> str:
    """A duration as Go prints it: 5m1.515181665s, 1h0m0s, 1.5ms, 0s."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return sign + _trim(ns, 1_000) + "µs"
    if ns < 1_000_000_000:
        return sign + _trim(ns, 1_000_000) + "ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    digits = len(str(unit)) - 1
    text = f"{frac:0{digits}d}".rstrip("0")
    return f"{whole}.{text}" if text else str(whole)


def server_status_lines(status: Any, fmt: str = "compact") -> list[str]:
    """`hubble status -o compact|dict|table` for a ServerStatusResponse (spec §3.7)."""
    if fmt != "compact":
        def wrapped(name: str) -> str:
            return str(getattr(status, name).value) if status.HasField(name) else "N/A"

        fields = [("NUM FLOWS", f"{status.num_flows:,}"), ("MAX FLOWS", f"{status.max_flows:,}"),
                  ("SEEN FLOWS", f"{status.seen_flows:,}"),
                  ("FLOWS PER SECOND", f"{status.flows_rate:.2f}" if status.flows_rate else "N/A"),
                  ("UPTIME", go_duration(status.uptime_ns)),
                  ("NUM CONNECTED NODES", wrapped("num_connected_nodes")),
                  ("NUM UNAVAILABLE NODES", wrapped("num_unavailable_nodes")),
                  ("VERSION", H.visible(status.version))]
        if fmt == "dict":  # hubble shortens the one label longer than the others
            return [f"{name.replace('UNAVAILABLE', 'UNAVAIL.'):>19}: {value}\n"
                    for name, value in fields]
        return _aligned([[name for name, _ in fields], [value for _, value in fields]])
    lines = []
    share = f" ({status.num_flows / status.max_flows * 100:.2f}%)" if status.max_flows else ""
    lines.append(f"Current/Max Flows: {status.num_flows:,}/{status.max_flows:,}{share}")
    rate = status.flows_rate
    if not rate and status.uptime_ns:
        rate = status.seen_flows / (status.uptime_ns / 1e9)
    lines.append(f"Flows/s: {rate:.2f}")
    if status.HasField("num_connected_nodes"):
        connected = status.num_connected_nodes.value
        unavailable = status.num_unavailable_nodes.value
        lines.append(f"Connected Nodes: {connected}/{connected + unavailable}")
        if unavailable:
            lines.append(f"Unavailable Nodes: {unavailable}")
            lines += [f"  - {H.visible(name)}" for name in status.unavailable_nodes]
    return [line + "\n" for line in lines]


_NODE_STATES = {0: "UNKNOWN_NODE_STATE", 1: "NODE_CONNECTED", 2: "NODE_UNAVAILABLE",
                3: "NODE_GONE", 4: "NODE_ERROR"}


def nodes_table(nodes: Iterable[Any]) -> list[str]:
    """GetNodes as an aligned table."""
    rows = [["NAME", "STATE", "ADDRESS", "TLS", "UPTIME", "SEEN FLOWS", "CURRENT/MAX FLOWS"]]
    for n in nodes:
        tls = H.visible(n.tls.server_name) or "yes" if n.tls.enabled else "no"
        rows.append([H.visible(n.name), _NODE_STATES.get(n.state, str(n.state)),
                     H.visible(n.address) or "-", tls,
                     go_duration(n.uptime_ns), f"{n.seen_flows:,}",
                     f"{n.num_flows:,}/{n.max_flows:,}"])
    return _aligned(rows)


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows as Go's tabwriter aligns them for hubble (3 spaces after the widest cell of each
    column; the last column as it is)."""
    widths = [max(len(r[i]) for r in rows) + 3 for i in range(len(rows[0]) - 1)]
    return ["".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1] + "\n"
            for r in rows]
