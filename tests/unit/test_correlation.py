"""Correlation ids on errors and log lines (pymem.correlation)."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from pymem import Memory, errors
from pymem.correlation import configure_logging, correlation, current_correlation_id


def test_every_error_carries_an_id_and_shows_it() -> None:
    err = errors.SessionNotFound("memory: session a/b not found")
    assert len(err.correlation_id) == 16
    assert str(err).endswith(f"[correlation id {err.correlation_id}]")
    assert errors.SessionNotFound("again").correlation_id != err.correlation_id


def test_a_scope_gives_its_errors_and_log_lines_one_id() -> None:
    stream = io.StringIO()
    handler = configure_logging(json_lines=True, stream=stream)
    try:
        with correlation("req-42") as cid:
            logging.getLogger("pymem.cache").warning("redis unavailable, using PostgreSQL alone")
            err = errors.InvalidArgument("memory: bad")
        line = json.loads(stream.getvalue().splitlines()[-1])
    finally:
        logging.getLogger("pymem").removeHandler(handler)
    assert cid == "req-42" == err.correlation_id == line["correlation_id"]
    assert line["logger"] == "pymem.cache" and line["level"] == "warning"


def test_nested_scopes_keep_the_outer_id() -> None:
    with correlation():
        outer = current_correlation_id()
        with correlation():
            assert current_correlation_id() == outer
        with correlation("explicit"):
            assert current_correlation_id() == "explicit"
        assert current_correlation_id() == outer


def test_public_calls_open_a_scope_unless_one_is_open() -> None:
    chat = Memory.in_memory().session("s", tenant="acme")
    with pytest.raises(errors.SessionNotFound) as first:
        chat.info()
    with pytest.raises(errors.SessionNotFound) as second:
        chat.info()
    assert first.value.correlation_id != second.value.correlation_id
    with correlation("req-7"), pytest.raises(errors.SessionNotFound) as scoped:
        chat.info()
    assert scoped.value.correlation_id == "req-7"


def test_text_logs_carry_the_id() -> None:
    stream = io.StringIO()
    handler = configure_logging(stream=stream)
    try:
        with correlation("req-9"):
            logging.getLogger("pymem.worker").warning("job acme/s/summarize failed")
    finally:
        logging.getLogger("pymem").removeHandler(handler)
    assert "[req-9] job acme/s/summarize failed" in stream.getvalue()


def test_the_trace_id_is_the_id_when_the_application_traces() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        err = errors.InvalidArgument("memory: bad")
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert err.correlation_id == trace_id
    assert "opentelemetry.trace" in sys.modules
