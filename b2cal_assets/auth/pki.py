"""A throw-away test PKI: CA with CRL, user and host certificates, a VOMS AA, and proxies.

Certificates are made with ``cryptography``; VOMS proxies are made by the reference C++
implementation ``voms-proxy-fake`` (Debian package voms-clients), so the parser in
:mod:`b2cal_assets.auth.voms` is tested against what real VOMS servers emit.

Layout written by :func:`build_test_pki` under ``root``::

    certificates/<hash>.0, <hash>.r0   IGTF CA directory (trusted CA and its CRL)
    vomsdir/<vo>/<voms host>.lsc       LSC file naming the AA certificate and its CA
    aa/hostcert.pem, hostkey.pem       VOMS attribute authority (AA) credential
    host/hostcert.pem, hostkey.pem     a server host certificate
    users/<name>/usercert.pem, userkey.pem
    rogue/...                          a CA that is *not* trusted, with one user
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import ConfigurationError
from .identity import parse_slash_dn, slash_dn

VOMS_PROXY_FAKE = "voms-proxy-fake"
DEFAULT_VO = "belle"
DEFAULT_VOMS_HOST = "voms.b2cal.test"
DEFAULT_VOMS_PORT = 15020


@dataclass(frozen=True)
class Credential:
    """A certificate and its unencrypted private key, in memory and on disk."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    cert_path: Path
    key_path: Path

    @property
    def subject(self) -> str:
        return slash_dn(self.certificate.subject)


@dataclass(frozen=True)
class CertificateAuthority:
    credential: Credential
    crl: x509.CertificateRevocationList
    crl_path: Path
    revoked_serials: tuple[int, ...] = ()


@dataclass
class TestPKI:
    """Paths and credentials of a PKI made by :func:`build_test_pki`."""

    root: Path
    ca_dir: Path
    vomsdir: Path
    vo: str
    voms_host: str
    voms_port: int
    ca: CertificateAuthority
    aa: Credential
    host: Credential
    users: dict[str, Credential] = field(default_factory=dict)
    rogue_ca: CertificateAuthority | None = None
    rogue_users: dict[str, Credential] = field(default_factory=dict)

    @property
    def voms_uri(self) -> str:
        return f"{self.voms_host}:{self.voms_port}"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _write_credential(directory: Path, cert: x509.Certificate, key: rsa.RSAPrivateKey, stem: str) -> Credential:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{stem}cert.pem"
    key_path = directory / f"{stem}key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # voms-proxy-fake reads the key without a passphrase prompt and, like the Globus
    # tools, expects a private key readable only by its owner.
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o400)
    return Credential(cert, key, cert_path, key_path)


def make_ca(directory: Path, subject: str, *, days: int = 3650) -> Credential:
    """A self-signed CA certificate (CA:TRUE, keyCertSign, cRLSign) written to ``directory``."""
    key = _new_key()
    name = parse_slash_dn(subject)
    now = _utcnow()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write_credential(directory, cert, key, "ca")


def issue_certificate(
    ca: Credential,
    directory: Path,
    subject: str,
    *,
    stem: str = "user",
    serial: int | None = None,
    dns_names: Sequence[str] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Credential:
    """An end-entity certificate signed by ``ca``: a user (clientAuth) or, with
    ``dns_names``, a host/AA certificate (serverAuth and clientAuth)."""
    key = _new_key()
    now = _utcnow()
    builder = (
        x509.CertificateBuilder()
        .subject_name(parse_slash_dn(subject))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=395))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=True, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()), critical=False
        )
    )
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if dns_names:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]), critical=False
        )
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    cert = builder.sign(ca.private_key, hashes.SHA256())
    return _write_credential(directory, cert, key, stem)


def make_crl(ca: Credential, revoked_serials: Sequence[int], *, days: int = 30) -> x509.CertificateRevocationList:
    now = _utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now - dt.timedelta(hours=1))
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - dt.timedelta(hours=1)).build()
        )
    return builder.sign(ca.private_key, hashes.SHA256())


