"""Writers for the concurrency tests of tests/sql: append until told to stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


def append_until(dsn: str, session: str, stop: threading.Event) -> tuple[list[int], float]:
    """Append one-token turns to acme/``session`` until ``stop``; the seqs acknowledged
    and the slowest append in seconds."""
    acked: list[int] = []
    worst = 0.0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            started = time.perf_counter()
            row = conn.execute(
                "select seq from memory.append('acme', %s, 'user', 'turn', 1)", (session,)
            ).fetchone()
            worst = max(worst, time.perf_counter() - started)
            assert row is not None
            acked.append(row[0])
    return acked, worst


@contextmanager
def stopping(stop: threading.Event) -> Iterator[None]:
    """Stop the writers however the block ends (else the pool waits for them forever)."""
    try:
        yield
    finally:
        stop.set()
