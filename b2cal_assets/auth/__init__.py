"""X.509 / VOMS authentication: a pure library (no web or Dagster code).

Typical use::

    authenticator = Authenticator("/etc/grid-security/certificates", "/etc/grid-security/vomsdir",
                                  host="b2cal.example.org", expected_vos=["belle"])
    result = authenticator.authenticate(der_chain)   # leaf first
    result.authenticated, result.identity.subject, result.fqans, result.errors, result.voms_errors
"""

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
