"""Maintenance scheduled by pg_cron (``pymem schedule``).

pg_cron keeps its jobs in one database per server (``cron.database_name``).
When that is pymem's own database, ``memory.schedule_maintenance`` registers
the job there; otherwise this module asks pymem's database what the job is
(``memory.maintenance_job``) and registers it from pg_cron's database with
``cron.schedule_in_database``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg

from ..db.queries import QUERIES
from ..errors import SchedulerUnavailable, translate_errors

DEFAULT_SCHEDULE = "*/5 * * * *"


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A pg_cron job as pg_cron's database records it."""

    job_id: int
    name: str
    schedule: str
    command: str
    database: str


def _job(conn: psycopg.Connection[tuple[object, ...]], every: timedelta) -> tuple[str, str, str]:
    row = conn.execute(QUERIES["maintenance_job"], {"every": every}).fetchone()
    assert row is not None
    return str(row[0]), str(row[1]), str(row[2])


def _cron_connect(cron_dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(cron_dsn, autocommit=True, connect_timeout=10)
    found = conn.execute("select to_regnamespace('cron') is not null").fetchone()
    if not (found and found[0]):
        name = conn.info.dbname
        conn.close()
        raise SchedulerUnavailable(
            f"pg_cron's extension is not in database {name}",
            hint="--cron-dsn must name the database of cron.database_name, where a superuser "
            "ran `create extension pg_cron`",
        )
    return conn


def _read_job(conn: psycopg.Connection[tuple[object, ...]], name: str) -> ScheduledJob:
    row = conn.execute(QUERIES["cron_job"], {"job_name": name}).fetchone()
    assert row is not None, f"pg_cron did not keep job {name}"
    return ScheduledJob(int(str(row[0])), name, str(row[1]), str(row[2]), str(row[3]))


def schedule_maintenance(
    dsn: str,
    *,
    cron_dsn: str | None = None,
    schedule: str = DEFAULT_SCHEDULE,
    every: timedelta = timedelta(hours=1),
) -> ScheduledJob:
    """Register (or replace) pymem's maintenance job with pg_cron; returns it.

    Every ``schedule`` (cron syntax) the job calls ``memory.maintain_in_steps``,
    which runs maintenance when none finished within ``every``. Without
    ``cron_dsn``, pg_cron must live in the database of ``dsn``.
    """
    with translate_errors(), psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        name, command, database = _job(conn, every)
        if cron_dsn is None:
            conn.execute(QUERIES["schedule_maintenance"], {"schedule": schedule, "every": every})
            return _read_job(conn, name)
    with translate_errors(), _cron_connect(cron_dsn) as cron:
        params = {"job_name": name, "schedule": schedule, "command": command, "database": database}
        try:
            cron.execute(QUERIES["cron_schedule_in_database"], params)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SchedulerUnavailable(
                f"this login may not schedule jobs in other databases: {exc.diag.message_primary}",
                hint="connect --cron-dsn as a superuser, or have one run "
                "`grant execute on function cron.schedule_in_database to <login>`",
            ) from exc
        return _read_job(cron, name)


def unschedule_maintenance(dsn: str, *, cron_dsn: str | None = None) -> bool:
    """Remove pymem's maintenance job from pg_cron; False when there was none."""
    with translate_errors(), psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        if cron_dsn is None:
            row = conn.execute(QUERIES["unschedule_maintenance"]).fetchone()
            return bool(row and row[0])
        name, _, _ = _job(conn, timedelta(hours=1))
    with translate_errors(), _cron_connect(cron_dsn) as cron:
        row = cron.execute(QUERIES["cron_unschedule"], {"job_name": name}).fetchone()
        return bool(row and row[0])
