"""flowlens benchmarks: `python bench/run.py [--flows N]` prints figures and ratios.

Every figure is compared with a baseline measured in the same run (this machine is shared and
noisy): jsonpb -> frame against DuckDB's `read_json` of the same file into Arrow (target: no
slower; DuckDB only as a baseline: `pip install duckdb`, the `bench` extra), decoding the same
lines with Arrow or orjson alone, and flowlens's own Python decoders (the C fast path off).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow.json as pj
from common import best_of  # bench/ is on sys.path when run as a script

import flowlens
from flowlens.render.hubble import compact
from flowlens.render.jsonpb import encode_response
from flowlens.sources import jsonpb as jsonpb_reader
from flowlens.sources import text as text_reader
from flowlens.sources.jsonpb import BLOCKS as JSONPB_BLOCKS
from flowlens.sources.jsonpb import PARSE_OPTIONS
from flowlens.synth import generate_flows


def _python_only(read: Any) -> Any:
    """`read` with the C fast path off (the Python decoders, which stay the reference)."""
    def run() -> Any:
        saved = jsonpb_reader.native, text_reader.native
        jsonpb_reader.native = text_reader.native = lambda: None  # type: ignore[assignment]
        try:
            return read()
        finally:
            jsonpb_reader.native, text_reader.native = saved
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.flows

    with tempfile.TemporaryDirectory() as tmp:
        jsonpb = Path(tmp) / "flows.jsonpb"
        text = Path(tmp) / "flows.compact.txt"
        jsonpb.write_text("".join(encode_response(r) + "\n" for r in generate_flows(n)))
        df = flowlens.read(jsonpb)
        text.write_text("".join(compact(df)))
        print(f"flows: {len(df):,}  jsonpb: {jsonpb.stat().st_size / 1e6:.1f} MB  "
              f"compact: {text.stat().st_size / 1e6:.1f} MB")

        def orjson_decode_only() -> int:
            with open(jsonpb, "rb") as f:
                return sum(1 for line in f if orjson.loads(line))

        def arrow_decode_only() -> int:
            # Exactly the decoding flowlens's jsonpb reader does, and nothing else.
            with open(jsonpb, "rb") as f:
                return len(pj.read_json(f, read_options=JSONPB_BLOCKS,
                                        parse_options=PARSE_OPTIONS))

        def duckdb_read_json() -> int:
            import duckdb

            query = f"select * from read_json('{jsonpb}', format='newline_delimited')"
            return int(duckdb.connect().sql(query).to_arrow_table().num_rows)

        t_duckdb = None
        if importlib.util.find_spec("duckdb") is not None:
            t_duckdb, _ = best_of(args.repeat, duckdb_read_json)
        t_arrow, _ = best_of(args.repeat, arrow_decode_only)
        t_orjson, _ = best_of(args.repeat, orjson_decode_only)
        t_jsonpb, frame = best_of(args.repeat, lambda: flowlens.read(jsonpb))
        t_python, _ = best_of(args.repeat, _python_only(lambda: flowlens.read(jsonpb)))
        t_text, _ = best_of(args.repeat, lambda: flowlens.read(text, year=2026))
        t_text_python, _ = best_of(args.repeat,
                                   _python_only(lambda: flowlens.read(text, year=2026)))
        if t_duckdb is None:
            print("DuckDB read_json      absent (pip install duckdb): no DuckDB baseline")
        else:
            print(f"DuckDB read_json       {t_duckdb:7.3f} s  {n / t_duckdb:>10,.0f} lines/s  "
                  "(baseline: the same file into an Arrow table)")
        print(f"decode only (Arrow)    {t_arrow:7.3f} s  {n / t_arrow:>10,.0f} lines/s")
        print(f"decode only (orjson)   {t_orjson:7.3f} s  {n / t_orjson:>10,.0f} lines/s")
        versus = "" if t_duckdb is None else \
            f"{t_jsonpb / t_duckdb:.2f}x DuckDB (target <= 1.0: " \
            f"{'ok' if t_jsonpb <= t_duckdb else 'MISSED'}), "
        print(f"jsonpb -> frame        {t_jsonpb:7.3f} s  {n / t_jsonpb:>10,.0f} flows/s  "
              f"{versus}{t_jsonpb / t_arrow:.2f}x Arrow decode, {t_jsonpb / t_orjson:.2f}x "
              "orjson decode")
        print(f"  Python decoders only {t_python:7.3f} s  {n / t_python:>10,.0f} flows/s  "
              f"(the fast path is {t_python / t_jsonpb:.1f}x faster)")
        rate = n / t_text
        print(f"compact text -> frame  {t_text:7.3f} s  {rate:>10,.0f} lines/s  "
              f"(target >= 300,000: {'ok' if rate >= 300_000 else 'MISSED'})")
        print(f"  Python regex only    {t_text_python:7.3f} s  {n / t_text_python:>10,.0f} "
              "lines/s")
        per_flow = frame.memory_usage(deep=True).sum() / len(frame)
        print(f"frame memory (deep)    {per_flow:7.1f} bytes/flow  "
              f"(target <= 200: {'ok' if per_flow <= 200 else 'MISSED'})")
        t_render, _ = best_of(args.repeat, lambda: sum(1 for _ in compact(frame)))
        print(f"frame -> compact text  {t_render:7.3f} s  {n / t_render:>10,.0f} lines/s")


if __name__ == "__main__":
    main()
