"""VOMS attribute certificates (ACs): decoding, the reference validation checklist, FQANs.

An AC is public data signed by the VO's attribute authority (AA). It grants something only
when every check passes: AA trusted through the vomsdir (LSC file or AA certificate) and
itself issued by a trusted CA, AC signed by that AA over the original TBS bytes, issuer and
authority key id consistent, time valid (5-minute skew), holder bound to the presenting
chain's EEC, targets naming this host, no unknown critical extension, FQANs of the AC's VO.
An AC that fails grants nothing and its reason is returned, never dropped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from .cadir import TrustStore
from .chain import ValidatedChain, validate_end_entity
from .errors import (
    ACAuthorityKeyIdError,
    ACCriticalExtensionError,
    ACHolderError,
    ACIssuerChainError,
    ACIssuerNameError,
    ACIssuerUnknownError,
    ACSignatureError,
    ACTargetError,
    ACValidityError,
    ACVOError,
    ChainError,
    FQANError,
    LSCMismatchError,
    MalformedACError,
    MalformedCertificateError,
    VomsError,
)
from .identity import normalise_slash_dn, slash_dn, slash_dn_from_asn1

OID_VOMS_AC_SEQUENCE = x509.ObjectIdentifier("1.3.6.1.4.1.8005.100.100.5")
OID_VOMS_ATTRIBUTES = "1.3.6.1.4.1.8005.100.100.4"
OID_VOMS_AA_CERTIFICATES = "1.3.6.1.4.1.8005.100.100.10"
OID_VOMS_GENERIC_ATTRIBUTES = "1.3.6.1.4.1.8005.100.100.11"
OID_NO_REV_AVAIL = "2.5.29.56"
OID_AUTHORITY_KEY_ID = "2.5.29.35"
OID_TARGETS = "2.5.29.55"
KNOWN_AC_EXTENSIONS = frozenset(
    {OID_VOMS_AA_CERTIFICATES, OID_VOMS_GENERIC_ATTRIBUTES, OID_NO_REV_AVAIL, OID_AUTHORITY_KEY_ID, OID_TARGETS}
)
DEFAULT_CLOCK_SKEW = dt.timedelta(minutes=5)
LSC_CHAIN_SEPARATOR = "------ NEXT CHAIN ------"

SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


# --- ASN.1 shapes VOMS uses that asn1crypto does not name -------------------------------------


class _ACList(core.SequenceOf):
    _child_spec = cms.AttributeCertificateV2


class ACContainerSyntax(core.SequenceOf):
    # Extension value: SEQUENCE { SEQUENCE OF AttributeCertificate }
    _child_spec = _ACList


class _CertificateList(core.SequenceOf):
    _child_spec = asn1_x509.Certificate


class _AACertificates(core.SequenceOf):
    # AC extension 1.3.6.1.4.1.8005.100.100.10: SEQUENCE { SEQUENCE OF Certificate }
    _child_spec = _CertificateList


class TargetSyntax(core.Choice):
    _alternatives = [
        ("target_name", asn1_x509.GeneralName, {"explicit": 0}),
        ("target_group", asn1_x509.GeneralName, {"explicit": 1}),
        ("target_cert", core.Any, {"implicit": 2}),
    ]


class TargetsSyntax(core.SequenceOf):
    _child_spec = TargetSyntax


class VomsTargetsSyntax(core.SequenceOf):
    # VOMS wraps each Targets in one more SEQUENCE than RFC 5755 does.
    _child_spec = TargetsSyntax


# --- FQANs -------------------------------------------------------------------------------------------

_GROUP_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]+$")


def normalise_fqan(fqan: str) -> str:
    """Short form: ``/belle/Role=NULL/Capability=NULL`` -> ``/belle``,
    ``/belle/calib/Role=expert/Capability=NULL`` -> ``/belle/calib/Role=expert``."""
    text = fqan.strip()
    if not text.startswith("/") or text == "/":
        raise FQANError(f"FQAN {fqan!r} must start with /<vo>")
    groups: list[str] = []
    role: str | None = None
    capability: str | None = None
    for segment in text[1:].split("/"):
        key, separator, value = segment.partition("=")
        if separator:
            if key == "Role" and role is None and capability is None:
                role = value
            elif key == "Capability" and capability is None:
                capability = value
            else:
                raise FQANError(f"FQAN {fqan!r}: unexpected or repeated {key}= in segment {segment!r}")
            if not value or not _GROUP_SEGMENT.match(value):
                raise FQANError(f"FQAN {fqan!r}: bad value in {segment!r}")
            continue
        if role is not None or capability is not None:
            raise FQANError(f"FQAN {fqan!r}: group segment {segment!r} after Role/Capability")
        if not _GROUP_SEGMENT.match(segment):
            raise FQANError(f"FQAN {fqan!r}: bad group segment {segment!r}")
        groups.append(segment)
    if not groups:
        raise FQANError(f"FQAN {fqan!r} names no VO")
    short = "/" + "/".join(groups)
    if role is not None and role != "NULL":
        short += f"/Role={role}"
    if capability is not None and capability != "NULL":
        short += f"/Capability={capability}"
    return short


def fqan_vo(fqan: str) -> str:
    return normalise_fqan(fqan)[1:].split("/", 1)[0]


def fqan_group(fqan: str) -> str:
    """The group path of an FQAN without Role/Capability: ``/belle/calib``."""
    return "/" + "/".join(part for part in normalise_fqan(fqan)[1:].split("/") if "=" not in part)


def fqan_in_group(fqan: str, group: str) -> bool:
    """Whether ``fqan`` lies in ``group`` or below, matching whole segments
    (``/belle`` contains ``/belle/calib`` but not ``/belle2.org``)."""
    member = fqan_group(fqan).split("/")
    wanted = fqan_group(group).split("/")
    return member[: len(wanted)] == wanted


# --- decoding ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ACExtension:
    oid: str
    critical: bool
    value: bytes


@dataclass(frozen=True)
class AttributeCertificate:
    """The fields of one VOMS AC, decoded eagerly so that validation never meets raw ASN.1."""

    der: bytes
    tbs: bytes  # original encoding of AttributeCertificateInfo: the signed bytes
    version: int
    holder_names: tuple[asn1_x509.Name, ...]
    holder_serial: int | None
    issuer_names: tuple[asn1_x509.Name, ...]
    signature_algorithm: str
    signature_hash: str | None
    signature_scheme: str
    signature: bytes
    serial_number: int
    serial_octets: int
    not_before: dt.datetime
    not_after: dt.datetime
    policy_authority: str | None
    raw_fqans: tuple[str, ...]
    extensions: tuple[ACExtension, ...]
    aa_certificates: tuple[x509.Certificate, ...]
    authority_key_id: bytes | None
    targets: tuple[str, ...] | None
    inner_algorithm: str

    @property
    def vo(self) -> str | None:
        """The VO from the policy authority ``<vo>://<host>:<port>``."""
        if self.policy_authority and "://" in self.policy_authority:
            return self.policy_authority.split("://", 1)[0]
        return None

    @property
    def server(self) -> tuple[str | None, int | None]:
        """Host and port of the VOMS server from the policy authority."""
        if not self.policy_authority or "://" not in self.policy_authority:
            return None, None
        host, _, port = self.policy_authority.split("://", 1)[1].rpartition(":")
        if not host:
            return port or None, None
        return host, int(port) if port.isdigit() else None

    @property
    def issuer(self) -> str:
        return slash_dn_from_asn1(self.issuer_names[0]) if self.issuer_names else ""

    @property
    def holder(self) -> str:
        return slash_dn_from_asn1(self.holder_names[0]) if self.holder_names else ""


