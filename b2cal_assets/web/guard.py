"""Request forgery defences of the review pages' actions. Pure (standard library only).

A sign-off or rejection is the Dagster UI's own GraphQL launch, posted by the page's script to
``/graphql``; the proxy's role check authorises it and tags the run with the caller's identity
as for any launch. What this module adds is proof that the request comes from a review page
the same user loaded, once:

* a session cookie (random, HttpOnly, Secure, SameSite=Strict) and a per-session token bound
  to the user: HMAC(secret, session, user DN) in a header (a cross-site page can read neither);
* a single-use nonce per rendered action, bound to the session, the user, the bucket and the
  action, expiring after :data:`NONCE_TTL_S`: a replayed request (the same POST sent again, a
  second tab, another user) finds it spent or foreign;
* Origin must name this server and ``Sec-Fetch-Site``, when the browser sends it, must be
  ``same-origin``: a cross-origin POST is refused before anything is decided.

Every refusal is an :class:`ActionRefused` with a short reason for the page and a detail for
the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from b2cal_assets.web.errors import WebError

SESSION_COOKIE = "b2cal_session"
TOKEN_HEADER = "X-B2cal-Csrf"
NONCE_HEADER = "X-B2cal-Nonce"
NONCE_TTL_S = 3600.0
MAX_NONCES = 20_000  # outstanding; the oldest are forgotten first (their pages must be reloaded)


class ActionRefused(WebError):
    """A review action that is not provably from this user's review page."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


def same_origin(headers: Mapping[str, str], host: str, scheme: str) -> None:
    """Refuse a request another site's page could have sent (Origin / Sec-Fetch-Site).

    ``host`` is the Host the request was sent to; browsers always send Origin on POST.
    """
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise ActionRefused(f"Sec-Fetch-Site {site!r}: request from another site", "cross-origin request refused")
    origin = headers.get("Origin")
    if origin is None:
        raise ActionRefused("no Origin header on a review action", "cross-origin request refused")
    parts = urlsplit(origin)
    if parts.netloc.lower() != host.lower() or parts.scheme not in ("https", scheme):
        raise ActionRefused(f"Origin {origin!r} is not this server ({scheme}://{host})", "cross-origin request refused")


def cross_site(headers: Mapping[str, str], host: str) -> str | None:
    """Why a state-changing request (any POST) comes from another site, or None.

    Lenient where ``same_origin`` is strict: API clients send no Origin and stay allowed."""
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site {site!r}"
    origin = headers.get("Origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc.lower() != host.lower():
        return f"Origin {origin!r} is not {host}"
    if origin == "null":
        return "Origin null (sandboxed or privacy-sensitive context)"
    return None


@dataclass(frozen=True)
class Nonce:
    session: str
    user: str
    bucket: str
    action: str
    expires: float


class ActionGuard:
    """Issues session tokens and action nonces, and checks them. One per proxy process.

    ``secret``: the HMAC key (a deployment setting shared by the proxy's processes, or random
    per process: tokens then last as long as the process).
    """

    def __init__(self, secret: bytes | None = None, *, clock: callable = time.monotonic) -> None:  # type: ignore[valid-type]
        self._secret = secret or secrets.token_bytes(32)
        self._clock = clock
        self._nonces: OrderedDict[str, Nonce] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def new_session() -> str:
        return secrets.token_urlsafe(24)

    @staticmethod
    def valid_session(value: str | None) -> bool:
        return bool(value) and 20 <= len(value or "") <= 64 and all(c.isalnum() or c in "-_" for c in value or "")

    def token(self, session: str, user: str) -> str:
        """The per-session token bound to the user (the DN: unique per person)."""
        return hmac.new(self._secret, f"{session}\0{user}".encode(), hashlib.sha256).hexdigest()

    def issue(self, session: str, user: str, bucket: str, action: str) -> str:
        """A single-use nonce for ``action`` on ``bucket`` by ``user`` in ``session``."""
        nonce = secrets.token_urlsafe(24)
        with self._lock:
            self._nonces[nonce] = Nonce(session, user, bucket, action, self._clock() + NONCE_TTL_S)
            while len(self._nonces) > MAX_NONCES:
                self._nonces.popitem(last=False)
        return nonce

    def check(self, *, session: str | None, user: str, token: str | None, nonce: str | None,
              bucket: str | None = None, action: str | None = None) -> Nonce:
        """Spend ``nonce``; ActionRefused unless session, token and nonce belong to ``user``."""
        if not session or not self.valid_session(session):
            raise ActionRefused("no review session cookie", "no review session: reload the page")
        if not token or not hmac.compare_digest(token, self.token(session, user)):
            raise ActionRefused(f"CSRF token does not match the session of {user}", "invalid request token: reload the page")
        if not nonce:
            raise ActionRefused("no action nonce", "invalid request: reload the page")
        with self._lock:
            record = self._nonces.pop(nonce, None)  # spent whatever follows: a nonce is tried once
        if record is None:
            raise ActionRefused(f"nonce unknown or already used (replay) for {user}", "this action was already submitted or has expired: reload the page")
        if record.session != session or record.user != user:
            raise ActionRefused(f"nonce issued to another session or user ({record.user}), presented by {user}", "invalid request: reload the page")
        if record.expires < self._clock():
            raise ActionRefused("nonce expired", "the page is too old: reload it")
        if (bucket is not None and bucket != record.bucket) or (action is not None and action != record.action):
            raise ActionRefused(f"nonce issued for {record.action} {record.bucket}, used for {action} {bucket}", "invalid request: reload the page")
        return record
