"""The instrumentation of pymem's public calls (``Memory``, ``Session``, the worker).

:func:`operation` wraps a public method: it opens a correlation scope
(:mod:`pymem.correlation`) and, when the store has metrics
(:class:`~pymem.telemetry.metrics.ClientMetrics`), times and counts the call
and its errors. Without metrics a call costs one context-variable scope.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, cast

from ..correlation import annotate, correlation, tracing_active
from ..models import AppendResult, ContextRequest, ContextWindow, NewMessage
from .metrics import ClientMetrics, error_code
from .tracing import Tracing

P = ParamSpec("P")
R = TypeVar("R")


def _metrics_of(owner: Any) -> ClientMetrics | None:
    """The metrics of a Memory, or of the Memory behind a Session."""
    metrics: ClientMetrics | None = getattr(getattr(owner, "memory", owner), "metrics", None)
    return metrics


def _tracing_of(owner: Any) -> Tracing | None:
    """The tracing of a Memory, or of the Memory behind a Session."""
    tracing: Tracing | None = getattr(getattr(owner, "memory", owner), "tracing", None)
    return tracing


class _Observed:
    """Times and counts one call (a plain context manager: cheaper than a generator)."""

    __slots__ = ("metrics", "name", "started", "strategy", "tenant")

    def __init__(self, metrics: ClientMetrics, name: str, strategy: str, tenant: str) -> None:
        self.metrics, self.name, self.strategy, self.tenant = metrics, name, strategy, tenant
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        metrics = self.metrics
        duration, calls = metrics.call_children(self.name, self.strategy, self.tenant)
        duration.observe(time.perf_counter() - self.started)
        calls.inc()
        if exc is not None:
            code = error_code(exc)
            labels = [self.name, self.strategy, *metrics.tenant(self.tenant)]
            metrics.errors.labels(*labels, code).inc()
            if code == "rate_limited":
                metrics.for_tenant(metrics.rate_limited, self.tenant).inc()


def _labels(owner: Any, kwargs: dict[str, Any], by_strategy: bool) -> tuple[str, str]:
    strategy = str(kwargs.get("strategy", "recent")) if by_strategy else ""
    tenant = kwargs.get("tenant") or getattr(owner, "tenant", "")
    return strategy, str(tenant)


@contextmanager
def _instrumented(
    owner: Any,
    name: str,
    kwargs: dict[str, Any],
    by_strategy: bool,
    metrics: ClientMetrics | None,
    tracing: Tracing | None,
) -> Iterator[None]:
    """The span (with tracing) around the metrics (with metrics) of one call."""
    strategy, tenant = _labels(owner, kwargs, by_strategy)
    if tracing is None:
        assert metrics is not None
        with _Observed(metrics, name, strategy, tenant):
            yield
        return
    attributes = {
        "pymem.tenant": tenant or None,
        "pymem.strategy": strategy or None,
        "gen_ai.conversation.id": getattr(owner, "id", None) if hasattr(owner, "memory") else None,
    }
    with tracing.span(name, attributes):
        if metrics is None:
            yield
        else:
            with _Observed(metrics, name, strategy, tenant):
                yield


def operation(
    name: str, *, by_strategy: bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Instrument a public method (sync or async) as the operation ``name``."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            coroutine = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with correlation():
                    metrics, tracing = _metrics_of(args[0]), _tracing_of(args[0])
                    if metrics is None and tracing is None:
                        return await coroutine(*args, **kwargs)
                    with _instrumented(args[0], name, kwargs, by_strategy, metrics, tracing):
                        return await coroutine(*args, **kwargs)

            return cast(Callable[P, R], run_async)

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with correlation():
                metrics, tracing = _metrics_of(args[0]), _tracing_of(args[0])
                if metrics is None and tracing is None:
                    return fn(*args, **kwargs)
                with _instrumented(args[0], name, kwargs, by_strategy, metrics, tracing):
                    return fn(*args, **kwargs)

        return run

    return decorate


def record_append(
    metrics: ClientMetrics | None,
    tenant: str,
    messages: Sequence[NewMessage],
    results: Sequence[AppendResult],
) -> None:
    """Count the tokens of the messages stored (retries that stored nothing excluded)."""
    if metrics is None and not tracing_active():
        return
    stored = sum(m.tokens or 0 for m, r in zip(messages, results, strict=False) if not r.duplicate)
    annotate(
        {
            "pymem.messages": len(messages),
            "pymem.tokens": stored,
            "pymem.duplicates": sum(1 for r in results if r.duplicate),
        }
    )
    if metrics is not None:
        metrics.for_tenant(metrics.appended_tokens, tenant).inc(stored)


def record_recall(found: Sequence[Any]) -> None:
    """How many turns a recall returned, on its span."""
    annotate({"pymem.recalled": len(found)})


def record_window(
    metrics: ClientMetrics | None, tenant: str, request: ContextRequest, window: ContextWindow
) -> None:
    """The budget asked for and the tokens returned, by strategy."""
    traced = tracing_active()
    if metrics is None and not traced:
        return
    tokens = window.tokens
    if traced:
        parts = [item.part for item in window.items]
        annotate(
            {
                "pymem.budget": request.budget,
                "pymem.tokens": tokens,
                "pymem.messages": len(parts) - parts.count("summary"),
                "pymem.recalled": parts.count("recall"),
            }
        )
    if metrics is not None:
        budget, returned = metrics.window_children(request.strategy, tenant)
        budget.observe(request.budget)
        returned.observe(tokens)
