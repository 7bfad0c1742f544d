"""Prometheus metrics of pymem's calls, from the client side (``pymem[metrics]``).

``Memory.connect(dsn, metrics=True)`` (or ``metrics=ClientMetrics(registry)``)
counts and times every public call; without it, and without
prometheus-client installed, nothing is imported and nothing costs.

Labels stay bounded: an operation name, a context strategy, a pymem error
code, a worker job kind; never a session or user id, and the tenant only
with ``ClientMetrics(tenant_labels=True)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

from ..errors import PymemError, error_for_sqlstate, sql_error_codes

# 0.1 ms to 10 s: an append on loopback takes ~0.5 ms, a hybrid context ~5 ms.
LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
TOKEN_BUCKETS: Final = (0, 100, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 128000)

_CODE_OF: Final[dict[type[BaseException] | None, str]] = {
    error_for_sqlstate(code): code for code in sql_error_codes()
}
_CAMEL: Final = re.compile(r"(?<!^)(?=[A-Z])")


def error_code(exc: BaseException) -> str:
    """The label of an error: its pymem SQLSTATE (ME0xx), else its class in snake case."""
    code = _CODE_OF.get(type(exc))
    if code is not None:
        return code
    return _CAMEL.sub("_", type(exc).__name__).lower()


class ClientMetrics:
    """The ``pymem_*`` metrics of one process, in ``registry`` (default: the global one).

    ``metrics=True`` on a store uses :meth:`default`, one instance per process
    in prometheus-client's global registry, shared by every store.
    """

    _default: ClientMetrics | None = None

    @classmethod
    def default(cls) -> ClientMetrics:
        """The process's metrics in the global registry (created on first use)."""
        if cls._default is None:
            cls._default = cls()
        return cls._default

    def __init__(self, registry: Any = None, *, tenant_labels: bool = False) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise PymemError(
                "pymem: metrics need prometheus-client",
                hint="pip install 'pymem[metrics]', or leave metrics off",
            ) from exc
        self.tenant_labels = tenant_labels
        self.registry = registry if registry is not None else prom.REGISTRY
        base = ["operation", "strategy", *(["tenant"] if tenant_labels else [])]
        made: dict[str, Any] = {"registry": self.registry}
        self.duration = prom.Histogram(
            "pymem_operation_duration_seconds",
            "Latency of pymem's public calls, by operation (and strategy for contexts).",
            base,
            buckets=LATENCY_BUCKETS,
            **made,
        )
        self.calls = prom.Counter(
            "pymem_operations", "Public calls made, by operation.", base, **made
        )
        self.errors = prom.Counter(
            "pymem_operation_errors",
            "Public calls that raised, by operation and pymem error code.",
            [*base, "code"],
            **made,
        )
        self.appended_tokens = prom.Counter(
            "pymem_appended_tokens", "Tokens of the messages appended.", base[2:], **made
        )
        self.context_tokens = prom.Histogram(
            "pymem_context_tokens",
            "Tokens of the context windows returned, by strategy.",
            ["strategy", *base[2:]],
            buckets=TOKEN_BUCKETS,
            **made,
        )
        self.context_budget = prom.Histogram(
            "pymem_context_budget_tokens",
            "Token budgets asked for, by strategy.",
            ["strategy", *base[2:]],
            buckets=TOKEN_BUCKETS,
            **made,
        )
        self.rate_limited = prom.Counter(
            "pymem_rate_limited", "Appends refused by a rate limit.", base[2:], **made
        )
        self.jobs = prom.Histogram(
            "pymem_worker_job_duration_seconds",
            "Worker jobs, by kind and outcome (done, queued, parked).",
            ["kind", "status"],
            buckets=LATENCY_BUCKETS,
            **made,
        )
        # Labelled series by label values: prometheus-client's labels() takes a
        # lock and builds a tuple on every call; these are looked up once.
        self._calls: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._windows: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._cache = _CacheCollector()
        self.registry.register(self._cache)
        self._database = _DatabaseCollector()
        self.registry.register(self._database)

    def call_children(self, operation: str, strategy: str, tenant: str) -> tuple[Any, Any]:
        """The duration and calls series of one label set (looked up once, then kept)."""
        key = (operation, strategy, tenant if self.tenant_labels else "")
        found = self._calls.get(key)
        if found is None:
            labels = [operation, strategy, *self.tenant(tenant)]
            found = self._calls[key] = (self.duration.labels(*labels), self.calls.labels(*labels))
        return found

    def window_children(self, strategy: str, tenant: str) -> tuple[Any, Any]:
        """The budget and window-tokens series of one strategy (and tenant)."""
        key = (strategy, tenant if self.tenant_labels else "")
        found = self._windows.get(key)
        if found is None:
            labels = [strategy, *self.tenant(tenant)]
            found = self._windows[key] = (
                self.context_budget.labels(*labels),
                self.context_tokens.labels(*labels),
            )
        return found

    def tenant(self, tenant: str) -> list[str]:
        """The tenant label value, when tenant labels are on."""
        return [tenant] if self.tenant_labels else []

    def for_tenant(self, metric: Any, tenant: str) -> Any:
        """``metric`` for ``tenant``: its labelled child with tenant labels, else itself."""
        return metric.labels(tenant) if self.tenant_labels else metric

    def watch_cache(self, tier: Any) -> None:
        """Export the counters and breaker state of a Redis tier at each scrape."""
        self._cache.tiers.append(tier)

    def watch_database(self, backend: Any) -> None:
        """Export the retries and breaker state of a PostgreSQL backend at each scrape."""
        self._database.backends.append(backend)


