"""``pymem demo``: a short support conversation that shows what pymem does."""

from __future__ import annotations

import time
import uuid

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from ..backends.postgres import PostgresBackend
from ..client import Memory, Session
from ..models import ContextWindow

SCRIPT: tuple[tuple[str, str], ...] = (
    ("system", "You are Nova, the support assistant of Acme Outdoor. Be brief and kind."),
    ("user", "Hi! I ordered the Trailblazer 2 tent last week, order #A-7731."),
    (
        "assistant",
        "Hello! I can see order #A-7731: one Trailblazer 2 tent, delivered Monday. How can I help?",
    ),
    (
        "user",
        "One of the aluminium poles arrived snapped in half. We leave for the Alps on Friday.",
    ),
    (
        "assistant",
        "I'm sorry about that. I can ship a replacement pole set by express today "
        "so it arrives Thursday. Shall I?",
    ),
    ("user", "Yes please. Can it go to my office instead? 12 Harbour Street, Leith."),
    (
        "assistant",
        "Done: the replacement pole set ships express to 12 Harbour Street, Leith, "
        "arriving Thursday before noon.",
    ),
    ("user", "Brilliant. Do I need to send the broken pole back?"),
    ("assistant", "No need. Please recycle it; aluminium is accepted at most centres."),
    ("user", "Thanks Nova. Last thing: what's the best way to dry the tent after rain?"),
    (
        "assistant",
        "Pitch it loosely in the shade at home for a day, fly and inner apart. "
        "Never store it damp: mildew ruins the coating.",
    ),
)


def _window_table(title: str, window: ContextWindow) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, expand=True)
    table.add_column("seq", justify="right", style="dim", width=4)
    table.add_column("part", width=7)
    table.add_column("role", width=9)
    table.add_column("content", ratio=1)
    table.add_column("tokens", justify="right", width=6)
    for item in window:
        table.add_row(str(item.seq), item.part, item.role, item.content, str(item.tokens))
    table.caption = (
        f"{len(window)} messages, {window.tokens} of {window.budget} tokens "
        f"(strategy: {window.strategy})"
    )
    return table


def run_demo(console: Console, *, dsn: str | None = None, home: str | None = None) -> None:
    console.print(
        Panel.fit(
            "[bold]pymem[/] keeps LLM conversations in PostgreSQL and hands your model a "
            "context window that fits its token budget.",
            title="pymem demo",
        )
    )
    started = time.perf_counter()
    if dsn:
        console.print(f"Connecting to [cyan]{dsn}[/] ...")
        mem = Memory.connect(dsn, migrate=True)
    else:
        console.print("Starting the embedded PostgreSQL (first run creates it) ...")
        mem = Memory.embedded(home)
    console.print(f"[green]ready[/] in {time.perf_counter() - started:.1f}s, schema migrated\n")
    with mem:
        session_id = f"demo-{uuid.uuid4().hex[:8]}"
        chat = mem.session(session_id, tenant="acme-outdoor", user="customer-42")
        _appends(console, chat)
        _windows(console, chat)
        _from_sql(console, mem, session_id)
        _stats(console, mem, chat)
        console.print("\n[green]Done.[/] Try [bold]pymem doctor --embedded[/] or read README.md.")


def _appends(console: Console, chat: Session) -> None:
    console.rule(f"1. A conversation is appended: session [cyan]{chat.id}[/]")
    for turn, (role, content) in enumerate(SCRIPT):
        t0 = time.perf_counter()
        result = chat.append(role, content, idempotency_key=f"turn-{turn}")
        ms = (time.perf_counter() - t0) * 1000
        short = content[:44] + ("…" if len(content) > 44 else "")
        console.print(
            f"  seq [bold]{result.seq:>2}[/]  {role:<9} {short:<45} [dim]{ms:5.2f} ms[/]",
            highlight=False,
        )
    console.rule("2. A network blip: the client retries the last append")
    role, content = SCRIPT[-1]
    retry = chat.append(role, content, idempotency_key=f"turn-{len(SCRIPT) - 1}")
    console.print(
        f"  same idempotency key -> seq {retry.seq}, duplicate={retry.duplicate}: "
        "nothing was written twice\n"
    )


def _windows(console: Console, chat: Session) -> None:
    console.rule("3. Context windows for the next model call")
    for budget in (60, 150):
        window = chat.context(budget=budget)
        console.print(_window_table(f"budget {budget} tokens", window))
    question = "Which address is the replacement going to?"
    window = chat.context(budget=90, query=question, strategy="hybrid")
    console.print(_window_table(f'hybrid, budget 90, query "{question}"', window))
    console.print(
        "  [dim]hybrid recalls the older turn that answers the question "
        "(part 'recall') beside the newest one[/]"
    )
    window = chat.context(budget=400, message_overhead=4)
    console.print(
        f"\nReady for an OpenAI-style API ({window.tokens} tokens incl. 4 per "
        "message of chat framing):"
    )
    console.print(window.messages()[-2:], highlight=True)


def _from_sql(console: Console, mem: Memory, session_id: str) -> None:
    console.rule("4. The same window from any SQL client")
    query = f"select seq, role, tokens from memory.context('acme-outdoor', '{session_id}', 60);"
    console.print(f"  [cyan]{query}[/]", highlight=False)
    if isinstance(mem.backend, PostgresBackend):
        with mem.backend.tenant_connection("acme-outdoor") as conn:
            rows = conn.execute(
                "select seq, role, tokens from memory.context(%s, %s, 60)",
                ("acme-outdoor", session_id),
            ).fetchall()
        for seq, role, tokens in rows:
            console.print(f"   {seq:>3} | {role:<9} | {tokens:>3}", highlight=False)
    console.print()


def _stats(console: Console, mem: Memory, chat: Session) -> None:
    console.rule("5. Stats")
    info = chat.info()
    console.print(
        f"  session: {info.message_count} messages, {info.token_count} tokens "
        f"(counted with {mem.counter.name}), last seq {info.last_seq}"
    )
    table = Table("tenant", "sessions", "messages", "tokens")
    for row in mem.stats(tenant="acme-outdoor"):
        table.add_row(row.tenant_id, str(row.sessions), str(row.messages), str(row.tokens))
    console.print(table)
