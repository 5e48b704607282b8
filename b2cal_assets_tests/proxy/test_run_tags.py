"""The identity run tags: one format, written by the proxy and read back by the sign-off."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2cal_assets.auth.run_tags import (
    TAG_ROLES,
    TAG_USER,
    IdentityTagError,
    RoleGrant,
    format_identity_tags,
    format_roles,
    parse_identity_tags,
    parse_roles,
)
from b2cal_assets.proxy.decide import Principal
from b2cal_assets.proxy.policy import Grant
from b2cal_assets.validation.signoff import SignOffRefused, approver_from_tags

NAMES = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="_-./=:"), min_size=1, max_size=12)
GRANTS = st.builds(RoleGrant, NAMES, st.none() | st.frozensets(NAMES, min_size=1, max_size=4))


@given(st.lists(GRANTS, max_size=6), NAMES, st.text(max_size=40))
def test_identity_tags_round_trip(grants: list[RoleGrant], user: str, dn: str) -> None:
    tags = format_identity_tags(user, grants, dn)
    identity = parse_identity_tags(tags)
    assert identity.user == user.strip() and set(identity.grants) == set(grants) and identity.dn == dn.strip()
    assert format_roles(identity.grants) == tags[TAG_ROLES]  # one spelling per set of grants


def test_scoped_grants_keep_their_commas() -> None:
    assert parse_roles("launcher[cdc,ecl],viewer") == (RoleGrant("launcher", frozenset({"cdc", "ecl"})), RoleGrant("viewer"))
    assert parse_roles("calibration_reviewer, belle") == (RoleGrant("calibration_reviewer"), RoleGrant("belle"))
    assert parse_roles("none") == () and parse_roles(None) == ()


@pytest.mark.parametrize("value", ["a[b", "a]b", "a b", "a,,b", "a[]", "a[b,]", "[b]", ","])
def test_malformed_roles_tags_are_refused(value: str) -> None:
    with pytest.raises(IdentityTagError):
        parse_roles(value)


@pytest.mark.parametrize("grant", [RoleGrant("a,b"), RoleGrant("a[b]"), RoleGrant("a b"), RoleGrant("a", frozenset({"x,y"})),
                                   RoleGrant("a", frozenset())])
def test_names_the_format_cannot_carry_are_refused_when_writing(grant: RoleGrant) -> None:
    with pytest.raises(IdentityTagError):
        format_roles([grant])


def test_the_proxy_writes_what_the_sign_off_reads() -> None:
    reviewer = Principal("/CN=Rita", "rita", (Grant("viewer"), Grant("reviewer"), Grant("launcher", frozenset({"cdc", "ecl"}))), "voms")
    tags = {t["key"]: t["value"] for t in reviewer.identity_tags()}
    assert tags[TAG_ROLES] == "launcher[cdc,ecl],reviewer,viewer"
    approver = approver_from_tags(tags, demo_mode=False, required_roles=["reviewer"])
    assert approver.user == "rita" and "launcher[cdc,ecl]" in approver.roles


def test_a_scoped_grant_is_not_the_required_role() -> None:
    with pytest.raises(SignOffRefused):
        approver_from_tags({TAG_USER: "eve", TAG_ROLES: "reviewer[ecl]"}, demo_mode=False, required_roles=["reviewer"])
    with pytest.raises(SignOffRefused, match="malformed"):
        approver_from_tags({TAG_USER: "eve", TAG_ROLES: "reviewer[ecl"}, demo_mode=False, required_roles=["reviewer"])


@pytest.mark.parametrize(("roles", "binding"), [
    ({"a b": ["read"]}, {"fqan": "/belle", "role": "a b"}),
    ({"v": ["read"]}, {"fqan": "/belle", "role": "v", "asset_groups": ["x,y"]}),
    ({"v[x]": ["read"]}, {"fqan": "/belle", "role": "v[x]"}),
])
def test_policy_names_the_roles_tag_cannot_carry_are_refused_at_load(roles: dict, binding: dict) -> None:
    from b2cal_assets.proxy.errors import PolicyFileError
    from b2cal_assets.proxy.policy import policy_from_mapping

    with pytest.raises(PolicyFileError, match="roles tag"):
        policy_from_mapping({"vo": "belle", "roles": roles, "bindings": [binding]})
