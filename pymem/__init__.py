"""pymem: conversational memory for LLM applications that lives in PostgreSQL."""

from .aio import AsyncMemory, AsyncSession
from .backends import AsyncInMemoryBackend, AsyncMemoryBackend, InMemoryBackend, MemoryBackend
from .client import Memory, Session
from .errors import (
    DatabaseUnavailable,
    EmbeddedUnavailable,
    EmbeddingDimensionMismatch,
    IdempotencyKeyReused,
    InvalidArgument,
    InvalidBudget,
    InvalidIdentifier,
    InvalidMetadata,
    InvalidRole,
    MessageTooLarge,
    PymemError,
    SchemaNotInstalled,
    SessionDeleted,
    SessionNotFound,
    SessionOwnedByAnotherUser,
    UnknownStrategy,
)
from .models import (
    AppendResult,
    ContextItem,
    ContextWindow,
    NewMessage,
    SessionInfo,
    StoredMessage,
    TenantStats,
)
from .tokens import TiktokenCounter, TokenCounter

__version__ = "0.1.0"

__all__ = [
    "AppendResult",
    "AsyncInMemoryBackend",
    "AsyncMemory",
    "AsyncMemoryBackend",
    "AsyncSession",
    "ContextItem",
    "ContextWindow",
    "DatabaseUnavailable",
    "EmbeddedUnavailable",
    "EmbeddingDimensionMismatch",
    "IdempotencyKeyReused",
    "InMemoryBackend",
    "InvalidArgument",
    "InvalidBudget",
    "InvalidIdentifier",
    "InvalidMetadata",
    "InvalidRole",
    "Memory",
    "MemoryBackend",
    "MessageTooLarge",
    "NewMessage",
    "PymemError",
    "SchemaNotInstalled",
    "Session",
    "SessionDeleted",
    "SessionInfo",
    "SessionNotFound",
    "SessionOwnedByAnotherUser",
    "StoredMessage",
    "TenantStats",
    "TiktokenCounter",
    "TokenCounter",
    "UnknownStrategy",
]