def _directory_names(names: asn1_x509.GeneralNames | None) -> tuple[asn1_x509.Name, ...]:
    if names is None or isinstance(names, core.Void):
        return ()
    found = tuple(name.chosen for name in names if name.name == "directory_name")
    for name in found:
        name.native  # noqa: B018 - asn1crypto parses lazily; force it now so defects surface here
    return found


def _decode(ac: cms.AttributeCertificateV2) -> AttributeCertificate:
    info = ac["ac_info"]
    holder = info["holder"]
    base_id = holder["base_certificate_id"]
    if isinstance(base_id, core.Void):
        holder_names, holder_serial = _directory_names(holder["entity_name"]), None
    else:
        holder_names, holder_serial = _directory_names(base_id["issuer"]), int(base_id["serial"].native)

    issuer = info["issuer"]
    if issuer.name == "v2_form":
        issuer_names = _directory_names(issuer.chosen["issuer_name"])
    else:
        issuer_names = _directory_names(issuer.chosen)

    algorithm = ac["signature_algorithm"]
    try:
        signature_hash: str | None = algorithm.hash_algo
    except ValueError:
        signature_hash = None  # e.g. PSS or EdDSA: reported as unsupported during validation
    scheme = algorithm.signature_algo

    serial_field = info["serial_number"]
    serial_number = int(serial_field.native)
    validity = info["att_cert_validity_period"]

    policy_authority: str | None = None
    fqans: list[str] = []
    for attribute in info["attributes"]:
        if attribute["type"].dotted != OID_VOMS_ATTRIBUTES:
            continue
        for value in attribute["values"]:
            syntax = cms.IetfAttrSyntax.load(value.dump(), strict=True)
            authorities = syntax["policy_authority"]
            if not isinstance(authorities, core.Void):
                for name in authorities:
                    if name.name == "uniform_resource_identifier":
                        policy_authority = str(name.native)
            for item in syntax["values"]:
                native = item.native
                fqans.append(native.decode("utf-8") if isinstance(native, bytes) else str(native))

    extensions: list[ACExtension] = []
    aa_certificates: list[x509.Certificate] = []
    authority_key_id = None
    targets: list[str] | None = None
    raw_extensions = info["extensions"]
    if not isinstance(raw_extensions, core.Void):
        for extension in raw_extensions:
            oid = extension["extn_id"].dotted
            critical = bool(extension["critical"].native)
            value = extension["extn_value"].contents
            extensions.append(ACExtension(oid, critical, value))
            if oid == OID_VOMS_AA_CERTIFICATES:
                for certificate_list in _AACertificates.load(value, strict=True):
                    for certificate in certificate_list:
                        aa_certificates.append(x509.load_der_x509_certificate(certificate.dump()))
            elif oid == OID_AUTHORITY_KEY_ID:
                key_id = asn1_x509.AuthorityKeyIdentifier.load(value, strict=True)["key_identifier"]
                authority_key_id = None if isinstance(key_id, core.Void) else bytes(key_id.native)
            elif oid == OID_TARGETS:
                targets = []
                for group in VomsTargetsSyntax.load(value, strict=True):
                    for target in group:
                        if target.name in ("target_name", "target_group"):
                            targets.append(str(target.chosen.native))

    return AttributeCertificate(
        der=ac.dump(),
        tbs=info.dump(),
        version={"v1": 1, "v2": 2}.get(info["version"].native, 0),
        holder_names=holder_names,
        holder_serial=holder_serial,
        issuer_names=issuer_names,
        signature_algorithm=algorithm["algorithm"].dotted,
        signature_hash=signature_hash,
        signature_scheme=scheme,
        signature=bytes(ac["signature"].native),
        serial_number=serial_number,
        serial_octets=len(serial_field.contents),
        not_before=validity["not_before_time"].native,
        not_after=validity["not_after_time"].native,
        policy_authority=policy_authority,
        raw_fqans=tuple(fqans),
        extensions=tuple(extensions),
        aa_certificates=tuple(aa_certificates),
        authority_key_id=authority_key_id,
        targets=None if targets is None else tuple(targets),
        inner_algorithm=info["signature"]["algorithm"].dotted,
    )


