"""The ``pymem`` command line: migrate, doctor, stats, maintain, worker, exporter, and more."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from ..config import Settings
from ..errors import KeyUnavailable, PymemError

app = typer.Typer(
    help="pymem: conversational memory for LLM applications, in PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

DsnOption = Annotated[
    str | None,
    typer.Option("--dsn", help="PostgreSQL DSN or URL (default: $PYMEM_DSN)."),
]
EmbeddedOption = Annotated[
    bool,
    typer.Option("--embedded", help="Use the embedded cluster (started if needed)."),
]


def _dsn(dsn: str | None, embedded: bool = False) -> str:
    if embedded:
        from ..db.embedded import EmbeddedPostgres

        return EmbeddedPostgres().start().dsn()
    found = dsn or Settings.from_env().dsn
    if not found:
        err.print("[red]error:[/] no database given. Pass --dsn, set PYMEM_DSN, or use --embedded.")
        raise typer.Exit(2)
    return found


def _fail(exc: PymemError) -> None:
    err.print(f"[red]error:[/] {exc.message}")
    if exc.hint:
        err.print(f"[yellow]hint:[/] {exc.hint}")
    raise typer.Exit(1)


@app.command()
def migrate(
    dsn: DsnOption = None,
    embedded: EmbeddedOption = False,
    embedding_dim: Annotated[
        int | None,
        typer.Option(
            help="Embedding dimension, fixed when the recall migration first runs (default 1536)."
        ),
    ] = None,
    partition_interval: Annotated[
        str | None,
        typer.Option(help="monthly (default), weekly or daily; fixed when pg_partman is set up."),
    ] = None,
    lock_timeout: Annotated[
        float, typer.Option(help="Seconds a step may wait for a table lock before giving way.")
    ] = 2.0,
    deadline: Annotated[
        float, typer.Option(help="Seconds to keep retrying steps that gave way.")
    ] = 300.0,
    citus: Annotated[
        bool,
        typer.Option(
            "--citus",
            help="The database is a Citus coordinator: distribute pymem by tenant "
            "(docs/scale-out.md).",
        ),
    ] = False,
) -> None:
    """Apply pending migrations, then the sql/ files that changed (safe to repeat).

    Safe while the application runs: with nothing new it takes no table lock,
    and a step that needs one gives way to traffic and retries."""
    from ..db.migrate import migrate as run

    try:
        report = run(
            _dsn(dsn, embedded),
            embedding_dim=embedding_dim,
            partition_interval=partition_interval,
            lock_timeout=lock_timeout,
            deadline=deadline,
            citus=citus,
        )
    except PymemError as exc:
        _fail(exc)
        return
    applied = ", ".join(report.applied) or "none pending"
    console.print(f"[green]migrations applied:[/] {applied}")
    console.print(f"[green]sql files applied:[/] {len(report.sql_files)} (unchanged ones skipped)")
    if report.partitions_created:
        console.print(f"[green]partitions created:[/] {', '.join(report.partitions_created)}")
    if report.lock_waits:
        console.print(f"[yellow]gave way to other transactions:[/] {report.lock_waits} times")


@app.command()
def rollback(
    dsn: DsnOption = None,
    steps: Annotated[int | None, typer.Option(help="How many migrations (default: all).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Roll back pymem migrations. Rolling back the core tables DELETES all data."""
    from ..db.migrate import rollback as run

    target = _dsn(dsn)
    if not yes:
        typer.confirm(
            "Roll back pymem migrations (this can drop stored conversations)?", abort=True
        )
    try:
        report = run(target, steps=steps)
    except PymemError as exc:
        _fail(exc)
        return
    console.print(f"[yellow]rolled back:[/] {', '.join(report.rolled_back) or 'nothing'}")
    console.print("the functions of sql/ were removed; `pymem migrate` brings everything back")


@app.command()
def demo(
    dsn: DsnOption = None,
    home: Annotated[
        str | None, typer.Option(help="Folder of the embedded cluster (default: PYMEM_HOME).")
    ] = None,
) -> None:
    """A scripted support conversation: appends, budgeted context windows, stats.

    Runs against --dsn or $PYMEM_DSN when given, else the embedded cluster."""
    from .demo import run_demo

    try:
        run_demo(console, dsn=dsn or Settings.from_env().dsn, home=home)
    except PymemError as exc:
        _fail(exc)


