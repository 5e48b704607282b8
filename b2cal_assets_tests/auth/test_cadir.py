"""The IGTF CA directory: hashed files, CRL signatures, reloads."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pytest
from cryptography.hazmat.primitives import serialization

from b2cal_assets.auth.cadir import CADirectory, load_trust_store
from b2cal_assets.auth.chain import validate_end_entity
from b2cal_assets.auth.errors import CertificateRevokedError, ConfigurationError, CRLError
from b2cal_assets.auth.pki import make_crl, openssl_subject_hash


def _copy_ca_dir(test_pki, tmp_path):
    target = tmp_path / "certificates"
    shutil.copytree(test_pki.pki.ca_dir, target)
    return target


def test_files_are_named_by_openssl_subject_hash(test_pki):
    subject_hash = openssl_subject_hash(test_pki.pki.ca.credential.cert_path)
    assert sorted(path.name for path in test_pki.pki.ca_dir.iterdir()) == [f"{subject_hash}.0", f"{subject_hash}.r0"]


def test_missing_crl_is_refused_unless_configured(test_pki, tmp_path):
    ca_dir = _copy_ca_dir(test_pki, tmp_path)
    for crl in ca_dir.glob("*.r0"):
        crl.unlink()
    bob = test_pki.pki.users["bob"].certificate
    now = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(CRLError, match="no CRL for CA"):
        validate_end_entity(bob, load_trust_store(ca_dir), now)
    assert validate_end_entity(bob, load_trust_store(ca_dir, require_crl=False), now)


def test_crl_signed_by_another_ca_is_not_used(test_pki, tmp_path):
    ca_dir = _copy_ca_dir(test_pki, tmp_path)
    rogue = test_pki.pki.rogue_ca.credential
    forged = make_crl(rogue, [])
    # Pretend the rogue CRL is the trusted CA's: same file name, wrong signer.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    builder = (x509.CertificateRevocationListBuilder().issuer_name(test_pki.pki.ca.credential.certificate.subject)
               .last_update(forged.last_update_utc).next_update(forged.next_update_utc))
    (next(ca_dir.glob("*.r0"))).write_bytes(builder.sign(rogue.private_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CRLError, match="not signed by a CA"):
        validate_end_entity(test_pki.pki.users["bob"].certificate, load_trust_store(ca_dir), dt.datetime.now(dt.timezone.utc))


def test_expired_crl_is_refused(test_pki):
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=60)
    with pytest.raises(CRLError, match="expired"):
        validate_end_entity(test_pki.pki.users["bob"].certificate, load_trust_store(test_pki.pki.ca_dir), later)


def test_reload_picks_up_a_new_crl_and_bumps_the_generation(test_pki, tmp_path):
    ca_dir = _copy_ca_dir(test_pki, tmp_path)
    directory = CADirectory(ca_dir)
    bob = test_pki.pki.users["bob"].certificate
    now = dt.datetime.now(dt.timezone.utc)
    validate_end_entity(bob, directory.store, now)
    assert directory.reload_if_changed() is False
    crl_file = next(ca_dir.glob("*.r0"))
    crl_file.write_bytes(make_crl(test_pki.pki.ca.credential, [bob.serial_number]).public_bytes(serialization.Encoding.PEM))
    os.utime(crl_file, ns=(1, 1))  # a different mtime even on coarse-clock filesystems
    assert directory.reload_if_changed() is True
    assert directory.generation == 1
    with pytest.raises(CertificateRevokedError):
        validate_end_entity(bob, directory.store, now)


def test_empty_directory_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="no readable"):
        load_trust_store(tmp_path)
