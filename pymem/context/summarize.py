"""Summarizers: turn a run of turns (or of digests) into a short digest.

``ExtractiveSummarizer`` needs no network and is deterministic: it keeps the
sentences that carry the most of the chunk's distinctive words.
``ChatSummarizer`` asks any OpenAI-compatible chat-completions API.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import httpx

from ..models import StoredMessage, Summary
from .http import RetryPolicy, UpstreamError, post_json
from .ranking import STOPWORDS
from .tokens import TiktokenCounter, TokenCounter

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")
_WORD = re.compile(r"\w+")


def turn_text(turn: StoredMessage) -> str:
    """A turn as a digest reads it: its text, and the tool calls it made as
    ``[called name({...arguments})]``, so that digests remember what was done."""
    calls = [p for p in turn.parts or [] if p.get("type") == "tool_call"]
    described = [
        f"[called {c['name']}({json.dumps(c.get('arguments', {}), ensure_ascii=False)})]."
        for c in calls
    ]
    return " ".join([turn.content, *described]).strip() if described else turn.content


@runtime_checkable
class Summarizer(Protocol):
    """Writes digests; ``max_tokens`` bounds the digest's length."""

    @property
    def name(self) -> str: ...

    def summarize(self, turns: Sequence[StoredMessage], *, max_tokens: int) -> str:
        """A digest of consecutive turns."""
        ...

    def combine(self, digests: Sequence[Summary], *, max_tokens: int) -> str:
        """A digest of consecutive digests (the next level up)."""
        ...


class ExtractiveSummarizer:
    """Keeps the highest-scoring sentences, in their original order.

    A sentence scores the sum over its words of (frequency in the chunk) x
    log(sentences / sentences holding the word), divided by the square root
    of its length (halved under three words), so sentences dense in the
    chunk's own topics win and boilerplate ("thanks!", "see you") loses.
    """

    def __init__(self, counter: TokenCounter | None = None) -> None:
        self.counter = counter or TiktokenCounter()

    @property
    def name(self) -> str:
        return "extractive"

    def summarize(self, turns: Sequence[StoredMessage], *, max_tokens: int) -> str:
        units = []
        for turn in turns:
            for sentence in _SENTENCE.split(turn_text(turn).strip()):
                if sentence.strip():
                    units.append(sentence.strip())
        return self._pick(units, max_tokens)

    def combine(self, digests: Sequence[Summary], *, max_tokens: int) -> str:
        units = [u for d in digests for u in d.content.split("\n") if u.strip()]
        return self._pick(units, max_tokens)

    def _pick(self, units: list[str], max_tokens: int) -> str:
        if not units:
            return ""
        words = [[w for w in _WORD.findall(u.lower()) if w not in STOPWORDS] for u in units]
        tf = Counter(w for ws in words for w in ws)
        df = Counter(w for ws in words for w in set(ws))
        n = len(units)

        def score(i: int) -> float:
            ws = words[i]
            if not ws:
                return 0.0
            distinct = sum(tf[w] * math.log(n / df[w]) for w in set(ws)) / math.sqrt(len(ws))
            return distinct if len(ws) >= 3 else distinct / 2

        scores = [score(i) for i in range(n)]
        ranked = sorted(range(n), key=lambda i: (-scores[i], i))
        if scores[ranked[0]] > 0:
            ranked = [i for i in ranked if scores[i] > 0]  # nothing distinctive: leave it out
        chosen: list[int] = []
        seen: set[str] = set()
        used = 0
        for i in ranked:
            key = units[i].lower()
            if key in seen:
                continue
            cost = self.counter.count(units[i]) + 1
            if used + cost > max_tokens:
                continue
            chosen.append(i)
            seen.add(key)
            used += cost
        return "\n".join(units[i] for i in sorted(chosen))


class ChatSummarizer:
    """Digests written by an OpenAI-compatible ``/chat/completions`` endpoint."""

    PROMPT = (
        "You maintain the long-term memory of a conversation. Summarize the excerpt in at "
        "most {max_tokens} tokens: keep names, dates, numbers, decisions, preferences and "
        "open questions; drop greetings and filler. Write plain sentences, no preamble."
    )

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.policy = policy or RetryPolicy()
        self.client = client or httpx.Client(timeout=timeout)

    @property
    def name(self) -> str:
        return f"chat:{self.model}"

    def summarize(self, turns: Sequence[StoredMessage], *, max_tokens: int) -> str:
        transcript = "\n".join(f"{t.role}: {turn_text(t)}" for t in turns)
        return self._complete(transcript, max_tokens)

    def combine(self, digests: Sequence[Summary], *, max_tokens: int) -> str:
        return self._complete("\n\n".join(d.content for d in digests), max_tokens)

    def _complete(self, text: str, max_tokens: int) -> str:
        body = post_json(
            self.client,
            self.url,
            {
                "model": self.model,
                "temperature": 0,
                "max_tokens": max_tokens,
                "messages": [
                    {"role": "system", "content": self.PROMPT.format(max_tokens=max_tokens)},
                    {"role": "user", "content": text},
                ],
            },
            headers=self.headers,
            policy=self.policy,
        )
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise UpstreamError(f"pymem: {self.url} sent no choices[0].message.content") from None
        if not isinstance(content, str) or not content.strip():
            raise UpstreamError(f"pymem: {self.url} sent an empty summary")
        return content.strip()