# asn1crypto parses lazily and signals bad input with a handful of built-in exceptions;
# they are all translated here so callers only ever see MalformedACError.
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError, UnicodeDecodeError, RecursionError)


def decode_attribute_certificate(der: bytes) -> AttributeCertificate:
    """Decode one DER AttributeCertificate; raise :class:`MalformedACError` on any defect."""
    try:
        return _decode(cms.AttributeCertificateV2.load(bytes(der), strict=True))
    except _DECODE_ERRORS as error:
        raise MalformedACError(f"cannot decode VOMS attribute certificate: {error}") from error


def decode_ac_extension(value: bytes) -> list[AttributeCertificate]:
    """Decode the value of the proxy extension 1.3.6.1.4.1.8005.100.100.5 (all ACs in it)."""
    try:
        container = ACContainerSyntax.load(bytes(value), strict=True)
        return [_decode(ac) for ac_list in container for ac in ac_list]
    except MalformedACError:
        raise
    except _DECODE_ERRORS as error:
        raise MalformedACError(f"cannot decode the VOMS extension: {error}") from error


def ac_extension_of(certificate: x509.Certificate) -> bytes | None:
    try:
        extension = certificate.extensions.get_extension_for_oid(OID_VOMS_AC_SEQUENCE)
    except x509.ExtensionNotFound:
        return None
    except ValueError as error:
        raise MalformedACError(f"certificate {slash_dn(certificate.subject)}: undecodable extensions ({error})") from error
    value = extension.value
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def find_attribute_certificates(chain: ValidatedChain) -> list[AttributeCertificate]:
    """The ACs of the proxy nearest the leaf that carries any; ACs in the EEC are ignored."""
    for proxy in chain.proxies:
        value = ac_extension_of(proxy.certificate)
        if value is not None:
            return decode_ac_extension(value)
    return []


