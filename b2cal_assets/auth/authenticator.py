"""One call from presented certificates to an authentication decision.

:class:`Authenticator` ties the pieces together: chain validation against the CA directory,
VOMS AC validation against the vomsdir, and the fingerprint cache. It never raises for a
refused client: the decision and every reason are in the returned :class:`AuthResult`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from .cache import ValidationCache, chain_fingerprint
from .cadir import CADirectory
from .chain import ProxyPolicy, ValidatedChain, parse_chain, validate_chain
from .errors import AuthError
from .identity import Identity
from .voms import DEFAULT_CLOCK_SKEW, VomsAttributes, VomsDir, all_fqans, validate_voms


@dataclass(frozen=True)
class AuthResult:
    """The decision. ``errors`` say why the chain was refused; ``voms_errors`` why an AC was."""

    authenticated: bool
    identity: Identity | None = None
    fqans: tuple[str, ...] = ()
    attributes: tuple[VomsAttributes, ...] = ()
    errors: tuple[AuthError, ...] = ()
    voms_errors: tuple[AuthError, ...] = ()
    limited: bool = False
    chain: ValidatedChain | None = field(default=None, repr=False, compare=False)

    def to_json(self, *, detailed: bool = True) -> dict[str, Any]:
        """JSON-ready dict; ``detailed=False`` gives the short client-safe reasons only."""

        def describe(error: AuthError) -> str:
            return str(error) if detailed else error.reason

        return {
            "authenticated": self.authenticated,
            "identity": self.identity.subject if self.identity else None,
            "fqans": list(self.fqans),
            "errors": [describe(error) for error in self.errors],
            "voms_errors": [describe(error) for error in self.voms_errors],
        }


def _expiry(chain: ValidatedChain, attributes: Iterable[VomsAttributes]) -> dt.datetime:
    return min([chain.not_after, *(item.not_after for item in attributes)])


class Authenticator:
    """Validate client chains with a CA directory and a vomsdir, caching good results."""

    def __init__(
        self,
        ca_dir: CADirectory | Path | str,
        vomsdir: VomsDir | Path | str,
        *,
        host: str | None = None,
        expected_vos: Iterable[str] | None = None,
        proxy_policy: ProxyPolicy = ProxyPolicy(),
        clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
        cache: ValidationCache[AuthResult] | None = None,
        use_cache: bool = True,
    ) -> None:
        self.ca_dir = ca_dir if isinstance(ca_dir, CADirectory) else CADirectory(ca_dir)
        self.vomsdir = vomsdir if isinstance(vomsdir, VomsDir) else VomsDir(Path(vomsdir))
        self.host = host
        self.expected_vos = None if expected_vos is None else frozenset(expected_vos)
        self.proxy_policy = proxy_policy
        self.clock_skew = clock_skew
        self.cache: ValidationCache[AuthResult] | None = (cache or ValidationCache()) if use_cache else None

    def reload(self) -> bool:
        """Re-read the CA directory if fetch-crl changed it, and forget cached decisions.

        Call this periodically (e.g. every minute); it returns True when something changed.
        """
        changed = self.ca_dir.reload_if_changed()
        if changed:
            self.vomsdir.clear()
            if self.cache is not None:
                self.cache.invalidate(self.ca_dir.generation)
        return changed

    def authenticate(
        self,
        presented: bytes | Sequence[bytes] | Sequence[x509.Certificate],
        *,
        at: dt.datetime | None = None,
        fingerprint: bytes | None = None,
    ) -> AuthResult:
        """Validate ``presented`` (PEM/DER bytes or DER list, leaf first) at ``at`` (default now).

        Results at an explicit ``at`` are neither cached nor served from the cache.
        ``fingerprint``: ``chain_fingerprint(presented)`` if the caller has it already (the proxy
        keeps it per TLS connection), saving the hash on every request.
        """
        cacheable = self.cache is not None and at is None and not (
            presented and isinstance(presented, Sequence) and isinstance(presented[0], x509.Certificate)
        )
        key = b""
        if cacheable:
            key = fingerprint or chain_fingerprint(presented)  # type: ignore[arg-type]
            hit = self.cache.get(key, self.ca_dir.generation)  # type: ignore[union-attr]
            if hit is not None:
                return hit
        when = at or dt.datetime.now(dt.timezone.utc)
        result = self._validate(presented, when)
        # Only clean successes are cached: a refusal or an AC not yet valid may change soon.
        if cacheable and result.authenticated and not result.voms_errors and result.chain is not None:
            expires = _expiry(result.chain, result.attributes)
            self.cache.put(key, result, expires.timestamp(), self.ca_dir.generation)  # type: ignore[union-attr]
        return result

    def _validate(self, presented: bytes | Sequence[bytes] | Sequence[x509.Certificate], at: dt.datetime) -> AuthResult:
        trust = self.ca_dir.store
        try:
            if presented and isinstance(presented, Sequence) and not isinstance(presented, (bytes, bytearray)) and isinstance(presented[0], x509.Certificate):
                certificates = list(presented)  # type: ignore[arg-type]
            else:
                certificates = parse_chain(presented)  # type: ignore[arg-type]
            chain = validate_chain(certificates, trust, at=at, policy=self.proxy_policy)
        except AuthError as error:
            return AuthResult(authenticated=False, errors=(error,))
        granted, refused = validate_voms(
            chain,
            trust=trust,
            vomsdir=self.vomsdir,
            at=at,
            host=self.host,
            expected_vos=self.expected_vos,
            clock_skew=self.clock_skew,
        )
        return AuthResult(
            authenticated=True,
            identity=chain.identity,
            fqans=all_fqans(granted),
            attributes=tuple(granted),
            voms_errors=tuple(refused),
            limited=chain.limited,
            chain=chain,
        )
