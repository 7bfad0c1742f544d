"""Retries within a deadline: which failures may be retried, how long to wait
between attempts, and when to give up.

Every call to PostgreSQL has a deadline (10 s unless the store or the call
says otherwise, see :func:`deadline`). A failed attempt is retried when that
is safe and time is left:

- ``NOT_RUN``: nothing reached the server (connecting failed, the pool had no
  connection, the server is starting up, a pooled connection was already
  dead): always safe;
- ``ROLLED_BACK``: the server rolled the statement back (serialization
  failure, deadlock): always safe;
- ``UNKNOWN``: the connection broke while the statement ran, so it may have
  committed: safe only for idempotent calls (reads, settings, and appends,
  which always carry an idempotency key);
- ``TIMEOUT`` (the deadline itself) and ``FINAL`` (an answer, such as bad
  input) are never retried.

Waits grow exponentially with full jitter, capped, and never run past the
deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import Final

import psycopg


class Failure(Enum):
    """What a failed attempt says about whether it may be tried again."""

    NOT_RUN = "not_run"
    ROLLED_BACK = "rolled_back"
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"
    FINAL = "final"

    @property
    def lost_server(self) -> bool:
        """The server could not be reached or dropped the connection (the breaker counts these)."""
        return self in (Failure.NOT_RUN, Failure.UNKNOWN)


_ROLLED_BACK: Final = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_TIMEOUT: Final = frozenset({"57014", "55P03"})  # statement_timeout, lock_timeout
# The server refused the connection before running anything: starting up,
# shutting down, in recovery, or out of connection slots.
_REFUSED: Final = frozenset({"57P03", "53300", "53400"})
# The connection ended under the statement: a lost link, an administrator's
# or a crash's shutdown, a terminated backend.
_LOST: Final = frozenset({"57P01", "57P02", "57P05"})


def classify(exc: BaseException, *, sent: bool) -> Failure:
    """The kind of failure ``exc`` is; ``sent`` tells whether the statement had
    been handed to the connection when it happened."""
    from psycopg_pool import PoolTimeout

    if isinstance(exc, PoolTimeout):
        return Failure.NOT_RUN
    if not isinstance(exc, psycopg.Error):
        return Failure.FINAL
    state = exc.sqlstate or ""
    if state in _ROLLED_BACK:
        return Failure.ROLLED_BACK
    if state in _TIMEOUT:
        return Failure.TIMEOUT
    if state in _REFUSED:
        return Failure.NOT_RUN
    lost = state in _LOST or state.startswith("08")
    if lost or (not state and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)):
        return Failure.UNKNOWN if sent else Failure.NOT_RUN
    return Failure.FINAL


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a call is retried: its deadline and the waits between attempts.

    ``deadline`` is in seconds (None: no deadline); the wait before attempt
    n + 1 is uniform in [0, min(max_delay, first_delay * 2 ** (n - 1))]
    ("full jitter"), so that clients that failed together do not retry
    together. ``max_attempts`` bounds the attempts even with time left.
    """

    deadline: float | None = 10.0
    first_delay: float = 0.025
    max_delay: float = 1.0
    max_attempts: int = 50

    def __post_init__(self) -> None:
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError(f"deadline must be positive or None, got {self.deadline}")
        if self.first_delay < 0 or self.max_delay < self.first_delay or self.max_attempts < 1:
            raise ValueError("need 0 <= first_delay <= max_delay and max_attempts >= 1")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        return rand() * min(self.max_delay, self.first_delay * 2.0 ** (attempt - 1))

    @staticmethod
    def may_retry(failure: Failure, idempotent: bool) -> bool:
        """Whether a failure of this kind may be tried again."""
        if failure in (Failure.NOT_RUN, Failure.ROLLED_BACK):
            return True
        return failure is Failure.UNKNOWN and idempotent


_UNSET: Final = object()
_SCOPED: ContextVar[object] = ContextVar("pymem_deadline", default=_UNSET)


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Give the calls made inside this block ``seconds`` each (None: no deadline).

    >>> with deadline(2.0):
    ...     chat.append("user", "hi")  # retried for at most 2 s, then DeadlineExceeded
    """
    if seconds is not None and seconds <= 0:
        raise ValueError(f"deadline must be positive or None, got {seconds}")
    token = _SCOPED.set(seconds)
    try:
        yield
    finally:
        _SCOPED.reset(token)


def scoped_deadline(default: float | None) -> float | None:
    """The deadline of a call made now: the innermost :func:`deadline` block's, or ``default``."""
    found = _SCOPED.get()
    return default if found is _UNSET else found  # type: ignore[return-value]


class CallClock:
    """The attempts of one call against its deadline."""

    __slots__ = ("attempts", "clock", "ends_at", "policy", "started")

    def __init__(
        self,
        policy: RetryPolicy,
        seconds: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.started = clock()
        self.ends_at = None if seconds is None else self.started + seconds
        self.attempts = 0

    def remaining(self) -> float | None:
        """Seconds left (never below zero); None without a deadline."""
        if self.ends_at is None:
            return None
        return max(0.0, self.ends_at - self.clock())

    def elapsed(self) -> float:
        return self.clock() - self.started

    def next_delay(
        self,
        failure: Failure,
        idempotent: bool,
        *,
        at_once: bool = False,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """The wait before the next attempt, or None to give up now. ``at_once``
        retries without waiting (a pooled connection found dead: the next one
        may be fine, and the pool blocks when none is)."""
        if not self.policy.may_retry(failure, idempotent):
            return None
        if self.attempts >= self.policy.max_attempts:
            return None
        wait = 0.0 if at_once else self.policy.delay(self.attempts, rand)
        left = self.remaining()
        if left is not None and wait >= left:
            return None
        return wait
