"""A loopback TCP proxy that injects network faults, in Toxiproxy's vocabulary.

Placed between a client and PostgreSQL or Redis, it forwards bytes both ways
and applies the toxics added to it, each on one stream: ``upstream`` (client
to server) or ``downstream`` (server to client):

- ``latency``: hold each chunk ``latency`` ms (± ``jitter``);
- ``timeout``: swallow the data; close the connection after ``timeout`` ms
  (0: never, a black hole);
- ``reset_peer``: reset both ends (TCP RST) when data flows, after
  ``timeout`` ms;
- ``limit_data``: forward ``bytes`` bytes per connection, then close it;
- ``slicer``: cut chunks into ``average_size`` ± ``size_variation`` byte
  slices, ``delay`` µs apart.

``enabled = False`` is Toxiproxy's "down": existing connections are closed and
new ones refused. One addition to Toxiproxy: ``times`` fires a toxic that many
times and then retires it (``reset_peer`` once, say, to lose exactly one
reply).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from psycopg.conninfo import conninfo_to_dict, make_conninfo

Stream = Literal["upstream", "downstream"]
Kind = Literal["latency", "timeout", "reset_peer", "limit_data", "slicer"]


@dataclass
class Toxic:
    name: str
    kind: Kind
    stream: Stream = "downstream"
    attributes: dict[str, float] = field(default_factory=dict)
    times: int | None = None  # None: every time
    added_at: float = field(default_factory=time.monotonic)

    def attr(self, key: str, default: float = 0.0) -> float:
        return float(self.attributes.get(key, default))


class _Link:
    """One client connection and its connection upstream."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.sent = {"upstream": 0, "downstream": 0}
        self.closed = threading.Event()

    def start(self) -> None:
        for stream, src, dst in (
            ("upstream", self.client, self.server),
            ("downstream", self.server, self.client),
        ):
            threading.Thread(target=self._pump, args=(stream, src, dst), daemon=True).start()

    def close(self, *, reset: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            try:
                if reset:  # SO_LINGER 0: close sends RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Wakes the other pump, blocked in recv (close alone would not);
                # for a reset, without sending a FIN first.
                sock.shutdown(socket.SHUT_RD if reset else socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.proxy._forget(self)

    def _pump(self, stream: Stream, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if not self._forward(stream, data, dst):
                    return
        except OSError:
            pass
        self.close()

    def _forward(self, stream: Stream, data: bytes, dst: socket.socket) -> bool:
        """Apply the stream's toxics to one chunk; False when the link is gone."""
        chunks = [data]
        for toxic in self.proxy.toxics_for(stream):
            if toxic.kind == "latency":
                jitter = toxic.attr("jitter")
                time.sleep(max(0.0, toxic.attr("latency") + random.uniform(-jitter, jitter)) / 1e3)
            elif toxic.kind == "timeout":
                limit = toxic.attr("timeout")
                if limit:
                    left = limit / 1e3 - (time.monotonic() - toxic.added_at)
                    threading.Timer(max(0.0, left), self.close).start()
                return True  # swallowed
            elif toxic.kind == "reset_peer":
                time.sleep(max(0.0, toxic.attr("timeout") / 1e3))
                self.close(reset=True)
                return False
            elif toxic.kind == "limit_data":
                room = int(toxic.attr("bytes")) - self.sent[stream]
                if room <= len(data):
                    if room > 0:
                        dst.sendall(data[:room])
                    self.close()
                    return False
            elif toxic.kind == "slicer":
                chunks = _slices(data, toxic)
        for i, chunk in enumerate(chunks):
            if i and self.proxy.slicer_delay(stream):
                time.sleep(self.proxy.slicer_delay(stream))
            dst.sendall(chunk)
            self.sent[stream] += len(chunk)
        return True


def _slices(data: bytes, toxic: Toxic) -> list[bytes]:
    average = max(1, int(toxic.attr("average_size", 64)))
    variation = int(toxic.attr("size_variation"))
    out, at = [], 0
    while at < len(data):
        size = max(1, average + random.randint(-variation, variation))
        out.append(data[at : at + size])
        at += size
    return out


class FaultProxy:
    """A proxy on 127.0.0.1 in front of ``upstream`` (host, port)."""

    def __init__(self, upstream: tuple[str, int], name: str = "proxy") -> None:
        self.name = name
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._links: set[_Link] = set()
        self._toxics: dict[str, Toxic] = {}
        self._lock = threading.Lock()
        self._enabled = True
        self._stopped = False
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def in_front_of(cls, dsn: str, name: str = "postgres") -> FaultProxy:
        """A proxy in front of the PostgreSQL server that ``dsn`` names."""
        info = conninfo_to_dict(dsn)
        return cls((str(info["host"]), int(str(info["port"]))), name)

    def route(self, dsn: str) -> str:
        """``dsn``, going through this proxy."""
        info = conninfo_to_dict(dsn)
        info.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo("", **info)

    # -- Toxiproxy's verbs ---------------------------------------------------

    def add(
        self,
        name: str,
        kind: Kind,
        stream: Stream = "downstream",
        times: int | None = None,
        **attributes: float,
    ) -> Toxic:
        toxic = Toxic(name, kind, stream, dict(attributes), times)
        with self._lock:
            self._toxics[name] = toxic
        return toxic

    def remove(self, name: str) -> None:
        with self._lock:
            self._toxics.pop(name, None)

    def reset(self) -> None:
        """Remove every toxic and enable the proxy (Toxiproxy's /reset)."""
        with self._lock:
            self._toxics.clear()
        self.enabled = True

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value
        if not value:
            for link in list(self._links):
                link.close()

    def stop(self) -> None:
        self._stopped = True
        self.enabled = False
        self._listener.close()

    # -- internals -------------------------------------------------------------

    def toxics_for(self, stream: Stream) -> list[Toxic]:
        """The stream's toxics now, spending one shot of each counted one."""
        with self._lock:
            found = [t for t in self._toxics.values() if t.stream == stream]
            for toxic in found:
                if toxic.times is not None:
                    toxic.times -= 1
                    if toxic.times <= 0:
                        self._toxics.pop(toxic.name, None)
            return found

    def slicer_delay(self, stream: Stream) -> float:
        with self._lock:
            delays = [
                t.attr("delay")
                for t in self._toxics.values()
                if t.stream == stream and t.kind == "slicer"
            ]
        return max(delays, default=0.0) / 1e6

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._enabled:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, server)
            with self._lock:
                self._links.add(link)
                self.connections += 1
            link.start()
