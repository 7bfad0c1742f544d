"""State changes of a dependency, for whoever wants to hear of them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pymem.resilience")


@dataclass
class Events:
    """Subscribers to a dependency's state: ``degraded`` (its breaker opened) and
    ``recovered`` (closed again). Each subscriber gets the event's name and
    details; one that raises is logged and the others still hear of it."""

    subscribers: list[Callable[[str, Mapping[str, Any]], None]] = field(default_factory=list)

    def emit(self, name: str, **details: Any) -> None:
        for subscriber in list(self.subscribers):
            try:
                subscriber(name, details)
            except Exception:  # a broken subscriber must not break the data path
                log.exception("event subscriber failed")

    def breaker_moved(self, old: str, new: str) -> None:
        """A breaker's ``on_change``: open is ``degraded``, closed ``recovered``."""
        if new == "open":
            self.emit("degraded", previous=old)
        elif new == "closed":
            self.emit("recovered", previous=old)
