"""`b2cal auth check` and `b2cal pki`: JSON output and exit codes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from b2cal_assets.auth.cli import auth, pki

from .conftest import LOCAL_HOST


def _check(test_pki, chain, *extra):
    arguments = ["check", "--chain", str(chain), "--ca-dir", str(test_pki.pki.ca_dir), "--vomsdir", str(test_pki.pki.vomsdir), *extra]
    return CliRunner().invoke(auth, arguments)


def test_authenticated_chain_exits_0_with_identity_and_fqans(test_pki):
    result = _check(test_pki, test_pki.proxy("voms-one"), "--host", LOCAL_HOST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert set(document) == {"authenticated", "identity", "fqans", "errors", "voms_errors"}
    assert document["authenticated"] is True
    assert document["identity"] == "/C=JP/O=KEK/OU=CRC/CN=Alice Example"
    assert document["fqans"] == ["/belle"]


def test_refused_chain_exits_1_with_the_reason(test_pki):
    result = _check(test_pki, test_pki.proxy("revoked", user="mallory", voms=False))
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert document["authenticated"] is False and "revoked" in document["errors"][0]


def test_invalid_ac_is_reported_in_voms_errors(test_pki):
    result = _check(test_pki, test_pki.proxy("ac-expired", vomslife=1, past_ac="2:00"))
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert document["fqans"] == [] and "expired at" in document["voms_errors"][0]


def test_at_option_moves_the_verification_time(test_pki):
    result = _check(test_pki, test_pki.proxy("voms-one"), "--at", "2099-01-01T00:00:00Z")
    assert result.exit_code == 1 and "expired" in json.loads(result.output)["errors"][0]


def test_usage_errors_exit_2(test_pki, tmp_path):
    assert _check(test_pki, tmp_path / "missing.pem").exit_code == 2
    assert _check(test_pki, test_pki.proxy("voms-one"), "--at", "yesterday").exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    arguments = ["check", "--chain", str(test_pki.proxy("voms-one")), "--ca-dir", str(empty), "--vomsdir", str(empty)]
    assert CliRunner().invoke(auth, arguments).exit_code == 2


def test_pki_command_makes_a_pki_whose_proxy_authenticates(tmp_path):
    runner = CliRunner()
    made = runner.invoke(pki, ["init", str(tmp_path / "pki"), "--user", "carol"])
    assert made.exit_code == 0, made.output
    layout = json.loads(made.output)
    proxy = tmp_path / "x509up"
    made_proxy = runner.invoke(pki, ["proxy", str(tmp_path / "pki"), "--user", "carol", "--out", str(proxy),
                                     "--fqan", "/belle/calib/Role=expert/Capability=NULL"])
    assert made_proxy.exit_code == 0, made_proxy.output
    checked = runner.invoke(auth, ["check", "--chain", str(proxy), "--ca-dir", layout["ca_dir"], "--vomsdir", layout["vomsdir"]])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["fqans"] == ["/belle/calib/Role=expert"]
