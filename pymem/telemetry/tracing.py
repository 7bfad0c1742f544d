"""OpenTelemetry spans of pymem's public calls (``pymem[otel]``: opentelemetry-api).

``Memory.connect(dsn, tracing=True)`` (or ``tracing=Tracing(provider)``) opens
one span per public call, named and attributed after the OpenTelemetry GenAI
memory conventions where they fit:

============================  =====================  ==========================
pymem call                    gen_ai.operation.name  span name
============================  =====================  ==========================
append, append_many           update_memory          ``update_memory pymem``
context, recall               search_memory          ``search_memory pymem``
erase_subject, purge_session  delete_memory          ``delete_memory pymem``
pop_message                   delete_memory          ``delete_memory pymem``
anything else                 (none)                 ``pymem <operation>``
============================  =====================  ==========================

Attributes: ``gen_ai.memory.store.name`` (``pymem``), ``gen_ai.conversation.id``
(the session), ``pymem.operation``, ``pymem.tenant``, and what a call learns:
``pymem.strategy``, ``pymem.budget``, ``pymem.tokens`` (returned),
``pymem.messages``, ``pymem.recalled``, ``pymem.cache.hit``; ``error.type``
(the pymem error code) on failure. The query text
(``gen_ai.memory.query.text``) is recorded only with ``record_query=True``,
and then only as the tenant's personal data policy would store it.

The SDK, exporters and sampling are the application's: pymem only asks the
API for a tracer (the global provider unless one is given).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from ..correlation import span_scope
from ..errors import PymemError
from .metrics import error_code

STORE: Final = "pymem"

# pymem operation -> the GenAI memory operation it is.
GENAI_OPERATIONS: Final[Mapping[str, str]] = {
    "append": "update_memory",
    "append_many": "update_memory",
    "context": "search_memory",
    "recall": "search_memory",
    "erase_subject": "delete_memory",
    "purge_session": "delete_memory",
    "pop_message": "delete_memory",
}


class Tracing:
    """Spans for pymem's calls, from ``tracer_provider`` (default: the global one).

    ``record_query=True`` records the text of context and recall queries,
    after the tenant's personal data policy (a round trip to PostgreSQL per
    traced search; never recorded where no policy can be applied).
    """

    def __init__(self, tracer_provider: Any = None, *, record_query: bool = False) -> None:
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise PymemError(
                "pymem: tracing needs opentelemetry-api",
                hint="pip install 'pymem[otel]', or leave tracing off",
            ) from exc
        self._trace = trace
        self.tracer = trace.get_tracer("pymem", _version(), tracer_provider=tracer_provider)
        self.record_query = record_query

    @contextmanager
    def span(
        self, operation: str, attributes: Mapping[str, Any], parent: str | None = None
    ) -> Iterator[Any]:
        """A span for ``operation``; ``parent`` a W3C traceparent to continue."""
        genai = GENAI_OPERATIONS.get(operation)
        name = f"{genai} {STORE}" if genai else f"{STORE} {operation}"
        attrs = {
            "gen_ai.memory.store.name": STORE,
            "pymem.operation": operation,
            **({"gen_ai.operation.name": genai} if genai else {}),
            **{k: v for k, v in attributes.items() if v is not None},
        }
        context = _context_of(parent) if parent else None
        with (
            self.tracer.start_as_current_span(
                name,
                context=context,
                kind=self._trace.SpanKind.CLIENT,
                attributes=attrs,
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            span_scope(span),
        ):
            try:
                yield span
            except BaseException as exc:
                span.set_attribute("error.type", error_code(exc))
                status = self._trace.Status(self._trace.StatusCode.ERROR, type(exc).__name__)
                span.set_status(status)
                raise


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pymem")
    except PackageNotFoundError:  # run from a source tree
        return "0+unknown"


def _context_of(traceparent: str) -> Any:
    """The OpenTelemetry context of a W3C traceparent (None when it does not parse)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})
