"""The role policy: FQANs / DIRAC groups -> platform roles -> permissions, with asset-group scopes.

Pure Python; the policy file format is documented in ``default_policy.yaml`` (shipped in this
package and used when ``--policy`` is not given).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from b2cal_assets.auth.errors import FQANError
from b2cal_assets.auth.run_tags import IdentityTagError, check_tag_name
from b2cal_assets.auth.voms import normalise_fqan

from .errors import PolicyFileError
from .execution import Requirement
from .permissions import Permission

ROLE_NAMES = ("viewer", "launcher", "reviewer", "editor", "admin")
# Permissions a grant scoped to asset groups still conveys everywhere (reads and own runs).
SCOPE_FREE = frozenset({Permission.NONE, Permission.READ, Permission.RUN_CONFIG, Permission.TERMINATE_OWN, Permission.DELETE_OWN})
# Permissions a scoped grant conveys inside its groups.
SCOPED = frozenset({Permission.LAUNCH, Permission.PROMOTE})

AssetKey = tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """One role granted to a principal, optionally limited to some asset groups."""

    role: str
    asset_groups: frozenset[str] | None = None  # None: every group
    source: str = ""  # the binding that matched, for the audit log

    def describe(self) -> str:
        scope = "" if self.asset_groups is None else "[" + ",".join(sorted(self.asset_groups)) + "]"
        return f"{self.role}{scope}"


GRANTS_MEMO_SIZE = 4096


@dataclass(frozen=True)
class Binding:
    role: str
    fqan: str | None = None
    dirac_group: str | None = None
    asset_groups: frozenset[str] | None = None


@dataclass(frozen=True)
class Policy:
    vo: str
    roles: Mapping[str, frozenset[Permission]]
    bindings: tuple[Binding, ...]
    protected_asset_groups: frozenset[str] = field(default=frozenset())
    # Jobs whose plain (non-asset) ops are sign-off decisions (e.g. rejecting a bucket): promote.
    protected_jobs: frozenset[str] = field(default=frozenset())
    # grants_for results by (fqans, dirac_groups): the policy never changes once loaded, and
    # every request of a user asks the same question again.
    _grants_memo: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[Grant, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def permissions(self, role: str) -> frozenset[Permission]:
        return self.roles.get(role, frozenset())

    def grants_for(self, *, fqans: Iterable[str] = (), dirac_groups: Iterable[str] = ()) -> tuple[Grant, ...]:
        """Grants of every binding matching one of ``fqans`` (normalised) or ``dirac_groups``."""
        key = (tuple(fqans), tuple(dirac_groups))
        grants = self._grants_memo.get(key)
        if grants is None:
            if len(self._grants_memo) >= GRANTS_MEMO_SIZE:
                self._grants_memo.clear()
            grants = self._grants_memo[key] = self._match(*key)
        return grants

    def _match(self, fqans: tuple[str, ...], dirac_groups: tuple[str, ...]) -> tuple[Grant, ...]:
        normalised = set()
        for fqan in fqans:
            try:
                normalised.add(normalise_fqan(fqan))
            except FQANError:
                continue  # a malformed FQAN from a DIRAC group grants nothing
        groups = set(dirac_groups)
        grants = []
        for binding in self.bindings:
            if binding.fqan is not None and binding.fqan in normalised:
                grants.append(Grant(binding.role, binding.asset_groups, f"fqan {binding.fqan}"))
            elif binding.dirac_group is not None and binding.dirac_group in groups:
                grants.append(Grant(binding.role, binding.asset_groups, f"dirac_group {binding.dirac_group}"))
        return tuple(dict.fromkeys(grants))

    def has(self, grants: Iterable[Grant], permission: Permission) -> bool:
        """Whether ``grants`` give ``permission`` outside any asset scope."""
        if permission is Permission.NONE:
            return True
        for grant in grants:
            if permission in self.permissions(grant.role) and (grant.asset_groups is None or permission in SCOPE_FREE):
                return True
        return False

    def launch_permission(self, asset_group: str | None) -> Permission:
        return Permission.PROMOTE if asset_group in self.protected_asset_groups else Permission.LAUNCH

    def op_permission(self, job_name: str) -> Permission:
        """What running a plain (non-asset) op of ``job_name`` needs, unscoped."""
        return Permission.PROMOTE if job_name in self.protected_jobs else Permission.LAUNCH

    def satisfies(self, grants: Iterable[Grant], need: Requirement) -> bool:
        """Whether one of ``grants`` gives one of ``need.permissions`` where ``need`` asks.

        Scope-free permissions (reads, own runs) count in every scope; a scoped grant gives the
        others only inside its groups; ``need.anywhere`` accepts a grant in any scope.
        """
        for permission in need.permissions:
            if permission is Permission.NONE:
                return True
            for grant in grants:
                if permission not in self.permissions(grant.role):
                    continue
                if need.anywhere or grant.asset_groups is None or permission in SCOPE_FREE:
                    return True
                if need.scope is not None and need.scope in grant.asset_groups:
                    return True
        return False

    def unmet(self, grants: Iterable[Grant], needs: Iterable[Requirement]) -> list[Requirement]:
        """The requirements ``grants`` do not meet, in the order given (empty: allowed)."""
        grants = tuple(grants)
        return [need for need in dict.fromkeys(needs) if not self.satisfies(grants, need)]


class _BindingFile(BaseModel):
    """One entry of ``bindings`` as written in the policy file (shape only; meaning below)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str
    fqan: str | None = None
    dirac_group: str | None = None
    asset_groups: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> _BindingFile:
        if (self.fqan is None) == (self.dirac_group is None):
            raise ValueError("give exactly one of fqan or dirac_group")
        return self


