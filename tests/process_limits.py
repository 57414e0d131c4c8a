"""Running a command: its peak memory (tests of bounded memory), on a full disk (faults)."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# exec keeps the peak of the image it replaces, and a child starts as a copy of the test
# process (hundreds of MB late in a run): its own peak would read as at least that. So the
# command runs as the child of a small launcher, which reports the peak of that child.
_LAUNCHER = """
import os, signal, sys, threading
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[3], sys.argv[3:])
timer = threading.Timer(float(sys.argv[2]), os.kill, (pid, signal.SIGKILL))
timer.start()
_, status, usage = os.wait4(pid, 0)
timer.cancel()
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:  # end as the command ended: by its signal
    if -code not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
os._exit(code)
"""


def peak_rss_mb(args: Sequence[str], *, timeout: float, stdin: bytes | None = None,
                env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `args` to the end (killed after `timeout` seconds); its output as text and its peak
    resident memory in MB, measured by the kernel for that process (`wait4`)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryFile() as given, tempfile.NamedTemporaryFile() as peak:
        given.write(stdin or b"")
        given.seek(0)
        process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, peak.name, str(timeout), *args], stdin=given,
            stdout=out, stderr=err, env=env, start_new_session=True)
        # The launcher kills the command after `timeout`; this is for a launcher that hangs.
        timer = threading.Timer(timeout + 30, os.killpg, (process.pid, signal.SIGKILL))
        timer.start()
        try:
            process.wait()
        finally:
            timer.cancel()
        measured = peak.read().decode()
        out.seek(0)
        err.seek(0)
        run = subprocess.CompletedProcess(args, process.returncode,
                                          out.read().decode("utf-8", "replace"),
                                          err.read().decode("utf-8", "replace"))
    return run, int(measured or 0) / 1024


class SmallDisk:
    """A folder where only `size` bytes fit: a tmpfs of that size where this process may mount
    one (root), else a folder whose files the command cannot grow beyond `size` bytes
    (RLIMIT_FSIZE: a write past it fails with EFBIG, "File too large", as one past a full
    disk fails with ENOSPC)."""

    def __init__(self, folder: Path, size: int) -> None:
        self.path = folder
        self.size = size
        folder.mkdir(parents=True, exist_ok=True)
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                str(folder)], capture_output=True, check=False) \
            if os.geteuid() == 0 and shutil.which("mount") else None
        self.mounted = mount is not None and mount.returncode == 0

    def run(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`args` run to the end, with the folder as full as it gets."""
        limit = None if self.mounted else self._limit
        return subprocess.run(args, capture_output=True, text=True, timeout=300,
                              preexec_fn=limit, check=False, **kwargs)

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, preexec_fn=None if self.mounted else self._limit,
                                **kwargs)

    def _limit(self) -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.size, self.size))

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.path)], check=False)
