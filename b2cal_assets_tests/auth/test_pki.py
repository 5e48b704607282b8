"""The test-PKI maker: layout, LSC contents, CRL, and voms-proxy-fake errors."""

from __future__ import annotations

import pytest

from b2cal_assets.auth.pki import VomsProxyFakeError, voms_proxy_fake


def test_lsc_file_names_the_aa_and_its_ca(test_pki):
    lsc = test_pki.pki.vomsdir / "belle" / "voms.b2cal.test.lsc"
    assert lsc.read_text().splitlines() == ["/C=JP/O=KEK/OU=CRC/CN=voms.b2cal.test", "/C=JP/O=KEK/OU=CRC/CN=B2CAL Test CA"]


def test_crl_revokes_exactly_mallory(test_pki):
    crl = test_pki.pki.ca.crl
    assert [entry.serial_number for entry in crl] == [test_pki.pki.users["mallory"].certificate.serial_number]


def test_private_keys_are_owner_read_only(test_pki):
    assert test_pki.pki.users["alice"].key_path.stat().st_mode & 0o077 == 0


def test_voms_proxy_fake_failure_raises_with_the_command(test_pki, tmp_path):
    with pytest.raises(VomsProxyFakeError, match="voms-proxy-fake exited"):
        voms_proxy_fake(cert=tmp_path / "missing.pem", key=tmp_path / "missing.key", out=tmp_path / "out.pem",
                        ca_dir=test_pki.pki.ca_dir)
