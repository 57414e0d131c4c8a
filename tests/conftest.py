"""The suite runs against the C extension built from this checkout's sources.

`pip install -e .` (scripts/test) builds flowlens._native in place. A checkout used without
installing it (PYTHONPATH), or whose C sources changed since, gets it built here, once, before
any test imports flowlens: an extension module cannot be reloaded in a running interpreter.
A failed build is kept for tests/test_native.py to report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PROBE = "from flowlens.sources.native import native; raise SystemExit(native() is None)"
NATIVE_BUILD_ERROR: str | None = None


def _ensure_native() -> None:
    global NATIVE_BUILD_ERROR
    if os.environ.get("FLOWLENS_NATIVE") == "0" or not (ROOT / "setup.py").exists():
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    def usable() -> bool:
        return subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env).returncode == 0

    if usable():
        return
    built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT,
                           env=env, capture_output=True, text=True)
    if not usable():  # (the extension is optional: a failed build still exits with 0)
        NATIVE_BUILD_ERROR = (built.stdout + built.stderr)[-3000:]


_ensure_native()
