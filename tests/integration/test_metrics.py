"""Client metrics (pymem.telemetry): names, values and bounded labels, on real servers."""

from __future__ import annotations

import re
import sys
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pymem import AsyncMemory, Limit, Memory, RateLimited, RateLimits, errors
from pymem.ops.worker import Worker
from pymem.telemetry.metrics import ClientMetrics, error_code


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_calls_errors_tokens_and_windows_are_counted(dsn: str) -> None:
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    with Memory.connect(dsn, max_size=2, metrics=metrics) as mem:
        chat = mem.session("s-secret-id", tenant="acme", user="u-secret")
        chat.append("user", "hello there", tokens=5)
        chat.append("user", "hello there", tokens=5, idempotency_key="k")
        chat.append("user", "hello there", tokens=5, idempotency_key="k")  # a retry
        chat.context(budget=100, strategy="hybrid", query="hello")
        with pytest.raises(errors.InvalidRole):
            chat.append("robot", "beep")
    op = {"operation": "append", "strategy": ""}
    assert _value(registry, "pymem_operations_total", **op) == 4
    assert _value(registry, "pymem_operation_errors_total", **op, code="ME010") == 1
    assert _value(registry, "pymem_operation_duration_seconds_count", **op) == 4
    assert _value(registry, "pymem_appended_tokens_total") == 10  # the retry stored nothing
    ctx = {"operation": "context", "strategy": "hybrid"}
    assert _value(registry, "pymem_operation_duration_seconds_count", **ctx) == 1
    assert _value(registry, "pymem_context_budget_tokens_sum", strategy="hybrid") == 100
    assert _value(registry, "pymem_context_tokens_sum", strategy="hybrid") == 10
    text = generate_latest(registry).decode()
    assert "secret" not in text and "acme" not in text  # no ids; tenant labels are off
    names = set(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    assert all(name.startswith("pymem_") for name, _ in names)
    assert all(name.endswith("_total") for name, kind in names if kind == "counter")


def test_tenant_labels_only_when_asked(dsn: str) -> None:
    registry = CollectorRegistry()
    with Memory.connect(dsn, metrics=ClientMetrics(registry, tenant_labels=True)) as mem:
        mem.session("s", tenant="acme").append("user", "hi", tokens=1)
    assert _value(registry, "pymem_appended_tokens_total", tenant="acme") == 1


def test_cache_and_rate_limits_are_exported(dsn: str, redis_url: str) -> None:
    registry = CollectorRegistry()
    limits = RateLimits(per_session=Limit(2, timedelta(minutes=1)))
    with Memory.connect(
        dsn, redis=redis_url, rate_limits=limits, metrics=ClientMetrics(registry)
    ) as mem:
        chat = mem.session("s", tenant="acme")
        chat.append("user", "one", tokens=1)
        chat.append("user", "two", tokens=1)
        with pytest.raises(RateLimited):
            chat.append("user", "three", tokens=1)
        chat.context(budget=50)
        chat.context(budget=50)
    assert _value(registry, "pymem_rate_limited_total") == 1
    assert _value(registry, "pymem_cache_requests_total", result="hit") == 1
    assert _value(registry, "pymem_cache_requests_total", result="miss") == 1
    assert _value(registry, "pymem_cache_breaker_state", state="closed") == 1
    assert _value(registry, "pymem_cache_window_bytes_total", form="raw") > 0


async def test_the_async_api_is_counted_the_same_way(dsn: str) -> None:
    registry = CollectorRegistry()
    mem = await AsyncMemory.connect(dsn, max_size=2, metrics=ClientMetrics(registry))
    async with mem:
        await mem.session("s", tenant="acme").append("user", "hi", tokens=3)
    assert _value(registry, "pymem_operations_total", operation="append", strategy="") == 1
    assert _value(registry, "pymem_appended_tokens_total") == 3


def test_worker_jobs_are_timed_by_kind_and_outcome(dsn: str) -> None:
    registry = CollectorRegistry()
    with Memory.connect(dsn, max_size=4, metrics=ClientMetrics(registry)) as mem:
        mem.configure_recall(tenant="acme", summary_every_tokens=100)
        chat = mem.session("s", tenant="acme")
        for i in range(20):
            chat.append("user", f"Turn {i}: the violin and the passport.", tokens=12)
        assert Worker(mem, name="w").drain() >= 1
    done = _value(
        registry, "pymem_worker_job_duration_seconds_count", kind="summarize", status="done"
    )
    assert done >= 1


def test_error_codes_are_bounded_names() -> None:
    assert error_code(errors.SessionNotFound("x")) == "ME001"
    assert error_code(RateLimited("x", retry_after=timedelta(seconds=1))) == "rate_limited"
    assert error_code(TimeoutError()) == "timeout_error"


def test_metrics_without_the_extra_say_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(errors.PymemError, match="prometheus-client") as caught:
        ClientMetrics()
    assert "pymem[metrics]" in (caught.value.hint or "")


def test_metrics_true_shares_the_global_registry() -> None:
    from prometheus_client import REGISTRY

    first, second = Memory.in_memory(metrics=True), Memory.in_memory(metrics=True)
    assert first.metrics is second.metrics is ClientMetrics.default()
    before = _value(REGISTRY, "pymem_operations_total", operation="append", strategy="")
    first.session("s", tenant="acme").append("user", "hi", tokens=1)
    second.session("s", tenant="acme").append("user", "hi", tokens=1)
    after = _value(REGISTRY, "pymem_operations_total", operation="append", strategy="")
    assert after - before == 2
