"""AuthResult reporting: detailed reasons for the log, short ones for the client."""

from __future__ import annotations


def test_client_view_gives_short_reasons_and_log_view_the_facts(test_pki, authenticator):
    result = authenticator.authenticate(test_pki.proxy("revoked", user="mallory", voms=False).read_bytes())
    assert result.to_json(detailed=False)["errors"] == ["certificate revoked"]
    assert "Mallory Example" in result.to_json()["errors"][0]


def test_certificates_can_be_passed_already_parsed(test_pki, authenticator):
    from b2cal_assets.auth.chain import parse_chain

    certificates = parse_chain(test_pki.proxy("voms-one").read_bytes())
    result = authenticator.authenticate(certificates)
    assert result.fqans == ("/belle",) and len(authenticator.cache) == 0
