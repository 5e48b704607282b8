"""Mapping DiracX Registry sections to accounts (pure: no database, no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from b2cal_assets.accounts.errors import RegistryMalformedError, VoMissingError
from b2cal_assets.accounts.registry import accounts_from_config, accounts_from_registry, load_registry_yaml

DATA = Path(__file__).with_name("data")


def _section(**users_and_groups):  # type: ignore[no-untyped-def]
    section = {"IdP": {"URL": "https://idp.belle2.org", "ClientID": "b2cal"}, "DefaultGroup": "belle"}
    section.update(users_and_groups)
    return section


def test_default_yml_maps_users_dns_email_suspension_and_groups() -> None:
    snapshot = load_registry_yaml(DATA / "registry.yml", "belle")

    by_name = {a.username: a for a in snapshot.accounts.values()}
    assert sorted(by_name) == ["alice", "bob", "carol"]
    assert by_name["bob"].suspended and not by_name["alice"].suspended
    assert len(by_name["bob"].dns) == 2 and snapshot.dn_count == 4
    assert by_name["carol"].email is None
    assert by_name["carol"].voms_roles == ("/belle", "/belle/Role=lcgadmin")
    assert by_name["alice"].properties == ("NormalUser", "ProductionManagement")
    assert snapshot.warnings == ()


def test_bare_registry_mapping_is_accepted(tmp_path) -> None:
    (tmp_path / "r.yml").write_text(
        "belle:\n  IdP: {URL: 'https://idp', ClientID: c}\n  DefaultGroup: belle\n"
        "  Users: {s1: {PreferedUsername: u1, DNs: ['/CN=u1']}}\n"
        "  Groups: {belle: {Users: [s1], Properties: [NormalUser]}}\n"
    )
    snapshot = load_registry_yaml(tmp_path / "r.yml", "belle")
    assert [a.username for a in snapshot.accounts.values()] == ["u1"]


def test_suspension_under_the_voms_vo_name_counts() -> None:
    section = _section(
        VOMSName="belle2voms",
        Users={"s": {"PreferedUsername": "u", "Suspended": ["belle2voms"]}},
        Groups={"belle": {"Users": ["s"], "Properties": ["NormalUser"]}},
    )
    assert accounts_from_registry({"belle": section}, "belle").accounts["s"].suspended


def test_suspension_in_another_vo_does_not_count() -> None:
    section = _section(
        Users={"s": {"PreferedUsername": "u", "Suspended": ["lhcb"]}},
        Groups={"belle": {"Users": ["s"], "Properties": ["NormalUser"]}},
    )
    assert not accounts_from_registry({"belle": section}, "belle").accounts["s"].suspended


def test_dn_claimed_by_two_users_is_dropped_for_both() -> None:
    section = _section(
        Users={
            "s1": {"PreferedUsername": "u1", "DNs": ["/CN=shared", "/CN=one"]},
            "s2": {"PreferedUsername": "u2", "DNs": ["/CN=shared"]},
        },
        Groups={"belle": {"Users": ["s1", "s2"], "Properties": ["NormalUser"]}},
    )
    snapshot = accounts_from_registry({"belle": section}, "belle")
    assert snapshot.accounts["s1"].dns == ("/CN=one",) and snapshot.accounts["s2"].dns == ()
    assert any("several users" in w for w in snapshot.warnings)


def test_group_member_unknown_to_users_is_a_warning_not_a_failure() -> None:
    section = _section(
        Users={"s1": {"PreferedUsername": "u1"}},
        Groups={"belle": {"Users": ["s1", "ghost"], "Properties": ["NormalUser"]}},
    )
    snapshot = accounts_from_registry({"belle": section}, "belle")
    assert list(snapshot.accounts) == ["s1"] and "ghost" in snapshot.warnings[0]


def test_missing_vo_names_the_vos_present() -> None:
    with pytest.raises(VoMissingError, match="VOs present: lhcb"):
        accounts_from_registry({"lhcb": {}}, "belle")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "no Registry section"),
        ({"Registry": {"belle": {"Users": {}}}}, "lacks Users or Groups"),
        ({"Registry": {"belle": _section(Users={"s": {"DNs": ["/CN=x"]}}, Groups={})}}, "PreferedUsername"),
        ({"Registry": {"belle": _section(Users={"s": {"PreferedUsername": "u", "DNs": ["CN=x,O=y"]}}, Groups={})}}, "slash form"),
        ({"Registry": {"belle": _section(Users=[], Groups={})}}, "does not follow the DiracX schema"),
    ],
)
def test_malformed_or_partial_registry_is_refused_with_reason(config, message) -> None:
    with pytest.raises(RegistryMalformedError, match=message):
        accounts_from_config(config, "belle")


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path) -> None:
    (tmp_path / "r.yml").write_text("- just\n- a list\n")
    with pytest.raises(RegistryMalformedError, match="not a DiracX Registry mapping"):
        load_registry_yaml(tmp_path / "r.yml", "belle")


def test_invalid_yaml_is_refused(tmp_path) -> None:
    (tmp_path / "r.yml").write_text("Registry: {belle: [unclosed\n")
    with pytest.raises(RegistryMalformedError, match="not valid YAML"):
        load_registry_yaml(tmp_path / "r.yml", "belle")