@app.command()
def doctor(dsn: DsnOption = None, embedded: EmbeddedOption = False) -> None:
    """Check the server, extensions and migration state; say what to fix."""
    from .doctor import run_checks

    problems = run_checks(console, _dsn(dsn, embedded))
    raise typer.Exit(1 if problems else 0)


@app.command()
def stats(
    dsn: DsnOption = None,
    embedded: EmbeddedOption = False,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
) -> None:
    """Sessions, messages and tokens per tenant."""
    from ..backends.postgres import PostgresBackend

    backend = PostgresBackend(_dsn(dsn, embedded), max_size=1)
    try:
        rows = backend.open().stats(tenant)
    except PymemError as exc:
        _fail(exc)
        return
    finally:
        backend.close()
    table = Table(title="pymem stats")
    for column in ("tenant", "sessions", "live", "messages", "tokens", "last activity"):
        table.add_column(column, justify="left" if column == "tenant" else "right")
    for r in rows:
        last = r.last_activity.isoformat(timespec="seconds") if r.last_activity else "-"
        table.add_row(
            r.tenant_id,
            f"{r.sessions:,}",
            f"{r.live_sessions:,}",
            f"{r.messages:,}",
            f"{r.tokens:,}",
            last,
        )
    console.print(table)


@app.command()
def maintain(
    dsn: DsnOption = None,
    embedded: EmbeddedOption = False,
) -> None:
    """Partitions ahead (pg_partman) and retention, then purge expired sessions.

    A running `pymem worker` does this hourly; without one, schedule it."""
    try:
        with psycopg.connect(_dsn(dsn, embedded), autocommit=True) as conn:
            # Step by step: a session it trims waits only for one step's commit.
            row = conn.execute("call memory.maintain_in_steps()").fetchone()
    except psycopg.Error as exc:
        from ..errors import translate

        mapped = translate(exc)
        if mapped is None:
            raise
        _fail(mapped)
        return
    assert row is not None
    _, created, expired, removed = row
    console.print(
        f"partitions created: {', '.join(created) or 'none'}; expired sessions purged: {expired}; "
        f"turns past retention removed: {removed}"
    )


@app.command()
def schedule(
    dsn: DsnOption = None,
    cron_dsn: Annotated[
        str | None,
        typer.Option(
            help="The database that holds pg_cron (cron.database_name), when it is not --dsn's."
        ),
    ] = None,
    cron: Annotated[
        str, typer.Option("--cron", help="When pg_cron checks (cron syntax).")
    ] = "*/5 * * * *",
    every: Annotated[
        int, typer.Option(help="Seconds between maintenance runs (at least 60).")
    ] = 3600,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the job instead.")] = False,
) -> None:
    """Let pg_cron run maintenance (memory.maintain_in_steps) in the database.

    For installations without a running `pymem worker`, which maintains on its own."""
    from datetime import timedelta

    from .schedule import schedule_maintenance, unschedule_maintenance

    target = _dsn(dsn)
    try:
        if remove:
            gone = unschedule_maintenance(target, cron_dsn=cron_dsn)
            console.print("maintenance job removed" if gone else "no maintenance job was scheduled")
            return
        job = schedule_maintenance(
            target, cron_dsn=cron_dsn, schedule=cron, every=timedelta(seconds=every)
        )
    except PymemError as exc:
        _fail(exc)
        return
    console.print(
        f"pg_cron job {job.job_id} [cyan]{job.name}[/]: '{job.schedule}' in database "
        f"{job.database}: {job.command}"
    )


@app.command()
def mcp(
    dsn: DsnOption = None,
    embedded: EmbeddedOption = False,
    tenant: Annotated[
        str | None,
        typer.Option(
            help="The tenant whose conversations the tools reach (default: $PYMEM_TENANT)."
        ),
    ] = None,
    transport: Annotated[
        str, typer.Option(help="stdio (for a client that starts the server) or http.")
    ] = "stdio",
    host: Annotated[str, typer.Option(help="Address for --transport http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for --transport http (path /mcp).")] = 8765,
) -> None:
    """Serve append, context, recall, list_sessions, export and erase as MCP tools.

    For one tenant, fixed here: no tool takes a tenant. Needs pymem[mcp]."""
    import asyncio

    from ..integrations.mcp import serve

    chosen = tenant or Settings.from_env().tenant
    try:
        asyncio.run(
            serve(_dsn(dsn, embedded), tenant=chosen, transport=transport, host=host, port=port)
        )
    except PymemError as exc:
        _fail(exc)


