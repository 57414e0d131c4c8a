"""The flows frame: its columns (`schema`) and the one builder (`build`)."""

from flowlens.frame.build import (
    build,
    build_all,
    build_lost_events,
    build_table,
    concat,
    empty,
    lost_events,
    set_lost_events,
    take,
)
from flowlens.frame.schema import COLUMNS, LOST_EVENT_COLUMNS, NAMES

__all__ = [
    "COLUMNS", "LOST_EVENT_COLUMNS", "NAMES",
    "build", "build_all", "build_lost_events", "build_table", "concat", "empty", "lost_events",
    "set_lost_events", "take",
]