# --- the vomsdir ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LSCEntry:
    path: Path
    chains: tuple[tuple[str, ...], ...]  # each: AA subject, then issuer subjects, normalised slash form


def read_lsc(path: Path) -> LSCEntry:
    chains: list[tuple[str, ...]] = []
    current: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-----") or line == LSC_CHAIN_SEPARATOR:
            if current:
                chains.append(tuple(current))
            current = []
            continue
        try:
            current.append(normalise_slash_dn(line))
        except MalformedCertificateError:
            current.append(line)
    if current:
        chains.append(tuple(current))
    return LSCEntry(path, tuple(chains))


@dataclass
class VomsDir:
    """The vomsdir: ``<vo>/<host>.lsc`` files, or AA certificates ``<vo>/*.pem`` as fallback."""

    directory: Path
    _lsc: dict[tuple[str, str], LSCEntry | None] = field(default_factory=dict, repr=False)
    _pems: dict[str, tuple[x509.Certificate, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)

    def clear(self) -> None:
        self._lsc.clear()
        self._pems.clear()

    def lsc(self, vo: str, host: str) -> LSCEntry | None:
        key = (vo, host)
        if key not in self._lsc:
            # A VO or host with path syntax cannot name a file we trust.
            if "/" in vo or "/" in host or vo.startswith(".") or host.startswith("."):
                self._lsc[key] = None
            else:
                path = self.directory / vo / f"{host}.lsc"
                self._lsc[key] = read_lsc(path) if path.is_file() else None
        return self._lsc[key]

    def aa_certificates(self, vo: str) -> tuple[x509.Certificate, ...]:
        if vo not in self._pems:
            found: list[x509.Certificate] = []
            vo_dir = self.directory / vo
            if "/" not in vo and not vo.startswith(".") and vo_dir.is_dir():
                for path in sorted(vo_dir.glob("*.pem")):
                    try:
                        found.extend(x509.load_pem_x509_certificates(path.read_bytes()))
                    except (OSError, ValueError):
                        continue
            self._pems[vo] = tuple(found)
        return self._pems[vo]


# --- validation -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VomsAttributes:
    """A validated AC: what it grants."""

    vo: str
    fqans: tuple[str, ...]  # short form, in AC order
    issuer: str
    holder: str
    serial_number: int
    not_before: dt.datetime
    not_after: dt.datetime
    uri: str | None


def _aa_for(ac: AttributeCertificate, vomsdir: VomsDir, vo: str) -> x509.Certificate:
    host, port = ac.server
    if host is None:
        raise MalformedACError(f"AC {ac.serial_number:#x} has no policy authority <vo>://<host>:<port>")
    lsc = vomsdir.lsc(vo, host)
    if lsc is not None:
        if not ac.aa_certificates:
            raise LSCMismatchError(
                f"AC {ac.serial_number:#x} of VO {vo} carries no AA certificate, so {lsc.path} cannot be matched"
            )
        aa = ac.aa_certificates[0]
        presented = [normalise_slash_dn(slash_dn(aa.subject)), normalise_slash_dn(slash_dn(aa.issuer))]
        for chain in lsc.chains:
            if list(chain[:2]) == presented:
                return aa
        raise LSCMismatchError(
            f"AA certificate {presented[0]} issued by {presented[1]} in AC {ac.serial_number:#x} does not match any chain in "
            f"{lsc.path} ({'; '.join(' <- '.join(chain) for chain in lsc.chains) or 'empty'}); update the LSC file "
            "if the VOMS server changed its certificate"
        )
    for candidate in vomsdir.aa_certificates(vo):
        if any(asn1_x509.Name.load(candidate.subject.public_bytes()) == name for name in ac.issuer_names):
            return candidate
    raise ACIssuerUnknownError(
        f"no {vomsdir.directory / vo / (host + '.lsc')} and no AA certificate for {ac.issuer or '?'} in "
        f"{vomsdir.directory / vo}; VO {vo} server {host}:{port} is not trusted here"
    )


def _verify_signature(ac: AttributeCertificate, aa: x509.Certificate) -> None:
    if ac.inner_algorithm != ac.signature_algorithm:
        raise ACSignatureError(
            f"AC {ac.serial_number:#x}: signature algorithm {ac.signature_algorithm} differs from the signed "
            f"field {ac.inner_algorithm}"
        )
    hash_class = SIGNATURE_HASHES.get(ac.signature_hash or "")
    if hash_class is None:
        raise ACSignatureError(f"AC {ac.serial_number:#x}: unsupported signature algorithm {ac.signature_algorithm}")
    key = aa.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and ac.signature_scheme == "rsassa_pkcs1v15":
            key.verify(ac.signature, ac.tbs, padding.PKCS1v15(), hash_class())
        elif isinstance(key, ec.EllipticCurvePublicKey) and ac.signature_scheme == "ecdsa":
            key.verify(ac.signature, ac.tbs, ec.ECDSA(hash_class()))
        else:
            raise ACSignatureError(
                f"AC {ac.serial_number:#x}: signature scheme {ac.signature_scheme} does not fit the AA key "
                f"{type(key).__name__}"
            )
    except (InvalidSignature, ValueError, UnsupportedAlgorithm) as error:
        raise ACSignatureError(
            f"AC {ac.serial_number:#x} signature does not verify with the key of AA {slash_dn(aa.subject)}: the AC was "
            "altered or signed by another key"
        ) from error


def validate_attribute_certificate(
    ac: AttributeCertificate,
    chain: ValidatedChain,
    *,
    trust: TrustStore,
    vomsdir: VomsDir,
    at: dt.datetime,
    host: str | None = None,
    expected_vos: Iterable[str] | None = None,
    clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
) -> VomsAttributes:
    """Run the checklist on one AC; raise a :class:`VomsError` subclass naming the failed check."""
    label = f"AC {ac.serial_number:#x}"
    if ac.version != 2:
        raise MalformedACError(f"{label} has version {ac.version}; VOMS ACs are v2")
    if ac.serial_octets > 20:
        raise MalformedACError(f"{label} serial number is {ac.serial_octets} octets long; at most 20 are allowed")
    vo = ac.vo
    if not vo:
        raise MalformedACError(f"{label} has no VOMS attribute with a policy authority <vo>://<host>:<port>")
    if expected_vos is not None and vo not in set(expected_vos):
        raise ACVOError(f"{label} is for VO {vo}; this service accepts {', '.join(sorted(expected_vos))}")

    aa = _aa_for(ac, vomsdir, vo)
    try:
        validate_end_entity(aa, trust, at, ac.aa_certificates[1:], role="VOMS AA certificate")
    except ChainError as error:
        raise ACIssuerChainError(f"{label}: the AA certificate is not trusted: {error}") from error
    aa_subject = asn1_x509.Name.load(aa.subject.public_bytes())
    if not any(name == aa_subject for name in ac.issuer_names):
        raise ACIssuerNameError(f"{label} issuer {ac.issuer or '(none)'} is not the AA subject {slash_dn(aa.subject)}")
    if ac.authority_key_id is not None:
        try:
            aa_key_id = aa.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            aa_key_id = x509.SubjectKeyIdentifier.from_public_key(aa.public_key()).digest  # type: ignore[arg-type]
        if aa_key_id != ac.authority_key_id:
            raise ACAuthorityKeyIdError(
                f"{label} authorityKeyIdentifier {ac.authority_key_id.hex()} != AA subject key identifier {aa_key_id.hex()}"
            )
    _verify_signature(ac, aa)

    if at < ac.not_before - clock_skew:
        raise ACValidityError(
            f"{label} is not valid before {ac.not_before.isoformat()} (checked at {at.isoformat()}, skew "
            f"{clock_skew}); check the clocks", reason="VOMS attributes not yet valid",
        )
    if at > ac.not_after + clock_skew:
        raise ACValidityError(
            f"{label} expired at {ac.not_after.isoformat()}; renew the VOMS attributes (voms-proxy-init -voms {vo})",
            reason="VOMS attributes expired",
        )

    eec = chain.end_entity
    if ac.holder_serial is None:
        raise ACHolderError(f"{label} has no baseCertificateID holder, so it cannot be bound to this certificate")
    if ac.holder_serial != eec.serial_number:
        raise ACHolderError(
            f"{label} holder serial {ac.holder_serial:#x} does not match certificate serial {eec.serial_number:#x} "
            f"of {slash_dn(eec.subject)}: the AC was issued to another certificate"
        )
    # VOMS writes the holder's subject by default, its issuer with -newformat: accept either.
    eec_names = (asn1_x509.Name.load(eec.subject.public_bytes()), asn1_x509.Name.load(eec.issuer.public_bytes()))
    if not any(name == own for name in ac.holder_names for own in eec_names):
        raise ACHolderError(
            f"{label} holder {ac.holder or '(none)'} is neither the subject {slash_dn(eec.subject)} nor the issuer "
            f"{slash_dn(eec.issuer)} of the presenting certificate"
        )

    for extension in ac.extensions:
        if extension.critical and extension.oid not in KNOWN_AC_EXTENSIONS:
            raise ACCriticalExtensionError(f"{label} carries the unknown critical extension {extension.oid}; refused")
    if ac.targets is not None:
        if host is None:
            raise ACTargetError(
                f"{label} is restricted to targets {list(ac.targets)} and no local host name is configured (--host)"
            )
        if host.lower() not in {target.lower() for target in ac.targets}:
            raise ACTargetError(f"{label} is restricted to targets {list(ac.targets) or '(none)'}, not {host}")

    fqans = []
    for raw in ac.raw_fqans:
        short = normalise_fqan(raw)
        if fqan_vo(short) != vo:
            raise ACVOError(f"{label} of VO {vo} asserts {raw}, which belongs to VO {fqan_vo(short)}")
        fqans.append(short)
    if not fqans:
        raise MalformedACError(f"{label} asserts no FQAN")
    return VomsAttributes(
        vo=vo,
        fqans=tuple(dict.fromkeys(fqans)),
        issuer=slash_dn(aa.subject),
        holder=ac.holder,
        serial_number=ac.serial_number,
        not_before=ac.not_before,
        not_after=ac.not_after,
        uri=f"{ac.server[0]}:{ac.server[1]}" if ac.server[1] is not None else ac.server[0],
    )


def validate_voms(
    chain: ValidatedChain,
    *,
    trust: TrustStore,
    vomsdir: VomsDir,
    at: dt.datetime,
    host: str | None = None,
    expected_vos: Iterable[str] | None = None,
    clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
) -> tuple[list[VomsAttributes], list[VomsError]]:
    """Validate every AC of the chain; return the granted attributes and each refusal."""
    granted: list[VomsAttributes] = []
    refused: list[VomsError] = []
    try:
        acs = find_attribute_certificates(chain)
    except VomsError as error:
        return [], [error]
    vos = None if expected_vos is None else frozenset(expected_vos)
    for ac in acs:
        try:
            granted.append(
                validate_attribute_certificate(
                    ac, chain, trust=trust, vomsdir=vomsdir, at=at, host=host, expected_vos=vos, clock_skew=clock_skew
                )
            )
        except VomsError as error:
            refused.append(error)
        except MalformedCertificateError as error:  # a certificate or name carried inside the AC (e.g. its AA's)
            refused.append(MalformedACError(f"AC {ac.serial_number:#x} carries an unusable certificate: {error.message}"))
        except _DECODE_ERRORS as error:  # a lazily parsed field that decode did not touch
            refused.append(MalformedACError(f"AC {ac.serial_number:#x} is malformed: {error}"))
    return granted, refused


def all_fqans(attributes: Sequence[VomsAttributes]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(fqan for item in attributes for fqan in item.fqans))
