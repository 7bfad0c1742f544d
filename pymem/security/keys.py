"""Master keys for encryption at rest, and how they reach PostgreSQL.

The master key wraps every tenant's data keys (see ``sql/020_keys_and_sealing.sql``).
It never goes into SQL text or a parameter, where ``log_statement`` or
``pg_stat_activity`` could show it: :func:`with_master_key` puts it in the
connection's startup options (``-c pymem.master_key=...``), which the server
neither logs nor shows to other sessions; :func:`check_key_transport` refuses
to send them over TCP without TLS (except on loopback).

Providers: :class:`EnvKeyProvider` (``PYMEM_MASTER_KEY``), :class:`FileKeyProvider`
(a file holding the hex key, readable by the application only) and
:class:`KmsKeyProvider` (a key wrapped by a cloud KMS, unwrapped at start-up
by a callable you pass, e.g. ``lambda blob: kms.decrypt(CiphertextBlob=blob)["Plaintext"]``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

from psycopg.conninfo import conninfo_to_dict

from ..config import Settings
from ..db.conninfo import with_settings
from ..errors import InsecureTransport, KeyUnavailable

_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")
KEY_BYTES = 32


@runtime_checkable
class KeyProvider(Protocol):
    """Supplies the 32-byte master key (and, while rotating it, the previous one)."""

    def master_key(self) -> bytes:
        """The current master key."""
        ...

    def previous_master_key(self) -> bytes | None:
        """The master key being replaced, during a re-wrap; None otherwise."""
        ...


def generate_master_key() -> str:
    """A new random master key as 64 hex digits."""
    return secrets.token_hex(KEY_BYTES)


def parse_master_key(text: str, source: str) -> bytes:
    """Decode a hex master key, or raise KeyUnavailable naming ``source``."""
    value = text.strip()
    if not _HEX_KEY.match(value):
        raise KeyUnavailable(
            f"pymem: the master key from {source} is not 64 hexadecimal digits",
            hint="generate one with `pymem keys generate`",
        )
    return bytes.fromhex(value)


@dataclass(frozen=True, slots=True)
class EnvKeyProvider:
    """Keys from environment variables (hex)."""

    variable: str = "PYMEM_MASTER_KEY"
    previous_variable: str = "PYMEM_PREVIOUS_MASTER_KEY"

    def master_key(self) -> bytes:
        value = os.environ.get(self.variable)
        if not value:
            raise KeyUnavailable(
                f"pymem: ${self.variable} is not set",
                hint="set it to the deployment's master key (pymem keys generate makes one)",
            )
        return parse_master_key(value, f"${self.variable}")

    def previous_master_key(self) -> bytes | None:
        value = os.environ.get(self.previous_variable)
        return parse_master_key(value, f"${self.previous_variable}") if value else None


@dataclass(frozen=True, slots=True)
class FileKeyProvider:
    """Keys from files holding 64 hex digits (e.g. a mounted secret)."""

    path: Path
    previous_path: Path | None = None

    def master_key(self) -> bytes:
        return self._read(self.path)

    def previous_master_key(self) -> bytes | None:
        return self._read(self.previous_path) if self.previous_path else None

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyUnavailable(
                f"pymem: cannot read the master key file {path}: {exc}",
                hint="check the path and that this process may read it",
            ) from exc
        return parse_master_key(text, str(path))


@dataclass(frozen=True, slots=True)
class KmsKeyProvider:
    """A master key kept wrapped by a key management service.

    ``unwrap`` receives ``wrapped`` and returns the 32 plaintext bytes (call
    your KMS there). It is called once per :meth:`master_key` call, that is
    when a connection pool is created.
    """

    wrapped: bytes
    unwrap: Callable[[bytes], bytes]
    previous_wrapped: bytes | None = None

    def master_key(self) -> bytes:
        return self._unwrap(self.wrapped)

    def previous_master_key(self) -> bytes | None:
        return self._unwrap(self.previous_wrapped) if self.previous_wrapped else None

    def _unwrap(self, blob: bytes) -> bytes:
        try:
            key = self.unwrap(blob)
        except Exception as exc:  # the KMS client's own errors vary by vendor
            raise KeyUnavailable(
                f"pymem: the key management service did not unwrap the master key: {exc}",
                hint="check the KMS key id, the credentials and the network",
            ) from exc
        if len(key) != KEY_BYTES:
            raise KeyUnavailable(
                f"pymem: the unwrapped master key has {len(key)} bytes, not {KEY_BYTES}",
                hint="wrap a 32-byte key (pymem keys generate, hex-decoded)",
            )
        return key


_PRIVATE_SSLMODES: Final = frozenset({"require", "verify-ca", "verify-full"})


def _local(host: str) -> bool:
    """A Unix socket directory, or a loopback name or address."""
    host = host.strip()
    if not host or host.startswith(("/", "@")) or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_transport(dsn: str) -> None:
    """Refuse a DSN that would send the master key over TCP without TLS.

    The key travels in the connection's startup options. They are private on a
    Unix socket, on loopback, or under ``sslmode`` require, verify-ca or
    verify-full (libpq's default, prefer, falls back to plain text silently).
    ``PYMEM_ALLOW_PLAINTEXT_KEY=1`` accepts the risk on a network you trust.
    """
    params = conninfo_to_dict(dsn)
    if str(params.get("sslmode") or os.environ.get("PGSSLMODE", "")) in _PRIVATE_SSLMODES:
        return
    hosts = str(params.get("hostaddr") or params.get("host") or os.environ.get("PGHOST", ""))
    if all(_local(h) for h in hosts.split(",")):
        return
    if os.environ.get("PYMEM_ALLOW_PLAINTEXT_KEY") == "1":
        return
    raise InsecureTransport(
        f"pymem: refusing to send the master key to {hosts} without TLS "
        f"(sslmode is {params.get('sslmode') or 'prefer'})"
    )


def _with_options(dsn: str, master: bytes, previous: bytes | None = None) -> str:
    check_key_transport(dsn)
    keys = {"pymem.master_key": master.hex()}
    if previous is not None:
        keys["pymem.previous_master_key"] = previous.hex()
    return with_settings(dsn, keys)


def with_master_key(dsn: str, provider: KeyProvider, *, previous: bool = False) -> str:
    """``dsn`` with the provider's master key in its startup options.

    With ``previous=True`` the previous master key is added too (for
    ``memory.rewrap_keys``); it must exist then.
    """
    old = None
    if previous:
        old = provider.previous_master_key()
        if old is None:
            raise KeyUnavailable(
                "pymem: re-wrapping needs the previous master key",
                hint="set PYMEM_PREVIOUS_MASTER_KEY (or the provider's previous key)",
            )
    return _with_options(dsn, provider.master_key(), old)


def keyed_dsn(dsn: str, keys: KeyProvider | None) -> tuple[str, bytes | None]:
    """``dsn`` with the master key of ``keys`` (else of ``PYMEM_MASTER_KEY`` when set)
    in its startup options, and that key; ``(dsn, None)`` without one.

    The provider is asked once (a KMS call, for :class:`KmsKeyProvider`).
    """
    if keys is None and not Settings.from_env().master_key_set:
        return dsn, None
    master = (keys or EnvKeyProvider()).master_key()
    return _with_options(dsn, master), master


__all__ = [
    "EnvKeyProvider",
    "FileKeyProvider",
    "KeyProvider",
    "KmsKeyProvider",
    "check_key_transport",
    "generate_master_key",
    "keyed_dsn",
    "parse_master_key",
    "with_master_key",
]
