"""The one polling helper of the test suite."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 20.0, interval: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    Returns the last (falsy) result when `timeout` seconds pass first, so a test asserts on the
    outcome (`assert wait_until(...)`), never on the time taken. The loop always ends.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Like wait_until, but fail with `what` in the message when the condition never holds."""
    result = wait_until(condition, timeout, interval)
    if not result:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
    return result
