"""``pymem exporter`` and ``pymem worker --metrics-port``, run the way operators run them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pymem import Memory
from pymem.errors import DatabaseUnavailable, SchemaNotInstalled
from pymem.telemetry.exporter import DatabaseCollector, database_registry, serve_metrics

PYMEM = [sys.executable, "-m", "pymem"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _scrape(
    port: int, timeout: float = 20.0
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _pymem(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYMEM, *args], capture_output=True, text=True, timeout=60, check=False)


@contextmanager
def _running(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*PYMEM, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # reaps it and closes its pipes


def test_exporter_serves_the_database_figures(dsn: str) -> None:
    with Memory.connect(dsn, max_size=1) as mem:
        mem.session("s-1", tenant="acme").append("user", "hello", tokens=3)
        mem.session("s-2", tenant="beta").append("user", "hi", tokens=2)
    port = _free_port()
    with _running("exporter", "--dsn", dsn, "--port", str(port), "--per-tenant"):
        series = _scrape(port)
    assert series[("pymem_db_up", ())] == 1
    assert series[("pymem_db_messages", (("tenant", "acme"),))] == 1
    assert series[("pymem_db_tokens", (("tenant", "beta"),))] == 2
    assert series[("pymem_db_jobs", (("kind", "summarize"), ("status", "parked")))] == 0
    assert ("pymem_db_scrape_duration_seconds", ()) in series


def test_a_lost_database_connection_reads_as_down_then_recovers(dsn: str) -> None:
    collector = DatabaseCollector(dsn)
    registry = database_registry(collector)
    port = _free_port()
    server = serve_metrics(registry, port)
    try:
        assert _scrape(port)[("pymem_db_up", ())] == 1
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where application_name = 'pymem-exporter'"
            )
        assert _scrape(port)[("pymem_db_up", ())] == 0  # the scrape answers, and says so
        assert _scrape(port)[("pymem_db_up", ())] == 1  # a new connection next time
    finally:
        server.close()
        collector.close()


def test_bad_configuration_gets_a_clear_error_not_a_traceback(dsn: str, empty_dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _pymem("exporter", "--dsn", dsn, "--port", str(port))
    assert done.returncode == 1
    assert "in use" in done.stderr and "hint" in done.stderr
    assert "Traceback" not in done.stderr

    unreachable = f"host=127.0.0.1 port={_free_port()} user=nobody dbname=none"
    done = _pymem("exporter", "--dsn", unreachable, "--port", str(_free_port()))
    assert done.returncode == 1
    assert "cannot reach the database" in done.stderr and "hint" in done.stderr
    assert "Traceback" not in done.stderr

    with pytest.raises(SchemaNotInstalled):
        DatabaseCollector(empty_dsn).check()
    with pytest.raises(DatabaseUnavailable):
        DatabaseCollector(unreachable, timeout=2).check()


def test_worker_serves_its_own_metrics(dsn: str) -> None:
    with Memory.connect(dsn, max_size=1) as mem:
        mem.configure_recall(tenant="acme", summary_every_tokens=50)
        chat = mem.session("s-1", tenant="acme")
        for i in range(4):
            chat.append("user", f"turn {i} about the order", tokens=20)
    port = _free_port()
    with _running("worker", "--dsn", dsn, "--metrics-port", str(port)):
        deadline = time.monotonic() + 30
        key = (
            "pymem_worker_job_duration_seconds_count",
            (("kind", "summarize"), ("status", "done")),
        )
        while _scrape(port).get(key, 0) < 1:
            assert time.monotonic() < deadline, "the worker's job never showed in its metrics"
            time.sleep(0.2)
