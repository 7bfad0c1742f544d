"""The backend contract: what every storage backend does.

:mod:`pymem.backends.base_async` is the source and :mod:`pymem.backends.base`
its generated sync twin. Each method mirrors one ``memory.*`` SQL function
and takes one value per request where the function takes many arguments
(:class:`NewMessage`, :class:`ContextRequest`, :class:`RecallRequest`,
:class:`NewSummary`, :class:`SessionQuery`, :class:`SessionSettings`,
:class:`TenantSettings`, :class:`RecallSettings`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from ..models import (
    FIRST_PAGE,
    AppendResult,
    Batch,
    ContextRequest,
    ContextWindow,
    NewMessage,
    NewSummary,
    RecalledMessage,
    RecallRequest,
    RecallSettings,
    SessionInfo,
    SessionQuery,
    SessionSettings,
    StoredMessage,
    Summary,
    TenantSettings,
    TenantStats,
)


@runtime_checkable
class AsyncMemoryBackend(Protocol):
    """Stores conversations; every method mirrors one ``memory.*`` SQL function."""

    async def append(
        self, tenant: str, session: str, message: NewMessage, *, user_id: str | None = None
    ) -> AppendResult: ...

    async def append_many(
        self, tenant: str, session: str, messages: Batch, *, user_id: str | None = None
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
        self, tenant: str, session: str, request: RecallRequest
    ) -> list[RecalledMessage]: ...

    async def list_summaries(self, tenant: str, session: str) -> list[Summary]: ...

    async def add_summary(self, tenant: str, session: str, summary: NewSummary) -> int: ...

    async def configure_recall(self, tenant: str, settings: RecallSettings) -> None: ...

    async def session_info(self, tenant: str, session: str) -> SessionInfo: ...

    async def list_sessions(
        self, tenant: str, query: SessionQuery = FIRST_PAGE
    ) -> list[SessionInfo]: ...

    async def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime: ...

    async def configure_session(
        self, tenant: str, session: str, settings: SessionSettings
    ) -> None: ...

    async def configure_tenant(self, tenant: str, settings: TenantSettings) -> None: ...

    async def delete_session(self, tenant: str, session: str) -> datetime: ...

    async def restore_session(self, tenant: str, session: str) -> None: ...

    async def purge_session(self, tenant: str, session: str) -> int: ...

    async def pop_message(self, tenant: str, session: str) -> StoredMessage | None: ...

    async def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]: ...

    async def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]: ...

    async def stats(self, tenant: str | None = None) -> list[TenantStats]: ...

    async def close(self) -> None: ...
