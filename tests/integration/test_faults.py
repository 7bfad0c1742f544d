"""Faults mid-stream: backends killed while writers append.

The appends carry no idempotency key: the backend makes one for each call
and retries what a lost connection interrupted, so no error reaches the
writers and nothing is stored twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg

from pymem.backends.postgres import PostgresBackend
from pymem.models import NewMessage
from pymem.resilience import RetryPolicy


def test_terminated_connections_lose_and_duplicate_nothing(dsn: str) -> None:
    writers, appends = 4, 150
    # A storm (half the connections killed every 5-30 ms) is harsher than any
    # restart: give each append a minute instead of the default 10 s.
    backend = PostgresBackend(
        dsn, min_size=writers, max_size=writers, retry=RetryPolicy(deadline=60.0)
    ).open()
    stop = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        rng = random.Random(7)
        with psycopg.connect(dsn, autocommit=True) as admin:
            while not stop.is_set():
                time.sleep(rng.uniform(0.005, 0.03))
                row = admin.execute(
                    "select count(pg_terminate_backend(a.pid)) from pg_stat_activity as a "
                    "where a.datname = current_database() and a.pid <> pg_backend_pid() "
                    "and a.backend_type = 'client backend' and random() < 0.5"
                ).fetchone()
                kills += row[0] if row else 0

    def writer(w: int) -> list[int]:
        seqs = []
        for i in range(appends):
            result = backend.append("acme", "s", NewMessage("user", f"w{w}-{i}", tokens=1))
            assert not result.duplicate  # the backend's own retries are not duplicates
            seqs.append(result.seq)
        return seqs

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with ThreadPoolExecutor(writers) as pool:
            acked = [s for chunk in pool.map(writer, range(writers)) for s in chunk]
    finally:
        stop.set()
        thread.join()
        backend.close()

    total = writers * appends
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("select seq, content from memory.messages order by seq").fetchall()
    retried = backend.database_stats.retries
    assert kills > 0 and retried["unknown"] > 0, "the fault schedule must hit appends in flight"
    assert [seq for seq, _ in rows] == list(range(1, total + 1)), "gap-free seq"
    assert len(set(acked)) == total
    assert max(Counter(content for _, content in rows).values()) == 1, "no duplicates"
