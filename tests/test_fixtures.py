"""The compressed copy of ../shared the tests read is whole, and the same as ../shared when present."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from shared_data import ROOT, SHARED


def test_unpacked_fixtures_match_their_manifest() -> None:
    listed = (ROOT / "tests" / "fixtures" / "MANIFEST.sha256").read_text().splitlines()
    assert len(listed) > 30
    for line in listed:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((SHARED / name).read_bytes()).hexdigest() == digest, name


def test_fixtures_are_in_sync_with_shared_when_it_is_beside_the_checkout() -> None:
    if not (ROOT.parent / "shared" / "real-flows").is_dir():
        return  # a user's clone: the manifest test above is the whole check
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_fixtures.py"),
                             "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
