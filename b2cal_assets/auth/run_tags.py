"""The identity run tags: who launched a run and with which platform roles.

One module writes and reads them, so the proxy (which tags every launch) and the sign-off
code (which reads the approver back) agree on the format. The roles tag lists grants as
``role`` or ``role[group,group]`` (scoped to asset groups), joined by commas; commas inside
brackets belong to the scope, so ``launcher[cdc,ecl],viewer`` is two grants. Pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from b2cal_assets.auth.errors import AuthError

TAG_PREFIX = "b2cal/"
TAG_USER = "b2cal/user"
TAG_ROLES = "b2cal/roles"
TAG_DN = "b2cal/dn"
IDENTITY_TAG_KEYS = (TAG_USER, TAG_ROLES, TAG_DN)
NO_ROLES = "none"

# A role or group name: no separators of the format, no surrounding blanks.
_NAME = re.compile(r"[^\s,\[\]]+")
_ITEM = re.compile(r"\s*([^\s,\[\]]+)\s*(?:\[([^\[\]]*)\])?\s*")


class IdentityTagError(AuthError, ValueError):
    """A role or group name that the roles tag cannot carry, or a malformed roles tag."""


@dataclass(frozen=True, order=True)
class RoleGrant:
    """One role as the roles tag carries it; ``groups`` None means every asset group."""

    role: str
    groups: frozenset[str] | None = None

    def describe(self) -> str:
        return self.role if self.groups is None else f"{self.role}[{','.join(sorted(self.groups))}]"


def check_tag_name(name: str, what: str) -> str:
    """``name`` if the roles tag can carry it, else IdentityTagError naming ``what`` it is."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise IdentityTagError(f"{what} {name!r} cannot be written in the roles tag (no blanks, commas or brackets)")
    return name


def format_roles(grants: Iterable[RoleGrant]) -> str:
    """The roles tag value: sorted, deduplicated grants; ``none`` for no grant."""
    items = set()
    for grant in grants:
        check_tag_name(grant.role, "role")
        if grant.groups is not None:
            if not grant.groups:
                raise IdentityTagError(f"role {grant.role}: an empty scope grants nothing and cannot be written")
            for group in grant.groups:
                check_tag_name(group, "asset group")
        items.add(grant.describe())
    return ",".join(sorted(items)) or NO_ROLES


def parse_roles(value: str | None) -> tuple[RoleGrant, ...]:
    """The grants of a roles tag value (brackets keep their commas); raises IdentityTagError."""
    text = (value or "").strip()
    if not text or text == NO_ROLES:
        return ()
    grants: list[RoleGrant] = []
    position = 0
    while position <= len(text):
        match = _ITEM.match(text, position)
        if match is None or match.end() == position:
            raise IdentityTagError(f"malformed roles tag {value!r} at character {position}")
        role, scope = match.group(1), match.group(2)
        groups = None
        if scope is not None:
            names = [g.strip() for g in scope.split(",")]
            if not names or not all(_NAME.fullmatch(g) for g in names):
                raise IdentityTagError(f"malformed scope [{scope}] in roles tag {value!r}")
            groups = frozenset(names)
        grants.append(RoleGrant(role, groups))
        position = match.end()
        if position == len(text):
            break
        if text[position] != ",":
            raise IdentityTagError(f"malformed roles tag {value!r} at character {position}")
        position += 1
    return tuple(dict.fromkeys(grants))


def format_identity_tags(username: str, grants: Iterable[RoleGrant], dn: str) -> dict[str, str]:
    """The identity tags of a run launched by ``username`` holding ``grants``."""
    if not username or not username.strip():
        raise IdentityTagError("a run cannot be tagged with an empty user name")
    return {TAG_USER: username, TAG_ROLES: format_roles(grants), TAG_DN: dn}


@dataclass(frozen=True)
class RunIdentity:
    """Who a run's tags say launched it (empty user: no identity tags)."""

    user: str
    grants: tuple[RoleGrant, ...]
    dn: str

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g.role for g in self.grants))


def parse_identity_tags(tags: Mapping[str, str]) -> RunIdentity:
    """The identity a run's tags carry; raises IdentityTagError for a malformed roles tag."""
    return RunIdentity(
        user=(tags.get(TAG_USER) or "").strip(), grants=parse_roles(tags.get(TAG_ROLES)), dn=(tags.get(TAG_DN) or "").strip()
    )
