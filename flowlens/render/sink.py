"""Where output goes, and what a full disk does to it: one line naming the file (OutputError,
exit status 1), and what was there before stays readable.

- `replaced(path)`: a file is written under a temporary name beside it and moved over `path`
  only once complete, so a full disk (or a crash) leaves the file that was there untouched;
- `written(name)`: any other failing write (stdout, a stream) as an OutputError naming it;
- `LineFile`: a file written line by line (`tail --save`), flushed per line, cut back to its
  last whole line when a write fails.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from flowlens.errors import OutputError

STDOUT = "standard output"


@contextmanager
def written(name: str) -> Iterator[None]:
    """OSError from writing `name` (disk full, I/O error, file too large) -> OutputError."""
    try:
        yield
    except BrokenPipeError:
        raise  # the reader left (`| head`): not an error, the command handles it
    except OSError as exc:
        if name == STDOUT:
            _silence_stdout()
        raise OutputError(f"cannot write {name}: {exc.strerror or exc}") from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null: what Python still holds for it would fail again at exit,
    with a message of its own."""
    with suppress(OSError, ValueError, AttributeError):  # (no real stdout: nothing held)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def to_stdout(chunks: Iterable[str]) -> None:
    """Write text to stdout and flush it, OutputError if it cannot be written."""
    with written(STDOUT):
        for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()


def bytes_to_stdout(data: bytes) -> None:
    """Write bytes (text already encoded) to stdout and flush it, as `to_stdout`."""
    with written(STDOUT):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@contextmanager
def replaced(path: str | Path) -> Iterator[str]:
    """A temporary path beside `path` to write to; moved over `path` when the block ends
    without error, removed otherwise (OutputError naming `path` for a failed write). A path
    that is not a regular file (a device, a pipe) is written directly."""
    target = Path(path)
    if target.exists() and not target.is_file():
        with written(str(path)):
            yield str(path)
        return
    with written(str(path)):  # (a folder where no file can be made: /proc)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                    dir=target.parent if str(target.parent) else ".")
    os.close(fd)
    try:
        with written(str(path)):
            os.chmod(temp, _mode(target))
            yield temp
            os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _mode(target: Path) -> int:
    """The permissions the file would have had if opened directly (mkstemp makes 0600)."""
    if target.exists():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class LineFile:
    """A file written line by line, each line flushed as it comes (a killed process loses
    one line at most); a failed write cuts the file back to its last whole line and raises
    OutputError naming it."""

    def __init__(self, path: str, what: str = "") -> None:
        self.path = path
        self.name = f"{what} {path}".strip()
        # Unbuffered: nothing is held back to be written later, after a cut. (OSError if it
        # cannot be opened: the caller names that.)
        self._file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by close()
        self._size = 0

    def write(self, line: bytes) -> None:
        try:
            view = memoryview(line)
            while view:
                view = view[self._file.write(view) or 0:]
        except OSError as exc:
            self._cut_back()
            raise OutputError(f"cannot write {self.name}: {exc.strerror or exc}") from None
        self._size += len(line)

    def _cut_back(self) -> None:
        with suppress(OSError):
            os.truncate(self.path, self._size)

    def close(self) -> None:
        self._file.close()