@app.command()
def worker(
    dsn: DsnOption = None,
    embedded: EmbeddedOption = False,
    once: Annotated[bool, typer.Option("--once", help="Drain what is due, then exit.")] = False,
    summarizer: Annotated[
        str, typer.Option(help="extractive (offline) or chat (OpenAI-compatible, PYMEM_LLM_*).")
    ] = "extractive",
    embedder: Annotated[
        str, typer.Option(help="none, hashing (offline) or openai (PYMEM_EMBED_*).")
    ] = "none",
    name: Annotated[str | None, typer.Option(help="Worker name (default host-pid).")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve the worker's own metrics on this port (pymem[metrics])."),
    ] = None,
    metrics_address: Annotated[
        str, typer.Option(help="Address for --metrics-port (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    maintain_every: Annotated[
        int,
        typer.Option(help="Run maintenance every this many seconds (one worker does; 0: never)."),
    ] = 3600,
    poll: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Look for due jobs every this many seconds between NOTIFY wake-ups "
            "(the fallback when a node cannot be listened to, docs/scale-out.md).",
        ),
    ] = 5.0,
) -> None:
    """Drain the job queue (digests, embeddings) and run maintenance when due."""
    import os

    from ..client import Memory
    from ..context.embed import Embedder, HashingEmbedder, OpenAIEmbedder
    from ..context.summarize import ChatSummarizer, ExtractiveSummarizer, Summarizer
    from .worker import Worker

    env = os.environ
    # Encrypting tenants' turns are read and their digests sealed with the
    # master key of PYMEM_MASTER_KEY, and with PYMEM_REDIS set the cached
    # windows of the sessions it changes are invalidated: Memory.connect reads
    # both, as it does for the application.
    try:
        memory = Memory.connect(_dsn(dsn, embedded), max_size=2, metrics=metrics_port is not None)
        if metrics_port is not None:
            from ..telemetry.exporter import serve_metrics

            assert memory.metrics is not None
            served = serve_metrics(memory.metrics.registry, metrics_port, metrics_address)
            console.print(f"metrics on {served.url}")
    except PymemError as exc:
        _fail(exc)
        return
    chosen_summarizer: Summarizer = ExtractiveSummarizer()
    if summarizer == "chat":
        chosen_summarizer = ChatSummarizer(
            env.get("PYMEM_LLM_BASE_URL", "https://api.openai.com/v1"),
            model=env.get("PYMEM_LLM_MODEL", "gpt-4o-mini"),
            api_key=env.get("PYMEM_LLM_API_KEY"),
        )
    chosen_embedder: Embedder | None = None
    dim = int(env.get("PYMEM_EMBED_DIM", "1536"))
    if embedder == "hashing":
        chosen_embedder = HashingEmbedder(dim)
    elif embedder == "openai":
        chosen_embedder = OpenAIEmbedder(
            env.get("PYMEM_EMBED_BASE_URL", "https://api.openai.com/v1"),
            model=env.get("PYMEM_EMBED_MODEL", "text-embedding-3-small"),
            dimension=dim,
            api_key=env.get("PYMEM_EMBED_API_KEY"),
        )
    from datetime import timedelta

    w = Worker(
        memory,
        name=name,
        summarizer=chosen_summarizer,
        embedder=chosen_embedder,
        maintain_every=timedelta(seconds=maintain_every) if maintain_every > 0 else None,
    )
    console.print(
        f"worker [cyan]{w.name}[/]: {', '.join(w.kinds)} "
        f"(summarizer {chosen_summarizer.name}"
        f"{', embedder ' + chosen_embedder.name if chosen_embedder else ''})"
    )
    try:
        if once:
            console.print(f"processed {w.drain()} jobs")
        else:
            w.run_forever(poll=timedelta(seconds=poll))
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        memory.close()


