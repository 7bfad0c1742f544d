"""A small circuit breaker: stop calling a failing dependency, probe it later."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Closed until ``failure_threshold`` failures in a row, the first of them at
    least ``min_outage`` ago; then open for ``reset_after``; then half-open,
    letting one probe through: its success closes the breaker, its failure
    opens it again. ``min_outage`` lets a dependency restart (a second or two
    of failures) be ridden out by retries instead of failing fast.
    ``on_change(old, new)`` is called on every transition.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        reset_after: timedelta = timedelta(seconds=5),
        min_outage: timedelta = timedelta(0),
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State, State], None] | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after.total_seconds()
        self.min_outage = min_outage.total_seconds()
        self.clock = clock
        self.on_change = on_change
        self._state: State = "closed"
        self._failures = 0
        self._first_failure = 0.0
        self._opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> State:
        with self._lock:
            if self._state == "open" and self.clock() - self._opened_at >= self.reset_after:
                return "half_open"
            return self._state

    def _move(self, new: State) -> None:
        old, self._state = self._state, new
        if old != new and self.on_change is not None:
            self.on_change(old, new)

    def allow(self) -> bool:
        """May the caller use the dependency now?"""
        seen = self._state
        if seen == "closed":
            # The common case, read without the lock (one attribute read is
            # atomic): a call that races a breaker opening is let through, as
            # it would have been a moment earlier.
            return True
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if self.clock() - self._opened_at < self.reset_after:
                    return False
                self._move("half_open")
            if self._probing:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        seen = self._state
        if seen == "closed" and not self._failures and not self._probing:
            return  # nothing to reset (as if it happened before a racing failure)
        with self._lock:
            self._failures = 0
            self._probing = False
            if self._state != "closed":
                self._move("closed")

    def inconclusive(self) -> None:
        """The probe of a half-open breaker ended without telling whether the
        dependency is back (cancelled, or failed on a connection that was
        already dead): let the next caller probe instead."""
        with self._lock:
            if self._state == "half_open":
                self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._probing = False
            now = self.clock()
            if self._failures == 0:
                self._first_failure = now
            self._failures += 1
            lasting = now - self._first_failure >= self.min_outage
            if self._state == "half_open" or (self._failures >= self.failure_threshold and lasting):
                self._opened_at = now
                self._move("open")
