"""flowlens benchmarks: `python bench/run.py [--flows N]` prints figures and ratios.

Every figure is compared with a baseline measured in the same run (this machine is shared and
noisy): jsonpb -> frame against decoding the same lines with orjson alone.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import orjson
import pyarrow.json as pj
from common import best_of  # bench/ is on sys.path when run as a script

import flowlens
from flowlens.render.hubble import compact
from flowlens.render.jsonpb import encode_response
from flowlens.sources.jsonpb import BLOCKS as JSONPB_BLOCKS
from flowlens.sources.jsonpb import PARSE_OPTIONS
from flowlens.synth import generate_flows


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

        t_arrow, _ = best_of(args.repeat, arrow_decode_only)
        t_orjson, _ = best_of(args.repeat, orjson_decode_only)
        t_jsonpb, frame = best_of(args.repeat, lambda: flowlens.read(jsonpb))
        t_text, _ = best_of(args.repeat, lambda: flowlens.read(text, year=2026))
        ratio = t_jsonpb / t_arrow
        print(f"decode only (Arrow)    {t_arrow:7.3f} s  {n / t_arrow:>10,.0f} lines/s  "
              "(baseline: the decoder flowlens uses)")
        print(f"decode only (orjson)   {t_orjson:7.3f} s  {n / t_orjson:>10,.0f} lines/s  "
              "(for comparison)")
        print(f"jsonpb -> frame        {t_jsonpb:7.3f} s  {n / t_jsonpb:>10,.0f} flows/s  "
              f"{ratio:.2f}x Arrow decode, {t_jsonpb / t_orjson:.2f}x orjson decode  "
              f"(target <= 2.5x: {'ok' if ratio <= 2.5 else 'MISSED'})")
        rate = n / t_text
        print(f"compact text -> frame  {t_text:7.3f} s  {rate:>10,.0f} lines/s  "
              f"(target >= 300,000: {'ok' if rate >= 300_000 else 'MISSED'})")
        per_flow = frame.memory_usage(deep=True).sum() / len(frame)
        print(f"frame memory (deep)    {per_flow:7.1f} bytes/flow  "
              f"(target <= 200: {'ok' if per_flow <= 200 else 'MISSED'})")
        t_render, _ = best_of(args.repeat, lambda: sum(1 for _ in compact(frame)))
        print(f"frame -> compact text  {t_render:7.3f} s  {n / t_render:>10,.0f} lines/s")


if __name__ == "__main__":
    main()
