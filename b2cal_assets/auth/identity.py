"""Distinguished names in the two spellings the grid uses.

DIRAC, LSC files and ``voms-proxy-info`` use OpenSSL's one-line "slash" form
(``/C=JP/O=KEK/OU=CRC/CN=Alice Example``: RDNs in encoding order, short attribute names);
web frameworks and logs use RFC 4514 (``CN=Alice Example,OU=CRC,O=KEK,C=JP``: reversed).
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from .errors import MalformedCertificateError

# OpenSSL short names (what X509_NAME_oneline prints); unknown types print as dotted OIDs.
_SHORT_NAMES: dict[ObjectIdentifier, str] = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN",
    NameOID.TITLE: "title",
    NameOID.STREET_ADDRESS: "street",
    NameOID.POSTAL_CODE: "postalCode",
}
_OIDS_BY_SHORT_NAME: dict[str, ObjectIdentifier] = {name.lower(): oid for oid, name in _SHORT_NAMES.items()}
# Older tools spell emailAddress as E or Email, and userId as USERID.
_OIDS_BY_SHORT_NAME.update({"e": NameOID.EMAIL_ADDRESS, "email": NameOID.EMAIL_ADDRESS, "userid": NameOID.USER_ID})

_RFC4514_OVERRIDES = {NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.USER_ID: "UID"}


def _short_name(oid: ObjectIdentifier) -> str:
    return _SHORT_NAMES.get(oid, oid.dotted_string)


def slash_dn(name: x509.Name) -> str:
    """OpenSSL one-line form, e.g. ``/C=JP/O=KEK/OU=CRC/CN=Alice Example``.

    Multi-valued RDNs are joined with ``+`` as OpenSSL does; values are not escaped,
    matching what DIRAC stores and LSC files contain.
    """
    parts = []
    for rdn in name.rdns:
        parts.append("+".join(f"{_short_name(attr.oid)}={attr.value}" for attr in rdn))
    return "/" + "/".join(parts) if parts else ""


def slash_dn_from_asn1(name: asn1_x509.Name) -> str:
    """Slash form of an asn1crypto Name (names inside attribute certificates)."""
    parts = []
    for rdn in name.chosen:
        pieces = []
        for attribute in rdn:
            oid = ObjectIdentifier(attribute["type"].dotted)
            value = attribute["value"].native
            pieces.append(f"{_short_name(oid)}={value}")
        parts.append("+".join(pieces))
    return "/" + "/".join(parts) if parts else ""


def rfc4514_dn(name: x509.Name) -> str:
    """RFC 4514 form, most specific RDN first, e.g. ``CN=Alice Example,OU=CRC,O=KEK,C=JP``."""
    return name.rfc4514_string(_RFC4514_OVERRIDES)


def parse_slash_dn(text: str) -> x509.Name:
    """Parse the OpenSSL slash form into a Name (used by the test PKI and LSC handling).

    A ``/`` inside a value (``CN=host/name``) is kept with its value when the next part has
    no ``=``, which is how OpenSSL's own ``-subj`` parser resolves it.
    """
    if not text.startswith("/"):
        raise MalformedCertificateError(f"distinguished name {text!r} does not start with '/'")
    segments: list[str] = []
    for piece in text[1:].split("/"):
        if "=" in piece or not segments:
            segments.append(piece)
        else:
            segments[-1] += "/" + piece
    rdns = []
    for segment in segments:
        attributes = []
        for pair in segment.split("+"):
            key, separator, value = pair.partition("=")
            oid = _OIDS_BY_SHORT_NAME.get(key.strip().lower())
            if not separator or oid is None:
                raise MalformedCertificateError(f"cannot parse RDN {pair!r} of distinguished name {text!r}")
            try:
                attributes.append(x509.NameAttribute(oid, value))
            except ValueError as error:  # e.g. C= must be two letters
                raise MalformedCertificateError(f"bad RDN {pair!r} in {text!r}: {error}") from error
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns)


def normalise_slash_dn(text: str) -> str:
    """Canonical slash form (``E=`` / ``Email=`` become ``emailAddress=``) for comparisons."""
    return slash_dn(parse_slash_dn(text.strip()))


@dataclass(frozen=True)
class Identity:
    """Who the chain authenticates: the end-entity certificate's subject and issuer."""

    subject: str
    subject_rfc4514: str
    issuer: str
    serial_number: int

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> Identity:
        return cls(
            subject=slash_dn(certificate.subject),
            subject_rfc4514=rfc4514_dn(certificate.subject),
            issuer=slash_dn(certificate.issuer),
            serial_number=certificate.serial_number,
        )
