"""The policy file's structure is validated by pydantic: one line naming where the problem is."""

from __future__ import annotations

import pytest

from b2cal_assets.proxy.errors import PolicyFileError
from b2cal_assets.proxy.policy import load_policy, policy_from_mapping

ROLES = {"viewer": ["read"]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "top level must be a mapping"),
        ({"vo": "belle", "roles": ROLES, "bindings": [], "owner": "x"}, "p.yaml: owner: unknown key"),
        ({"vo": "", "roles": ROLES, "bindings": []}, "p.yaml: vo: String should have at least 1 character"),
        ({"vo": "belle", "roles": {}, "bindings": []}, "p.yaml: roles: Dictionary should have at least 1 item"),
        ({"vo": "belle", "roles": {"viewer": "read"}, "bindings": []}, "p.yaml: roles.viewer: Input should be a valid list"),
        ({"vo": "belle", "roles": ROLES, "bindings": [{"role": "viewer"}]}, "p.yaml: bindings[0]: give exactly one of fqan or dirac_group"),
        ({"vo": "belle", "roles": ROLES, "bindings": [{"role": "viewer", "fqan": "/belle", "group": "x"}]}, "p.yaml: bindings[0].group: unknown key"),
        ({"vo": "belle", "roles": ROLES, "bindings": [{"role": "viewer", "fqan": "/belle", "asset_groups": []}]},
         "p.yaml: bindings[0].asset_groups: List should have at least 1 item"),
        ({"vo": "belle", "roles": ROLES, "bindings": [{"role": "admin", "fqan": "/belle"}]}, "role 'admin' is not defined under roles"),
        ({"vo": "belle", "roles": ROLES, "bindings": [], "protected_jobs": "reject_bucket"}, "p.yaml: protected_jobs: Input should be a valid list"),
    ],
)
def test_a_malformed_policy_is_refused_in_one_line_saying_where(data, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyFileError) as raised:
        policy_from_mapping(data, "p.yaml")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_shipped_policy_loads() -> None:
    policy = load_policy()
    assert policy.vo == "belle" and "promotion" in policy.protected_asset_groups and policy.bindings
