"""A last resort for calls the server cannot end: abandon the connection.

A call's deadline is its statement timeout, which PostgreSQL enforces. When
the network swallows the query or the reply (a partition, a dead peer that
never resets), no answer comes at all and the driver would wait forever. The
watchdog ends such waits: each attempt registers its connection with a time
a little past its deadline, and one daemon thread, waking every 50 ms, shuts
down the sockets of attempts still running then. The blocked driver sees
the connection end and raises; the call ends with ``DeadlineExceeded``.

Registering and clearing an attempt is a dict insert and delete: no thread
per call, no lock on the fast path.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from typing import Any, Final

GRACE: Final = 0.2  # seconds past the deadline before the connection is abandoned
_TICK: Final = 0.05


class Watchdog:
    """Shuts down the sockets of attempts that outlive their deadline."""

    def __init__(self) -> None:
        self._armed: dict[int, tuple[float, Any, int]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.fired = 0

    def arm(self, conn: Any, remaining: float | None) -> int | None:
        """Watch ``conn`` until :meth:`disarm`; None when there is no deadline."""
        if remaining is None:
            return None
        fd = conn.pgconn.socket
        token = next(self._ids)
        self._armed[token] = (time.monotonic() + remaining + GRACE, conn, fd)
        if self._thread is None:
            self._start()
        return token

    def disarm(self, token: int | None) -> None:
        if token is not None:
            self._armed.pop(token, None)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pymem-watchdog", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(_TICK)
            now = time.monotonic()
            for token, (when, conn, fd) in list(self._armed.items()):
                if when <= now and self._armed.pop(token, None) is not None:
                    self._abandon(conn, fd)

    def _abandon(self, conn: Any, fd: int) -> None:
        """Shut the socket down (on a duplicate of its descriptor: the driver
        still owns the original, and shutdown acts on the socket itself)."""
        try:
            if conn.closed or conn.pgconn.socket != fd:
                return
            dup = os.dup(fd)
        except Exception:
            return
        try:
            with socket.socket(fileno=dup) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            self.fired += 1
        except OSError:
            pass


WATCHDOG: Final = Watchdog()
