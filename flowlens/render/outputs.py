"""Writing frames to files: `.parquet`, `.csv`, `.jsonl` (frame rows), `.jsonpb` (for hubble)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow.parquet as pq

from flowlens.errors import UsageError
from flowlens.frame.arrow import to_table
from flowlens.render.jsonpb import encode_response
from flowlens.render.records import responses
from flowlens.render.sink import replaced
from flowlens.sources.parquet import LOST_EVENTS_METADATA

OUTPUT_SUFFIXES = (".parquet", ".csv", ".jsonl", ".jsonpb")


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
    """Write one frame in the format the path's suffix names; whole or not at all (OutputError
    naming the file when the disk is full: what was there before is left as it was)."""
    kind = output_kind(path)
    lost = df.attrs.get("lost_events", [])
    flows = df.copy()
    flows.attrs = {}
    with replaced(path) as temp:
        if kind == "parquet":
            table = to_table(flows).replace_schema_metadata(
                {LOST_EVENTS_METADATA: json.dumps(lost)})
            pq.write_table(table, temp)
        elif kind == "csv":
            flows.to_csv(temp, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        elif kind == "jsonl":
            flows.to_json(temp, orient="records", lines=True, date_format="iso",
                          date_unit="ns")
        else:
            with open(temp, "w", encoding="utf-8") as out:
                write_lines(jsonpb_lines(df, raw), out)

