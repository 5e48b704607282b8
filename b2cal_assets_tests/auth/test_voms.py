"""VOMS AC checklist, against proxies made by the reference voms-proxy-fake."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import pytest

from b2cal_assets.auth.chain import parse_chain
from b2cal_assets.auth.errors import (
    ACCriticalExtensionError,
    ACHolderError,
    ACIssuerUnknownError,
    ACSignatureError,
    ACTargetError,
    ACValidityError,
    ACVOError,
    FQANError,
    LSCMismatchError,
)
from b2cal_assets.auth.pki import read_proxy_file, reissue_with_ac_extension, resign_ac_extension
from b2cal_assets.auth.voms import (
    ac_extension_of,
    decode_ac_extension,
    fqan_in_group,
    normalise_fqan,
)

from .conftest import LOCAL_HOST


def _ac(path):
    return decode_ac_extension(ac_extension_of(parse_chain(path.read_bytes())[0]))[0]


def _single_voms_error(result, error_type):
    assert result.authenticated, result.errors
    assert result.fqans == ()
    assert len(result.voms_errors) == 1, result.voms_errors
    error = result.voms_errors[0]
    assert isinstance(error, error_type), repr(error)
    return error


def test_valid_proxy_with_one_fqan_grants_it(test_pki, authenticator):
    result = authenticator.authenticate(test_pki.proxy("voms-one").read_bytes())
    assert result.authenticated and result.voms_errors == ()
    assert result.identity.subject == "/C=JP/O=KEK/OU=CRC/CN=Alice Example"
    assert result.fqans == ("/belle",)


def test_several_fqans_with_groups_and_roles_come_back_in_short_form(test_pki, authenticator):
    path = test_pki.proxy("voms-several", fqans=[
        "/belle/Role=NULL/Capability=NULL",
        "/belle/calib/Role=expert/Capability=NULL",
        "/belle/calib/ecl/Role=NULL/Capability=NULL",
        "/belle/Role=production",
    ])
    result = authenticator.authenticate(path.read_bytes())
    assert result.voms_errors == ()
    assert result.fqans == ("/belle", "/belle/calib/Role=expert", "/belle/calib/ecl", "/belle/Role=production")


def test_ac_holder_written_as_issuer_dn_by_newformat_is_accepted(test_pki, authenticator):
    path = test_pki.proxy("voms-newformat", newformat=True)
    assert _ac(path).holder == test_pki.pki.ca.credential.subject
    assert authenticator.authenticate(path.read_bytes()).fqans == ("/belle",)


def test_expired_ac_grants_nothing_and_says_when_it_expired(test_pki, authenticator):
    path = test_pki.proxy("ac-expired", vomslife=1, past_ac="2:00")
    error = _single_voms_error(authenticator.authenticate(path.read_bytes()), ACValidityError)
    assert "expired at" in str(error)


def test_ac_not_yet_valid_grants_nothing(test_pki, authenticator):
    path = test_pki.proxy("ac-later", past_proxy="3:00")
    at = _ac(path).not_before - dt.timedelta(minutes=30)
    error = _single_voms_error(authenticator.authenticate(path.read_bytes(), at=at), ACValidityError)
    assert "not valid before" in str(error)


def test_ac_within_five_minutes_clock_skew_is_accepted(test_pki, authenticator):
    path = test_pki.proxy("ac-later", past_proxy="3:00")
    at = _ac(path).not_before - dt.timedelta(minutes=4)
    assert authenticator.authenticate(path.read_bytes(), at=at).fqans == ("/belle",)


def test_ac_signed_by_an_aa_missing_from_the_vomsdir_is_refused(test_pki, authenticator):
    path = test_pki.proxy("aa-unlisted", aa=test_pki.unlisted_aa, uri="voms2.b2cal.test:15021")
    error = _single_voms_error(authenticator.authenticate(path.read_bytes()), ACIssuerUnknownError)
    assert "voms2.b2cal.test.lsc" in str(error)


def test_aa_not_matching_the_lsc_file_is_refused(test_pki, authenticator):
    path = test_pki.proxy("lsc-mismatch", aa=test_pki.impostor_aa)
    error = _single_voms_error(authenticator.authenticate(path.read_bytes()), LSCMismatchError)
    assert "impostor.b2cal.test" in str(error)


def test_tampered_ac_signature_is_refused(test_pki, authenticator, tmp_path):
    original = test_pki.proxy("voms-one")
    value = bytearray(ac_extension_of(parse_chain(original.read_bytes())[0]))
    value[-1] ^= 0x01  # the last byte belongs to the AC signature
    alice = test_pki.pki.users["alice"]
    path = reissue_with_ac_extension(original, alice.private_key, bytes(value), tmp_path / "tampered.pem")
    _single_voms_error(authenticator.authenticate(path.read_bytes()), ACSignatureError)


def test_ac_grafted_from_another_users_proxy_is_refused(test_pki, authenticator, tmp_path):
    bobs_ac = ac_extension_of(parse_chain(test_pki.proxy("bob-voms", user="bob").read_bytes())[0])
    alice = test_pki.pki.users["alice"]
    path = reissue_with_ac_extension(test_pki.proxy("voms-one"), alice.private_key, bobs_ac, tmp_path / "grafted.pem")
    error = _single_voms_error(authenticator.authenticate(path.read_bytes()), ACHolderError)
    assert "holder serial" in str(error) and "does not match certificate serial" in str(error)


def test_unknown_critical_ac_extension_is_refused(test_pki, authenticator):
    path = test_pki.proxy("ac-critical", ac_extensions=["1.2.3.4.5/true:hello"])
    error = _single_voms_error(authenticator.authenticate(path.read_bytes()), ACCriticalExtensionError)
    assert "1.2.3.4.5" in str(error)


def test_unknown_non_critical_ac_extension_is_ignored(test_pki, authenticator):
    path = test_pki.proxy("ac-noncritical", ac_extensions=["1.2.3.4.5/false:hello"])
    assert authenticator.authenticate(path.read_bytes()).fqans == ("/belle",)


def test_targets_not_naming_this_host_are_refused(test_pki, authenticator):
    path = test_pki.proxy("ac-target-other", targets=["other.test"])
    error = _single_voms_error(authenticator.authenticate(path.read_bytes()), ACTargetError)
    assert LOCAL_HOST in str(error)


def test_targets_naming_this_host_are_accepted(test_pki, make_authenticator, tmp_path):
    # voms-proxy-fake writes the targets extension but leaves it empty: fill it in and re-sign.
    original = test_pki.proxy("ac-target-other", targets=["other.test"])
    value = resign_ac_extension(ac_extension_of(parse_chain(original.read_bytes())[0]), test_pki.pki.aa,
                                targets=["elsewhere.test", LOCAL_HOST])
    alice = test_pki.pki.users["alice"]
    path = reissue_with_ac_extension(original, alice.private_key, value, tmp_path / "targeted.pem")
    assert make_authenticator().authenticate(path.read_bytes()).fqans == ("/belle",)
    _single_voms_error(make_authenticator(host="b2cal.elsewhere").authenticate(path.read_bytes()), ACTargetError)


def test_fqan_of_another_vo_is_refused(test_pki, authenticator):
    path = test_pki.proxy("foreign-fqan", fqans=["/belle", "/atlas/Role=NULL/Capability=NULL"])
    error = _single_voms_error(authenticator.authenticate(path.read_bytes()), ACVOError)
    assert "/atlas" in str(error)


def test_ac_of_an_unexpected_vo_is_refused(test_pki, make_authenticator):
    path = test_pki.proxy("voms-one")
    _single_voms_error(make_authenticator(expected_vos=["belle2"]).authenticate(path.read_bytes()), ACVOError)


def test_ac_in_the_inner_proxy_of_a_proxy_of_a_proxy_is_used(test_pki, authenticator, tmp_path):
    from b2cal_assets.auth.pki import issue_proxy

    certificates, key = read_proxy_file(test_pki.proxy("voms-one"))
    path = issue_proxy(certificates, key, tmp_path / "delegated.pem")
    result = authenticator.authenticate(path.read_bytes())
    assert result.fqans == ("/belle",) and len(result.chain.proxies) == 2


def test_plain_proxy_has_identity_and_no_fqans(test_pki, authenticator):
    result = authenticator.authenticate(test_pki.proxy("plain", voms=False).read_bytes())
    assert result.authenticated and result.fqans == () and result.voms_errors == ()


# --- cross-check with the reference voms-proxy-info ----------------------------------------------------


def _voms_proxy_info(test_pki, path, option):
    environment = dict(os.environ, X509_CERT_DIR=str(test_pki.pki.ca_dir), X509_VOMS_DIR=str(test_pki.pki.vomsdir))
    result = subprocess.run(["voms-proxy-info", option, "-file", str(path)], capture_output=True, text=True, env=environment, check=True)
    return result.stdout.strip().splitlines()


@pytest.mark.parametrize("name, fqans", [
    ("voms-one", ["/belle/Role=NULL/Capability=NULL"]),
    ("voms-several", ["/belle/Role=NULL/Capability=NULL", "/belle/calib/Role=expert/Capability=NULL",
                      "/belle/calib/ecl/Role=NULL/Capability=NULL", "/belle/Role=production"]),
])
def test_parsed_ac_agrees_with_voms_proxy_info(test_pki, authenticator, name, fqans):
    path = test_pki.proxy(name, fqans=fqans)
    ac = _ac(path)
    result = authenticator.authenticate(path.read_bytes())
    reference_fqans = _voms_proxy_info(test_pki, path, "-fqan")
    assert list(result.fqans) == [normalise_fqan(fqan) for fqan in reference_fqans]
    assert [ac.holder] == _voms_proxy_info(test_pki, path, "-acsubject")
    assert [ac.issuer] == _voms_proxy_info(test_pki, path, "-acissuer")
    assert [ac.vo] == _voms_proxy_info(test_pki, path, "-vo")
    assert int(_voms_proxy_info(test_pki, path, "-serial")[0], 16) == ac.serial_number
    assert [f"{ac.server[0]}:{ac.server[1]}"] == _voms_proxy_info(test_pki, path, "-uri")
    # -actimeleft counts from its own "now"; both readings must name the same notAfter to the minute.
    seconds_left = int(_voms_proxy_info(test_pki, path, "-actimeleft")[0])
    reference_not_after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds_left)
    assert abs((reference_not_after - ac.not_after).total_seconds()) < 120


# --- FQANs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("long_form, short_form", [
    ("/belle/Role=NULL/Capability=NULL", "/belle"),
    ("/belle", "/belle"),
    ("/belle/calib/Role=expert/Capability=NULL", "/belle/calib/Role=expert"),
    ("/belle/calib/Role=NULL", "/belle/calib"),
    ("/belle/Role=admin/Capability=fly", "/belle/Role=admin/Capability=fly"),
])
def test_fqans_normalise_to_short_form(long_form, short_form):
    assert normalise_fqan(long_form) == short_form


@pytest.mark.parametrize("bad", ["", "/", "belle", "/belle/Role=", "/belle/Role=a/calib", "/belle/Role=a/Role=b", "/be lle"])
def test_malformed_fqans_raise_fqan_error(bad):
    with pytest.raises(FQANError):
        normalise_fqan(bad)


def test_group_matching_uses_whole_segments():
    assert fqan_in_group("/belle/calib/Role=expert", "/belle")
    assert fqan_in_group("/belle/Role=NULL/Capability=NULL", "/belle")
    assert not fqan_in_group("/belle2.org/Role=NULL", "/belle")
    assert not fqan_in_group("/belle", "/belle/calib")
