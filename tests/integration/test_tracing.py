"""OpenTelemetry spans of pymem's calls and of the worker, read back from an in-memory exporter."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from pymem import AsyncMemory, Memory, errors
from pymem.ops.worker import Worker
from pymem.security.pii import PiiFilter, RegexClassifier
from pymem.telemetry.tracing import Tracing


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    found = TracerProvider()
    yield found
    found.shutdown()


@pytest.fixture
def spans(provider: TracerProvider) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider), exporter


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_calls_are_spans_after_the_genai_memory_conventions(
    dsn: str, spans: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracing, exporter = spans
    with Memory.connect(dsn, max_size=1, tracing=tracing) as mem:
        chat = mem.session("s-1", tenant="acme")
        chat.append("user", "my parcel arrived broken", tokens=5)
        chat.append("assistant", "sorry to hear that", tokens=4)
        window = chat.context(budget=500, strategy="hybrid", query="parcel broken")
        chat.recall("parcel")
        with pytest.raises(errors.InvalidRole):
            chat.append("robot", "beep")
        chat.messages()

    update = _named(exporter, "update_memory pymem")
    assert len(update) == 3
    attrs = dict(update[0].attributes or {})
    assert attrs["gen_ai.operation.name"] == "update_memory"
    assert attrs["gen_ai.memory.store.name"] == "pymem"
    assert attrs["gen_ai.conversation.id"] == "s-1"
    assert attrs["pymem.tenant"] == "acme"
    assert attrs["pymem.tokens"] == 5
    failed = update[2]
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "ME010"

    search = _named(exporter, "search_memory pymem")
    context, recall = (dict(s.attributes or {}) for s in search)
    assert context["pymem.operation"] == "context"
    assert context["pymem.strategy"] == "hybrid"
    assert context["pymem.budget"] == 500
    assert context["pymem.tokens"] == window.tokens
    assert recall["pymem.operation"] == "recall" and recall["pymem.recalled"] >= 1
    # The query text is not recorded unless asked for; no span holds message text.
    for span in exporter.get_finished_spans():
        values = " ".join(str(v) for v in (span.attributes or {}).values())
        assert "parcel" not in values and "sorry" not in values
    assert _named(exporter, "pymem history")


def test_query_text_only_on_request_and_after_the_tenant_policy(
    dsn: str, provider: TracerProvider, spans: tuple[Tracing, InMemorySpanExporter]
) -> None:
    exporter = spans[1]
    tracing = Tracing(provider, record_query=True)
    with Memory.connect(dsn, max_size=1, tracing=tracing) as mem:
        mem.configure_pii({"email": "redact", "card": "block"}, tenant="acme")
        chat = mem.session("s-1", tenant="acme")
        chat.append("user", "hello", tokens=1)
        chat.context(budget=100, strategy="hybrid", query="write to ann@example.com")
        chat.recall("card 4111 1111 1111 1111")
    context, recall = (dict(s.attributes or {}) for s in _named(exporter, "search_memory pymem"))
    assert context["gen_ai.memory.query.text"] == "write to [EMAIL]"
    assert "gen_ai.memory.query.text" not in recall  # the policy blocks cards: nothing kept


def test_without_a_policy_store_the_query_needs_the_clients_own_policy(
    provider: TracerProvider, spans: tuple[Tracing, InMemorySpanExporter]
) -> None:
    exporter = spans[1]
    tracing = Tracing(provider, record_query=True)
    mem = Memory.in_memory(tracing=tracing)
    mem.session("s", tenant="t").append("user", "hi")
    mem.session("s", tenant="t").recall("order 12345")
    last = dict(exporter.get_finished_spans()[-1].attributes or {})
    assert "gen_ai.memory.query.text" not in last

    pii = PiiFilter([RegexClassifier("order", r"\d{5}")], policy={"order": "redact"})
    mem = Memory.in_memory(tracing=tracing, pii=pii)
    mem.session("s", tenant="t").append("user", "hi")
    mem.session("s", tenant="t").recall("order 12345")
    recorded = dict(exporter.get_finished_spans()[-1].attributes or {})
    assert recorded["gen_ai.memory.query.text"] == "order [ORDER]"


def test_the_worker_continues_the_trace_of_the_append_that_queued_its_job(
    dsn: str, spans: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracing, exporter = spans
    with Memory.connect(dsn, max_size=2, tracing=tracing) as mem:
        mem.configure_recall(tenant="acme", summary_every_tokens=50)
        chat = mem.session("s-1", tenant="acme")
        for i in range(3):
            chat.append("user", f"turn {i} about the order", tokens=20)
        assert Worker(mem).drain() == 1
    queued_by = _named(exporter, "update_memory pymem")[2]  # the append that passed 50 tokens
    (job,) = _named(exporter, "pymem summarize_job")
    assert job.context is not None and queued_by.context is not None
    assert job.context.trace_id == queued_by.context.trace_id
    assert job.parent is not None and job.parent.span_id == queued_by.context.span_id
    assert dict(job.attributes or {})["pymem.job.status"] == "done"


def test_errors_carry_the_trace_id_as_correlation_id(
    spans: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    mem = AsyncMemory.in_memory(tracing=tracing)

    async def fail() -> errors.PymemError:
        try:
            await mem.session("s", tenant="t").append("robot", "beep")
        except errors.PymemError as exc:
            return exc
        raise AssertionError("no error")

    error = asyncio.run(fail())
    (span,) = exporter.get_finished_spans()
    assert span.context is not None
    assert error.correlation_id == format(span.context.trace_id, "032x")
    assert error.correlation_id in str(error)


def test_no_spans_without_tracing(spans: tuple[Tracing, InMemorySpanExporter]) -> None:
    _tracing, exporter = spans
    Memory.in_memory().session("s", tenant="t").append("user", "hi")
    assert exporter.get_finished_spans() == ()


def test_tracing_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(errors.PymemError) as caught:
        Memory.in_memory(tracing=True)
    assert "pymem[otel]" in (caught.value.hint or "")


def test_a_retried_call_says_so_on_its_span(
    dsn: str, spans: tuple[Tracing, InMemorySpanExporter]
) -> None:
    from ..faultproxy import FaultProxy

    tracing, exporter = spans
    proxy = FaultProxy.in_front_of(dsn)
    try:
        with Memory.connect(proxy.route(dsn), max_size=1, tracing=tracing) as mem:
            chat = mem.session("s-1", tenant="acme")
            chat.append("user", "first", tokens=1)
            proxy.add("lose-reply", "reset_peer", "downstream", times=1)
            chat.append("user", "retried", tokens=1)
    finally:
        proxy.stop()
    first, second = _named(exporter, "update_memory pymem")
    assert "pymem.db.attempts" not in (first.attributes or {})
    assert dict(second.attributes or {})["pymem.db.attempts"] == 2
    assert dict(second.attributes or {})["pymem.db.retried"] == "unknown"
