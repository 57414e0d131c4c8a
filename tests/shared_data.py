"""The real captures and hubble renderings the tests hold flowlens against.

`SHARED` is a folder laid out as ../shared is (real-flows/, reference-renderings/), unpacked
once from tests/fixtures/shared.tar.xz (see tests/fixtures/README.md for provenance and
licence), so that a clone without ../shared passes its own suite.
`REFERENCE_BIN` is ../shared/bin (the real hubble CLI, flowsrv) or None when it is absent.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT / "tests" / "fixtures" / "shared.tar.xz"


def _unpacked() -> Path:
    digest = hashlib.sha256(ARCHIVE.read_bytes()).hexdigest()[:16]
    target = ROOT / "tests" / "artifacts" / f"shared-{digest}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpacking-"))
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(staging, filter="data")
        try:
            os.rename(staging, target)  # whole or not at all
        except OSError:  # another process unpacked it first
            shutil.rmtree(staging, ignore_errors=True)
    return target


SHARED = _unpacked()


def _reference_bin() -> Path | None:
    """../shared/bin beside the checkout, or beside a folder above it (a git worktree)."""
    for above in ROOT.parents:
        folder = above / "shared" / "bin"
        if (folder / "hubble").exists():
            return folder
    return None


REFERENCE_BIN = _reference_bin()
REFERENCE_BIN_ABSENT = ("the reference binaries of ../shared/bin (hubble v1.19.4, flowsrv) are "
                        "not beside this checkout")
