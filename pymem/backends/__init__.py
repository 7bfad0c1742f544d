"""Storage backends. All of them pass the same contract suite."""

from .base import AsyncMemoryBackend, MemoryBackend
from .memory import AsyncInMemoryBackend, InMemoryBackend

__all__ = ["AsyncInMemoryBackend", "AsyncMemoryBackend", "InMemoryBackend", "MemoryBackend"]
