"""What wakes ``pymem worker``: ``NOTIFY pymem_jobs`` from every node that sends one.

An append that queues a job notifies on the server that ran it. On one node
that is the worker's own database. On a Citus cluster the append runs on the
tenant's worker node, so the job worker listens there too: the nodes are read
from the coordinator's ``pg_dist_node``, and each gets a listening connection
with the same credentials and database. A node that cannot be reached is
logged and left to the worker's polling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger("pymem.worker")


def node_dsns(conn: psycopg.Connection[Any], dsn: str) -> list[str]:
    """``dsn`` pointed at each active Citus worker node; [] without Citus."""
    if conn.execute("select to_regclass('pg_dist_node') is not null").fetchone() != (True,):
        return []
    nodes = conn.execute(
        "select nodename, nodeport from pg_dist_node"
        " where groupid <> 0 and noderole = 'primary' and isactive order by nodeid"
    ).fetchall()
    params = conninfo_to_dict(dsn)
    return [make_conninfo(**{**params, "host": host, "port": str(port)}) for host, port in nodes]


class Wakeups:
    """Listens on several servers; :meth:`wait` returns when any of them notifies."""

    def __init__(self, dsns: list[str]) -> None:
        self.dsns = dsns
        self._woken = threading.Event()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Wakeups:
        for dsn in self.dsns:
            try:
                conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
                conn.execute("listen pymem_jobs")
            except psycopg.Error as exc:
                host = conninfo_to_dict(dsn).get("host", "?")
                log.warning("worker: cannot listen on %s (%s); polling covers it", host, exc)
                continue
            thread = threading.Thread(target=self._listen, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    @property
    def listening(self) -> int:
        """How many servers are being listened to."""
        return sum(1 for thread in self._threads if thread.is_alive())

    def wait(self, timeout: float) -> bool:
        """Wait until a notification or ``timeout`` seconds; whether one came."""
        woken = self._woken.wait(timeout)
        self._woken.clear()
        return woken

    def close(self) -> None:
        self._closing.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        with conn:
            while not self._closing.is_set():
                try:
                    for _ in conn.notifies(timeout=0.5, stop_after=1):
                        self._woken.set()
                except psycopg.Error as exc:
                    log.warning("worker: a listening connection failed (%s)", exc)
                    self._woken.set()  # look now; polling carries on
                    return


@contextmanager
def listening(dsn: str) -> Iterator[Wakeups]:
    """Wakeups from ``dsn``'s server and, on a Citus coordinator, its workers."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        dsns = [dsn, *node_dsns(conn, dsn)]
    wakeups = Wakeups(dsns).start()
    try:
        yield wakeups
    finally:
        wakeups.close()
