"""Serving ``/metrics``: the database's figures (``pymem exporter``) and a process's own.

:class:`DatabaseCollector` reads ``memory.metrics()`` at each scrape, through
one connection it keeps (and replaces when the database went away), and adds
``pymem_db_up`` and ``pymem_db_scrape_duration_seconds``: a scrape never
fails because the database is down, it says so. :func:`serve_metrics` starts
prometheus-client's HTTP server on a port, with a typed error and a hint when
the port is taken.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ..db.conninfo import with_settings
from ..db.queries import QUERIES
from ..errors import DatabaseUnavailable, PymemError, SchemaNotInstalled

log = logging.getLogger("pymem.exporter")


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise PymemError(
            "pymem: serving metrics needs prometheus-client",
            hint="pip install 'pymem[metrics]'",
        ) from exc
    return prometheus_client


def _exporter_conninfo(dsn: str, timeout: float) -> str:
    """The DSN with a connect timeout, a statement timeout and a name, unless set."""
    given = conninfo_to_dict(dsn)
    extra: dict[str, Any] = {"application_name": given.get("application_name", "pymem-exporter")}
    if "connect_timeout" not in given:
        extra["connect_timeout"] = max(1, round(timeout))
    settings = {}
    if "statement_timeout" not in str(given.get("options") or ""):
        settings["statement_timeout"] = int(timeout * 1000)
    return with_settings(dsn, settings, **extra)


class DatabaseCollector:
    """Prometheus collector of ``memory.metrics()`` (``per_tenant`` adds a tenant label)."""

    def __init__(self, dsn: str, *, per_tenant: bool = False, timeout: float = 5.0) -> None:
        self.conninfo = _exporter_conninfo(dsn, timeout)
        self.per_tenant = per_tenant
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def check(self) -> int:
        """Read the figures once; returns how many series. Raises a typed error."""
        try:
            return len(self._read())
        except (psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName) as exc:
            raise SchemaNotInstalled(
                "pymem: this database has no memory.metrics()",
                hint="run `pymem migrate` (pymem 0009 adds it) against this database",
            ) from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PymemError(
                "pymem: this login may not read memory.metrics()",
                hint="grant pymem_monitor to the exporter's login",
            ) from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"pymem: cannot reach the database: {str(exc).strip()}",
                hint="check the DSN (host, port, user) and that PostgreSQL is running",
            ) from exc

    def _read(self) -> list[tuple[str, dict[str, str], float, str]]:
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.conninfo, autocommit=True)
            try:
                rows = self._conn.execute(
                    QUERIES["metrics"], {"per_tenant": self.per_tenant}
                ).fetchall()
            except psycopg.Error:
                self._conn.close()  # a broken connection is replaced at the next scrape
                self._conn = None
                raise
        return [(str(m), dict(labels), float(v), str(d)) for m, labels, v, d in rows]

    def describe(self) -> list[Any]:
        return []  # unchecked collector: families vary with per_tenant

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        started = time.perf_counter()
        try:
            rows = self._read()
            up = 1.0
        except psycopg.Error as exc:
            log.warning("exporter: reading memory.metrics() failed: %s", type(exc).__name__)
            rows, up = [], 0.0
        families: dict[str, Any] = {}
        for metric, labels, value, description in rows:
            keys = sorted(labels)
            family = families.get(metric)
            if family is None:
                family = families[metric] = GaugeMetricFamily(metric, description, labels=keys)
            family.add_metric([labels[k] for k in keys], value)
        yield from families.values()
        yield GaugeMetricFamily(
            "pymem_db_up", "1 when the last read of memory.metrics() succeeded.", value=up
        )
        yield GaugeMetricFamily(
            "pymem_db_scrape_duration_seconds",
            "Seconds the read of memory.metrics() took.",
            value=time.perf_counter() - started,
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class MetricsServer:
    """A running ``/metrics`` endpoint; :meth:`close` stops it and frees the port."""

    def __init__(self, server: Any, address: str, port: int) -> None:
        self._server = server
        self.address = address
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(registry: Any, port: int, address: str = "127.0.0.1") -> MetricsServer:
    """Serve ``registry`` on ``http://address:port/metrics`` in a thread.

    A taken port or an address that is not this machine's raises
    :class:`PymemError` with a hint.
    """
    prom = _prometheus()
    try:
        server, _thread = prom.start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PymemError(
                f"pymem: port {port} on {address} is in use",
                hint="choose another with --port, or stop what listens there",
            ) from exc
        raise PymemError(
            f"pymem: cannot listen on {address}:{port}: {exc.strerror or exc}",
            hint="use an address of this machine (127.0.0.1, or 0.0.0.0 for every interface)",
        ) from exc
    return MetricsServer(server, address, port)


def database_registry(collector: DatabaseCollector) -> Any:
    """A registry holding only ``collector`` (the exporter serves nothing else)."""
    prom = _prometheus()
    registry = prom.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
