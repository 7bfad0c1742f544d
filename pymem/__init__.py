"""pymem: conversational memory for LLM applications that lives in PostgreSQL."""

from .aio import AsyncMemory, AsyncSession
from .backends import AsyncInMemoryBackend, AsyncMemoryBackend, InMemoryBackend, MemoryBackend
from .client import Memory, Session
from .errors import (
    AccessDenied,
    DatabaseUnavailable,
    DecryptionFailed,
    EmbeddedUnavailable,
    EmbeddingDimensionMismatch,
    IdempotencyKeyReused,
    InvalidArgument,
    InvalidBudget,
    InvalidIdentifier,
    InvalidMetadata,
    InvalidRole,
    KeyUnavailable,
    MessageTooLarge,
    PiiBlocked,
    PymemError,
    SchemaNotInstalled,
    SessionDeleted,
    SessionNotFound,
    SessionOwnedByAnotherUser,
    TenantAccessDenied,
    UnknownStrategy,
)
from .keys import EnvKeyProvider, FileKeyProvider, KeyProvider, KmsKeyProvider
from .models import (
    AppendResult,
    ContextItem,
    ContextWindow,
    NewMessage,
    SessionInfo,
    StoredMessage,
    TenantStats,
)
from .pii import PiiFilter
from .tokens import TiktokenCounter, TokenCounter

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AppendResult",
    "AsyncInMemoryBackend",
    "AsyncMemory",
    "AsyncMemoryBackend",
    "AsyncSession",
    "ContextItem",
    "ContextWindow",
    "DatabaseUnavailable",
    "DecryptionFailed",
    "EmbeddedUnavailable",
    "EmbeddingDimensionMismatch",
    "EnvKeyProvider",
    "FileKeyProvider",
    "IdempotencyKeyReused",
    "InMemoryBackend",
    "InvalidArgument",
    "InvalidBudget",
    "InvalidIdentifier",
    "InvalidMetadata",
    "InvalidRole",
    "KeyProvider",
    "KeyUnavailable",
    "KmsKeyProvider",
    "Memory",
    "MemoryBackend",
    "MessageTooLarge",
    "NewMessage",
    "PiiBlocked",
    "PiiFilter",
    "PymemError",
    "SchemaNotInstalled",
    "Session",
    "SessionDeleted",
    "SessionInfo",
    "SessionNotFound",
    "SessionOwnedByAnotherUser",
    "StoredMessage",
    "TenantAccessDenied",
    "TenantStats",
    "TiktokenCounter",
    "TokenCounter",
    "UnknownStrategy",
]
