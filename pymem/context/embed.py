"""Embedders: texts to vectors for semantic recall.

``HashingEmbedder`` needs no model and no network: it hashes words and word
pairs into a fixed number of signed buckets (deterministic; lexical rather
than semantic, but it exercises the whole vector path offline).
``OpenAIEmbedder`` calls any OpenAI-compatible ``/embeddings`` endpoint.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import httpx

from .http import RetryPolicy, UpstreamError, post_json
from .ranking import STOPWORDS

_WORD = re.compile(r"\w+")


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to vectors of ``dimension`` floats."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


class HashingEmbedder:
    """Signed feature hashing of words and adjacent word pairs, L2-normalised."""

    def __init__(self, dimension: int = 1536) -> None:
        if dimension < 8:
            raise ValueError("dimension must be at least 8")
        self._dimension = dimension

    @property
    def name(self) -> str:
        return f"hashing-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> list[float]:
        words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
        features = Counter(words + [f"{a} {b}" for a, b in itertools.pairwise(words)])
        vector = [0.0] * self._dimension
        for feature, count in features.items():
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            sign = 1.0 if value & 1 else -1.0
            vector[(value >> 1) % self._dimension] += sign * (1 + math.log(count))
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0:
            vector[0] = 1.0  # pgvector cannot compare a zero vector by cosine
            return vector
        return [x / norm for x in vector]


class OpenAIEmbedder:
    """Vectors from an OpenAI-compatible ``/embeddings`` endpoint."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        dimension: int,
        api_key: str | None = None,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self._dimension = dimension
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.policy = policy or RetryPolicy()
        self.client = client or httpx.Client(timeout=timeout)

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        body = post_json(
            self.client,
            self.url,
            {"model": self.model, "input": list(texts)},
            headers=self.headers,
            policy=self.policy,
        )
        try:
            data = sorted(body["data"], key=lambda d: d.get("index", 0))
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except (KeyError, TypeError, ValueError):
            raise UpstreamError(f"pymem: {self.url} sent no data[].embedding lists") from None
        if len(vectors) != len(texts) or any(len(v) != self._dimension for v in vectors):
            raise UpstreamError(
                f"pymem: {self.url} sent {len(vectors)} vectors for {len(texts)} texts "
                f"(expected dimension {self._dimension})",
                hint="the model's dimension must equal the database's (pymem migrate "
                "--embedding-dim)",
            )
        return vectors
