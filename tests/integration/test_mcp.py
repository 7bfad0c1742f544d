"""`pymem mcp`: the tools in process, and the real command over stdio with the
official MCP client."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server.mcpserver.exceptions import ToolError

from pymem import AsyncMemory
from pymem.integrations.mcp import build_server

TOOLS = {"append", "context", "recall", "list_sessions", "export_subject", "erase_subject"}


def _payload(result: Any) -> Any:
    assert not result.is_error, result
    if result.structured_content is not None:
        found = result.structured_content
        return found.get("result", found) if set(found) == {"result"} else found
    return json.loads(result.content[0].text)


def test_the_tools_act_for_the_servers_tenant_only(dsn: str) -> None:
    async def scenario() -> None:
        async with await AsyncMemory.connect(dsn, max_size=2) as mem:
            server = build_server(mem, tenant="acme")
            tools = {t.name: t for t in await server.list_tools()}
            assert set(tools) == TOOLS
            for tool in tools.values():  # no tool lets a client name a tenant
                assert "tenant" not in json.dumps(tool.input_schema)
            first = _payload(
                await server.call_tool(
                    "append", {"session_id": "s", "role": "user", "content": "my parcel is late"}
                )
            )
            assert first == {"seq": 1, "duplicate": False}
            await server.call_tool(
                "append",
                {"session_id": "s", "role": "assistant", "content": "sorry", "user": None},
            )
            window = _payload(await server.call_tool("context", {"session_id": "s", "budget": 100}))
            assert [m["content"] for m in window["messages"]] == ["my parcel is late", "sorry"]
            # A tool call and its result, as parts.
            call = {"type": "tool_call", "id": "c1", "name": "track", "arguments": {"id": "P-9"}}
            await server.call_tool(
                "append", {"session_id": "t", "role": "assistant", "parts": [call]}
            )
            result = {"type": "tool_result", "call_id": "c1", "content": "in Oslo"}
            await server.call_tool("append", {"session_id": "t", "role": "tool", "parts": [result]})
            calls = _payload(await server.call_tool("context", {"session_id": "t", "budget": 100}))
            assert calls["messages"][0]["tool_calls"][0]["function"]["name"] == "track"
            assert calls["messages"][1] == {
                "role": "tool",
                "tool_call_id": "c1",
                "content": "in Oslo",
            }
            with pytest.raises(ToolError, match="unknown part type"):
                await server.call_tool(
                    "append", {"session_id": "t", "role": "user", "parts": [{"type": "audio"}]}
                )
            found = _payload(
                await server.call_tool("recall", {"session_id": "s", "query": "parcel"})
            )
            assert found[0]["seq"] == 1
            sessions = _payload(await server.call_tool("list_sessions", {}))
            assert [s["session_id"] for s in sessions] == ["s", "t"]
            # Another tenant's store stays out of reach.
            other = build_server(mem, tenant="globex")
            assert _payload(await other.call_tool("list_sessions", {})) == []
            # A pymem error is the tool's error, with its hint (clients see is_error).
            with pytest.raises(ToolError, match=r"unknown role 'robot'.*hint") as caught:
                await server.call_tool(
                    "append", {"session_id": "s", "role": "robot", "content": "x"}
                )
            assert "correlation id" not in str(caught.value)

    asyncio.run(scenario())


def test_pymem_mcp_over_stdio_with_the_official_client(dsn: str) -> None:
    async def scenario() -> tuple[Any, Any]:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "pymem", "mcp", "--dsn", dsn, "--tenant", "acme"],
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            assert {t.name for t in listed.tools} == TOOLS
            appended = await session.call_tool(
                "append", {"session_id": "cli", "role": "user", "content": "hello over stdio"}
            )
            window = await session.call_tool("context", {"session_id": "cli", "budget": 50})
            return appended, window

    appended, window = asyncio.run(scenario())
    assert _payload(appended)["seq"] == 1
    assert _payload(window)["messages"] == [{"role": "user", "content": "hello over stdio"}]


def test_pymem_mcp_over_streamable_http(dsn: str) -> None:
    import socket
    import subprocess
    import time

    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "pymem", "mcp", "--dsn", dsn, "--tenant", "acme",
         "--transport", "http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)

        async def scenario() -> Any:
            url = f"http://127.0.0.1:{port}/mcp"
            async with (
                streamable_http_client(url) as streams,
                ClientSession(streams[0], streams[1]) as session,
            ):
                await session.initialize()
                await session.call_tool(
                    "append", {"session_id": "web", "role": "user", "content": "hello over http"}
                )
                return await session.call_tool("context", {"session_id": "web", "budget": 50})

        window = asyncio.run(scenario())
        assert _payload(window)["messages"] == [{"role": "user", "content": "hello over http"}]
    finally:
        server.terminate()
        server.wait(timeout=10)
