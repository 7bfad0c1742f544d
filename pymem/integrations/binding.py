"""What every framework adapter holds: one pymem session, and the window it reads."""

from __future__ import annotations

import asyncio
from typing import Any

from ..aio import AsyncMemory, AsyncSession
from ..client import Memory, Session


class SessionBinding:
    """A pymem session bound for a framework: ``memory`` (a :class:`~pymem.Memory`
    or an :class:`~pymem.AsyncMemory`), the session and its tenant and user, and
    ``budget`` (tokens) with ``strategy`` when the framework should get a context
    window rather than the whole conversation."""

    def __init__(
        self,
        memory: Memory | AsyncMemory,
        session_id: str,
        *,
        tenant: str | None = None,
        user: str | None = None,
        budget: int | None = None,
        strategy: str = "recent",
    ) -> None:
        self.memory = memory
        self.session_id = session_id
        self.budget = budget
        self.strategy = strategy
        self._session: Session | AsyncSession = memory.session(session_id, tenant=tenant, user=user)

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the session's ``method`` from a framework's async code: awaited on
        an AsyncSession, in a worker thread on a (sync) Session."""
        call = getattr(self._session, method)
        if isinstance(self._session, Session):
            return await asyncio.to_thread(call, *args, **kwargs)
        return await call(*args, **kwargs)
