"""The backend contract: what every storage backend does.

:mod:`pymem.backends.base_async` is the source and :mod:`pymem.backends.base`
its generated sync twin. Each method mirrors one ``memory.*`` SQL function
and takes one value per request where the function takes many arguments
(:class:`NewMessage`, :class:`ContextRequest`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from ..models import (
    AppendResult,
    ContextRequest,
    ContextWindow,
    NewMessage,
    RecalledMessage,
    SessionInfo,
    StoredMessage,
    Summary,
    TenantStats,
)


@runtime_checkable
class AsyncMemoryBackend(Protocol):
    """Stores conversations; every method mirrors one ``memory.*`` SQL function."""

    async def append(
        self, tenant: str, session: str, message: NewMessage, *, user_id: str | None = None
    ) -> AppendResult: ...

    async def append_many(
        self,
        tenant: str,
        session: str,
        messages: Sequence[NewMessage],
        *,
        user_id: str | None = None,
    ) -> list[AppendResult]: ...

    async def history(
        self, tenant: str, session: str, *, after_seq: int = 0, page_size: int = 100
    ) -> list[StoredMessage]: ...

    async def last_messages(
        self, tenant: str, session: str, count: int = 50
    ) -> list[StoredMessage]: ...

    async def context(
        self, tenant: str, session: str, request: ContextRequest
    ) -> ContextWindow: ...

    async def recall(
        self,
        tenant: str,
        session: str,
        query: str,
        *,
        query_embedding: Sequence[float] | None = None,
        before_seq: int | None = None,
        max_rows: int = 50,
    ) -> list[RecalledMessage]: ...

    async def list_summaries(self, tenant: str, session: str) -> list[Summary]: ...

    async def add_summary(
        self,
        tenant: str,
        session: str,
        *,
        level: int,
        seq_from: int,
        seq_to: int,
        content: str,
        tokens: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> int: ...

    async def configure_recall(
        self,
        tenant: str,
        *,
        summary_every_tokens: int | None = 2000,
        embed_messages: bool = False,
    ) -> None: ...

    async def session_info(self, tenant: str, session: str) -> SessionInfo: ...

    async def list_sessions(
        self,
        tenant: str,
        *,
        owner: str | None = None,
        include_deleted: bool = False,
        after_session: str | None = None,
        page_size: int = 100,
    ) -> list[SessionInfo]: ...

    async def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime: ...

    async def configure_session(
        self,
        tenant: str,
        session: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        summary_every_tokens: int | None = None,
    ) -> None: ...

    async def configure_tenant(
        self,
        tenant: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        default_ttl: timedelta | None = None,
    ) -> None: ...

    async def delete_session(self, tenant: str, session: str) -> datetime: ...

    async def restore_session(self, tenant: str, session: str) -> None: ...

    async def purge_session(self, tenant: str, session: str) -> int: ...

    async def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]: ...

    async def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]: ...

    async def stats(self, tenant: str | None = None) -> list[TenantStats]: ...

    async def close(self) -> None: ...
