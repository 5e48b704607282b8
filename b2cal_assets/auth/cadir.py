"""The trusted CA directory in IGTF layout: ``<hash>.N`` certificates and ``<hash>.rN`` CRLs.

Files are indexed by subject name rather than trusted by file name, so a stale or wrong hash
costs nothing but a lookup. A CRL is accepted only when its issuer is one of the CAs here and
its signature verifies with that CA's key. A :class:`TrustStore` is immutable once loaded;
:meth:`CADirectory.reload_if_changed` swaps in a new one (and bumps ``generation``, which the
validation cache watches) when fetch-crl or a package update rewrites the directory.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509 import verification

from .errors import CertificateRevokedError, ConfigurationError, CRLError
from .identity import slash_dn as _slash

_CERT_FILE = re.compile(r"^[0-9a-f]{8}\.[0-9]$")
_CRL_FILE = re.compile(r"^[0-9a-f]{8}\.r[0-9]$")


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in PEM text, or the one certificate of a DER blob."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _load_crl(data: bytes) -> x509.CertificateRevocationList:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


@dataclass(frozen=True)
class TrustStore:
    """One consistent snapshot of a CA directory."""

    directory: Path
    generation: int
    cas_by_subject: dict[bytes, tuple[x509.Certificate, ...]]
    crls_by_issuer: dict[bytes, x509.CertificateRevocationList]
    crl_problems: dict[bytes, str]
    verifier_store: verification.Store | None
    require_crl: bool

    @property
    def certificates(self) -> list[x509.Certificate]:
        return [cert for certs in self.cas_by_subject.values() for cert in certs]

    def issuers_named(self, name: x509.Name) -> tuple[x509.Certificate, ...]:
        return self.cas_by_subject.get(name.public_bytes(), ())

    def check_revocation(self, certificate: x509.Certificate, issuer: x509.Certificate, at: dt.datetime) -> None:
        """Raise unless ``issuer``'s CRL is usable at ``at`` and does not list ``certificate``."""
        key = issuer.subject.public_bytes()
        crl = self.crls_by_issuer.get(key)
        if crl is None:
            problem = self.crl_problems.get(key)
            if problem is not None:
                raise CRLError(f"CRL of CA {_slash(issuer.subject)} is unusable: {problem}; run fetch-crl")
            if self.require_crl:
                raise CRLError(
                    f"no CRL for CA {_slash(issuer.subject)} in {self.directory} (expected a <hash>.r0 file); "
                    "run fetch-crl, or configure require_crl=False for a CA without CRLs"
                )
            return
        next_update = crl.next_update_utc
        if next_update is not None and at > next_update:
            raise CRLError(
                f"CRL of CA {_slash(issuer.subject)} expired at {next_update.isoformat()}; run fetch-crl",
            )
        revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if revoked is not None:
            raise CertificateRevokedError(
                f"certificate {_slash(certificate.subject)} (serial {certificate.serial_number:#x}) was revoked "
                f"by {_slash(issuer.subject)} at {revoked.revocation_date_utc.isoformat()}"
            )


def _directory_signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    for path in directory.iterdir():
        if _CERT_FILE.match(path.name) or _CRL_FILE.match(path.name):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(entries))


def load_trust_store(directory: Path, *, generation: int = 0, require_crl: bool = True) -> TrustStore:
    """Read every ``*.N`` certificate and ``*.rN`` CRL of an IGTF CA directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigurationError(f"CA directory {directory} does not exist; install the IGTF CA bundle or pass --ca-dir")
    cas: dict[bytes, list[x509.Certificate]] = {}
    for path in sorted(directory.iterdir()):
        if not _CERT_FILE.match(path.name):
            continue
        try:
            certificates = load_certificates(path.read_bytes())
        except (OSError, ValueError):
            # One broken file must not take the whole trust store down; it just trusts nothing.
            continue
        for cert in certificates:
            known = cas.setdefault(cert.subject.public_bytes(), [])
            if cert not in known:
                known.append(cert)
    if not cas:
        raise ConfigurationError(f"CA directory {directory} holds no readable <hash>.0 certificates")

    crls: dict[bytes, x509.CertificateRevocationList] = {}
    problems: dict[bytes, str] = {}
    for path in sorted(directory.iterdir()):
        if not _CRL_FILE.match(path.name):
            continue
        try:
            crl = _load_crl(path.read_bytes())
        except (OSError, ValueError) as error:
            problems.setdefault(b"?" + path.name.encode(), f"{path} unreadable: {error}")
            continue
        issuer_key = crl.issuer.public_bytes()
        signers = cas.get(issuer_key, [])
        if not any(_crl_signed_by(crl, ca) for ca in signers):
            problems[issuer_key] = f"{path} is not signed by a CA of this directory"
            continue
        current = crls.get(issuer_key)
        if current is None or crl.last_update_utc > current.last_update_utc:
            crls[issuer_key] = crl
            problems.pop(issuer_key, None)

    frozen = {key: tuple(value) for key, value in cas.items()}
    store = verification.Store([cert for certs in frozen.values() for cert in certs])
    return TrustStore(directory, generation, frozen, crls, problems, store, require_crl)


def _crl_signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


class CADirectory:
    """A CA directory that can be re-read when its files change (fetch-crl runs)."""

    def __init__(self, directory: Path | str, *, require_crl: bool = True) -> None:
        self.directory = Path(directory)
        self.require_crl = require_crl
        self._lock = threading.Lock()
        self._signature = _directory_signature(self.directory) if self.directory.is_dir() else ()
        self._store = load_trust_store(self.directory, require_crl=require_crl)

    @property
    def store(self) -> TrustStore:
        return self._store

    @property
    def generation(self) -> int:
        return self._store.generation

    def reload_if_changed(self) -> bool:
        """Re-read the directory if any file changed; True when a new snapshot was loaded."""
        signature = _directory_signature(self.directory)
        if signature == self._signature:
            return False
        with self._lock:
            if signature == self._signature:
                return False
            self._store = load_trust_store(
                self.directory, generation=self._store.generation + 1, require_crl=self.require_crl
            )
            self._signature = signature
        return True