def openssl_subject_hash(cert_path: Path) -> str:
    """The OpenSSL subject hash used to name files in an IGTF CA directory.

    The hash is over OpenSSL's canonical name encoding; asking openssl avoids
    re-implementing that canonicalisation here.
    """
    try:
        result = subprocess.run(
            ["openssl", "x509", "-noout", "-subject_hash", "-in", str(cert_path)],
            check=True, capture_output=True, text=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        raise ConfigurationError(f"cannot hash {cert_path} with openssl ({error}); install the openssl package") from error
    return result.stdout.strip()


def install_ca(ca_dir: Path, ca: Credential, crl: x509.CertificateRevocationList) -> tuple[Path, Path]:
    """Copy a CA and its CRL into an IGTF-layout directory as ``<hash>.0`` and ``<hash>.r0``."""
    ca_dir.mkdir(parents=True, exist_ok=True)
    subject_hash = openssl_subject_hash(ca.cert_path)
    cert_file = ca_dir / f"{subject_hash}.0"
    crl_file = ca_dir / f"{subject_hash}.r0"
    shutil.copyfile(ca.cert_path, cert_file)
    crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return cert_file, crl_file


def make_authority(directory: Path, subject: str, revoked_serials: Sequence[int] = ()) -> CertificateAuthority:
    credential = make_ca(directory, subject)
    crl = make_crl(credential, revoked_serials)
    crl_path = directory / "ca.r0.pem"
    crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return CertificateAuthority(credential, crl, crl_path, tuple(revoked_serials))


def write_lsc(vomsdir: Path, vo: str, voms_host: str, chain: Sequence[x509.Certificate]) -> Path:
    """``vomsdir/<vo>/<host>.lsc``: the AA subject, then its issuers, in OpenSSL slash form."""
    vo_dir = vomsdir / vo
    vo_dir.mkdir(parents=True, exist_ok=True)
    lsc = vo_dir / f"{voms_host}.lsc"
    lines = [slash_dn(chain[0].subject)] + [slash_dn(cert.issuer) for cert in chain]
    lsc.write_text("\n".join(lines[: len(chain) + 1]) + "\n")
    return lsc


def build_test_pki(
    root: Path,
    *,
    vo: str = DEFAULT_VO,
    voms_host: str = DEFAULT_VOMS_HOST,
    voms_port: int = DEFAULT_VOMS_PORT,
    users: Sequence[str] = ("alice", "bob"),
    revoked_users: Sequence[str] = ("mallory",),
) -> TestPKI:
    """Make a complete PKI under ``root``; see the module docstring for the layout."""
    root.mkdir(parents=True, exist_ok=True)
    ca_subject = "/C=JP/O=KEK/OU=CRC/CN=B2CAL Test CA"
    ca_credential = make_ca(root / "ca", ca_subject)
    people: dict[str, Credential] = {}
    for name in [*users, *revoked_users]:
        people[name] = issue_certificate(
            ca_credential, root / "users" / name, f"/C=JP/O=KEK/OU=CRC/CN={name.capitalize()} Example"
        )
    aa = issue_certificate(ca_credential, root / "aa", f"/C=JP/O=KEK/OU=CRC/CN={voms_host}", stem="host", dns_names=[voms_host])
    host = issue_certificate(ca_credential, root / "host", "/C=JP/O=KEK/OU=CRC/CN=b2cal.b2cal.test", stem="host", dns_names=["b2cal.b2cal.test"])
    revoked = tuple(people[name].certificate.serial_number for name in revoked_users)
    crl = make_crl(ca_credential, revoked)
    crl_path = root / "ca" / "ca.r0.pem"
    crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    ca = CertificateAuthority(ca_credential, crl, crl_path, revoked)

    ca_dir = root / "certificates"
    install_ca(ca_dir, ca_credential, crl)
    vomsdir = root / "vomsdir"
    write_lsc(vomsdir, vo, voms_host, [aa.certificate])

    rogue = make_authority(root / "rogue" / "ca", "/C=XX/O=Nowhere/CN=Rogue CA")
    rogue_users = {
        "eve": issue_certificate(rogue.credential, root / "rogue" / "eve", "/C=XX/O=Nowhere/CN=Eve Example")
    }
    return TestPKI(
        root=root, ca_dir=ca_dir, vomsdir=vomsdir, vo=vo, voms_host=voms_host, voms_port=voms_port,
        ca=ca, aa=aa, host=host, users=people, rogue_ca=rogue, rogue_users=rogue_users,
    )


# --- proxies through the reference implementation ----------------------------------------------


class VomsProxyFakeError(ConfigurationError):
    """voms-proxy-fake is missing or failed."""


def voms_proxy_fake(
    *,
    cert: Path,
    key: Path,
    out: Path,
    ca_dir: Path,
    aa: Credential | None = None,
    vo: str = DEFAULT_VO,
    uri: str = f"{DEFAULT_VOMS_HOST}:{DEFAULT_VOMS_PORT}",
    fqans: Sequence[str] = (),
    hours: int | None = None,
    vomslife: int | None = None,
    past_proxy: str | None = None,
    past_ac: str | None = None,
    limited: bool = False,
    targets: Sequence[str] = (),
    newformat: bool = False,
    ac_extensions: Sequence[str] = (),
    new_subject: str | None = None,
    proxy_version: int = 4,
    path_length: int | None = None,
    policy_language: str | None = None,
    extra_args: Sequence[str] = (),
    bits: int = 2048,
) -> Path:
    """Run ``voms-proxy-fake`` and return the proxy file (proxy, key, issuer chain).

    ``aa`` set means the proxy carries an AC signed by that AA for ``fqans``; without it a
    plain proxy is made. ``proxy_version`` 2 makes a legacy Globus proxy, 4 an RFC proxy.
    """
    if shutil.which(VOMS_PROXY_FAKE) is None:
        raise VomsProxyFakeError(
            "voms-proxy-fake not found; install it with `apt-get install -y voms-clients`"
        )
    command = [
        VOMS_PROXY_FAKE, "-q", "-cert", str(cert), "-key", str(key), "-out", str(out),
        "-bits", str(bits), "-certdir", str(ca_dir),
    ]
    # -rfc and -proxyver are mutually exclusive in voms-proxy-fake.
    command += ["-rfc"] if proxy_version >= 4 else ["-proxyver", str(proxy_version)]
    if aa is not None:
        command += ["-hostcert", str(aa.cert_path), "-hostkey", str(aa.key_path), "-voms", vo, "-uri", uri]
        for fqan in fqans:
            command += ["-fqan", fqan]
    if hours is not None:
        command += ["-hours", str(hours)]
    if vomslife is not None:
        command += ["-vomslife", str(vomslife)]
    if past_proxy is not None:
        command += ["-pastproxy", past_proxy]
    if past_ac is not None:
        command += ["-pastac", past_ac]
    if limited:
        command.append("-limited")
    for target in targets:
        command += ["-target", target]
    if newformat:
        command.append("-newformat")
    for extension in ac_extensions:
        command += ["-acextension", extension]
    if new_subject is not None:
        command += ["-newsubject", new_subject]
    if path_length is not None:
        command += ["-path-length", str(path_length)]
    if policy_language is not None:
        command += ["-policy-language", policy_language]
    command += list(extra_args)
    out.parent.mkdir(parents=True, exist_ok=True)
    # voms-proxy-fake 2.1.0~rc3 crashes at random with -target (SIGSEGV in about half the runs of
    # the same command here): a crash is retried, any other failure is reported at once.
    for _ in range(8):
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != -signal.SIGSEGV:
            break
    if result.returncode != 0 or not out.exists():
        raise VomsProxyFakeError(
            f"voms-proxy-fake exited with {result.returncode}: {result.stderr.strip() or result.stdout.strip()} "
            f"(command: {' '.join(command)})"
        )
    return out


def load_credential(directory: Path, stem: str) -> Credential:
    """Read ``<stem>cert.pem`` and ``<stem>key.pem`` from ``directory``."""
    cert_path, key_path = directory / f"{stem}cert.pem", directory / f"{stem}key.pem"
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read credential {cert_path} / {key_path}: {error}") from error
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ConfigurationError(f"{key_path} is not an RSA key; voms-proxy-fake needs RSA")
    return Credential(certificate, private_key, cert_path, key_path)


# --- proxies made here, for shapes voms-proxy-fake cannot produce ------------------------------
# voms-proxy-fake 2.1.0~rc3 cannot delegate from a proxy, asserts on -policy-language, and
# writes AC targets empty; these helpers fill those gaps with cryptography + asn1crypto.


def read_proxy_file(path: Path) -> tuple[list[x509.Certificate], rsa.RSAPrivateKey]:
    """Certificates (leaf first) and the private key of a proxy file."""
    data = path.read_bytes()
    certificates = x509.load_pem_x509_certificates(data)
    start = data.index(b"-----BEGIN RSA PRIVATE KEY-----") if b"BEGIN RSA PRIVATE KEY" in data else data.index(b"-----BEGIN PRIVATE KEY-----")
    end_marker = b"PRIVATE KEY-----"
    end = data.index(end_marker, data.index(b"-----END", start)) + len(end_marker)
    key = serialization.load_pem_private_key(data[start:end], password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError(f"{path}: proxy key is not RSA")
    return certificates, key


def write_proxy_file(path: Path, certificates: Sequence[x509.Certificate], key: rsa.RSAPrivateKey) -> Path:
    """Globus layout: proxy certificate, its key, then the issuer chain."""
    parts = [certificates[0].public_bytes(serialization.Encoding.PEM)]
    parts.append(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    parts += [cert.public_bytes(serialization.Encoding.PEM) for cert in certificates[1:]]
    path.write_bytes(b"".join(parts))
    os.chmod(path, 0o600)
    return path


def issue_proxy(
    issuer_chain: Sequence[x509.Certificate],
    issuer_key: rsa.RSAPrivateKey,
    out: Path,
    *,
    policy_language: str = "1.3.6.1.5.5.7.21.1",
    policy: bytes | None = None,
    path_length: int | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    common_name: str | None = None,
    proxy_key: rsa.RSAPrivateKey | None = None,
    hours: int = 12,
) -> Path:
    """An RFC 3820 proxy signed by ``issuer_key`` (an EEC or a proxy), written as a proxy file."""

    from .chain import OID_PROXY_CERT_INFO, ProxyCertInfoSyntax

    issuer = issuer_chain[0]
    key = proxy_key or _new_key(2048)
    serial = x509.random_serial_number() >> 96  # short serials, as proxy tools make
    name = x509.Name([*issuer.subject.rdns, x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, common_name or str(serial))])])
    info = {"proxy_policy": {"policy_language": policy_language}}
    if policy is not None:
        info["proxy_policy"]["policy"] = policy  # type: ignore[index]
    if path_length is not None:
        info["path_len_constraint"] = path_length  # type: ignore[assignment]
    pci = ProxyCertInfoSyntax(info).dump()
    now = _utcnow()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=hours))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.UnrecognizedExtension(OID_PROXY_CERT_INFO, pci), critical=True)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    proxy = builder.sign(issuer_key, hashes.SHA256())
    return write_proxy_file(out, [proxy, *issuer_chain], key)


