"""Correlation ids: one id ties an error a user reports to pymem's log lines.

Every :class:`~pymem.errors.PymemError` carries ``correlation_id`` and shows
it in its message; every log line written through :func:`configure_logging`
(or a handler with :class:`CorrelationFilter`) carries it too. The id is,
first found:

1. the trace id of the active OpenTelemetry span, when the application
   traces (pymem only looks at ``opentelemetry.trace`` if the application
   imported it: nothing is imported, and nothing costs, otherwise);
2. the id of the enclosing :func:`correlation` scope: each public pymem
   call and each worker job opens one, and an application may open its own
   around a request (``with correlation(request_id): ...``);
3. a new random id.

Log lines carry identifiers and outcomes only, never message content or key
material: pymem's own log calls pass no text of a conversation.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any


class _Scope:
    """One correlation scope; its id is made only when something asks for it."""

    __slots__ = ("id",)

    def __init__(self, correlation_id: str | None) -> None:
        self.id = correlation_id


_CURRENT: ContextVar[_Scope | None] = ContextVar("pymem_correlation_scope", default=None)


def new_correlation_id() -> str:
    """A fresh random id (16 hex digits)."""
    return secrets.token_hex(8)


def _trace_id() -> str | None:
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the active OpenTelemetry span, if any.

    ``memory.append`` keeps it on the jobs it queues, so that the worker's
    span continues the trace of the append.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def current_correlation_id() -> str:
    """The id of what runs now: the trace id, the enclosing scope's, or a new one."""
    found = _trace_id()
    if found is not None:
        return found
    scope = _CURRENT.get()
    if scope is None:
        return new_correlation_id()
    if scope.id is None:
        scope.id = new_correlation_id()
    return scope.id


@contextmanager
def correlation(correlation_id: str | None = None) -> Iterator[str | None]:
    """A scope whose errors and log lines share one id (given, the trace's, or new).

    Nested scopes keep the outer id unless a new one is given. Yields the id
    when one was given; else it is made when first asked for
    (:func:`current_correlation_id`), so a call that neither fails nor logs
    costs no random id.
    """
    outer = _CURRENT.get()
    if correlation_id is None and outer is not None:
        yield outer.id
        return
    token = _CURRENT.set(_Scope(correlation_id))
    try:
        yield correlation_id
    finally:
        _CURRENT.reset(token)


_SPAN: ContextVar[Any] = ContextVar("pymem_span", default=None)


@contextmanager
def span_scope(span: Any) -> Iterator[None]:
    """Make ``span`` the one :func:`annotate` writes to, for the enclosed call."""
    token = _SPAN.set(span)
    try:
        yield
    finally:
        _SPAN.reset(token)


def tracing_active() -> bool:
    """Whether pymem traces the call that runs now (a span is open for it)."""
    return _SPAN.get() is not None


def annotate(attributes: Mapping[str, Any]) -> None:
    """Set attributes on the span of the pymem call that runs now; free without one."""
    span = _SPAN.get()
    if span is not None:
        span.set_attributes(attributes)


class CorrelationFilter(logging.Filter):
    """Adds ``correlation_id`` to every record that passes a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "correlation_id", None):
            record.correlation_id = current_correlation_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"


def configure_logging(
    *, json_lines: bool = False, level: int = logging.INFO, stream: Any = None
) -> logging.Handler:
    """Send the ``pymem`` loggers to ``stream`` (default stderr), each line with
    its correlation id, as text or as JSON lines. Returns the handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logger = logging.getLogger("pymem")
    for old in [h for h in logger.handlers if getattr(h, "pymem_handler", False)]:
        logger.removeHandler(old)
    handler.pymem_handler = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


__all__ = [
    "CorrelationFilter",
    "JsonFormatter",
    "configure_logging",
    "correlation",
    "current_correlation_id",
    "new_correlation_id",
]
