"""Validation of a presented certificate chain: proxies (RFC 3820), EEC, trusted CA, CRLs.

The chain is leaf first, as TLS presents it: ``[proxy, ..., proxy, EEC, (CA...)]``.
The EEC (first certificate that is not a proxy) is verified against the CA directory with
``cryptography``'s path builder, which cannot handle proxies; each proxy above it is then
checked here against the rules of RFC 3820, signature by signature.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509 import verification
from cryptography.x509.oid import ExtensionOID, NameOID

from .cadir import TrustStore
from .errors import (
    CertificateValidityError,
    ChainError,
    EmptyChainError,
    LegacyProxyError,
    MalformedCertificateError,
    ProxyError,
    ProxyKeyUsageError,
    ProxyNamingError,
    ProxyPathLengthError,
    ProxyPolicyError,
    SignatureError,
    UntrustedIssuerError,
)
from .identity import Identity, slash_dn

OID_PROXY_CERT_INFO = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")
# GT3 "draft" proxies used this OID (with the fields in a different order).
OID_PROXY_CERT_INFO_DRAFT = x509.ObjectIdentifier("1.3.6.1.4.1.3536.1.222")
LEGACY_PROXY_CNS = frozenset({"proxy", "limited proxy"})


class ProxyPolicyLanguage(str, Enum):
    INHERIT_ALL = "1.3.6.1.5.5.7.21.1"
    INDEPENDENT = "1.3.6.1.5.5.7.21.2"
    ANY_LANGUAGE = "1.3.6.1.5.5.7.21.0"
    LIMITED = "1.3.6.1.4.1.3536.1.1.1.9"


class ProxyPolicySyntax(core.Sequence):
    _fields = [("policy_language", core.ObjectIdentifier), ("policy", core.OctetString, {"optional": True})]


class ProxyCertInfoSyntax(core.Sequence):
    # RFC 3820 section 3.8: ProxyCertInfo ::= SEQUENCE { pCPathLenConstraint INTEGER OPTIONAL, proxyPolicy }
    _fields = [("path_len_constraint", core.Integer, {"optional": True}), ("proxy_policy", ProxyPolicySyntax)]


@dataclass(frozen=True)
class ProxyPolicy:
    """Which proxy kinds a service accepts besides plain inheritAll proxies."""

    allow_limited: bool = False
    allow_independent: bool = False
    allow_any_language: bool = False


@dataclass(frozen=True)
class ProxyInfo:
    certificate: x509.Certificate
    policy_language: str
    path_length: int | None

    @property
    def limited(self) -> bool:
        return self.policy_language == ProxyPolicyLanguage.LIMITED.value


@dataclass(frozen=True)
class ValidatedChain:
    """A chain that passed every check, with what later stages need from it."""

    certificates: tuple[x509.Certificate, ...]
    proxies: tuple[ProxyInfo, ...]  # leaf first
    end_entity: x509.Certificate
    ca_path: tuple[x509.Certificate, ...]  # issuers of the EEC up to the trust anchor
    identity: Identity
    limited: bool
    not_after: dt.datetime  # earliest notAfter over the proxies, EEC and CA path

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def parse_chain(data: bytes | Sequence[bytes]) -> list[x509.Certificate]:
    """Certificates from PEM text (any private key block is skipped), one DER certificate,
    or a sequence of DER certificates (what a TLS stack returns), leaf first."""
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            blob = bytes(data)
            if b"-----BEGIN" in blob:
                certificates = x509.load_pem_x509_certificates(blob)
            else:
                certificates = [x509.load_der_x509_certificate(blob)]
        else:
            certificates = [x509.load_der_x509_certificate(bytes(item)) for item in data]
    except (ValueError, TypeError) as error:
        raise MalformedCertificateError(f"cannot decode the presented certificates: {error}") from error
    if not certificates:
        raise EmptyChainError("no certificate was presented (TLS session resumed, or client sent none)")
    return certificates


def _proxy_cert_info(certificate: x509.Certificate) -> tuple[x509.Extension[x509.ExtensionType], ProxyInfo] | None:
    try:
        extension = certificate.extensions.get_extension_for_oid(OID_PROXY_CERT_INFO)
    except x509.ExtensionNotFound:
        return None
    except ValueError as error:  # duplicate or undecodable extensions
        raise MalformedCertificateError(f"certificate {slash_dn(certificate.subject)}: {error}") from error
    raw = extension.value.value if isinstance(extension.value, x509.UnrecognizedExtension) else b""
    try:
        parsed = ProxyCertInfoSyntax.load(raw, strict=True)
        language = parsed["proxy_policy"]["policy_language"].dotted
        length_field = parsed["path_len_constraint"]
        path_length = None if length_field.native is None else int(length_field.native)
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedCertificateError(
            f"proxy {slash_dn(certificate.subject)}: undecodable proxyCertInfo extension ({error})"
        ) from error
    if path_length is not None and path_length < 0:
        raise MalformedCertificateError(f"proxy {slash_dn(certificate.subject)}: negative pCPathLenConstraint")
    return extension, ProxyInfo(certificate, language, path_length)


def _has_extension(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> bool:
    return any(extension.oid == oid for extension in certificate.extensions)


def _is_legacy_proxy(certificate: x509.Certificate) -> bool:
    """Globus GT2 proxy: subject = issuer + CN=proxy or CN=limited proxy, no proxyCertInfo."""
    rdns = list(certificate.subject.rdns)
    if len(rdns) < 2 or list(certificate.issuer.rdns) != rdns[:-1]:
        return False
    last = list(rdns[-1])
    return len(last) == 1 and last[0].oid == NameOID.COMMON_NAME and last[0].value in LEGACY_PROXY_CNS


def _check_validity(certificate: x509.Certificate, at: dt.datetime, role: str) -> None:
    if at < certificate.not_valid_before_utc:
        raise CertificateValidityError(
            f"{role} {slash_dn(certificate.subject)} is not valid before {certificate.not_valid_before_utc.isoformat()} "
            f"(checked at {at.isoformat()}); check the clocks"
        )
    if at > certificate.not_valid_after_utc:
        raise CertificateValidityError(
            f"{role} {slash_dn(certificate.subject)} expired at {certificate.not_valid_after_utc.isoformat()}; "
            + ("make a new proxy (voms-proxy-init)" if role == "proxy" else "renew the certificate")
        )


def _check_proxy_rules(info: ProxyInfo, issuer: x509.Certificate, proxies_below: int, policy: ProxyPolicy) -> None:
    proxy = info.certificate
    name = slash_dn(proxy.subject)
    subject_rdns, issuer_rdns = list(proxy.subject.rdns), list(issuer.subject.rdns)
    last = list(subject_rdns[-1]) if subject_rdns else []
    if (
        len(subject_rdns) != len(issuer_rdns) + 1
        or subject_rdns[:-1] != issuer_rdns
        or len(last) != 1
        or last[0].oid != NameOID.COMMON_NAME
    ):
        raise ProxyNamingError(
            f"proxy subject {name} must be its issuer's subject {slash_dn(issuer.subject)} plus one CN "
            "(RFC 3820 section 3.4)"
        )
    if _has_extension(proxy, ExtensionOID.SUBJECT_ALTERNATIVE_NAME) or _has_extension(proxy, ExtensionOID.ISSUER_ALTERNATIVE_NAME):
        raise ProxyKeyUsageError(f"proxy {name} carries subjectAltName/issuerAltName, forbidden by RFC 3820")
    try:
        constraints = proxy.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            raise ProxyKeyUsageError(f"proxy {name} claims cA=TRUE; a proxy cannot be a CA")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = proxy.extensions.get_extension_for_class(x509.KeyUsage).value
        if usage.key_cert_sign:
            raise ProxyKeyUsageError(f"proxy {name} has keyUsage keyCertSign; a proxy cannot sign certificates")
    except x509.ExtensionNotFound:
        pass
    try:
        issuer_usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not issuer_usage.digital_signature:
            raise ProxyKeyUsageError(
                f"issuer {slash_dn(issuer.subject)} of proxy {name} lacks keyUsage digitalSignature and may not sign proxies"
            )
    except x509.ExtensionNotFound:
        pass

    language = info.policy_language
    if language == ProxyPolicyLanguage.LIMITED.value and not policy.allow_limited:
        raise ProxyPolicyError(f"proxy {name} is a limited proxy; this service does not accept limited proxies")
    if language == ProxyPolicyLanguage.INDEPENDENT.value and not policy.allow_independent:
        raise ProxyPolicyError(f"proxy {name} is an independent proxy (inherits no rights); not accepted here")
    if language == ProxyPolicyLanguage.ANY_LANGUAGE.value and not policy.allow_any_language:
        raise ProxyPolicyError(f"proxy {name} uses the anyLanguage policy, which this service does not interpret")
    if language not in {member.value for member in ProxyPolicyLanguage}:
        raise ProxyPolicyError(f"proxy {name} uses the unknown policy language {language}; refused")

    if info.path_length is not None and proxies_below > info.path_length:
        raise ProxyPathLengthError(
            f"proxy {name} allows {info.path_length} further proxies (pCPathLenConstraint) but {proxies_below} follow"
        )


def _verify_signature(certificate: x509.Certificate, issuer: x509.Certificate, role: str) -> None:
    try:
        certificate.verify_directly_issued_by(issuer)
    except ValueError as error:
        raise ChainError(
            f"{role} {slash_dn(certificate.subject)} names issuer {slash_dn(certificate.issuer)} but the next certificate "
            f"is {slash_dn(issuer.subject)}; send the chain leaf first ({error})",
            reason="certificate chain out of order",
        ) from error
    except InvalidSignature as error:
        raise SignatureError(
            f"signature of {role} {slash_dn(certificate.subject)} does not verify with the key of {slash_dn(issuer.subject)}"
        ) from error
    except (TypeError, UnsupportedAlgorithm) as error:
        raise SignatureError(f"{role} {slash_dn(certificate.subject)}: unsupported signature ({error})") from error


def validate_end_entity(
    certificate: x509.Certificate,
    trust: TrustStore,
    at: dt.datetime,
    intermediates: Sequence[x509.Certificate] = (),
    *,
    role: str = "certificate",
) -> tuple[x509.Certificate, ...]:
    """Verify an end-entity certificate up to a trusted CA and check CRLs along the path.

    Returns the issuer path (first issuer to trust anchor). Also used for the VOMS AA
    certificate, whose trust the checklist requires just as much.
    """
    _check_validity(certificate, at, role)
    if trust.verifier_store is None:  # pragma: no cover - load_trust_store always builds one
        raise UntrustedIssuerError("no trusted CAs configured")
    builder = (
        verification.PolicyBuilder()
        .store(trust.verifier_store)
        .time(at)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            # Grid EECs vary (no SAN, no EKU, nsCertType...): the CA signature and
            # basic constraints are what matter, not web-PKI leaf profiles.
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
    )
    try:
        verified = builder.build_client_verifier().verify(certificate, list(intermediates))
    except verification.VerificationError as error:
        raise UntrustedIssuerError(
            f"{role} {slash_dn(certificate.subject)} issued by {slash_dn(certificate.issuer)} does not chain to a CA in "
            f"{trust.directory}: {error}; install that CA's IGTF package if it should be trusted"
        ) from error
    path = tuple(verified.chain[1:])
    # The anchor is last and only ever a parent: nobody above it publishes a CRL for it.
    subjects = [certificate, *path]
    for child, parent in zip(subjects, subjects[1:]):
        trust.check_revocation(child, parent, at)
    return path


def validate_chain(
    certificates: Sequence[x509.Certificate],
    trust: TrustStore,
    *,
    at: dt.datetime | None = None,
    policy: ProxyPolicy = ProxyPolicy(),
) -> ValidatedChain:
    """Validate ``[proxy..., EEC, extra...]``; raise a :class:`ChainError` subclass on refusal."""
    if not certificates:
        raise EmptyChainError("no certificate was presented (TLS session resumed, or client sent none)")
    at = at or _now()
    proxies: list[ProxyInfo] = []
    end_entity_index = None
    for index, certificate in enumerate(certificates):
        found = _proxy_cert_info(certificate)
        if found is not None:
            extension, info = found
            if not extension.critical:
                raise ProxyError(f"proxy {slash_dn(certificate.subject)}: proxyCertInfo must be critical (RFC 3820)")
            proxies.append(info)
            continue
        if _has_extension(certificate, OID_PROXY_CERT_INFO_DRAFT):
            raise LegacyProxyError(
                f"{slash_dn(certificate.subject)} is a pre-RFC draft (GT3) proxy; such proxies fail OpenSSL handshakes "
                "too. Create an RFC 3820 proxy (voms-proxy-init -rfc)"
            )
        if _is_legacy_proxy(certificate):
            raise LegacyProxyError(
                f"{slash_dn(certificate.subject)} is a legacy Globus proxy (no proxyCertInfo, CN=proxy); such proxies "
                "fail OpenSSL handshakes too. Create an RFC 3820 proxy (voms-proxy-init -rfc)"
            )
        end_entity_index = index
        break
    if end_entity_index is None:
        raise ChainError(
            "the chain holds only proxies; send the end-entity certificate after them",
            reason="end-entity certificate missing",
        )

    end_entity = certificates[end_entity_index]
    # Certificates after the EEC may help to reach a trusted CA; the verifier checks them as CAs.
    ca_path = validate_end_entity(end_entity, trust, at, certificates[end_entity_index + 1 :], role="end-entity certificate")

    for index in range(end_entity_index - 1, -1, -1):
        info, issuer = proxies[index], certificates[index + 1]
        _verify_signature(info.certificate, issuer, "proxy")
        _check_validity(info.certificate, at, "proxy")
        _check_proxy_rules(info, issuer, proxies_below=index, policy=policy)

    used = [*certificates[: end_entity_index + 1], *ca_path]
    return ValidatedChain(
        certificates=tuple(certificates),
        proxies=tuple(proxies),
        end_entity=end_entity,
        ca_path=ca_path,
        identity=Identity.from_certificate(end_entity),
        limited=any(proxy.limited for proxy in proxies),
        not_after=min(cert.not_valid_after_utc for cert in used),
    )