def reissue_with_ac_extension(proxy_file: Path, issuer_key: rsa.RSAPrivateKey, ac_extension_value: bytes, out: Path) -> Path:
    """Copy a proxy with its VOMS extension replaced, re-signed by ``issuer_key``.

    Keeps subject, serial, key and validity, so only the AC differs: the way to make a
    proxy whose chain is sound but whose AC was tampered with or grafted from another user.
    """
    from .voms import OID_VOMS_AC_SEQUENCE

    certificates, key = read_proxy_file(proxy_file)
    proxy = certificates[0]
    builder = (
        x509.CertificateBuilder()
        .subject_name(proxy.subject)
        .issuer_name(proxy.issuer)
        .public_key(proxy.public_key())  # type: ignore[arg-type]
        .serial_number(proxy.serial_number)
        .not_valid_before(proxy.not_valid_before_utc)
        .not_valid_after(proxy.not_valid_after_utc)
    )
    for extension in proxy.extensions:
        value = extension.value
        if extension.oid == OID_VOMS_AC_SEQUENCE:
            value = x509.UnrecognizedExtension(OID_VOMS_AC_SEQUENCE, ac_extension_value)
        builder = builder.add_extension(value, critical=extension.critical)
    reissued = builder.sign(issuer_key, hashes.SHA256())
    return write_proxy_file(out, [reissued, *certificates[1:]], key)


