"""Identity in OpenSSL slash form and RFC 4514 form."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from b2cal_assets.auth.identity import Identity, normalise_slash_dn, parse_slash_dn, rfc4514_dn, slash_dn


def test_slash_and_rfc4514_forms_of_a_grid_dn():
    name = parse_slash_dn("/C=JP/O=KEK/OU=CRC/CN=Alice Example")
    assert slash_dn(name) == "/C=JP/O=KEK/OU=CRC/CN=Alice Example"
    assert rfc4514_dn(name) == "CN=Alice Example,OU=CRC,O=KEK,C=JP"


def test_dc_and_email_use_openssl_short_names():
    name = x509.Name([
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "terena"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Bob"),
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "bob@example.org"),
    ])
    assert slash_dn(name) == "/DC=org/DC=terena/CN=Bob/emailAddress=bob@example.org"
    assert normalise_slash_dn("/DC=org/DC=terena/CN=Bob/Email=bob@example.org") == slash_dn(name)


def test_slash_in_a_value_stays_with_its_value():
    assert slash_dn(parse_slash_dn("/O=Grid/CN=host/voms.example.org")) == "/O=Grid/CN=host/voms.example.org"


def test_identity_from_certificate(test_pki):
    bob = test_pki.pki.users["bob"].certificate
    identity = Identity.from_certificate(bob)
    assert identity.subject == "/C=JP/O=KEK/OU=CRC/CN=Bob Example"
    assert identity.issuer == "/C=JP/O=KEK/OU=CRC/CN=B2CAL Test CA"
    assert identity.serial_number == bob.serial_number


_value = st.text(alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters=" .-_@"), min_size=1, max_size=20).filter(lambda s: s.strip() == s)


@settings(max_examples=200, derandomize=True, database=None)
@given(st.lists(st.tuples(st.sampled_from(["O", "OU", "CN", "DC", "L"]), _value), min_size=1, max_size=6))
def test_slash_form_round_trips(pairs):
    text = "".join(f"/{key}={value}" for key, value in pairs)
    assert slash_dn(parse_slash_dn(text)) == text


def test_bad_country_code_raises_the_library_error():
    import pytest

    from b2cal_assets.auth.errors import MalformedCertificateError

    with pytest.raises(MalformedCertificateError, match="C=JPN"):
        parse_slash_dn("/C=JPN/CN=x")
