"""flowlens's exceptions. The CLI prints any of them as one line and exits non-zero.

    FlowlensError
    ├── InputError          a source cannot be opened or read at all (missing, unreadable gzip,
    │   │                   binary garbage, empty, wrong --input-format)
    │   └── BadInputError   an unreadable line under --strict (exit status 2)
    ├── UsageError          a bad flag value or combination (a malformed filter, ...)
    ├── StoreError          a flow store cannot be written (another writer has it, full disk)
    ├── RelayError          a relay cannot be reached or ended the stream with an error that
    │                       retrying cannot fix (wrong address, TLS failure, permission denied)
    ├── ClusterError        a Dask cluster (--engine dask) cannot be reached, has no workers,
    │                       or lost them or its scheduler
    └── OutputError         a result cannot be written (disk full, I/O error)
"""

from __future__ import annotations


class FlowlensError(Exception):
    """Base of every error flowlens raises on purpose."""

    exit_code = 1


class InputError(FlowlensError):
    """A source cannot be read."""


class BadInputError(InputError):
    """A line that cannot be read, under --strict."""

    exit_code = 2


class UsageError(FlowlensError):
    """A flag value or combination that cannot be used."""

    exit_code = 2


class StoreError(FlowlensError):
    """A flow store cannot be written: another process writes it, or the disk refuses."""


class RelayError(FlowlensError):
    """A relay cannot be reached, or answered with an error retrying cannot fix."""


class ClusterError(FlowlensError):
    """A Dask cluster cannot be reached, has no workers, or lost them."""


class OutputError(FlowlensError):
    """A result cannot be written: the disk is full, the device failed."""