def resign_ac_extension(ac_extension_value: bytes, aa: Credential, *, targets: Sequence[str] | None = None) -> bytes:
    """Re-sign the first AC of a VOMS extension with the AA key after setting the hosts of its
    (existing) targets extension.

    Needed because voms-proxy-fake 2.1.0~rc3 writes an empty targets list.
    """
    from asn1crypto import cms
    from asn1crypto import x509 as asn1_x509

    from .voms import OID_TARGETS, ACContainerSyntax, TargetSyntax, VomsTargetsSyntax

    container = ACContainerSyntax.load(ac_extension_value)
    ac = container[0][0]
    info = cms.AttributeCertificateInfoV2.load(ac["ac_info"].dump())
    if targets is not None:
        named = [TargetSyntax(name="target_name", value=asn1_x509.GeneralName(name="dns_name", value=host)) for host in targets]
        encoded = VomsTargetsSyntax([named]).dump()
        for extension in info["extensions"]:
            if extension["extn_id"].dotted == OID_TARGETS:
                extension["extn_value"] = encoded
    tbs = info.dump(force=True)
    signature = aa.private_key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    resigned = cms.AttributeCertificateV2(
        {"ac_info": cms.AttributeCertificateInfoV2.load(tbs), "signature_algorithm": ac["signature_algorithm"], "signature": signature}
    )
    return ACContainerSyntax([[resigned]]).dump(force=True)
