"""Time buckets for the over-time panels: the step adapts to the window, `--bucket` overrides.

Grafana plots `rate(...[1m])` at a step chosen from the panel's width; a report has no width,
so the step is the smallest "nice" one that keeps a window to at most `TARGET_BUCKETS` buckets.
Buckets start at multiples of their size since the epoch (a 1m bucket starts on the minute).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowlens.errors import UsageError
from flowlens.filters import parse_duration

TARGET_BUCKETS = 60
# More buckets than this make charts unreadable and a report's size grow with the window.
MAX_BUCKETS = 2000

_NICE_STEPS = tuple(pd.Timedelta(s) for s in (
    "1s", "2s", "5s", "10s", "15s", "30s", "1min", "2min", "5min", "10min", "15min", "30min",
    "1h", "2h", "3h", "6h", "12h", "1D", "2D", "7D", "14D", "30D", "90D", "365D",
))


@dataclass(frozen=True)
class Buckets:
    """`count` consecutive time buckets of `size`, the first starting at `start`."""

    start: pd.Timestamp
    size: pd.Timedelta
    count: int

    def starts(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=self.count, freq=self.size, unit="ns")

    def of(self, times: pd.Series) -> np.ndarray:
        """The bucket number of every time; -1 for NaT and times outside the buckets."""
        ns = np.asarray(times.array.asi8, dtype=np.int64)
        # floor((ns - start) / size) without forming ns - start, which overflows int64 for
        # times centuries apart.
        size, start = self.size.value, self.start.value
        index = ns // size - start // size - (ns % size < start % size)
        outside = (ns == np.iinfo(np.int64).min) | (index < 0) | (index >= self.count)
        index[outside] = -1
        return index


def parse_bucket(text: str) -> pd.Timedelta:
    """`--bucket`: a positive duration such as 10s, 1m, 1h; UsageError otherwise."""
    try:
        size = parse_duration(text.strip())
    except ValueError:
        size = None
    if size is None or size < pd.Timedelta(seconds=1):
        raise UsageError(f"invalid value {text!r} for --bucket: want a duration of at least 1s, "
                         "like 10s, 1m or 1h")
    return size


def choose_bucket(start: pd.Timestamp, end: pd.Timestamp) -> pd.Timedelta:
    """The smallest nice step that covers start..end in at most TARGET_BUCKETS buckets."""
    span = end.value - start.value  # in ns (a Timedelta holds 292 years, times 584 apart)
    for step in _NICE_STEPS:
        if span <= step.value * TARGET_BUCKETS:
            return step
    return _NICE_STEPS[-1]


def time_buckets(start: pd.Timestamp, end: pd.Timestamp,
                 size: pd.Timedelta | None = None) -> Buckets:
    """Buckets covering start..end (both included); `size` None adapts it to the window."""
    step = choose_bucket(start, end) if size is None else size
    first = _floor_epoch(start, step)
    count = (end.value - first.value) // step.value + 1
    if count > MAX_BUCKETS:
        span = end.value - start.value
        raise UsageError(f"--bucket {duration_text(step)} makes {count:,} buckets over "
                         f"{duration_text(span)}; use a bucket of at least "
                         f"{duration_text(span // MAX_BUCKETS)}")
    return Buckets(first, step, count)


def buckets_of(df: pd.DataFrame, size: pd.Timedelta | None = None) -> Buckets:
    """Buckets over the frame's own time range."""
    times = df["time"].dropna()
    return window_buckets(times.min() if len(times) else None,
                          times.max() if len(times) else None, size)


def window_buckets(start: pd.Timestamp | None, end: pd.Timestamp | None,
                   size: pd.Timedelta | None = None) -> Buckets:
    """Buckets over start..end; none when the window is empty or unknown."""
    if start is None or end is None or end < start:
        return Buckets(pd.Timestamp(0, tz="UTC"), size or _NICE_STEPS[0], 0)
    return time_buckets(start, end, size)


def _floor_epoch(moment: pd.Timestamp, step: pd.Timedelta) -> pd.Timestamp:
    """The start of the step-sized bucket holding `moment` (the moment itself where that start
    is before the earliest time the frame holds)."""
    floor = moment.value - moment.value % step.value
    return pd.Timestamp(floor if floor >= pd.Timestamp.min.value else moment.value, tz="UTC")


def duration_text(delta: pd.Timedelta | int) -> str:
    """How a duration (or a number of nanoseconds) reads in a report and in messages: 45s, 1m,
    1h30m, 2d."""
    ns = delta if isinstance(delta, int) else delta.value
    seconds = max(ns // 1_000_000_000, 1)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)

