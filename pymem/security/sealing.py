"""Encryption of cached windows, so Redis holds no readable conversation text.

With a master key (``Memory.connect(..., redis=..., keys=...)``) every cache
entry is sealed with AES-256-GCM under a key derived from the master key
(HKDF-SHA256, its own label, so the master key itself never touches Redis).
The Redis key and entry name are the associated data: an entry moved to
another session or tenant no longer opens. An entry that does not open (the
master key changed, bytes altered) is a cache miss, never an error.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_MARK = b"e"
_NONCE = 12


class CacheSealer:
    """AES-256-GCM for cache entries, keyed from the master key."""

    def __init__(self, master_key: bytes) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"pymem cache entries v1"
        ).derive(master_key)
        self._aead = AESGCM(derived)

    def seal(self, blob: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _MARK + nonce + self._aead.encrypt(nonce, blob, context)

    def open(self, stored: bytes, context: bytes) -> bytes | None:
        """The sealed blob, or None when it is not sealed or does not open."""
        if stored[:1] != _MARK or len(stored) < 1 + _NONCE + 16:
            return None
        try:
            return self._aead.decrypt(stored[1 : 1 + _NONCE], stored[1 + _NONCE :], context)
        except InvalidTag:
            return None
