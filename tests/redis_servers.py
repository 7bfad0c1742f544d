"""Real Redis servers for the tests, started from the machine's redis-server on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A free loopback port low enough for Redis Cluster's bus port (port + 10000)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 55000:
            return port


class RedisServer:
    """One redis-server process (no persistence) that a test may kill and restart."""

    def __init__(
        self,
        port: int | None = None,
        *,
        cluster: bool = False,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.cluster = cluster
        self.tls = tls  # (certificate, key, CA): TLS only, on self.port
        self.dir = Path(tempfile.mkdtemp(prefix=f"pymem-redis-{self.port}-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://localhost:{self.port}/0?ssl_ca_certs={self.tls[2]}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if self.process is not None and self.process.poll() is None:
            return self
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [
            binary,
            "--bind",
            "127.0.0.1",
            *self._port_args(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--protected-mode",
            "no",
        ]
        if self.cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.dir / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
            ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(self.url, socket_timeout=0.5) as probe:
                    probe.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.kill()
                    raise
                time.sleep(0.02)

    def _port_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        cert, key, ca = self.tls
        return [
            "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster:
    """Three masters on loopback, joined with redis-cli --cluster create."""

    def __init__(self) -> None:
        base = free_port()
        self.nodes = [RedisServer(self._port_near(base, i), cluster=True) for i in range(3)]

    @staticmethod
    def _port_near(base: int, i: int) -> int:
        return free_port() if i else base

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{n.port}" for n in self.nodes],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        with redis.Redis(port=self.nodes[0].port) as probe:
            while time.monotonic() < deadline:
                if probe.cluster("info").get("cluster_state") == "ok":
                    return self
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("redis cluster did not become ok")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
