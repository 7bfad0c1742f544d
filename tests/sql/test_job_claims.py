"""Workers claiming from one queue: every due job is claimed once, across tenants."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg


def _queue(dsn: str, tenants: int, sessions: int) -> set[tuple[str, str, str]]:
    jobs = {
        (f"t{t}", f"s{s}", kind)
        for t in range(tenants)
        for s in range(sessions)
        for kind in ("summarize", "embed")
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.cursor().executemany(
            "insert into memory.jobs (tenant_id, session_id, kind) values (%s, %s, %s)",
            sorted(jobs),
        )
    return jobs


def _claim_all(dsn: str, worker: str, start: threading.Barrier) -> list[tuple[str, str, str]]:
    claimed: list[tuple[str, str, str]] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        start.wait()
        while True:
            rows = conn.execute(
                "select tenant_id, session_id, kind from memory.claim_jobs(%s, max_jobs => 3)",
                (worker,),
            ).fetchall()
            if not rows:
                # Nothing left, or every candidate held by another worker's
                # claim: look once more before stopping.
                rows = conn.execute(
                    "select tenant_id, session_id, kind from memory.claim_jobs(%s, max_jobs => 3)",
                    (worker,),
                ).fetchall()
                if not rows:
                    return claimed
            claimed += [(r[0], r[1], r[2]) for r in rows]


def test_concurrent_workers_claim_each_job_once(dsn: str) -> None:
    jobs = _queue(dsn, tenants=12, sessions=10)
    workers = 6
    start = threading.Barrier(workers)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda w: _claim_all(dsn, f"w{w}", start), range(workers)))
    counts = Counter(job for claimed in results for job in claimed)
    assert set(counts) == jobs  # none left behind
    assert max(counts.values()) == 1  # none claimed twice
    assert sum(1 for claimed in results if claimed) > 1  # the workers really competed
    with psycopg.connect(dsn) as conn:
        left = conn.execute("select count(*) from memory.jobs where status <> 'running'")
        assert left.fetchone() == (0,)


def test_a_job_claimed_by_a_worker_is_not_due_for_another(dsn: str) -> None:
    _queue(dsn, tenants=1, sessions=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        first = conn.execute("select kind from memory.claim_jobs('w1', max_jobs => 5)").fetchall()
        again = conn.execute("select kind from memory.claim_jobs('w2', max_jobs => 5)").fetchall()
    assert sorted(first) == [("embed",), ("summarize",)]
    assert again == []
