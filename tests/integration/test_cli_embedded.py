"""The command line and the embedded cluster, run the way users run them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymem import Memory, errors
from pymem.db.embedded import EmbeddedPostgres, find_pg_bin

PYMEM = [sys.executable, "-m", "pymem"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYMEM, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        timeout=120,
    )


def test_migrate_doctor_stats(empty_dsn: str) -> None:
    before = _run("doctor", "--dsn", empty_dsn)
    assert before.returncode == 1
    assert "pymem migrate" in before.stdout

    first = _run("migrate", "--dsn", empty_dsn)
    assert first.returncode == 0, first.stderr
    assert "pymem_0001_create_schema" in first.stdout
    second = _run("migrate", "--dsn", empty_dsn)
    assert "none pending" in second.stdout

    after = _run("doctor", "--dsn", empty_dsn)
    assert after.returncode == 0, after.stdout
    assert "all good" in after.stdout

    Memory.connect(empty_dsn).session("s", tenant="cli").append("user", "hi")
    stats = _run("stats", "--dsn", empty_dsn)
    assert stats.returncode == 0 and "cli" in stats.stdout


def test_cli_errors_are_readable() -> None:
    missing = _run("stats", env={"PYMEM_DSN": ""})
    assert missing.returncode == 2 and "no database given" in missing.stderr
    down = _run("doctor", "--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=1")
    assert down.returncode == 1 and "start PostgreSQL" in down.stdout


def test_demo_on_a_dsn(dsn: str) -> None:
    done = _run("demo", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    assert "duplicate=True" in done.stdout and "memory.context" in done.stdout


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(f"/tmp/pymem-embedded-test-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    yield path
    EmbeddedPostgres(path).destroy()


def test_embedded_is_created_migrated_and_reused(home: Path) -> None:
    with Memory.embedded(home) as mem:
        mem.session("s").append("user", "kept across runs")
    server = EmbeddedPostgres(home)
    assert server.is_running()
    # A second "run" finds the cluster running and the data in place.
    with Memory.embedded(home) as mem:
        assert [m.content for m in mem.session("s").messages()] == ["kept across runs"]
    server.stop()
    assert not server.is_running()
    # ...and starts it again when it was stopped.
    with Memory.embedded(home) as mem:
        assert mem.session("s").info().message_count == 1


def test_embedded_without_binaries_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(errors.EmbeddedUnavailable) as caught:
        EmbeddedPostgres(tmp_path / "x", pg_bin=tmp_path).start()
    assert "apt-get install postgresql" in caught.value.hint


def test_pg_binaries_are_found() -> None:
    assert (find_pg_bin() / "initdb").exists()
