"""Storage backends. All of them pass the same contract suite."""

from .base import MemoryBackend
from .base_async import AsyncMemoryBackend
from .memory import InMemoryBackend
from .memory_async import AsyncInMemoryBackend

__all__ = ["AsyncInMemoryBackend", "AsyncMemoryBackend", "InMemoryBackend", "MemoryBackend"]
