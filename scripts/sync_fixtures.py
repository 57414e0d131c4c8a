#!/usr/bin/env python3
"""Copy what the tests need from ../shared into tests/fixtures/shared.tar.xz, compressed.

    python scripts/sync_fixtures.py          # rebuild from ../shared (or --shared DIR)
    python scripts/sync_fixtures.py --check  # exit 1 when ../shared differs from the copy

The archive is deterministic (sorted names, no owners or times), so rebuilding from unchanged
files changes nothing; tests/fixtures/MANIFEST.sha256 lists every file and its digest.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("real-flows", "reference-renderings")
ARCHIVE = ROOT / "tests" / "fixtures" / "shared.tar.xz"
MANIFEST = ROOT / "tests" / "fixtures" / "MANIFEST.sha256"


def files(shared: Path) -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (shared / folder).rglob("*") if p.is_file())


def manifest(shared: Path) -> str:
    return "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(shared)}\n"
                   for p in files(shared))


def archive(shared: Path) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files(shared):
            info = tarfile.TarInfo(str(path.relative_to(shared)))
            info.size = path.stat().st_size
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(path.read_bytes()))
    return lzma.compress(raw.getvalue(), preset=9 | lzma.PRESET_EXTREME)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    if not all((args.shared / f).is_dir() for f in FOLDERS):
        print(f"sync_fixtures: no {' or '.join(FOLDERS)} in {args.shared}", file=sys.stderr)
        return 2
    wanted = manifest(args.shared)
    if args.check:
        same = MANIFEST.exists() and MANIFEST.read_text() == wanted
        print("fixtures match ../shared" if same else "fixtures differ from ../shared: "
              "run scripts/sync_fixtures.py")
        return 0 if same else 1
    ARCHIVE.write_bytes(archive(args.shared))
    MANIFEST.write_text(wanted)
    print(f"wrote {ARCHIVE.relative_to(ROOT)} ({ARCHIVE.stat().st_size:,} bytes, "
          f"{wanted.count(chr(10))} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