_BREAKER_STATES: Final = ("closed", "half_open", "open")


class _CacheCollector:
    """Reads the Redis tiers' own counters (``CacheStats``) when Prometheus scrapes."""

    def __init__(self) -> None:
        self.tiers: list[Any] = []

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        requests = CounterMetricFamily(
            "pymem_cache_requests",
            "Reads through the Redis tier: hit, miss, or bypassed (breaker open).",
            labels=["result"],
        )
        failures = CounterMetricFamily("pymem_cache_errors", "Redis calls that failed.")
        stored = CounterMetricFamily(
            "pymem_cache_window_bytes",
            "Bytes of cached windows, before (raw) and after (stored) compression.",
            labels=["form"],
        )
        breaker = GaugeMetricFamily(
            "pymem_cache_breaker_state",
            "The Redis tier's circuit breaker: 1 for the state it is in.",
            labels=["state"],
        )
        stats = [tier.cache_stats for tier in self.tiers]
        for result, field in (("hit", "hits"), ("miss", "misses"), ("bypass", "bypassed")):
            requests.add_metric([result], sum(getattr(s, field) for s in stats))
        failures.add_metric([], sum(s.errors for s in stats))
        stored.add_metric(["raw"], sum(s.raw_bytes for s in stats))
        stored.add_metric(["stored"], sum(s.stored_bytes for s in stats))
        states = [tier.breaker.state for tier in self.tiers]
        for state in _BREAKER_STATES:
            breaker.add_metric([state], float(sum(1 for s in states if s == state)))
        yield from (requests, failures, stored, breaker)


class _DatabaseCollector:
    """Reads the PostgreSQL backends' retry counters (``DatabaseStats``) at scrape."""

    def __init__(self) -> None:
        self.backends: list[Any] = []

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        retries = CounterMetricFamily(
            "pymem_db_retries",
            "Attempts retried, by what failed: not_run, rolled_back, unknown (lost mid-call).",
            labels=["failure"],
        )
        gave_up = CounterMetricFamily(
            "pymem_db_gave_up",
            "Calls that ended in an error after failed attempts, by error type.",
            labels=["error"],
        )
        fast = CounterMetricFamily(
            "pymem_db_fast_failed", "Calls refused at once while the database breaker was open."
        )
        breaker = GaugeMetricFamily(
            "pymem_db_breaker_state",
            "The PostgreSQL circuit breaker: 1 for the state it is in.",
            labels=["state"],
        )
        stats = [b.database_stats for b in self.backends]
        for failure in ("not_run", "rolled_back", "unknown"):
            retries.add_metric([failure], sum(s.retries[failure] for s in stats))
        for error in sorted({e for s in stats for e in s.gave_up}):
            gave_up.add_metric([error], sum(s.gave_up[error] for s in stats))
        fast.add_metric([], sum(s.fast_failed for s in stats))
        states = [b.breaker.state for b in self.backends]
        for state in _BREAKER_STATES:
            breaker.add_metric([state], float(sum(1 for s in states if s == state)))
        yield from (retries, gave_up, fast, breaker)