class _PolicyFile(BaseModel):
    """The policy file's structure: unknown keys and wrong types are refused by pydantic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vo: str = Field(min_length=1)
    roles: dict[str, list[str]] = Field(min_length=1)
    bindings: list[_BindingFile]
    protected_asset_groups: list[str] | None = None
    protected_jobs: list[str] | None = None


def _structure_error(error: ValidationError, source: str) -> PolicyFileError:
    """The first problem pydantic found, as one line naming where it is (``bindings[2].role``)."""
    first = error.errors()[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    return PolicyFileError(f"{source}: {where}: {message}" if where else f"{source}: {message}")


def _permissions(role: str, values: list[str], source: str) -> frozenset[Permission]:
    if "*" in values:
        return frozenset(Permission)
    result = set()
    for value in values:
        try:
            result.add(Permission(value))
        except ValueError:
            known = ", ".join(p.value for p in Permission)
            raise PolicyFileError(f"{source}: roles.{role}: unknown permission {value!r} (known: {known})") from None
    return frozenset(result)


def _taggable(name: str, what: str, source: str) -> None:
    """Role and group names travel in the b2cal/roles run tag: no blanks, commas or brackets."""
    try:
        check_tag_name(name, what)
    except IdentityTagError as error:
        raise PolicyFileError(str(error)) from None


def policy_from_mapping(data: Any, source: str = "policy") -> Policy:
    """Build a :class:`Policy` from the parsed YAML/JSON; raises :class:`PolicyFileError`."""
    if not isinstance(data, dict):
        raise PolicyFileError(f"{source}: top level must be a mapping with vo, roles, bindings")
    try:
        parsed = _PolicyFile.model_validate(data)
    except ValidationError as error:
        raise _structure_error(error, source) from None
    vo = parsed.vo
    roles = {role: _permissions(role, values, source) for role, values in parsed.roles.items()}
    for role in roles:
        _taggable(role, f"{source}: role name", source)
    bindings = []
    for index, item in enumerate(parsed.bindings):
        where = f"{source}: bindings[{index}]"
        if item.role not in roles:
            raise PolicyFileError(f"{where}: role {item.role!r} is not defined under roles ({', '.join(roles)})")
        fqan = item.fqan
        if fqan is not None:
            try:
                fqan = normalise_fqan(fqan)
            except FQANError as error:
                raise PolicyFileError(f"{where}: {error}") from None
            if fqan.split("/")[1] != vo:
                raise PolicyFileError(f"{where}: FQAN {fqan} is not in VO {vo}")
        for group in item.asset_groups or ():
            _taggable(group, f"{where}: asset group", source)
        scope = None if item.asset_groups is None else frozenset(item.asset_groups)
        bindings.append(Binding(item.role, fqan, item.dirac_group, scope))
    return Policy(vo, roles, tuple(bindings), frozenset(parsed.protected_asset_groups or ()), frozenset(parsed.protected_jobs or ()))


def load_policy(path: Path | str | None = None) -> Policy:
    """The policy in ``path`` (YAML or JSON), or the shipped default policy for VO belle."""
    if path is None:
        text = resources.files(__package__).joinpath("default_policy.yaml").read_text()
        source = "default_policy.yaml"
    else:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise PolicyFileError(f"cannot read policy file {path}: {error.strerror}") from None
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyFileError(f"{source}: not valid YAML/JSON: {error}") from None
    return policy_from_mapping(data, source)
