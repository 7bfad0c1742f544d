"""What the PostgreSQL backends share to ride out failures (async and sync alike).

The retry loop itself lives in :meth:`AsyncPostgresBackend._execute` (and its
generated sync twin); this module holds its pure parts: which calls may be
repeated after a lost connection, the session timeouts that follow the
deadline, and the errors a call ends with when it gives up.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Final, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ..db.conninfo import with_settings
from ..errors import (
    DatabaseCircuitOpen,
    DatabaseUnavailable,
    DeadlineExceeded,
    PymemError,
    first_line,
    translate,
)
from ..models import AppendResult, NewMessage
from ..resilience.breaker import CircuitBreaker
from ..resilience.retry import CallClock, Failure

E = TypeVar("E", bound=PymemError)

# Calls that leave the same state when repeated, so that a retry after the
# connection broke mid-call (the first attempt may have committed) is safe.
# Appends are among them because each one carries an idempotency key.
# Everything else (delete, restore, purge, extend, add_summary, erase,
# rate_limit, complete/fail/retry of jobs) is retried only when nothing ran.
IDEMPOTENT: Final = frozenset(
    {
        "append",
        "append_many",
        "apply_pii_policy",
        "claim_jobs",  # a lost claim only delays its jobs until the lease ends
        "configure_pii",
        "configure_recall",
        "configure_session",
        "configure_tenant",
        "context",
        "count_terms",  # counting again from the last counted turn is the same
        "export_subject",
        "history",
        "job_stats",
        "last_messages",
        "list_sessions",
        "list_summaries",
        "maintain_if_due",
        "messages_to_embed",
        "metrics",
        "pii_policy",
        "recall",
        "schema_version",
        "session_info",
        "set_embeddings",
        "stats",
        "summary_cadence",
    }
)

# The prefix of idempotency keys the client makes for appends without one.
GENERATED_KEY_PREFIX: Final = "pymem:"


_log = logging.getLogger("pymem.resilience")


def breaker_moved(old: str, new: str) -> None:
    """Log the database breaker's moves: open is an outage, closed its end."""
    level = logging.WARNING if new == "open" else logging.INFO
    _log.log(level, "PostgreSQL circuit breaker %s -> %s", old, new)


def database_breaker() -> CircuitBreaker:
    """The default breaker for PostgreSQL: it opens after five failed attempts in
    a row spanning at least five seconds (a restart is ridden out by retries),
    and lets a probe through every two seconds while open."""
    return CircuitBreaker(
        failure_threshold=5,
        reset_after=timedelta(seconds=2),
        min_outage=timedelta(seconds=5),
    )


@dataclass(slots=True)
class DatabaseStats:
    """What the retry loop saw, read by :class:`~pymem.telemetry.metrics.ClientMetrics`."""

    retries: Counter[str] = field(default_factory=Counter)  # by Failure value
    gave_up: Counter[str] = field(default_factory=Counter)  # by error class name
    fast_failed: int = 0  # calls refused while the breaker was open


def timeout_ms(seconds: float | None) -> int:
    """A deadline as PostgreSQL's statement_timeout (0: none)."""
    return 0 if seconds is None else max(1, math.ceil(seconds * 1000))


def with_session_timeouts(dsn: str, deadline: float | None) -> str:
    """``dsn`` with statement_timeout and lock_timeout set to ``deadline`` at
    connection start (kept with any options already there, such as the
    master key) and a connect timeout no longer than it."""
    ms = timeout_ms(deadline)
    params: dict[str, str | int] = {}
    if deadline is not None and "connect_timeout" not in conninfo_to_dict(dsn):
        params["connect_timeout"] = max(2, math.ceil(deadline))
    return with_settings(dsn, {"statement_timeout": ms, "lock_timeout": ms}, **params)


def call_keys(messages: Sequence[NewMessage]) -> list[str | None]:
    """A key for each message the caller gave none (memory.append's call_key):
    the call's own retries then cannot store it twice."""
    return [
        None if m.idempotency_key is not None else GENERATED_KEY_PREFIX + os.urandom(16).hex()
        for m in messages
    ]


def own_retries(results: list[AppendResult], keys: Sequence[str | None]) -> list[AppendResult]:
    """A call key found stored means the call's own earlier attempt committed:
    for the caller this is the first append, not a duplicate."""
    return [
        replace(r, duplicate=False) if k is not None and r.duplicate else r
        for r, k in zip(results, keys, strict=True)
    ]


def _attempts(call: CallClock) -> str:
    return f"{call.attempts} attempt{'s' if call.attempts != 1 else ''}"


def gave_up(
    name: str, exc: BaseException, failure: Failure, call: CallClock, idempotent: bool
) -> BaseException:
    """The error a call ends with when it stops trying."""
    spent = f"{call.elapsed():.2f} s"
    if failure is Failure.TIMEOUT and isinstance(exc, psycopg.errors.QueryCanceled):
        return _counted(
            DeadlineExceeded(f"memory: {name} did not finish within its deadline ({spent})"),
            call,
        )
    mapped = translate(exc) if isinstance(exc, psycopg.Error) else None
    if failure.lost_server:
        left = call.remaining()
        out_of_time = left is not None and left <= 0.001
        why = "its deadline passed" if out_of_time else "it may not retry"
        if failure is Failure.UNKNOWN and not idempotent:
            why = "the call may have taken effect, so it was not repeated"
        message = (
            f"memory: {name} failed after {_attempts(call)} in {spent} ({why}): {first_line(exc)}"
        )
        if out_of_time:
            return _counted(DeadlineExceeded(message), call)
        hint = mapped.hint if mapped is not None else None
        return _counted(DatabaseUnavailable(message, hint=hint), call)
    if mapped is not None:
        return _counted(mapped, call)
    return exc


def circuit_open(name: str, call: CallClock, last: BaseException | None) -> DatabaseCircuitOpen:
    """The error for a call refused because the database breaker is open."""
    cause = f": {first_line(last)}" if last is not None and str(last) else ""
    return _counted(
        DatabaseCircuitOpen(
            f"memory: {name} refused at once: PostgreSQL failed repeatedly and is not "
            f"answering (after {_attempts(call)}){cause}"
        ),
        call,
    )


def _counted(error: E, call: CallClock) -> E:
    error.attempts = call.attempts
    return error
