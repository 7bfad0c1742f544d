"""A private PostgreSQL cluster run from the machine's PostgreSQL binaries.

``Memory.embedded()`` uses it: the first call creates the cluster in a local
folder, later calls (from any process) find it running and reuse it. The
server listens on a unix socket inside that folder (and, when asked, on
127.0.0.1), trusts local connections, and keeps fsync on.

PostgreSQL refuses to run as root; when this process is root, the server is
run as an unprivileged system user (``postgres`` if it exists, else
``nobody``; ``PYMEM_PG_USER`` overrides) that owns the folder.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
from psycopg import sql

from ..errors import EmbeddedUnavailable

_INSTALL_HINT = (
    "install the server (Debian/Ubuntu: apt-get install postgresql-15 postgresql-contrib; "
    "`make demo` does it), or set PYMEM_PG_BIN to the folder holding initdb and pg_ctl"
)
SUPERUSER = "pymem"


def find_pg_bin(explicit: Path | None = None) -> Path:
    """The folder of ``initdb``/``pg_ctl``, or EmbeddedUnavailable with the fix."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit)
    elif os.environ.get("PYMEM_PG_BIN"):
        candidates.append(Path(os.environ["PYMEM_PG_BIN"]))
    else:
        versions = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0),
            reverse=True,
        )
        candidates.extend(versions)
        found = shutil.which("initdb")
        if found:
            candidates.append(Path(found).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise EmbeddedUnavailable(
        "pymem: PostgreSQL server binaries (initdb, pg_ctl) not found", hint=_INSTALL_HINT
    )


def default_home() -> Path:
    """Where the embedded cluster lives unless PYMEM_HOME or an argument says otherwise."""
    if os.environ.get("PYMEM_HOME"):
        return Path(os.environ["PYMEM_HOME"])
    if os.geteuid() == 0:
        return Path("/var/lib/pymem/embedded")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pymem" / "embedded"


def _server_user() -> str | None:
    """The user that runs the server when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("PYMEM_PG_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise EmbeddedUnavailable(
        "pymem: running as root and no unprivileged user to run PostgreSQL",
        hint="create one (useradd postgres) or set PYMEM_PG_USER",
    )


class EmbeddedPostgres:
    """One private cluster in ``home``: ``data/``, ``run/`` (socket), ``postgres.log``."""

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        port: int = 5432,
        tcp: bool = False,
        dbname: str = "pymem",
        pg_bin: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.port = port
        self.tcp = tcp
        self.dbname = dbname
        self._pg_bin = pg_bin
        self.settings = dict(settings or {})
        self.user = _server_user()

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    def dsn(self, dbname: str | None = None) -> str:
        """The libpq DSN of a database on this cluster (socket unless tcp)."""
        host = "127.0.0.1" if self.tcp else str(self.socket_dir)
        return f"host={host} port={self.port} user={SUPERUSER} dbname={dbname or self.dbname}"

    # -- process control ----------------------------------------------------

    def _cmd(self, args: Sequence[str]) -> list[str]:
        if self.user is None:
            return list(args)
        return ["runuser", "-u", self.user, "--", *args]

    def _run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self._cmd(args), capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            log_tail = ""
            if self.log_file.exists():
                log_tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise EmbeddedUnavailable(
                f"pymem: {Path(args[0]).name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}\n{log_tail}".rstrip(),
                hint=f"see {self.log_file}; remove {self.home} to start from scratch",
            )
        return done

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _chown(self, *paths: Path) -> None:
        if self.user is None:
            return
        entry = pwd.getpwnam(self.user)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        bin_dir = find_pg_bin(self._pg_bin)
        done = self._run([str(bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)], check=False)
        return done.returncode == 0

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        bin_dir = find_pg_bin(self._pg_bin)
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o755)
        self.socket_dir.mkdir(exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.log_file.touch()
        self._chown(self.home, self.socket_dir, self.data_dir, self.log_file)
        self._run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-instructions",
            ]
        )
        conf = {
            "listen_addresses": "'127.0.0.1'" if self.tcp else "''",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "on",
            "synchronous_commit": "on",
            **self.settings,
        }
        lines = "".join(f"{key} = {value}\n" for key, value in conf.items())
        with open(self.data_dir / "postgresql.conf", "a") as fh:
            fh.write("\n# pymem embedded cluster\n" + lines)

    def start(self) -> EmbeddedPostgres:
        """Create the cluster if needed, start it if stopped, create the database."""
        with self._locked():
            if not self.initialized():
                self.init()
            if not self.is_running():
                bin_dir = find_pg_bin(self._pg_bin)
                self._run(
                    [
                        str(bin_dir / "pg_ctl"),
                        "start",
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_file),
                        "-w",
                        "-t",
                        "60",
                    ]
                )
            self._ensure_database()
        return self

    def _ensure_database(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
                    exists = conn.execute(
                        "select 1 from pg_database where datname = %s", (self.dbname,)
                    ).fetchone()
                    if exists is None:
                        conn.execute(
                            sql.SQL("create database {}").format(sql.Identifier(self.dbname))
                        )
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise EmbeddedUnavailable(
                        f"pymem: embedded PostgreSQL does not accept connections: {exc}",
                        hint=f"see {self.log_file}",
                    ) from exc
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (modes: smart, fast, immediate); no-op when stopped."""
        if self.is_running():
            bin_dir = find_pg_bin(self._pg_bin)
            self._run(
                [
                    str(bin_dir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    "60",
                ]
            )

    def kill(self, also: Sequence[int] = ()) -> None:
        """Kill the postmaster with SIGKILL, as a crash would (and the processes
        ``also`` names), and return once the server counts as stopped; its
        backends notice and exit. For crash-recovery tests and benchmarks:
        :meth:`start` then recovers from the WAL."""
        postmaster = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        for pid in (postmaster, *also):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        until = time.monotonic() + 30
        while self.is_running() and time.monotonic() < until:
            time.sleep(0.05)

    def destroy(self) -> None:
        """Stop the server and delete its folder."""
        self.stop("immediate")
        shutil.rmtree(self.home, ignore_errors=True)

    @classmethod
    @contextmanager
    def temporary(
        cls,
        prefix: str = "pymem-",
        *,
        tcp: bool = False,
        migrated: bool = True,
        settings: dict[str, str] | None = None,
    ) -> Iterator[EmbeddedPostgres]:
        """A throwaway cluster on a free port, migrated, removed on exit.

        For benchmarks and tools; it lives in a new folder under the system's
        temporary directory.
        """
        home = Path(tempfile.mkdtemp(prefix=prefix))
        shutil.rmtree(home)  # initdb wants to create it (and chown it) itself
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        server = cls(home, port=port, tcp=tcp, settings=settings)
        try:
            server.start()
            if migrated:
                from .migrate import migrate

                migrate(server.dsn())
            yield server
        finally:
            server.destroy()
