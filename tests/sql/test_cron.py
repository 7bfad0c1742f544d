"""Maintenance scheduled by pg_cron: memory.schedule_maintenance and `pymem schedule`.

The test cluster preloads pg_cron with cron.database_name = pymem_cron
(tests/conftest.py). Jobs really run: the last test waits for pg_cron's next
minute and checks that both jobs maintained their databases.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from pymem.db.embedded import EmbeddedPostgres
from pymem.db.migrate import migrate
from pymem.errors import SchedulerUnavailable, translate
from pymem.ops.cli import app
from pymem.ops.schedule import schedule_maintenance, unschedule_maintenance

from ..conftest import CRON_DATABASE


@pytest.fixture(scope="module")
def cron_home(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """pg_cron's database, with pymem installed in it too."""
    dsn = pg_server.dsn(CRON_DATABASE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create extension if not exists pg_cron")
    migrate(dsn)
    yield dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select cron.unschedule(jobid) from cron.job")


def _jobs(cron_dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(cron_dsn) as conn:
        return conn.execute(
            "select jobid, jobname, schedule, command, database from cron.job order by jobid"
        ).fetchall()


def test_outside_pg_crons_database_the_error_says_where_it_is(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute("select memory.schedule_maintenance()")
    assert caught.value.sqlstate == "ME021"
    assert CRON_DATABASE in str(caught.value)
    assert "pymem schedule" in (caught.value.diag.message_hint or "")
    mapped = translate(caught.value)
    assert isinstance(mapped, SchedulerUnavailable) and mapped.hint
    with pytest.raises(SchedulerUnavailable):
        schedule_maintenance(dsn)
    with pytest.raises(SchedulerUnavailable):  # a --cron-dsn without pg_cron in it
        schedule_maintenance(dsn, cron_dsn=dsn)


def test_bad_input_changes_nothing(cron_home: str) -> None:
    before = _jobs(cron_home)
    with psycopg.connect(cron_home, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("select memory.schedule_maintenance('*/5 * * * *', '10 seconds')")
        assert caught.value.sqlstate == "ME002"
        with pytest.raises(psycopg.Error):
            conn.execute("select memory.schedule_maintenance('every so often')")
    assert _jobs(cron_home) == before


def test_jobs_are_registered_once_and_really_maintain(cron_home: str, dsn: str) -> None:
    # In pg_cron's own database, from SQL; twice, to show it replaces.
    with psycopg.connect(cron_home, autocommit=True) as conn:
        conn.execute("delete from memory.task_runs")
        first = conn.execute("select memory.schedule_maintenance('* * * * *', '1 hour')")
        again = conn.execute("select memory.schedule_maintenance('* * * * *', '1 minute')")
        assert first.fetchone() == again.fetchone()
    # For another database, from pg_cron's, as `pymem schedule --cron-dsn` does.
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(
            app, ["schedule", "--dsn", dsn, "--cron-dsn", cron_home, "--cron", "* * * * *"]
        )
        assert result.exit_code == 0, result.output
    database = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    jobs = {row[1]: row for row in _jobs(cron_home)}
    assert set(jobs) == {f"pymem-maintain:{CRON_DATABASE}", f"pymem-maintain:{database}"}
    here = jobs[f"pymem-maintain:{CRON_DATABASE}"]
    assert here[3] == "call memory.maintain_in_steps(every => '00:01:00'::interval)"
    assert jobs[f"pymem-maintain:{database}"][4] == database

    # pg_cron starts both jobs at the next minute; each records its run.
    deadline = time.monotonic() + 75
    ran: dict[str, object] = {}
    while time.monotonic() < deadline and len(ran) < 2:
        time.sleep(1)
        for target in (cron_home, dsn):
            with psycopg.connect(target) as conn:
                row = conn.execute(
                    "select detail from memory.task_runs where task = 'maintain'"
                ).fetchone()
            if row is not None:
                ran[target] = row[0]
    assert set(ran) == {cron_home, dsn}, _run_details(cron_home)
    assert all(detail["in_steps"] for detail in ran.values())  # type: ignore[index]

    assert unschedule_maintenance(dsn, cron_dsn=cron_home) is True
    assert unschedule_maintenance(dsn, cron_dsn=cron_home) is False
    with psycopg.connect(cron_home, autocommit=True) as conn:
        assert conn.execute("select memory.unschedule_maintenance()").fetchone() == (True,)
        assert conn.execute("select memory.unschedule_maintenance()").fetchone() == (False,)
    assert _jobs(cron_home) == []
    result = runner.invoke(app, ["schedule", "--dsn", dsn, "--cron-dsn", cron_home, "--remove"])
    assert "no maintenance job" in result.output


def _run_details(cron_dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(cron_dsn) as conn:
        return conn.execute(
            "select jobid, status, return_message from cron.job_run_details"
        ).fetchall()


def test_schedule_every_is_checked(dsn: str) -> None:
    with pytest.raises(Exception) as caught:
        schedule_maintenance(dsn, every=timedelta(seconds=5))
    assert caught.value.__class__.__name__ == "InvalidArgument"
