"""``pymem worker``: drains the job queue (digests and embeddings).

Appends never wait for a summarizer or an embedding model: they only queue a
job (one row per session and kind). Workers claim jobs under a lease with
``for update skip locked``, so any number of them can run; a worker that dies
mid-job loses its lease and the job comes back to another. Failures are
retried with exponential backoff and parked after ``max_attempts``. A
running worker also runs maintenance (``memory.maintain_in_steps``) once per
``maintain_every``, whichever instance gets there first.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from ..backends.postgres import PostgresBackend
from ..client import Memory
from ..context.embed import Embedder
from ..context.summarize import ExtractiveSummarizer, Summarizer
from ..context.tokens import TokenCounter
from ..correlation import correlation
from ..errors import PymemError
from ..models import ClaimedJob, MaintenanceRun, NewSummary, StoredMessage, Summary
from ..tier.cache import CachedBackend
from .wakeups import listening

log = logging.getLogger("pymem.worker")


def _default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident() % 10000}"


class Worker:
    """Processes summarize and embed jobs of one PostgreSQL database."""

    def __init__(
        self,
        memory: Memory | PostgresBackend,
        *,
        name: str | None = None,
        summarizer: Summarizer | None = None,
        embedder: Embedder | None = None,
        lease: timedelta = timedelta(minutes=5),
        max_attempts: int = 5,
        rollup_fanout: int = 4,
        digest_ratio: float = 0.2,
        max_digest_tokens: int = 300,
        maintain_every: timedelta | None = timedelta(hours=1),
    ) -> None:
        store = memory.backend if isinstance(memory, Memory) else memory
        # Digests and embeddings are written through the store, so that with
        # the Redis tier the cached windows of the session are invalidated;
        # the job queue is read from PostgreSQL itself.
        self.store: PostgresBackend | CachedBackend
        if isinstance(store, CachedBackend):
            self.store, self.backend = store, store.backend
        elif isinstance(store, PostgresBackend):
            self.store = self.backend = store
        else:
            raise PymemError(
                "pymem: the worker needs a PostgreSQL store (Memory.connect)",
                hint="in-memory and Redis-only stores have no job queue",
            )
        counter: TokenCounter | None = memory.counter if isinstance(memory, Memory) else None
        self.counter = counter or ExtractiveSummarizer().counter
        self.metrics = memory.metrics if isinstance(memory, Memory) else None
        self.tracing = memory.tracing if isinstance(memory, Memory) else None
        self.name = name or _default_name()
        self.summarizer = summarizer or ExtractiveSummarizer(self.counter)
        self.embedder = embedder
        self.lease = lease
        self.max_attempts = max_attempts
        self.fanout = rollup_fanout
        self.digest_ratio = digest_ratio
        self.max_digest_tokens = max_digest_tokens
        self.maintain_every = maintain_every
        self._maintenance_checked = -float("inf")

    @property
    def kinds(self) -> tuple[str, ...]:
        if self.embedder:
            return ("summarize", "embed", "count_terms")
        return ("summarize", "count_terms")

    # -- the loop --------------------------------------------------------------

    def run_once(self, max_jobs: int = 4) -> int:
        """Claim and process up to ``max_jobs`` due jobs; returns how many were claimed."""
        jobs = self.backend.claim_jobs(
            self.name, kinds=self.kinds, max_jobs=max_jobs, lease=self.lease
        )
        for job in jobs:
            self.process(job)
        return len(jobs)

    def drain(self, max_rounds: int = 100_000) -> int:
        """Process jobs until none is due; returns how many were processed."""
        done = 0
        for _ in range(max_rounds):
            claimed = self.run_once()
            if not claimed:
                break
            done += claimed
        return done

    def run_forever(
        self, *, poll: timedelta = timedelta(seconds=5), stop: threading.Event | None = None
    ) -> None:
        """Process jobs as they come: woken by NOTIFY pymem_jobs (from every node of
        a Citus cluster, see :mod:`pymem.ops.wakeups`), polling as a fallback."""
        stop = stop or threading.Event()
        with listening(self.backend.dsn) as wakeups:
            while not stop.is_set():
                try:
                    self.drain()
                    self.maintain_if_due()
                except PymemError as exc:  # e.g. the database restarting
                    log.warning("worker %s: %s", self.name, exc)
                wakeups.wait(poll.total_seconds())

    def maintain_if_due(self) -> MaintenanceRun | None:
        """Run maintenance when due (``maintain_every``) and no other instance runs it.

        The database decides (``memory.maintain_in_steps``), so any number of
        workers maintain once per period; this process asks at most every
        ``min(maintain_every, 5 minutes)``. Returns None when it did not ask.
        """
        if self.maintain_every is None:
            return None
        now = time.monotonic()
        if now - self._maintenance_checked < min(self.maintain_every.total_seconds(), 300.0):
            return None
        self._maintenance_checked = now
        with correlation():
            run = self.backend.maintain_if_due(self.maintain_every)
            if run.ran:
                log.info(
                    "worker %s maintained: %d partitions created, %d expired sessions purged, "
                    "%d turns past retention removed",
                    self.name,
                    len(run.partitions_created),
                    run.sessions_expired,
                    run.messages_removed,
                )
        return run

    def process(self, job: ClaimedJob) -> str:
        """Do one claimed job; returns its new status (done, queued or parked)."""
        started = time.perf_counter()
        with correlation():  # the job's errors and log lines share one id
            if self.tracing is None:
                status = self._process(job)
            else:
                attributes = {
                    "pymem.tenant": job.tenant_id,
                    "gen_ai.conversation.id": job.session_id,
                    "pymem.job.kind": job.kind,
                    "pymem.job.attempt": job.attempts,
                }
                # A child of the append that queued the job, when it was traced.
                with self.tracing.span(f"{job.kind}_job", attributes, job.trace_context) as span:
                    status = self._process(job)
                    span.set_attribute("pymem.job.status", status)
        if self.metrics is not None:
            elapsed = time.perf_counter() - started
            self.metrics.jobs.labels(job.kind, status).observe(elapsed)
        return status

    def _process(self, job: ClaimedJob) -> str:
        try:
            if job.kind == "summarize":
                self._summarize(job.tenant_id, job.session_id)
            elif job.kind == "embed" and self.embedder is not None:
                self._embed(job.tenant_id, job.session_id, self.embedder)
            elif job.kind == "count_terms":
                # In chunks, each its own short transaction.
                while self.backend.count_terms(job.tenant_id, job.session_id):
                    pass
            return self.backend.complete_job(job, self.name)
        except Exception as exc:  # any failure is recorded on the job, never lost
            # The error's type only: an upstream error's text may echo a prompt.
            # The whole text is kept on the job (memory.job_stats, fail_job).
            name = type(exc).__name__
            log.warning("job %s/%s/%s failed: %s", job.tenant_id, job.session_id, job.kind, name)
            return self.backend.fail_job(
                job, self.name, f"{name}: {exc}", max_attempts=self.max_attempts
            )

    # -- summaries -------------------------------------------------------------

    def _digest_budget(self, tokens: int) -> int:
        return max(20, min(self.max_digest_tokens, int(tokens * self.digest_ratio)))

    def _summarize(self, tenant: str, session: str) -> None:
        cadence = self.backend.summary_cadence(tenant, session)
        if cadence is None:
            return
        info = self.backend.session_info(tenant, session)
        after = info.summarized_upto
        chunk: list[StoredMessage] = []
        chunk_tokens = 0
        while True:
            page = self.backend.history(tenant, session, after_seq=after, page_size=500)
            for message in page:
                chunk.append(message)
                chunk_tokens += message.tokens
                if chunk_tokens >= cadence:
                    self._write_digest(tenant, session, chunk, chunk_tokens)
                    chunk, chunk_tokens = [], 0
            if len(page) < 500:
                break
            after = page[-1].seq
        self._roll_up(tenant, session)

    def _write_digest(
        self, tenant: str, session: str, turns: Sequence[StoredMessage], tokens: int
    ) -> None:
        text = self.summarizer.summarize(turns, max_tokens=self._digest_budget(tokens))
        metadata = {"summarizer": self.summarizer.name, "turns": len(turns)}
        digest = NewSummary(
            1, turns[0].seq, turns[-1].seq, text, self.counter.count(text), metadata
        )
        self.store.add_summary(tenant, session, digest)

    def _roll_up(self, tenant: str, session: str) -> None:
        """Combine every ``fanout`` consecutive level-L digests into one of level L+1."""
        level = 1
        while True:
            digests = self.backend.list_summaries(tenant, session)
            upper = [d for d in digests if d.level == level + 1]
            loose = sorted(
                (
                    d
                    for d in digests
                    if d.level == level
                    and not any(u.seq_from <= d.seq_from and u.seq_to >= d.seq_to for u in upper)
                ),
                key=lambda d: d.seq_from,
            )
            if not loose and not upper:
                return
            while len(loose) >= self.fanout:
                group, loose = loose[: self.fanout], loose[self.fanout :]
                self._write_rollup(tenant, session, level + 1, group)
            level += 1

    def _write_rollup(
        self, tenant: str, session: str, level: int, group: Sequence[Summary]
    ) -> None:
        budget = self._digest_budget(sum(d.tokens for d in group))
        text = self.summarizer.combine(group, max_tokens=budget)
        metadata = {"summarizer": self.summarizer.name, "digests": len(group)}
        digest = NewSummary(
            level, group[0].seq_from, group[-1].seq_to, text, self.counter.count(text), metadata
        )
        self.store.add_summary(tenant, session, digest)

    # -- embeddings ------------------------------------------------------------

    def _embed(self, tenant: str, session: str, embedder: Embedder, batch: int = 64) -> None:
        while True:
            todo = self.backend.messages_to_embed(tenant, session, batch)
            if not todo:
                return
            vectors = embedder.embed([content for _, content in todo])
            self.store.set_embeddings(tenant, session, [seq for seq, _ in todo], vectors)
            if len(todo) < batch:
                return
