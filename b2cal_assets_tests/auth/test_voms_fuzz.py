"""Malformed ASN.1 raises only the library's own errors: never a crash, hang or foreign exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2cal_assets.auth.chain import parse_chain
from b2cal_assets.auth.errors import AuthError, MalformedACError
from b2cal_assets.auth.pki import reissue_with_ac_extension
from b2cal_assets.auth.voms import ac_extension_of, decode_ac_extension, decode_attribute_certificate

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def real_extension(test_pki) -> bytes:
    return ac_extension_of(parse_chain(test_pki.proxy("voms-several", fqans=[
        "/belle/Role=NULL/Capability=NULL", "/belle/calib/Role=expert/Capability=NULL",
        "/belle/calib/ecl/Role=NULL/Capability=NULL", "/belle/Role=production"]).read_bytes())[0])


def _decode_or_library_error(data: bytes) -> None:
    try:
        decode_ac_extension(data)
    except MalformedACError:
        pass
    try:
        decode_attribute_certificate(data)
    except MalformedACError:
        pass


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_malformed_ac_error(data):
    _decode_or_library_error(data)


@FUZZ
@given(data=st.data())
def test_mutated_real_acs_raise_only_malformed_ac_error(real_extension, data):
    blob = bytearray(real_extension)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(blob) - 1))
        blob[position] = data.draw(st.integers(0, 255))
    _decode_or_library_error(bytes(blob))


@FUZZ
@given(data=st.data())
def test_truncated_real_acs_raise_only_malformed_ac_error(real_extension, data):
    _decode_or_library_error(real_extension[: data.draw(st.integers(0, len(real_extension) - 1))])


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_ac_in_a_signed_proxy_never_escapes_the_result(test_pki, make_authenticator, tmp_path_factory, real_extension, data):
    """Through the whole pipeline: the proxy is validly signed, the AC inside is damaged."""
    blob = bytearray(real_extension)
    position = data.draw(st.integers(0, len(blob) - 1))
    blob[position] ^= data.draw(st.integers(1, 255))
    alice = test_pki.pki.users["alice"]
    out = tmp_path_factory.mktemp("fuzz") / "mutated.pem"
    path = reissue_with_ac_extension(test_pki.proxy("voms-one"), alice.private_key, bytes(blob), out)
    result = make_authenticator(use_cache=False).authenticate(path.read_bytes())
    assert result.authenticated  # the chain itself is sound
    assert all(isinstance(error, AuthError) for error in result.voms_errors)
    # A damaged AC may still decode, but it must never grant an FQAN the AA did not sign.
    assert set(result.fqans) <= {"/belle", "/belle/calib/Role=expert", "/belle/calib/ecl", "/belle/Role=production"}


def test_ac_whose_aa_certificate_has_an_unknown_name_attribute_is_refused_not_raised(test_pki, make_authenticator, tmp_path, real_extension):
    """Found by the fuzz test above: C (2.5.4.6) turned into 2.4.4.6 in the AA certificate the
    AC carries, whose name then has no slash form for the LSC comparison."""
    country = b"\x06\x03\x55\x04\x06"  # OID 2.5.4.6 (C)
    aa_certificates = real_extension.index(b"\x06\x0a\x2b\x06\x01\x04\x01\xbe\x45\x64\x64\x0a")  # 1.3.6.1.4.1.8005.100.100.10
    blob = real_extension[:aa_certificates] + real_extension[aa_certificates:].replace(country, b"\x06\x03\x54\x04\x06")
    assert blob != real_extension
    alice = test_pki.pki.users["alice"]
    path = reissue_with_ac_extension(test_pki.proxy("voms-one"), alice.private_key, blob, tmp_path / "unknown-oid.pem")
    result = make_authenticator(use_cache=False).authenticate(path.read_bytes())
    assert result.authenticated and result.fqans == ()
    assert len(result.voms_errors) == 1 and isinstance(result.voms_errors[0], MalformedACError)
    assert "unusable certificate" in str(result.voms_errors[0])


@FUZZ
@given(st.binary(max_size=256))
def test_random_certificate_bytes_raise_only_library_errors(data):
    try:
        parse_chain(data)
    except AuthError:
        pass
    try:
        parse_chain(b"-----BEGIN CERTIFICATE-----\n" + data + b"\n-----END CERTIFICATE-----\n")
    except AuthError:
        pass