@app.command()
def exporter(
    dsn: DsnOption = None,
    port: Annotated[int, typer.Option(help="Port to serve /metrics on.")] = 9480,
    address: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    per_tenant: Annotated[
        bool,
        typer.Option("--per-tenant", help="Sessions, messages and tokens per tenant."),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds a read of memory.metrics() may take.")
    ] = 5.0,
) -> None:
    """Serve the database's figures (memory.metrics()) as Prometheus metrics.

    The login needs pymem_monitor (or pymem_owner). Each scrape reads
    memory.metrics() once; when the database is down, pymem_db_up is 0."""
    import time

    from ..telemetry.exporter import DatabaseCollector, database_registry, serve_metrics

    collector = DatabaseCollector(_dsn(dsn), per_tenant=per_tenant, timeout=timeout)
    try:
        series = collector.check()
        server = serve_metrics(database_registry(collector), port, address)
    except PymemError as exc:
        _fail(exc)
        return
    console.print(f"exporter: {series} series on {server.url}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.close()
        collector.close()


audit_app = typer.Typer(help="Verify the audit chain and keep signed checkpoints of it.")
app.add_typer(audit_app, name="audit")


def _audit_key() -> bytes:
    import os

    key = os.environ.get("PYMEM_AUDIT_KEY", "")
    if not key:
        err.print("[red]error:[/] set PYMEM_AUDIT_KEY to the checkpoint signing key")
        raise typer.Exit(2)
    return key.encode()


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[str, typer.Option(help="File to append the signed checkpoint to.")],
    dsn: DsnOption = None,
) -> None:
    """Sign every tenant's chain head and append it to a file kept outside the database."""
    import json

    from ..security.audit import checkpoint

    with psycopg.connect(_dsn(dsn)) as conn:
        document = checkpoint(conn, _audit_key())
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(document, sort_keys=True) + "\n")
    console.print(f"checkpoint of {len(document['heads'])} chains appended to {out}")


