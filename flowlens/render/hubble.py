"""The text `hubble observe` prints (compact, dict, table), rendered from a flows frame.

Byte for byte what the hubble CLI v1.19.4 prints for the same flows (../shared/spec/hubble-api.md
§3), from the frame alone, so it works whatever the frame was read from.

Every part of a line is built for a whole column at once: a category is rendered once per
distinct value, then the parts are joined element-wise by pyarrow compute (the engine behind
pandas' Arrow strings) in one pass per line, which keeps rendering well above 150,000 lines/s.

Each renderer yields one printed record at a time, with lost events (`frame.attrs["lost_events"]`)
placed where hubble printed them: compact yields lines, dict yields blocks (the separator before
every block but the first included), table yields the header, then one aligned line per record.

Every value taken from a flow is escaped as it enters a line (§3.3.8: ESC and CR made visible), so
that only the printer's own colour sequences (`color=True`, hubble's `--color always`) reach a
terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Literal, TypeVar, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flowlens import _hubble as H
from flowlens.frame import lost_events

__all__ = ["TIME_FORMATS", "compact", "dict_", "escape_text", "format_time", "table",
           "table_records", "time_format_name"]

# A column of strings being built: a pyarrow string array, null where the value is missing.
Texts = Any
Side = Literal["src", "dst"]
R = TypeVar("R")  # a printed record

_STRING = pd.ArrowDtype(pa.string())
_NANOS = 1_000_000_000
_NANO_DIGITS = 9


# --- building blocks over whole columns ------------------------------------------------------


def _join(*parts: Texts | str) -> Texts:
    """Element-wise concatenation of columns and constants; null where any part is null."""
    return pc.binary_join_element_wise(*parts, "")


def _choose(condition: np.ndarray, then: Texts | str, otherwise: Texts | str) -> Texts:
    return pc.if_else(pa.array(condition, pa.bool_()), then, otherwise)


def _lookup(values: pd.Series, render: Callable[[Any], Any]) -> tuple[list[Any], np.ndarray]:
    """render() of every distinct value (missing as None, last) and each row's index into them."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        uniques = list(values.cat.categories)
    else:
        codes, distinct = pd.factorize(values)
        uniques = list(distinct)
    rendered = [render(u) for u in uniques]
    rendered.append(render(None))
    return rendered, np.where(codes < 0, len(uniques), codes)


def _per_value(values: pd.Series, render: Callable[[Any], str | None]) -> Texts:
    """render(value), escaped, for every row, called once per distinct value; None gives null."""
    rendered, rows = _lookup(values, render)
    return pa.array([None if r is None else escape_text(r) for r in rendered],
                    pa.string()).take(rows)


def _flags(values: pd.Series, test: Callable[[Any], bool]) -> np.ndarray:
    """test(value) for every row, called once per distinct value."""
    rendered, rows = _lookup(values, test)
    return np.array(rendered, dtype=bool)[rows]


def _text(values: pd.Series) -> Texts:
    """A column as escaped strings; null where missing or empty."""
    if values.dtype == _STRING:
        strings = _escape(pa.array(values.array))
        return pc.if_else(pc.equal(strings, ""), None, strings)
    return _per_value(values, _non_empty)


