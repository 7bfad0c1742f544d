"""One small, tested retry policy for OpenAI-compatible HTTP APIs.

Retries only what can succeed on a second try: timeouts, connection errors,
429 (honouring Retry-After) and 5xx. Other 4xx answers and malformed replies
fail at once with a typed error. Backoff is exponential with full jitter and
a cap; the clock and the random source are injectable for tests.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from ..errors import PymemError


class UpstreamError(PymemError):
    """An LLM or embedding API failed, answered with an error, or sent a malformed reply."""

    default_hint = "check the API's base URL, key and model; `pymem worker` retries with backoff"


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter: sleep U(0, min(cap, base * 2**attempt))."""

    max_retries: int = 4
    base: float = 0.5
    cap: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        return self.rng.uniform(0, min(self.cap, self.base * 2**attempt))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def post_json(
    client: httpx.Client,
    url: str,
    payload: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """POST ``payload`` and return the decoded JSON object, retrying per ``policy``."""
    policy = policy or RetryPolicy()
    last: str = ""
    for attempt in range(policy.max_retries + 1):
        retry_after: float | None = None
        try:
            response = client.post(url, json=dict(payload), headers=dict(headers or {}))
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            elif response.status_code >= 400:
                raise UpstreamError(
                    f"pymem: {url} answered HTTP {response.status_code}: {response.text[:300]}",
                    hint="a request error is not retried: check the model name and API key",
                )
            else:
                try:
                    body = response.json()
                except ValueError:
                    raise UpstreamError(
                        f"pymem: {url} sent a reply that is not JSON: {response.text[:200]!r}"
                    ) from None
                if not isinstance(body, dict):
                    raise UpstreamError(f"pymem: {url} sent JSON that is not an object")
                return body
        if attempt < policy.max_retries:
            policy.sleep(policy.delay(attempt, retry_after))
    raise UpstreamError(
        f"pymem: {url} failed {policy.max_retries + 1} times; last: {last}",
        hint="the service is down or rate-limited; the job is retried later",
    )