@audit_app.command("verify")
def audit_verify(
    dsn: DsnOption = None,
    checkpoint_file: Annotated[
        str | None, typer.Option("--checkpoint", help="Also check against this file's last line.")
    ] = None,
) -> None:
    """Check every chain, and against a signed checkpoint when given."""
    import json

    from ..security.audit import verify_checkpoint

    with psycopg.connect(_dsn(dsn)) as conn:
        if checkpoint_file:
            with open(checkpoint_file, encoding="utf-8") as fh:
                document = json.loads(fh.read().strip().splitlines()[-1])
            try:
                problems = verify_checkpoint(conn, document, _audit_key())
            except PymemError as exc:
                _fail(exc)
                return
        else:
            rows = conn.execute("select * from memory.verify_audit()").fetchall()
            problems = [f"{t}: row {i}: {p}" for t, i, p in rows]
    for problem in problems:
        console.print(f"[red]TAMPERED[/] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print("[green]audit chains intact[/]")


keys_app = typer.Typer(help="Encryption at rest: master keys, tenant modes, rotation.")
app.add_typer(keys_app, name="keys")

TenantOption = Annotated[str, typer.Option("--tenant", help="The tenant to act for.")]
BatchOption = Annotated[
    int, typer.Option("--batch", help="Rows re-encrypted per transaction (appends go on).")
]


def _keyed_connection(dsn: str | None, *, previous: bool = False) -> psycopg.Connection[Any]:
    """A connection with the master key of $PYMEM_MASTER_KEY; without that
    variable, a plain one where the server reads its key file (keys node-file)."""
    from ..security.keys import EnvKeyProvider, with_master_key
    from ..security.node_key import node_key_installed

    try:
        url = with_master_key(_dsn(dsn), EnvKeyProvider(), previous=previous)
        return psycopg.connect(url, autocommit=True)
    except KeyUnavailable as exc:
        if os.environ.get("PYMEM_MASTER_KEY"):
            _fail(exc)
        plain = psycopg.connect(_dsn(dsn), autocommit=True)
        if node_key_installed(plain):
            return plain
        plain.close()
        _fail(exc)
        raise  # unreachable: _fail exits
    except PymemError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


def _reencrypt(conn: psycopg.Connection[Any], tenant: str, batch: int) -> None:
    from ..security.encryption import Progress, reencrypt_all

    def report(step: Progress) -> None:
        console.print(
            f"  {step.sessions} sessions, {step.messages} messages, {step.summaries} digests;"
            f" {step.sessions_remaining} sessions to go"
        )

    total = reencrypt_all(conn, tenant, batch_rows=batch, on_batch=report)
    console.print(
        f"[green]{tenant}[/]: {total.messages} messages and {total.summaries} digests rewritten"
    )


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new random master key (64 hex digits) for PYMEM_MASTER_KEY."""
    from ..security.keys import generate_master_key

    print(generate_master_key())


@keys_app.command("node-file")
def keys_node_file(
    path: Annotated[str, typer.Argument(help="Absolute path of the key file on every node.")],
    dsn: DsnOption = None,
) -> None:
    """Let the server read the master key from a file on each node (needed on
    Citus workers); run as a superuser. Clients may then connect without it."""
    from ..security.node_key import install_node_key

    with psycopg.connect(_dsn(dsn), autocommit=True) as conn:
        try:
            found = install_node_key(conn, path)
        except PymemError as exc:
            _fail(exc)
            return
    console.print(f"master key {found.fingerprint} read from {found.path}")
    if found.previous_fingerprint:
        console.print(f"previous master key {found.previous_fingerprint} read from {path}.previous")
    for node, fingerprint in sorted(found.workers.items()):
        console.print(f"  {node}: {fingerprint}")


@keys_app.command("configure")
def keys_configure(
    tenant: TenantOption,
    mode: Annotated[str, typer.Option(help="none, content or content_with_search.")],
    dsn: DsnOption = None,
    batch: BatchOption = 2000,
) -> None:
    """Choose how a tenant stores text, then bring its existing rows to it."""
    from ..security.encryption import configure

    with _keyed_connection(dsn) as conn:
        try:
            version = configure(conn, tenant, mode)
            console.print(f"{tenant}: mode {mode}, data key {version}")
            _reencrypt(conn, tenant, batch)
        except PymemError as exc:
            _fail(exc)


@keys_app.command("rotate")
def keys_rotate(tenant: TenantOption, dsn: DsnOption = None, batch: BatchOption = 2000) -> None:
    """New data key for a tenant; re-encrypt its rows online; destroy the old key."""
    from ..security.encryption import rotate

    with _keyed_connection(dsn) as conn:
        try:
            console.print(f"{tenant}: data key {rotate(conn, tenant)}")
            _reencrypt(conn, tenant, batch)
        except PymemError as exc:
            _fail(exc)


@keys_app.command("rewrap")
def keys_rewrap(dsn: DsnOption = None) -> None:
    """Move every data key from PYMEM_PREVIOUS_MASTER_KEY to PYMEM_MASTER_KEY."""
    from ..security.encryption import rewrap_all

    with _keyed_connection(dsn, previous=True) as conn:
        try:
            done = rewrap_all(conn)
        except PymemError as exc:
            _fail(exc)
            return
    for tenant, count in done.items():
        console.print(f"{tenant}: {count} data keys re-wrapped")
    console.print("[green]done[/]: the previous master key is no longer needed")


@keys_app.command("status")
def keys_status(dsn: DsnOption = None) -> None:
    """Each encrypting tenant's mode, key versions and sessions still to re-encrypt."""
    from ..security.encryption import status

    with psycopg.connect(_dsn(dsn)) as conn:
        rows = status(conn)
    table = Table("tenant", "mode", "active key", "keys", "sessions behind")
    for r in rows:
        table.add_row(
            r.tenant, r.mode, str(r.active_version or "-"), str(r.versions), str(r.sessions_behind)
        )
    console.print(table)


@app.command("sql-reference")
def sql_reference(dsn: DsnOption = None, embedded: EmbeddedOption = False) -> None:
    """Print the SQL reference (Markdown) generated from the function comments."""
    from ..db.sqlref import render

    with psycopg.connect(_dsn(dsn, embedded)) as conn:
        sys.stdout.write(render(conn))


@app.command("embedded-stop")
def embedded_stop() -> None:
    """Stop the embedded cluster (its data stays for the next start)."""
    from ..db.embedded import EmbeddedPostgres

    EmbeddedPostgres().stop()
    console.print("embedded PostgreSQL stopped")


def main() -> None:  # pragma: no cover - console entry point
    from ..correlation import configure_logging

    # Warnings of the worker and the Redis tier, with their correlation ids;
    # PYMEM_LOG_FORMAT=json writes one JSON object per line.
    configure_logging(json_lines=os.environ.get("PYMEM_LOG_FORMAT", "").lower() == "json")
    try:
        app()
    except PymemError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)
