"""pymem as Model Context Protocol tools: ``pymem mcp``.

An MCP client (an IDE, a desktop assistant, an agent framework) gets six
tools over one tenant's conversations: ``append``, ``context``, ``recall``,
``list_sessions``, ``export_subject`` and ``erase_subject``. The tenant is
the server's (``--tenant`` or ``PYMEM_TENANT``): no tool takes one, so a
client cannot reach another tenant by naming it. Give each tenant its own
server (and database login, see docs/security.md) when several share a
database.

Needs the official ``mcp`` package (``pip install 'pymem[mcp]'``); serves
stdio (the default) or streamable HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..aio import AsyncMemory
from ..errors import PymemError
from ..transcript.parts import part_from_json


@contextmanager
def _answers() -> Iterator[None]:
    """A pymem error reaches the client as the tool's error, with its hint."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        yield
    except PymemError as exc:
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        raise ToolError(f"{exc.message}{hint}") from exc


def build_server(memory: AsyncMemory, *, tenant: str, name: str = "pymem") -> Any:
    """An ``mcp`` server whose tools act on ``tenant``'s conversations in ``memory``."""
    try:
        from mcp.server.mcpserver import MCPServer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PymemError(
            "pymem: the MCP server needs the mcp package (version 2)",
            hint="pip install 'pymem[mcp]'",
        ) from exc

    server = MCPServer(
        name,
        instructions=(
            f"Conversation memory for tenant {tenant!r}: append turns, build a context "
            "window within a token budget, recall older turns relevant to a query."
        ),
    )

    @server.tool(
        description=(
            "Store one message in a session (created on first use): `content` text, or "
            '`parts` such as [{"type": "tool_call", "id": "call_1", "name": "f", '
            '"arguments": {}}] or [{"type": "tool_result", "call_id": "call_1", "content": "..."}].'
        )
    )
    async def append(
        session_id: str,
        role: str,
        content: str = "",
        parts: list[dict[str, Any]] | None = None,
        name: str | None = None,
        user: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        with _answers():
            chat = memory.session(session_id, tenant=tenant, user=user)
            result = await chat.append(
                role,
                content,
                parts=None if parts is None else [part_from_json(p) for p in parts],
                name=name,
                idempotency_key=idempotency_key,
            )
            return {"seq": result.seq, "duplicate": result.duplicate}

    @server.tool(
        description=(
            "The context window for the next model call, within `budget` tokens: "
            "strategy recent, summary or hybrid (hybrid also recalls turns relevant to `query`)."
        )
    )
    async def context(
        session_id: str, budget: int, strategy: str = "recent", query: str | None = None
    ) -> dict[str, Any]:
        with _answers():
            window = await memory.session(session_id, tenant=tenant).context(
                budget=budget, strategy=strategy, query=query
            )
            return {"messages": window.messages(), "tokens": window.tokens, "budget": window.budget}

    @server.tool(description="The turns of a session most relevant to `query`, best first.")
    async def recall(session_id: str, query: str, max_rows: int = 10) -> list[dict[str, Any]]:
        with _answers():
            found = await memory.session(session_id, tenant=tenant).recall(query, max_rows=max_rows)
            return [
                {"seq": r.seq, "role": r.role, "content": r.content, "score": r.score}
                for r in found
            ]

    @server.tool(description="The tenant's sessions (of one user, when given), oldest id first.")
    async def list_sessions(user: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with _answers():
            out: list[dict[str, Any]] = []
            async for info in memory.sessions(tenant=tenant, user=user, page_size=min(limit, 500)):
                out.append(
                    {
                        "session_id": info.session_id,
                        "user_id": info.user_id,
                        "message_count": info.message_count,
                        "created_at": info.created_at.isoformat(),
                    }
                )
                if len(out) >= limit:
                    break
            return out

    @server.tool(description="Everything held about a user (GDPR export), as JSON.")
    async def export_subject(user: str) -> dict[str, Any]:
        with _answers():
            return await memory.export_subject(user, tenant=tenant)

    @server.tool(description="Erase every session of a user (GDPR erasure); irreversible.")
    async def erase_subject(user: str) -> list[dict[str, Any]]:
        with _answers():
            erased = await memory.erase_subject(user, tenant=tenant)
            return [{"session_id": s, "messages_removed": n} for s, n in erased]

    return server


async def serve(
    dsn: str,
    *,
    tenant: str,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
) -> None:
    """Connect to PostgreSQL and serve the tools until the client goes (stdio)
    or the process is stopped (streamable HTTP at ``http://host:port/mcp``)."""
    memory = await AsyncMemory.connect(dsn)
    try:
        server = build_server(memory, tenant=tenant)
        if transport == "stdio":
            await server.run_stdio_async()
        elif transport == "http":
            await server.run_streamable_http_async(host=host, port=port)
        else:
            raise PymemError(
                f"pymem: unknown MCP transport {transport!r}", hint="use stdio or http"
            )
    finally:
        await memory.close()
