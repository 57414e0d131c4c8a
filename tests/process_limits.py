"""Running a command and measuring its peak memory (for tests of bounded memory)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence


def peak_rss_mb(args: Sequence[str], *, timeout: float, stdin: bytes | None = None,
                env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `args` to the end (killed after `timeout` seconds); its output as text and its peak
    resident memory in MB, measured by the kernel for that process (`wait4`)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryFile() as given:
        given.write(stdin or b"")
        given.seek(0)
        process = subprocess.Popen(args, stdin=given, stdout=out, stderr=err, env=env)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        run = subprocess.CompletedProcess(args, process.returncode,
                                          out.read().decode("utf-8", "replace"),
                                          err.read().decode("utf-8", "replace"))
    return run, usage.ru_maxrss / 1024
