"""Settings from arguments or the environment (``PYMEM_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything pymem reads from the environment, with its default.

    - ``PYMEM_DSN``: PostgreSQL DSN or URL for ``Memory.connect()`` and the CLI.
    - ``PYMEM_TENANT``: tenant used when a call names none (default ``default``).
    - ``PYMEM_ENCODING``: tiktoken encoding or model name (default ``o200k_base``).
    - ``PYMEM_POOL_MAX``: largest connection pool size (default 10).
    - ``PYMEM_HOME``: folder of the embedded cluster (default: see embedded.py).
    - ``PYMEM_PG_BIN``: folder of the PostgreSQL binaries for the embedded cluster.
    - ``PYMEM_REDIS``: Redis URL for the cache tier of ``Memory.connect()``.
    - ``PYMEM_MASTER_KEY``: master key (64 hex digits) for encrypting tenants;
      only whether it is set is kept here (see :mod:`pymem.keys`).
    """

    dsn: str | None = None
    tenant: str = "default"
    encoding: str = "o200k_base"
    pool_max: int = 10
    home: Path | None = None
    pg_bin: Path | None = None
    redis: str | None = None
    master_key_set: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        home = env.get("PYMEM_HOME")
        pg_bin = env.get("PYMEM_PG_BIN")
        return cls(
            dsn=env.get("PYMEM_DSN") or None,
            tenant=env.get("PYMEM_TENANT") or "default",
            encoding=env.get("PYMEM_ENCODING") or "o200k_base",
            pool_max=int(env.get("PYMEM_POOL_MAX") or 10),
            home=Path(home) if home else None,
            pg_bin=Path(pg_bin) if pg_bin else None,
            redis=env.get("PYMEM_REDIS") or None,
            master_key_set=bool(env.get("PYMEM_MASTER_KEY")),
        )
