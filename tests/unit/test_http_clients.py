"""OpenAI-compatible clients against a local HTTP server that speaks the API."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from pymem.context.embed import OpenAIEmbedder
from pymem.context.http import RetryPolicy, UpstreamError, parse_retry_after
from pymem.context.summarize import ChatSummarizer
from pymem.models import StoredMessage


class FakeAPI:
    """Answers from a script: each request pops the next (status, body, headers, delay)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, Any, dict[str, str], float]] = []
        self.requests: list[dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                api.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("authorization"),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                status, body, headers, delay = api.script.pop(0)
                time.sleep(delay)
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def reply(
        self,
        status: int = 200,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.script.append((status, body if body is not None else {}, headers or {}, delay))


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    fake = FakeAPI()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def chat_reply(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def _turns() -> list[StoredMessage]:
    now = datetime.now(UTC)
    return [
        StoredMessage(1, "user", "My tent pole broke.", 6, False, {}, now),
        StoredMessage(2, "assistant", "A new one ships today.", 6, False, {}, now),
    ]


class Clock:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _summarizer(api: FakeAPI, clock: Clock, timeout: float = 2.0) -> ChatSummarizer:
    policy = RetryPolicy(max_retries=3, base=0.5, cap=8, sleep=clock.sleep)
    return ChatSummarizer(
        api.url,
        model="tiny",
        api_key="sk-test",
        policy=policy,
        client=httpx.Client(timeout=timeout),
    )


def test_summary_request_and_reply(api: FakeAPI) -> None:
    api.reply(body=chat_reply("  The user's pole broke; a replacement ships today. "))
    text = _summarizer(api, Clock()).summarize(_turns(), max_tokens=40)
    assert text == "The user's pole broke; a replacement ships today."
    (request,) = api.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "tiny" and request["body"]["max_tokens"] == 40
    assert "user: My tent pole broke." in request["body"]["messages"][1]["content"]


def test_429_waits_for_retry_after(api: FakeAPI) -> None:
    clock = Clock()
    api.reply(429, {"error": "slow down"}, {"Retry-After": "3"})
    api.reply(body=chat_reply("ok"))
    assert _summarizer(api, clock).summarize(_turns(), max_tokens=10) == "ok"
    assert clock.sleeps == [3.0]


def test_5xx_backs_off_then_gives_up(api: FakeAPI) -> None:
    clock = Clock()
    for _ in range(4):
        api.reply(503, "unavailable")
    with pytest.raises(UpstreamError, match="failed 4 times"):
        _summarizer(api, clock).summarize(_turns(), max_tokens=10)
    assert len(clock.sleeps) == 3
    assert all(0 <= s <= cap for s, cap in zip(clock.sleeps, [0.5, 1.0, 2.0], strict=True))


def test_timeout_is_retried(api: FakeAPI) -> None:
    clock = Clock()
    api.reply(body=chat_reply("late"), delay=1.0)
    api.reply(body=chat_reply("on time"))
    assert _summarizer(api, clock, timeout=0.3).summarize(_turns(), max_tokens=10) == "on time"
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        {"choices": []},
        {"choices": [{"message": {"content": ""}}]},
        {"choices": [{"message": {"content": None}}]},
        [1, 2],
    ],
)
def test_malformed_replies_fail_at_once(api: FakeAPI, body: Any) -> None:
    clock = Clock()
    api.reply(body=body)
    with pytest.raises(UpstreamError):
        _summarizer(api, clock).summarize(_turns(), max_tokens=10)
    assert clock.sleeps == [] and len(api.requests) == 1


def test_client_errors_are_not_retried(api: FakeAPI) -> None:
    api.reply(401, {"error": "bad key"})
    with pytest.raises(UpstreamError, match="HTTP 401") as caught:
        _summarizer(api, Clock()).summarize(_turns(), max_tokens=10)
    assert "API key" in caught.value.hint and len(api.requests) == 1


def test_embeddings(api: FakeAPI) -> None:
    api.reply(
        body={
            "data": [
                {"index": 1, "embedding": [0.0, 1.0, 0.0]},
                {"index": 0, "embedding": [1.0, 0.0, 0.0]},
            ]
        }
    )
    embedder = OpenAIEmbedder(
        api.url, model="e", dimension=3, policy=RetryPolicy(sleep=Clock().sleep)
    )
    assert embedder.embed(["a", "b"]) == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert api.requests[0]["body"] == {"model": "e", "input": ["a", "b"]}
    api.reply(body={"data": [{"index": 0, "embedding": [1.0, 0.0]}]})
    with pytest.raises(UpstreamError, match="dimension 3"):
        embedder.embed(["a"])
    assert embedder.embed([]) == []


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    later = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(later, now) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_is_capped_with_full_jitter() -> None:
    import random

    policy = RetryPolicy(base=1, cap=5, rng=random.Random(1))
    delays = [policy.delay(attempt) for attempt in range(10)]
    assert all(0 <= d <= 5 for d in delays)
    assert policy.delay(0, retry_after=99) == 5
