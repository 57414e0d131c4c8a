"""flowlens: Hubble flow logs as a typed pandas DataFrame, and the answers the dashboard gives.

    >>> import flowlens
    >>> df = flowlens.read("samples/lab.jsonpb", verdict="DROPPED")
"""

__version__ = "0.1.0"

import os
from typing import TYPE_CHECKING, Any

# grpc's C core would log TLS handshake failures itself; flowlens reports them in one line.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from flowlens.errors import (
    BadInputError,
    FlowlensError,
    InputError,
    RelayError,
    UsageError,
)
from flowlens.frame.build import lost_events
from flowlens.frame.schema import COLUMNS
from flowlens.load import iter_frames, read
from flowlens.sources.batch import ReadReport

if TYPE_CHECKING:
    from flowlens.live import iter_relay, read_relay

__all__ = [
    "COLUMNS",
    "BadInputError",
    "FlowlensError",
    "InputError",
    "ReadReport",
    "RelayError",
    "UsageError",
    "iter_frames",
    "iter_relay",
    "lost_events",
    "read",
    "read_relay",
]


def __getattr__(name: str) -> Any:
    # The relay API loads grpc: only when asked for.
    if name in ("read_relay", "iter_relay"):
        from flowlens import live

        return getattr(live, name)
    raise AttributeError(f"module 'flowlens' has no attribute {name!r}")
