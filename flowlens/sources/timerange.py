"""A window of flow times, as readers prune by it (no heavy imports: the CLI's start needs it)."""

from __future__ import annotations

from dataclasses import dataclass


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
