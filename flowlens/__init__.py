"""flowlens: Hubble flow logs as a typed pandas DataFrame, and the answers the dashboard gives.

    >>> import flowlens
    >>> df = flowlens.read("samples/lab.jsonpb", verdict="DROPPED")
"""

from flowlens.errors import BadInputError, FlowlensError, InputError, UsageError
from flowlens.frame.schema import COLUMNS
from flowlens.load import iter_frames, read
from flowlens.sources.batch import ReadReport

__all__ = [
    "COLUMNS",
    "BadInputError",
    "FlowlensError",
    "InputError",
    "ReadReport",
    "UsageError",
    "iter_frames",
    "read",
]
