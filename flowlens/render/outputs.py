"""Writing frames to files: `.parquet`, `.csv`, `.jsonl` (frame rows), `.jsonpb` (for hubble)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flowlens.errors import UsageError
from flowlens.render.jsonpb import encode_response
from flowlens.render.records import responses

OUTPUT_SUFFIXES = (".parquet", ".csv", ".jsonl", ".jsonpb")
# Key in the Parquet file's metadata holding the lost-event records as JSON.
LOST_EVENTS_METADATA = b"flowlens.lost_events"


def output_kind(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UsageError(
            f"{path}: unknown output type {suffix or '(none)'}: "
            f"use one of {', '.join(OUTPUT_SUFFIXES)}")
    return suffix[1:]


def jsonpb_lines(df: pd.DataFrame, raw: list[dict[str, Any]] | None = None) -> Iterator[str]:
    """Hubble's `-o jsonpb` lines: from the original records when kept, else rebuilt from rows."""
    for rec in responses(df, raw):
        yield encode_response(rec) + "\n"


def write_lines(lines: Iterable[str], out: IO[str]) -> int:
    n = 0
    for line in lines:
        out.write(line)
        n += 1
    return n


def write_frame(df: pd.DataFrame, path: str | Path,
                raw: list[dict[str, Any]] | None = None) -> None:
    """Write one frame in the format the path's suffix names."""
    kind = output_kind(path)
    lost = df.attrs.get("lost_events", [])
    flows = df.copy()
    flows.attrs = {}
    if kind == "parquet":
        table = pa.Table.from_pandas(flows, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[LOST_EVENTS_METADATA] = json.dumps(lost).encode()
        pq.write_table(table.replace_schema_metadata(meta), path)
    elif kind == "csv":
        flows.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    elif kind == "jsonl":
        flows.to_json(path, orient="records", lines=True, date_format="iso", date_unit="ns")
    else:
        with open(path, "w", encoding="utf-8") as out:
            write_lines(jsonpb_lines(df, raw), out)


def lost_events_from_parquet(path: str | Path) -> list[dict[str, Any]]:
    meta = pq.read_schema(path).metadata or {}
    value = meta.get(LOST_EVENTS_METADATA)
    return json.loads(value) if value else []
