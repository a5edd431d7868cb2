"""Waiting in tests for what another process, thread or event loop does: one poll loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "", *,
               interval: float = 0.05, tick: Callable[[], Any] | None = None) -> Any:
    """Call `predicate` until it returns something truthy, and return that; AssertionError
    naming `what` after `timeout` seconds. `tick` runs before each call (the plugin's tests
    pass Qt's processEvents). A guard against hanging, not a speed limit."""
    deadline = time.monotonic() + timeout
    while True:
        if tick is not None:
            tick()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)
