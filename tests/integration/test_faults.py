"""Faults mid-stream: backends killed while writers append with idempotency keys."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg

from pymem import errors
from pymem.backends.postgres import PostgresBackend
from pymem.models import NewMessage


def test_terminated_connections_lose_and_duplicate_nothing(dsn: str) -> None:
    writers, appends = 4, 150
    backend = PostgresBackend(dsn, min_size=writers, max_size=writers).open()
    stop = threading.Event()
    kills = 0
    unknown = 0
    lock = threading.Lock()

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
        nonlocal unknown
        seqs = []
        for i in range(appends):
            content = f"w{w}-{i}"
            for _attempt in range(50):
                try:
                    r = backend.append(
                        "acme", "s", NewMessage("user", content, tokens=1, idempotency_key=content)
                    )
                    seqs.append(r.seq)
                    break
                except errors.DatabaseUnavailable:
                    with lock:
                        unknown += 1  # outcome unknown: retry with the same key
            else:  # pragma: no cover - would mean the pool never recovered
                raise AssertionError(f"{content} never acknowledged")
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
    assert kills > 0 and unknown > 0, "the fault schedule must actually hit the writers"
    assert [seq for seq, _ in rows] == list(range(1, total + 1)), "gap-free seq"
    assert len(set(acked)) == total
    assert max(Counter(content for _, content in rows).values()) == 1, "no duplicates"
