"""What wakes the job worker: NOTIFY from its database and from every Citus node."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pymem.ops.wakeups import Wakeups, node_dsns


def _notify(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("notify pymem_jobs, 'summarize'")


@pytest.fixture
def other_dsn(dsn: str) -> Iterator[str]:
    """A second database on the same server: a stand-in for another node."""
    name = conninfo_to_dict(dsn)["dbname"] + "_node"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    yield make_conninfo(dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def test_a_notification_from_any_listened_server_wakes(dsn: str, other_dsn: str) -> None:
    wakeups = Wakeups([dsn, other_dsn]).start()
    try:
        assert wakeups.listening == 2
        assert not wakeups.wait(0.2)  # nothing yet
        started = time.monotonic()
        _notify(other_dsn)
        assert wakeups.wait(10)
        assert time.monotonic() - started < 5
        assert not wakeups.wait(0.2)  # one notification wakes once
        _notify(dsn)
        assert wakeups.wait(10)
    finally:
        wakeups.close()


def test_a_node_that_cannot_be_reached_is_left_to_polling(dsn: str) -> None:
    unreachable = make_conninfo(dsn, host="127.0.0.1", port="1")
    wakeups = Wakeups([unreachable, dsn]).start()
    try:
        assert wakeups.listening == 1
        _notify(dsn)
        assert wakeups.wait(10)
    finally:
        wakeups.close()


def test_citus_worker_nodes_are_listened_to_with_the_same_credentials(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert node_dsns(conn, dsn) == []  # one node: only its own database
        # The coordinator's node list (a stand-in for Citus's pg_dist_node).
        conn.execute(
            "create table public.pg_dist_node (nodeid integer, groupid integer, nodename text,"
            " nodeport integer, noderole text, isactive boolean)"
        )
        conn.execute(
            "insert into public.pg_dist_node values"
            " (1, 0, 'coordinator', 5432, 'primary', true),"
            " (2, 1, 'worker-1', 6432, 'primary', true),"
            " (3, 2, 'worker-2', 6433, 'primary', false),"
            " (4, 1, 'worker-1-standby', 6432, 'secondary', true)"
        )
        found = [conninfo_to_dict(d) for d in node_dsns(conn, dsn)]
    mine = conninfo_to_dict(dsn)
    assert found == [{**mine, "host": "worker-1", "port": "6432"}]
