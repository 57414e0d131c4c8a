"""A window of flow times, as readers prune by it (no heavy imports: the CLI's start needs it)."""

from __future__ import annotations

from dataclasses import dataclass

from flowlens.errors import UsageError

# The years whose every instant the frame's times (int64 nanoseconds) hold.
MIN_YEAR, MAX_YEAR = 1678, 2261
TIME_RANGE = "1677-09-21 to 2262-04-11"  # what datetime64[ns] holds


def check_year(year: int | str | None) -> int | None:
    """--year as a number: UsageError for one that is not a whole number, or is outside what
    the frame's times hold."""
    if year is None:
        return None
    text = str(year).strip()
    if not text.removeprefix("-").isdigit() or not MIN_YEAR <= int(text) <= MAX_YEAR:
        raise UsageError(f"invalid value {str(year)!r} for --year: want a year from {MIN_YEAR} "
                         f"to {MAX_YEAR}")
    return int(text)


@dataclass(frozen=True)
class TimeRange:
    """A window of flow times in integer nanoseconds since the epoch (UTC); None = open."""

    since_ns: int | None = None
    until_ns: int | None = None

    def overlaps(self, low: int | None, high: int | None) -> bool:
        """Can flows with times in [low, high] (None: unknown) fall in the window?"""
        if low is None or high is None:
            return True
        return (self.since_ns is None or high >= self.since_ns) and \
            (self.until_ns is None or low <= self.until_ns)

    @property
    def is_open(self) -> bool:
        return self.since_ns is None and self.until_ns is None


ALL_TIME = TimeRange()  # no window: every flow
