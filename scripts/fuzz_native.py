"""Fuzz flowlens._native under AddressSanitizer and UndefinedBehaviorSanitizer.

    python scripts/fuzz_native.py [--examples N] [--seed S]

Builds the C extension from this checkout with -fsanitize=address,undefined into a temporary
copy of the package, then feeds it hostile input in a child interpreter with the sanitizer
runtime preloaded: valid responses and jsonpb lines cut, bit-flipped, spliced and padded, and
plain noise, through every entry point (split, split_json, compact_keys, columns, render in
every format, jsonpb). Any out-of-bounds access, use after free or undefined behaviour aborts
the child with the sanitizer's report; the script exits non-zero then. Needs gcc with libasan
and libubsan.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

# Runs in the child, against the sanitized build.
DRIVER = r'''
import random, sys
import orjson
from hypothesis import HealthCheck, given, settings, strategies as st
from flowlens.sources import native as fast
from flowlens.sources.protodict import response_from_dict
from flowlens.synth import generate_lab

module = fast.native(proto=True)
assert module is not None and "fsanitize" in sys.argv[3], "not the sanitized build"
records = list(generate_lab())[:400]
payloads = [response_from_dict(r).SerializeToString() for r in records]
lines = [orjson.dumps(r) for r in records]
index = fast.message_index("observer.GetFlowsResponse")
import flowlens
from flowlens.render.hubble import compact
texts = [line.encode() for line in compact(flowlens.read(sys.argv[4]))][:400]


def mutate(data: bytes, rnd: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        what = rnd.randrange(5)
        at = rnd.randrange(len(data) + 1)
        if what == 0 and data:
            data[at % len(data)] ^= 1 << rnd.randrange(8)
        elif what == 1:
            del data[at:at + rnd.randint(1, 16)]
        elif what == 2:
            data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        elif what == 3:
            data = data[:at]
        else:
            data[at:at] = data[rnd.randrange(len(data) + 1):][:rnd.randint(1, 64)]
    return bytes(data)


def exercise(items: list[bytes], blocks: list[bytes], text: bytes = b"") -> None:
    module.compact_keys(text.decode("utf-8", "replace"))
    module.jsonpb(items, index)
    for json in (False, True):
        shapes = fast.Shapes(json=json)
        for chunk in ([items] if not json else [[b] for b in blocks]):
            run = shapes.splitter.split(chunk) if not json else shapes.splitter.split_json(chunk[0])
            if run is None:
                continue
            run.columns()
            run.shapes()
            run.shape_counts()
            for row in range(min(run.rows, 3)):
                run.source(row)
            new = run.new_shapes
            for shape, _ in new:
                view = tuple(random.choice([None, "x\x1b", "a/b", "", "/", "é", 7, True])
                             for _ in range(20))
                try:
                    shapes.splitter.set_view(shape, view)
                except (TypeError, ValueError):
                    pass
            lost = [(random.randrange(-2, run.rows + 3), random.choice([None, 1, -1]),
                     random.choice([None, "n\r"]), "SRC", random.choice([None, -3]),
                     random.randrange(0, 2**64), None, random.choice([None, 2**62]))]
            table = module.Table(node_name=random.random() < 0.5)
            for fmt in range(3):
                for tf in range(9):
                    shapes.splitter.render(run, fmt, tf, bool(tf & 1), bool(tf & 2),
                                           bool(tf & 4), lost, bool(fmt), table)
            table.finish()


@settings(max_examples=int(sys.argv[1]), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.randoms(use_true_random=False), st.integers(1, 8))
def fuzz(rnd: random.Random, n: int) -> None:
    items = [mutate(rnd.choice(payloads), rnd) if rnd.random() < 0.9
             else bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 64)))
             for _ in range(n)]
    block = b"\n".join(mutate(rnd.choice(lines), rnd) if rnd.random() < 0.7
                       else rnd.choice(lines) for _ in range(n)) + b"\n"
    text = b"".join(mutate(rnd.choice(texts), rnd) if rnd.random() < 0.5 else rnd.choice(texts)
                    for _ in range(n))
    exercise(items, [block, block[:rnd.randrange(len(block) + 1)]], text)


random.seed(int(sys.argv[2]))
fuzz()
exercise(payloads, [b"\n".join(lines) + b"\n"], b"".join(texts))  # and the clean input
print("fuzzed", sys.argv[1], "examples: no sanitizer report")
'''


def _runtime(name: str) -> str:
    path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not os.path.isabs(path):
        raise SystemExit(f"gcc has no {name}: install the sanitizer runtime")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "flowlens"
        shutil.copytree(ROOT / "flowlens", package,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        env = {**os.environ, "CFLAGS": SANITIZE + " -O1 -g", "LDFLAGS": SANITIZE}
        subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", tmp,
                        "--build-temp", str(Path(tmp) / "build"), "--force"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        if not list(package.glob("_native*.so")):
            raise SystemExit("the sanitized build failed")
        preload = f"{_runtime('libasan.so')}:{_runtime('libubsan.so')}"
        child_env = {**os.environ, "PYTHONPATH": tmp, "LD_PRELOAD": preload,
                     "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
                     "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
        done = subprocess.run([sys.executable, "-c", DRIVER, str(args.examples),
                               str(args.seed), SANITIZE, str(ROOT / "samples" / "lab.jsonpb")],
                              env=child_env, cwd=tmp)
    raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