def _non_empty(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _present(values: pd.Series) -> np.ndarray:
    return values.notna().to_numpy(dtype=bool)


def _escape(records: Texts) -> Texts:
    """Neutralise terminal control characters as hubble does on every record (§3.3.8)."""
    return pc.replace_substring(pc.replace_substring(records, "\x1b", "^["), "\r", "\\r")


def escape_text(record: str) -> str:
    """One string neutralised as hubble does a record: every text output of a flow string
    (tail, reports) uses it."""
    return record.replace("\x1b", "^[").replace("\r", "\\r")


# --- colour (§3.3.8): hubble's --color always -----------------------------------------------

_RESET = "\x1b[0m"
_RED, _GREEN, _YELLOW, _MAGENTA, _CYAN = (f"\x1b[{n}m" for n in (31, 32, 33, 35, 36))
# By the flow's verdict, also for the ALLOWED/DENIED/AUDITED of policy verdicts.
_VERDICT_COLORS = {"FORWARDED": _GREEN, "REDIRECTED": _GREEN, "DROPPED": _RED, "ERROR": _RED,
                   "AUDIT": _YELLOW, "TRACED": _YELLOW, "TRANSLATED": _YELLOW}


def _paint(color: str | None, texts: Texts) -> Texts:
    """`texts` in one colour; unchanged when colour is off (None)."""
    return texts if color is None else _join(color, texts, _RESET)


def _paint_by(values: pd.Series, colors: dict[str, str], texts: Texts) -> Texts:
    """Each row of `texts` in the colour its value has in `colors`; uncoloured otherwise."""
    chosen, rows = _lookup(values, lambda v: colors.get(str(v)))
    start = pa.array([c or "" for c in chosen], pa.string()).take(rows)
    end = pa.array(["" if c is None else _RESET for c in chosen], pa.string()).take(rows)
    return _join(start, texts, end)


# --- timestamps (§3.2) -----------------------------------------------------------------------

_LAYOUTS = H.TIME_LAYOUTS
TIME_FORMATS = H.TIME_FORMATS
time_format_name = H.time_format_name
_MISSING_TIME = "N/A"


@overload
def format_time(values: pd.Series, time_format: str = ...) -> pd.Series: ...
@overload
def format_time(values: datetime | str | None, time_format: str = ...) -> str: ...
def format_time(values: pd.Series | datetime | str | None,
                time_format: str = "StampMilli") -> pd.Series | str:
    """Timestamps as hubble prints them with `--time-format`: UTC, fractions truncated (never
    rounded), `N/A` when missing. A Series gives a Series of strings; a single datetime,
    Timestamp, ISO 8601 string or None gives a string."""
    if isinstance(values, pd.Series):
        return pd.Series(pd.arrays.ArrowExtensionArray(_times(values, time_format)),
                         index=values.index)
    return str(_times(pd.Series([values], dtype=object), time_format)[0])


def _times(values: pd.Series, time_format: str) -> Texts:
    layout, digits, trim, suffix = _LAYOUTS[time_format_name(time_format)]
    missing = values.isna().to_numpy(dtype=bool)
    nanos = _utc_nanos(values)
    seconds = nanos // _NANOS  # floor, so the fraction below is never negative
    # Render each distinct second once: flows come many to the second.
    rows, distinct = pd.factorize(seconds)
    text = pc.strftime(pa.array(distinct, pa.timestamp("s", tz="UTC")), format=layout).take(rows)
    if digits:
        fraction = pc.utf8_slice_codeunits(
            pc.utf8_lpad(pc.cast(pa.array(nanos - seconds * _NANOS), pa.string()), _NANO_DIGITS,
                         "0"),
            0, digits)
        if trim:
            fraction = pc.utf8_rtrim(fraction, "0")
            text = _join(text, pc.if_else(pc.equal(fraction, ""), "", "."), fraction)
        else:
            text = _join(text, ".", fraction)
    return _choose(missing, _MISSING_TIME, _join(text, suffix))


def _utc_nanos(values: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (0 where missing)."""
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        values = pd.to_datetime(values, utc=True, format="ISO8601")
    naive = values.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("ns")
    return np.where(values.isna().to_numpy(dtype=bool), 0,
                    naive.to_numpy().view(np.int64))


# --- hosts and identities (§3.3.2, §3.3.3) ---------------------------------------------------


def _host(df: pd.DataFrame, side: Side, numeric: bool, color: bool = False) -> Texts:
    """SOURCE/DESTINATION: pod, else service, else DNS names, else IP; then the port. In colour:
    cyan, the port yellow inside it.

    The frame keeps no Ethernet addresses: where hubble would print a MAC (flows without IP)
    this prints the names it has, or nothing.
    """
    ip = _text(df[f"{side}_ip"])
    if numeric:
        host = ip
    else:
        host = pc.coalesce(_pod_host(df, side), _service_host(df, side),
                           _text(df[f"{side}_names"]), ip)
    with_port = _with_port(pc.coalesce(host, ""), df[f"{side}_port"], df["protocol"],
                           _YELLOW if color else None)
    return _paint(_CYAN if color else None, with_port)


def _pod_host(df: pd.DataFrame, side: Side) -> Texts:
    """`namespace/pod`; hubble takes the namespace from the service when there is one."""
    namespace = pc.coalesce(_per_value(df[f"{side}_service"], _service_namespace),
                            _text(df[f"{side}_namespace"]), "")
    pod = _text(df[f"{side}_pod"])
    # Go's path.Join: no namespace, just the pod.
    return pc.if_else(pc.equal(namespace, ""), pod, _join(namespace, "/", pod))


def _service_namespace(service: str | None) -> str | None:
    return None if service is None else service.partition("/")[0]


def _service_host(df: pd.DataFrame, side: Side) -> Texts:
    return _per_value(df[f"{side}_service"], _service_name)


def _service_name(service: str | None) -> str | None:
    """`namespace/name` (`name` without a namespace); None when the service has no name."""
    if service is None:
        return None
    namespace, _, name = service.rpartition("/")
    if not name:
        return None
    return f"{namespace}/{name}" if namespace else name


def _with_port(host: Texts, port: pd.Series, protocol: pd.Series, color: str | None) -> Texts:
    """host:port for TCP/UDP/SCTP with a non-zero port, bracketing IPv6 hosts like Go's
    net.JoinHostPort, the port in `color`. A port with no known protocol (text input) came
    from such a line."""
    has_port = (port.fillna(0).to_numpy() != 0) & _flags(protocol, _has_ports)
    if not has_port.any():
        return host
    bracketed = pc.if_else(pc.match_substring(host, ":"), _join("[", host, "]"), host)
    return _choose(has_port, _join(bracketed, ":", _paint(color, _per_value(port, _non_empty))),
                   host)


def _has_ports(protocol: str | None) -> bool:
    return protocol is None or protocol in H.PORT_PROTOCOLS


def _identity(df: pd.DataFrame, side: Side, color: bool) -> Texts:
    return _paint(_MAGENTA if color else None, _per_value(df[f"{side}_identity"], _identity_token))


def _identity_token(identity: int | None) -> str:
    """`(name)` for reserved identities, `(ID:n)` for any other; a missing one is 0."""
    number = int(identity or 0)
    name = H.RESERVED_IDENTITIES.get(number)
    return f"({name})" if name is not None else f"(ID:{number})"


# --- arrow, TYPE, VERDICT, SUMMARY, NODE (§3.3.4-§3.3.7) --------------------------------------

_ARROWS = {None: "<>", False: "->", True: "<-"}


def _direction_arrow(df: pd.DataFrame) -> Texts:
    """`->` for requests, `<-` for replies (printed swapped), `<>` when unknown."""
    return _per_value(df["is_reply"], lambda reply: _ARROWS[None if reply is None else bool(reply)])


def _is_reply(df: pd.DataFrame) -> np.ndarray:
    return df["is_reply"].fillna(False).to_numpy(dtype=bool)


def _is_policy_verdict(df: pd.DataFrame) -> np.ndarray:
    """Policy-verdict events (type 5), known by their label `policy-verdict:<match>`."""
    return _flags(df["event"], lambda event: str(event).startswith("policy-verdict:"))


def _type_label(df: pd.DataFrame, policy_verdict: np.ndarray) -> Texts:
    """The event label; a policy verdict's gets its traffic direction."""
    event = _per_value(df["event"], lambda event: "UNKNOWN" if event is None else str(event))
    if not policy_verdict.any():
        return event
    direction = _per_value(df["traffic_direction"], _direction_name)
    return _choose(policy_verdict, _join(event, " ", direction), event)


def _direction_name(direction: str | None) -> str:
    return H.TRAFFIC_DIRECTIONS[0] if direction is None else str(direction)


def _verdict_text(df: pd.DataFrame, policy_verdict: np.ndarray, policy_names: bool,
                  color: bool = False) -> Texts:
    """The verdict name; ALLOWED/DENIED/AUDITED on policy verdicts, `BY <policies>` on
    request (v1.19.4 names them for ALLOWED and DENIED, never for AUDITED). In colour, all of
    it in the verdict's colour."""
    verdict = _per_value(df["verdict"], _verdict_name)
    if policy_verdict.any():
        verdict = _choose(policy_verdict, _per_value(df["verdict"], _policy_verdict_name),
                          verdict)
    if policy_verdict.any() and policy_names:
        named = (policy_verdict & _present(df["policies"]) & _present(df["traffic_direction"])
                 & _flags(df["verdict"],
                          lambda v: _policy_verdict_name(v) in ("ALLOWED", "DENIED")))
        verdict = _choose(named, _join(verdict, " BY ", _text(df["policies"])), verdict)
    return _paint_by(df["verdict"], _VERDICT_COLORS, verdict) if color else verdict


def _verdict_name(verdict: str | None) -> str:
    return H.VERDICTS[0] if verdict is None else str(verdict)


def _policy_verdict_name(verdict: str | None) -> str:
    name = _verdict_name(verdict)
    return H.POLICY_VERDICT_TEXT.get(name, name)


def _summary(df: pd.DataFrame, color: bool = False) -> Texts:
    """Flow.Summary with an `IP Trace ID: n; ` prefix and an `; Auth: <type>` suffix (in colour,
    the type red when it is TEST_ALWAYS_FAIL, else green)."""
    summary = pc.coalesce(_escape(pa.array(df["summary"].astype(_STRING).array)), "")
    trace_id = df["ip_trace_id"]
    traced = trace_id.fillna(0).to_numpy() > 0
    if traced.any():
        prefixed = _join("IP Trace ID: ", _per_value(trace_id, _non_empty), "; ", summary)
        summary = _choose(traced, prefixed, summary)
    auth = _per_value(df["auth_type"], _auth_name)
    if color:
        auth = _paint_by(df["auth_type"], _AUTH_COLORS, auth)
    return pc.coalesce(_join(summary, "; Auth: ", auth), summary)


_AUTH_COLORS = {name: _RED if name == "TEST_ALWAYS_FAIL" else _GREEN for name in H.AUTH_TYPES}


def _auth_name(auth: str | None) -> str | None:
    return None if auth is None or auth == H.AUTH_TYPES[0] else str(auth)


def _node(df: pd.DataFrame) -> Texts:
    return _per_value(df["node"], lambda node: "" if node is None else str(node))


# --- lost events (§3.3.10) -------------------------------------------------------------------


def _lost_events(df: pd.DataFrame, time_format: str) -> list[tuple[int, dict[str, str]]]:
    """(position, printed parts) of each lost-events record, in stream order."""
    lost = lost_events(df)
    if len(lost) == 0:
        return []
    lost = lost.sort_values("position", kind="stable")
    times = format_time(lost["time"], time_format).tolist()
    firsts = format_time(lost["first"], time_format).tolist()
    lasts = format_time(lost["last"], time_format).tolist()
    has_window = (lost["first"].notna() | lost["last"].notna()).tolist()
    records = []
    for i, (position, node, source, cpu, count) in enumerate(zip(
            lost["position"], lost["node"], lost["source"], lost["cpu"], lost["num_events_lost"],
            strict=True)):
        records.append((int(position), {
            "time": times[i],
            "node": "" if pd.isna(node) else str(node),
            "source": str(source),
            "cpu": f"CPU({0 if pd.isna(cpu) else int(cpu)})",
            "count": str(int(count)),
            "window": f" (first: {firsts[i]}, last: {lasts[i]})" if has_window[i] else "",
        }))
    return records


def _interleave(flows: list[R], lost: Iterable[tuple[int, R]]) -> Iterator[R]:
    """Flow records, each lost-events record placed before the flow at its position."""
    done = 0
    for position, record in lost:
        position = min(max(position, done), len(flows))
        yield from flows[done:position]
        done = position
        yield record
    yield from flows[done:]


# --- compact (§3.3) --------------------------------------------------------------------------


def compact(df: pd.DataFrame, *, time_format: str = "StampMilli", node_name: bool = False,
            policy_names: bool = False, numeric: bool = False,
            color: bool = False) -> Iterator[str]:
    """`hubble observe -o compact`: one line per record, "\\n" included; `color`: as with
    `--color always` (lost events stay uncoloured, as hubble prints them)."""
    lines = _compact_lines(df, time_format, node_name, policy_names, numeric, color)
    lost = [(position, escape_text(_compact_lost_line(parts)))
            for position, parts in _lost_events(df, time_format)]
    return _interleave(lines.to_pylist(), lost)


def _compact_lines(df: pd.DataFrame, time_format: str, node_name: bool, policy_names: bool,
                   numeric: bool, color: bool) -> Texts:
    """`<TS>[ [node]]: <SRC> <SRC_ID> <ARROW> <DST> <DST_ID> <TYPE> <VERDICT> (<SUMMARY>)`."""
    source = _join(_host(df, "src", numeric, color), " ", _identity(df, "src", color))
    destination = _join(_host(df, "dst", numeric, color), " ", _identity(df, "dst", color))
    reply = _is_reply(df)
    policy_verdict = _is_policy_verdict(df)
    node = _join(" [", _node(df), "]") if node_name else ""
    return _join(
        _times(df["time"], time_format), node, ": ",
        _choose(reply, destination, source), " ", _direction_arrow(df), " ",
        _choose(reply, source, destination), " ",
        _type_label(df, policy_verdict), " ",
        _verdict_text(df, policy_verdict, policy_names, color), " (", _summary(df, color), ")\n")


def _compact_lost_line(parts: dict[str, str]) -> str:
    """`<TS> EVENTS LOST: <source> CPU(<cpu>) <count>[ (first: <TS>, last: <TS>)]`."""
    return (f"{parts['time']} EVENTS LOST: {parts['source']} {parts['cpu']} {parts['count']}"
            f"{parts['window']}\n")


# --- dict and table: the same cells (§3.4, §3.5) ---------------------------------------------


def _cells(df: pd.DataFrame, time_format: str, node_name: bool, policy_names: bool,
           numeric: bool, color: bool = False) -> dict[str, Texts]:
    """Cells by heading: no identities, no reply swap, summary without parentheses."""
    policy_verdict = _is_policy_verdict(df)
    cells = {"TIMESTAMP": _times(df["time"], time_format)}
    if node_name:
        cells["NODE"] = _node(df)
    return cells | {
        "SOURCE": _host(df, "src", numeric, color),
        "DESTINATION": _host(df, "dst", numeric, color),
        "TYPE": _type_label(df, policy_verdict),
        "VERDICT": _verdict_text(df, policy_verdict, policy_names, color),
        "SUMMARY": _summary(df, color),
    }


def _lost_cells(parts: dict[str, str], node_name: bool) -> dict[str, str]:
    cells = {"TIMESTAMP": parts["time"]}
    if node_name:
        cells["NODE"] = parts["node"] or "-"
    cells |= {
        "SOURCE": parts["source"],
        "DESTINATION": "-",
        "TYPE": "EVENTS LOST",
        "VERDICT": "-",
        "SUMMARY": f"{parts['cpu']} - {parts['count']}{parts['window']}",
    }
    return {heading: escape_text(cell) for heading, cell in cells.items()}


_DICT_SEPARATOR = "------------\n"


def dict_(df: pd.DataFrame, *, time_format: str = "StampMilli", node_name: bool = False,
          policy_names: bool = False, numeric: bool = False,
          color: bool = False) -> Iterator[str]:
    """`hubble observe -o dict`: one block per record, 12 dashes before every block but the
    first; `color`: as with `--color always`."""
    cells = _cells(df, time_format, node_name, policy_names, numeric, color)
    blocks = _join(*(part for heading, column in cells.items()
                     for part in (_dict_label(heading), column, "\n")))
    lost = [(position, _lost_dict_block(_lost_cells(parts, node_name)))
            for position, parts in _lost_events(df, time_format)]
    for i, block in enumerate(_interleave(blocks.to_pylist(), lost)):
        yield block if i == 0 else _DICT_SEPARATOR + block


def _dict_label(heading: str) -> str:
    return f"{heading:>11}: "


def _lost_dict_block(cells: dict[str, str]) -> str:
    """A lost-events block has no DESTINATION line."""
    return "".join(_dict_label(heading) + cell + "\n" for heading, cell in cells.items()
                   if heading != "DESTINATION")


_TABLE_PADDING = 3


def table(df: pd.DataFrame, *, time_format: str = "StampMilli", node_name: bool = False,
          policy_names: bool = False, numeric: bool = False,
          color: bool = False) -> Iterator[str]:
    """`hubble observe -o table`: the header once, then every record, aligned over the whole
    input like Go's tabwriter (a column is its longest cell plus 3 spaces; the last is not
    padded). Nothing at all for no records. Never coloured (`color` is ignored, as by hubble)."""
    cells = _cells(df, time_format, node_name, policy_names, numeric)
    lost = [(position, _lost_cells(parts, node_name))
            for position, parts in _lost_events(df, time_format)]
    if len(df) == 0 and not lost:
        return iter(())
    headings = list(cells)
    widths = [_column_width(heading, cells[heading], [row[heading] for _, row in lost])
              for heading in headings[:-1]]

    def aligned(row: list[str]) -> str:
        padded = (cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        return "".join(padded) + row[-1] + "\n"

    lines = _join(*(pc.utf8_rpad(cells[heading], width, " ")
                    for heading, width in zip(headings, widths, strict=False)),
                  cells[headings[-1]], "\n")
    lost_lines = [(position, aligned([row[heading] for heading in headings]))
                  for position, row in lost]
    return _chain([aligned(headings)], _interleave(lines.to_pylist(), lost_lines))


def table_records(df: pd.DataFrame, *, time_format: str = "StampMilli", node_name: bool = False,
                  policy_names: bool = False, numeric: bool = False) -> Iterator[list[str]]:
    """The cells `table` aligns, one list per record (lost events in place), without the
    header: for writers that align records of several frames together."""
    cells = _cells(df, time_format, node_name, policy_names, numeric)
    rows = [list(row) for row in zip(*(column.to_pylist() for column in cells.values()),
                                     strict=True)]
    lost = [(position, list(_lost_cells(parts, node_name).values()))
            for position, parts in _lost_events(df, time_format)]
    return _interleave(rows, lost)


def _column_width(heading: str, column: Texts, more: list[str]) -> int:
    longest = pc.max(pc.utf8_length(column)).as_py() or 0
    return max(len(heading), longest, *map(len, more)) + _TABLE_PADDING


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest
