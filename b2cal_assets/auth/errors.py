"""Exception types of the auth library.

Every refusal is a specific class carrying the facts that led to it, so the caller can log
the long message and show the client the short ``reason``. Malformed input of any kind
surfaces as one of these classes, never as a bare ``ValueError`` from a parser.
"""

from __future__ import annotations


class RefusalError(Exception):
    """A refusal with two audiences: ``reason`` is a short, client-safe statement;
    ``str(error)`` is the detailed message for the log. Shared by the auth library and the proxy.
    """

    reason: str = "refused"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


class AuthError(RefusalError):
    """Base of every error raised by b2cal_assets.auth.

    The detailed message says which certificate, which check, expected against found, and
    what to do.
    """

    reason: str = "authentication failed"


# --- configuration -----------------------------------------------------------------------


class ConfigurationError(AuthError):
    """The local trust configuration (CA directory, vomsdir) is unusable."""

    reason = "server trust configuration error"


# --- certificate chain -------------------------------------------------------------------


class ChainError(AuthError):
    """The presented certificate chain is refused."""

    reason = "certificate chain refused"


class MalformedCertificateError(ChainError):
    """Bytes that should be certificates could not be decoded."""

    reason = "malformed certificate"


class EmptyChainError(ChainError):
    """No certificate was presented (e.g. a resumed TLS session)."""

    reason = "no client certificate"


class UntrustedIssuerError(ChainError):
    """The end-entity certificate does not lead to a CA in the trusted CA directory."""

    reason = "certificate not issued by a trusted CA"


class CertificateValidityError(ChainError):
    """A certificate of the chain is expired or not yet valid."""

    reason = "certificate outside its validity period"


class CertificateRevokedError(ChainError):
    """A certificate of the chain is listed in its issuer's CRL."""

    reason = "certificate revoked"


class CRLError(ChainError):
    """The CRL needed to check a certificate is missing, expired or badly signed."""

    reason = "revocation status unknown"


class SignatureError(ChainError):
    """A signature in the chain does not verify."""

    reason = "bad certificate signature"


class ProxyError(ChainError):
    """An RFC 3820 proxy certificate breaks one of the proxy rules."""

    reason = "invalid proxy certificate"


class ProxyNamingError(ProxyError):
    """Proxy subject is not the issuer subject plus exactly one CN."""

    reason = "proxy subject does not extend its issuer's subject by one CN"


class ProxyKeyUsageError(ProxyError):
    """Proxy may sign certificates (keyCertSign / cA) or carries a subjectAltName."""

    reason = "proxy certificate has forbidden extensions"


class ProxyPathLengthError(ProxyError):
    """More proxies follow than a pCPathLenConstraint allows."""

    reason = "proxy delegation depth exceeded"


class ProxyPolicyError(ProxyError):
    """The proxy's policy language is not accepted (limited, independent, unknown)."""

    reason = "proxy policy not accepted"


class LegacyProxyError(ProxyError):
    """A pre-RFC (Globus legacy or draft) proxy, refused outright."""

    reason = "legacy (pre-RFC 3820) Globus proxy refused; create an RFC proxy (voms-proxy-init -rfc)"


# --- VOMS attribute certificates -----------------------------------------------------------


class VomsError(AuthError):
    """A VOMS attribute certificate is refused; it grants nothing."""

    reason = "VOMS attributes refused"


class MalformedACError(VomsError):
    """The AC (or its container extension) is not valid DER of the expected shape."""

    reason = "malformed VOMS attribute certificate"


class ACValidityError(VomsError):
    """The AC is expired or not yet valid (after allowing clock skew)."""

    reason = "VOMS attributes expired or not yet valid"


class ACIssuerUnknownError(VomsError):
    """No LSC file or AA certificate in the vomsdir for this VO and host."""

    reason = "VOMS server not trusted"


class LSCMismatchError(VomsError):
    """The AA certificate inside the AC does not match the LSC file."""

    reason = "VOMS server certificate does not match the LSC file"


class ACIssuerChainError(VomsError):
    """The AA certificate itself does not validate to a trusted CA."""

    reason = "VOMS server certificate not trusted"


class ACSignatureError(VomsError):
    """The AC signature does not verify with the AA key."""

    reason = "bad VOMS attribute certificate signature"


class ACAuthorityKeyIdError(VomsError):
    """authorityKeyIdentifier of the AC differs from the AA subject key identifier."""

    reason = "VOMS attribute certificate authority key mismatch"


class ACIssuerNameError(VomsError):
    """The AC issuer name is not the AA certificate subject."""

    reason = "VOMS attribute certificate issuer mismatch"


class ACHolderError(VomsError):
    """The AC holder is not this chain's end-entity certificate."""

    reason = "VOMS attributes belong to another certificate"


class ACTargetError(VomsError):
    """The AC is restricted to targets that do not include this host."""

    reason = "VOMS attributes not valid for this server"


class ACCriticalExtensionError(VomsError):
    """The AC carries a critical extension this library does not understand."""

    reason = "VOMS attribute certificate has an unknown critical extension"


class ACVOError(VomsError):
    """The AC's VO is not accepted, or an FQAN belongs to another VO."""

    reason = "VOMS attributes of an unexpected VO"


class FQANError(VomsError):
    """A string is not a well-formed FQAN."""

    reason = "malformed FQAN"
