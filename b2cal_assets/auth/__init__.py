"""X.509 / VOMS authentication: a pure library (no web or Dagster code).

Typical use::

    authenticator = Authenticator("/etc/grid-security/certificates", "/etc/grid-security/vomsdir",
                                  host="b2cal.example.org", expected_vos=["belle"])
    result = authenticator.authenticate(der_chain)   # leaf first
    result.authenticated, result.identity.subject, result.fqans, result.errors, result.voms_errors
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The public names load their submodule on first use (PEP 562): the sign-off code imports the
# pure run_tags module in every process loading the code location, and importing this package
# eagerly would load cryptography and asn1crypto there for an authenticator it never uses.
_SUBMODULE_OF = {
    "Authenticator": "authenticator",
    "AuthResult": "authenticator",
    "CADirectory": "cadir",
    "TrustStore": "cadir",
    "load_trust_store": "cadir",
    "ProxyPolicy": "chain",
    "ValidatedChain": "chain",
    "parse_chain": "chain",
    "validate_chain": "chain",
    "AuthError": "errors",
    "ChainError": "errors",
    "ConfigurationError": "errors",
    "VomsError": "errors",
    "Identity": "identity",
    "rfc4514_dn": "identity",
    "slash_dn": "identity",
    "VomsAttributes": "voms",
    "VomsDir": "voms",
    "fqan_in_group": "voms",
    "normalise_fqan": "voms",
}

if TYPE_CHECKING:
    from .authenticator import Authenticator, AuthResult
    from .cadir import CADirectory, TrustStore, load_trust_store
    from .chain import ProxyPolicy, ValidatedChain, parse_chain, validate_chain
    from .errors import AuthError, ChainError, ConfigurationError, VomsError
    from .identity import Identity, rfc4514_dn, slash_dn
    from .voms import VomsAttributes, VomsDir, fqan_in_group, normalise_fqan

__all__ = [
    "AuthError", "AuthResult", "Authenticator", "CADirectory", "ChainError", "ConfigurationError", "Identity",
    "ProxyPolicy", "TrustStore", "ValidatedChain", "VomsAttributes", "VomsDir", "VomsError", "fqan_in_group",
    "load_trust_store", "normalise_fqan", "parse_chain", "rfc4514_dn", "slash_dn", "validate_chain",
]


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULE_OF.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
