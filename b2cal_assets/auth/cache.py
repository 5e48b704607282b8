"""Cache of authentication results, keyed by the fingerprint of the presented chain.

A browser or command-line client presents the same chain on every connection; validating it
costs milliseconds, looking it up microseconds. An entry lives until the earliest notAfter
of everything it rests on (proxies, EEC, CAs, ACs) and dies with the trust store it was
computed under, so a CRL reload (new trust-store generation) empties the cache.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Result = TypeVar("Result")


def chain_fingerprint(chain: bytes | Sequence[bytes]) -> bytes:
    """SHA-256 over the presented bytes (one blob, or each DER certificate in order)."""
    if isinstance(chain, (bytes, bytearray, memoryview)):
        return hashlib.sha256(chain).digest()
    digest = hashlib.sha256()
    for item in chain:
        # Length-prefix each certificate so that two different splits never collide.
        digest.update(len(item).to_bytes(4, "big"))
        digest.update(item)
    return digest.digest()


@dataclass(frozen=True)
class _Entry(Generic[Result]):
    result: Result
    expires_at: float  # epoch seconds
    generation: int


class ValidationCache(Generic[Result]):
    """A bounded map fingerprint -> result (oldest insertions evicted first), with per-entry
    expiry and a trust-store generation check. Lookups take no lock: a dict read is atomic."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, _Entry[Result]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, generation: int, now: float | None = None) -> Result | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if generation != self._generation:
            self.invalidate(generation)
            return None
        if (time.time() if now is None else now) >= entry.expires_at:
            with self._lock:
                self._entries.pop(key, None)
            return None
        return entry.result

    def put(self, key: bytes, result: Result, expires_at: float, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                self._entries.clear()
                self._generation = generation
            self._entries[key] = _Entry(result, expires_at, generation)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self, generation: int | None = None) -> None:
        """Drop every entry (called when the CA directory or vomsdir is reloaded)."""
        with self._lock:
            self._entries.clear()
            if generation is not None:
                self._generation = generation
