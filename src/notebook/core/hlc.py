"""A hybrid logical clock: which of two writes made on different nodes came last.

A stamp is wall time in milliseconds, a counter and the id of the process that made it, written
as fixed-width text so that text order is clock order:

    0001764300000123.00000.3f9a0c1e

- In one process stamps only go forward, even when the wall clock steps back (NTP, a VM
  restored): the clock then keeps its last millisecond and counts up.
- A process that reads a stored stamp (`observe`) moves past it, so a write made after reading
  another node's write is stamped later than it, whatever the two wall clocks say.
- Two processes never make the same stamp (the process id breaks ties), so stamps order every
  write totally and every node chooses the same one.
Writes that never saw each other (both sides of a partition) are ordered by their wall clocks,
within the clocks' disagreement; that is the best anyone can do without a shared clock.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

_COUNTER_LIMIT = 100_000  # five digits; past it the clock borrows the next millisecond


def parse(stamp: str) -> tuple[int, int, str] | None:
    """(milliseconds, counter, process id) of a stamp; None for anything that is not one."""
    parts = stamp.split(".") if isinstance(stamp, str) else []
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1]), parts[2]


def format_stamp(millis: int, counter: int, node: str) -> str:
    return f"{millis:016d}.{counter:05d}.{node}"


class HybridClock:
    """Thread-safe; one per process (see `process_clock`), or one per test."""

    def __init__(self, node: str | None = None, wall: Callable[[], float] = time.time) -> None:
        self.node = node or uuid.uuid4().hex[:8]
        self._wall = wall
        self._millis = 0
        self._counter = 0
        self._lock = threading.Lock()

    def now(self) -> str:
        """A new stamp, later than every stamp this clock made or observed."""
        with self._lock:
            wall = int(self._wall() * 1000)
            if wall > self._millis:
                self._millis, self._counter = wall, 0
            else:
                self._advance()
            return format_stamp(self._millis, self._counter, self.node)

    def observe(self, stamp: str | None) -> None:
        """Move past a stamp read from a stored document (made here or on another node)."""
        parsed = parse(stamp) if stamp else None
        if parsed is None:
            return
        millis, counter, _ = parsed
        with self._lock:
            if (millis, counter) >= (self._millis, self._counter):
                self._millis, self._counter = millis, counter

    def _advance(self) -> None:
        self._counter += 1
        if self._counter >= _COUNTER_LIMIT:
            self._millis, self._counter = self._millis + 1, 0


def stamp_after(stamp: str) -> str:
    """The stamp right after `stamp`, made by no process: what every node computes alike for a
    write that follows given leaves (a conflict merge). "" stays "" (leaves without stamps)."""
    parsed = parse(stamp)
    if parsed is None:
        return stamp
    millis, counter, _ = parsed
    if counter + 1 >= _COUNTER_LIMIT:
        millis, counter = millis + 1, -1
    return format_stamp(millis, counter + 1, "merge")


_PROCESS_CLOCK = HybridClock()


def process_clock() -> HybridClock:
    """The clock every repository of this process shares, so its stamps form one sequence."""
    return _PROCESS_CLOCK
