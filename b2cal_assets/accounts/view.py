"""The proxy's read side: DN -> account from memory, refreshed when a new sync lands.

``AccountsStore.lookup_dn`` is already one indexed statement; this view saves even that
round trip on every request. It re-reads the generation number (one primary-key read) at
most every ``recheck_seconds`` and reloads the DN map only when it moved, so a new sync is
visible within ``recheck_seconds`` without restarting the proxy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from b2cal_assets.accounts.freshness import FreshnessPolicy, Verdict, evaluate
from b2cal_assets.accounts.models import Account
from b2cal_assets.accounts.store import AccountsStore, SyncStatus


class AccountsView:
    """Thread-safe cached view of the current accounts set."""

    def __init__(
        self,
        store: AccountsStore,
        *,
        policy: FreshnessPolicy | None = None,
        recheck_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.policy = policy or FreshnessPolicy()
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._by_dn: dict[str, Account] = {}
        self._status: SyncStatus | None = None
        self._checked_at = float("-inf")
        self._verdict: tuple[SyncStatus, Verdict] | None = None

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked_at < self.recheck_seconds:
            return
        with self._lock:
            if now - self._checked_at < self.recheck_seconds:
                return
            # Status every recheck (cheap, one row): max-age must advance even without a new set.
            self._status = self.store.status()
            if self._status.generation != self._generation:
                self._generation, self._by_dn = self.store.dn_map()
            self._checked_at = now

    @property
    def generation(self) -> int | None:
        self._refresh()
        return self._generation

    def lookup_dn(self, slash_dn: str) -> Account | None:
        """The account for ``slash_dn`` in the newest set seen (at most ``recheck_seconds`` old)."""
        self._refresh()
        return self._by_dn.get(slash_dn.strip())

    def verdict(self) -> Verdict:
        """The maximum-age ceiling for every account right now, with the reason if not ALLOW.

        Evaluated once per status read (every ``recheck_seconds``): the status itself is that
        old at most, and every request of the proxy asks.
        """
        self._refresh()
        status = self._status
        assert status is not None
        cached = self._verdict
        if cached is not None and cached[0] is status:
            return cached[1]
        verdict = evaluate(status, self.policy)
        self._verdict = (status, verdict)
        return verdict
