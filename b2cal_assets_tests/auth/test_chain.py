"""Chain validation: EEC to trusted CA, CRLs, and the RFC 3820 proxy rules."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization

from b2cal_assets.auth.cadir import load_trust_store
from b2cal_assets.auth.chain import ProxyPolicy, ProxyPolicyLanguage, parse_chain, validate_chain
from b2cal_assets.auth.errors import (
    CertificateRevokedError,
    CertificateValidityError,
    ChainError,
    EmptyChainError,
    LegacyProxyError,
    MalformedCertificateError,
    ProxyNamingError,
    ProxyPathLengthError,
    ProxyPolicyError,
    UntrustedIssuerError,
)
from b2cal_assets.auth.pki import issue_proxy, read_proxy_file


def _validate(test_pki, path, **options):
    store = load_trust_store(test_pki.pki.ca_dir)
    return validate_chain(parse_chain(path.read_bytes()), store, **options)


def test_rfc_proxy_validates_to_the_eec_identity(test_pki):
    chain = _validate(test_pki, test_pki.proxy("plain", voms=False))
    assert chain.identity.subject == "/C=JP/O=KEK/OU=CRC/CN=Alice Example"
    assert chain.identity.subject_rfc4514 == "CN=Alice Example,OU=CRC,O=KEK,C=JP"
    assert len(chain.proxies) == 1 and chain.ca_path[-1].subject == test_pki.pki.ca.credential.certificate.subject
    assert chain.not_after == chain.proxies[0].certificate.not_valid_after_utc


def test_bare_eec_is_accepted_as_a_browser_would_present_it(test_pki):
    chain = _validate(test_pki, test_pki.pki.users["bob"].cert_path)
    assert chain.proxies == () and chain.identity.subject.endswith("CN=Bob Example")


def test_chain_given_as_der_list_validates(test_pki):
    certificates = parse_chain(test_pki.proxy("plain", voms=False).read_bytes())
    der = [cert.public_bytes(serialization.Encoding.DER) for cert in certificates]
    chain = validate_chain(parse_chain(der), load_trust_store(test_pki.pki.ca_dir))
    assert chain.identity.subject.endswith("CN=Alice Example")


def test_expired_proxy_is_refused_with_its_expiry(test_pki):
    path = test_pki.proxy("expired-proxy", voms=False, hours=1, past_proxy="2:00")
    with pytest.raises(CertificateValidityError, match="proxy .* expired at"):
        _validate(test_pki, path)


def test_limited_proxy_is_refused_unless_allowed(test_pki):
    path = test_pki.proxy("limited", voms=False, limited=True)
    with pytest.raises(ProxyPolicyError, match="limited proxy"):
        _validate(test_pki, path)
    chain = _validate(test_pki, path, policy=ProxyPolicy(allow_limited=True))
    assert chain.limited


def test_independent_proxy_is_refused_unless_allowed(test_pki, tmp_path):
    certificates, key = read_proxy_file(test_pki.proxy("plain", voms=False))
    alice = test_pki.pki.users["alice"]
    path = issue_proxy([alice.certificate], alice.private_key, tmp_path / "independent.pem",
                       policy_language=ProxyPolicyLanguage.INDEPENDENT.value)
    with pytest.raises(ProxyPolicyError, match="independent"):
        _validate(test_pki, path)
    assert _validate(test_pki, path, policy=ProxyPolicy(allow_independent=True)).identity.subject.endswith("Alice Example")


def test_proxy_subject_not_extending_the_issuer_is_refused(test_pki):
    path = test_pki.proxy("bad-naming", voms=False, new_subject="/C=JP/O=KEK/OU=CRC/CN=Bob Example/CN=12345")
    with pytest.raises(ProxyNamingError, match="plus one CN"):
        _validate(test_pki, path)


def test_revoked_eec_is_refused(test_pki):
    path = test_pki.proxy("revoked", user="mallory", voms=False)
    with pytest.raises(CertificateRevokedError, match="Mallory Example .* revoked"):
        _validate(test_pki, path)


def test_eec_of_an_untrusted_ca_is_refused(test_pki):
    path = test_pki.proxy("untrusted", user="eve", voms=False)
    with pytest.raises(UntrustedIssuerError, match="Eve Example .* does not chain to a CA"):
        _validate(test_pki, path)


def test_proxy_of_a_proxy_validates(test_pki, tmp_path):
    certificates, key = read_proxy_file(test_pki.proxy("voms-one"))
    path = issue_proxy(certificates, key, tmp_path / "second.pem")
    chain = _validate(test_pki, path)
    assert len(chain.proxies) == 2 and chain.identity.subject.endswith("Alice Example")


def test_path_length_constraint_limits_delegation(test_pki, tmp_path):
    certificates, key = read_proxy_file(test_pki.proxy("pathlen0", voms=False, path_length=0))
    path = issue_proxy(certificates, key, tmp_path / "too-deep.pem")
    with pytest.raises(ProxyPathLengthError, match="allows 0 further proxies"):
        _validate(test_pki, path)


def test_legacy_globus_proxy_is_refused_saying_so(test_pki):
    path = test_pki.proxy("legacy", voms=False, proxy_version=2)
    with pytest.raises(LegacyProxyError, match="legacy Globus proxy") as caught:
        _validate(test_pki, path)
    assert "RFC 3820" in caught.value.reason or "RFC" in str(caught.value)


def test_proxy_signed_by_another_key_is_refused(test_pki, tmp_path):
    bob = test_pki.pki.users["bob"]
    alice = test_pki.pki.users["alice"]
    # Alice's name as issuer, Bob's key as signer: the signature check must catch it.
    path = issue_proxy([alice.certificate], bob.private_key, tmp_path / "forged.pem")
    with pytest.raises(ChainError, match="does not verify"):
        _validate(test_pki, path)


def test_time_before_eec_validity_is_refused(test_pki):
    with pytest.raises(CertificateValidityError, match="not valid before"):
        _validate(test_pki, test_pki.pki.users["bob"].cert_path, at=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))


def test_garbage_and_empty_input_raise_library_errors():
    with pytest.raises(MalformedCertificateError):
        parse_chain(b"\x30\x03\x02\x01\x01")
    with pytest.raises(EmptyChainError):
        parse_chain([])
